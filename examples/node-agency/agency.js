'use strict';
// A small ackhub agency in Node.js, talking to the hub's public contract (proto/ackhub/v1) with
// @grpc/grpc-js: it publishes records, subscribes, checks each delivery's digest, and acknowledges it
// with a signature made by node:crypto (RECEIVED, then ACCEPTED or REJECTED).
//
//   node agency.js --target 127.0.0.1:7443 --agency tax --key-id tax-2026-01 --key keys/tax.pem \
//       [--publish tax.refund_registration.acknowledged --payload '<JSON>'] [--expect 3] [--timeout 30]
//
// A published payload must match its record type's schema (docs/record-types.md, or GetRecordType on the
// hub, which gives examples); a mismatch is INVALID_ARGUMENT PAYLOAD_INVALID naming each bad path.
//
// Prints one JSON line per event on stdout (opened, published, delivery, ack_result, done).
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const ack = require('./ack');

function parseArgs(argv) {
  const args = { target: '127.0.0.1:7443', expect: 0, timeout: 30, header: [], proto: path.join(__dirname, '..', '..', 'proto') };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const value = argv[i + 1];
    if (name === 'header') args.header.push(value);
    else args[name] = value;
  }
  args.expect = Number(args.expect);
  args.timeout = Number(args.timeout);
  return args;
}

// The contract is loaded from proto/ at run time (no generated JavaScript): its imports of
// google/api/field_behavior.proto resolve from the copy vendored beside it in third_party/googleapis.
function loadExchange(protoRoot) {
  const definition = protoLoader.loadSync('ackhub/v1/exchange_service.proto', {
    includeDirs: [protoRoot, path.join(protoRoot, '..', 'third_party', 'googleapis')],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).ackhub.v1;
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function timestamp(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

class Agency {
  constructor(args) {
    this.args = args;
    this.agencyId = args.agency;
    this.keyId = args.keyId;
    this.key = ack.loadPrivateKey(args.key ? fs.readFileSync(args.key, 'utf8') : args.seedHex);
    const v1 = loadExchange(args.proto);
    this.client = new v1.ExchangeService(args.target, grpc.credentials.createInsecure());
    // Identity: the development hub reads `x-ackhub-agency`; `--header name=value` adds others (a token).
    this.metadata = new grpc.Metadata();
    this.metadata.set('x-ackhub-agency', this.agencyId);
    for (const header of args.header) {
      const at = header.indexOf('=');
      this.metadata.set(header.slice(0, at), header.slice(at + 1));
    }
    this.seen = new Set(); // delivery ids already handled: drop duplicates, answer again
    this.confirmed = 0;
  }

  publish(recordType, payload) {
    return new Promise((resolve, reject) => {
      const request = {
        request_id: crypto.randomUUID(),
        record_type: recordType,
        content_type: 'application/json',
        payload: Buffer.from(payload, 'utf8'),
      };
      this.client.PublishRecord(request, this.metadata, { deadline: Date.now() + 10_000 }, (error, response) => {
        if (error) reject(error);
        else resolve(response.receipt);
      });
    });
  }

  acknowledgement(delivery, status, reason) {
    const record = delivery.record;
    const now = Date.now();
    const fields = {
      delivery: delivery.delivery_id,
      record: record.record_id,
      digest: record.digest.replace(/^sha256:/, ''),
      recipient: this.agencyId,
      key: this.keyId,
      status,
      reason,
      time: now,
    };
    return {
      delivery_id: delivery.delivery_id,
      record_id: record.record_id,
      digest: record.digest,
      recipient: this.agencyId,
      key_id: this.keyId,
      status: `ACK_STATUS_${status}`,
      reason,
      ack_time: timestamp(now),
      signature: ack.sign(this.key, fields),
    };
  }

  /** Subscribe until `expect` business acknowledgements are confirmed (0: forever). */
  subscribe() {
    return new Promise((resolve, reject) => {
      const call = this.client.Subscribe(this.metadata);
      const finish = (error) => {
        call.cancel();
        if (error) reject(error);
        else resolve();
      };
      call.on('data', (message) => {
        if (message.kind === 'opened') {
          emit({ event: 'opened', session_id: message.opened.session_id });
        } else if (message.kind === 'delivery') {
          const delivery = message.delivery;
          const payload = Buffer.from(delivery.record.payload);
          const digest = 'sha256:' + crypto.createHash('sha256').update(payload).digest('hex');
          emit({ event: 'delivery', delivery_id: delivery.delivery_id, attempt: delivery.attempt, duplicate: this.seen.has(delivery.delivery_id) });
          this.seen.add(delivery.delivery_id);
          call.write({ acknowledgement: this.acknowledgement(delivery, 'RECEIVED', '') });
          const verdict = digest === delivery.record.digest
            ? ['ACCEPTED', `processed by the Node agency (${payload.length} bytes)`]
            : ['REJECTED', `payload digest ${digest} does not match the record's`];
          call.write({ acknowledgement: this.acknowledgement(delivery, ...verdict) });
        } else if (message.kind === 'ack_result') {
          const result = message.ack_result;
          emit({ event: 'ack_result', delivery_id: result.delivery_id, status: result.status, ok: result.ok, duplicate: result.duplicate, error: result.ok ? null : result.error });
          if (result.ok && result.status !== 'ACK_STATUS_RECEIVED') this.confirmed += 1;
          if (this.args.expect && this.confirmed >= this.args.expect) finish();
        }
      });
      call.on('error', (error) => {
        if (error.code === grpc.status.CANCELLED) resolve();
        else reject(error);
      });
      call.on('end', () => resolve());
      call.write({ open: { agency_id: this.agencyId, window: 16 } });
    });
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const agency = new Agency(args);
  const timer = setTimeout(() => {
    emit({ event: 'timeout', confirmed: agency.confirmed });
    process.exit(2);
  }, args.timeout * 1000);
  if (args.publish) {
    const receipt = await agency.publish(args.publish, args.payload || '{}');
    emit({ event: 'published', record_id: receipt.record_id, digest: receipt.digest, deliveries: receipt.deliveries });
  }
  if (args.expect) await agency.subscribe();
  clearTimeout(timer);
  emit({ event: 'done', confirmed: agency.confirmed });
  agency.client.close();
}

main().catch((error) => {
  emit({ event: 'error', code: error.code, message: error.message });
  process.exit(1);
});
