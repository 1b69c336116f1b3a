//! The overlay of one stream: a k-ary tree (or a chain) rooted at the broadcaster.
//!
//! The supervisor owns one [`Topology`] per stream and turns every change into signaling: a
//! [`Placement`] says which parent a new viewer connects to, a [`Repair`] lists every edge that was
//! re-wired when a viewer left or crashed (the two are the same event for the tree).
//!
//! Invariants, checked by `core/tests/topology_props.rs` after every operation:
//! - every viewer has a path to the root (the graph is a tree: no cycles, one parent each);
//! - no node, the broadcaster included, has more than `fanout` children (a chain is fanout 1);
//! - a join lands on the shallowest free slot, ties broken by BFS order;
//! - a removal re-wires only the removed node's own children (their subtrees move intact), plus
//!   the leaf moves of a rebalance, reported separately;
//! - the max depth never exceeds [`Topology::depth_bound`]: `n` for fanout 1 (a chain is a path),
//!   otherwise `B(n) = 2 * d_opt(n) + 1`, where `d_opt(n)` ([`optimal_depth`]) is the least max depth
//!   of any k-ary tree holding the `n` viewers (while every viewer relays: see below);
//! - a viewer that cannot relay ([`Topology::join_as`] with `relays: false`) never has a child:
//!   it is never offered as a slot, never adopts, and is never a repair's new parent.
//!
//! Viewers that cannot relay take a slot and give none, so a tree can run out of slots. A viewer
//! that relays always finds one: when none is free it takes the place of the shallowest viewer
//! that cannot relay, which becomes its child ([`Placement::displaced`]). A viewer that cannot
//! relay and finds no slot is refused ([`TopologyError::NoRoom`]; the registry keeps it waiting),
//! and so is an orphan of a removal that finds none ([`Repair::unplaced`], taken out of the
//! overlay). With such viewers the depth bound is not guaranteed: the rebalance moves a deepest
//! leaf only to a strictly shallower free slot, and there may be none.
//!
//! Why the bound holds. Let `S(D) = k + k^2 + ... + k^D`, so `d_opt(n)` is the least `D` with
//! `S(D) >= n`. *Lemma*: in a tree of `m <= n` viewers, the shallowest free slot is at depth
//! `<= d_opt(n) + 1`. If it were at depth `s > d_opt(n) + 1`, every node above depth `s - 1` would
//! be full, so levels `1..=s-1` would be complete and `m >= S(s - 1) >= S(d_opt(n) + 1)`, which
//! exceeds `S(d_opt(n)) >= n`: a contradiction. Hence a join (which takes the shallowest slot)
//! lands at depth `<= d_opt(n) + 1 <= B(n)`, and `B` never decreases as `n` grows. A removal may
//! break the bound (orphans are re-attached wherever there is room, and `B` may shrink with `n`),
//! so it ends with a rebalance: while the max depth exceeds `B(n)`, detach a node of maximal depth
//! (always a leaf, so only its own edge changes and no subtree is torn down) and attach it to the
//! shallowest free slot, which by the lemma is at depth `<= d_opt(n) + 1 <= B(n)` (as `n >= 1`
//! gives `d_opt(n) >= 1`). *Termination*: each move takes one node from depth `> B(n)` to depth
//! `<= B(n)` and changes no other node's depth, so the number of nodes deeper than `B(n)` strictly
//! decreases; the loop ends after at most that many moves. A moved leaf loses nothing: its new
//! parent's relay resumes it from the last chunk it holds.

use crate::ids::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};

/// Errors of topology changes; the supervisor answers them without touching the overlay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The peer is not part of this stream's overlay.
    #[error("peer {0} is not in the topology")]
    UnknownPeer(PeerId),
    /// The peer already joined this stream (or is its broadcaster).
    #[error("peer {0} already joined")]
    DuplicatePeer(PeerId),
    /// The parent already has `fanout` children, or cannot relay.
    #[error("peer {0} has no free slot")]
    Full(PeerId),
    /// A viewer that cannot relay found no viewer that relays with a free slot.
    #[error("no viewer that relays has a free slot for a viewer that cannot")]
    NoRoom,
    /// The broadcaster cannot leave the tree; it ends the stream instead.
    #[error("the broadcaster {0} cannot be removed; end the stream instead")]
    RemoveRoot(PeerId),
}

/// The shape of a stream's overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyKind {
    /// A tree in which every node (the broadcaster too) has at most `fanout` children; a fanout of
    /// 0 is treated as 1.
    Tree {
        /// Most children per node.
        fanout: usize,
    },
    /// Viewers chained one after another: a tree of fanout 1.
    Chain,
}

impl TopologyKind {
    /// Most children per node for this kind (at least 1).
    pub fn fanout(self) -> usize {
        match self {
            Self::Tree { fanout } => fanout.max(1),
            Self::Chain => 1,
        }
    }
}

/// Where a newly joined viewer was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The new viewer.
    pub peer: PeerId,
    /// The node it must connect to and receive from.
    pub parent: PeerId,
    /// Its depth (the broadcaster is at depth 0).
    pub depth: u32,
    /// A viewer that cannot relay whose slot under `parent` the new viewer took (no other slot
    /// was free): it is now the new viewer's child.
    pub displaced: Option<PeerId>,
}

/// Every edge changed by a removal; the supervisor signals each `(child, new_parent)` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The removed viewer.
    pub removed: PeerId,
    /// The node the removed viewer received from.
    pub former_parent: PeerId,
    /// `(child, new_parent)` for exactly the removed viewer's children, each moved with its
    /// subtree intact. If a rebalance later moved one of these children again, this entry holds its
    /// final parent and the move is not repeated in `rebalanced`.
    pub rewired: Vec<(PeerId, PeerId)>,
    /// `(leaf, new_parent)` for every other leaf the rebalance moved to keep the depth bound,
    /// and for every viewer that cannot relay displaced by an orphan (see the module docs).
    pub rebalanced: Vec<(PeerId, PeerId)>,
    /// Orphans that cannot relay and found no slot: taken out of the overlay.
    pub unplaced: Vec<PeerId>,
}

/// One node as listed by [`Topology::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node.
    pub peer: PeerId,
    /// Its parent; `None` for the broadcaster.
    pub parent: Option<PeerId>,
    /// Its depth (the broadcaster is at depth 0).
    pub depth: u32,
}

#[derive(Clone, Debug)]
struct Node {
    parent: Option<PeerId>,
    /// In attach order, which defines the BFS order used for tie-breaks.
    children: Vec<PeerId>,
    depth: u32,
}

/// The overlay of one stream: see the module docs for its invariants.
#[derive(Clone, Debug)]
pub struct Topology {
    kind: TopologyKind,
    fanout: usize,
    root: PeerId,
    nodes: HashMap<PeerId, Node>,
    /// Viewers that cannot relay: never given children.
    leaf_only: HashSet<PeerId>,
}

/// The least max depth of a tree of fanout `fanout` (treated as at least 1) holding `n` viewers
/// under a root at depth 0: the least `D` with `fanout + fanout^2 + ... + fanout^D >= n`.
pub fn optimal_depth(n: usize, fanout: usize) -> u32 {
    let k = fanout.max(1);
    if k == 1 {
        return u32::try_from(n).unwrap_or(u32::MAX);
    }
    let (mut depth, mut capacity, mut level) = (0u32, 0usize, 1usize);
    while capacity < n {
        level = level.saturating_mul(k);
        capacity = capacity.saturating_add(level);
        depth += 1;
    }
    depth
}

impl Topology {
    /// An overlay holding only the broadcaster `root`, at depth 0.
    pub fn new(kind: TopologyKind, root: PeerId) -> Self {
        let mut nodes = HashMap::new();
        let root_node = Node {
            parent: None,
            children: Vec::new(),
            depth: 0,
        };
        nodes.insert(root, root_node);
        Self {
            kind,
            fanout: kind.fanout(),
            root,
            nodes,
            leaf_only: HashSet::new(),
        }
    }

    /// The kind this overlay was created with.
    pub fn kind(&self) -> TopologyKind {
        self.kind
    }

    /// Most children per node.
    pub fn fanout(&self) -> usize {
        self.fanout
    }

    /// The broadcaster.
    pub fn root(&self) -> PeerId {
        self.root
    }

    /// Number of viewers (the broadcaster is not counted).
    pub fn len(&self) -> usize {
        self.nodes.len() - 1
    }

    /// True when no viewer is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if `peer` is the broadcaster or one of the viewers.
    pub fn contains(&self, peer: PeerId) -> bool {
        self.nodes.contains_key(&peer)
    }

    /// The node `peer` receives from; `None` for the broadcaster or an unknown peer.
    pub fn parent(&self, peer: PeerId) -> Option<PeerId> {
        self.nodes.get(&peer).and_then(|n| n.parent)
    }

    /// The nodes `peer` sends to, in attach order; empty for an unknown peer.
    pub fn children(&self, peer: PeerId) -> &[PeerId] {
        self.nodes.get(&peer).map_or(&[], |n| n.children.as_slice())
    }

    /// The depth of `peer` (the broadcaster is at 0); `None` for an unknown peer.
    pub fn depth(&self, peer: PeerId) -> Option<u32> {
        self.nodes.get(&peer).map(|n| n.depth)
    }

    /// Whether `peer` may be given children (false for a viewer that cannot relay).
    pub fn relays(&self, peer: PeerId) -> bool {
        !self.leaf_only.contains(&peer)
    }

    /// The deepest node's depth (0 with no viewers).
    pub fn max_depth(&self) -> u32 {
        self.nodes.values().map(|n| n.depth).max().unwrap_or(0)
    }

    /// The documented bound on [`Topology::max_depth`] for the current number of viewers.
    pub fn depth_bound(&self) -> u32 {
        depth_bound(self.len(), self.fanout)
    }

    /// Every node, the broadcaster first, in BFS order (by depth, then by attach order).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.bfs(self.root)
            .into_iter()
            .map(|peer| {
                let node = &self.nodes[&peer];
                NodeInfo {
                    peer,
                    parent: node.parent,
                    depth: node.depth,
                }
            })
            .collect()
    }

    /// `peer` and all its descendants in BFS order; empty for an unknown peer.
    pub fn subtree(&self, peer: PeerId) -> Vec<PeerId> {
        if self.contains(peer) {
            self.bfs(peer)
        } else {
            Vec::new()
        }
    }

    /// Adds a viewer that relays at the shallowest free slot (ties: earliest in BFS order).
    pub fn join(&mut self, peer: PeerId) -> Result<Placement, TopologyError> {
        self.join_as(peer, true)
    }

    /// Adds a viewer at the shallowest free slot; one that `relays` takes the place of the
    /// shallowest viewer that cannot when no slot is free (see the module docs).
    pub fn join_as(&mut self, peer: PeerId, relays: bool) -> Result<Placement, TopologyError> {
        if self.contains(peer) {
            return Err(TopologyError::DuplicatePeer(peer));
        }
        let (parent, displaced) = match self.shallowest_free_slot() {
            Some(p) => (p, None),
            None if relays => {
                let leaf = self.shallowest_leaf_only().ok_or(TopologyError::NoRoom)?;
                (self.parent(leaf).ok_or(TopologyError::NoRoom)?, Some(leaf))
            }
            None => return Err(TopologyError::NoRoom),
        };
        self.insert(peer, relays);
        if let Some(leaf) = displaced {
            self.detach(leaf);
        }
        self.attach(peer, parent);
        if let Some(leaf) = displaced {
            self.attach(leaf, peer);
        }
        Ok(Placement {
            peer,
            parent,
            depth: self.nodes[&peer].depth,
            displaced,
        })
    }

    fn insert(&mut self, peer: PeerId, relays: bool) {
        let node = Node {
            parent: None,
            children: Vec::new(),
            depth: 0,
        };
        self.nodes.insert(peer, node);
        if !relays {
            self.leaf_only.insert(peer);
        }
    }

    /// The first viewer that cannot relay in BFS order.
    fn shallowest_leaf_only(&self) -> Option<PeerId> {
        self.bfs(self.root)
            .into_iter()
            .find(|p| self.leaf_only.contains(p))
    }

    /// Adds a viewer under a given `parent` (a supervisor rebuilding the tree from what its peers
    /// re-announce keeps them where they are); returns its depth. The depth bound is not checked
    /// here: the rebuild ends with [`Topology::rebalance_now`].
    pub fn adopt(&mut self, peer: PeerId, parent: PeerId) -> Result<u32, TopologyError> {
        self.adopt_as(peer, parent, true)
    }

    /// [`Topology::adopt`] for a viewer that `relays` or not; a parent that cannot relay is full.
    pub fn adopt_as(
        &mut self,
        peer: PeerId,
        parent: PeerId,
        relays: bool,
    ) -> Result<u32, TopologyError> {
        if self.contains(peer) {
            return Err(TopologyError::DuplicatePeer(peer));
        }
        if !self.contains(parent) {
            return Err(TopologyError::UnknownPeer(parent));
        }
        if !self.has_room(parent) {
            return Err(TopologyError::Full(parent));
        }
        self.insert(peer, relays);
        self.attach(peer, parent);
        Ok(self.nodes[&peer].depth)
    }

    /// Whether `parent` is in the overlay, relays and has a free slot.
    pub fn has_room(&self, parent: PeerId) -> bool {
        self.relays(parent)
            && self
                .nodes
                .get(&parent)
                .is_some_and(|p| p.children.len() < self.fanout)
    }

    /// Restores the depth bound after adoptions: moves deepest leaves to the shallowest free slots
    /// (see the module docs) and returns the moves `(leaf, new_parent)` in order.
    pub fn rebalance_now(&mut self) -> Vec<(PeerId, PeerId)> {
        self.rebalance()
    }

    /// Removes a viewer that left or crashed and re-attaches its children (see the module docs).
    pub fn remove(&mut self, peer: PeerId) -> Result<Repair, TopologyError> {
        self.remove_preferring(peer, &HashMap::new())
    }

    /// [`Topology::remove`], except that an orphan goes to the parent `prefer` names for it when
    /// that node can take it now (in the tree and reachable, room for a child, the depth bound
    /// kept): the registry passes each viewer's standby parent, so a repair gives a viewer the
    /// node it already holds a warm edge to, and a standby once planned stays the plan while it
    /// can (see [`Topology::standby_plan_preferring`]).
    pub fn remove_preferring(
        &mut self,
        peer: PeerId,
        prefer: &HashMap<PeerId, PeerId>,
    ) -> Result<Repair, TopologyError> {
        if peer == self.root {
            return Err(TopologyError::RemoveRoot(peer));
        }
        let node = self
            .nodes
            .remove(&peer)
            .ok_or(TopologyError::UnknownPeer(peer))?;
        self.leaf_only.remove(&peer);
        // Every viewer has a parent; the root was refused above.
        let former_parent = node.parent.unwrap_or(self.root);
        if let Some(p) = self.nodes.get_mut(&former_parent) {
            p.children.retain(|c| *c != peer);
        }
        let mut orphans = node.children;
        for orphan in &orphans {
            if let Some(o) = self.nodes.get_mut(orphan) {
                o.parent = None;
            }
        }
        // Orphans that relay first, as they bring slots; then the tallest subtree first (stable
        // sort keeps attach order for ties): it takes the vacated slot, so the deepest branch
        // moves up; the rest take the shallowest slots left.
        orphans.sort_by_key(|o| (!self.relays(*o), std::cmp::Reverse(self.height(*o))));
        let mut rewired = Vec::with_capacity(orphans.len());
        let mut rebalanced = Vec::new();
        let mut unplaced = Vec::new();
        for (i, orphan) in orphans.into_iter().enumerate() {
            // Detached subtrees are unreachable from the root, so no slot inside them is offered.
            // The vacated slot may be taken already: a child that switched to its standby (the
            // grandparent) before its parent was removed.
            let preferred = prefer
                .get(&orphan)
                .copied()
                .filter(|p| self.can_adopt(orphan, *p));
            let parent = if preferred.is_some() {
                preferred
            } else if i == 0 && self.has_room(former_parent) {
                Some(former_parent)
            } else {
                self.shallowest_free_slot()
            };
            match parent {
                Some(parent) => {
                    self.attach(orphan, parent);
                    rewired.push((orphan, parent));
                }
                None => match self.displace_for(orphan, &mut unplaced) {
                    Some((parent, moved)) => {
                        rewired.push((orphan, parent));
                        rebalanced.extend(moved);
                    }
                    None => unplaced.extend(self.take_out(orphan)),
                },
            }
        }
        for (leaf, parent) in self.rebalance() {
            match rewired.iter_mut().find(|(c, _)| *c == leaf) {
                Some(entry) => entry.1 = parent,
                None => rebalanced.push((leaf, parent)),
            }
        }
        Ok(Repair {
            removed: peer,
            former_parent,
            rewired,
            rebalanced,
            unplaced,
        })
    }

    /// Whether the detached `orphan` may go under `parent` now: `parent` is in the tree and
    /// reachable from the root (not inside a detached subtree), has room, and the orphan's subtree
    /// stays within the depth bound there.
    fn can_adopt(&self, orphan: PeerId, parent: PeerId) -> bool {
        let Some(depth) = self.nodes.get(&parent).map(|n| n.depth) else {
            return false;
        };
        let mut up = parent;
        while up != self.root {
            match self.nodes.get(&up).and_then(|n| n.parent) {
                Some(p) => up = p,
                None => return false,
            }
        }
        parent != orphan
            && self.has_room(parent)
            && depth + 1 + self.height(orphan) <= self.depth_bound()
    }

    /// The detached `orphan`, which relays, takes the place of the shallowest viewer that cannot
    /// (no slot is free); that viewer goes under the orphan if it has room, else out of the
    /// overlay (added to `unplaced`). Returns the orphan's new parent and the displaced viewer's
    /// move, if it stayed.
    fn displace_for(
        &mut self,
        orphan: PeerId,
        unplaced: &mut Vec<PeerId>,
    ) -> Option<(PeerId, Option<(PeerId, PeerId)>)> {
        if !self.relays(orphan) {
            return None;
        }
        let leaf = self.shallowest_leaf_only()?;
        let parent = self.parent(leaf)?;
        self.detach(leaf);
        self.attach(orphan, parent);
        if self.has_room(orphan) {
            self.attach(leaf, orphan);
            Some((parent, Some((leaf, orphan))))
        } else {
            unplaced.extend(self.take_out(leaf));
            Some((parent, None))
        }
    }

    /// Removes a detached `top` and its subtree from the overlay; returns them.
    fn take_out(&mut self, top: PeerId) -> Vec<PeerId> {
        let gone = self.bfs(top);
        for p in &gone {
            self.nodes.remove(p);
            self.leaf_only.remove(p);
        }
        gone
    }

    /// Every viewer's standby: the parent [`Topology::remove`] would give it if its own parent
    /// were removed now (the tallest orphan takes the vacated slot under the grandparent, the
    /// others the shallowest free slots, rebalancing included). Viewers under the root have none
    /// (the stream ends with its broadcaster). A standby is never in the viewer's own subtree.
    /// Costs one removal on a copy per parent: `O(n^2)` over the tree, done once per change.
    pub fn standby_plan(&self) -> HashMap<PeerId, PeerId> {
        self.standby_plan_preferring(&HashMap::new())
    }

    /// [`Topology::standby_plan`] where the removals prefer `prefer` (the standbys planned so
    /// far, see [`Topology::remove_preferring`]): a viewer keeps its standby while that node could
    /// still take it, so a change elsewhere in the tree does not replace warm edges that are still
    /// good (each replacement costs a new edge, ~0.3-0.9 s before it can serve).
    pub fn standby_plan_preferring(
        &self,
        prefer: &HashMap<PeerId, PeerId>,
    ) -> HashMap<PeerId, PeerId> {
        let mut plan = HashMap::new();
        for parent in self.bfs(self.root) {
            if parent == self.root || self.children(parent).is_empty() {
                continue;
            }
            let mut copy = self.clone();
            if let Ok(repair) = copy.remove_preferring(parent, prefer) {
                for (orphan, to) in repair.rewired {
                    plan.insert(orphan, to);
                }
            }
        }
        plan
    }

    /// Moves `child` (with its subtree) under `parent`, which may hold one child more than the
    /// fanout for a while: a viewer that switched to its standby, the grandparent, while the lost
    /// parent still holds the grandparent's slot. The registry takes the extra child off again
    /// once the lost parent is removed or after a grace ([`Topology::overfull`]). Refused when
    /// `parent` is in `child`'s subtree or already holds fanout + 1 children.
    pub fn switch(&mut self, child: PeerId, parent: PeerId) -> Result<u32, TopologyError> {
        if child == self.root {
            return Err(TopologyError::RemoveRoot(child));
        }
        if !self.contains(child) {
            return Err(TopologyError::UnknownPeer(child));
        }
        let full = self.children(parent).len() > self.fanout;
        let refused = !self.contains(parent) || !self.relays(parent) || full;
        if refused || self.subtree(child).contains(&parent) {
            return Err(TopologyError::Full(parent));
        }
        self.detach(child);
        self.attach(child, parent);
        Ok(self.nodes[&child].depth)
    }

    /// Nodes holding more children than the fanout (after [`Topology::switch`]).
    pub fn overfull(&self) -> Vec<PeerId> {
        self.bfs(self.root)
            .into_iter()
            .filter(|p| self.children(*p).len() > self.fanout)
            .collect()
    }

    /// Moves `child` (with its subtree intact) away from `avoid`, its parent, whose edge to it broke
    /// while both stay in the stream. The child goes to the shallowest free slot outside its own
    /// subtree other than `avoid`; when there is none (a chain whose only free slot is the child's
    /// own tail), it stays under `avoid` and the edge is simply rebuilt. Returns the same shape as a
    /// removal: `rewired` holds the child's new parent, `rebalanced` any leaf moves that followed.
    pub fn reattach(&mut self, child: PeerId, avoid: PeerId) -> Result<Repair, TopologyError> {
        if child == self.root {
            return Err(TopologyError::RemoveRoot(child));
        }
        let former_parent = self
            .parent(child)
            .ok_or(TopologyError::UnknownPeer(child))?;
        self.detach(child);
        let parent = self
            .bfs(self.root)
            .into_iter()
            .find(|p| *p != avoid && self.has_room(*p))
            .unwrap_or(former_parent);
        self.attach(child, parent);
        let mut rewired = vec![(child, parent)];
        let mut rebalanced = Vec::new();
        for (leaf, to) in self.rebalance() {
            match rewired.iter_mut().find(|(c, _)| *c == leaf) {
                Some(entry) => entry.1 = to,
                None => rebalanced.push((leaf, to)),
            }
        }
        Ok(Repair {
            removed: child,
            former_parent,
            rewired,
            rebalanced,
            unplaced: Vec::new(),
        })
    }

    /// Moves deepest leaves to the shallowest free slots until the depth bound holds; returns the
    /// moves in order. Terminates: see the module docs.
    fn rebalance(&mut self) -> Vec<(PeerId, PeerId)> {
        let bound = self.depth_bound();
        let mut moves = Vec::new();
        // The last node in BFS order is a deepest node, hence a leaf (the root only if alone).
        while let Some(&leaf) = self.bfs(self.root).last() {
            let depth = self.nodes[&leaf].depth;
            if depth <= bound || leaf == self.root {
                break;
            }
            let old = self.parent(leaf);
            self.detach(leaf);
            // Only a strictly shallower slot is a move: with viewers that cannot relay the lemma
            // fails and the only free slot may be the one just left.
            let to = self
                .shallowest_free_slot()
                .filter(|p| self.nodes[p].depth + 1 < depth);
            match (to, old) {
                (Some(parent), _) => {
                    self.attach(leaf, parent);
                    moves.push((leaf, parent));
                }
                (None, Some(old)) => {
                    self.attach(leaf, old);
                    break;
                }
                (None, None) => break,
            }
        }
        moves
    }

    /// The first node in BFS order from the root that relays and has fewer than `fanout`
    /// children. While every viewer relays one always exists: the `m` reachable nodes have
    /// `m * fanout` slots for `m - 1` edges.
    fn shallowest_free_slot(&self) -> Option<PeerId> {
        self.bfs(self.root).into_iter().find(|p| self.has_room(*p))
    }

    /// Makes the detached `child` (with its subtree) a child of `parent` and fixes subtree depths.
    fn attach(&mut self, child: PeerId, parent: PeerId) {
        let base = match self.nodes.get_mut(&parent) {
            Some(p) => {
                p.children.push(child);
                p.depth
            }
            None => return,
        };
        if let Some(c) = self.nodes.get_mut(&child) {
            c.parent = Some(parent);
        }
        self.set_depths(child, base + 1);
    }

    /// Unlinks `child` from its parent; its subtree stays attached to it.
    fn detach(&mut self, child: PeerId) {
        let parent = self.nodes.get_mut(&child).and_then(|c| c.parent.take());
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.children.retain(|c| *c != child);
        }
    }

    fn set_depths(&mut self, top: PeerId, depth: u32) {
        let mut stack = vec![(top, depth)];
        while let Some((peer, d)) = stack.pop() {
            if let Some(node) = self.nodes.get_mut(&peer) {
                node.depth = d;
                stack.extend(node.children.iter().map(|c| (*c, d + 1)));
            }
        }
    }

    /// Height of the subtree under `top` (0 for a leaf).
    fn height(&self, top: PeerId) -> u32 {
        let base = self.nodes.get(&top).map_or(0, |n| n.depth);
        let deepest = self
            .bfs(top)
            .last()
            .and_then(|p| self.nodes.get(p))
            .map(|n| n.depth);
        deepest.map_or(0, |d| d.saturating_sub(base))
    }

    /// BFS from `top`, children in attach order. Depth is non-decreasing along the result.
    fn bfs(&self, top: PeerId) -> Vec<PeerId> {
        let mut order = Vec::new();
        let mut queue = VecDeque::from([top]);
        while let Some(peer) = queue.pop_front() {
            // The invariants rule out a cycle; should one form, the walk still ends once it has
            // visited as many peers as the overlay holds. A set of the peers seen would say the
            // same at twice the cost, and the standby plan walks the tree O(n) times per change.
            if order.len() >= self.nodes.len() {
                break;
            }
            if let Some(node) = self.nodes.get(&peer) {
                order.push(peer);
                queue.extend(node.children.iter().copied());
            }
        }
        order
    }
}

/// The documented max-depth bound for `n` viewers at `fanout`: `n` for a chain, else
/// `2 * optimal_depth(n) + 1`.
pub fn depth_bound(n: usize, fanout: usize) -> u32 {
    let d_opt = optimal_depth(n, fanout);
    if fanout.max(1) == 1 {
        d_opt
    } else {
        d_opt.saturating_mul(2).saturating_add(1)
    }
}

#[cfg(test)]
mod test;
