// How far behind live a node plays, and the stream's latency mode: a port of
// core/src/latency.rs (same rules, same numbers; see its module docs).
//
// - ClockSync: the offset to the supervisor's clock from CLOCK_REQUEST {t0} / CLOCK {t0, now_ms}
//   exchanges: `now_ms - (t0 + t1) / 2` of the quickest of the latest CLOCK_SAMPLES answers.
// - Epoch: the broadcaster's earliest `release - (timestamp + duration)` over its media chunks.
// - glassToGlassMs: `now + offset - (epoch + position)`.
// - LATENCY_MODES: the chunk length a broadcaster cuts and the thresholds players use per mode.

export const CLOCK_SAMPLES = 8;
export const CLOCK_FAST_INTERVAL_MS = 1000;
export const CLOCK_FAST_REQUESTS = 4;
export const CLOCK_INTERVAL_MS = 10_000;
export const CLOCK_MAX_RTT_MS = 5000;

/** Per mode: `chunkMs` (the chunker's maxChunkMs), the Rust model's `player` and the MSE player's
 *  settings (media/player.js): start-up buffer and near-live control. */
export const LATENCY_MODES = Object.freeze({
  normal: Object.freeze({
    chunkMs: 1000,
    player: { startupMs: null, maxLagMs: 8000, targetLagMs: 2500, rateUpLagMs: 4000 },
  }),
  low: Object.freeze({
    chunkMs: 250,
    player: { startupMs: 500, maxLagMs: 1500, targetLagMs: 600, rateUpLagMs: 1000 },
  }),
});

export class ClockSync {
  constructor() {
    this.samples = []; // {offsetMs, rttMs}
    this.pending = [];
    this.sent = 0;
    this.nextAt = 0;
  }

  handleConnected(nowMs) {
    this.pending = [];
    this.sent = 0;
    this.nextAt = nowMs;
  }

  /** The `t0` of a request to send now, or null. */
  pollRequest(nowMs) {
    if (nowMs < this.nextAt) return null;
    this.sent += 1;
    this.nextAt = nowMs + (this.sent < CLOCK_FAST_REQUESTS ? CLOCK_FAST_INTERVAL_MS : CLOCK_INTERVAL_MS);
    if (this.pending.length === CLOCK_SAMPLES) this.pending.shift();
    this.pending.push(nowMs);
    return nowMs;
  }

  /** CLOCK {t0, now_ms: serverMs} received at `nowMs`; false if ignored. */
  handleReply(nowMs, t0, serverMs) {
    const i = this.pending.indexOf(t0);
    if (i < 0) return false;
    this.pending.splice(i, 1);
    const rttMs = nowMs - t0;
    if (rttMs < 0 || rttMs > CLOCK_MAX_RTT_MS) return false;
    if (this.samples.length === CLOCK_SAMPLES) this.samples.shift();
    this.samples.push({ offsetMs: serverMs - (t0 + Math.floor(rttMs / 2)), rttMs });
    return true;
  }

  best() {
    let best = null;
    for (const s of this.samples) if (best == null || s.rttMs < best.rttMs) best = s;
    return best;
  }

  /** Supervisor clock minus local clock (ms), or null. */
  offsetMs() {
    return this.best()?.offsetMs ?? null;
  }
}

export class Epoch {
  constructor() {
    this.localMs = null;
  }

  /** A media chunk was released at `nowMs`; true if the estimate moved (only ever earlier). */
  handleRelease(nowMs, timestampMs, durationMs) {
    const candidate = nowMs - (timestampMs + durationMs);
    if (this.localMs != null && this.localMs <= candidate) return false;
    this.localMs = candidate;
    return true;
  }
}

export function glassToGlassMs(nowMs, offsetMs, epochMs, positionMs) {
  return Math.round(nowMs + offsetMs - (epochMs + positionMs));
}
