//! How a node ends. A stream that ends reaches a receiver twice: the end chunk down the tree and
//! `STREAM_ENDED` from the supervisor, in either order. Told first, a receiver waits up to
//! [`END_GRACE_MS`] for the end chunk (then plays out what it has); with the end chunk, it lets
//! its children take what is queued for them, up to [`DRAIN_TIMEOUT_MS`], then reports, closes
//! every edge and the connection, and ends. A broadcaster whose source ended does the same and
//! then sends `END_STREAM`. A stop, a kill or a lost supervisor ends a node at once.

use super::rules::{DRAIN_TIMEOUT_MS, END_GRACE_MS};
use super::{Ending, Node, NodeEvent, Output, Phase};
use crate::protocol::PeerMessage;

impl Node {
    pub(super) fn stream_ended(&mut self, reason: String) {
        if !self.live() || self.is_broadcaster() {
            return;
        }
        self.event(NodeEvent::StreamEnding {
            reason: reason.clone(),
        });
        if self.end_seen {
            self.begin_drain(Ending::StreamEnded(reason));
        } else {
            self.phase = Phase::Grace {
                until: self.now_ms + END_GRACE_MS,
                reason,
            };
        }
    }

    /// The last chunks are out (or will never come): let the children take them, then end.
    pub(super) fn begin_drain(&mut self, ending: Ending) {
        if matches!(self.phase, Phase::Draining { .. } | Phase::Done) {
            return;
        }
        self.phase = Phase::Draining {
            until: self.now_ms + DRAIN_TIMEOUT_MS,
            ending,
        };
    }

    pub(super) fn ending_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Grace { until, .. } | Phase::Draining { until, .. } => Some(until),
            Phase::Live | Phase::Done => None,
        }
    }

    pub(super) fn ending_timers(&mut self) {
        match &self.phase {
            Phase::Grace { until, reason } if self.now_ms >= *until => {
                let ending = Ending::StreamEnded(reason.clone());
                self.player.handle_end();
                self.begin_drain(ending);
            }
            Phase::Draining { until, ending } if self.now_ms >= *until => {
                let ending = ending.clone();
                self.finish(ending);
            }
            _ => {}
        }
    }

    /// Ends a draining node once every child has taken everything.
    pub(super) fn check_drained(&mut self) {
        if let Phase::Draining { ending, .. } = &self.phase {
            if self.drained() {
                let ending = ending.clone();
                self.finish(ending);
            }
        }
    }

    /// Reports, closes every edge and the connection, and ends.
    pub(super) fn finish(&mut self, ending: Ending) {
        if self.phase == Phase::Done {
            return;
        }
        self.report_stats();
        if self.is_broadcaster() && matches!(ending, Ending::StreamEnded(_)) {
            self.send(PeerMessage::EndStream {});
        }
        self.phase = Phase::Done;
        self.close_all_edges();
        self.emit(Output::Disconnect(ending.describe()));
        self.emit(Output::Ended(ending));
    }
}
