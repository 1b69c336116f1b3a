// Writes testdata/frame-vectors.json: known answers for chunk format 3 and the data-channel
// messages (core/src/frame.rs module docs), made with node:crypto alone (SHA-256, HMAC-SHA256,
// Ed25519), so they stay independent of both the Rust and the browser implementation that
// core/tests/frame_codec.rs and receiver-web/tests/frame.test.mjs check against them.
//
//   node testdata/make-frame-vectors.mjs

import { createHash, createHmac, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const streamKey = Buffer.from('0123456789abcdef0123456789abcdef', 'ascii');
const seed = Buffer.alloc(32, 5);
const stream = 'demo';
// PKCS#8 wrapping of an Ed25519 seed: a fixed 16-byte prefix (RFC 8410).
const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
const privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
const publicKey = spki.subarray(spki.length - 32);

function header({ seq, flags, timestamp_ms, duration_ms }, payloadLen) {
  const h = Buffer.alloc(25);
  h.writeBigUInt64BE(BigInt(seq), 0);
  h[8] = flags;
  h.writeBigUInt64BE(BigInt(timestamp_ms), 9);
  h.writeUInt32BE(duration_ms, 17);
  h.writeUInt32BE(payloadLen, 21);
  return h;
}

const tagOf = (h, payload) =>
  createHmac('sha256', streamKey).update(h).update(createHash('sha256').update(payload).digest()).digest();

function encode(c) {
  const payload = Buffer.from(c.payload_utf8, 'utf8');
  const h = header(c, payload.length);
  const digest = createHash('sha256').update(payload).digest();
  const name = Buffer.from(stream, 'utf8');
  const nameLen = Buffer.alloc(2);
  nameLen.writeUInt16BE(name.length);
  const message = Buffer.concat([Buffer.from('ownstream-chunk-v3', 'ascii'), streamKey, nameLen, name, h, digest]);
  const signature = sign(null, message, privateKey);
  return Buffer.concat([h, tagOf(h, payload), signature, payload]);
}

const cases = [
  { seq: 7, flags: 2, timestamp_ms: 1234, duration_ms: 1000, payload_utf8: 'ownstream' },
  { seq: 0, flags: 1, timestamp_ms: 0, duration_ms: 0, payload_utf8: 'init segment' },
  { seq: 8, flags: 4, timestamp_ms: 2234, duration_ms: 0, payload_utf8: '' },
];
const chunks = cases.map((c) => ({ ...c, encoded_hex: encode(c).toString('hex') }));

// A relay's forgery of chunk 7: the middle payload byte flipped, the tag recomputed with the
// stream key (any viewer holds it), the broadcaster's signature of the original kept.
const forged = Buffer.from(chunks[0].encoded_hex, 'hex');
const payloadAt = 121;
forged[payloadAt + Math.floor((forged.length - payloadAt) / 2)] ^= 0xff;
tagOf(forged.subarray(0, 25), forged.subarray(payloadAt)).copy(forged, 25);

const vectors = {
  about:
    'Known answers for the chunk format 3 (core/src/frame.rs module docs): checked by core/tests/frame_codec.rs and receiver-web/tests/frame.test.mjs. Made by testdata/make-frame-vectors.mjs with node:crypto alone (SHA-256, HMAC, Ed25519), independently of both implementations.',
  stream_key_hex: streamKey.toString('hex'),
  signing_seed_hex: seed.toString('hex'),
  signing_key: publicKey.toString('base64'),
  stream,
  chunks,
  forged: {
    note: 'chunk 7 with the middle payload byte flipped and the tag recomputed with the stream key; the signature is the genuine one',
    encoded_hex: forged.toString('hex'),
  },
  // Version 3, type 2 (HELLO), has_last 1, last_seq 258; version 3, type 3 (KEEPALIVE).
  hello_258_hex: '0302010000000000000102',
  keepalive_hex: '0303',
};
const out = fileURLToPath(new URL('frame-vectors.json', import.meta.url));
writeFileSync(out, `${JSON.stringify(vectors, null, 1)}\n`);
console.log(`wrote ${out}`);
