//! How far behind live a node plays, and the stream's latency mode.
//!
//! **Glass-to-glass latency** is the delay from a frame's capture (for a file: its place in the
//! live schedule the broadcaster releases it on) to its display. Every clock involved is mapped
//! onto the supervisor's clock:
//!
//! * each peer estimates its offset to the supervisor's clock with an NTP-style exchange over
//!   signaling ([`ClockSync`]: `CLOCK_REQUEST {t0}` answered by `CLOCK {t0, now_ms}`; the offset
//!   is `now_ms - (t0 + t1) / 2` of the sample with the smallest round trip among the latest
//!   [`CLOCK_SAMPLES`], so its error is at most half that round trip);
//! * the broadcaster announces the stream's **epoch**, the supervisor-clock time at which media
//!   time 0 was captured ([`Epoch`]: the earliest `release - (timestamp + duration)` over the
//!   chunks it released, since a chunk can leave no earlier than its last frame was captured),
//!   in `STREAM_TIMING`, which the supervisor passes on to every viewer;
//! * a viewer playing media time `position` at local time `now` is
//!   `now + offset - (epoch + position)` behind live ([`glass_to_glass_ms`]).
//!
//! **Latency mode** ([`LatencyMode`]), chosen per stream by the broadcaster and carried to viewers
//! in the same `STREAM_TIMING`: how long the chunks the broadcaster cuts are, and how much the
//! players buffer. Invariants: the offset is `None` until a sample arrived; an answer to a request
//! this peer did not send (unknown `t0`) or one claiming to arrive before it was sent is ignored.

use crate::player::PlayerConfig;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Samples kept; the offset is the one with the smallest round trip among them.
pub const CLOCK_SAMPLES: usize = 8;
/// Requests sent this often at first (a node sends them with its statistics, every second), so
/// a few samples exist within seconds of connecting.
pub const CLOCK_FAST_INTERVAL_MS: u64 = 1000;
/// Requests at the fast interval after connecting, then at [`CLOCK_INTERVAL_MS`].
pub const CLOCK_FAST_REQUESTS: u32 = 4;
/// Later requests, to follow drift and find a quieter round trip (one message per peer every 10 s).
pub const CLOCK_INTERVAL_MS: u64 = 10_000;
/// An answer later than this after its request is useless (its error bound is half of it).
pub const CLOCK_MAX_RTT_MS: u64 = 5000;

/// How a stream trades latency for tolerance to late chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyMode {
    /// One-second chunks (one GOP of the common encoder setting) and a 1.5 s start-up buffer.
    #[default]
    Normal,
    /// 250 ms chunks and a 500 ms start-up buffer, with a near-live catch-up.
    Low,
}

impl LatencyMode {
    /// Longest chunk the broadcaster cuts (the chunker's `max_chunk_ms`).
    pub fn chunk_ms(self) -> u32 {
        match self {
            Self::Normal => 1000,
            Self::Low => 250,
        }
    }

    /// The players' thresholds: two chunks of start-up buffer in low mode (media arrives a
    /// chunk at a time, so one chunk ahead would stall at every late one), and a catch-up that
    /// drops what a stall added to the delay once more than four chunks are buffered.
    pub fn player(self) -> PlayerConfig {
        match self {
            Self::Normal => PlayerConfig::default(),
            Self::Low => PlayerConfig {
                startup_ms: 500,
                rebuffer_ms: 250,
                catch_up_ms: Some(1000),
            },
        }
    }

    /// The name used on the command line and in signaling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

/// One answered clock request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    offset_ms: i64,
    rtt_ms: u64,
}

/// A peer's estimate of its offset to the supervisor's clock (sans-IO: the node asks
/// [`ClockSync::poll_request`] when to send a request and feeds the answers back).
#[derive(Clone, Debug, Default)]
pub struct ClockSync {
    samples: VecDeque<Sample>,
    /// Requests in flight (their `t0`), oldest first; at most [`CLOCK_SAMPLES`].
    pending: VecDeque<u64>,
    sent: u32,
    next_at: u64,
}

impl ClockSync {
    /// No estimate yet; the first request is due at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new supervisor connection: the estimate is kept (a restarted or other supervisor's
    /// clock may differ, so its samples soon replace the old ones), requests start fast again.
    pub fn handle_connected(&mut self, now_ms: u64) {
        self.pending.clear();
        self.sent = 0;
        self.next_at = now_ms;
    }

    /// When the next request is due.
    pub fn poll_timeout(&self) -> u64 {
        self.next_at
    }

    /// The `t0` of a request to send now, if one is due.
    pub fn poll_request(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms < self.next_at {
            return None;
        }
        self.sent = self.sent.saturating_add(1);
        let gap = if self.sent < CLOCK_FAST_REQUESTS {
            CLOCK_FAST_INTERVAL_MS
        } else {
            CLOCK_INTERVAL_MS
        };
        self.next_at = now_ms + gap;
        if self.pending.len() == CLOCK_SAMPLES {
            self.pending.pop_front();
        }
        self.pending.push_back(now_ms);
        Some(now_ms)
    }

    /// The supervisor's answer `CLOCK {t0, now_ms: server_ms}`, received at `now_ms`. False if
    /// ignored (not a request of ours, or answered too late to be of use).
    pub fn handle_reply(&mut self, now_ms: u64, t0: u64, server_ms: u64) -> bool {
        let Some(i) = self.pending.iter().position(|&p| p == t0) else {
            return false;
        };
        self.pending.remove(i);
        let rtt_ms = now_ms.saturating_sub(t0);
        if now_ms < t0 || rtt_ms > CLOCK_MAX_RTT_MS {
            return false;
        }
        let mid = i128::from(t0) + i128::from(rtt_ms) / 2;
        let Ok(offset_ms) = i64::try_from(i128::from(server_ms) - mid) else {
            return false;
        };
        if self.samples.len() == CLOCK_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { offset_ms, rtt_ms });
        true
    }

    /// Supervisor clock minus local clock (ms), from the sample with the smallest round trip.
    pub fn offset_ms(&self) -> Option<i64> {
        self.best().map(|s| s.offset_ms)
    }

    /// The round trip of the sample the offset comes from: twice the offset's error bound.
    pub fn rtt_ms(&self) -> Option<u64> {
        self.best().map(|s| s.rtt_ms)
    }

    /// Local time `local_ms` on the supervisor's clock.
    pub fn to_server(&self, local_ms: u64) -> Option<i64> {
        let offset = self.offset_ms()?;
        i64::try_from(local_ms).ok()?.checked_add(offset)
    }

    fn best(&self) -> Option<Sample> {
        self.samples.iter().copied().min_by_key(|s| s.rtt_ms)
    }
}

/// The broadcaster's estimate of the stream's epoch, on its own clock: the earliest
/// `release - (timestamp + duration)` over the media chunks it released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epoch {
    local_ms: Option<i64>,
}

impl Epoch {
    /// A media chunk covering `[timestamp_ms, timestamp_ms + duration_ms)` was released at
    /// `now_ms`; true if the estimate moved (it only ever moves earlier).
    pub fn handle_release(&mut self, now_ms: u64, timestamp_ms: u64, duration_ms: u32) -> bool {
        let end = timestamp_ms.saturating_add(u64::from(duration_ms));
        let (Ok(now), Ok(end)) = (i64::try_from(now_ms), i64::try_from(end)) else {
            return false;
        };
        let candidate = now - end;
        if self.local_ms.is_some_and(|e| e <= candidate) {
            return false;
        }
        self.local_ms = Some(candidate);
        true
    }

    /// The epoch on the broadcaster's clock.
    pub fn local_ms(&self) -> Option<i64> {
        self.local_ms
    }
}

/// How far behind live a viewer plays: local time `now_ms`, its clock `offset_ms` to the
/// supervisor, the stream's `epoch_ms` (supervisor clock) and the media time on screen.
pub fn glass_to_glass_ms(now_ms: u64, offset_ms: i64, epoch_ms: i64, position_ms: u64) -> i64 {
    let now = i128::from(now_ms) + i128::from(offset_ms);
    let shown = i128::from(epoch_ms) + i128::from(position_ms);
    let behind = now - shown;
    // Clamped only so absurd inputs cannot overflow; any real figure is far inside.
    behind.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn offset_comes_from_the_quickest_round_trip() {
        let mut c = ClockSync::new();
        c.handle_connected(1000);
        assert_eq!(c.offset_ms(), None);
        // Supervisor clock = local + 5000. A slow answer (rtt 400, asymmetric) then a fast one.
        let t0 = c.poll_request(1000).unwrap();
        assert!(c.handle_reply(1400, t0, 1000 + 5000 + 350));
        assert_eq!(c.offset_ms(), Some(5150));
        assert_eq!(c.poll_request(1100), None, "not due yet");
        let t1 = c.poll_request(2000).unwrap();
        assert!(c.handle_reply(2010, t1, 2005 + 5000));
        assert_eq!(c.offset_ms(), Some(5000));
        assert_eq!(c.rtt_ms(), Some(10));
        assert_eq!(c.to_server(2000), Some(7000));
    }

    #[test]
    fn unknown_duplicate_and_late_answers_are_ignored() {
        let mut c = ClockSync::new();
        let t0 = c.poll_request(0).unwrap();
        assert!(!c.handle_reply(10, 12345, 99), "never asked");
        assert!(c.handle_reply(10, t0, 99));
        assert!(!c.handle_reply(11, t0, 99), "answered twice");
        let t1 = c.poll_request(1000).unwrap();
        assert!(!c.handle_reply(1000 + CLOCK_MAX_RTT_MS + 1, t1, 0));
        assert_eq!(c.offset_ms(), Some(94));
    }

    #[test]
    fn requests_slow_down_after_the_first_few() {
        let mut c = ClockSync::new();
        let mut now = 0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            c.poll_request(now).unwrap();
            gaps.push(c.poll_timeout() - now);
            now = c.poll_timeout();
        }
        assert_eq!(gaps[..3], [CLOCK_FAST_INTERVAL_MS; 3]);
        assert_eq!(gaps[3..], [CLOCK_INTERVAL_MS; 3]);
    }

    #[test]
    fn epoch_is_the_earliest_release_minus_the_media_end() {
        let mut e = Epoch::default();
        assert!(e.handle_release(10_000, 0, 1000));
        assert_eq!(e.local_ms(), Some(9000));
        // Released late (a slow pipe): says nothing new.
        assert!(!e.handle_release(11_500, 1000, 250));
        assert!(e.handle_release(10_200, 1000, 250));
        assert_eq!(e.local_ms(), Some(8950));
    }

    #[test]
    fn glass_to_glass_maps_both_clocks_onto_the_supervisor() {
        // Viewer clock 3 s behind the supervisor's; epoch at supervisor time 100_000; the
        // viewer shows media time 4000 at its local 102_500 = supervisor 105_500.
        assert_eq!(glass_to_glass_ms(102_500, 3000, 100_000, 4000), 1500);
        assert_eq!(glass_to_glass_ms(0, -5, 0, 0), -5);
    }
}
