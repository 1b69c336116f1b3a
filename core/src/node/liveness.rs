//! Keepalives and silence: each end of an edge whose HELLO was said sends a KEEPALIVE every
//! [`KEEPALIVE_MS`], and takes a peer that has sent one and then nothing for [`SILENCE_LIMIT_MS`]
//! as failed. A frozen process (SIGSTOP, a stalled machine) keeps its sockets open, so ICE and
//! SCTP take seconds to notice it and the supervisor's heartbeat limit is seconds too; silence on
//! the data channel shows it within the limit.
//!
//! - A silent parent is left as a closed one is (`PARENT_LOST`, the supervisor moves the child).
//! - A silent child is dropped (its edge closed, its queue freed); the child, once it runs again,
//!   finds its parent edge closed and reports it.
//!
//! Timing starts at a peer's first KEEPALIVE, not at its HELLO or the edge's opening: a peer that
//! never sends one (a build before keepalives) is never taken for silent, and the time before a
//! parent first speaks is the HELLO repeat's and the open limit's.

use super::rules::{KEEPALIVE_MS, SILENCE_LIMIT_MS};
use super::{Node, NodeEvent, Output};
use crate::frame::Message as WireMessage;
use crate::ids::PeerId;

impl Node {
    /// Whether any edge carries keepalives now: the parent's, once open (HELLO is said at once),
    /// and each child's whose HELLO came.
    fn keepalive_targets(&self) -> bool {
        self.parent
            .as_ref()
            .is_some_and(|p| p.open && p.edge.is_some())
            || !self.child_heard.is_empty()
            || !self.standby_edges().is_empty()
    }

    pub(super) fn liveness_timeout(&self) -> Option<u64> {
        let send = self
            .keepalive_targets()
            .then(|| self.keepalive_sent + KEEPALIVE_MS);
        let parent = self
            .parent
            .as_ref()
            .and_then(|p| p.heard_at.filter(|_| p.open))
            .map(|t| t + SILENCE_LIMIT_MS);
        let child = self
            .child_heard
            .values()
            .flatten()
            .min()
            .map(|t| t + SILENCE_LIMIT_MS);
        [send, parent, child].into_iter().flatten().min()
    }

    pub(super) fn liveness_timers(&mut self) {
        let now = self.now_ms;
        let silent_parent = self.parent.as_ref().and_then(|p| {
            p.heard_at
                .filter(|t| p.open && now >= t + SILENCE_LIMIT_MS)
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
            .filter(|(_, t)| t.is_some_and(|t| now >= t + SILENCE_LIMIT_MS))
            .map(|(c, _)| *c)
            .collect();
        for child in silent {
            self.event(NodeEvent::ChildSilent { child });
            self.drop_child(child);
        }
        self.keepalive_if_due();
    }

    /// Sends the keepalives if they are due. Called at every timeout and after every
    /// data-channel message: a browser throttles the timers of a hidden tab to one a second, but
    /// not its message events, and the peers at the other ends send a keepalive every
    /// [`KEEPALIVE_MS`], so a throttled tab answers in time anyway.
    pub(super) fn keepalive_if_due(&mut self) {
        if self.keepalive_targets() && self.now_ms >= self.keepalive_sent + KEEPALIVE_MS {
            self.send_keepalives();
        }
    }

    /// One KEEPALIVE on every edge that carries them.
    fn send_keepalives(&mut self) {
        self.keepalive_sent = self.now_ms;
        let message = WireMessage::Keepalive.encode();
        let parent = self.parent.as_ref().filter(|p| p.open).and_then(|p| p.edge);
        let children = self
            .child_heard
            .keys()
            .filter_map(|c| self.children.get(c).copied());
        let mut edges: Vec<_> = parent.into_iter().chain(children).collect();
        edges.extend(self.standby_edges());
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
