// A port of core/src/node/standby.rs: the warm edge (no media; one KEEPALIVE, from the standby
// parent as it opens, so a switched-to parent's silence is timed from the switch) from a viewer to
// the standby parent the supervisor planned (STANDBY), and the standby parent's warm edges to its
// standby children (CONNECT_STANDBY). When the parent is lost the viewer switches at once: the
// standby edge becomes the parent edge, HELLO names the newest chunk held, SWITCHED_PARENT tells
// the supervisor (which confirms with a SET_PARENT naming the parent the viewer already has, or
// corrects). A HELLO on a standby child's edge makes it a child at once; the CONNECT_CHILD that
// confirms it keeps the edge.
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import { decodeMessage, encodeKeepalive, FrameError } from '../frame.js';
import { RelayError } from '../relay.js';

function decoded(message) {
  try {
    return decodeMessage(message);
  } catch (e) {
    if (!(e instanceof FrameError)) throw e;
    return null;
  }
}

function ignoringRelayError(f) {
  try {
    f();
  } catch (e) {
    if (!(e instanceof RelayError)) throw e;
  }
}

export const standby = {
  /** STANDBY: keep a warm edge to `peer` (or none). */
  setStandby(peer) {
    if (this.isBroadcaster() || !this.live()) return;
    const want =
      peer != null && this.parentLink?.peer !== peer && this.pendingLink?.peer !== peer ? peer : null;
    if ((this.standbyLink?.peer ?? null) === want) return;
    this.closeStandbyEdge();
    this.standbyLink = want == null ? null : { peer: want, edge: null, open: false, heardAt: null };
  },

  /** CONNECT_STANDBY: offer a warm edge to `child`. */
  connectStandby(child) {
    if (!this.live() || this.childLinks.has(child)) return;
    this.dropStandby(child);
    const edge = this.newEdge();
    this.standbyChildren.set(child, { edge, open: false });
    this.emit({ type: 'open-edge', edge, peer: child, offerer: true });
  },

  /** DROP_STANDBY: close the warm edge to `child`. */
  dropStandby(child) {
    const s = this.standbyChildren.get(child);
    if (s) {
      this.standbyChildren.delete(child);
      this.emit({ type: 'close-edge', edge: s.edge });
    }
  },

  closeStandbyEdge() {
    const s = this.standbyLink;
    this.standbyLink = null;
    if (s?.edge != null) this.emit({ type: 'close-edge', edge: s.edge });
  },

  isStandbyEdge(edge) {
    return this.standbyLink != null && this.standbyLink.edge === edge;
  },

  standbyChildOf(edge) {
    for (const c of [...this.standbyChildren.keys()].sort()) {
      if (this.standbyChildren.get(c).edge === edge) return c;
    }
    return null;
  },

  /** Signaling from the standby parent or for a standby child (true if it was). */
  routeStandbySignal(from, payload) {
    const s = this.standbyLink;
    if (s != null && s.peer === from) {
      if (payload.kind === 'offer') {
        const edge = this.newEdge();
        const old = s.edge;
        s.open = false;
        s.heardAt = null;
        s.edge = edge;
        if (old != null) this.emit({ type: 'close-edge', edge: old });
        this.emit({ type: 'open-edge', edge, peer: from, offerer: false });
      }
      if (s.edge != null) this.emit({ type: 'signal-edge', edge: s.edge, payload });
      return true;
    }
    const c = this.standbyChildren.get(from);
    if (c) {
      this.emit({ type: 'signal-edge', edge: c.edge, payload });
      return true;
    }
    return false;
  },

  /** A standby edge opened (true if `edge` is one). */
  standbyOpen(edge) {
    if (this.isStandbyEdge(edge)) {
      this.standbyLink.open = true;
      return true;
    }
    const c = this.standbyChildOf(edge);
    if (c != null) {
      this.standbyChildren.get(c).open = true;
      // The edge's one message before a switch: see core/src/node/standby.rs.
      this.emit({ type: 'transmit', edge, message: encodeKeepalive() });
      return true;
    }
    return false;
  },

  /** A message on a standby edge: true if consumed here (a HELLO makes the edge a child's and is
   *  left for the child's path). */
  standbyMessage(edge, message) {
    const m = decoded(message);
    if (this.isStandbyEdge(edge)) {
      const s = this.standbyLink;
      if (m?.type === 'keepalive' || s.heardAt != null) s.heardAt = this.nowMs;
      return true; // a standby sends nothing but its one keepalive before the switch
    }
    const child = this.standbyChildOf(edge);
    if (child == null) return false;
    if (m?.type === 'hello') {
      // The child switched to this node: a child from now on.
      this.standbyChildren.delete(child);
      this.childLinks.set(child, { edge });
      ignoringRelayError(() => this.relay.addChild(child));
      this.promoted.add(child);
      this.event({ kind: 'standby-child-switched', child });
      return false;
    }
    return true;
  },

  /** A standby edge closed (true if `edge` was one). */
  standbyClosed(edge) {
    if (this.isStandbyEdge(edge)) {
      const s = this.standbyLink;
      s.edge = null;
      s.open = false;
      s.heardAt = null;
      return true;
    }
    const c = this.standbyChildOf(edge);
    if (c != null) {
      this.standbyChildren.delete(c);
      return true;
    }
    return false;
  },

  /** Whether a live node could switch to its standby now, its parent `lost` gone: the standby
   *  edge is open and leads to another peer. */
  standbyUsable(lost) {
    const s = this.standbyLink;
    return this.live() && s != null && s.open && s.edge != null && s.peer !== lost;
  },

  /** The parent `lost` is gone: switch to the standby's open edge (false if there is none). */
  switchToStandby(lost) {
    if (!this.standbyUsable(lost)) return false;
    const s = this.standbyLink;
    this.standbyLink = null;
    this.closeParentEdge();
    this.adoptStandby(s);
    if (this.link.isConnected()) this.send({ type: 'SWITCHED_PARENT', lost, parent: this.parentLink?.peer ?? lost });
    return true;
  },

  /** Makes the standby edge the parent edge (saying HELLO on it if it is open). */
  adoptStandby(s) {
    this.counters.repairs += 1;
    this.repairStart ??= this.nowMs;
    this.repairBySwitch = s.open;
    if (s.open) this.counters.standby_switches += 1;
    this.resetReassembly();
    this.parentLink = {
      peer: s.peer,
      edge: s.edge,
      open: s.open,
      waitingSince: s.open ? null : this.nowMs,
      greetedAt: null,
      // The standby sent its one keepalive when the edge opened: the new parent's silence is
      // timed from the switch.
      heardAt: s.heardAt == null ? null : this.nowMs,
    };
    this.event({ kind: 'switched-to-standby', parent: s.peer });
    this.greetParent();
  },

  /** SET_PARENT that names the standby: switch to it now (true if it did). */
  setParentToStandby(parent, depth) {
    const s = this.standbyLink;
    if (s == null || s.peer !== parent) return false;
    this.standbyLink = null;
    this.closeParentEdge();
    this.depth = depth;
    this.adoptStandby(s);
    return true;
  },

  /** CONNECT_CHILD for a child this node holds an edge to from its standby: keep it. */
  connectStandbyChild(child) {
    const s = this.standbyChildren.get(child);
    if (s) {
      // Moved here by the supervisor before the child said HELLO: the warm edge serves.
      this.standbyChildren.delete(child);
      this.childLinks.set(child, { edge: s.edge });
      ignoringRelayError(() => this.relay.addChild(child));
      return true;
    }
    // The child switched here (its HELLO came first): this confirms it.
    return this.promoted.delete(child) && this.childLinks.has(child);
  },

  /** Closes every standby edge (the node ends, or starts over). */
  closeStandbyEdges() {
    this.closeStandbyEdge();
    for (const c of [...this.standbyChildren.keys()].sort()) this.dropStandby(c);
    this.promoted.clear();
  },
};
