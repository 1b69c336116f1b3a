// Token bucket behind per-child pacing: the port of the Rust core's `pacer` module. Tokens are
// bytes; the bucket refills at `rate` bytes per second up to `burst`. A message larger than the
// burst may go once the bucket is full (it then runs into debt), so nothing is ever stuck.
// Time comes in as milliseconds; the pacer never reads a clock.

export class Pacer {
  constructor(rateBytesPerS, burstBytes) {
    this.rate = rateBytesPerS;
    this.burst = burstBytes;
    this.tokens = burstBytes; // in bytes (fractional allowed)
    this.lastMs = null;
  }

  canSend(nowMs, len) {
    return this.tokensAt(nowMs) >= Math.min(len, this.burst);
  }

  consume(nowMs, len) {
    const tokens = this.tokensAt(nowMs);
    this.lastMs = this.lastMs == null ? nowMs : Math.max(this.lastMs, nowMs);
    this.tokens = tokens - len;
  }

  /** When a message of `len` bytes can go, at the earliest. */
  nextSendAt(nowMs, len) {
    const missing = Math.min(len, this.burst) - this.tokensAt(nowMs);
    if (missing <= 0) return nowMs;
    if (this.rate === 0) return Infinity;
    const from = this.lastMs == null ? nowMs : Math.max(this.lastMs, nowMs);
    return from + Math.ceil((missing * 1000) / this.rate);
  }

  tokensAt(nowMs) {
    const elapsed = this.lastMs == null ? 0 : Math.max(0, nowMs - this.lastMs);
    return Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
  }
}
