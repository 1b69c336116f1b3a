// Joins a stream's media chunks into open WebM Clusters before the media element sees them, for
// Firefox.
//
// The chunker keeps the source's cluster boundaries, so a chunk is one or more whole Clusters, and
// most chunks of an ffmpeg pipe or a MediaRecorder do not start on a keyframe (clusters of ~300 ms,
// a keyframe every second or two). Firefox's Media Source (ESR 153) keeps the video of a Cluster
// only if it begins with a video keyframe: of a pipe clip it buffered 0.3 s of every second
// (`0.003-0.336 1.003-1.336 ...`), so a tab never gathered its start-up buffer, or stalled at every
// hole; Chromium keeps it all. Frames added to a Cluster that began with a keyframe are kept, and a
// Cluster of unknown size runs until the next Cluster header, so: a keyframe chunk opens a Cluster
// of unknown size, and the chunks after it add their blocks to it as bare blocks, each block's
// 16-bit relative timecode re-based on the open Cluster's Timecode. Measured on the pipe clip,
// chunk by chunk: Firefox then buffers 0.003-8.003 s, all of it.
//
// Only the framing changes, never a frame's bytes; chunks are verified (as signed) before this.
// A block too far from the open Cluster's Timecode for 16 bits opens a new Cluster (never met with
// chunks of a few seconds). A chunk that is not a run of complete, sized Clusters, each with a
// Timecode, is appended as it came and the next chunk opens a Cluster.

import { ID, readHeader, readUint, readVint, u32be, u64be, concat } from '../core/chunker/ebml.js';

const REL_MIN = -32768;
const REL_MAX = 32767;

/** The complete elements of `body` as {id, start, len (header), end}; null if malformed. */
function elements(body) {
  const out = [];
  let pos = 0;
  while (pos < body.length) {
    let h;
    try {
      h = readHeader(body, pos);
    } catch {
      return null;
    }
    if (!h || h.size == null || pos + h.len + h.size > body.length) return null;
    out.push({ id: h.id, start: pos, len: h.len, end: pos + h.len + h.size });
    pos += h.len + h.size;
  }
  return out;
}

/** Where in a block element (SimpleBlock or BlockGroup, from its first byte) the 16-bit relative
 *  timecode sits; null if malformed. */
function relOffset(bytes, el) {
  let at = el.start + el.len; // the Block's body: track number (vint), timecode (i16), flags
  if (el.id === ID.BLOCK_GROUP) {
    const block = elements(bytes.subarray(at, el.end))?.find((c) => c.id === ID.BLOCK);
    if (!block) return null;
    at += block.start + block.len;
  }
  let track;
  try {
    track = readVint(bytes, at);
  } catch {
    return null;
  }
  if (!track || at + track.len + 2 > el.end) return null;
  return at + track.len - el.start;
}

/** One cluster's timecode and blocks ({bytes, relAt}); null if it is not one we can re-base. */
function readCluster(body) {
  const els = elements(body);
  if (!els) return null;
  let tc = null;
  const blocks = [];
  for (const el of els) {
    if (el.id === ID.TIMECODE) tc = readUint(body.subarray(el.start + el.len, el.end));
    else if (el.id === ID.SIMPLE_BLOCK || el.id === ID.BLOCK_GROUP) {
      const relAt = relOffset(body, el);
      if (relAt == null) return null;
      blocks.push({ bytes: body.subarray(el.start, el.end), relAt });
    }
    // Anything else (PrevSize, Position, CRC-32) would be wrong in the merged cluster: dropped.
  }
  return tc == null ? null : { tc, blocks };
}

/** The header of a Cluster of unknown size (it runs until the next Cluster) with timecode `tc`. */
function openCluster(tc) {
  return new Uint8Array([...u32be(ID.CLUSTER), 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ID.TIMECODE, 0x88, ...u64be(tc)]);
}

/**
 * Hands a stream of chunks to the media element as one open Cluster per keyframe chunk: a keyframe
 * chunk opens a Cluster of unknown size, and the chunks after it (until the next keyframe chunk)
 * add bare blocks to it, their timecodes re-based on its Timecode. `reset()` after anything that
 * breaks the run (the next chunk then opens a Cluster whatever it is).
 */
export class ClusterJoiner {
  constructor() {
    this.base = null;
  }

  reset() {
    this.base = null;
  }

  /** The bytes to append for a media chunk (`keyframe`: it starts with a video keyframe). */
  chunk(bytes, keyframe) {
    const top = elements(bytes);
    const clusters = top?.every((e) => e.id === ID.CLUSTER) ? top.map((e) => readCluster(bytes.subarray(e.start + e.len, e.end))) : null;
    if (!clusters?.length || clusters.some((c) => c == null)) {
      this.base = null; // appended as it came: whatever follows opens a cluster of its own
      return bytes;
    }
    const out = [];
    if (keyframe || this.base == null) {
      this.base = clusters[0].tc;
      out.push(openCluster(this.base));
    }
    for (const { tc, blocks } of clusters) {
      for (const { bytes: block, relAt } of blocks) {
        const rel = ((block[relAt] << 8) | block[relAt + 1]) << 16 >> 16;
        let moved = tc + rel - this.base;
        if (moved < REL_MIN || moved > REL_MAX) {
          this.base = tc;
          out.push(openCluster(tc));
          moved = rel;
        }
        const copy = block.slice();
        copy[relAt] = (moved >> 8) & 0xff;
        copy[relAt + 1] = moved & 0xff;
        out.push(copy);
      }
    }
    return concat(out);
  }
}
