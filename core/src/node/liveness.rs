//! Keepalives and silence: a parent sends a KEEPALIVE to each child whose HELLO came every
//! [`KEEPALIVE_MS`]; a child to its parent every [`KEEPALIVE_SLOW_MS`]; a standby parent one when
//! a standby edge opens, and no more until the child switches to it. A child takes a parent that
//! has sent one and then nothing for [`SILENCE_LIMIT_MS`] as failed, a parent a child silent for
//! [`CHILD_SILENCE_LIMIT_MS`]. A frozen process (SIGSTOP, a stalled machine) keeps its sockets
//! open, so ICE and SCTP take seconds to notice it and the supervisor's heartbeat limit is
//! seconds too; silence on the data channel shows it within the limit.
//!
//! - A silent parent is left as a closed one is (`PARENT_LOST`, the supervisor moves the child).
//! - With an open standby edge, a parent silent [`STANDBY_SILENCE_LIMIT_MS`] while the player
//!   starves ([`STARVING_MS`]) is left at once for the standby: the full limit would outlast the
//!   child's buffer when the parent froze just before sending a chunk.
//! - A silent child is dropped (its edge closed, its queue freed); the child, once it runs again,
//!   finds its parent edge closed and reports it.
//!
//! Timing starts at a peer's first KEEPALIVE, not at its HELLO or the edge's opening: a peer that
//! never sends one (a build before keepalives) is never taken for silent, and the time before a
//! parent first speaks is the HELLO repeat's and the open limit's.

use super::rules::{
    CHILD_SILENCE_LIMIT_MS, KEEPALIVE_MS, KEEPALIVE_SLOW_MS, SILENCE_LIMIT_MS,
    STANDBY_SILENCE_LIMIT_MS, STARVING_MS,
};
use super::{Node, NodeEvent, Output};
use crate::frame::Message as WireMessage;
use crate::ids::PeerId;

impl Node {
    /// Whether a child is sent keepalives now (its HELLO came).
    fn fast_targets(&self) -> bool {
        !self.child_heard.is_empty()
    }

    /// Whether the parent is sent keepalives now (once open: HELLO is said at once).
    fn slow_targets(&self) -> bool {
        self.parent
            .as_ref()
            .is_some_and(|p| p.open && p.edge.is_some())
    }

    pub(super) fn liveness_timeout(&self) -> Option<u64> {
        let fast = self
            .fast_targets()
            .then(|| self.keepalive_sent + KEEPALIVE_MS);
        let slow = self
            .slow_targets()
            .then(|| self.keepalive_slow_sent + KEEPALIVE_SLOW_MS);
        let parent = self
            .parent
            .as_ref()
            .and_then(|p| p.heard_at.filter(|_| p.open))
            .map(|t| t + SILENCE_LIMIT_MS);
        let early = self.standby_leave_at();
        let child = self
            .child_heard
            .values()
            .flatten()
            .min()
            .map(|t| t + CHILD_SILENCE_LIMIT_MS);
        [fast, slow, parent, early, child]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn liveness_timers(&mut self) {
        let now = self.now_ms;
        let early = self.standby_leave_at().is_some_and(|t| now >= t);
        let silent_parent = self.parent.as_ref().and_then(|p| {
            p.heard_at
                .filter(|t| p.open && (early || now >= t + SILENCE_LIMIT_MS))
                .map(|t| (p.peer, now - t))
        });
        if let Some((parent, silent_ms)) = silent_parent {
            if let Some(p) = self.parent.as_mut() {
                p.heard_at = None; // reported once
            }
            // A node that is ending keeps what it has: the end chunk may still come.
            if self.live() {
                self.stats.parents_silent += 1;
                self.event(NodeEvent::ParentSilent { parent, silent_ms });
                self.leave_parent();
            }
        }
        let silent: Vec<PeerId> = self
            .child_heard
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| now >= t + CHILD_SILENCE_LIMIT_MS))
            .map(|(c, _)| *c)
            .collect();
        for child in silent {
            self.event(NodeEvent::ChildSilent { child });
            self.drop_child(child);
        }
        self.keepalive_if_due();
    }

    /// When a silent parent is left early for the standby ([`STANDBY_SILENCE_LIMIT_MS`]): a live
    /// receiver whose parent has spoken, with an open standby edge to another peer and a player
    /// that starves by then.
    fn standby_leave_at(&self) -> Option<u64> {
        let p = self.parent.as_ref().filter(|p| p.open)?;
        let heard = p.heard_at?;
        if !self.standby_usable(p.peer) {
            return None;
        }
        Some((heard + STANDBY_SILENCE_LIMIT_MS).max(self.starving_from()?))
    }

    /// From when the player starves ([`STARVING_MS`]); `None` before it first played. The
    /// player's own deadline says when it runs out: its clock may be behind the node's.
    fn starving_from(&self) -> Option<u64> {
        if let Some(run_out) = self.player.poll_timeout() {
            return Some(run_out.saturating_sub(STARVING_MS)); // playing
        }
        (self.player_base.0 + self.player.stats().stalls > 0).then_some(0)
    }

    /// Sends the keepalives that are due. Called at every timeout and after every data-channel
    /// message: a browser throttles the timers of a hidden tab to one a second, but not its
    /// message events, and the peers at the other ends send keepalives regularly, so a throttled
    /// tab answers in time anyway.
    pub(super) fn keepalive_if_due(&mut self) {
        let mut edges = Vec::new();
        if self.fast_targets() && self.now_ms >= self.keepalive_sent + KEEPALIVE_MS {
            self.keepalive_sent = self.now_ms;
            edges.extend(
                self.child_heard
                    .keys()
                    .filter_map(|c| self.children.get(c).copied()),
            );
        }
        if self.slow_targets() && self.now_ms >= self.keepalive_slow_sent + KEEPALIVE_SLOW_MS {
            self.keepalive_slow_sent = self.now_ms;
            let parent = self.parent.as_ref().filter(|p| p.open).and_then(|p| p.edge);
            edges.extend(parent);
        }
        if edges.is_empty() {
            return; // the usual case: this runs after every data-channel message
        }
        let message = WireMessage::Keepalive.encode();
        for edge in edges {
            self.emit(Output::Transmit {
                edge,
                message: message.clone(),
            });
        }
    }

    /// A message came from the parent: a KEEPALIVE starts (or keeps) the silence timing.
    pub(super) fn heard_parent(&mut self, keepalive: bool) {
        let now = self.now_ms;
        if let Some(p) = self.parent.as_mut() {
            if keepalive || p.heard_at.is_some() {
                p.heard_at = Some(now);
            }
        }
    }

    /// A message came from a child after its HELLO: a KEEPALIVE starts (or keeps) the timing.
    pub(super) fn heard_child(&mut self, child: PeerId, keepalive: bool) {
        let now = self.now_ms;
        if let Some(t) = self.child_heard.get_mut(&child) {
            if keepalive || t.is_some() {
                *t = Some(now);
            }
        }
    }
}
