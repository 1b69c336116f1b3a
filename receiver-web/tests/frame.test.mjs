// The browser's chunk framing against the Rust core: the same known answer (pinned in
// core/tests/frame_codec.rs too), round trips through fragments, tamper detection, and malformed
// input that must fail with a FrameError, never anything else.

import test from 'node:test';
import assert from 'node:assert/strict';
import {
  Chunk, FrameError, Reassembler, decodeMessage, encodeHello, fragment, importStreamKey,
  verifyChunk, base64Encode, FLAG_KEYFRAME, MAX_MESSAGE,
} from '../js/core/frame.js';

const KEY = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
const KNOWN_ANSWER = '00000000000000070200000000000004d2000003e800000009'
  + '999e40d27b9971c255dbcc8ae7148fb2edc742979afed619a417c8901640f3306f776e73747265616d';
const hex = (b) => Buffer.from(b).toString('hex');

async function keys() {
  const b64 = base64Encode(KEY);
  return { sign: await importStreamKey(b64, ['sign']), verify: await importStreamKey(b64) };
}

test('signing matches the Rust known answer', async () => {
  const k = await keys();
  const c = await Chunk.sign(k.sign, {
    seq: 7, flags: FLAG_KEYFRAME, timestampMs: 1234, durationMs: 1000, payload: new TextEncoder().encode('ownstream'),
  });
  assert.equal(hex(c.bytes), KNOWN_ANSWER);
  const d = Chunk.decode(Uint8Array.from(Buffer.from(KNOWN_ANSWER, 'hex')));
  assert.equal(d.seq, 7);
  assert.equal(d.timestampMs, 1234);
  assert.equal(d.durationMs, 1000);
  assert.ok(d.isKeyframe && !d.isInit && !d.isEnd);
  assert.equal(await verifyChunk(k.verify, d), true);
  assert.equal(hex(encodeHello(258)), '0102010000000000000102');
  assert.deepEqual(decodeMessage(encodeHello(null)), { type: 'hello', last: null });
});

test('chunks of every size class survive fragment and reassembly', async () => {
  const k = await keys();
  for (const len of [0, 1, MAX_MESSAGE - 75, MAX_MESSAGE - 74, MAX_MESSAGE * 3 + 5, 2_100_000]) {
    const payload = Uint8Array.from({ length: len }, (_, i) => (i * 7) % 256);
    const c = await Chunk.sign(k.sign, { seq: 42, flags: 0, timestampMs: 9, durationMs: 33, payload });
    const r = new Reassembler();
    const msgs = fragment(c);
    let out = null;
    msgs.forEach((m, i) => {
      assert.ok(m.length <= MAX_MESSAGE);
      const got = r.handleFragment(decodeMessage(m));
      if (i + 1 < msgs.length) assert.equal(got, null);
      else out = got;
    });
    assert.equal(hex(out.bytes), hex(c.bytes));
    assert.equal(await verifyChunk(k.verify, out), true);
  }
});

test('any altered byte or a wrong key fails verification', async () => {
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
    assert.equal(await verifyChunk(k.verify, decoded), false, `byte ${i}`);
  }
  const other = await importStreamKey(base64Encode(new Uint8Array(32)));
  assert.equal(await verifyChunk(other, c), false);
  await assert.rejects(importStreamKey(base64Encode(new Uint8Array(31))), FrameError);
});

test('malformed messages fail with a FrameError', () => {
  const cases = [
    [], [1], [2, 1], [1, 9], [1, 1, 0, 0], [1, 2, 0], [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0], [1, 2, 1, 255, 255, 255, 255, 255, 255, 255, 255],
  ];
  for (const c of cases) assert.throws(() => decodeMessage(Uint8Array.from(c)), FrameError, JSON.stringify(c));
  assert.throws(() => Chunk.decode(new Uint8Array(56)), FrameError);
  const bad = new Uint8Array(60);
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
  assert.equal(r.handleFragment(frag(0, 0, 1, 57, 57)).payload.length, 0); // recovered
  // Found by fuzz/frame in the core: fragments of seq 4 carrying the (all-zero) chunk of seq 0.
  assert.throws(() => r.handleFragment(frag(4, 0, 1, 57, 57)), /fragments of seq 4 carry a chunk of seq 0/);
  assert.equal(r.current, null);
});

test('random bytes never throw anything but a FrameError', () => {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  const r = new Reassembler();
  for (let n = 0; n < 5000; n++) {
    const bytes = Uint8Array.from({ length: rnd() % 64 }, rnd);
    if (n % 3 === 0 && bytes.length > 1) { bytes[0] = 1; bytes[1] = 1 + (rnd() % 2); }
    try {
      const m = decodeMessage(bytes);
      if (m.type === 'fragment') r.handleFragment(m);
    } catch (e) {
      assert.ok(e instanceof FrameError, `${e}`);
    }
  }
});
