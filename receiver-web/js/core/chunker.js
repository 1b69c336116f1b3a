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
import {
  DEFAULT_TIMECODE_SCALE, ENDS_UNKNOWN_CLUSTER, ID, UNKNOWN_SIZE_8, checkDocType, concat, name, parseInfo, parseTracks,
  readHeader, readUint, total, u32be,
} from './chunker/ebml.js';
import { Splitter, parseBlock } from './chunker/cluster.js';

export const DEFAULT_CHUNKER_CONFIG = Object.freeze({
  maxElementLen: 32 * 1024 * 1024,
  maxChunkMs: 1000,
  maxChunkLen: 8 * 1024 * 1024,
  timestampOffsetMs: 0,
});

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
