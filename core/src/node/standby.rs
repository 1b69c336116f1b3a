//! Standby edges: a warm data channel from a viewer to the node the supervisor planned as its next
//! parent (`STANDBY`), so a lost parent costs a switch, not a new WebRTC connection (~0.8 s on
//! loopback, more under load). It carries one KEEPALIVE, from the standby parent as it opens, and
//! nothing else until a switch: that one tells the viewer the standby speaks keepalives, so a
//! switched-to parent's silence is timed from the switch (`liveness`). Why not a steady trickle:
//! every message is a full trip through webrtc-rs, and keepalives both ways every 400 ms on
//! every standby edge were 17 % of the CPU per relayed Mbit/s of 400 receivers (0.333 against
//! 0.277 % of a core, medians of 6 alternating runs: `experiments/results/standby-keepalives`),
//! while nothing read them but that first one. A dead standby is still found: ICE's consent
//! checks close its edge (~5 s between Rust peers, `peer::edge`), and the supervisor sees its
//! heartbeat stop.
//!
//! - The viewer's side: the standby parent offers (`CONNECT_STANDBY` on its side); the viewer
//!   answers. When its parent is lost (edge closed, silent, malformed, never opened) and the
//!   standby edge is open, the viewer switches at once: the standby edge becomes
//!   the parent edge, HELLO names the newest chunk held, and `SWITCHED_PARENT` tells the
//!   supervisor, which confirms (`SET_PARENT` naming the parent it already has, taken as a
//!   confirmation) or corrects (another `SET_PARENT`). A `SET_PARENT` naming the standby (the
//!   supervisor saw the parent go first) switches too.
//! - The standby parent's side: standby children are kept apart from the children (no relay queue,
//!   not in `RESUME`, not counted). A HELLO on a standby edge makes it a child at once (its relay
//!   resumes it from the chunk it names): the node may hold one child over the fanout until the
//!   supervisor confirms the move, which it then owns (`registry::standby`). The `CONNECT_CHILD`
//!   that confirms it keeps the edge instead of offering a new one.

use super::{EdgeId, Node, NodeEvent, Output, Parent};
use crate::frame::Message as WireMessage;
use crate::ids::PeerId;
use crate::protocol::{Agent, PeerMessage, SignalPayload};
use bytes::Bytes;

/// The viewer's warm edge to its standby parent.
#[derive(Debug)]
pub(super) struct Standby {
    pub(super) peer: PeerId,
    pub(super) edge: Option<EdgeId>,
    pub(super) open: bool,
    /// Set once the standby sent its KEEPALIVE: then a switch times the new parent's silence from
    /// the switch (a standby that never sent one, a build before keepalives, is never timed).
    pub(super) heard_at: Option<u64>,
}

/// A standby parent's warm edge to a child.
#[derive(Debug, Clone, Copy)]
pub(super) struct StandbyChild {
    pub(super) edge: EdgeId,
    pub(super) open: bool,
}

impl Node {
    /// `STANDBY`: keep a warm edge to `standby` (or none).
    pub(super) fn set_standby(&mut self, standby: Option<PeerId>) {
        if self.is_broadcaster() || !self.live() {
            return;
        }
        let standby = standby.filter(|s| {
            self.parent.as_ref().is_none_or(|p| p.peer != *s)
                && self.pending.as_ref().is_none_or(|p| p.peer != *s)
        });
        if self.standby.as_ref().map(|s| s.peer) == standby {
            return;
        }
        self.close_standby_edge();
        self.standby = standby.map(|peer| Standby {
            peer,
            edge: None,
            open: false,
            heard_at: None,
        });
    }

    /// `CONNECT_STANDBY`: offer a warm edge to `child`.
    pub(super) fn connect_standby(&mut self, child: PeerId, agent: Option<Agent>) {
        if !self.live() || self.children.contains_key(&child) {
            return;
        }
        self.drop_standby(child);
        let edge = self.new_edge();
        self.standby_children
            .insert(child, StandbyChild { edge, open: false });
        self.emit(Output::OpenEdge {
            edge,
            peer: child,
            offerer: true,
            remote_agent: agent,
        });
    }

    /// `DROP_STANDBY`: close the warm edge to `child`.
    pub(super) fn drop_standby(&mut self, child: PeerId) {
        if let Some(s) = self.standby_children.remove(&child) {
            self.emit(Output::CloseEdge(s.edge));
        }
    }

    pub(super) fn close_standby_edge(&mut self) {
        if let Some(edge) = self.standby.take().and_then(|s| s.edge) {
            self.emit(Output::CloseEdge(edge));
        }
    }

    pub(super) fn is_standby_edge(&self, edge: EdgeId) -> bool {
        self.standby.as_ref().is_some_and(|s| s.edge == Some(edge))
    }

    pub(super) fn standby_child_of(&self, edge: EdgeId) -> Option<PeerId> {
        self.standby_children
            .iter()
            .find(|(_, s)| s.edge == edge)
            .map(|(p, _)| *p)
    }

    /// Signaling from the standby parent (true if it was).
    pub(super) fn route_standby_signal(&mut self, from: PeerId, payload: &SignalPayload) -> bool {
        if self.standby.as_ref().is_some_and(|s| s.peer == from) {
            if matches!(payload, SignalPayload::Offer { .. }) {
                let edge = self.new_edge();
                if let Some(old) = self.standby.as_mut().and_then(|s| {
                    s.open = false;
                    s.heard_at = None;
                    s.edge.replace(edge)
                }) {
                    self.emit(Output::CloseEdge(old));
                }
                self.emit(Output::OpenEdge {
                    edge,
                    peer: from,
                    offerer: false,
                    remote_agent: None,
                });
            }
            if let Some(edge) = self.standby.as_ref().and_then(|s| s.edge) {
                self.emit(Output::SignalEdge {
                    edge,
                    payload: payload.clone(),
                });
            }
            return true;
        }
        if let Some(s) = self.standby_children.get(&from).copied() {
            self.emit(Output::SignalEdge {
                edge: s.edge,
                payload: payload.clone(),
            });
            return true;
        }
        false
    }

    /// A standby edge opened (true if `edge` is one).
    pub(super) fn standby_open(&mut self, edge: EdgeId) -> bool {
        if let Some(s) = self.standby.as_mut().filter(|s| s.edge == Some(edge)) {
            s.open = true;
            return true;
        }
        if let Some(c) = self.standby_child_of(edge) {
            if let Some(s) = self.standby_children.get_mut(&c) {
                s.open = true;
            }
            // The edge's one message before a switch: see the module's doc.
            self.emit(Output::Transmit {
                edge,
                message: WireMessage::Keepalive.encode(),
            });
            return true;
        }
        false
    }

    /// A message on a standby edge: true if it was consumed here (a HELLO makes the edge a
    /// child's and is left for the child's path).
    pub(super) fn standby_message(&mut self, edge: EdgeId, message: &Bytes) -> bool {
        let keepalive = matches!(
            WireMessage::decode(message.clone()),
            Ok(WireMessage::Keepalive)
        );
        let now = self.now_ms;
        if let Some(s) = self.standby.as_mut().filter(|s| s.edge == Some(edge)) {
            if keepalive || s.heard_at.is_some() {
                s.heard_at = Some(now);
            }
            return true; // a standby sends nothing but its one keepalive before the switch
        }
        let Some(child) = self.standby_child_of(edge) else {
            return false;
        };
        if let Ok(WireMessage::Hello { .. }) = WireMessage::decode(message.clone()) {
            // The child switched to this node: a child from now on.
            self.standby_children.remove(&child);
            self.children.insert(child, edge);
            let _ = self.relay.add_child(child);
            self.promoted.insert(child);
            self.event(NodeEvent::StandbyChildSwitched { child });
            return false; // the HELLO is the child's now
        }
        true
    }

    /// A standby edge closed (true if `edge` was one).
    pub(super) fn standby_closed(&mut self, edge: EdgeId) -> bool {
        if let Some(s) = self.standby.as_mut().filter(|s| s.edge == Some(edge)) {
            s.edge = None;
            s.open = false;
            s.heard_at = None;
            return true;
        }
        if let Some(c) = self.standby_child_of(edge) {
            self.standby_children.remove(&c);
            return true;
        }
        false
    }

    /// Whether a live node could switch to its standby now, its parent `lost` gone: the standby
    /// edge is open and leads to another peer.
    pub(super) fn standby_usable(&self, lost: PeerId) -> bool {
        self.live()
            && self
                .standby
                .as_ref()
                .is_some_and(|s| s.open && s.edge.is_some() && s.peer != lost)
    }

    /// The parent `lost` is gone: take the standby's open edge as the parent edge, say HELLO on it
    /// and tell the supervisor. False (nothing done) when there is no open standby edge.
    pub(super) fn switch_to_standby(&mut self, lost: PeerId) -> bool {
        if !self.standby_usable(lost) {
            return false;
        }
        let Some(s) = self.standby.take() else {
            return false;
        };
        self.close_parent_edge();
        self.adopt_standby(s);
        if self.link.is_connected() {
            self.send(PeerMessage::SwitchedParent {
                lost,
                parent: self.parent.as_ref().map_or(lost, |p| p.peer),
            });
        }
        true
    }

    /// Makes the standby edge the parent edge (saying HELLO on it if it is open).
    pub(super) fn adopt_standby(&mut self, s: Standby) {
        self.stats.repairs += 1;
        self.repair_start.get_or_insert(self.now_ms);
        self.repair_by_switch = s.open;
        if s.open {
            self.stats.standby_switches += 1;
        }
        self.reset_reassembly();
        let parent = s.peer;
        self.parent = Some(Parent {
            peer: parent,
            edge: s.edge,
            open: s.open,
            waiting_since: (!s.open).then_some(self.now_ms),
            greeted_at: None,
            // The standby sent its one keepalive when the edge opened, long ago maybe: the new
            // parent's silence is timed from the switch.
            heard_at: s.heard_at.map(|_| self.now_ms),
        });
        self.event(NodeEvent::SwitchedToStandby { parent });
        self.greet_parent();
    }

    /// `SET_PARENT` that names the standby: switch to it now. True if it did.
    pub(super) fn set_parent_to_standby(&mut self, parent: PeerId, depth: usize) -> bool {
        if self.standby.as_ref().is_none_or(|s| s.peer != parent) {
            return false;
        }
        let Some(s) = self.standby.take() else {
            return false;
        };
        self.close_parent_edge();
        self.depth = depth;
        self.adopt_standby(s);
        true
    }

    /// `CONNECT_CHILD` for a child this node already holds an edge to from its standby: keep it.
    /// True if it did.
    pub(super) fn connect_standby_child(&mut self, child: PeerId) -> bool {
        if let Some(s) = self.standby_children.remove(&child) {
            // Moved here by the supervisor before the child said HELLO: the warm edge serves.
            self.children.insert(child, s.edge);
            let _ = self.relay.add_child(child);
            return true;
        }
        // The child switched here (its HELLO came first): this confirms it.
        self.promoted.remove(&child) && self.children.contains_key(&child)
    }

    /// Closes every standby edge (the node ends, or starts over).
    pub(super) fn close_standby_edges(&mut self) {
        self.close_standby_edge();
        let children: Vec<PeerId> = self.standby_children.keys().copied().collect();
        for c in children {
            self.drop_standby(c);
        }
        self.promoted.clear();
    }
}
