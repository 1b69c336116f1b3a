//! Where the registry puts viewers: placing a new viewer, relaying signaling between neighbours
//! only, and repairing the tree when a viewer leaves, fails, or reports a broken parent edge. Each
//! repair tells a moved child its new parent (`SET_PARENT`) before telling the parent to connect
//! (`CONNECT_CHILD`), and tells a live old parent to drop the child.

use super::Registry;
use crate::ids::PeerId;
use crate::protocol::{ServerMessage, SignalPayload};
use crate::topology::Topology;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::HashMap;

impl Registry {
    /// Places a joining viewer; false if it found no slot (it cannot relay, and every viewer
    /// that can is full), or the stream is gone.
    pub(super) fn place_viewer(&mut self, stream: &str, viewer: PeerId) -> bool {
        let relays = self.relays(viewer);
        let Some(s) = self.streams.get_mut(stream) else {
            return false;
        };
        let Ok(placement) = s.topology.join_as(viewer, relays) else {
            return false;
        };
        let (parent, depth) = (placement.parent, placement.depth as usize);
        let key = B64.encode(s.key);
        let signing_key = s.signing_key.to_base64();
        if let Some(e) = self.peers.get_mut(&viewer) {
            e.waiting_for = None;
            e.claim = None;
            e.stream = Some(stream.to_string());
        }
        self.send(
            viewer,
            ServerMessage::Joined {
                stream: stream.to_string(),
                key,
                signing_key,
                parent,
                depth,
            },
        );
        self.connect_child(stream, parent, viewer);
        if let Some(leaf) = placement.displaced {
            self.move_child(stream, leaf, viewer, Some(parent));
        }
        if relays {
            self.place_waiting_leaves(stream);
        }
        true
    }

    /// Places the viewers that cannot relay and wait for a slot in `stream`, oldest id first,
    /// while there is room (after a viewer that relays joined or a viewer left).
    pub(super) fn place_waiting_leaves(&mut self, stream: &str) {
        if self.rebuilding(stream) || !self.streams.contains_key(stream) {
            return;
        }
        let mut waiting: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| {
                !e.relays && e.claim.is_none() && e.waiting_for.as_deref() == Some(stream)
            })
            .map(|(id, _)| *id)
            .collect();
        waiting.sort();
        for viewer in waiting {
            if !self.place_viewer(stream, viewer) {
                break;
            }
        }
    }

    /// Takes viewers a repair could not place out of `stream`: each waits for a slot, as a
    /// joining viewer that cannot relay does.
    fn unplace(&mut self, stream: &str, viewers: Vec<PeerId>) {
        for v in viewers {
            if let Some(e) = self.peers.get_mut(&v) {
                e.stream = None;
            }
            self.set_waiting(stream, v, None);
        }
    }

    /// Marks `viewer` as waiting for `stream` and tells it (`queued`: its place in the join
    /// queue, if it is in it).
    fn set_waiting(&mut self, stream: &str, viewer: PeerId, queued: Option<u64>) {
        if let Some(e) = self.peers.get_mut(&viewer) {
            e.waiting_for = Some(stream.to_string());
        }
        self.send(
            viewer,
            ServerMessage::StreamWaiting {
                stream: stream.to_string(),
                queued,
            },
        );
    }

    /// Places `viewer` now if a set-up slot is free and nobody waits before it; otherwise queues
    /// it and tells it its place (see [`super::pacing`]), or refuses it when the queue is full.
    pub(super) fn admit_or_queue(&mut self, stream: &str, viewer: PeerId) {
        if self.pacing.has_room() {
            if !self.place_viewer(stream, viewer) {
                // Every slot of a viewer that relays is taken by viewers that cannot: this one
                // waits for a slot (a viewer that relays joining, a leaf leaving).
                self.set_waiting(stream, viewer, None);
            }
            return;
        }
        let Some(place) = self.pacing.enqueue(viewer, stream) else {
            if let Some(e) = self.peers.get_mut(&viewer) {
                e.waiting_for = None;
            }
            let message = "too many viewers are waiting to join; try again later".to_string();
            return self.refuse(viewer, "busy", message, false);
        };
        self.set_waiting(stream, viewer, Some(place));
    }

    /// Places queued viewers while set-up slots are free. A queued viewer whose stream is gone
    /// or being rebuilt stays waiting for it (as any `wait` join), without its place.
    pub(super) fn admit_queued(&mut self) {
        while let Some((viewer, stream)) = self.pacing.next_admitted() {
            let waiting = self
                .peers
                .get(&viewer)
                .is_some_and(|e| e.waiting_for.as_deref() == Some(stream.as_str()));
            if waiting && self.streams.contains_key(&stream) && !self.rebuilding(&stream) {
                // A viewer that cannot relay and finds no slot stays waiting for the stream;
                // `place_waiting_leaves` places it when a slot opens.
                self.place_viewer(&stream, viewer);
            }
        }
    }

    pub(super) fn relay_signal(&mut self, from: PeerId, to: PeerId, payload: SignalPayload) {
        let neighbours = self
            .peers
            .get(&from)
            .and_then(|e| e.stream.as_ref())
            .and_then(|name| self.streams.get(name))
            .is_some_and(|s| {
                s.topology.parent(to) == Some(from) || s.topology.parent(from) == Some(to)
            });
        let standby = || {
            self.peers
                .get(&from)
                .and_then(|e| e.stream.as_deref())
                .is_some_and(|name| self.standby_neighbours(name, from, to))
        };
        if neighbours || standby() {
            self.send(to, ServerMessage::Signal { from, payload });
        }
        // Otherwise the edge was re-wired while this was in flight: a stale candidate or answer
        // for an edge that no longer exists is dropped, not an error.
    }

    pub(super) fn parent_lost(&mut self, now_ms: u64, child: PeerId, parent: PeerId) {
        if self.claim_lost_parent(now_ms, child, parent) {
            return; // not placed yet: the rebuild places it as an orphan
        }
        let Some(stream) = self.peers.get(&child).and_then(|e| e.stream.clone()) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.topology.parent(child) != Some(parent) {
            return; // already repaired
        }
        // An edge that failed before it opened is a sign of load: the window shrinks.
        self.pacing.failed(now_ms, child);
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        // Only this edge is known to be broken; the parent may be alive for its other children.
        // Moving the child's subtree elsewhere repairs it now; a dead parent is caught by its own
        // socket closing or its heartbeat stopping.
        let before = parents(&s.topology);
        if let Ok(repair) = s.topology.reattach(child, parent) {
            let moved = (repair.rewired.len() + repair.rebalanced.len()) as u64;
            for (peer, new_parent) in repair.rewired {
                let old = before.get(&peer).copied().flatten();
                self.move_child(&stream, peer, new_parent, old);
            }
            for (peer, new_parent) in repair.rebalanced {
                let old = before.get(&peer).copied().flatten();
                self.move_live(&stream, peer, new_parent, old);
            }
            self.count_repairs(now_ms, &stream, moved);
        }
        self.place_waiting_leaves(&stream);
    }

    pub(super) fn remove_viewer(&mut self, now_ms: u64, stream: &str, viewer: PeerId) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        // Rebalanced leaves leave a live parent behind, which must drop them: remember parents.
        let before = parents(&s.topology);
        // Orphans go to their standby parents where those can take them: the warm edge serves.
        let Ok(repair) = s.topology.remove_preferring(viewer, &s.standbys.of) else {
            return;
        };
        let moved = (repair.rewired.len() + repair.rebalanced.len()) as u64;
        self.count_repairs(now_ms, stream, moved);
        // The rewired children's old parent is the viewer that left: nobody to tell.
        for (child, new_parent) in repair.rewired {
            self.move_child(stream, child, new_parent, None);
        }
        for (leaf, new_parent) in repair.rebalanced {
            let old = before.get(&leaf).copied().flatten();
            self.move_live(stream, leaf, new_parent, old);
        }
        // A displaced viewer that found no room left a live parent behind.
        for v in &repair.unplaced {
            if let Some(old) = before.get(v).copied().flatten().filter(|p| *p != viewer) {
                self.send(
                    old,
                    ServerMessage::DropChild {
                        stream: stream.to_string(),
                        child: *v,
                    },
                );
            }
        }
        self.unplace(stream, repair.unplaced);
        self.place_waiting_leaves(stream);
    }

    /// Moves a live viewer whose edge to `old_parent` works (a rebalance, the depth bound, a
    /// grandparent over its fanout): with standby edges on, make-before-break (`MOVE`: the child
    /// keeps its parent until the new edge opens, then closes the old edge itself, so the old
    /// parent is not sent `DROP_CHILD` and may hold it, one over its fanout, until then);
    /// otherwise as any move.
    pub(super) fn move_live(
        &mut self,
        stream: &str,
        child: PeerId,
        parent: PeerId,
        old_parent: Option<PeerId>,
    ) {
        if !self.standby_edges || old_parent.is_none() {
            return self.move_child(stream, child, parent, old_parent);
        }
        let depth = self.depth_in(stream, child);
        self.send(
            child,
            ServerMessage::Move {
                stream: stream.to_string(),
                parent,
                depth,
            },
        );
        self.connect_child(stream, parent, child);
    }

    /// `child`'s depth in `stream`'s tree, as `MOVE` and `SET_PARENT` carry it (1 if unknown).
    fn depth_in(&self, stream: &str, child: PeerId) -> usize {
        self.streams
            .get(stream)
            .and_then(|s| s.topology.depth(child))
            .map_or(1, |d| d as usize)
    }

    /// Moves `child` under `parent`: a live `old_parent` drops it, then the child learns its new
    /// parent before the parent is told to connect (see the module invariants).
    pub(super) fn move_child(
        &mut self,
        stream: &str,
        child: PeerId,
        parent: PeerId,
        old_parent: Option<PeerId>,
    ) {
        if let Some(old) = old_parent {
            self.send(
                old,
                ServerMessage::DropChild {
                    stream: stream.to_string(),
                    child,
                },
            );
        }
        let depth = self.depth_in(stream, child);
        self.send(
            child,
            ServerMessage::SetParent {
                stream: stream.to_string(),
                parent,
                depth,
            },
        );
        self.connect_child(stream, parent, child);
    }

    pub(super) fn connect_child(&mut self, stream: &str, parent: PeerId, child: PeerId) {
        self.pacing.started(self.clock_ms, child);
        self.send(
            parent,
            ServerMessage::ConnectChild {
                stream: stream.to_string(),
                child,
                agent: self.agent_of(child),
            },
        );
    }
}

/// Every node's parent, taken before a repair so the live old parents of moved children can be
/// told to drop them.
pub(super) fn parents(topology: &Topology) -> HashMap<PeerId, Option<PeerId>> {
    topology
        .nodes()
        .into_iter()
        .map(|n| (n.peer, n.parent))
        .collect()
}
