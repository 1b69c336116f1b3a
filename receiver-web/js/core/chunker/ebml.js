// EBML primitives and the stream's head for the chunker (the port of core/src/webm/ebml.rs and
// head.rs): element IDs, variable-length integers, element headers (null = need more bytes), a
// child iterator over a complete element's body, the DocType, TimestampScale and Tracks the
// chunker needs, and the big-endian writers it uses to re-serialise clusters. Malformed bytes
// throw a WebmError.

import { WebmError } from '../webm.js';

export const ID = {
  EBML: 0x1a45dfa3, DOC_TYPE: 0x4282, SEGMENT: 0x18538067, SEEK_HEAD: 0x114d9b74, INFO: 0x1549a966,
  TIMECODE_SCALE: 0x2ad7b1, TRACKS: 0x1654ae6b, TRACK_ENTRY: 0xae, TRACK_NUMBER: 0xd7, TRACK_TYPE: 0x83,
  DEFAULT_DURATION: 0x23e383, CLUSTER: 0x1f43b675, TIMECODE: 0xe7, SIMPLE_BLOCK: 0xa3, BLOCK_GROUP: 0xa0,
  BLOCK: 0xa1, REFERENCE_BLOCK: 0xfb, CUES: 0x1c53bb6b, TAGS: 0x1254c367, CHAPTERS: 0x1043a770,
  ATTACHMENTS: 0x1941a469,
};
export const NAMES = {
  [ID.EBML]: 'EBML header', [ID.SEGMENT]: 'Segment', [ID.SEEK_HEAD]: 'SeekHead', [ID.INFO]: 'Info',
  [ID.TRACKS]: 'Tracks', [ID.CLUSTER]: 'Cluster', [ID.TIMECODE]: 'Cluster Timecode',
  [ID.SIMPLE_BLOCK]: 'SimpleBlock', [ID.BLOCK_GROUP]: 'BlockGroup', [ID.CUES]: 'Cues', [ID.TAGS]: 'Tags',
  [ID.CHAPTERS]: 'Chapters', [ID.ATTACHMENTS]: 'Attachments',
};
export const ENDS_UNKNOWN_CLUSTER = new Set([ID.EBML, ID.SEGMENT, ID.SEEK_HEAD, ID.INFO, ID.TRACKS, ID.CLUSTER,
  ID.CUES, ID.TAGS, ID.CHAPTERS, ID.ATTACHMENTS]);
export const UNKNOWN_SIZE_8 = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
export const DEFAULT_TIMECODE_SCALE = 1_000_000;
export const name = (id) => NAMES[id] ?? 'element';


// ---- EBML primitives (null = need more bytes) --------------------------------------------------

export function readVint(buf, pos) {
  if (pos >= buf.length) return null;
  const first = buf[pos];
  if (first === 0) throw new WebmError('invalid EBML variable-length integer');
  const len = Math.clz32(first) - 23;
  if (pos + len > buf.length) return null;
  let value = len === 8 ? 0 : first & (0xff >> len);
  for (let i = 1; i < len; i++) value = value * 256 + buf[pos + i];
  return { value, len, allOnes: value === 2 ** (7 * len) - 1 };
}

export function readHeader(buf, pos = 0) {
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

export const total = (h) => (h.size == null ? null : h.size + h.len);

export function readUint(body) {
  if (body.length > 8) throw new WebmError('malformed WebM: unsigned integer longer than 8 bytes');
  let v = 0;
  for (const b of body) v = v * 256 + b;
  return v;
}

export function* children(body) {
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

export function checkDocType(body) {
  for (const [id, value] of children(body)) {
    if (id !== ID.DOC_TYPE) continue;
    const doc = new TextDecoder().decode(value).replace(/\0+$/, '');
    if (doc !== 'webm' && doc !== 'matroska') throw new WebmError(`unsupported EBML DocType "${doc}"`);
  }
}

export function parseInfo(body) {
  let scale = DEFAULT_TIMECODE_SCALE;
  for (const [id, value] of children(body)) if (id === ID.TIMECODE_SCALE) scale = readUint(value);
  if (scale === 0) throw new WebmError('malformed WebM: TimestampScale is 0');
  return scale;
}

export function parseTracks(body, timecodeScale) {
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

export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const u32be = (v) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

export function u64be(v) {
  const out = new Array(8).fill(0);
  for (let i = 7; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v % 256;
  return out;
}

/** An 8-byte EBML size: the length marker, then the value in 7 bytes. */
export function size8(size) {
  const out = [0x01, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 7, v = size; i >= 1; i--, v = Math.floor(v / 256)) out[i] = v % 256;
  return out;
}
