//! The node's part in measuring latency and in the stream's latency mode (see
//! [`crate::latency`]): the clock exchange with the supervisor, the broadcaster's
//! `STREAM_TIMING` (its mode and epoch, re-announced on every new supervisor connection and
//! when the epoch estimate moves by [`EPOCH_RESEND_MS`] or more), and a viewer's mode, epoch and
//! glass-to-glass figure.

use super::Node;
use crate::latency::{glass_to_glass_ms, LatencyMode};
use crate::player::PlayerConfig;
use crate::protocol::{PeerMessage, MAX_REPAIR_SAMPLES};

/// A broadcaster re-announces its epoch when its estimate (clock offset included) moved this much.
pub(crate) const EPOCH_RESEND_MS: i64 = 5;

impl Node {
    /// The supervisor connection is up: clock requests start again, and the broadcaster's
    /// timing must be announced to this supervisor.
    pub(super) fn timing_connected(&mut self) {
        self.clock.handle_connected(self.now_ms);
        self.timing_sent = None;
    }

    /// Sends the clock request that is due, if any. Called at connecting and with each
    /// statistics report, so clock requests never wake a node by themselves.
    pub(super) fn clock_timers(&mut self) {
        if let Some(t0) = self.clock.poll_request(self.now_ms) {
            self.send(PeerMessage::ClockRequest { t0 });
        }
    }

    /// The supervisor's `CLOCK` answer.
    pub(super) fn clock_reply(&mut self, t0: u64, server_ms: u64) {
        if self.clock.handle_reply(self.now_ms, t0, server_ms) {
            self.announce_timing();
        }
    }

    /// Broadcaster: a media chunk of `[timestamp_ms, +duration_ms)` was released now.
    pub(super) fn released(&mut self, timestamp_ms: u64, duration_ms: u32) {
        if self
            .epoch
            .handle_release(self.now_ms, timestamp_ms, duration_ms)
        {
            self.announce_timing();
        }
    }

    /// Broadcaster, in its stream: sends `STREAM_TIMING` if the supervisor lacks it or the epoch
    /// moved.
    pub(super) fn announce_timing(&mut self) {
        if !self.is_broadcaster() || !self.link.in_stream {
            return;
        }
        let latency = self.config.latency;
        let epoch_ms = self
            .epoch
            .local_ms()
            .zip(self.clock.offset_ms())
            .map(|(e, o)| e.saturating_add(o));
        let stale = match self.timing_sent {
            None => true,
            Some((mode, sent)) => {
                mode != latency
                    || match (sent, epoch_ms) {
                        (None, Some(_)) => true,
                        (Some(a), Some(b)) => (a - b).abs() >= EPOCH_RESEND_MS,
                        _ => false,
                    }
            }
        };
        if stale {
            self.timing_sent = Some((latency, epoch_ms));
            self.send(PeerMessage::StreamTiming { latency, epoch_ms });
        }
    }

    /// Viewer: the broadcaster's mode and epoch, through the supervisor.
    pub(super) fn stream_timing(&mut self, latency: LatencyMode, epoch_ms: Option<i64>) {
        if self.is_broadcaster() {
            return;
        }
        self.stream_epoch_ms = epoch_ms.or(self.stream_epoch_ms);
        if self.config.latency != latency {
            self.config.latency = latency;
            self.player.set_config(self.player_config());
        }
    }

    /// The playback thresholds for the stream's mode: a low-latency stream's, or the node's own.
    pub(super) fn player_config(&self) -> PlayerConfig {
        match self.config.latency {
            LatencyMode::Low => LatencyMode::Low.player(),
            LatencyMode::Normal => self.config.player,
        }
    }

    /// How far behind live the media on screen is (ms), once it can be told.
    pub fn latency_ms(&self) -> Option<i64> {
        let p = self.player.stats();
        if p.started_at_ms.is_none() || p.finished || self.is_broadcaster() {
            return None;
        }
        let offset = self.clock.offset_ms()?;
        let epoch = self.stream_epoch_ms?;
        Some(glass_to_glass_ms(self.now_ms, offset, epoch, p.position_ms))
    }

    /// Viewer: a new media chunk of `[timestamp_ms, +duration_ms)` arrived now. Notes how far
    /// behind its release (at the earliest, when its last frame was captured) it came and, if a
    /// recovery just ended, what the recovery added to that: the lateness of the first chunk
    /// after it minus that of the last chunk before, at least 0. A recovery's own time (loss to
    /// first chunk) cannot tell a slow repair from a chunk that did not exist yet; this can. Both
    /// lateness figures are on this node's clock and offset, so their errors cancel.
    pub(super) fn chunk_late(&mut self, timestamp_ms: u64, duration_ms: u32) {
        let late = self
            .clock
            .offset_ms()
            .zip(self.stream_epoch_ms)
            .map(|(o, e)| {
                glass_to_glass_ms(
                    self.now_ms,
                    o,
                    e,
                    timestamp_ms.saturating_add(u64::from(duration_ms)),
                )
            });
        if let Some((by_switch, before)) = self.delay_pending.take() {
            if let (Some(before), Some(now)) = (before, late) {
                let added = u32::try_from(now.saturating_sub(before).max(0)).unwrap_or(u32::MAX);
                let list = if by_switch {
                    &mut self.switch_delays
                } else {
                    &mut self.repair_delays
                };
                if list.len() < MAX_REPAIR_SAMPLES {
                    list.push(added);
                }
            }
        }
        self.last_late = late;
    }

    /// The node's clock offset to the supervisor's (ms), once estimated.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.clock.offset_ms()
    }

    /// The stream's latency mode as this node knows it (a receiver: `normal` until told).
    pub fn latency_mode(&self) -> LatencyMode {
        self.config.latency
    }
}
