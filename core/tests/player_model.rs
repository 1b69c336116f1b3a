//! The player model on simulated time: a steady live stream never stalls, a 3 s outage costs
//! exactly one stall of about 3 s minus the buffer, a lost stretch is jumped over at the price of
//! one stall, and the end of the stream is not a stall.

use ownstream_core::player::{Player, PlayerConfig, PlayerStats};

/// Chunk `i` covers media `[i * 1000 / 30, (i + 1) * 1000 / 30)`: 30 contiguous chunks a second.
fn span(i: u64) -> (u64, u32) {
    let (start, end) = (i * 1000 / 30, (i + 1) * 1000 / 30);
    (start, (end - start) as u32)
}

/// Drives a player on simulated time, waking at every deadline it asks for.
struct Sim {
    player: Player,
    now: u64,
}

impl Sim {
    fn new() -> Self {
        Self {
            player: Player::new(PlayerConfig {
                startup_ms: 1000,
                rebuffer_ms: 500,
                catch_up_ms: None,
            }),
            now: 0,
        }
    }

    fn run_to(&mut self, t: u64) {
        while let Some(d) = self.player.poll_timeout().filter(|d| *d <= t) {
            assert!(d >= self.now, "deadline in the past");
            self.now = d;
            self.player.handle_timeout(d);
            if self.player.poll_timeout() == Some(d) {
                break;
            }
        }
        self.now = self.now.max(t);
        self.player.handle_timeout(self.now);
    }

    fn deliver(&mut self, arrival: u64, i: u64) {
        self.run_to(arrival);
        let (ts, dur) = span(i);
        self.player.handle_chunk(self.now, ts, dur);
    }

    fn stats(&self) -> PlayerStats {
        self.player.stats()
    }
}

/// A live chunk is complete, and sent, when its media has been recorded; 80 ms of network delay.
fn live_arrival(i: u64) -> u64 {
    let (ts, dur) = span(i);
    ts + u64::from(dur) + 80
}

#[test]
fn steady_stream_never_stalls() {
    let mut sim = Sim::new();
    for i in 0..1800 {
        sim.deliver(live_arrival(i), i);
    }
    let s = sim.stats();
    assert!(s.playing);
    assert_eq!(s.stalls, 0);
    assert_eq!(s.stalled_ms, 0);
    // Playback began once a second of media was buffered.
    let started = s.started_at_ms.unwrap();
    assert!((1000..1200).contains(&started), "started at {started}");
    assert!(
        (900..=1100).contains(&s.buffer_ahead_ms),
        "ahead {}",
        s.buffer_ahead_ms
    );
}

#[test]
fn three_second_outage_is_one_stall_of_outage_minus_buffer() {
    let mut sim = Sim::new();
    let outage = 20_000..23_000;
    let mut late = Vec::new();
    let mut buffer = 0;
    for i in 0..1800 {
        let at = live_arrival(i);
        if outage.contains(&at) {
            if late.is_empty() {
                sim.run_to(outage.start);
                buffer = sim.stats().buffer_ahead_ms;
            }
            late.push(i);
            continue;
        }
        // The backlog held up by the outage arrives in a burst when the link comes back.
        for j in late.drain(..) {
            sim.deliver(outage.end, j);
        }
        sim.deliver(at, i);
    }
    let s = sim.stats();
    assert!(s.playing);
    assert_eq!(s.stalls, 1);
    assert!(
        (900..=1100).contains(&buffer),
        "buffer before the outage {buffer}"
    );
    let expected = 3000 - buffer;
    assert!(
        s.stalled_ms.abs_diff(expected) <= 100,
        "stalled {} ms, expected ~{expected}",
        s.stalled_ms
    );
    assert_eq!(s.average_stall_ms(), s.stalled_ms);
}

#[test]
fn lost_stretch_is_jumped_over_with_one_stall() {
    let mut sim = Sim::new();
    // Chunks that would arrive during the outage are lost for good (a relay gap skip).
    for i in (0..1800).filter(|i| !(20_000..23_000).contains(&live_arrival(*i))) {
        sim.deliver(live_arrival(i), i);
    }
    let s = sim.stats();
    assert_eq!(s.stalls, 1);
    // Drain ~1 s of buffer, wait out the rest of the outage, then re-buffer 500 ms.
    assert!(
        s.stalled_ms.abs_diff(2000 + 500) <= 150,
        "stalled {} ms",
        s.stalled_ms
    );
    assert!(s.playing);
}

#[test]
fn end_of_stream_drains_without_a_stall() {
    let mut sim = Sim::new();
    for i in 0..300 {
        sim.deliver(live_arrival(i), i);
    }
    sim.player.handle_end();
    sim.run_to(sim.now + 5000);
    let s = sim.stats();
    assert!(s.finished && !s.playing);
    assert_eq!(s.stalls, 0);
    assert_eq!(s.position_ms, span(299).0 + u64::from(span(299).1));
    assert_eq!(sim.player.poll_timeout(), None);
}

#[test]
fn end_during_a_stall_closes_it() {
    let mut sim = Sim::new();
    for i in 0..60 {
        sim.deliver(live_arrival(i), i);
    }
    sim.run_to(5000);
    assert_eq!(sim.stats().stalls, 1);
    let stalled = sim.stats().stalled_ms;
    sim.player.handle_end();
    sim.run_to(9000);
    let s = sim.stats();
    assert!(s.finished);
    assert_eq!((s.stalls, s.stalled_ms), (1, stalled));
}
