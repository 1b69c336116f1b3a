//! The node's WebRTC edges: opening them, routing signaling to them, and reacting to their events.
//! Each edge carries a generation number so events from an edge that was already replaced are
//! ignored.

use super::{ChildEdge, Input, Node};
use crate::edge::{Edge, EdgeEvent, Role as EdgeRole};
use ownstream_core::frame::Message as WireMessage;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{PeerMessage, SignalPayload};
use ownstream_core::relay::RelayError;
use std::sync::Arc;
use tokio::sync::mpsc;

impl Node {
    pub(super) async fn open_edge(
        &mut self,
        remote: PeerId,
        role: EdgeRole,
    ) -> Option<(Arc<Edge>, u64)> {
        self.generation += 1;
        let generation = self.generation;
        let (tx, mut rx) = mpsc::channel(1024);
        let edge = match Edge::start(role, &self.config.edge, tx).await {
            Ok(edge) => Arc::new(edge),
            Err(e) => {
                tracing::warn!(%remote, error = %e, "cannot create a peer connection");
                return None;
            }
        };
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if inputs.send(Input::Edge(remote, generation, ev)).is_err() {
                    break;
                }
            }
        });
        Some((edge, generation))
    }

    pub(super) async fn connect_child(&mut self, child: PeerId) {
        self.drop_child(child).await;
        if let Some((edge, generation)) = self.open_edge(child, EdgeRole::Offerer).await {
            let _ = self.relay.add_child(child);
            self.children.insert(child, ChildEdge { edge, generation });
        }
    }

    pub(super) async fn drop_child(&mut self, child: PeerId) {
        if let Some(old) = self.children.remove(&child) {
            old.edge.close().await;
        }
        let _ = self.relay.remove_child(child);
    }

    pub(super) async fn route_signal(&mut self, from: PeerId, payload: SignalPayload) {
        let is_parent = self.parent.as_ref().is_some_and(|p| p.peer == from);
        if is_parent {
            if matches!(payload, SignalPayload::Offer { .. }) {
                // A fresh offer means a fresh edge (the parent may have restarted it).
                if let Some((old, _)) = self.parent.as_mut().and_then(|p| p.edge.take()) {
                    old.close().await;
                }
                let edge = self.open_edge(from, EdgeRole::Answerer).await;
                if let Some(p) = self.parent.as_mut() {
                    p.edge = edge;
                }
            }
            if let Some((edge, _)) = self.parent.as_ref().and_then(|p| p.edge.clone()) {
                if let Err(e) = edge.handle_signal(payload).await {
                    tracing::warn!(%from, error = %e, "bad signaling from parent");
                }
            }
        } else if let Some(child) = self.children.get(&from) {
            if let Err(e) = child.edge.handle_signal(payload).await {
                tracing::warn!(%from, error = %e, "bad signaling from child");
            }
        }
    }

    pub(super) async fn handle_edge(&mut self, peer: PeerId, generation: u64, ev: EdgeEvent) {
        let parent_edge = self
            .parent
            .as_ref()
            .and_then(|p| p.edge.as_ref().filter(|_| p.peer == peer))
            .filter(|(_, g)| *g == generation)
            .map(|(e, _)| e.clone());
        if let Some(edge) = parent_edge {
            return self.handle_parent_event(peer, edge, ev).await;
        }
        if self
            .children
            .get(&peer)
            .is_some_and(|c| c.generation == generation)
        {
            self.handle_child_event(peer, ev).await;
        }
        // Anything else comes from an edge that was already replaced: ignore it.
    }

    pub(super) async fn handle_parent_event(
        &mut self,
        peer: PeerId,
        edge: Arc<Edge>,
        ev: EdgeEvent,
    ) {
        match ev {
            EdgeEvent::Signal(payload) => self.send(PeerMessage::Signal { to: peer, payload }),
            EdgeEvent::Open => {
                if let Some(p) = self.parent.as_mut() {
                    p.waiting_since = None;
                }
                self.greet_parent(&edge).await;
                self.stats.connected = true;
                self.report_stats();
            }
            EdgeEvent::Message(bytes) => {
                if let Some(p) = self.parent.as_mut() {
                    p.greeted = None;
                }
                self.handle_parent_message(bytes)
            }
            EdgeEvent::Closed { reason } => {
                tracing::info!(%peer, %reason, "parent edge closed");
                self.stats.connected = false;
                self.repair_start
                    .get_or_insert_with(std::time::Instant::now);
                if let Some(p) = self.parent.as_mut() {
                    p.edge = None;
                }
                if self.ending.is_none() {
                    self.send(PeerMessage::ParentLost { parent: peer });
                }
            }
        }
    }

    async fn greet_parent(&mut self, edge: &Edge) {
        let hello = WireMessage::Hello {
            last: self.last_seq,
        }
        .encode();
        if let Err(e) = edge.send(hello).await {
            tracing::warn!(error = %e, "cannot greet parent");
        }
        if let Some(p) = self.parent.as_mut() {
            p.greeted = Some(std::time::Instant::now());
        }
    }

    /// Says HELLO again if the parent has sent nothing since the last one (see `HELLO_REPEAT`);
    /// a parent ignores a repeat.
    pub(super) async fn repeat_hello(&mut self) {
        let Some(p) = self.parent.as_ref() else {
            return;
        };
        let due = p
            .greeted
            .is_some_and(|t| t.elapsed() >= super::HELLO_REPEAT);
        if let (true, Some((edge, _))) = (due, p.edge.clone()) {
            tracing::debug!(parent = %p.peer, "nothing from the parent yet; repeating HELLO");
            self.greet_parent(&edge).await;
        }
    }

    /// Gives up a parent edge that did not open in time (see `PARENT_OPEN_LIMIT`).
    pub(super) fn check_parent_open(&mut self) {
        if self.ending.is_some() {
            return;
        }
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        if p.waiting_since
            .is_none_or(|t| t.elapsed() < super::PARENT_OPEN_LIMIT)
        {
            return;
        }
        tracing::warn!(parent = %p.peer, "the edge to the parent did not open in time; asking to be moved");
        // Wait again before the next report, should the supervisor keep this parent.
        p.waiting_since = Some(std::time::Instant::now());
        self.leave_parent();
    }

    /// Closes the edge to the parent and asks the supervisor for another one.
    pub(super) fn leave_parent(&mut self) {
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        let parent = p.peer;
        if let Some((edge, _)) = p.edge.take() {
            tokio::spawn(async move { edge.close().await });
        }
        self.stats.connected = false;
        self.repair_start
            .get_or_insert_with(std::time::Instant::now);
        self.send(PeerMessage::ParentLost { parent });
    }

    pub(super) async fn handle_child_event(&mut self, peer: PeerId, ev: EdgeEvent) {
        match ev {
            EdgeEvent::Signal(payload) => self.send(PeerMessage::Signal { to: peer, payload }),
            EdgeEvent::Open => tracing::debug!(%peer, "child edge open"),
            EdgeEvent::Message(bytes) => match WireMessage::decode(bytes) {
                Ok(WireMessage::Hello { last }) => {
                    tracing::debug!(%peer, ?last, "child said hello");
                    match self.relay.handle_hello(self.now(), peer, last) {
                        Ok(()) => {}
                        // A child that heard nothing yet repeats its HELLO: nothing to do.
                        Err(RelayError::DuplicateHello(_)) => {}
                        Err(e) => tracing::warn!(%peer, error = %e, "unexpected HELLO"),
                    }
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(%peer, "child sent something other than HELLO; closing its edge");
                    self.drop_child(peer).await;
                }
            },
            EdgeEvent::Closed { reason } => {
                tracing::info!(%peer, %reason, "child edge closed");
                self.children.remove(&peer);
                let _ = self.relay.remove_child(peer);
            }
        }
    }
}
