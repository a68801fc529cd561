'use strict';
// Reproduces the acknowledgement test vectors byte for byte: canonical text, public key and signature.
// The vectors: tests/data/ack-v1.json of this repository (a copy of the project's shared ack-v1 vectors).
// Run: node test/vectors.test.js [path/to/ack-v1.json]
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const ack = require('../ack');

const file = process.argv[2] || path.join(__dirname, '..', '..', '..', 'tests', 'data', 'ack-v1.json');
const { vectors } = JSON.parse(fs.readFileSync(file, 'utf8'));
assert.ok(vectors.length > 0, 'no vectors');

for (const [i, v] of vectors.entries()) {
  const key = ack.loadPrivateKey(v.private_key_seed_hex);
  assert.equal(ack.publicKeyBase64(key), v.public_key_raw_base64, `vector ${i}: public key`);
  const payload = Buffer.from(v.payload_base64, 'base64');
  assert.equal(crypto.createHash('sha256').update(payload).digest('hex'), v.fields.digest, `vector ${i}: digest`);
  const text = ack.canonicalText(v.fields);
  assert.equal(text.toString('utf8'), v.canonical_text, `vector ${i}: canonical text`);
  const signature = ack.sign(key, v.fields);
  assert.equal(signature.toString('base64'), v.signature_base64, `vector ${i}: signature`);
  const publicKey = crypto.createPublicKey(v.public_key_pem);
  assert.ok(ack.verify(publicKey, v.fields, Buffer.from(v.signature_base64, 'base64')), `vector ${i}: verify`);
  // The time given as milliseconds renders to the same text.
  assert.equal(ack.rfc3339ms(Date.parse(v.fields.time)), v.fields.time, `vector ${i}: time`);
}
console.log(`ok: ${vectors.length} vectors reproduced`);
