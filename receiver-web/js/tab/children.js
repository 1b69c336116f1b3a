// A node's side toward its children, shared by the receiver and the broadcaster: one offering edge
// per child, the relay that decides what each child gets, and the pump that moves the relay's
// messages into the data channels, paced and bounded. The twin of the child half of
// peer/src/node/edges.rs and node/media.rs.
//
// Events: 'change' (the set of children changed).

import { Edge } from '../net/edge.js';
import { decodeMessage } from '../core/frame.js';
import { Relay, RelayError } from '../core/relay.js';

export class Downstream extends EventTarget {
  /**
   * `signal(child, payload)` sends WebRTC signaling to a child through the supervisor;
   * `iceServers()` gives the session's ICE servers.
   */
  constructor(relayConfig, { signal, iceServers }) {
    super();
    this.relayConfig = relayConfig;
    this.relay = new Relay(relayConfig);
    this.edges = new Map();
    this.signal = signal;
    this.iceServers = iceServers;
    this.bytesSent = 0;
  }

  now() {
    return Math.round(performance.now());
  }

  ids() {
    return [...this.edges.keys()];
  }

  has(child) {
    return this.edges.has(child);
  }

  /** Opens an edge to a new child (CONNECT_CHILD): a fresh one if it existed. */
  connect(child) {
    this.drop(child);
    const edge = new Edge('offerer', { iceServers: this.iceServers(), lowThreshold: Math.floor(this.relay.config.maxBuffered / 2) });
    this.edges.set(child, edge);
    this.relay.addChild(child);
    edge.addEventListener('signal', (e) => this.signal(child, e.detail));
    edge.addEventListener('message', (e) => this.onMessage(child, edge, e.detail));
    edge.addEventListener('bufferedlow', () => this.pump());
    edge.addEventListener('closed', () => {
      if (this.edges.get(child) !== edge) return;
      this.forget(child);
    });
    this.changed();
  }

  /** Closes the edge to a child (DROP_CHILD, or the node is leaving). */
  drop(child) {
    this.edges.get(child)?.close();
    this.forget(child);
  }

  forget(child) {
    const had = this.edges.delete(child);
    if (this.relay.hasChild(child)) this.relay.removeChild(child);
    if (had) this.changed();
  }

  closeAll() {
    for (const child of this.ids()) this.drop(child);
  }

  /** Starts over with an empty relay (a new broadcast under the same name). */
  reset() {
    this.closeAll();
    this.relay = new Relay(this.relayConfig);
  }

  /** Signaling from a child; false if `from` is not a child. */
  async handleSignal(from, payload) {
    const edge = this.edges.get(from);
    if (!edge) return false;
    await edge.handleSignal(payload);
    return true;
  }

  onMessage(child, edge, bytes) {
    if (this.edges.get(child) !== edge) return;
    let msg = null;
    try {
      msg = decodeMessage(bytes);
    } catch {
      // handled below: only HELLO may come from a child
    }
    if (msg?.type !== 'hello') {
      console.warn(`child ${child} sent something other than HELLO; closing its edge`);
      this.drop(child);
      return;
    }
    // A repeated HELLO (the child heard nothing yet) changes nothing.
    if (!this.relay.hasHello(child)) this.relay.handleHello(this.now(), child, msg.last);
    this.pump();
  }

  /** A verified chunk (or the broadcaster's own) to keep and pass on. */
  handleChunk(chunk) {
    try {
      this.relay.handleChunk(this.now(), chunk);
    } catch (e) {
      if (!(e instanceof RelayError)) throw e;
      console.warn(`relay refused a chunk: ${e.message}`);
    }
    this.pump();
  }

  /** Sends what the relay allows now to each child, then sleeps until its next deadline. */
  pump() {
    clearTimeout(this.timer);
    const now = this.now();
    for (const [child, edge] of this.edges) this.relay.handleBufferedAmount(child, edge.bufferedAmount);
    this.relay.handleTimeout(now);
    for (let t; (t = this.relay.pollTransmit(now));) {
      const edge = this.edges.get(t.child);
      if (!edge || !edge.send(t.message)) continue;
      this.bytesSent += t.message.length;
      this.relay.handleBufferedAmount(t.child, edge.bufferedAmount);
    }
    for (let ev; (ev = this.relay.pollEvent());) console.info('relay', JSON.stringify(ev));
    const at = this.relay.pollTimeout();
    if (at != null) this.timer = setTimeout(() => this.pump(), Math.max(1, at - now));
  }

  /** Every child has been sent everything queued for it. */
  drained() {
    return this.ids().every((c) => !this.relay.queuedBytes(c) && !(this.edges.get(c).bufferedAmount > 0));
  }

  stop() {
    clearTimeout(this.timer);
    this.closeAll();
  }

  changed() {
    this.dispatchEvent(new CustomEvent('change'));
  }
}
