// A port of core/src/node/liveness.rs: keepalives and silence. A parent sends a KEEPALIVE to each
// child whose HELLO came every KEEPALIVE_MS; a child to its parent every KEEPALIVE_SLOW_MS; a
// standby parent one when a standby edge opens (core/node/standby.js), and no more until a switch.
// A child takes a parent that has sent one and then nothing for SILENCE_LIMIT_MS as failed (left
// as a closed one is: PARENT_LOST), a parent drops a child silent for CHILD_SILENCE_LIMIT_MS. A
// frozen process keeps its sockets open, so only silence shows it. Timing starts at a peer's first KEEPALIVE: a peer that never sends one is never taken for silent.
// With an open standby edge, a parent silent STANDBY_SILENCE_LIMIT_MS while the player starves
// (STARVING_MS) is left at once for the standby (the full limit would outlast the child's buffer).
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import {
  CHILD_SILENCE_LIMIT_MS, KEEPALIVE_MS, KEEPALIVE_SLOW_MS, SILENCE_LIMIT_MS, STANDBY_SILENCE_LIMIT_MS,
  STARVING_MS,
} from '../rules.js';
import { encodeKeepalive } from '../frame.js';

export const liveness = {
  /** Whether a child is sent keepalives now (its HELLO came). */
  fastTargets() {
    return this.childHeard.size > 0;
  },

  /** Whether the parent is sent keepalives now (once open). */
  slowTargets() {
    const p = this.parentLink;
    return p != null && p.open && p.edge != null;
  },

  livenessTimeout() {
    const times = [];
    if (this.fastTargets()) times.push(this.keepaliveSent + KEEPALIVE_MS);
    if (this.slowTargets()) times.push(this.keepaliveSlowSent + KEEPALIVE_SLOW_MS);
    const p = this.parentLink;
    if (p != null && p.open && p.heardAt != null) times.push(p.heardAt + SILENCE_LIMIT_MS);
    const early = this.standbyLeaveAt();
    if (early != null) times.push(early);
    for (const t of this.childHeard.values()) if (t != null) times.push(t + CHILD_SILENCE_LIMIT_MS);
    return times.length ? Math.min(...times) : null;
  },

  livenessTimers() {
    const now = this.nowMs;
    const p = this.parentLink;
    const leaveAt = this.standbyLeaveAt();
    const early = leaveAt != null && now >= leaveAt;
    if (p != null && p.open && p.heardAt != null && (early || now >= p.heardAt + SILENCE_LIMIT_MS)) {
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
      .filter((c) => this.childHeard.get(c) != null && now >= this.childHeard.get(c) + CHILD_SILENCE_LIMIT_MS);
    for (const child of silent) {
      this.event({ kind: 'child-silent', child });
      this.dropChild(child);
    }
    this.keepaliveIfDue();
  },

  /** When a silent parent is left early for the standby (STANDBY_SILENCE_LIMIT_MS): a live
   *  receiver whose parent has spoken, with an open standby edge to another peer and a player
   *  that starves by then; null otherwise. */
  standbyLeaveAt() {
    const p = this.parentLink;
    if (p == null || !p.open || p.heardAt == null || !this.standbyUsable(p.peer)) return null;
    const starving = this.starvingFrom();
    return starving == null ? null : Math.max(p.heardAt + STANDBY_SILENCE_LIMIT_MS, starving);
  },

  /** From when the driver's player starves (STARVING_MS); null before it first played. */
  starvingFrom() {
    const p = this.playerStats();
    if (p.playing) return Math.max(0, this.nowMs + p.buffer_ahead_ms - STARVING_MS);
    return p.stalls > 0 ? 0 : null;
  },

  /** Sends the keepalives that are due: at every timeout and after every data-channel message (a
   *  hidden tab's timers are throttled to one a second, its message events are not). */
  keepaliveIfDue() {
    const edges = [];
    if (this.fastTargets() && this.nowMs >= this.keepaliveSent + KEEPALIVE_MS) {
      this.keepaliveSent = this.nowMs;
      for (const c of [...this.childHeard.keys()].sort()) {
        const edge = this.childEdge(c);
        if (edge != null) edges.push(edge);
      }
    }
    if (this.slowTargets() && this.nowMs >= this.keepaliveSlowSent + KEEPALIVE_SLOW_MS) {
      this.keepaliveSlowSent = this.nowMs;
      const p = this.parentLink;
      if (p != null && p.open && p.edge != null) edges.push(p.edge);
    }
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
