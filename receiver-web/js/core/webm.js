// A minimal EBML reader for what the browser needs from a WebM stream: the codecs declared in the
// init segment's Tracks (to build the MediaSource MIME type). Every length is checked against the
// bytes at hand; malformed input gives a WebmError, never a wrong answer.

export class WebmError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WebmError';
  }
}

export const ID = Object.freeze({
  EBML: 0x1a45dfa3,
  SEGMENT: 0x18538067,
  INFO: 0x1549a966,
  TRACKS: 0x1654ae6b,
  TRACK_ENTRY: 0xae,
  TRACK_TYPE: 0x83,
  CODEC_ID: 0x86,
  CLUSTER: 0x1f43b675,
});

/** Size value meaning "unknown size" for a vint of `len` bytes. */
const unknownSize = (len) => 2 ** (7 * len) - 1;

/** Reads a variable-length integer at `pos`: {value, len, unknown}; null if more bytes are needed. */
export function readVint(bytes, pos, { keepMarker = false } = {}) {
  if (pos >= bytes.length) return null;
  const first = bytes[pos];
  if (first === 0) throw new WebmError(`invalid EBML length descriptor at byte ${pos}`);
  const len = Math.clz32(first) - 23; // 1..8
  if (pos + len > bytes.length) return null;
  let value = keepMarker ? first : first & (0xff >> len);
  for (let i = 1; i < len; i++) value = value * 256 + bytes[pos + i];
  return { value, len, unknown: !keepMarker && value === unknownSize(len) };
}

/** Reads an element header at `pos`: {id, size (null if unknown), headerLen}; null if incomplete. */
export function readHeader(bytes, pos) {
  const id = readVint(bytes, pos, { keepMarker: true });
  if (!id) return null;
  if (id.len > 4) throw new WebmError(`element ID of ${id.len} bytes at byte ${pos}`);
  const size = readVint(bytes, pos + id.len);
  if (!size) return null;
  return { id: id.value, size: size.unknown ? null : size.value, headerLen: id.len + size.len };
}

/** Children of a master element's body `[start, end)`, as headers with their offsets. */
function* children(bytes, start, end) {
  let pos = start;
  while (pos < end) {
    const h = readHeader(bytes, pos);
    if (!h || h.size == null || pos + h.headerLen + h.size > end) {
      throw new WebmError(`truncated or unsized element at byte ${pos}`);
    }
    yield { ...h, start: pos + h.headerLen, end: pos + h.headerLen + h.size };
    pos += h.headerLen + h.size;
  }
}

/** The codec IDs of the init segment's tracks, e.g. ['V_VP8', 'A_VORBIS']. */
export function trackCodecs(init) {
  let pos = 0;
  const ebml = readHeader(init, pos);
  if (!ebml || ebml.id !== ID.EBML || ebml.size == null) throw new WebmError('the init segment does not start with an EBML header');
  pos += ebml.headerLen + ebml.size;
  const seg = readHeader(init, pos);
  if (!seg || seg.id !== ID.SEGMENT) throw new WebmError('no Segment after the EBML header');
  pos += seg.headerLen;
  const end = seg.size == null ? init.length : Math.min(init.length, pos + seg.size);
  const codecs = [];
  while (pos < end) {
    const h = readHeader(init, pos);
    if (!h || h.size == null) break;
    if (h.id === ID.TRACKS) {
      for (const entry of children(init, pos + h.headerLen, Math.min(end, pos + h.headerLen + h.size))) {
        if (entry.id !== ID.TRACK_ENTRY) continue;
        for (const f of children(init, entry.start, entry.end)) {
          if (f.id === ID.CODEC_ID) codecs.push(new TextDecoder().decode(init.subarray(f.start, f.end)).replace(/\0+$/, ''));
        }
      }
      break;
    }
    pos += h.headerLen + h.size;
  }
  if (!codecs.length) throw new WebmError('the init segment declares no tracks');
  return codecs;
}

const MSE_CODECS = { V_VP8: 'vp8', V_VP9: 'vp9', V_AV1: 'av01.0.08M.08', A_VORBIS: 'vorbis', A_OPUS: 'opus' };

/** The MediaSource MIME type for an init segment, e.g. `video/webm; codecs="vp8,vorbis"`. */
export function mimeType(init) {
  const ids = trackCodecs(init);
  const unknown = ids.filter((c) => !MSE_CODECS[c]);
  if (unknown.length) throw new WebmError(`this player cannot play the codec ${unknown.join(', ')}`);
  const video = ids.some((c) => c.startsWith('V_'));
  return `${video ? 'video' : 'audio'}/webm; codecs="${ids.map((c) => MSE_CODECS[c]).join(',')}"`;
}
