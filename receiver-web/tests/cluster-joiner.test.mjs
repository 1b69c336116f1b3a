// The player's joining of chunks into open WebM Clusters (js/media/cluster-joiner.js, for Firefox's
// Media Source), on the chunker's real chunks of a pipe-style clip (most chunks do not start on a
// keyframe): a keyframe chunk opens a Cluster of unknown size, the chunks after it are bare blocks,
// and every block keeps its absolute timecode and its bytes; a block too far for a 16-bit relative
// timecode opens a Cluster; what is not whole clusters goes through untouched.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Chunker } from '../js/core/chunker.js';
import { ID, readHeader, readUint, readVint, size8, u32be, u64be, concat } from '../js/core/chunker/ebml.js';
import { ClusterJoiner } from '../js/media/cluster-joiner.js';

const clip = (name) => new Uint8Array(fs.readFileSync(new URL(`../../testdata/${name}`, import.meta.url)));

function mediaChunks(bytes) {
  const c = new Chunker();
  c.handleInput(bytes);
  c.handleEof();
  const out = [];
  for (let x; (x = c.pollChunk());) if (x.kind === 'media') out.push(x);
  return out;
}

/** A block's absolute timecode and its bytes after the timecode. */
function block(v, tc) {
  const track = readVint(v, 0);
  const rel = ((v[track.len] << 8) | v[track.len + 1]) << 16 >> 16;
  return { at: tc + rel, rest: Buffer.from(v.subarray(track.len + 2)).toString('hex') };
}

/**
 * Reads appended bytes as a parser would, across appends: a Cluster of unknown size takes the
 * elements after it; `state.tc` is the open Cluster's Timecode. Returns the blocks and the number
 * of Cluster headers.
 */
function parse(buf, state) {
  const blocks = [];
  let headers = 0;
  for (let pos = 0; pos < buf.length;) {
    const h = readHeader(buf, pos);
    if (h.id === ID.CLUSTER && h.size == null) {
      headers += 1;
      pos += h.len;
      continue;
    }
    const body = buf.subarray(pos + h.len, pos + h.len + h.size);
    if (h.id === ID.CLUSTER) {
      headers += 1;
      const inner = parse(body, state);
      blocks.push(...inner.blocks);
    } else if (h.id === ID.TIMECODE) state.tc = readUint(body);
    else if (h.id === ID.SIMPLE_BLOCK) blocks.push(block(body, state.tc));
    pos += h.len + h.size;
  }
  return { blocks, headers };
}

function cluster(tc, blockBodies) {
  const parts = blockBodies.map((b) => new Uint8Array([ID.SIMPLE_BLOCK, 0x80 | b.length, ...b]));
  const head = [ID.TIMECODE, 0x88, ...u64be(tc)];
  const len = head.length + parts.reduce((n, p) => n + p.length, 0);
  return concat([new Uint8Array([...u32be(ID.CLUSTER), ...size8(len), ...head]), ...parts]);
}

test('a pipe clip: keyframe chunks open a Cluster, the others add bare blocks, every block at its time with its bytes', () => {
  const chunks = mediaChunks(clip('clip-pipe.webm'));
  assert.ok(chunks.filter((c) => !c.keyframe).length > chunks.length / 2, 'most chunks do not start on a keyframe');
  const joiner = new ClusterJoiner();
  const seen = { tc: null };
  const original = { tc: null };
  for (const c of chunks) {
    const out = joiner.chunk(c.bytes, c.keyframe);
    const first = readHeader(out, 0);
    if (c.keyframe) assert.deepEqual([first.id, first.size], [ID.CLUSTER, null], 'a keyframe chunk opens a Cluster of unknown size');
    const joined = parse(out, seen);
    assert.equal(joined.headers, c.keyframe ? 1 : 0);
    assert.deepEqual(joined.blocks, parse(c.bytes, original).blocks);
  }
});

test('a block beyond a 16-bit relative timecode opens a new Cluster', () => {
  const joiner = new ClusterJoiner();
  const seen = { tc: null };
  const a = joiner.chunk(cluster(1000, [[0x81, 0, 0, 0x80, 1]]), true);
  const b = joiner.chunk(cluster(40_000, [[0x81, 0, 7, 0, 2]]), false);
  assert.deepEqual(parse(a, seen), { blocks: [{ at: 1000, rest: '8001' }], headers: 1 });
  assert.deepEqual(parse(b, seen), { blocks: [{ at: 40_007, rest: '0002' }], headers: 1 });
});

test('what is not whole clusters goes through untouched, and the next chunk opens a Cluster', () => {
  const joiner = new ClusterJoiner();
  const first = mediaChunks(clip('clip-pipe.webm'));
  joiner.chunk(first[0].bytes, true);
  const junk = new Uint8Array(64);
  assert.equal(joiner.chunk(junk, false), junk);
  const cut = first[1].bytes.subarray(0, first[1].bytes.length - 3);
  assert.equal(joiner.chunk(cut, false), cut);
  const next = joiner.chunk(first[2].bytes, false);
  assert.equal(parse(next, { tc: null }).headers, 1, 'a non-keyframe chunk after a break opens a Cluster');
});
