//! The node's edges: the one to the parent the supervisor named and one per child, their
//! signaling, HELLO and its repeat, the limit on how long the parent's edge may take to open, and
//! what a closed or misbehaving edge means.
//!
//! The parent's edge is created when the parent's offer arrives (a fresh offer means a fresh edge:
//! the parent may have restarted it); a child's edge is created at `CONNECT_CHILD` and offers. A
//! child is sent nothing before its HELLO, and may send nothing else.

use super::rules::{parent_open_limit_ms, HELLO_REPEAT_MS, PARENT_OPEN_LIMIT_MS};
use super::{EdgeId, Node, NodeEvent, Output, Parent};
use crate::frame::Message as WireMessage;
use crate::ids::PeerId;
use crate::protocol::{Agent, PeerMessage, SignalPayload};
use crate::relay::RelayError;
use bytes::Bytes;

impl Parent {
    pub(super) fn new(peer: PeerId, now_ms: u64) -> Self {
        Self {
            peer,
            edge: None,
            open: false,
            waiting_since: Some(now_ms),
            greeted_at: None,
            heard_at: None,
        }
    }
}

impl Node {
    /// Local signaling of an edge (its offer or answer, a candidate) for the remote end.
    pub fn handle_edge_signal(&mut self, now_ms: u64, edge: EdgeId, payload: SignalPayload) {
        if !self.advance(now_ms) {
            return;
        }
        if let Some(to) = self.edge_peer(edge) {
            self.send(PeerMessage::Signal { to, payload });
        }
    }

    /// An edge's data channel opened.
    pub fn handle_edge_open(&mut self, now_ms: u64, edge: EdgeId) {
        if !self.advance(now_ms) || self.standby_open(edge) {
            return;
        }
        if self.is_pending_edge(edge) {
            return self.complete_move(true);
        }
        if !self.is_parent_edge(edge) {
            return; // a child's edge is used once its HELLO comes
        }
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        p.open = true;
        p.waiting_since = None;
        let parent = p.peer;
        self.failed_opens = 0;
        self.greet_parent();
        self.event(NodeEvent::ParentOpen { parent });
        // The supervisor counts connected viewers (a broadcaster may be waiting for them).
        self.report_stats();
    }

    /// A data-channel message arrived on an edge.
    pub fn handle_edge_message(&mut self, now_ms: u64, edge: EdgeId, message: Bytes) {
        if !self.advance(now_ms) {
            return;
        }
        if self.is_parent_edge(edge) {
            if let Some(p) = self.parent.as_mut() {
                p.greeted_at = None;
            }
            self.heard_parent(is_keepalive(&message));
            self.parent_message(message);
        } else if self.standby_message(edge, &message) {
        } else if let Some(child) = self.child_of(edge) {
            self.heard_child(child, is_keepalive(&message));
            self.child_message(child, message);
        }
        self.pump();
        if self.live() {
            self.keepalive_if_due();
        }
    }

    /// An edge closed by itself (the remote left, ICE failed) or could not be created.
    pub fn handle_edge_closed(&mut self, now_ms: u64, edge: EdgeId, reason: &str) {
        if !self.advance(now_ms) {
            return;
        }
        if self.is_parent_edge(edge) {
            let Some(p) = self.parent.as_mut() else {
                return;
            };
            p.edge = None;
            if !p.open {
                self.failed_opens = self.failed_opens.saturating_add(1);
            }
            p.open = false;
            p.greeted_at = None;
            p.heard_at = None;
            let parent = p.peer;
            self.repair_start.get_or_insert(self.now_ms);
            self.event(NodeEvent::ParentClosed {
                parent,
                reason: reason.to_string(),
            });
            if self.pending.is_some() {
                // Moving anyway: the new parent, already placed by the supervisor, takes over.
                return self.complete_move(false);
            }
            if self.switch_to_standby(parent) {
                return;
            }
            if !self.link.is_connected() {
                // Nobody to tell: an orphan, placed once a supervisor takes its RESUME.
                self.parent = None;
            } else if self.live() {
                self.send(PeerMessage::ParentLost { parent });
            }
        } else if self.is_pending_edge(edge) {
            if let Some(p) = self.pending.as_mut() {
                p.edge = None; // its offer may come again; the open limit still counts
            }
        } else if self.standby_closed(edge) {
        } else if let Some(child) = self.child_of(edge) {
            self.children.remove(&child);
            self.child_heard.remove(&child);
            self.promoted.remove(&child);
            let _ = self.relay.remove_child(child);
        }
    }

    /// The channel of an edge holds `bytes` not yet sent (its `bufferedAmount`).
    pub fn handle_buffered_amount(&mut self, edge: EdgeId, bytes: u64) {
        if let Some(child) = self.child_of(edge) {
            let _ = self.relay.handle_buffered_amount(child, bytes);
        }
    }

    fn edge_peer(&self, edge: EdgeId) -> Option<PeerId> {
        if self.is_parent_edge(edge) {
            return self.parent.as_ref().map(|p| p.peer);
        }
        if self.is_standby_edge(edge) {
            return self.standby.as_ref().map(|s| s.peer);
        }
        if self.is_pending_edge(edge) {
            return self.pending.as_ref().map(|p| p.peer);
        }
        self.child_of(edge).or_else(|| self.standby_child_of(edge))
    }

    fn is_parent_edge(&self, edge: EdgeId) -> bool {
        self.parent.as_ref().is_some_and(|p| p.edge == Some(edge))
    }

    pub(super) fn child_of(&self, edge: EdgeId) -> Option<PeerId> {
        self.children
            .iter()
            .find(|(_, e)| **e == edge)
            .map(|(p, _)| *p)
    }

    pub(super) fn child_edge(&self, child: PeerId) -> Option<EdgeId> {
        self.children.get(&child).copied()
    }

    pub(super) fn route_signal(&mut self, from: PeerId, payload: SignalPayload) {
        if self.pending.as_ref().is_some_and(|p| p.peer == from) {
            if matches!(payload, SignalPayload::Offer { .. }) {
                let edge = self.new_edge();
                if let Some(old) = self.pending.as_mut().and_then(|p| p.edge.replace(edge)) {
                    self.emit(Output::CloseEdge(old));
                }
                self.emit(Output::OpenEdge {
                    edge,
                    peer: from,
                    offerer: false,
                    remote_agent: None,
                });
            }
            if let Some(edge) = self.pending.as_ref().and_then(|p| p.edge) {
                self.emit(Output::SignalEdge { edge, payload });
            }
        } else if self.parent.as_ref().is_some_and(|p| p.peer == from) {
            if matches!(payload, SignalPayload::Offer { .. }) {
                self.close_parent_edge();
                let edge = self.new_edge();
                if let Some(p) = self.parent.as_mut() {
                    p.edge = Some(edge);
                }
                self.emit(Output::OpenEdge {
                    edge,
                    peer: from,
                    offerer: false,
                    remote_agent: None,
                });
            }
            if let Some(edge) = self.parent.as_ref().and_then(|p| p.edge) {
                self.emit(Output::SignalEdge { edge, payload });
            }
        } else if let Some(edge) = self.child_edge(from) {
            self.emit(Output::SignalEdge { edge, payload });
        } else {
            self.route_standby_signal(from, &payload);
        }
        // Otherwise it is for an edge that no longer exists.
    }

    pub(super) fn set_parent(&mut self, parent: PeerId, depth: usize) {
        if self.is_broadcaster() {
            return;
        }
        self.close_pending_edge();
        if self
            .parent
            .as_ref()
            .is_some_and(|p| p.peer == parent && p.open)
        {
            // Confirms a switch to the standby: the edge is there already.
            self.depth = depth;
            return;
        }
        if self.set_parent_to_standby(parent, depth) {
            return;
        }
        self.close_parent_edge();
        self.stats.repairs += 1;
        self.depth = depth;
        self.repair_start.get_or_insert(self.now_ms);
        self.reset_reassembly();
        self.parent = Some(Parent::new(parent, self.now_ms));
        self.event(NodeEvent::Reattached { parent, depth });
    }

    pub(super) fn connect_child(&mut self, child: PeerId, agent: Option<Agent>) {
        if !self.live() || self.connect_standby_child(child) {
            return;
        }
        self.drop_child(child);
        let edge = self.new_edge();
        let _ = self.relay.add_child(child);
        self.children.insert(child, edge);
        self.emit(Output::OpenEdge {
            edge,
            peer: child,
            offerer: true,
            remote_agent: agent,
        });
    }

    pub(super) fn drop_child(&mut self, child: PeerId) {
        if let Some(edge) = self.children.remove(&child) {
            self.emit(Output::CloseEdge(edge));
        }
        self.child_heard.remove(&child);
        self.promoted.remove(&child);
        let _ = self.relay.remove_child(child);
    }

    fn child_message(&mut self, child: PeerId, message: Bytes) {
        match WireMessage::decode(message) {
            Ok(WireMessage::Hello { last }) => {
                match self.relay.handle_hello(self.now_ms, child, last) {
                    Ok(()) => {
                        self.child_heard.entry(child).or_insert(None);
                        self.event(NodeEvent::ChildHello { child, last });
                    }
                    // A child that heard nothing yet repeats its HELLO: nothing to do.
                    Err(RelayError::DuplicateHello(_)) => {}
                    Err(e) => self.event(NodeEvent::RelayRefused {
                        error: e.to_string(),
                    }),
                }
            }
            // Timed by `heard_child`; one before HELLO (a lost HELLO) is harmless too.
            Ok(WireMessage::Keepalive) => {}
            Ok(_) | Err(_) => {
                self.event(NodeEvent::ChildMisbehaved { child });
                self.drop_child(child);
            }
        }
    }

    /// Says HELLO on the parent's edge with the newest chunk held.
    pub(super) fn greet_parent(&mut self) {
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        let Some(edge) = p.edge.filter(|_| p.open) else {
            return;
        };
        p.greeted_at = Some(self.now_ms);
        let message = WireMessage::Hello {
            last: self.last_seq,
        }
        .encode();
        self.emit(Output::Transmit { edge, message });
    }

    pub(super) fn parent_timeout(&self) -> Option<u64> {
        let moving = self
            .pending
            .as_ref()
            .and_then(|p| p.waiting_since)
            .map(|t| t + PARENT_OPEN_LIMIT_MS);
        let p = self.parent.as_ref()?;
        let hello = p.greeted_at.map(|t| t + HELLO_REPEAT_MS);
        let open = p
            .waiting_since
            .filter(|_| self.live())
            .map(|t| t + parent_open_limit_ms(self.failed_opens));
        hello.into_iter().chain(open).chain(moving).min()
    }

    pub(super) fn parent_timers(&mut self) {
        let now = self.now_ms;
        let overdue = self
            .pending
            .as_ref()
            .and_then(|p| p.waiting_since)
            .is_some_and(|t| now >= t + PARENT_OPEN_LIMIT_MS);
        if overdue {
            // The new edge never opened: move anyway, and its open limit reports it below.
            self.complete_move(false);
        }
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        if p.greeted_at.is_some_and(|t| now >= t + HELLO_REPEAT_MS) {
            self.event(NodeEvent::HelloRepeated);
            self.greet_parent();
        }
        let live = self.live();
        let limit = parent_open_limit_ms(self.failed_opens);
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        let overdue = p.waiting_since.is_some_and(|t| now >= t + limit);
        if overdue && live {
            self.failed_opens = self.failed_opens.saturating_add(1);
            // Wait again before the next report, should the supervisor keep this parent.
            p.waiting_since = Some(now);
            let parent = p.peer;
            self.event(NodeEvent::ParentOpenTimeout { parent });
            self.leave_parent();
        }
    }

    /// Closes the edge to the parent and asks the supervisor for another parent.
    pub(super) fn leave_parent(&mut self) {
        let Some(parent) = self.parent.as_ref().map(|p| p.peer) else {
            return;
        };
        self.close_parent_edge();
        self.repair_start.get_or_insert(self.now_ms);
        if self.pending.is_some() {
            return self.complete_move(false);
        }
        if self.switch_to_standby(parent) {
            return;
        }
        if self.link.is_connected() {
            self.send(PeerMessage::ParentLost { parent });
        } else {
            self.parent = None; // as in `handle_edge_closed`
        }
    }

    pub(super) fn close_parent_edge(&mut self) {
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        p.open = false;
        p.greeted_at = None;
        p.heard_at = None;
        if let Some(edge) = p.edge.take() {
            self.emit(Output::CloseEdge(edge));
        }
    }

    /// Closes every edge, as a crash would.
    pub(super) fn close_all_edges(&mut self) {
        self.close_pending_edge();
        self.close_standby_edges();
        self.close_parent_edge();
        self.parent = None;
        let children: Vec<PeerId> = self.children.keys().copied().collect();
        for child in children {
            self.drop_child(child);
        }
    }
}

impl Node {
    /// `MOVE`: make-before-break. Keep the current parent while the new one's edge opens; a node
    /// without an open parent edge (or moving to its open standby) has nothing to keep.
    pub(super) fn move_to(&mut self, parent: PeerId, depth: usize) {
        if self.is_broadcaster() {
            return;
        }
        let keep = self.live()
            && self
                .parent
                .as_ref()
                .is_some_and(|p| p.open && p.peer != parent);
        let warm = self
            .standby
            .as_ref()
            .is_some_and(|s| s.peer == parent && s.open);
        if !keep || warm {
            return self.set_parent(parent, depth);
        }
        self.close_pending_edge();
        self.depth = depth;
        let mut pending = Parent::new(parent, self.now_ms);
        if self.standby.as_ref().is_some_and(|s| s.peer == parent) {
            // The new parent's CONNECT_CHILD keeps the standby edge still opening: so must this
            // side, or the next STANDBY closes the edge the move waits for and the move hangs
            // until its open limit.
            pending.edge = self.standby.take().and_then(|s| s.edge);
        }
        self.pending = Some(pending);
        self.event(NodeEvent::Moving { parent, depth });
    }

    fn is_pending_edge(&self, edge: EdgeId) -> bool {
        self.pending.as_ref().is_some_and(|p| p.edge == Some(edge))
    }

    fn close_pending_edge(&mut self) {
        if let Some(edge) = self.pending.take().and_then(|p| p.edge) {
            self.emit(Output::CloseEdge(edge));
        }
    }

    /// The move's new parent becomes the parent: at once with HELLO when its edge `opened` (the
    /// old edge closes after: make-before-break), or still opening when the old parent was lost
    /// or the new edge is overdue (a break: the repair time counts).
    fn complete_move(&mut self, opened: bool) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        self.close_parent_edge();
        if opened {
            p.open = true;
            p.waiting_since = None;
        } else {
            self.repair_start.get_or_insert(self.now_ms);
        }
        self.stats.repairs += 1;
        self.reset_reassembly();
        let (parent, depth) = (p.peer, self.depth);
        self.parent = Some(p);
        self.event(NodeEvent::Reattached { parent, depth });
        if opened {
            self.greet_parent();
            self.event(NodeEvent::ParentOpen { parent });
        }
    }
}

/// Whether a data-channel message is a KEEPALIVE (the only one that starts silence timing).
fn is_keepalive(message: &Bytes) -> bool {
    matches!(
        WireMessage::decode(message.clone()),
        Ok(WireMessage::Keepalive)
    )
}
