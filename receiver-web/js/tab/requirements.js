// What a browser needs to watch (or broadcast) as a peer, checked up front so that a browser lacking
// something is told what, in plain words, instead of failing later somewhere obscure (a handshake
// that never answers, a player that never starts). Each check uses the feature the way the node
// will, cheaply: a type query, a key import, a constructor.
//
// A watcher needs: a secure context (WebCrypto exists only there), Media Source Extensions that
// play WebM (VP8 or VP9 video), WebCrypto RSA-OAEP (the supervisor's handshake) and Ed25519 (every
// chunk's signature), and WebRTC data channels. A broadcaster needs all but MSE, plus a camera API
// and MediaRecorder writing WebM.

/** The WebM types a stream may use (the broadcasters' codecs); one playable one is enough to try. */
export const WEBM_TYPES = [
  'video/webm; codecs="vp8,vorbis"', 'video/webm; codecs="vp8,opus"', 'video/webm; codecs="vp9,opus"',
];

// A throwaway RSA public key (SPKI), only imported to learn whether RSA-OAEP is known.
const RSA_SPKI = 'MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC8pXinG5mSUBOyZUnc3jXkYoe/6FEPoL/SiJbolVS9j5z+qUsCHeEsg6CHvzslAL5LvXx506zrJynzx3ZIrVbZ6N+ZCgxlWN8RqSbbByIE0d7n5D04S3jvHNjfT/jwbW1SK04I/BcIjTIyNqYI1Axa2Fq12+2k56CB7FvIoUxRawIDAQAB';
// RFC 8032's first test public key, only imported to learn whether Ed25519 is known.
const ED25519_RAW = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';

const SECURE = 'a secure context (open the page over https://, or as http://localhost on this machine)';

const fromHex = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
const fromBase64 = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

async function imports(format, key, algorithm, usages) {
  try {
    await crypto.subtle.importKey(format, key, algorithm, false, usages);
    return true;
  } catch {
    return false;
  }
}

function mseWebm() {
  return Boolean(window.MediaSource?.isTypeSupported && WEBM_TYPES.some((t) => MediaSource.isTypeSupported(t)));
}

function dataChannels() {
  return typeof window.RTCPeerConnection === 'function' && typeof window.RTCDataChannel === 'function'
    && typeof RTCPeerConnection.prototype.createDataChannel === 'function';
}

/**
 * The features this browser lacks for `role` ('watch' or 'broadcast'), each named for a person
 * (empty when nothing is missing).
 */
export async function missingFeatures(role = 'watch') {
  if (!window.isSecureContext || !window.crypto?.subtle) return [SECURE];
  const missing = [];
  if (role === 'watch' && !mseWebm()) missing.push('Media Source Extensions that play WebM video (VP8 or VP9)');
  if (!(await imports('spki', fromBase64(RSA_SPKI), { name: 'RSA-OAEP', hash: 'SHA-256' }, ['encrypt']))) {
    missing.push('WebCrypto RSA-OAEP (to sign in to the supervisor)');
  }
  if (!(await imports('raw', fromHex(ED25519_RAW), { name: 'Ed25519' }, ['verify']))) {
    missing.push('WebCrypto Ed25519 (to check the broadcaster\'s signatures)');
  }
  if (!dataChannels()) missing.push('WebRTC data channels (RTCPeerConnection, RTCDataChannel)');
  if (role === 'broadcast') {
    if (!navigator.mediaDevices?.getUserMedia) missing.push('camera access (navigator.mediaDevices)');
    if (!window.MediaRecorder?.isTypeSupported?.('video/webm;codecs=vp8')) missing.push('MediaRecorder writing WebM (VP8)');
  }
  return missing;
}

/** A sentence naming what is missing, for the page's banner; null when nothing is. */
export function missingMessage(missing, role = 'watch') {
  if (!missing.length) return null;
  const list = missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(', ')} and ${missing.at(-1)}`;
  const verb = role === 'watch' ? 'watch streams' : 'broadcast';
  return `This browser cannot ${verb} here: it lacks ${list}. A current Firefox, Chrome, Edge or Safari has ${missing.length === 1 ? 'it' : 'them'}.`;
}
