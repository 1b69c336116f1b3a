// The driver of a node in a tab: the core's state machine (core/node.js) given its supervisor
// connections (net/signaling.js), WebRTC edges (net/edge.js) and clock. It decides nothing, like
// the Rust peer's driver (peer/src/node.rs): it feeds every event to the node, does what the node
// says, and wakes it when it asks. What a node's outputs mean to its page (chunks for the player,
// the key to sign with, events, the end) goes to the owner's handlers; the receiver and the
// broadcaster (receiver.js, broadcaster.js) are the owners.
//
// A supervisor connection is known by a number and an edge by the node's id for it; events of a
// connection the node dropped or replaced, and of an edge it closed, are not passed on.
//
// Verification is asynchronous (see core/node.js): after each input the driver drains what the
// node decided at once, and while the node is suspended on a chunk's tag it drains again each
// time the node resumes.

import { Node } from '../core/node.js';
import { Signaling } from '../net/signaling.js';
import { Edge } from '../net/edge.js';

export class NodeDriver {
  /**
   * `config`: the node's (core/node.js `nodeConfig`); `on`: the owner's handlers, each optional:
   * `deliver(chunk)`, `ready(keyText)`, `event(event)`, `ended(ending)`, and `changed()` after
   * the parent or the children changed.
   */
  constructor({ url, identity, config, on, relayOnly = false }) {
    Object.assign(this, { url, identity, on, relayOnly });
    this.iceTransportPolicy = relayOnly ? 'relay' : 'all';
    // The page's own supervisor first, then any others it advertised (AUTHENTICATED `supervisors`);
    // the node says which attempt this is, and each failed one moves to the next URL.
    this.urls = [url];
    // The node's reconnection waits are jittered from a seed the driver draws, as the Rust peer's.
    this.node = new Node({ ...config, seed: config.seed ?? Math.floor(Math.random() * 2 ** 53) }, this.now());
    this.conn = 0; // number of the current (or pending) supervisor connection
    this.sig = null;
    this.iceServers = [];
    this.edges = new Map(); // the node's edge id -> Edge
    this.parentEdge = null; // the id of the latest edge toward a parent
    this.lastFailure = null; // the latest failed connection attempt, {kind, reason}
    this.timer = null;
    this.flushing = false;
    this.settling = false;
    this.place = this.placeKey();
    // Offering edges tell when their channel drained to half the relay's limit: the node may send more.
    this.lowThreshold = Math.floor(this.node.config.relay.maxBuffered / 2);
  }

  now() {
    return Math.floor(performance.now());
  }

  /** Starts the node (its first output is `connect`). */
  start() {
    this.flush();
  }

  /** Stops the node: it reports, closes every edge and the connection, and ends. */
  stop() {
    this.input((n, now) => n.handleStop(now));
  }

  /** Applies one input, `f(node, nowMs)`, then does what the node says. */
  input(f) {
    f(this.node, this.now());
    this.flush();
  }

  /** Does what the node asks until it has nothing more to say, then sleeps until its deadline. */
  flush() {
    if (this.flushing) return; // the outer call drains what this one would
    this.flushing = true;
    try {
      for (let out; (out = this.node.pollOutput());) this.apply(out);
    } finally {
      this.flushing = false;
    }
    if (this.node.isSuspended() && !this.settling) {
      this.settling = true;
      this.node.resumed().then(() => {
        this.settling = false;
        this.flush();
      }, (e) => {
        this.settling = false;
        console.error('node:', e);
        this.flush();
      });
    }
    const place = this.placeKey();
    if (place !== this.place) {
      this.place = place;
      this.on.changed?.();
    }
    this.schedule();
  }

  placeKey() {
    return `${this.node.parent()}|${this.node.children().join(',')}`;
  }

  schedule() {
    clearTimeout(this.timer);
    const at = this.node.pollTimeout();
    if (at != null) this.timer = setTimeout(() => this.tick(), Math.max(0, at - this.now()));
  }

  /** The node's deadline (or a channel that drained): report every channel's buffered amount,
   *  then the time. */
  tick() {
    for (const [id, edge] of this.edges) this.node.handleBufferedAmount(id, edge.bufferedAmount);
    this.input((n, now) => n.handleTimeout(now));
  }

  apply(out) {
    const now = this.now();
    switch (out.type) {
      case 'connect':
        this.connect();
        break;
      case 'redirect':
        // The next connection only: later ones go back to the page's own supervisor.
        this.redirectUrl = out.url;
        break;
      case 'disconnect': {
        // Closes the socket after what is queued on it; its later events are not passed on.
        this.conn += 1;
        const sig = this.sig;
        this.sig = null;
        sig?.close(out.reason);
        break;
      }
      case 'send':
        this.sig?.send(out.msg);
        break;
      case 'open-edge':
        this.openEdge(out.edge, out.offerer);
        break;
      case 'signal-edge':
        this.edges.get(out.edge)?.handleSignal(out.payload)
          .catch((e) => console.warn(`edge ${out.edge}: bad signaling from the remote: ${e.message}`));
        break;
      case 'close-edge':
        this.edges.get(out.edge)?.close();
        this.edges.delete(out.edge);
        break;
      case 'transmit': {
        const edge = this.edges.get(out.edge);
        if (edge) {
          edge.send(out.message);
          this.node.handleBufferedAmount(out.edge, edge.bufferedAmount);
        }
        break;
      }
      case 'deliver':
        this.on.deliver?.(out.chunk, now);
        break;
      case 'ready':
        this.on.ready?.(out.key);
        break;
      case 'event':
        this.on.event?.(out.event, now);
        break;
      case 'ended':
        clearTimeout(this.timer);
        this.on.ended?.(out.ending);
        break;
      default:
        console.warn(`unknown node output ${out.type}`);
    }
  }

  connect() {
    this.conn += 1;
    const conn = this.conn;
    const component = this.node.config.component;
    // A redirect names the next connection only; later ones use the page's own list.
    const url = this.redirectUrl ?? this.urls[this.node.connectAttempt() % this.urls.length];
    this.redirectUrl = null;
    Signaling.connect(url, this.identity, component).then((sig) => {
      if (conn !== this.conn) {
        sig.close('no longer wanted');
        return;
      }
      this.attach(sig, conn);
    }, (e) => {
      if (conn !== this.conn) return;
      // Only the supervisor's refusal is one (a close with its reason); a handshake that did not
      // finish in time is a busy supervisor; anything else is a connection that could not be
      // made or broke before the handshake finished.
      const kind = e.kind === 'refused' ? 'refused' : e.kind === 'timeout' ? 'busy' : 'unreachable';
      this.lastFailure = { kind, reason: e.message };
      this.input((n, now) => n.handleConnectFailed(now, this.lastFailure));
    });
  }

  attach(sig, conn) {
    this.sig = sig;
    this.iceServers = sig.session.iceServers ?? [];
    // The page may insist on relayed candidates (`relayOnly`) whatever the supervisor says.
    this.iceTransportPolicy = this.relayOnly || sig.session.iceTransportPolicy === 'relay' ? 'relay' : 'all';
    for (const u of sig.session.supervisors ?? []) {
      if (!this.urls.includes(u) && this.urls.length < 8) this.urls.push(u);
    }
    sig.addEventListener('message', (e) => {
      if (conn === this.conn) this.input((n, now) => n.handleServer(now, e.detail));
    });
    sig.addEventListener('close', (e) => {
      if (conn !== this.conn) return;
      this.sig = null;
      this.input((n, now) => n.handleDisconnected(now, e.detail.reason));
    });
    this.input((n, now) => n.handleConnected(now, sig.session.heartbeatMs));
  }

  openEdge(id, offerer) {
    let edge;
    try {
      edge = new Edge(offerer ? 'offerer' : 'answerer', { iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy, lowThreshold: this.lowThreshold });
    } catch (e) {
      this.node.handleEdgeClosed(this.now(), id, `cannot create a peer connection: ${e.message}`);
      return;
    }
    this.edges.set(id, edge);
    if (!offerer) this.parentEdge = id;
    const current = () => this.edges.get(id) === edge;
    edge.addEventListener('signal', (e) => {
      if (current()) this.input((n, now) => n.handleEdgeSignal(now, id, e.detail));
    });
    edge.addEventListener('open', () => {
      if (current()) this.input((n, now) => n.handleEdgeOpen(now, id));
    });
    edge.addEventListener('message', (e) => {
      if (current()) this.input((n, now) => n.handleEdgeMessage(now, id, e.detail));
    });
    edge.addEventListener('bufferedlow', () => {
      if (current()) this.tick();
    });
    edge.addEventListener('closed', (e) => {
      if (!current()) return;
      this.edges.delete(id);
      this.input((n, now) => n.handleEdgeClosed(now, id, e.detail.reason));
    });
  }

  /** The edge the node numbered `id`, if open. */
  edge(id) {
    return this.edges.get(id) ?? null;
  }
}
