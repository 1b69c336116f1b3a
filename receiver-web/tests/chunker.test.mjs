// The browser's WebM chunker (the port used by the browser broadcaster) against the Rust core's:
// the same known answers as core/tests/webm_chunker.rs (a digest of every chunk's kind, keyframe
// flag, timing and bytes), independence from how the input is split, and errors on bad input.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { Chunker } from '../js/core/chunker.js';
import { WebmError, mimeType } from '../js/core/webm.js';

const clip = (name) => new Uint8Array(fs.readFileSync(new URL(`../../testdata/${name}`, import.meta.url)));

function chunkAll(bytes, config = {}, piece = 4096) {
  const c = new Chunker(config);
  const out = [];
  for (let i = 0; i < bytes.length; i += piece) {
    c.handleInput(bytes.subarray(i, Math.min(bytes.length, i + piece)));
    for (let x; (x = c.pollChunk());) out.push(x);
  }
  c.handleEof();
  for (let x; (x = c.pollChunk());) out.push(x);
  return out;
}

function digest(out) {
  const h = createHash('sha256');
  for (const c of out) {
    const head = Buffer.alloc(18);
    head[0] = c.kind === 'media' ? 1 : 0;
    head[1] = c.keyframe ? 1 : 0;
    head.writeBigUInt64BE(BigInt(c.timestampMs), 2);
    head.writeUInt32BE(c.durationMs, 10);
    head.writeUInt32BE(c.bytes.length, 14);
    h.update(head);
    h.update(c.bytes);
  }
  return h.digest('hex');
}

test('the same chunks as the Rust chunker, byte for byte', () => {
  const cases = [
    ['clip-keyframe-clusters.webm', 1000, '1fcf19af7066e14c23bd4a27d2e5d785cd881b1b327b04b0692ac796e4f55a58'],
    ['clip-pipe.webm', 500, 'fff5a783a6188cae5e071cb616b1dbe438532cf52920f141acb6f5d88d84ad84'],
    ['clip-mediarecorder.webm', 500, 'b55e6e25be9465b06eeda08297ca8ea35dd5bf427537aac5ccf4d4582c04637d'],
  ];
  for (const [name, maxChunkMs, expected] of cases) {
    assert.equal(digest(chunkAll(clip(name), { maxChunkMs })), expected, name);
  }
});

test('the output does not depend on how the input is split', () => {
  const bytes = clip('clip-mediarecorder.webm');
  const whole = digest(chunkAll(bytes, { maxChunkMs: 500 }, bytes.length));
  for (const piece of [1, 7, 100, 65_536]) assert.equal(digest(chunkAll(bytes, { maxChunkMs: 500 }, piece)), whole, `pieces of ${piece}`);
});

test('MediaRecorder output: init first, keyframe-first chunks every second, MSE type', () => {
  const out = chunkAll(clip('clip-mediarecorder.webm'), { maxChunkMs: 500 });
  assert.equal(out[0].kind, 'init');
  assert.equal(mimeType(out[0].bytes), 'video/webm; codecs="opus,vp8"');
  assert.ok(out[1].keyframe, 'the first media chunk starts on a keyframe');
  const keys = out.filter((c) => c.kind === 'media' && c.keyframe).map((c) => c.timestampMs);
  assert.ok(keys.length >= 4, `${keys.length} keyframe chunks in 5 s`);
  for (let i = 2; i < out.length; i++) assert.ok(out[i].timestampMs >= out[i - 1].timestampMs);
  assert.ok(out.slice(1).every((c) => c.durationMs <= 560), 'chunks stay near the 500 ms limit');
});

test('garbage and truncated input fail with a WebmError, after every complete chunk', () => {
  assert.throws(() => chunkAll(new TextEncoder().encode('not a webm file at all')), WebmError);
  assert.throws(() => new Chunker().handleEof(), /empty input/);
  const bytes = clip('clip-keyframe-clusters.webm');
  const c = new Chunker();
  c.handleInput(bytes.subarray(0, Math.floor(bytes.length * 0.6)));
  const got = [];
  for (let x; (x = c.pollChunk());) got.push(x);
  assert.throws(() => c.handleEof(), /truncated Cluster/);
  for (let x; (x = c.pollChunk());) got.push(x);
  assert.ok(got.length >= 4 && got[0].kind === 'init');
  assert.throws(() => c.handleInput(new Uint8Array(1)), WebmError, 'refuses input after an error');
  let s = 99;
  for (let n = 0; n < 300; n++) {
    const junk = Uint8Array.from(bytes.subarray(0, 600));
    for (let k = 0; k < 8; k++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      junk[40 + (s % 560)] = s >>> 24;
    }
    try {
      chunkAll(junk);
    } catch (e) {
      assert.ok(e instanceof WebmError, `${e}`);
    }
  }
});
