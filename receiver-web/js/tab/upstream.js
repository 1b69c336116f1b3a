// A receiver's side toward its parent: the answering edge the supervisor named, the HELLO that
// tells the parent where to resume, the limit on how long the edge may take to open, and the
// reassembly of the parent's fragments into chunks. The twin of `Downstream` (children.js) and of
// the parent half of peer/src/node/edges.rs.
//
// Events: 'open' ({timings}: the edge's set-up times), 'chunk' (a reassembled chunk, not yet
// verified), 'malformed' ({message}: the parent sent bytes that are not our wire format), and
// 'lost' ({parent}: the edge closed, failed to open in time or carried garbage; the node asks the
// supervisor to be moved).

import { Edge } from '../net/edge.js';
import { FrameError, Reassembler, decodeMessage, encodeHello } from '../core/frame.js';

/** Until the parent sends something, HELLO is said again this often: a first message right after
 *  the channel opens was seen lost by webrtc-rs parents (1 join in ~15). Parents ignore repeats. */
const HELLO_REPEAT_MS = 500;
/** A parent edge that has not opened this long after the supervisor named the parent is given up
 *  (a lost offer, ICE checks that never end); the same limit as the Rust peer's. */
const PARENT_OPEN_LIMIT_MS = 8000;

export class Upstream extends EventTarget {
  /**
   * `signal(parent, payload)` sends WebRTC signaling to the parent through the supervisor;
   * `iceServers()` gives the session's ICE servers; `lastSeq()` the last chunk held (for HELLO);
   * `active()` says whether losing the parent should still be reported (the node is live and
   * connected to the supervisor).
   */
  constructor({ signal, iceServers, lastSeq, active }) {
    super();
    Object.assign(this, { signal, iceServers, lastSeq, active });
    this.place = null; // {peer, edge, opened}
    this.reassembler = new Reassembler();
  }

  /** The current parent's peer id, or null before the first JOINED. */
  get peer() {
    return this.place?.peer ?? null;
  }

  get connected() {
    return !!this.place?.edge?.open;
  }

  /** The supervisor named a (new) parent: forget the old edge and wait for the parent's offer. */
  attach(peer) {
    this.closeEdge();
    this.place = { peer, edge: null, opened: false };
    this.reassembler = new Reassembler();
    this.watchOpen(this.place);
  }

  /** Signaling from the parent; a fresh offer means a fresh edge (the parent may have restarted it). */
  async handleSignal(payload) {
    if (!this.place) return;
    if (payload.kind === 'offer') {
      this.closeEdge();
      this.openEdge();
    }
    await this.place.edge?.handleSignal(payload);
  }

  closeEdge() {
    if (this.place?.edge) {
      this.place.edge.close();
      this.place.edge = null;
    }
  }

  openEdge() {
    const place = this.place;
    const edge = new Edge('answerer', { iceServers: this.iceServers() });
    place.edge = edge;
    const current = () => this.place === place && place.edge === edge;
    let heard = false;
    edge.addEventListener('signal', (e) => this.signal(place.peer, e.detail));
    edge.addEventListener('open', () => {
      if (!current()) return;
      place.opened = true;
      edge.send(encodeHello(this.lastSeq()));
      const repeat = setInterval(() => {
        if (!current() || heard) clearInterval(repeat);
        else edge.send(encodeHello(this.lastSeq()));
      }, HELLO_REPEAT_MS);
      this.emit('open', { timings: edge.timings });
    });
    edge.addEventListener('message', (e) => {
      heard = true;
      if (current()) this.onMessage(e.detail);
    });
    edge.addEventListener('closed', (e) => {
      if (!current()) return;
      place.edge = null;
      if (!this.active()) return;
      console.info(`parent edge closed (${e.detail.reason}); asking to be moved`);
      this.emit('lost', { parent: place.peer });
    });
  }

  onMessage(bytes) {
    let chunk;
    try {
      const msg = decodeMessage(bytes);
      if (msg.type !== 'fragment') return;
      chunk = this.reassembler.handleFragment(msg);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      // An ordered channel that delivered a bad fragment cannot resynchronise: leave this parent.
      this.emit('malformed', { message: e.message });
      this.closeEdge();
      this.emit('lost', { parent: this.place.peer });
      return;
    }
    if (chunk) this.emit('chunk', chunk);
  }

  /** Reports `place`'s parent lost if its edge has not opened in time, and keeps watching. */
  watchOpen(place) {
    setTimeout(() => {
      if (this.place !== place || place.opened || !this.active()) return;
      console.info('the edge to the parent did not open in time; asking to be moved');
      this.closeEdge();
      this.emit('lost', { parent: place.peer });
      this.watchOpen(place);
    }, PARENT_OPEN_LIMIT_MS);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
