// The browser's chunk framing against the Rust core: the same known answers
// (testdata/frame-vectors.json, checked by core/tests/frame_codec.rs too), round trips through fragments, tamper detection, and malformed
// input that must fail with a FrameError, never anything else.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Chunk, FrameError, Reassembler, chunkHead, decodeMessage, encodeAbort, encodeHello, encodeKeepalive, fragment, importSigningKey,
  importStreamKey, makeSigner, streamKeyBytes, verifyChunk, verifySignature, base64Encode,
  FLAG_KEYFRAME, FRAGMENT_LEN, MAX_MESSAGE, PREFIX_LEN,
} from '../js/core/frame.js';
import { SIGNING_KEYS } from './signing-keys.mjs';

const VECTORS = JSON.parse(fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testdata/frame-vectors.json'), 'utf8'));
const KEY = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));

async function keys(stream = 's') {
  const b64 = base64Encode(KEY);
  const signer = await makeSigner(b64, stream, await SIGNING_KEYS.seed5.privateKey());
  const origin = { publicKey: await importSigningKey(SIGNING_KEYS.seed5.publicKey), streamKey: KEY, stream };
  return { sign: signer, verify: await importStreamKey(b64), origin };
}

test('signing matches the known answers shared with Rust (testdata/frame-vectors.json)', async () => {
  const streamKey = base64Encode(unhex(VECTORS.stream_key_hex));
  assert.equal(SIGNING_KEYS.seed5.publicKey, VECTORS.signing_key);
  assert.equal(VECTORS.signing_seed_hex, '05'.repeat(32));
  const signer = await makeSigner(streamKey, VECTORS.stream, await SIGNING_KEYS.seed5.privateKey());
  const hmac = await importStreamKey(streamKey);
  const origin = { publicKey: await importSigningKey(VECTORS.signing_key), streamKey: streamKeyBytes(streamKey), stream: VECTORS.stream };
  for (const v of VECTORS.chunks) {
    const c = await Chunk.sign(signer, {
      seq: v.seq, flags: v.flags, timestampMs: v.timestamp_ms, durationMs: v.duration_ms, payload: new TextEncoder().encode(v.payload_utf8),
    });
    assert.equal(hex(c.bytes), v.encoded_hex);
    const d = Chunk.decode(unhex(v.encoded_hex));
    assert.equal(d.seq, v.seq);
    assert.equal(d.timestampMs, v.timestamp_ms);
    assert.equal(d.durationMs, v.duration_ms);
    assert.equal(await verifyChunk(hmac, d), true);
    assert.equal(await verifySignature(origin, d), true);
  }
  const d = Chunk.decode(unhex(VECTORS.chunks[0].encoded_hex));
  assert.ok(d.isKeyframe && !d.isInit && !d.isEnd);
  const forged = Chunk.decode(unhex(VECTORS.forged.encoded_hex));
  assert.equal(await verifyChunk(hmac, forged), true, 'the forged tag passes');
  assert.equal(await verifySignature(origin, forged), false, 'the signature does not');
  assert.equal(await verifySignature({ ...origin, stream: 'other' }, d), false, 'another stream');
  assert.equal(await verifySignature({ ...origin, streamKey: new Uint8Array(32) }, d), false, 'another broadcast');
  assert.equal(hex(encodeHello(258)), VECTORS.hello_258_hex);
  assert.deepEqual(decodeMessage(encodeHello(null)), { type: 'hello', last: null });
  assert.equal(hex(encodeKeepalive()), VECTORS.keepalive_hex);
  assert.deepEqual(decodeMessage(unhex(VECTORS.keepalive_hex)), { type: 'keepalive' });
  for (const bad of ['03', '030300', '0203']) assert.throws(() => decodeMessage(unhex(bad)), FrameError, bad);
});

test('chunks of every size class survive fragment and reassembly', async () => {
  const k = await keys();
  for (const len of [0, 1, FRAGMENT_LEN - 18 - PREFIX_LEN, FRAGMENT_LEN - 17 - PREFIX_LEN, MAX_MESSAGE - 18 - PREFIX_LEN, MAX_MESSAGE * 3 + 5, 2_100_000]) {
    const payload = Uint8Array.from({ length: len }, (_, i) => (i * 7) % 256);
    const c = await Chunk.sign(k.sign, { seq: 42, flags: 0, timestampMs: 9, durationMs: 33, payload });
    const r = new Reassembler();
    const msgs = fragment(c);
    let out = null;
    msgs.forEach((m, i) => {
      // Every piece but the last is FRAGMENT_LEN (whole SCTP packets), never above MAX_MESSAGE.
      if (i + 1 < msgs.length) assert.equal(m.length, FRAGMENT_LEN);
      else assert.ok(m.length <= FRAGMENT_LEN);
      const got = r.handleFragment(decodeMessage(m));
      if (i + 1 < msgs.length) assert.equal(got, null);
      else out = got;
    });
    assert.equal(hex(out.bytes), hex(c.bytes));
    assert.equal(await verifyChunk(k.verify, out), true);
    assert.equal(await verifySignature(k.origin, out), true);
  }
});

test('any altered byte fails the tag or the signature; a wrong key fails', async () => {
  const k = await keys();
  const c = await Chunk.sign(k.sign, { seq: 1, flags: 0, timestampMs: 0, durationMs: 1, payload: new Uint8Array(40) });
  for (let i = 0; i < c.bytes.length; i++) {
    if (i >= 21 && i < 25) continue; // payload_len: caught by decode, not by the tag
    const bytes = Uint8Array.from(c.bytes);
    bytes[i] ^= 0x01;
    let decoded;
    try {
      decoded = Chunk.decode(bytes);
    } catch (e) {
      assert.ok(e instanceof FrameError, `byte ${i}: ${e}`); // a seq beyond 2^53: refused outright
      continue;
    }
    // The tag covers all but the signature, the signature all but the tag.
    const tagOk = await verifyChunk(k.verify, decoded);
    const signatureOk = await verifySignature(k.origin, decoded);
    assert.equal(tagOk, i >= 57 && i < 121, `byte ${i}: tag`);
    assert.equal(signatureOk, i >= 25 && i < 57, `byte ${i}: signature`);
  }
  const other = await importStreamKey(base64Encode(new Uint8Array(32)));
  assert.equal(await verifyChunk(other, c), false);
  await assert.rejects(importStreamKey(base64Encode(new Uint8Array(31))), FrameError);
});

test('malformed messages fail with a FrameError', () => {
  const cases = [
    [], [2], [3, 1], [2, 9], [2, 1, 0, 0], [2, 2, 0], [2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0], [2, 2, 1, 255, 255, 255, 255, 255, 255, 255, 255],
    [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], // a format-1 HELLO
  ];
  for (const c of cases) assert.throws(() => decodeMessage(Uint8Array.from(c)), FrameError, JSON.stringify(c));
  assert.throws(() => Chunk.decode(new Uint8Array(120)), FrameError);
  const bad = new Uint8Array(124);
  bad[24] = 9; // payload_len 9 but 3 bytes follow
  assert.throws(() => Chunk.decode(bad), FrameError);
});

test('the reassembler refuses lies and recovers after an error', () => {
  const frag = (seq, index, count, totalLen, len) => ({ type: 'fragment', seq, index, count, totalLen, bytes: new Uint8Array(len) });
  const r = new Reassembler();
  assert.throws(() => r.handleFragment(frag(1, 0, 0, 10, 10)), /count is 0/);
  assert.throws(() => r.handleFragment(frag(1, 1, 2, 10, 5)), /expected 0/);
  assert.throws(() => r.handleFragment(frag(1, 0, 1, 17 * 1024 * 1024, 5)), /exceeds/);
  assert.equal(r.handleFragment(frag(1, 0, 2, 100, 50)), null);
  assert.throws(() => r.handleFragment(frag(2, 1, 2, 100, 50)), /in progress/);
  assert.equal(r.current, null);
  assert.equal(r.handleFragment(frag(3, 0, 2, 100, 60)), null);
  assert.throws(() => r.handleFragment(frag(3, 1, 2, 100, 60)), /total_len says 100/);
  assert.equal(r.handleFragment(frag(0, 0, 1, 121, 121)).payload.length, 0); // recovered
  // Found by fuzz/frame in the core: fragments of seq 4 carrying the (all-zero) chunk of seq 0.
  assert.throws(() => r.handleFragment(frag(4, 0, 1, 121, 121)), /fragments of seq 4 carry a chunk of seq 0/);
  assert.equal(r.current, null);
});

test('random bytes never throw anything but a FrameError', () => {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  const r = new Reassembler();
  for (let n = 0; n < 5000; n++) {
    const bytes = Uint8Array.from({ length: rnd() % 64 }, rnd);
    if (n % 3 === 0 && bytes.length > 1) { bytes[0] = 2; bytes[1] = 1 + (rnd() % 2); }
    try {
      const m = decodeMessage(bytes);
      if (m.type === 'fragment') r.handleFragment(m);
    } catch (e) {
      assert.ok(e instanceof FrameError, `${e}`);
    }
  }
});

test('ABORT: layout as the core writes it, and it drops only the chunk in progress', async () => {
  const m = encodeAbort(258);
  assert.deepEqual([...m], [3, 4, 0, 0, 0, 0, 0, 0, 1, 2]);
  assert.deepEqual(decodeMessage(m), { type: 'abort', seq: 258 });
  assert.throws(() => decodeMessage(m.subarray(0, 9)), FrameError);
  const r = new Reassembler();
  r.handleFragment({ seq: 1, index: 0, count: 3, totalLen: 6, bytes: new Uint8Array(2) });
  assert.equal(r.abort(2), false, "another chunk's ABORT changes nothing");
  assert.equal(r.inProgress(), 1);
  assert.equal(r.abort(1), true);
  assert.equal(r.inProgress(), null);
});

test('the first fragment tells the chunk flags and timestamp', () => {
  const bytes = new Uint8Array(30);
  bytes[8] = 2;
  new DataView(bytes.buffer).setBigUint64(9, 1234n, false);
  assert.deepEqual(chunkHead({ index: 0, bytes }), { flags: 2, timestampMs: 1234 });
  assert.equal(chunkHead({ index: 1, bytes }), null);
  assert.equal(chunkHead({ index: 0, bytes: bytes.subarray(0, 16) }), null);
});
