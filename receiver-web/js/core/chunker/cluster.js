// Blocks and the splitter that groups one source cluster's blocks into output pieces (the port
// of core/src/webm/cluster.rs). A piece is re-serialised as a Cluster of its own with the source
// cluster's Timecode, so every block's relative timecode stays valid; the splitter starts a new
// piece before a video keyframe (when the piece already holds video), at `maxChunkMs`, and before
// `maxChunkLen`.

import { WebmError } from '../webm.js';
import { ID, children, concat, readVint, size8, u32be, u64be } from './ebml.js';

function blockHeader(body) {
  const track = readVint(body, 0);
  if (!track || track.len + 3 > body.length) throw new WebmError('malformed WebM: block header cut short');
  const rel = ((body[track.len] << 8) | body[track.len + 1]) << 16 >> 16; // signed 16-bit
  return { track: track.value, rel, flags: body[track.len + 2] };
}

export function parseBlock(id, element, headerLen, stream, clusterTc) {
  const body = element.subarray(headerLen);
  let track;
  let rel;
  let keyframe;
  if (id === ID.SIMPLE_BLOCK) {
    let flags;
    ({ track, rel, flags } = blockHeader(body));
    keyframe = (flags & 0x80) !== 0;
  } else {
    let header = null;
    let referenced = false;
    for (const [cid, v] of children(body)) {
      if (cid === ID.BLOCK) header = blockHeader(v);
      else if (cid === ID.REFERENCE_BLOCK) referenced = true;
    }
    if (!header) throw new WebmError('malformed WebM: BlockGroup without a Block');
    ({ track, rel } = header);
    keyframe = !referenced;
  }
  const units = clusterTc + rel;
  const tsMs = Math.trunc((units * stream.timecodeScale) / 1_000_000);
  if (!Number.isSafeInteger(tsMs)) throw new WebmError('timestamp out of range');
  return { bytes: element, tsMs, video: track === stream.videoTrack, keyframe, timing: track === stream.timingTrack };
}

class Piece {
  constructor(firstTs) {
    this.blocks = [];
    this.len = 0;
    this.firstTs = firstTs;
    this.maxTs = firstTs;
    this.lastTimingTs = null;
    this.hasVideo = false;
    this.keyframe = false;
  }

  push(block) {
    if (block.video && !this.hasVideo) {
      this.hasVideo = true;
      this.keyframe = block.keyframe;
    }
    if (block.timing) this.lastTimingTs = block.tsMs;
    this.maxTs = Math.max(this.maxTs, block.tsMs);
    this.len += block.bytes.length;
    this.blocks.push(block.bytes);
  }

  /** A Cluster of known size: ID, 8-byte size, Timecode (8-byte value), the blocks. */
  serialize(timecode) {
    const bodyLen = 10 + this.len;
    const head = new Uint8Array([...u32be(ID.CLUSTER), ...size8(bodyLen), ID.TIMECODE, 0x88, ...u64be(timecode)]);
    return concat([head, ...this.blocks]);
  }
}

export class Splitter {
  constructor(limits) {
    this.limits = limits;
    this.piece = null;
  }

  /** Adds a block; returns [finishedPiece, nextTs] when the block starts a new piece. */
  push(block) {
    let done = null;
    if (this.piece && this.cutsBefore(this.piece, block)) {
      done = [this.piece, block.tsMs];
      this.piece = null;
    }
    this.piece ??= new Piece(block.tsMs);
    this.piece.push(block);
    return done;
  }

  finish() {
    const p = this.piece;
    this.piece = null;
    return p;
  }

  cutsBefore(piece, block) {
    const keyframeCut = block.video && block.keyframe && piece.hasVideo;
    const timeCut = (block.video || !this.limits.hasVideo) && block.tsMs - piece.firstTs >= this.limits.maxChunkMs;
    const sizeCut = piece.len + block.bytes.length > this.limits.maxChunkLen;
    return keyframeCut || timeCut || sizeCut;
  }
}
