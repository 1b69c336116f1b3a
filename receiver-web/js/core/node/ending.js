// A port of core/src/node/ending.rs: how a node ends. A stream that ends reaches a receiver twice:
// the end chunk down the tree and STREAM_ENDED from the supervisor, in either order. Told first, a
// receiver waits up to END_GRACE_MS for the end chunk (then plays out what it has); with the end
// chunk, it lets its children take what is queued for them, up to DRAIN_TIMEOUT_MS, then reports,
// closes every edge and the connection, and ends. A broadcaster whose source ended does the same
// and then sends END_STREAM. A stop, a kill or a lost supervisor ends a node at once.
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import { DRAIN_TIMEOUT_MS, END_GRACE_MS } from '../rules.js';
import { DONE, DRAINING, GRACE } from './phase.js';

/** One line for people about how a node ended (Ending::describe in core/src/node.rs). */
export function describeEnding({ kind, reason }) {
  switch (kind) {
    case 'stream_ended': return `stream ended: ${reason}`;
    case 'stopped': return 'stopped';
    case 'connect_failed': return reason;
    case 'supervisor_lost': return `supervisor connection lost: ${reason}`;
    case 'killed': return `killed by the operator: ${reason}`;
    case 'output_failed': return `cannot write the output: ${reason}`;
    default: return `${kind}: ${reason}`;
  }
}

export const ending = {
  streamEnded(reason) {
    if (!this.live() || this.isBroadcaster()) return;
    this.event({ kind: 'stream-ending', reason });
    if (this.endSeen) {
      this.beginDrain({ kind: 'stream_ended', reason });
    } else {
      this.phase = { kind: GRACE, until: this.nowMs + END_GRACE_MS, reason };
    }
  },

  /** The last chunks are out (or will never come): let the children take them, then end. */
  beginDrain(end) {
    if (this.phase.kind === DRAINING || this.phase.kind === DONE) return;
    this.phase = { kind: DRAINING, until: this.nowMs + DRAIN_TIMEOUT_MS, ending: end };
  },

  endingTimeout() {
    const { kind, until } = this.phase;
    return kind === GRACE || kind === DRAINING ? until : null;
  },

  endingTimers() {
    const phase = this.phase;
    if (phase.kind === GRACE && this.nowMs >= phase.until) {
      this.event({ kind: 'player-end' });
      this.beginDrain({ kind: 'stream_ended', reason: phase.reason });
    } else if (phase.kind === DRAINING && this.nowMs >= phase.until) {
      this.finish(phase.ending);
    }
  },

  /** Ends a draining node once every child has taken everything. */
  checkDrained() {
    if (this.phase.kind === DRAINING && this.drained()) this.finish(this.phase.ending);
  },

  /** Reports, closes every edge and the connection, and ends. */
  finish(end) {
    if (this.phase.kind === DONE) return;
    this.reportStats();
    if (this.isBroadcaster() && end.kind === 'stream_ended') this.send({ type: 'END_STREAM' });
    this.phase = { kind: DONE };
    this.closeAllEdges();
    this.emit({ type: 'disconnect', reason: describeEnding(end) });
    this.emit({ type: 'ended', ending: end });
  },
};
