// Incremental WebM chunker: the port of the Rust core's `webm` module (core/src/webm.rs and its
// submodules), for the browser broadcaster that cuts MediaRecorder's output. Same rules, same
// output bytes (a known answer pinned in both test suites keeps them equal):
//
// - first one init chunk: the EBML header, a Segment header rewritten to the unknown size, then
//   Info and Tracks exactly as received (SeekHead, Cues, Tags, Void... are dropped);
// - then media chunks, each one Cluster with a known 8-byte size holding an 8-byte Timecode and the
//   source cluster's SimpleBlock / BlockGroup elements unchanged. A source cluster is cut into
//   several chunks before a video keyframe (when the piece already holds video), at `maxChunkMs`,
//   and before `maxChunkLen`; every piece keeps the source cluster's Timecode.
//
// Unknown-size Segments and Clusters (MediaRecorder writes both) are handled: an unknown-size
// cluster ends at the next element that cannot be its child. Memory is bounded (one element of at
// most `maxElementLen`, plus the piece in progress); malformed input throws a WebmError and the
// chunker refuses further input; media timestamps never decrease. A chunk's timestamp is its first
// block's time plus `timestampOffsetMs`; its duration runs to the next chunk's first block, or, at a
// source cluster's end, to its last video block plus one frame.

import { WebmError } from './webm.js';

const ID = {
  EBML: 0x1a45dfa3, DOC_TYPE: 0x4282, SEGMENT: 0x18538067, SEEK_HEAD: 0x114d9b74, INFO: 0x1549a966,
  TIMECODE_SCALE: 0x2ad7b1, TRACKS: 0x1654ae6b, TRACK_ENTRY: 0xae, TRACK_NUMBER: 0xd7, TRACK_TYPE: 0x83,
  DEFAULT_DURATION: 0x23e383, CLUSTER: 0x1f43b675, TIMECODE: 0xe7, SIMPLE_BLOCK: 0xa3, BLOCK_GROUP: 0xa0,
  BLOCK: 0xa1, REFERENCE_BLOCK: 0xfb, CUES: 0x1c53bb6b, TAGS: 0x1254c367, CHAPTERS: 0x1043a770,
  ATTACHMENTS: 0x1941a469,
};
const NAMES = {
  [ID.EBML]: 'EBML header', [ID.SEGMENT]: 'Segment', [ID.SEEK_HEAD]: 'SeekHead', [ID.INFO]: 'Info',
  [ID.TRACKS]: 'Tracks', [ID.CLUSTER]: 'Cluster', [ID.TIMECODE]: 'Cluster Timecode',
  [ID.SIMPLE_BLOCK]: 'SimpleBlock', [ID.BLOCK_GROUP]: 'BlockGroup', [ID.CUES]: 'Cues', [ID.TAGS]: 'Tags',
  [ID.CHAPTERS]: 'Chapters', [ID.ATTACHMENTS]: 'Attachments',
};
const ENDS_UNKNOWN_CLUSTER = new Set([ID.EBML, ID.SEGMENT, ID.SEEK_HEAD, ID.INFO, ID.TRACKS, ID.CLUSTER,
  ID.CUES, ID.TAGS, ID.CHAPTERS, ID.ATTACHMENTS]);
const UNKNOWN_SIZE_8 = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const DEFAULT_TIMECODE_SCALE = 1_000_000;
const name = (id) => NAMES[id] ?? 'element';

export const DEFAULT_CHUNKER_CONFIG = Object.freeze({
  maxElementLen: 32 * 1024 * 1024,
  maxChunkMs: 1000,
  maxChunkLen: 8 * 1024 * 1024,
  timestampOffsetMs: 0,
});

// ---- EBML primitives (null = need more bytes) --------------------------------------------------

function readVint(buf, pos) {
  if (pos >= buf.length) return null;
  const first = buf[pos];
  if (first === 0) throw new WebmError('invalid EBML variable-length integer');
  const len = Math.clz32(first) - 23;
  if (pos + len > buf.length) return null;
  let value = len === 8 ? 0 : first & (0xff >> len);
  for (let i = 1; i < len; i++) value = value * 256 + buf[pos + i];
  return { value, len, allOnes: value === 2 ** (7 * len) - 1 };
}

function readHeader(buf, pos = 0) {
  if (pos >= buf.length) return null;
  const first = buf[pos];
  const idLen = first === 0 ? 0 : Math.clz32(first) - 23;
  if (idLen < 1 || idLen > 4) throw new WebmError('invalid EBML element ID');
  if (pos + idLen > buf.length) return null;
  let id = 0;
  for (let i = 0; i < idLen; i++) id = id * 256 + buf[pos + i];
  const size = readVint(buf, pos + idLen);
  if (!size) return null;
  return { id, size: size.allOnes ? null : size.value, len: idLen + size.len };
}

const total = (h) => (h.size == null ? null : h.size + h.len);

function readUint(body) {
  if (body.length > 8) throw new WebmError('malformed WebM: unsigned integer longer than 8 bytes');
  let v = 0;
  for (const b of body) v = v * 256 + b;
  return v;
}

function* children(body) {
  let pos = 0;
  while (pos < body.length) {
    const h = readHeader(body, pos);
    if (!h) throw new WebmError('malformed WebM: child header cut short');
    if (h.size == null) throw new WebmError('malformed WebM: unknown-size child of a sized element');
    const end = pos + h.len + h.size;
    if (end > body.length) throw new WebmError('malformed WebM: child element overruns its parent');
    yield [h.id, body.subarray(pos + h.len, end)];
    pos = end;
  }
}

// ---- head ---------------------------------------------------------------------------------------

function checkDocType(body) {
  for (const [id, value] of children(body)) {
    if (id !== ID.DOC_TYPE) continue;
    const doc = new TextDecoder().decode(value).replace(/\0+$/, '');
    if (doc !== 'webm' && doc !== 'matroska') throw new WebmError(`unsupported EBML DocType "${doc}"`);
  }
}

function parseInfo(body) {
  let scale = DEFAULT_TIMECODE_SCALE;
  for (const [id, value] of children(body)) if (id === ID.TIMECODE_SCALE) scale = readUint(value);
  if (scale === 0) throw new WebmError('malformed WebM: TimestampScale is 0');
  return scale;
}

function parseTracks(body, timecodeScale) {
  const tracks = [];
  for (const [id, value] of children(body)) {
    if (id !== ID.TRACK_ENTRY) continue;
    const t = { number: 0, kind: 0, defaultDurationNs: null };
    for (const [cid, v] of children(value)) {
      if (cid === ID.TRACK_NUMBER) t.number = readUint(v);
      else if (cid === ID.TRACK_TYPE) t.kind = readUint(v);
      else if (cid === ID.DEFAULT_DURATION) t.defaultDurationNs = readUint(v);
    }
    if (t.number === 0) throw new WebmError('malformed WebM: TrackEntry without a TrackNumber');
    tracks.push(t);
  }
  if (!tracks.length) throw new WebmError('malformed WebM: Tracks holds no TrackEntry');
  const video = tracks.find((t) => t.kind === 1);
  const timing = video ?? tracks[0];
  return {
    timecodeScale,
    videoTrack: video ? video.number : null,
    timingTrack: timing.number,
    defaultDurationNs: timing.defaultDurationNs,
  };
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const u32be = (v) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

function u64be(v) {
  const out = new Array(8).fill(0);
  for (let i = 7; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v % 256;
  return out;
}

/** An 8-byte EBML size: the length marker, then the value in 7 bytes. */
function size8(size) {
  const out = [0x01, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 7, v = size; i >= 1; i--, v = Math.floor(v / 256)) out[i] = v % 256;
  return out;
}

// ---- blocks and pieces --------------------------------------------------------------------------

function blockHeader(body) {
  const track = readVint(body, 0);
  if (!track || track.len + 3 > body.length) throw new WebmError('malformed WebM: block header cut short');
  const rel = ((body[track.len] << 8) | body[track.len + 1]) << 16 >> 16; // signed 16-bit
  return { track: track.value, rel, flags: body[track.len + 2] };
}

function parseBlock(id, element, headerLen, stream, clusterTc) {
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

class Splitter {
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

// ---- the chunker --------------------------------------------------------------------------------

/** A growable byte queue: append at the tail, consume from the head. */
class ByteQueue {
  constructor() {
    this.data = new Uint8Array(64 * 1024);
    this.head = 0;
    this.tail = 0;
  }

  get length() { return this.tail - this.head; }
  view() { return this.data.subarray(this.head, this.tail); }

  append(bytes) {
    if (this.tail + bytes.length > this.data.length) {
      const need = this.length + bytes.length;
      const next = need <= this.data.length / 2 ? this.data : new Uint8Array(Math.max(need * 2, this.data.length));
      next.set(this.data.subarray(this.head, this.tail), 0);
      this.data = next;
      this.tail = this.length;
      this.head = 0;
    }
    this.data.set(bytes, this.tail);
    this.tail += bytes.length;
  }

  advance(n) { this.head += n; }

  /** Removes and returns (a copy of) the first `n` bytes. */
  take(n) {
    const out = this.data.slice(this.head, this.head + n);
    this.head += n;
    return out;
  }
}

export class Chunker {
  constructor(config = {}) {
    this.config = { ...DEFAULT_CHUNKER_CONFIG, ...config };
    this.buf = new ByteQueue();
    this.pos = 0; // absolute stream offset of the queue's head
    this.skip = 0;
    this.state = 'ebml-header';
    this.error = null;
    this.received = false;
    this.segmentEnd = null;
    this.head = { ebml: null, info: null, tracks: null };
    this.stream = null;
    this.cluster = null;
    this.out = [];
    this.lastTimingTs = null;
    this.frameMs = null;
    this.lastOutTs = null;
    this.endMs = null;
  }

  /** Takes the next bytes of the stream (a Uint8Array); drain pollChunk() afterwards. */
  handleInput(data) {
    this.usable();
    this.received ||= data.length > 0;
    if (this.buf.length === 0 && this.skip > 0) {
      const n = Math.min(data.length, this.skip); // skipped elements never enter the buffer
      this.skip -= n;
      this.pos += n;
      data = data.subarray(n);
    }
    this.buf.append(data);
    this.guard(() => this.run());
  }

  /** Ends the stream: flushes the last chunk, or throws for a truncation (after emitting every
   *  complete chunk). */
  handleEof() {
    this.usable();
    this.guard(() => this.eof());
    this.state = 'ended';
  }

  /** The next output chunk: {kind: 'init'|'media', keyframe, timestampMs, durationMs, bytes}. */
  pollChunk() {
    return this.out.shift() ?? null;
  }

  usable() {
    if (this.error) throw this.error;
    if (this.state === 'ended') throw new WebmError('input after end of stream');
  }

  guard(f) {
    try {
      f();
    } catch (e) {
      this.error = e instanceof WebmError ? e : new WebmError(String(e.message ?? e));
      throw this.error;
    }
  }

  run() {
    for (;;) {
      const skipNow = Math.min(this.skip, this.buf.length);
      this.advance(skipNow);
      this.skip -= skipNow;
      if (this.skip > 0) return;
      let progressed;
      switch (this.state) {
        case 'ebml-header': progressed = this.stepEbmlHeader(); break;
        case 'segment-header': progressed = this.stepSegmentHeader(); break;
        case 'segment-body': progressed = this.stepSegmentBody(); break;
        case 'cluster': progressed = this.stepCluster(); break;
        case 'after-segment': this.advance(this.buf.length); progressed = false; break;
        default: progressed = false;
      }
      if (!progressed) return;
    }
  }

  advance(n) {
    this.buf.advance(n);
    this.pos += n;
  }

  takeElement(h) {
    const t = total(h);
    if (t == null) throw new WebmError(`${name(h.id)} has an unknown size (only Segment and Cluster may)`);
    if (t > this.config.maxElementLen) throw new WebmError(`${name(h.id)} too large: ${t} bytes, limit ${this.config.maxElementLen}`);
    if (this.buf.length < t) return null;
    this.pos += t;
    return this.buf.take(t);
  }

  skipElement(h) {
    const t = total(h);
    if (t == null) throw new WebmError(`${name(h.id)} has an unknown size (only Segment and Cluster may)`);
    this.skip = t;
    return true;
  }

  checkFits(h, parentEnd) {
    const t = total(h);
    if (parentEnd != null && t != null && this.pos + t > parentEnd) throw new WebmError(`${name(h.id)} overruns its parent element`);
  }

  stepEbmlHeader() {
    const magic = [0x1a, 0x45, 0xdf, 0xa3];
    const v = this.buf.view();
    for (let i = 0; i < Math.min(4, v.length); i++) if (v[i] !== magic[i]) throw new WebmError('not a WebM file: EBML header missing');
    const h = readHeader(v);
    if (!h) return false;
    const bytes = this.takeElement(h);
    if (!bytes) return false;
    checkDocType(bytes.subarray(h.len));
    this.head.ebml = bytes;
    this.state = 'segment-header';
    return true;
  }

  stepSegmentHeader() {
    const h = readHeader(this.buf.view());
    if (!h) return false;
    if (h.id !== ID.SEGMENT) throw new WebmError('expected a Segment after the EBML header');
    this.advance(h.len);
    this.segmentEnd = h.size == null ? null : this.pos + h.size;
    this.state = 'segment-body';
    return true;
  }

  stepSegmentBody() {
    if (this.segmentEnd != null && this.pos >= this.segmentEnd) {
      this.emitInitOnce();
      this.state = 'after-segment';
      return true;
    }
    const h = readHeader(this.buf.view());
    if (!h) return false;
    this.checkFits(h, this.segmentEnd);
    switch (h.id) {
      case ID.CLUSTER: return this.openCluster(h);
      case ID.INFO:
      case ID.TRACKS: return this.takeHeadElement(h);
      case ID.EBML:
      case ID.SEGMENT: throw new WebmError('unsupported WebM: a second EBML header or Segment (chained streams)');
      default: return this.skipElement(h);
    }
  }

  takeHeadElement(h) {
    const bytes = this.takeElement(h);
    if (!bytes) return false;
    const body = bytes.subarray(h.len);
    if (h.id === ID.INFO) {
      parseInfo(body);
      this.head.info = bytes;
    } else {
      parseTracks(body, DEFAULT_TIMECODE_SCALE); // validated now, so a bad Tracks fails where it is
      this.head.tracks = bytes;
    }
    return true;
  }

  emitInitOnce() {
    if (this.stream) return;
    const { info, tracks } = this.head;
    if (!info) throw new WebmError('no Info before the first Cluster');
    if (!tracks) throw new WebmError('no Tracks before the first Cluster');
    const scale = parseInfo(info.subarray(readHeader(info).len));
    this.stream = parseTracks(tracks.subarray(readHeader(tracks).len), scale);
    const segment = new Uint8Array([...u32be(ID.SEGMENT), ...UNKNOWN_SIZE_8]);
    this.out.push({ kind: 'init', keyframe: false, timestampMs: 0, durationMs: 0, bytes: concat([this.head.ebml, segment, info, tracks]) });
  }

  openCluster(h) {
    this.emitInitOnce();
    this.advance(h.len);
    this.cluster = {
      end: h.size != null ? this.pos + h.size : this.segmentEnd,
      unknownSize: h.size == null,
      timecode: null,
      splitter: new Splitter({ maxChunkMs: this.config.maxChunkMs, maxChunkLen: this.config.maxChunkLen, hasVideo: this.stream.videoTrack != null }),
    };
    this.state = 'cluster';
    return true;
  }

  stepCluster() {
    const ctx = this.cluster;
    if (!ctx) {
      this.state = 'segment-body';
      return true;
    }
    if (ctx.end != null && this.pos >= ctx.end) return this.closeCluster();
    const h = readHeader(this.buf.view());
    if (!h) return false;
    if (ctx.unknownSize && ENDS_UNKNOWN_CLUSTER.has(h.id)) return this.closeCluster();
    this.checkFits(h, ctx.end);
    switch (h.id) {
      case ID.TIMECODE: {
        const bytes = this.takeElement(h);
        if (!bytes) return false;
        ctx.timecode = readUint(bytes.subarray(h.len));
        return true;
      }
      case ID.SIMPLE_BLOCK:
      case ID.BLOCK_GROUP: return this.takeBlock(h);
      default: return this.skipElement(h);
    }
  }

  takeBlock(h) {
    const bytes = this.takeElement(h);
    if (!bytes) return false;
    const ctx = this.cluster;
    if (ctx.timecode == null) throw new WebmError("block before its Cluster's Timecode");
    const block = parseBlock(h.id, bytes, h.len, this.stream, ctx.timecode);
    if (block.timing) {
      if (this.lastTimingTs != null && block.tsMs > this.lastTimingTs) this.frameMs = block.tsMs - this.lastTimingTs;
      this.lastTimingTs = block.tsMs;
    }
    const done = ctx.splitter.push(block);
    if (done) this.emitPiece(done[0], ctx.timecode, done[1]);
    return true;
  }

  closeCluster() {
    this.state = 'segment-body';
    const ctx = this.cluster;
    this.cluster = null;
    if (!ctx) return true;
    const piece = ctx.splitter.finish();
    if (piece && ctx.timecode != null) this.emitPiece(piece, ctx.timecode, this.estimateEnd(piece));
    return true;
  }

  estimateEnd(piece) {
    const ns = this.stream.defaultDurationNs;
    const declared = ns == null ? null : Math.floor((ns + 500_000) / 1_000_000);
    const frame = declared ?? this.frameMs ?? 0;
    const last = piece.lastTimingTs ?? piece.maxTs;
    return Math.max(last + frame, piece.maxTs);
  }

  emitPiece(piece, tc, endSrc) {
    const first = this.outMs(piece.firstTs);
    const ts = Math.max(first, this.lastOutTs ?? 0);
    const end = Math.max(this.outMs(endSrc), ts);
    const scale = this.stream.timecodeScale;
    const offsetUnits = Math.trunc((this.config.timestampOffsetMs * 1_000_000) / scale);
    const timecode = tc + offsetUnits;
    if (timecode < 0 || !Number.isSafeInteger(timecode)) throw new WebmError('timestamp out of range (negative or overflowing after the offset)');
    this.out.push({
      kind: 'media',
      keyframe: piece.keyframe || this.stream.videoTrack == null,
      timestampMs: ts,
      durationMs: Math.min(end - ts, 0xffffffff),
      bytes: piece.serialize(timecode),
    });
    this.lastOutTs = ts;
    this.endMs = end;
  }

  outMs(src) {
    const v = src + this.config.timestampOffsetMs;
    if (v < 0 || !Number.isSafeInteger(v)) throw new WebmError('timestamp out of range (negative or overflowing after the offset)');
    return v;
  }

  eof() {
    const partial = this.skip > 0 || this.buf.length > 0;
    switch (this.state) {
      case 'ebml-header':
        throw new WebmError(this.received ? 'truncated EBML header at EOF' : 'not a WebM file: empty input');
      case 'segment-header': throw new WebmError('truncated Segment header at EOF');
      case 'segment-body':
        if (partial) throw new WebmError(`truncated ${this.partialName()} at EOF`);
        this.emitInitOnce();
        if (this.segmentEnd != null) throw new WebmError('truncated Segment at EOF');
        return;
      case 'cluster': {
        const complete = !partial && this.cluster?.end == null;
        this.closeCluster();
        if (!complete) throw new WebmError('truncated Cluster at EOF');
        return;
      }
      default:
    }
  }

  partialName() {
    try {
      const h = readHeader(this.buf.view());
      return h && this.skip === 0 ? name(h.id) : 'element';
    } catch {
      return 'element';
    }
  }
}
