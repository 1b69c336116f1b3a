// Chunk framing: the signed chunk and the data-channel messages that carry it. The byte layouts are
// normative in the Rust core (`core/src/frame.rs`, module docs); this is the same format (3):
//
//   chunk    = seq u64 | flags u8 | timestamp_ms u64 | duration_ms u32 | payload_len u32
//              | tag [32] = HMAC-SHA256(stream key, bytes 0..25 ‖ digest)
//              | signature [64] = Ed25519(broadcaster's key, "ownstream-chunk-v3" ‖ stream key [32]
//                                 ‖ stream_len u16 ‖ stream name ‖ bytes 0..25 ‖ digest)
//              | payload
//   digest   = SHA-256(payload), computed once per chunk for both checks
//   FRAGMENT = version 3 | type 1 | seq u64 | index u16 | count u16 | total_len u32 | bytes
//   HELLO    = version 3 | type 2 | has_last u8 | last_seq u64
//   ABORT    = version 3 | type 4 | seq u64   (the parent sends no more of chunk seq: drop it)
//   KEEPALIVE = version 3 | type 3 (exactly 2 bytes; both ways, after HELLO)
//
// Integers are big-endian. Decoding never trusts a length it has not checked and never throws
// anything but a FrameError; a reassembled chunk is at most MAX_CHUNK_LEN bytes. The two limits
// are the core's, from the generated rules.

import { FRAGMENT_LEN as RULES_FRAGMENT_LEN, MAX_CHUNK_LEN as RULES_MAX_CHUNK_LEN, MAX_DATA_MESSAGE_LEN } from './rules.js';

export const FLAG_INIT = 1;
export const FLAG_KEYFRAME = 2;
export const FLAG_END = 4;
export const HEADER_LEN = 25;
export const TAG_LEN = 32;
export const SIGNATURE_LEN = 64;
export const PREFIX_LEN = HEADER_LEN + TAG_LEN + SIGNATURE_LEN;
export const SIGNATURE_DOMAIN = new TextEncoder().encode('ownstream-chunk-v3');
export const MAX_CHUNK_LEN = RULES_MAX_CHUNK_LEN;
export const MAX_MESSAGE = MAX_DATA_MESSAGE_LEN;
/** What a chunk sent whole is cut into: whole SCTP packets (`FRAGMENT_LEN` in core/src/frame.rs). */
export const FRAGMENT_LEN = RULES_FRAGMENT_LEN;
export const VERSION = 3;
export const TYPE_FRAGMENT = 1;
export const TYPE_HELLO = 2;
export const TYPE_ABORT = 4;
export const FRAGMENT_HEADER_LEN = 18;
export const HELLO_LEN = 11;
export const ABORT_LEN = 10;
export const TYPE_KEEPALIVE = 3;
export const KEEPALIVE_LEN = 2;

/** Everything that can be wrong with a chunk or a message. */
export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameError';
  }
}

function u64(view, offset, what) {
  const v = view.getBigUint64(offset, false);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`${what} ${v} is out of range`);
  return Number(v);
}

/**
 * A decoded chunk. `bytes` is the whole encoding (what is verified, relayed and fragmented again);
 * `payload` is a view into it.
 */
export class Chunk {
  constructor({ seq, flags, timestampMs, durationMs, payload, bytes }) {
    Object.assign(this, { seq, flags, timestampMs, durationMs, payload, bytes });
  }

  get isInit() { return (this.flags & FLAG_INIT) !== 0; }
  get isKeyframe() { return (this.flags & FLAG_KEYFRAME) !== 0; }
  get isEnd() { return (this.flags & FLAG_END) !== 0; }

  /** Parses an encoded chunk (a Uint8Array); verifies neither the tag nor the signature. */
  static decode(bytes) {
    const fixed = PREFIX_LEN;
    if (bytes.length < fixed) throw new FrameError(`truncated chunk: need ${fixed} bytes, got ${bytes.length}`);
    if (bytes.length > MAX_CHUNK_LEN) throw new FrameError(`chunk of ${bytes.length} bytes exceeds the ${MAX_CHUNK_LEN}-byte limit`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const declared = view.getUint32(21, false);
    if (declared !== bytes.length - fixed) {
      throw new FrameError(`chunk payload_len says ${declared} bytes but ${bytes.length - fixed} follow the signature`);
    }
    return new Chunk({
      seq: u64(view, 0, 'seq'),
      flags: bytes[8],
      timestampMs: u64(view, 9, 'timestamp_ms'),
      durationMs: view.getUint32(17, false),
      payload: bytes.subarray(fixed),
      bytes,
    });
  }

  /** Builds a chunk, tagged and signed by `signer` (see `makeSigner`). */
  static async sign(signer, { seq, flags, timestampMs, durationMs, payload }) {
    const bytes = new Uint8Array(PREFIX_LEN + payload.length);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0, BigInt(seq), false);
    bytes[8] = flags;
    view.setBigUint64(9, BigInt(timestampMs), false);
    view.setUint32(17, durationMs >>> 0, false);
    view.setUint32(21, payload.length, false);
    bytes.set(payload, PREFIX_LEN);
    const digest = await sha256(payload);
    const tag = await crypto.subtle.sign('HMAC', signer.hmac, taggedBytes(bytes, digest));
    bytes.set(new Uint8Array(tag), HEADER_LEN);
    const message = signedMessage(bytes, digest, signer.streamKey, signer.stream);
    const signature = await crypto.subtle.sign('Ed25519', signer.privateKey, message);
    bytes.set(new Uint8Array(signature), HEADER_LEN + TAG_LEN);
    return Chunk.decode(bytes);
  }
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

// A node checks a chunk's tag and then its signature; both cover the payload's digest, so it is
// computed once per chunk (a chunk's bytes never change once decoded).
const digests = new WeakMap();

/** SHA-256 of the chunk's payload (a promise of 32 bytes), what the tag and signature cover. */
function payloadDigest(chunk) {
  let digest = digests.get(chunk);
  if (digest === undefined) {
    digest = sha256(chunk.payload);
    digests.set(chunk, digest);
  }
  return digest;
}

/** Header ‖ digest: what the tag covers. */
function taggedBytes(bytes, digest) {
  const out = new Uint8Array(HEADER_LEN + digest.length);
  out.set(bytes.subarray(0, HEADER_LEN), 0);
  out.set(digest, HEADER_LEN);
  return out;
}

/**
 * What the broadcaster signs for the chunk encoded in `bytes` whose payload has `digest`: the
 * domain, the stream key's 32 raw bytes, the stream name (u16 length first), the header and the
 * digest.
 */
function signedMessage(bytes, digest, streamKey, stream) {
  const name = new TextEncoder().encode(stream);
  const out = new Uint8Array(SIGNATURE_DOMAIN.length + 32 + 2 + name.length + HEADER_LEN + digest.length);
  let at = 0;
  const put = (b) => { out.set(b, at); at += b.length; };
  put(SIGNATURE_DOMAIN);
  put(streamKey);
  put([name.length >> 8, name.length & 0xff]);
  put(name);
  put(bytes.subarray(0, HEADER_LEN));
  put(digest);
  return out;
}

/** The stream key's 32 raw bytes from its base64 text; throws a FrameError otherwise. */
export function streamKeyBytes(b64) {
  let raw;
  try {
    raw = base64Decode(b64);
  } catch {
    throw new FrameError('stream key is not valid base64');
  }
  if (raw.length !== 32) throw new FrameError(`stream key must be 32 bytes, got ${raw.length}`);
  return raw;
}

/** Imports the stream's 32-byte key (base64, as the supervisor sends it) for HMAC-SHA256. */
export async function importStreamKey(b64, usages = ['verify']) {
  const raw = streamKeyBytes(b64);
  return crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, usages);
}

/** Checks a chunk's tag (WebCrypto compares in constant time). */
export async function verifyChunk(key, chunk) {
  const tag = chunk.bytes.subarray(HEADER_LEN, HEADER_LEN + TAG_LEN);
  return crypto.subtle.verify('HMAC', key, tag, taggedBytes(chunk.bytes, await payloadDigest(chunk)));
}

/** Imports the broadcaster's Ed25519 public key (32 bytes, base64, as `JOINED` carries it). */
export async function importSigningKey(b64) {
  let raw;
  try {
    raw = base64Decode(b64);
  } catch {
    throw new FrameError('bad signing key: not valid base64');
  }
  if (raw.length !== 32) throw new FrameError('bad signing key: not 32 bytes');
  return crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
}

/**
 * Checks a chunk's signature: `origin` is {publicKey: CryptoKey (importSigningKey), streamKey:
 * the stream key's raw bytes, stream: the stream name}. False if anything was altered, the chunk
 * belongs to another stream or broadcast, or another key signed it.
 */
export async function verifySignature(origin, chunk) {
  const signature = chunk.bytes.subarray(HEADER_LEN + TAG_LEN, PREFIX_LEN);
  const message = signedMessage(chunk.bytes, await payloadDigest(chunk), origin.streamKey, origin.stream);
  return crypto.subtle.verify('Ed25519', origin.publicKey, signature, message);
}

/** A fresh Ed25519 key pair for a broadcaster; `publicKey` is its base64 text for REGISTER_STREAM. */
export async function generateSigningKey() {
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: base64Encode(raw) };
}

/** What `Chunk.sign` needs for the broadcast of `stream` registered with stream key `keyText`. */
export async function makeSigner(keyText, stream, privateKey) {
  return { hmac: await importStreamKey(keyText, ['sign']), streamKey: streamKeyBytes(keyText), stream, privateKey };
}

/** A HELLO: `last` is the newest chunk held, or null for a new viewer. */
export function encodeHello(last) {
  const out = new Uint8Array(HELLO_LEN);
  const view = new DataView(out.buffer);
  out[0] = VERSION;
  out[1] = TYPE_HELLO;
  out[2] = last == null ? 0 : 1;
  view.setBigUint64(3, BigInt(last ?? 0), false);
  return out;
}

/** An ABORT: the parent will send no more of chunk `seq`, whose first fragments it passed on. */
export function encodeAbort(seq) {
  const out = new Uint8Array(ABORT_LEN);
  out[0] = VERSION;
  out[1] = TYPE_ABORT;
  new DataView(out.buffer).setBigUint64(2, BigInt(seq), false);
  return out;
}

/**
 * The first fragment's chunk flags and timestamp, read from the chunk header it starts with, so a
 * relay can pass the chunk on before it is whole (unverified until the chunk is); null for a
 * later fragment or one too short to hold them.
 */
export function chunkHead(frag) {
  if (frag.index !== 0 || frag.bytes.length < 17) return null;
  const view = new DataView(frag.bytes.buffer, frag.bytes.byteOffset, frag.bytes.byteLength);
  const timestampMs = view.getBigUint64(9, false);
  // A timestamp past 2^53 cannot be a Number; such a chunk fails to decode when whole anyway.
  if (timestampMs > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return { flags: frag.bytes[8], timestampMs: Number(timestampMs) };
}

/** A KEEPALIVE: "I am alive" (see core/src/node/liveness.rs). */
export function encodeKeepalive() {
  return Uint8Array.of(VERSION, TYPE_KEEPALIVE);
}

/**
 * Parses a data-channel message (Uint8Array): `{type: 'fragment', seq, index, count, totalLen,
 * bytes}`, `{type: 'hello', last}`, `{type: 'abort', seq}` or `{type: 'keepalive'}`.
 */
export function decodeMessage(bytes) {
  if (bytes.length < 2) throw new FrameError(`truncated message: need 2 bytes, got ${bytes.length}`);
  if (bytes[0] !== VERSION) throw new FrameError(`unsupported message version ${bytes[0]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[1] === TYPE_FRAGMENT) {
    if (bytes.length < FRAGMENT_HEADER_LEN) {
      throw new FrameError(`truncated FRAGMENT: need ${FRAGMENT_HEADER_LEN} bytes, got ${bytes.length}`);
    }
    return {
      type: 'fragment',
      seq: u64(view, 2, 'seq'),
      index: view.getUint16(10, false),
      count: view.getUint16(12, false),
      totalLen: view.getUint32(14, false),
      bytes: bytes.subarray(FRAGMENT_HEADER_LEN),
    };
  }
  if (bytes[1] === TYPE_HELLO) {
    if (bytes.length !== HELLO_LEN) throw new FrameError('malformed HELLO: length is not 11 bytes');
    const last = u64(view, 3, 'last_seq');
    if (bytes[2] === 0) {
      if (last !== 0) throw new FrameError('malformed HELLO: last_seq must be 0 when has_last is 0');
      return { type: 'hello', last: null };
    }
    if (bytes[2] === 1) return { type: 'hello', last };
    throw new FrameError('malformed HELLO: has_last is neither 0 nor 1');
  }
  if (bytes[1] === TYPE_ABORT) {
    if (bytes.length !== ABORT_LEN) throw new FrameError(`truncated ABORT: need ${ABORT_LEN} bytes, got ${bytes.length}`);
    return { type: 'abort', seq: u64(view, 2, 'seq') };
  }
  if (bytes[1] === TYPE_KEEPALIVE) {
    if (bytes.length !== KEEPALIVE_LEN) throw new FrameError('malformed KEEPALIVE: length is not 2 bytes');
    return { type: 'keepalive' };
  }
  throw new FrameError(`unknown message type ${bytes[1]}`);
}

/** Cuts a chunk's encoding into FRAGMENT messages of at most `maxMessage` bytes. */
export function fragment(chunk, maxMessage = FRAGMENT_LEN) {
  const room = maxMessage - FRAGMENT_HEADER_LEN;
  if (room <= 0) throw new FrameError(`max message size ${maxMessage} leaves no room for fragment data`);
  const encoded = chunk.bytes;
  if (encoded.length > MAX_CHUNK_LEN) {
    throw new FrameError(`chunk of ${encoded.length} bytes exceeds the ${MAX_CHUNK_LEN}-byte limit`);
  }
  const count = Math.ceil(encoded.length / room);
  if (count > 0xffff) throw new FrameError(`chunk would need ${count} fragments, more than a u16 can count`);
  const messages = [];
  for (let index = 0; index < count; index++) {
    const piece = encoded.subarray(index * room, Math.min((index + 1) * room, encoded.length));
    const out = new Uint8Array(FRAGMENT_HEADER_LEN + piece.length);
    const view = new DataView(out.buffer);
    out[0] = VERSION;
    out[1] = TYPE_FRAGMENT;
    view.setBigUint64(2, BigInt(chunk.seq), false);
    view.setUint16(10, index, false);
    view.setUint16(12, count, false);
    view.setUint32(14, encoded.length, false);
    out.set(piece, FRAGMENT_HEADER_LEN);
    messages.push(out);
  }
  return messages;
}

/**
 * Rebuilds chunks from in-order fragments (the channel is reliable and ordered); holds at most one
 * chunk in progress. After any error the chunk in progress is dropped: the caller should leave
 * the edge, since an ordered channel that delivered a bad fragment cannot resynchronise.
 */
export class Reassembler {
  constructor() {
    this.current = null;
  }

  /** The sequence number of the chunk in progress, or null. */
  inProgress() {
    return this.current ? this.current.seq : null;
  }

  /** The parent's ABORT: drops chunk `seq` if it is the one in progress; true if it was. An ABORT
   *  for another chunk changes nothing (it can only be late or redundant). */
  abort(seq) {
    const matches = this.inProgress() === seq;
    if (matches) this.current = null;
    return matches;
  }

  /** Takes a decoded fragment; returns the Chunk when its last piece arrives, else null. */
  handleFragment(frag) {
    try {
      return this.accept(frag);
    } catch (e) {
      this.current = null;
      throw e;
    }
  }

  accept(frag) {
    if (frag.count === 0) throw new FrameError('fragment count is 0');
    if (frag.index >= frag.count) throw new FrameError(`fragment index ${frag.index} is not below count ${frag.count}`);
    if (frag.totalLen > MAX_CHUNK_LEN) {
      throw new FrameError(`chunk of ${frag.totalLen} bytes exceeds the ${MAX_CHUNK_LEN}-byte limit`);
    }
    let cur = this.current;
    if (!cur) {
      if (frag.index !== 0) throw new FrameError(`fragment index ${frag.index} arrived, expected 0`);
      // Grow as data arrives rather than trusting total_len up front: a lying header on one small
      // fragment must not make us allocate 16 MiB.
      cur = { seq: frag.seq, count: frag.count, totalLen: frag.totalLen, next: 0, parts: [], received: 0 };
    } else {
      if (frag.seq !== cur.seq) throw new FrameError(`fragment for seq ${frag.seq} arrived while seq ${cur.seq} is in progress`);
      if (frag.count !== cur.count || frag.totalLen !== cur.totalLen) throw new FrameError('fragment header changed mid-chunk (count or total_len)');
      if (frag.index !== cur.next) throw new FrameError(`fragment index ${frag.index} arrived, expected ${cur.next}`);
    }
    const received = cur.received + frag.bytes.length;
    const last = frag.index + 1 === frag.count;
    if (received > cur.totalLen || (last && received !== cur.totalLen)) {
      throw new FrameError(`fragments carry ${received} bytes, total_len says ${cur.totalLen}`);
    }
    cur.parts.push(frag.bytes);
    cur.received = received;
    if (!last) {
      cur.next = frag.index + 1;
      this.current = cur;
      return null;
    }
    this.current = null;
    const whole = new Uint8Array(cur.totalLen);
    let at = 0;
    for (const p of cur.parts) {
      whole.set(p, at);
      at += p.length;
    }
    const chunk = Chunk.decode(whole);
    // As in the core: a chunk whose own seq is not its fragments' is malformed framing.
    if (chunk.seq !== cur.seq) throw new FrameError(`fragments of seq ${cur.seq} carry a chunk of seq ${chunk.seq}`);
    return chunk;
  }
}

/** Standard base64 (with padding) to bytes. */
export function base64Decode(text) {
  const bin = atob(text.trim());
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Bytes to standard base64 (with padding). */
export function base64Encode(bytes) {
  let bin = '';
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(bin);
}
