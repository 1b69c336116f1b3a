// A port of core/src/node/liveness.rs: keepalives and silence. Each end of an edge whose HELLO was
// said sends a KEEPALIVE every KEEPALIVE_MS, and takes a peer that has sent one and then nothing
// for SILENCE_LIMIT_MS as failed: a silent parent is left as a closed one is (PARENT_LOST), a
// silent child is dropped. A frozen process keeps its sockets open, so only silence shows it.
// Timing starts at a peer's first KEEPALIVE: a peer that never sends one is never taken for silent.
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import { KEEPALIVE_MS, SILENCE_LIMIT_MS } from '../rules.js';
import { encodeKeepalive } from '../frame.js';

export const liveness = {
  /** Whether any edge carries keepalives now: the parent's once open, each child's after HELLO. */
  keepaliveTargets() {
    const p = this.parentLink;
    return (p != null && p.open && p.edge != null) || this.childHeard.size > 0 || this.standbyEdges().length > 0;
  },

  livenessTimeout() {
    const times = [];
    if (this.keepaliveTargets()) times.push(this.keepaliveSent + KEEPALIVE_MS);
    const p = this.parentLink;
    if (p != null && p.open && p.heardAt != null) times.push(p.heardAt + SILENCE_LIMIT_MS);
    for (const t of this.childHeard.values()) if (t != null) times.push(t + SILENCE_LIMIT_MS);
    return times.length ? Math.min(...times) : null;
  },

  livenessTimers() {
    const now = this.nowMs;
    const p = this.parentLink;
    if (p != null && p.open && p.heardAt != null && now >= p.heardAt + SILENCE_LIMIT_MS) {
      const silentMs = now - p.heardAt;
      p.heardAt = null; // reported once
      // A node that is ending keeps what it has: the end chunk may still come.
      if (this.live()) {
        this.counters.parents_silent += 1;
        this.event({ kind: 'parent-silent', parent: p.peer, silentMs });
        this.leaveParent();
      }
    }
    const silent = [...this.childHeard.keys()].sort()
      .filter((c) => this.childHeard.get(c) != null && now >= this.childHeard.get(c) + SILENCE_LIMIT_MS);
    for (const child of silent) {
      this.event({ kind: 'child-silent', child });
      this.dropChild(child);
    }
    this.keepaliveIfDue();
  },

  /** Sends the keepalives if they are due: at every timeout and after every data-channel message
   *  (a hidden tab's timers are throttled to one a second, its message events are not). */
  keepaliveIfDue() {
    if (this.keepaliveTargets() && this.nowMs >= this.keepaliveSent + KEEPALIVE_MS) this.sendKeepalives();
  },

  /** One KEEPALIVE on every edge that carries them. */
  sendKeepalives() {
    this.keepaliveSent = this.nowMs;
    const edges = [];
    const p = this.parentLink;
    if (p != null && p.open && p.edge != null) edges.push(p.edge);
    for (const c of [...this.childHeard.keys()].sort()) {
      const edge = this.childEdge(c);
      if (edge != null) edges.push(edge);
    }
    edges.push(...this.standbyEdges());
    for (const edge of edges) this.emit({ type: 'transmit', edge, message: encodeKeepalive() });
  },

  /** A message came from the parent: a KEEPALIVE starts (or keeps) the silence timing. */
  heardParent(keepalive) {
    const p = this.parentLink;
    if (p != null && (keepalive || p.heardAt != null)) p.heardAt = this.nowMs;
  },

  /** A message came from a child after its HELLO: a KEEPALIVE starts (or keeps) the timing. */
  heardChild(child, keepalive) {
    if (!this.childHeard.has(child)) return;
    if (keepalive || this.childHeard.get(child) != null) this.childHeard.set(child, this.nowMs);
  },
};
