// The signaling client: one WebSocket to the supervisor, authenticated with the RSA handshake
// before anything else, then JSON messages both ways. Incoming frames are bounded like the
// supervisor bounds ours; a malformed one closes the connection with a reason. The heartbeat is
// the node's (core/node.js sends HEARTBEAT), as are the limits and the handshake's deadline
// (core/rules.js).

import { PeerHandshake } from '../core/auth.js';
import { HANDSHAKE_TIMEOUT_MS, MAX_SIGNALING_MESSAGE_LEN as MAX_MESSAGE_LEN } from '../core/rules.js';

export { MAX_MESSAGE_LEN };

export class SignalingError extends Error {
  constructor(message, kind) {
    super(message);
    this.name = 'SignalingError';
    this.kind = kind; // 'unreachable' | 'refused' | 'timeout' | 'protocol'; only 'refused' is the supervisor's word
  }
}

/** The supervisor's WebSocket URL for the page's own origin. */
export function defaultSupervisorUrl(loc = location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/**
 * An authenticated connection. Events: 'message' (detail: a server message) and 'close' (detail:
 * {reason}), the latter once.
 */
export class Signaling extends EventTarget {
  constructor(ws, session) {
    super();
    this.ws = ws;
    this.session = session;
    this.closed = false;
    ws.onmessage = (ev) => {
      const msg = parse(ev.data);
      if (msg instanceof Error) return this.close(msg.message);
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    };
    ws.onclose = (ev) => this.finish(ev.reason || `connection closed (code ${ev.code})`);
    ws.onerror = () => {};
  }

  /**
   * Connects, authenticates and resolves with a Signaling; rejects with a SignalingError saying
   * what went wrong in plain words.
   */
  static connect(url, identity, component, { peerId = identity.peerId } = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        reject(new SignalingError(`cannot open ${url}: ${e.message}`, 'unreachable'));
        return;
      }
      const handshake = new PeerHandshake(identity, component, peerId);
      let settled = false;
      let opened = false;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try { ws.close(1000); } catch { /* already closed */ }
        reject(err);
      };
      const timer = setTimeout(() => fail(new SignalingError(`the supervisor did not complete authentication within ${HANDSHAKE_TIMEOUT_MS / 1000} s`, 'timeout')), HANDSHAKE_TIMEOUT_MS);
      // Messages are handled one at a time: each handshake step awaits WebCrypto.
      let chain = Promise.resolve();
      ws.onopen = () => { opened = true; };
      ws.onmessage = (ev) => {
        chain = chain.then(async () => {
          if (settled) return;
          const msg = parse(ev.data);
          if (msg instanceof Error) return fail(new SignalingError(msg.message, 'protocol'));
          try {
            const { send, session } = await handshake.handle(msg);
            for (const m of send) ws.send(JSON.stringify(m));
            if (session) {
              settled = true;
              clearTimeout(timer);
              resolve(new Signaling(ws, session));
            }
          } catch (e) {
            fail(new SignalingError(`authentication refused: ${e.message}`, 'refused'));
          }
        });
      };
      // The supervisor refuses by closing with its reason; a close without one is a connection
      // that broke (or never was) before the handshake finished.
      ws.onclose = (ev) => {
        let why;
        if (opened && ev.reason) why = new SignalingError(`authentication refused: ${ev.reason}`, 'refused');
        else if (opened) why = new SignalingError(`the connection to ${url} closed during authentication (code ${ev.code})`, 'unreachable');
        else why = new SignalingError(`cannot reach the supervisor at ${url}`, 'unreachable');
        fail(why);
      };
      ws.onerror = () => {};
    });
  }

  send(msg) {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close(reason = 'closed by the page') {
    try { this.ws.close(1000, reason.slice(0, 120)); } catch { /* already closed */ }
    this.finish(reason);
  }

  finish(reason) {
    if (this.closed) return;
    this.closed = true;
    this.dispatchEvent(new CustomEvent('close', { detail: { reason } }));
  }
}

function parse(data) {
  if (typeof data !== 'string') return new Error('the supervisor sent a binary frame');
  if (data.length > MAX_MESSAGE_LEN) return new Error(`message of ${data.length} bytes is over the ${MAX_MESSAGE_LEN}-byte limit`);
  try {
    const msg = JSON.parse(data);
    if (typeof msg !== 'object' || msg === null || typeof msg.type !== 'string') return new Error('malformed message: no type');
    return msg;
  } catch (e) {
    return new Error(`malformed message: ${e.message}`);
  }
}
