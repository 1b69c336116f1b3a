//! Standby parents: every viewer keeps a warm data channel (keepalives only, no media) to the node
//! the registry would give it if its parent failed now ([`Topology::standby_plan`]), so a lost
//! parent costs a switch, not a new WebRTC connection.
//!
//! - After any change of a stream's tree the plan is computed again; each viewer whose standby
//!   changed is told first (`STANDBY`), then its new standby parent is asked to offer a warm edge
//!   (`CONNECT_STANDBY`) and the old one to drop its edge (`DROP_STANDBY`), the order of a repair.
//!   A change that sets up a new edge waits for a slot of the join pacing (`pacing.rs`),
//!   shallow viewers first; meanwhile the viewer keeps the standby it was told (a switch to one
//!   that no longer fits is corrected as a lost parent is). A change that only drops is told
//!   at once.
//! - A viewer that lost its parent switches at once and says so (`SWITCHED_PARENT`). If it
//!   switched to the standby the registry planned, the move is confirmed: the topology follows
//!   (`SET_PARENT` and `CONNECT_CHILD`, which both ends take as confirmations of the edge they
//!   already hold), and the live old parent drops the child. Otherwise the switch is corrected
//!   as a lost parent is repaired.
//! - The standby of the tallest orphan is the grandparent, whose slot the lost parent still holds
//!   until the registry removes it: for that while the grandparent holds fanout + 1 children
//!   ([`Topology::switch`]). When the lost parent is removed the extra child has its slot; if the
//!   parent stays (only the edge broke), the registry moves the smallest of the grandparent's
//!   subtrees elsewhere after [`OVERFULL_GRACE_MS`].

use super::repair::parents;
use super::Registry;
use crate::ids::PeerId;
use crate::protocol::ServerMessage;
use std::collections::{HashMap, VecDeque};

/// How long a node may hold one child over the fanout after a switch before the registry moves
/// one away: the supervisor's heartbeat limit (3 s by default) removes a frozen or crashed parent
/// within that time, which frees the slot without any move.
pub const OVERFULL_GRACE_MS: u64 = 3000;

/// Most viewers one node is the standby parent of. A grandparent serves up to `fanout`; the
/// shallowest free slot of a full tree is everybody's second choice (with fanout 2 and 80
/// viewers, one leaf would hold ~35 warm edges, each a peer connection and 20 keepalives a
/// second, and could not take more than one or two of them at once anyway). Viewers over the cap,
/// deeper ones first, go without a standby: their repair is a full one.
pub const MAX_STANDBY_CHILDREN: usize = 4;

/// The least time between two standby plans of a stream of `viewers`: `viewers^2 / 4000` ms.
/// A plan costs one removal on a copy of the tree per parent, `O(n^2)` (34 ms for 1,000 viewers
/// on the 2-core test machine, `cargo bench -p ownstream-core --bench topology`), and a flash
/// crowd changes the tree once per join and move: planning after every change kept a whole core
/// of the supervisor busy while 1,000 viewers joined at once, starving the viewers on the same
/// machine. Changes within the interval are planned together at its end, which bounds planning
/// to about a seventh of a core at any size (250 ms apart at 1,000 viewers, 90 ms at 600). Below
/// 64 viewers the interval is 0: every change is planned at once. Until then viewers keep the
/// standbys they were told; a switch to one that no longer fits is corrected as a lost parent is.
pub fn replan_interval_ms(viewers: usize) -> u64 {
    let n = viewers as u64;
    n * n / 4000
}

/// A stream's standby plan as last sent, and since when each node has been over its fanout.
#[derive(Debug, Default)]
pub(super) struct Standbys {
    /// Each viewer's standby parent, as told.
    pub(super) of: HashMap<PeerId, PeerId>,
    /// Each viewer's standby parent in the latest plan.
    want: HashMap<PeerId, PeerId>,
    /// Viewers whose told standby differs from the plan's and waits for a set-up slot, shallow
    /// first.
    pending: VecDeque<PeerId>,
    /// The tree the plan was made for: `(peer, parent)` in BFS order.
    planned_for: Vec<(PeerId, Option<PeerId>)>,
    /// When the plan was made.
    planned_at_ms: Option<u64>,
    /// When the next plan is due: the tree changed within [`replan_interval_ms`] of the last.
    due_ms: Option<u64>,
    overfull_since: HashMap<PeerId, u64>,
}

impl Registry {
    /// Since when `node` of `stream` has held more children than its fanout, as last planned
    /// (`None`: it has not); one is moved away [`OVERFULL_GRACE_MS`] after that.
    pub fn overfull_since(&self, stream: &str, node: PeerId) -> Option<u64> {
        let s = self.streams.get(stream)?;
        s.standbys.overfull_since.get(&node).copied()
    }

    /// Turns standby edges on or off (off by default: the registry's own tests check exact
    /// signaling without them). The supervisor and the simulator turn them on.
    pub fn set_standby_edges(&mut self, on: bool) {
        self.standby_edges = on;
    }

    /// Plans every stream's standbys again where its tree changed, and tells who must know.
    pub(super) fn replan_standbys(&mut self, now_ms: u64) {
        if !self.standby_edges {
            return;
        }
        let names: Vec<String> = self.streams.keys().cloned().collect();
        for name in names {
            self.replan_stream(now_ms, &name);
        }
    }

    fn replan_stream(&mut self, now_ms: u64, stream: &str) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.rebuild.is_some() {
            return; // the tree is not settled: the plan waits for it
        }
        let tree: Vec<(PeerId, Option<PeerId>)> = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| (n.peer, n.parent))
            .collect();
        for o in s.topology.overfull() {
            s.standbys.overfull_since.entry(o).or_insert(now_ms);
        }
        let overfull = s.topology.overfull();
        s.standbys
            .overfull_since
            .retain(|p, _| overfull.contains(p));
        if tree == s.standbys.planned_for {
            s.standbys.due_ms = None;
            return;
        }
        let next = s
            .standbys
            .planned_at_ms
            .map_or(now_ms, |at| at + replan_interval_ms(tree.len()));
        if now_ms < next {
            s.standbys.due_ms = Some(next);
            return;
        }
        s.standbys.due_ms = None;
        s.standbys.planned_at_ms = Some(now_ms);
        let full = s.topology.standby_plan_preferring(&s.standbys.of);
        // Shallow viewers first (breadth-first): their subtrees are the larger ones.
        let mut plan = HashMap::new();
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        for n in s.topology.nodes() {
            if let Some(&to) = full.get(&n.peer) {
                if plan.get(&to) == Some(&n.peer) {
                    // Each the other's standby: two edges between one pair of peers, and
                    // signaling names peers, not edges, so the second edge's answer would reach
                    // the first (seen in the simulator: a switch to a standby whose edge then
                    // never carried a chunk). The shallower viewer keeps its standby.
                    continue;
                }
                let count = load.entry(to).or_default();
                if *count < MAX_STANDBY_CHILDREN {
                    *count += 1;
                    plan.insert(n.peer, to);
                }
            }
        }
        // Shallow viewers first, then those that left the tree (their edges only drop).
        let mut order: Vec<PeerId> = tree.iter().map(|(peer, _)| *peer).collect();
        s.standbys.planned_for = tree;
        let mut gone: Vec<PeerId> = s
            .standbys
            .of
            .keys()
            .filter(|c| !s.topology.contains(**c))
            .copied()
            .collect();
        gone.sort();
        order.extend(gone);
        s.standbys.want = plan;
        s.standbys.pending.clear();
        let mut drops = Vec::new();
        for child in order {
            let told = s.standbys.of.get(&child).copied();
            match s.standbys.want.get(&child) {
                None if told.is_some() => drops.push(child),
                Some(to) if told != Some(*to) => s.standbys.pending.push_back(child),
                _ => {}
            }
        }
        for child in drops {
            self.tell_standby(now_ms, stream, child, None);
        }
        self.apply_standbys(now_ms, stream);
    }

    /// Tells the planned standbys still waiting, while set-up slots are free.
    pub(super) fn apply_all_standbys(&mut self, now_ms: u64) {
        // Called on every STATS: nothing to do (and nothing to allocate) while no slot is free.
        if !self.standby_edges || !self.pacing.standby_room() {
            return;
        }
        let names: Vec<String> = self.streams.keys().cloned().collect();
        for name in names {
            self.apply_standbys(now_ms, &name);
        }
    }

    fn apply_standbys(&mut self, now_ms: u64, stream: &str) {
        while self.pacing.standby_room() {
            let Some(s) = self.streams.get_mut(stream).filter(|s| s.rebuild.is_none()) else {
                return;
            };
            let Some(child) = s.standbys.pending.pop_front() else {
                return;
            };
            let want = s.standbys.want.get(&child).copied();
            if want.is_none() || s.standbys.of.get(&child).copied() == want {
                continue;
            }
            if let Some(to) = want.filter(|to| s.standbys.of.get(to) == Some(&child)) {
                // `to` still holds a standby edge to `child` from an older plan (the plan itself
                // never pairs two viewers both ways): two edges between one pair of peers would
                // mix their signaling, so `to` goes without a standby until its own turn.
                self.tell_standby(now_ms, stream, to, None);
                if let Some(s) = self.streams.get_mut(stream) {
                    s.standbys.pending.push_back(to);
                }
            }
            self.tell_standby(now_ms, stream, child, want);
        }
    }

    /// Makes `after` the standby of `child` (none: drops it): `STANDBY` to the child, then
    /// `CONNECT_STANDBY` to the new standby parent and `DROP_STANDBY` to the old one.
    fn tell_standby(&mut self, now_ms: u64, stream: &str, child: PeerId, after: Option<PeerId>) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let before = match after {
            Some(a) => s.standbys.of.insert(child, a),
            None => s.standbys.of.remove(&child),
        };
        let in_tree = s.topology.contains(child);
        match after {
            Some(_) => self.pacing.standby_started(now_ms, child),
            None => self.pacing.standby_done(child),
        }
        if let Some(b) = before {
            self.send(
                b,
                ServerMessage::DropStandby {
                    stream: stream.to_string(),
                    child,
                },
            );
        }
        if in_tree {
            self.send(
                child,
                ServerMessage::Standby {
                    stream: stream.to_string(),
                    standby: after,
                },
            );
        }
        if let Some(a) = after {
            self.send(
                a,
                ServerMessage::ConnectStandby {
                    stream: stream.to_string(),
                    child,
                    agent: self.agent_of(child),
                },
            );
        }
    }

    /// `SWITCHED_PARENT`: `child` lost `lost` and went to its standby `parent`.
    pub(super) fn switched_parent(
        &mut self,
        now_ms: u64,
        child: PeerId,
        lost: PeerId,
        parent: PeerId,
    ) {
        let Some(stream) = self.peers.get(&child).and_then(|e| e.stream.clone()) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.topology.parent(child) != Some(lost) {
            return; // already repaired (the registry saw the parent go first): SET_PARENT is sent
        }
        let planned = s.standbys.of.get(&child) == Some(&parent);
        if planned && s.topology.switch(child, parent).is_ok() {
            // The standby edge is now the parent edge: not a standby any more, and no drop.
            s.standbys.of.remove(&child);
            self.counters.switches += 1;
            self.move_child(&stream, child, parent, Some(lost));
            self.count_repairs(now_ms, &stream, 1);
        } else {
            // Not the plan (the tree changed meanwhile): repaired as a lost parent is.
            self.parent_lost(now_ms, child, lost);
        }
    }

    /// Moves one subtree off each node that has held more than its fanout for the grace.
    pub(super) fn relieve_overfull(&mut self, now_ms: u64) {
        let mut due: Vec<(String, PeerId)> = Vec::new();
        for (name, s) in &mut self.streams {
            let nodes: Vec<PeerId> = s
                .standbys
                .overfull_since
                .iter()
                .filter(|(_, since)| now_ms >= *since + OVERFULL_GRACE_MS)
                .map(|(p, _)| *p)
                .collect();
            for node in nodes {
                s.standbys.overfull_since.remove(&node);
                due.push((name.clone(), node));
            }
        }
        due.sort();
        for (stream, node) in due {
            let Some(s) = self.streams.get_mut(&stream) else {
                continue;
            };
            if s.topology.children(node).len() <= s.topology.fanout() {
                continue;
            }
            let smallest = s
                .topology
                .children(node)
                .iter()
                .copied()
                .min_by_key(|c| s.topology.subtree(*c).len());
            let Some(moved) = smallest else { continue };
            let before = parents(&s.topology);
            let Ok(repair) = s.topology.reattach(moved, node) else {
                continue;
            };
            let n = (repair.rewired.len() + repair.rebalanced.len()) as u64;
            for (peer, to) in repair.rewired.into_iter().chain(repair.rebalanced) {
                let old = before.get(&peer).copied().flatten();
                self.move_live(&stream, peer, to, old);
            }
            self.count_repairs(now_ms, &stream, n);
        }
    }

    /// When [`Registry::relieve_overfull`] is next due.
    pub(super) fn overfull_timeout(&self) -> Option<u64> {
        self.streams
            .values()
            .flat_map(|s| s.standbys.overfull_since.values())
            .map(|since| since + OVERFULL_GRACE_MS)
            .min()
    }

    /// When a stream's next standby plan is due (changes wait for [`replan_interval_ms`]).
    pub(super) fn replan_timeout(&self) -> Option<u64> {
        self.streams
            .values()
            .filter_map(|s| s.standbys.due_ms)
            .min()
    }

    /// Whether `a` may signal `b` because one is the other's standby parent.
    pub(super) fn standby_neighbours(&self, stream: &str, a: PeerId, b: PeerId) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.standbys.of.get(&a) == Some(&b) || s.standbys.of.get(&b) == Some(&a))
    }
}
