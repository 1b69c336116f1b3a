// The node's part in measuring latency and in the stream's latency mode: a port of
// core/src/node/timing.rs. The tab's driver reports the play position with its player numbers
// (`position_ms`, `started`), and follows the `latency-mode` event to reconfigure its player.

import { glassToGlassMs } from '../latency.js';
import { MAX_REPAIR_SAMPLES } from '../rules.js';

/** A broadcaster re-announces its epoch when its estimate moved this much (ms). */
export const EPOCH_RESEND_MS = 5;

export const timing = {
  timingConnected() {
    this.clock.handleConnected(this.nowMs);
    this.timingSent = null;
  },

  /** Sends the clock request that is due, if any (at connecting and with each report). */
  clockTimers() {
    const t0 = this.clock.pollRequest(this.nowMs);
    if (t0 != null) this.send({ type: 'CLOCK_REQUEST', t0 });
  },

  clockReply(t0, serverMs) {
    if (this.clock.handleReply(this.nowMs, t0, serverMs)) this.announceTiming();
  },

  /** Broadcaster: a media chunk was released now. */
  released(timestampMs, durationMs) {
    if (this.epoch.handleRelease(this.nowMs, timestampMs, durationMs)) this.announceTiming();
  },

  announceTiming() {
    if (!this.isBroadcaster() || !this.link.inStream) return;
    const latency = this.config.latency;
    const offset = this.clock.offsetMs();
    const epochMs = this.epoch.localMs != null && offset != null ? this.epoch.localMs + offset : null;
    const sent = this.timingSent;
    const stale = sent == null || sent.latency !== latency
      || (sent.epochMs == null && epochMs != null)
      || (sent.epochMs != null && epochMs != null && Math.abs(sent.epochMs - epochMs) >= EPOCH_RESEND_MS);
    if (!stale) return;
    this.timingSent = { latency, epochMs };
    this.send({ type: 'STREAM_TIMING', latency, ...(epochMs != null ? { epoch_ms: epochMs } : {}) });
  },

  /** Viewer: the broadcaster's mode and epoch, through the supervisor. */
  streamTiming(latency, epochMs) {
    if (this.isBroadcaster()) return;
    if (epochMs != null) this.streamEpochMs = epochMs;
    if (this.config.latency !== latency) {
      this.config.latency = latency;
      this.event({ kind: 'latency-mode', mode: latency });
    }
  },

  /** Viewer: a new media chunk arrived now. Notes how far behind its release it came and, if a
   *  recovery just ended, what the recovery added to that (see Rust `chunk_late`). */
  chunkLate(timestampMs, durationMs) {
    const offset = this.clock.offsetMs();
    const late = offset != null && this.streamEpochMs != null
      ? glassToGlassMs(this.nowMs, offset, this.streamEpochMs, timestampMs + durationMs)
      : null;
    const pending = this.delayPending;
    this.delayPending = null;
    if (pending != null && pending[1] != null && late != null) {
      const list = pending[0] ? this.switchDelays : this.repairDelays;
      if (list.length < MAX_REPAIR_SAMPLES) list.push(Math.max(0, late - pending[1]));
    }
    this.lastLate = late;
  },

  /** How far behind live the media on screen is (ms), or null. */
  latencyMs() {
    const p = this.playerStats();
    if (this.isBroadcaster() || !p.started || p.position_ms == null) return null;
    const offset = this.clock.offsetMs();
    if (offset == null || this.streamEpochMs == null) return null;
    return glassToGlassMs(this.nowMs, offset, this.streamEpochMs, p.position_ms);
  },
};
