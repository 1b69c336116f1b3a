//! Token-bucket pacing of the messages a relay sends to one child.
//!
//! Why: unpaced bulk sends from webrtc-rs to Chrome stall (UDP receive-buffer drops), while the
//! same data paced at 8 Mbit/s arrives cleanly (see `FACTS.md`). Every child gets its own bucket.
//!
//! The bucket holds at most `burst` bytes and refills at `rate` bytes per second; it starts full.
//! A message may be sent when the bucket holds its length, or, for a message longer than the
//! burst, when the bucket is full (the bucket then goes into debt, so such a message is never
//! stuck). Invariant: the bytes consumed by time `t` (ms after the first use) are at most
//! `rate * t / 1000 + max(burst, longest message)`. Time never runs backwards here: an earlier
//! `now_ms` than already seen is treated as no time passing.

/// Token counts are kept in milli-bytes so that a refill of `rate * ms / 1000` is exact.
const SCALE: i128 = 1000;

/// A token bucket over caller-supplied time.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate_bytes_per_s: u64,
    burst_bytes: u64,
    /// Milli-bytes available at `last_ms`; negative after an oversized message.
    tokens: i128,
    last_ms: Option<u64>,
}

impl Pacer {
    /// A full bucket refilling at `rate_bytes_per_s` (0 never refills) holding up to `burst_bytes`.
    pub fn new(rate_bytes_per_s: u64, burst_bytes: u64) -> Self {
        Self {
            rate_bytes_per_s,
            burst_bytes,
            tokens: i128::from(burst_bytes) * SCALE,
            last_ms: None,
        }
    }

    /// The refill rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate_bytes_per_s
    }

    /// The bucket size in bytes.
    pub fn burst(&self) -> u64 {
        self.burst_bytes
    }

    /// True if a message of `len` bytes may be sent at `now_ms`.
    pub fn can_send(&self, now_ms: u64, len: usize) -> bool {
        self.tokens_at(now_ms) >= self.needed(len)
    }

    /// Takes `len` bytes from the bucket at `now_ms` (call after sending; may go into debt).
    pub fn consume(&mut self, now_ms: u64, len: usize) {
        let tokens = self.tokens_at(now_ms);
        self.last_ms = Some(self.last_ms.map_or(now_ms, |last| last.max(now_ms)));
        self.tokens = tokens - i128::try_from(len).unwrap_or(i128::MAX / 2) * SCALE;
    }

    /// The earliest time `>= now_ms` at which a message of `len` bytes may be sent; `u64::MAX`
    /// if it never can (a zero rate with too few tokens).
    pub fn next_send_at(&self, now_ms: u64, len: usize) -> u64 {
        let missing = self.needed(len) - self.tokens_at(now_ms);
        if missing <= 0 {
            return now_ms;
        }
        if self.rate_bytes_per_s == 0 {
            return u64::MAX;
        }
        let rate = i128::from(self.rate_bytes_per_s);
        // Refill is `rate` milli-bytes per ms; round up so the answer is never too early.
        let wait = (missing + rate - 1) / rate;
        let from = self.last_ms.map_or(now_ms, |last| last.max(now_ms));
        u64::try_from(wait).map_or(u64::MAX, |w| from.saturating_add(w))
    }

    /// Milli-bytes a message of `len` bytes needs: its length, capped at the burst so that an
    /// oversized message only waits for a full bucket.
    fn needed(&self, len: usize) -> i128 {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        i128::from(len.min(self.burst_bytes)) * SCALE
    }

    fn tokens_at(&self, now_ms: u64) -> i128 {
        let cap = i128::from(self.burst_bytes) * SCALE;
        let elapsed = self.last_ms.map_or(0, |last| now_ms.saturating_sub(last));
        let refill = i128::from(elapsed) * i128::from(self.rate_bytes_per_s);
        (self.tokens + refill).min(cap)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn starts_full_then_waits_for_refill() {
        let mut p = Pacer::new(1000, 500);
        assert!(p.can_send(0, 500));
        p.consume(0, 500);
        assert!(!p.can_send(0, 1));
        assert_eq!(p.next_send_at(0, 100), 100);
        assert!(p.can_send(100, 100));
        assert!(!p.can_send(99, 100));
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let mut p = Pacer::new(1000, 500);
        p.consume(0, 500);
        assert!(p.can_send(10_000, 500));
        p.consume(10_000, 500);
        assert!(!p.can_send(10_000, 1));
    }

    #[test]
    fn oversized_message_waits_for_full_bucket_then_goes_into_debt() {
        let mut p = Pacer::new(1000, 500);
        p.consume(0, 200);
        assert!(!p.can_send(0, 2000));
        assert_eq!(p.next_send_at(0, 2000), 200);
        p.consume(200, 2000);
        // 1500 bytes of debt plus 1 byte: 1501 ms.
        assert_eq!(p.next_send_at(200, 1), 1701);
    }

    #[test]
    fn zero_rate_never_refills() {
        let mut p = Pacer::new(0, 10);
        p.consume(0, 10);
        assert_eq!(p.next_send_at(5, 1), u64::MAX);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut p = Pacer::new(1000, 500);
        p.consume(100, 500);
        assert!(!p.can_send(50, 1));
        assert_eq!(p.next_send_at(50, 10), 110);
    }
}
