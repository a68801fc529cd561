'use strict';
// Signed acknowledgements, version 1 (the same canonical text as hub/signing.py and docs/exchange.md),
// with Node's own crypto: Ed25519 via node:crypto, no other library.
const crypto = require('node:crypto');

// DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** `2026-11-23T08:00:00.123Z`: RFC 3339, UTC, milliseconds. */
function rfc3339ms(ms) {
  return new Date(ms).toISOString();
}

/** The exact bytes an acknowledgement signature covers. `digest` is 64 lower-case hex (no `sha256:`). */
function canonicalText(f) {
  if (/[\r\n]/.test(f.reason)) throw new Error('an acknowledgement reason cannot contain line breaks');
  const time = typeof f.time === 'number' ? rfc3339ms(f.time) : f.time;
  return Buffer.from(
    [
      'ackhub-ack/v1',
      `delivery=${f.delivery}`,
      `record=${f.record}`,
      `digest=sha256:${f.digest.replace(/^sha256:/, '')}`,
      `recipient=${f.recipient}`,
      `key=${f.key}`,
      `status=${f.status}`,
      `reason=${f.reason}`,
      `time=${time}`,
    ].join('\n'),
    'utf8',
  );
}

/** A private key from a PEM `PRIVATE KEY` block or the hex of the 32-byte seed. */
function loadPrivateKey(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) return crypto.createPrivateKey(trimmed);
  const seed = Buffer.from(trimmed, 'hex');
  if (seed.length !== 32) throw new Error(`an Ed25519 seed is 32 bytes, this one is ${seed.length}`);
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/** Base64 of the 32 raw public key bytes (the form the hub's configuration takes). */
function publicKeyBase64(privateKey) {
  const der = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32).toString('base64');
}

function sign(privateKey, fields) {
  return crypto.sign(null, canonicalText(fields), privateKey);
}

function verify(publicKey, fields, signature) {
  return crypto.verify(null, canonicalText(fields), publicKey, signature);
}

module.exports = { canonicalText, loadPrivateKey, publicKeyBase64, rfc3339ms, sign, verify };
