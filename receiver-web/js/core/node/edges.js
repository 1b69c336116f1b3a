// A port of core/src/node/edges.rs: the node's edges, the one to the parent the supervisor named
// and one per child, their signaling, HELLO and its repeat, the limit on how long the parent's
// edge may take to open, and what a closed or misbehaving edge means.
//
// The parent's edge is created when the parent's offer arrives (a fresh offer means a fresh edge:
// the parent may have restarted it); a child's edge is created at CONNECT_CHILD and offers. A
// child is sent nothing before its HELLO, and may send nothing else.
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import { HELLO_REPEAT_MS, PARENT_OPEN_LIMIT_MS, parentOpenLimitMs } from '../rules.js';
import { FrameError, KEEPALIVE_LEN, TYPE_KEEPALIVE, VERSION, decodeMessage, encodeHello } from '../frame.js';
import { RelayError } from '../relay.js';

/** The edge to the parent the supervisor named (Parent::new). */
export function newParent(peer, nowMs) {
  return {
    peer,
    edge: null,
    open: false,
    waitingSince: nowMs, // when the current wait for the edge to open began (the limit counts from it)
    greetedAt: null, // when HELLO was last said, while nothing came back yet
    heardAt: null, // when the parent was last heard, once it sent a KEEPALIVE (silence is timed from here)
  };
}

/** Runs a relay call whose RelayError the Rust node ignores (`let _ = ...`). */
function ignoringRelayError(f) {
  try {
    f();
  } catch (e) {
    if (!(e instanceof RelayError)) throw e;
  }
}

export const edges = {
  /** Local signaling of an edge (its offer or answer, a candidate) for the remote end. */
  handleEdgeSignal(nowMs, edge, payload) {
    if (!this.advance(nowMs)) return;
    const to = this.edgePeer(edge);
    if (to != null) this.send({ type: 'SIGNAL', to, payload });
  },

  /** An edge's data channel opened. */
  handleEdgeOpen(nowMs, edge) {
    if (!this.advance(nowMs) || this.standbyOpen(edge)) return;
    if (this.isPendingEdge(edge)) {
      this.completeMove(true);
      return;
    }
    if (!this.isParentEdge(edge)) return; // a child's edge is used once its HELLO comes
    const p = this.parentLink;
    if (p == null) return;
    p.open = true;
    p.waitingSince = null;
    this.failedOpens = 0;
    this.greetParent();
    this.event({ kind: 'parent-open', parent: p.peer });
    // The supervisor counts connected viewers (a broadcaster may be waiting for them).
    this.reportStats();
  },

  /** A data-channel message (a Uint8Array) arrived on an edge. Returns a promise while the chunk
   *  it completed is being verified (the node is suspended until then). */
  handleEdgeMessage(nowMs, edge, message) {
    if (!this.advance(nowMs)) return undefined;
    if (this.isParentEdge(edge)) {
      if (this.parentLink) this.parentLink.greetedAt = null;
      this.heardParent(isKeepalive(message));
      const verifying = this.parentMessage(message);
      if (verifying) return verifying.then(() => this.afterEdgeMessage());
    } else if (!this.standbyMessage(edge, message)) {
      const child = this.childOf(edge);
      if (child != null) {
        this.heardChild(child, isKeepalive(message));
        this.childMessage(child, message);
      }
    }
    this.afterEdgeMessage();
    return undefined;
  },

  afterEdgeMessage() {
    this.pump();
    if (this.live()) this.keepaliveIfDue();
  },

  /** An edge closed by itself (the remote left, ICE failed) or could not be created. */
  handleEdgeClosed(nowMs, edge, reason) {
    if (!this.advance(nowMs)) return;
    if (this.isParentEdge(edge)) {
      const p = this.parentLink;
      if (p == null) return;
      p.edge = null;
      if (!p.open) this.failedOpens += 1;
      p.open = false;
      p.greetedAt = null;
      p.heardAt = null;
      this.repairStart ??= this.nowMs;
      this.event({ kind: 'parent-closed', parent: p.peer, reason });
      if (this.pendingLink != null) {
        // Moving anyway: the new parent, already placed by the supervisor, takes over.
        this.completeMove(false);
        return;
      }
      if (this.switchToStandby(p.peer)) return;
      if (!this.link.isConnected()) {
        // Nobody to tell: an orphan, placed once a supervisor takes its RESUME.
        this.parentLink = null;
      } else if (this.live()) {
        this.send({ type: 'PARENT_LOST', parent: p.peer });
      }
    } else if (this.isPendingEdge(edge)) {
      this.pendingLink.edge = null; // its offer may come again; the open limit still counts
    } else if (!this.standbyClosed(edge)) {
      const child = this.childOf(edge);
      if (child != null) {
        this.childLinks.delete(child);
        this.childHeard.delete(child);
        this.promoted.delete(child);
        ignoringRelayError(() => this.relay.removeChild(child));
      }
    }
  },

  /** The channel of an edge holds `bytes` not yet sent (its bufferedAmount). */
  handleBufferedAmount(edge, bytes) {
    const child = this.childOf(edge);
    if (child == null) return;
    ignoringRelayError(() => this.relay.handleBufferedAmount(child, bytes));
  },

  edgePeer(edge) {
    if (this.isParentEdge(edge)) return this.parentLink?.peer ?? null;
    if (this.isStandbyEdge(edge)) return this.standbyLink.peer;
    if (this.isPendingEdge(edge)) return this.pendingLink.peer;
    return this.childOf(edge) ?? this.standbyChildOf(edge);
  },

  isParentEdge(edge) {
    return this.parentLink != null && this.parentLink.edge === edge;
  },

  childOf(edge) {
    for (const [peer, c] of this.childLinks) if (c.edge === edge) return peer;
    return null;
  },

  childEdge(child) {
    return this.childLinks.get(child)?.edge ?? null;
  },

  routeSignal(from, payload) {
    if (this.pendingLink?.peer === from) {
      if (payload.kind === 'offer') {
        const edge = this.newEdge();
        const old = this.pendingLink.edge;
        this.pendingLink.edge = edge;
        if (old != null) this.emit({ type: 'close-edge', edge: old });
        this.emit({ type: 'open-edge', edge, peer: from, offerer: false });
      }
      const edge = this.pendingLink.edge;
      if (edge != null) this.emit({ type: 'signal-edge', edge, payload });
    } else if (this.parentLink?.peer === from) {
      if (payload.kind === 'offer') {
        this.closeParentEdge();
        const edge = this.newEdge();
        this.parentLink.edge = edge;
        this.emit({ type: 'open-edge', edge, peer: from, offerer: false });
      }
      const edge = this.parentLink.edge;
      if (edge != null) this.emit({ type: 'signal-edge', edge, payload });
    } else {
      const edge = this.childEdge(from);
      if (edge != null) this.emit({ type: 'signal-edge', edge, payload });
      else this.routeStandbySignal(from, payload);
    }
    // Otherwise it is for an edge that no longer exists.
  },

  setParent(parent, depth) {
    if (this.isBroadcaster()) return;
    this.closePendingEdge();
    if (this.parentLink?.peer === parent && this.parentLink.open) {
      // Confirms a switch to the standby: the edge is there already.
      this.depth = depth;
      return;
    }
    if (this.setParentToStandby(parent, depth)) return;
    this.closeParentEdge();
    this.counters.repairs += 1;
    this.depth = depth;
    this.repairStart ??= this.nowMs;
    this.resetReassembly();
    this.parentLink = newParent(parent, this.nowMs);
    this.event({ kind: 'reattached', parent, depth });
  },

  connectChild(child) {
    if (!this.live() || this.connectStandbyChild(child)) return;
    this.dropChild(child);
    const edge = this.newEdge();
    ignoringRelayError(() => this.relay.addChild(child));
    this.childLinks.set(child, { edge });
    this.emit({ type: 'open-edge', edge, peer: child, offerer: true });
  },

  dropChild(child) {
    const old = this.childLinks.get(child);
    if (old) {
      this.childLinks.delete(child);
      this.emit({ type: 'close-edge', edge: old.edge });
    }
    this.childHeard.delete(child);
    this.promoted.delete(child);
    ignoringRelayError(() => this.relay.removeChild(child));
  },

  childMessage(child, message) {
    let msg = null;
    try {
      msg = decodeMessage(message);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
    }
    // Timed by `heardChild`; one before HELLO (a lost HELLO) is harmless too.
    if (msg?.type === 'keepalive') return;
    if (msg?.type !== 'hello') {
      this.event({ kind: 'child-misbehaved', child });
      this.dropChild(child);
      return;
    }
    // A child that heard nothing yet repeats its HELLO: nothing to do (RelayError::DuplicateHello).
    if (this.relay.hasHello(child)) return;
    try {
      this.relay.handleHello(this.nowMs, child, msg.last);
      if (!this.childHeard.has(child)) this.childHeard.set(child, null);
      this.event({ kind: 'child-hello', child, last: msg.last });
    } catch (e) {
      if (!(e instanceof RelayError)) throw e;
      this.event({ kind: 'relay-refused', error: e.message });
    }
  },

  /** Says HELLO on the parent's edge with the newest chunk held. */
  greetParent() {
    const p = this.parentLink;
    if (p == null || p.edge == null || !p.open) return;
    p.greetedAt = this.nowMs;
    this.emit({ type: 'transmit', edge: p.edge, message: encodeHello(this.newestSeq) });
  },

  parentTimeout() {
    const q = this.pendingLink;
    const moving = q?.waitingSince != null ? q.waitingSince + PARENT_OPEN_LIMIT_MS : null;
    const p = this.parentLink;
    if (p == null) return null;
    const hello = p.greetedAt == null ? null : p.greetedAt + HELLO_REPEAT_MS;
    const open = p.waitingSince != null && this.live() ? p.waitingSince + parentOpenLimitMs(this.failedOpens) : null;
    const times = [hello, open, moving].filter((t) => t != null);
    return times.length ? Math.min(...times) : null;
  },

  parentTimers() {
    const now = this.nowMs;
    const q = this.pendingLink;
    if (q?.waitingSince != null && now >= q.waitingSince + PARENT_OPEN_LIMIT_MS) {
      // The new edge never opened: move anyway, and its open limit reports it below.
      this.completeMove(false);
    }
    if (this.parentLink == null) return;
    if (this.parentLink.greetedAt != null && now >= this.parentLink.greetedAt + HELLO_REPEAT_MS) {
      this.event({ kind: 'hello-repeated' });
      this.greetParent();
    }
    const p = this.parentLink;
    if (p == null) return;
    const overdue = p.waitingSince != null && now >= p.waitingSince + parentOpenLimitMs(this.failedOpens);
    if (overdue && this.live()) {
      this.failedOpens += 1;
      // Wait again before the next report, should the supervisor keep this parent.
      p.waitingSince = now;
      this.event({ kind: 'parent-open-timeout', parent: p.peer });
      this.leaveParent();
    }
  },

  /** Closes the edge to the parent and asks the supervisor for another parent. */
  leaveParent() {
    const parent = this.parentLink?.peer;
    if (parent == null) return;
    this.closeParentEdge();
    this.repairStart ??= this.nowMs;
    if (this.pendingLink != null) {
      this.completeMove(false);
      return;
    }
    if (this.switchToStandby(parent)) return;
    if (this.link.isConnected()) {
      this.send({ type: 'PARENT_LOST', parent });
    } else {
      this.parentLink = null; // as in `handleEdgeClosed`
    }
  },

  closeParentEdge() {
    const p = this.parentLink;
    if (p == null) return;
    p.open = false;
    p.greetedAt = null;
    p.heardAt = null;
    if (p.edge != null) {
      const edge = p.edge;
      p.edge = null;
      this.emit({ type: 'close-edge', edge });
    }
  },

  /** MOVE: make-before-break. Keep the current parent while the new one's edge opens; a node
   *  without an open parent edge (or moving to its open standby) has nothing to keep. */
  moveTo(parent, depth) {
    if (this.isBroadcaster()) return;
    const p = this.parentLink;
    const keep = this.live() && p != null && p.open && p.peer !== parent;
    const s = this.standbyLink;
    const warm = s != null && s.peer === parent && s.open;
    if (!keep || warm) {
      this.setParent(parent, depth);
      return;
    }
    this.closePendingEdge();
    this.depth = depth;
    const q = newParent(parent, this.nowMs);
    if (s != null && s.peer === parent) {
      // The new parent's CONNECT_CHILD keeps the standby edge still opening: so must this side,
      // or the next STANDBY closes the edge the move waits for and the move hangs until its open
      // limit.
      q.edge = s.edge;
      this.standbyLink = null;
    }
    this.pendingLink = q;
    this.event({ kind: 'moving', parent, depth });
  },

  isPendingEdge(edge) {
    return this.pendingLink != null && this.pendingLink.edge === edge;
  },

  closePendingEdge() {
    const q = this.pendingLink;
    this.pendingLink = null;
    if (q?.edge != null) this.emit({ type: 'close-edge', edge: q.edge });
  },

  /** The move's new parent becomes the parent: at once with HELLO when its edge `opened` (the
   *  old edge closes after), or still opening when the old parent was lost or the new edge is
   *  overdue (a break: the repair time counts). */
  completeMove(opened) {
    const q = this.pendingLink;
    if (q == null) return;
    this.pendingLink = null;
    this.closeParentEdge();
    if (opened) {
      q.open = true;
      q.waitingSince = null;
    } else {
      this.repairStart ??= this.nowMs;
    }
    this.counters.repairs += 1;
    this.resetReassembly();
    this.parentLink = q;
    this.event({ kind: 'reattached', parent: q.peer, depth: this.depth });
    if (opened) {
      this.greetParent();
      this.event({ kind: 'parent-open', parent: q.peer });
    }
  },

  /** Closes every edge, as a crash would. */
  closeAllEdges() {
    this.closePendingEdge();
    this.closeStandbyEdges();
    this.closeParentEdge();
    this.parentLink = null;
    for (const child of this.childPeers()) this.dropChild(child);
  },
};

/** Whether a data-channel message is a KEEPALIVE (the only one that starts silence timing). */
function isKeepalive(message) {
  return message.length === KEEPALIVE_LEN && message[0] === VERSION && message[1] === TYPE_KEEPALIVE;
}
