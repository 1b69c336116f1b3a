//! Playback and stall model of a receiver: the paper's metrics (stalled playbacks, total and
//! average stalled time) computed from when media arrives, on caller-supplied time.
//!
//! The model, kept deliberately simple:
//! - Media arrives as intervals `[timestamp_ms, timestamp_ms + duration_ms)`; overlapping or
//!   touching intervals merge. The *buffered end* is the end of the contiguous media from the
//!   playback position; media after a hole does not count.
//! - Playback starts at the first chunk's timestamp once `startup_ms` of contiguous media is
//!   buffered (startup is not a stall; `started_at_ms` records when it happened).
//! - While playing, the position advances 1:1 with wall time. When it reaches the buffered end a
//!   stall begins (counted once); it ends when `rebuffer_ms` of contiguous media is buffered
//!   again, and its duration adds to `stalled_ms`.
//! - A hole is not played through: the player stalls at it, and while stalled it jumps to the
//!   next buffered interval after the position (what the receiver's shell does with
//!   `currentTime = buffered.start`), so a hole costs one stall of at least the time to buffer
//!   `rebuffer_ms` after it. Chunks arrive in order, so a hole is never filled: while starting or
//!   stalled, media too short to (re)start in before a hole is skipped too.
//! - After [`Player::handle_end`] no more media is expected: whatever is buffered plays out even if
//!   shorter than the thresholds, and running out is the end of playback, not a stall (a stall
//!   already under way ends there).
//!
//! Invariants: the position never moves backwards; `stalls` counts every transition from
//! playing to stalled; `stalled_ms` is the sum of closed stalls plus the one under way up to the
//! latest time seen.

use std::collections::BTreeMap;

/// Thresholds of the player model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerConfig {
    /// Contiguous media needed before playback first starts (ms).
    pub startup_ms: u64,
    /// Contiguous media needed to leave a stall (ms).
    pub rebuffer_ms: u64,
    /// Near-live control: while playing with more than this much contiguous media ahead (what a
    /// stall added to the delay, arrived since), jump forward to `startup_ms` before the buffered
    /// end. `None`: never (the position then only jumps holes).
    pub catch_up_ms: Option<u64>,
}

impl Default for PlayerConfig {
    /// A live source releases each chunk at its own start time, and the chunker caps chunks at
    /// 1000 ms. Starting with exactly one chunk buffered would make every next chunk due the instant
    /// it arrives, so any hop delay shows as a (tiny) stall; 1500 ms leaves half a chunk of slack.
    fn default() -> Self {
        Self {
            startup_ms: 1500,
            rebuffer_ms: 500,
            catch_up_ms: None,
        }
    }
}

/// A snapshot of the player as of the latest time it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayerStats {
    /// Playback is advancing now.
    pub playing: bool,
    /// Wall time at which playback first started.
    pub started_at_ms: Option<u64>,
    /// Stalls so far (the paper's stalled playbacks).
    pub stalls: u32,
    /// Total stalled time, including a stall under way.
    pub stalled_ms: u64,
    /// Contiguous media buffered ahead of the position.
    pub buffer_ahead_ms: u64,
    /// Media time being played.
    pub position_ms: u64,
    /// The stream ended and everything buffered has been played.
    pub finished: bool,
    /// Jumps forward of the near-live control ([`PlayerConfig::catch_up_ms`]).
    pub catch_ups: u32,
}

impl PlayerStats {
    /// Mean stall duration (the paper's average stalled time); 0 without stalls.
    pub fn average_stall_ms(&self) -> u64 {
        self.stalled_ms
            .checked_div(u64::from(self.stalls))
            .unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No media yet.
    Idle,
    /// Buffering `startup_ms` before the first play.
    Starting,
    /// Position is `from_ms + (now - since_ms)`.
    Playing { since_ms: u64, from_ms: u64 },
    /// Waiting for `rebuffer_ms` since `since_ms`.
    Stalled { since_ms: u64 },
    /// Ended and drained.
    Finished,
}

/// The playback model of one receiver: see the module docs.
#[derive(Clone, Debug)]
pub struct Player {
    config: PlayerConfig,
    state: State,
    /// Merged buffered intervals, start -> end; intervals wholly behind the position are pruned.
    ranges: BTreeMap<u64, u64>,
    /// Position as of the latest state change (while playing, see `State::Playing`).
    position_ms: u64,
    now_ms: u64,
    stalls: u32,
    closed_stalled_ms: u64,
    started_at_ms: Option<u64>,
    ended: bool,
    catch_ups: u32,
}

impl Player {
    /// A player that has received nothing yet.
    pub fn new(config: PlayerConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            ranges: BTreeMap::new(),
            position_ms: 0,
            now_ms: 0,
            stalls: 0,
            closed_stalled_ms: 0,
            started_at_ms: None,
            ended: false,
            catch_ups: 0,
        }
    }

    /// New thresholds (the stream's latency mode became known); they apply from the next decision.
    pub fn set_config(&mut self, config: PlayerConfig) {
        self.config = config;
        self.try_resume();
    }

    /// Media covering `[timestamp_ms, timestamp_ms + duration_ms)` arrived at `now_ms`.
    pub fn handle_chunk(&mut self, now_ms: u64, timestamp_ms: u64, duration_ms: u32) {
        self.advance(now_ms);
        if self.state == State::Finished {
            return;
        }
        if self.state == State::Idle {
            self.position_ms = timestamp_ms;
            self.state = State::Starting;
        }
        let end = timestamp_ms.saturating_add(u64::from(duration_ms));
        if end > self.position_ms && duration_ms > 0 {
            self.insert(timestamp_ms.max(self.position_ms), end);
        }
        self.try_resume();
        self.catch_up();
    }

    /// The near-live control: see [`PlayerConfig::catch_up_ms`].
    fn catch_up(&mut self) {
        let (Some(limit), State::Playing { .. }) = (self.config.catch_up_ms, self.state) else {
            return;
        };
        let position = self.position_at(self.now_ms);
        let end = self.contiguous_end(position);
        if end - position <= limit {
            return;
        }
        self.position_ms = end.saturating_sub(self.config.startup_ms).max(position);
        self.catch_ups += 1;
        self.state = State::Playing {
            since_ms: self.now_ms,
            from_ms: self.position_ms,
        };
    }

    /// Time passed; call at the deadline from [`Player::poll_timeout`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.advance(now_ms);
        self.try_resume();
    }

    /// The stream ended: play out what is buffered; running out is no longer a stall.
    pub fn handle_end(&mut self) {
        self.ended = true;
        self.try_resume();
    }

    /// When playback will run out of buffered media, if it is playing.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Playing { since_ms, from_ms } => {
                let end = self.contiguous_end(from_ms);
                Some(since_ms.saturating_add(end - from_ms))
            }
            _ => None,
        }
    }

    /// The player's state as of the latest time it was given.
    pub fn stats(&self) -> PlayerStats {
        let position_ms = self.position_at(self.now_ms);
        let ongoing = match self.state {
            State::Stalled { since_ms } => self.now_ms.saturating_sub(since_ms),
            _ => 0,
        };
        PlayerStats {
            playing: matches!(self.state, State::Playing { .. }),
            started_at_ms: self.started_at_ms,
            stalls: self.stalls,
            stalled_ms: self.closed_stalled_ms + ongoing,
            buffer_ahead_ms: self.contiguous_end(position_ms) - position_ms,
            position_ms,
            finished: self.state == State::Finished,
            catch_ups: self.catch_ups,
        }
    }

    /// Moves time to `now_ms`; a position reaching the buffered end stalls (or finishes) at the
    /// exact moment it ran out, even if `now_ms` is later.
    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let State::Playing { since_ms, from_ms } = self.state else {
            return;
        };
        let end = self.contiguous_end(from_ms);
        let position = self.position_at(self.now_ms);
        if position < end {
            return;
        }
        self.position_ms = end;
        self.state = if self.ended {
            State::Finished
        } else {
            self.stalls += 1;
            State::Stalled {
                since_ms: since_ms.saturating_add(end - from_ms),
            }
        };
        self.ranges.retain(|_, e| *e >= end);
    }

    /// Leaves `Starting` or `Stalled` when enough media is buffered (or the stream ended).
    fn try_resume(&mut self) {
        let threshold = match self.state {
            State::Starting => self.config.startup_ms,
            State::Stalled { .. } => self.config.rebuffer_ms,
            State::Idle if self.ended => return self.finish(),
            _ => return,
        };
        // Chunks arrive in order, so a hole is never filled: media too short to start (or
        // restart) in before a hole is skipped, as a player jumps to what it can play.
        loop {
            let end = self.contiguous_end(self.position_ms);
            if end - self.position_ms >= threshold {
                break;
            }
            match self.ranges.range(end + 1..).next() {
                Some((&start, _)) => self.position_ms = start,
                None => break,
            }
        }
        let ahead = self.contiguous_end(self.position_ms) - self.position_ms;
        if ahead >= threshold || (self.ended && ahead > 0) {
            self.close_stall();
            self.started_at_ms.get_or_insert(self.now_ms);
            let (since_ms, from_ms) = (self.now_ms, self.position_ms);
            self.state = State::Playing { since_ms, from_ms };
        } else if self.ended {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.close_stall();
        self.state = State::Finished;
    }

    fn close_stall(&mut self) {
        if let State::Stalled { since_ms } = self.state {
            self.closed_stalled_ms += self.now_ms.saturating_sub(since_ms);
        }
    }

    fn position_at(&self, now_ms: u64) -> u64 {
        match self.state {
            State::Playing { since_ms, from_ms } => {
                let played = from_ms.saturating_add(now_ms.saturating_sub(since_ms));
                played.min(self.contiguous_end(from_ms))
            }
            _ => self.position_ms,
        }
    }

    /// End of the contiguous media from `pos` (`pos` itself if nothing is buffered there).
    fn contiguous_end(&self, pos: u64) -> u64 {
        match self.ranges.range(..=pos).next_back() {
            Some((_, &end)) if end > pos => end,
            _ => pos,
        }
    }

    /// Adds `[start, end)`, merging with every interval it overlaps or touches.
    fn insert(&mut self, start: u64, end: u64) {
        let (mut start, mut end) = (start, end);
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let covered: Vec<u64> = self.ranges.range(start..=end).map(|(s, _)| *s).collect();
        for s in covered {
            if let Some(e) = self.ranges.remove(&s) {
                end = end.max(e);
            }
        }
        self.ranges.insert(start, end);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// The thresholds these cases reason about, independent of the defaults.
    const ONE_SECOND_START: PlayerConfig = PlayerConfig {
        startup_ms: 1000,
        rebuffer_ms: 500,
        catch_up_ms: None,
    };

    #[test]
    fn intervals_merge_and_contiguity_stops_at_holes() {
        let mut p = Player::new(ONE_SECOND_START);
        p.insert(0, 100);
        p.insert(200, 300);
        assert_eq!(p.contiguous_end(0), 100);
        p.insert(100, 200);
        assert_eq!(p.contiguous_end(0), 300);
        assert_eq!(p.ranges.len(), 1);
    }

    #[test]
    fn startup_then_stall_then_rebuffer() {
        let mut p = Player::new(ONE_SECOND_START);
        p.handle_chunk(0, 5000, 600);
        assert!(!p.stats().playing);
        p.handle_chunk(100, 5600, 400);
        assert_eq!(p.stats().started_at_ms, Some(100));
        assert_eq!(p.poll_timeout(), Some(1100));
        p.handle_timeout(1100);
        assert_eq!((p.stats().stalls, p.stats().position_ms), (1, 6000));
        p.handle_chunk(1400, 6000, 500);
        let s = p.stats();
        assert!(s.playing);
        assert_eq!((s.stalls, s.stalled_ms), (1, 300));
    }

    #[test]
    fn media_too_short_before_a_hole_is_skipped_at_start_and_in_a_stall() {
        let mut p = Player::new(ONE_SECOND_START);
        p.handle_chunk(0, 0, 600);
        p.handle_chunk(10, 3000, 500);
        assert!(
            !p.stats().playing,
            "600 ms then a hole: not enough to start"
        );
        p.handle_chunk(20, 3500, 500);
        let s = p.stats();
        assert!(
            s.playing,
            "started after the hole instead of waiting forever"
        );
        assert_eq!((s.position_ms, s.stalls), (3000, 0));
        p.handle_chunk(500, 4200, 200);
        p.handle_timeout(1020);
        assert_eq!(p.stats().stalls, 1);
        p.handle_chunk(1100, 6000, 600);
        let s = p.stats();
        assert!(s.playing, "200 ms then a hole: the stall moves on to 6000");
        assert_eq!((s.position_ms, s.stalled_ms), (6000, 80));
    }

    #[test]
    fn late_timeout_stalls_at_the_moment_media_ran_out() {
        let mut p = Player::new(PlayerConfig {
            startup_ms: 100,
            rebuffer_ms: 100,
            catch_up_ms: None,
        });
        p.handle_chunk(0, 0, 100);
        p.handle_timeout(500);
        assert_eq!(p.stats().stalled_ms, 400);
    }

    #[test]
    fn end_while_starting_plays_out_without_stall() {
        let mut p = Player::new(ONE_SECOND_START);
        p.handle_chunk(0, 0, 300);
        p.handle_end();
        assert!(p.stats().playing);
        p.handle_timeout(300);
        let s = p.stats();
        assert!(s.finished);
        assert_eq!((s.stalls, s.position_ms), (0, 300));
    }

    #[test]
    fn catch_up_drops_the_delay_a_stall_added() {
        let mut p = Player::new(PlayerConfig {
            startup_ms: 500,
            rebuffer_ms: 250,
            catch_up_ms: Some(1000),
        });
        // 250 ms chunks arriving on time: playback starts at 500 ms, then stays 250-500 ms ahead.
        for i in 0..4 {
            p.handle_chunk(i * 250 + 250, i * 250, 250);
        }
        assert!(p.stats().playing);
        // The next chunk is 1.5 s late; four more arrive right behind it.
        p.handle_timeout(3000);
        assert_eq!(p.stats().stalls, 1);
        for i in 4..10 {
            p.handle_chunk(3000 + (i - 4) * 10, i * 250, 250);
        }
        let s = p.stats();
        assert_eq!(s.catch_ups, 1);
        assert!(s.buffer_ahead_ms <= 1000, "{s:?}");
        // Jumped at the chunk that put 1210 ms ahead (to 500 ms before its end), then played 10 ms.
        assert_eq!(s.position_ms, 2250 - 500 + 10);
    }
}
