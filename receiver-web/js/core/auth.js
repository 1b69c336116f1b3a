// The peer side of the supervisor's RSA challenge handshake (paper section III.C.1), with
// WebCrypto; the mirror of `PeerHandshake` in core/src/auth/peer.rs:
//
//   S: COLLECT_PEER_INFO_REQUEST            P: COLLECT_PEER_INFO_RESPONSE {peer_id, public_key, component_type, agent}
//   S: AUTHENTICATION_REQUEST {supervisor_key}                     P: AUTHENTICATION_RESPONSE
//   S: AUTHENTICATION_CHALLENGE_REQUEST {Enc_peer(a ‖ b)}
//   P: AUTHENTICATION_CHALLENGE_RESPONSE {Enc_supervisor(SHA-256("ownstream-challenge-v1" ‖ peer_id ‖ a ‖ b))}
//   S: AUTHENTICATED {peer_id, heartbeat_ms, ice_servers, supervisors?}
//
// RSA-OAEP with SHA-256 (MGF1-SHA-256, empty label) both ways; keys travel as base64 SPKI DER. Each
// state accepts exactly one message; anything else fails the handshake for good.

import { base64Decode, base64Encode } from './frame.js';

export const PROTOCOL_VERSION = 4; // 4: chunks sign their payload's digest; 3: pre-negotiated edges, KEEPALIVE, ABORT; 2: signed chunks (core/src/protocol.rs)
const DOMAIN = new TextEncoder().encode('ownstream-challenge-v1');
const OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' };

export class AuthError extends Error {
  constructor(message) {
    super(message);
    this.name = 'AuthError';
  }
}

/** This tab's identity: a random 128-bit peer id and a fresh RSA-OAEP key pair. */
export async function generateIdentity(bits = 2048) {
  const keys = await crypto.subtle.generateKey(
    { ...OAEP, modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) },
    false,
    ['encrypt', 'decrypt'],
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey('spki', keys.publicKey));
  return { keys, spki, peerId: crypto.randomUUID() };
}

/** The 16 bytes of a UUID string. */
export function uuidBytes(uuid) {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new AuthError(`not a UUID: ${uuid}`);
  return Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
}

/** f(a, b) = SHA-256(domain ‖ peer_id ‖ a ‖ b). */
export async function challengeAnswer(peerId, a, b) {
  const id = uuidBytes(peerId);
  const input = new Uint8Array(DOMAIN.length + 16 + 32);
  input.set(DOMAIN, 0);
  input.set(id, DOMAIN.length);
  input.set(a, DOMAIN.length + 16);
  input.set(b, DOMAIN.length + 32);
  return new Uint8Array(await crypto.subtle.digest('SHA-256', input));
}

/** `SHA256:<hex>` of an SPKI DER key, as the supervisor prints it. */
export async function fingerprint(spki) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', spki));
  return `SHA256:${Array.from(d, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/** The handshake as a state machine: feed each supervisor message, send what it returns. */
export class PeerHandshake {
  /** `identity` from generateIdentity; `component` 'receiver' or 'broadcaster'. */
  constructor(identity, component, peerId = identity.peerId) {
    this.identity = identity;
    this.component = component;
    this.peerId = peerId;
    this.state = 'await-info-request';
    this.supervisorKey = null;
  }

  /**
   * Takes one message; resolves to `{send: [messages], session}` (session only once
   * authenticated). Rejects with an AuthError on anything unexpected, after which every call fails.
   */
  async handle(msg) {
    try {
      return await this.step(msg);
    } catch (e) {
      this.state = 'failed';
      throw e instanceof AuthError ? e : new AuthError(e.message || String(e));
    }
  }

  async step(msg) {
    if (msg.type === 'ERROR') throw new AuthError(msg.message || msg.code);
    const expect = (type) => {
      if (msg.type !== type) throw new AuthError(`unexpected ${msg.type} during authentication (expected ${type})`);
    };
    switch (this.state) {
      case 'await-info-request':
        expect('COLLECT_PEER_INFO_REQUEST');
        if (msg.protocol !== PROTOCOL_VERSION) throw new AuthError(`unsupported protocol version ${msg.protocol}`);
        this.state = 'await-auth-request';
        return {
          send: [{
            type: 'COLLECT_PEER_INFO_RESPONSE',
            peer_id: this.peerId,
            public_key: base64Encode(this.identity.spki),
            component_type: this.component,
            agent: 'browser',
          }],
        };
      case 'await-auth-request': {
        expect('AUTHENTICATION_REQUEST');
        const der = base64Decode(msg.supervisor_key);
        this.supervisorKey = await crypto.subtle.importKey('spki', der, OAEP, false, ['encrypt']);
        this.fingerprint = await fingerprint(der);
        this.state = 'await-challenge';
        return { send: [{ type: 'AUTHENTICATION_RESPONSE' }] };
      }
      case 'await-challenge': {
        expect('AUTHENTICATION_CHALLENGE_REQUEST');
        let nonce;
        try {
          nonce = new Uint8Array(await crypto.subtle.decrypt(OAEP, this.identity.keys.privateKey, base64Decode(msg.challenge)));
        } catch {
          throw new AuthError('could not decrypt the challenge (bad padding or wrong key)');
        }
        if (nonce.length !== 32) throw new AuthError('could not decrypt the challenge (wrong length)');
        const answer = await challengeAnswer(this.peerId, nonce.subarray(0, 16), nonce.subarray(16));
        const response = new Uint8Array(await crypto.subtle.encrypt(OAEP, this.supervisorKey, answer));
        this.state = 'await-authenticated';
        return { send: [{ type: 'AUTHENTICATION_CHALLENGE_RESPONSE', response: base64Encode(response) }] };
      }
      case 'await-authenticated':
        expect('AUTHENTICATED');
        if (msg.peer_id !== this.peerId) throw new AuthError('the supervisor authenticated another peer id');
        this.state = 'done';
        return {
          send: [],
          session: {
            peerId: msg.peer_id,
            heartbeatMs: msg.heartbeat_ms,
            iceServers: msg.ice_servers ?? [],
            // 'relay': use TURN-relayed candidates only (absent: all).
            iceTransportPolicy: msg.ice_transport_policy === 'relay' ? 'relay' : 'all',
            supervisorFingerprint: this.fingerprint,
            // Other supervisors to reconnect to when this one is lost (a cluster's).
            supervisors: Array.isArray(msg.supervisors)
              ? msg.supervisors.filter((u) => typeof u === 'string' && /^wss?:\/\//.test(u)).slice(0, 8)
              : [],
          },
        };
      default:
        throw new AuthError(`unexpected ${msg.type}: the handshake is ${this.state}`);
    }
  }
}
