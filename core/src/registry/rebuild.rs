//! Soft state: a supervisor that starts (a restart, or another one taking over) rebuilds each
//! stream's registry and tree from what its peers re-announce (`RESUME`), keeping everyone where
//! they are, then resumes joins and repairs.
//!
//! The rules, each applied by the registry alone (so every supervisor rebuilds alike):
//! - **A stream comes back with its broadcaster.** Its `RESUME` carries the stream key it tags
//!   chunks with; the stream is re-created under that key (so the viewers' keys stay valid) with
//!   the broadcaster as root, if the name is free. What a restarted supervisor can trust here: the
//!   handshake proves the broadcaster holds the private key of the id it presents, but nothing
//!   binds that id to the stream any more (the previous supervisor's memory is gone), so a name
//!   is first come, first served, exactly as for `REGISTER_STREAM`; a broadcaster's
//!   `RESUME` must carry its publish credential like `REGISTER_STREAM` does. A broadcaster that claims a stream
//!   under a key of its own choosing gains nothing over registering it: viewers are only kept in
//!   place by mutual claims (below), and one whose key differs is told so in `RESUMED` and starts
//!   over as for a new broadcast. Viewers' claims wait for their stream's broadcaster.
//! - **A viewer is kept in place only if its parent confirms it**: the child names the parent
//!   and the parent (already placed) lists the child among its first `fanout` children, and the
//!   parent has room. So a lying or confused peer can neither steal a child nor push itself under
//!   a parent. Two parents claiming one child: the child's word decides, the other parent is told
//!   to drop it. A parent that lists more than `fanout` children (a fanout overflow) keeps the
//!   first `fanout` it lists and drops the rest. A claimed depth that does not match the parent's
//!   is not held against the claim: depth follows from the parents (an ancestor may have moved
//!   while no supervisor ran), and `RESUMED` says the true one.
//! - **The rebuild settles** when every claim is placed and every placed parent's claimed
//!   children came back, or [`SETTLE_MS`] after the broadcaster re-announced, whichever is first.
//!   Until then joins wait (a new viewer could take the slot of one that is coming back). The
//!   window is the peers' capped reconnect backoff (`node::rules::RECONNECT_BACKOFF_MS`, 1.5 s)
//!   plus a handshake: a peer that lost the supervisor retries at least that often, so one that
//!   has not re-announced by then is presumed gone.
//! - **A viewer that knows it has no parent** (its parent's channel closed while no supervisor
//!   ran: `RESUME` without `parent`, or `PARENT_LOST` before it was placed) waits for nobody: it
//!   is placed at once, with the subtree it claims, in the shallowest slot that no returning child
//!   is expected in (the media it misses grows with every second it waits); without such a slot
//!   it waits for settling.
//! - **At settling, what is left is repaired**: a parent is told to drop each claimed child that
//!   never came back or went elsewhere; every viewer not kept in place (its parent never
//!   re-announced or did not confirm it, it lost its parent while no supervisor ran, or its
//!   claims form a cycle) is an orphan. Orphans keep the subtrees their mutual claims form
//!   (a cycle is cut at its smallest id), each subtree's top taking the shallowest free slot
//!   (shallowest claimed depth first, then smallest id); the depth bound is restored as after any
//!   repair. Then waiting joins are placed. A claim that comes after settling is an orphan at once.

use super::{Registry, StreamEntry};
use crate::frame::VerifyingKey;
use crate::ids::PeerId;
use crate::node::rules::RECONNECT_BACKOFF_MS;
use crate::protocol::{validate_stream_name, ServerMessage};
use crate::topology::{Topology, TopologyKind};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Longest a rebuild waits for re-announcements, from the broadcaster's (see the module docs).
pub const SETTLE_MS: u64 = RECONNECT_BACKOFF_MS[RECONNECT_BACKOFF_MS.len() - 1] + 1000;

/// A viewer's re-announcement, kept until the viewer has its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) parent: Option<PeerId>,
    /// At most `fanout`, in the peer's order.
    pub(super) children: Vec<PeerId>,
    pub(super) depth: usize,
}

/// A stream being rebuilt.
#[derive(Debug)]
pub(super) struct Rebuild {
    /// Each placed node's claimed children not placed under it yet.
    expected: BTreeMap<PeerId, Vec<PeerId>>,
    until_ms: u64,
}

/// A `RESUME` as the registry reads it.
pub(super) struct Resume {
    pub(super) stream: String,
    pub(super) parent: Option<PeerId>,
    pub(super) children: Vec<PeerId>,
    pub(super) depth: usize,
    pub(super) key: Option<String>,
    pub(super) signing_key: Option<String>,
    pub(super) token: Option<String>,
}

impl Registry {
    pub(super) fn resume(&mut self, now_ms: u64, from: PeerId, r: Resume, broadcaster: bool) {
        if let Err(e) = validate_stream_name(&r.stream) {
            return self.refuse(from, "bad_stream_name", e.to_string(), false);
        }
        if self.refused_as_busy(from, "this peer is already in a stream") {
            return;
        }
        if broadcaster {
            self.resume_stream(now_ms, from, r);
        } else {
            self.resume_viewer(now_ms, from, r);
        }
    }

    fn resume_stream(&mut self, now_ms: u64, from: PeerId, r: Resume) {
        if !self.may_publish(now_ms, from, &r.stream, r.token.as_deref()) {
            return;
        }
        let key = r.key.as_deref().and_then(|k| B64.decode(k).ok());
        let Some(key) = key.and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
            return self.refuse(
                from,
                "bad_key",
                "RESUME of a stream needs its 256-bit key (base64)".into(),
                false,
            );
        };
        let signing_key = match VerifyingKey::from_base64(r.signing_key.as_deref().unwrap_or("")) {
            Ok(k) => k,
            Err(e) => {
                return self.refuse(
                    from,
                    "bad_signing_key",
                    format!("RESUME of a stream needs `signing_key`, the broadcaster's Ed25519 public key (32 bytes, base64): {e}"),
                    false,
                )
            }
        };
        if self.streams.contains_key(&r.stream) {
            return self.refuse(
                from,
                "stream_exists",
                format!("stream `{}` is already live", r.stream),
                false,
            );
        }
        let (children, dropped) = split_children(r.children, from, self.fanout());
        let expected = BTreeMap::from([(from, children)]);
        self.streams.insert(
            r.stream.clone(),
            StreamEntry {
                key,
                signing_key,
                broadcaster: from,
                topology: Topology::new(self.topology_kind(), from),
                started_at_ms: now_ms,
                rebuild: Some(Rebuild {
                    expected,
                    until_ms: now_ms + SETTLE_MS,
                }),
                standbys: Default::default(),
                timing: None,
            },
        );
        if let Some(e) = self.peers.get_mut(&from) {
            e.stream = Some(r.stream.clone());
        }
        self.send_resumed(&r.stream, from);
        self.drop_children(&r.stream, from, dropped);
        let claimants = self.claimants(&r.stream);
        self.adopt_from(&r.stream, claimants.clone());
        for c in claimants {
            self.place_parentless(&r.stream, c);
        }
        self.maybe_settle(now_ms, &r.stream);
    }

    fn resume_viewer(&mut self, now_ms: u64, from: PeerId, r: Resume) {
        let (children, dropped) = split_children(r.children, from, self.fanout());
        self.drop_children(&r.stream, from, dropped);
        if let Some(e) = self.peers.get_mut(&from) {
            e.waiting_for = Some(r.stream.clone());
            e.claim = Some(Claim {
                parent: r.parent,
                children,
                depth: r.depth,
            });
        }
        let rebuilding = match self.streams.get(&r.stream) {
            None => return, // waits for its broadcaster
            Some(s) => s.rebuild.is_some(),
        };
        if rebuilding {
            self.adopt_from(&r.stream, vec![from]);
            self.place_parentless(&r.stream, from);
            self.maybe_settle(now_ms, &r.stream);
        } else {
            self.place_orphans(&r.stream);
        }
    }

    /// Whether joins to `stream` must wait for its rebuild.
    pub(super) fn rebuilding(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.rebuild.is_some())
    }

    /// The earliest rebuild deadline.
    pub(super) fn rebuild_timeout(&self) -> Option<u64> {
        self.streams
            .values()
            .filter_map(|s| s.rebuild.as_ref().map(|r| r.until_ms))
            .min()
    }

    /// Settles every rebuild whose window is over.
    pub(super) fn rebuild_timers(&mut self, now_ms: u64) {
        let due: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, s)| s.rebuild.as_ref().is_some_and(|r| now_ms >= r.until_ms))
            .map(|(n, _)| n.clone())
            .collect();
        for stream in due {
            self.settle(&stream);
        }
    }

    /// A claimant's parent edge broke before it was placed: it is an orphan now.
    pub(super) fn claim_lost_parent(&mut self, now_ms: u64, child: PeerId, parent: PeerId) -> bool {
        let Some(e) = self.peers.get_mut(&child) else {
            return false;
        };
        let Some(claim) = e.claim.as_mut() else {
            return false;
        };
        if claim.parent == Some(parent) {
            claim.parent = None;
        }
        let stream = e.waiting_for.clone();
        if let Some(stream) = stream.filter(|s| self.rebuilding(s)) {
            self.place_parentless(&stream, child);
            self.maybe_settle(now_ms, &stream);
        }
        true
    }

    /// A claimant that knows it has no parent waits for nobody: it is placed at once, in the
    /// shallowest slot no returning child is expected in, so its subtree's wait ends as soon as it
    /// can (the media it misses grows with the wait). Without such a slot it waits for settling.
    fn place_parentless(&mut self, stream: &str, c: PeerId) {
        let parentless = self
            .peers
            .get(&c)
            .and_then(|e| e.claim.as_ref())
            .is_some_and(|cl| cl.parent.is_none());
        let Some(s) = self.streams.get(stream).filter(|_| parentless) else {
            return;
        };
        let Some(r) = s.rebuild.as_ref() else { return };
        let fanout = s.topology.fanout();
        let slot = s.topology.nodes().into_iter().map(|n| n.peer).find(|p| {
            let waiting = r.expected.get(p).map_or(0, Vec::len);
            s.topology.relays(*p) && s.topology.children(*p).len() + waiting < fanout
        });
        let Some(parent) = slot else { return };
        let Some(claim) = self.peers.get_mut(&c).and_then(|e| e.claim.take()) else {
            return;
        };
        if !self.keep_under(stream, c, parent, &claim.children) {
            return;
        }
        self.connect_child(stream, parent, c);
        self.adopt_from(stream, claim.children);
    }

    fn fanout(&self) -> usize {
        self.topology_kind().fanout()
    }

    fn claimants(&self, stream: &str) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| e.claim.is_some() && e.waiting_for.as_deref() == Some(stream))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Keeps in place every candidate whose parent confirms it, and then their confirmed
    /// children, transitively.
    fn adopt_from(&mut self, stream: &str, candidates: Vec<PeerId>) {
        let mut queue = VecDeque::from(candidates);
        while let Some(c) = queue.pop_front() {
            if !self.confirmed(stream, c) {
                continue;
            }
            let Some(claim) = self.peers.get_mut(&c).and_then(|e| e.claim.take()) else {
                continue;
            };
            let Some(parent) = claim.parent else { continue };
            if self.keep_under(stream, c, parent, &claim.children) {
                queue.extend(claim.children);
            }
        }
    }

    /// Places `c` under `parent` in `stream`'s tree, expects the `children` it claims back, and
    /// tells it (`RESUMED`); false if the tree refused.
    fn keep_under(&mut self, stream: &str, c: PeerId, parent: PeerId, children: &[PeerId]) -> bool {
        let relays = self.relays(c);
        let Some(s) = self.streams.get_mut(stream) else {
            return false;
        };
        if s.topology.adopt_as(c, parent, relays).is_err() {
            return false;
        }
        if let Some(r) = s.rebuild.as_mut() {
            // The parent may list it still (its channel has not noticed): it is connected anew.
            if let Some(list) = r.expected.get_mut(&parent) {
                list.retain(|x| *x != c);
            }
            r.expected.insert(c, children.to_vec());
        }
        if let Some(e) = self.peers.get_mut(&c) {
            e.waiting_for = None;
            e.stream = Some(stream.to_string());
        }
        self.send_resumed(stream, c);
        true
    }

    /// Whether `c` claims a placed parent with room that lists it.
    fn confirmed(&self, stream: &str, c: PeerId) -> bool {
        let Some(e) = self.peers.get(&c) else {
            return false;
        };
        let Some(parent) = e.claim.as_ref().and_then(|cl| cl.parent) else {
            return false;
        };
        let Some(s) = self.streams.get(stream) else {
            return false;
        };
        let listed = s
            .rebuild
            .as_ref()
            .and_then(|r| r.expected.get(&parent))
            .is_some_and(|l| l.contains(&c));
        e.waiting_for.as_deref() == Some(stream) && listed && s.topology.has_room(parent)
    }

    fn maybe_settle(&mut self, now_ms: u64, stream: &str) {
        let Some(r) = self.streams.get(stream).and_then(|s| s.rebuild.as_ref()) else {
            return;
        };
        let complete = r.expected.values().all(Vec::is_empty) && self.claimants(stream).is_empty();
        if complete || now_ms >= r.until_ms {
            self.settle(stream);
        }
    }

    /// Ends the rebuild: drops what did not come back, places the orphans, then the waiting joins.
    fn settle(&mut self, stream: &str) {
        let Some(rebuild) = self.streams.get_mut(stream).and_then(|s| s.rebuild.take()) else {
            return;
        };
        for (parent, mut missing) in rebuild.expected {
            // A repair during the rebuild may have moved a claimed child under its claimant
            // (`CONNECT_CHILD`): it is the parent's child now, not one to drop.
            if let Some(s) = self.streams.get(stream) {
                missing.retain(|c| s.topology.parent(*c) != Some(parent));
            }
            self.drop_children(stream, parent, missing);
        }
        self.place_orphans(stream);
        let mut waiting: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| e.claim.is_none() && e.waiting_for.as_deref() == Some(stream))
            .map(|(id, _)| *id)
            .collect();
        waiting.sort();
        for viewer in waiting {
            self.admit_or_queue(stream, viewer);
        }
    }

    /// Places every claimant of a settled stream as an orphan, keeping the subtrees their
    /// mutual claims form (see the module docs), then restores the depth bound.
    fn place_orphans(&mut self, stream: &str) {
        let ids = self.claimants(stream);
        if !self.streams.contains_key(stream) {
            return;
        }
        if ids.is_empty() {
            // Viewers that knew they had no parent were placed at once with their subtrees,
            // which can leave the tree deeper than the bound: restore it all the same.
            return self.restore_depth_bound(stream);
        }
        let claims: BTreeMap<PeerId, Claim> = ids
            .iter()
            .filter_map(|id| Some((*id, self.peers.get_mut(id)?.claim.take()?)))
            .collect();
        let links = orphan_links(&claims);
        let relays: HashMap<PeerId, bool> = ids.iter().map(|id| (*id, self.relays(*id))).collect();
        let mut roots: Vec<PeerId> = claims
            .keys()
            .copied()
            .filter(|c| !links.contains_key(c))
            .collect();
        roots.sort_by_key(|c| (claims[c].depth, *c));
        let mut kids: BTreeMap<PeerId, Vec<PeerId>> = BTreeMap::new();
        for (c, p) in &links {
            kids.entry(*p).or_default().push(*c);
        }
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let before: HashMap<PeerId, Option<PeerId>> = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| (n.peer, n.parent))
            .collect();
        let mut placed: Vec<(PeerId, PeerId)> = Vec::new();
        let mut displaced = Vec::new();
        for root in roots {
            // One that cannot relay and finds no slot stays waiting, as a join would.
            let Ok(p) = s
                .topology
                .join_as(root, relays.get(&root).copied().unwrap_or(true))
            else {
                continue;
            };
            placed.push((root, p.parent));
            if let Some(leaf) = p.displaced {
                match placed.iter_mut().find(|(q, _)| *q == leaf) {
                    Some(entry) => entry.1 = root, // placed in this pass: told once, below
                    None => displaced.push((leaf, root, p.parent)),
                }
            }
            let mut queue = VecDeque::from([root]);
            while let Some(x) = queue.pop_front() {
                for c in kids.get(&x).into_iter().flatten() {
                    if s.topology
                        .adopt_as(*c, x, relays.get(c).copied().unwrap_or(true))
                        .is_ok()
                    {
                        placed.push((*c, x));
                        queue.push_back(*c);
                    }
                }
            }
        }
        let moves = s.topology.rebalance_now();
        for (peer, _) in &placed {
            if let Some(e) = self.peers.get_mut(peer) {
                e.waiting_for = None;
                e.stream = Some(stream.to_string());
            }
        }
        for (peer, parent) in placed {
            let claim = &claims[&peer];
            // Only a mutual claim means the parent still holds the edge.
            let stays = links.get(&peer) == Some(&parent);
            self.send_resumed(stream, peer);
            if !stays {
                if let Some(old) = claim.parent.filter(|o| self.in_stream(stream, *o)) {
                    self.drop_children(stream, old, vec![peer]);
                }
                self.connect_child(stream, parent, peer);
            }
            let kept = self
                .streams
                .get(stream)
                .map(|s| s.topology.children(peer).to_vec())
                .unwrap_or_default();
            let gone = claim.children.iter().filter(|c| !kept.contains(c));
            self.drop_children(stream, peer, gone.copied().collect());
        }
        for (leaf, new_parent, old) in displaced {
            self.move_child(stream, leaf, new_parent, Some(old));
        }
        for (leaf, new_parent) in moves {
            let old = before.get(&leaf).copied().flatten();
            self.move_live(stream, leaf, new_parent, old);
        }
    }

    /// Moves leaves up until the tree meets its depth bound, telling each what changed.
    fn restore_depth_bound(&mut self, stream: &str) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let before: HashMap<PeerId, Option<PeerId>> = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| (n.peer, n.parent))
            .collect();
        for (leaf, new_parent) in s.topology.rebalance_now() {
            let old = before.get(&leaf).copied().flatten();
            self.move_live(stream, leaf, new_parent, old);
        }
    }

    fn in_stream(&self, stream: &str, peer: PeerId) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.topology.contains(peer))
    }

    fn send_resumed(&mut self, stream: &str, peer: PeerId) {
        let Some(s) = self.streams.get(stream) else {
            return;
        };
        let msg = ServerMessage::Resumed {
            stream: stream.to_string(),
            key: B64.encode(s.key),
            signing_key: s.signing_key.to_base64(),
            parent: s.topology.parent(peer),
            depth: s.topology.depth(peer).unwrap_or(0) as usize,
        };
        self.send(peer, msg);
    }

    fn drop_children(&mut self, stream: &str, parent: PeerId, children: Vec<PeerId>) {
        for child in children {
            let msg = ServerMessage::DropChild {
                stream: stream.to_string(),
                child,
            };
            self.send(parent, msg);
        }
    }

    pub(super) fn topology_kind(&self) -> TopologyKind {
        match self.config.topology {
            crate::protocol::TopologyName::Tree => TopologyKind::Tree {
                fanout: self.config.fanout.max(1),
            },
            crate::protocol::TopologyName::Chain => TopologyKind::Chain,
        }
    }
}

/// A claimed child list as kept (the first `fanout` distinct children other than the claimant)
/// and the children beyond `fanout`, which the claimant is told to drop.
fn split_children(claimed: Vec<PeerId>, me: PeerId, fanout: usize) -> (Vec<PeerId>, Vec<PeerId>) {
    let mut seen = BTreeSet::new();
    let mut distinct: Vec<PeerId> = claimed
        .into_iter()
        .filter(|c| *c != me && seen.insert(*c))
        .collect();
    let dropped = distinct.split_off(distinct.len().min(fanout));
    (distinct, dropped)
}

/// For orphans: each one's parent among the orphans when the two claim each other, with every
/// cycle cut at its smallest id (which becomes the top of its subtree).
fn orphan_links(claims: &BTreeMap<PeerId, Claim>) -> BTreeMap<PeerId, PeerId> {
    let mut links: BTreeMap<PeerId, PeerId> = claims
        .iter()
        .filter_map(|(c, claim)| {
            let p = claim.parent?;
            let mutual = claims.get(&p).is_some_and(|pc| pc.children.contains(c));
            (mutual && p != *c).then_some((*c, p))
        })
        .collect();
    let ids: Vec<PeerId> = claims.keys().copied().collect();
    for start in ids {
        let mut path = Vec::new();
        let mut seen = BTreeSet::new();
        let mut at = start;
        while let Some(&p) = links.get(&at) {
            if !seen.insert(at) {
                break;
            }
            path.push(at);
            at = p;
        }
        if seen.contains(&at) {
            // `at` is on a cycle: cut it where its smallest id hangs from its parent.
            let cycle_start = path.iter().position(|x| *x == at).unwrap_or(0);
            if let Some(min) = path[cycle_start..].iter().min().copied() {
                links.remove(&min);
            }
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::from_bytes([n; 16])
    }

    fn claim(parent: Option<u8>, children: &[u8]) -> Claim {
        Claim {
            parent: parent.map(id),
            children: children.iter().map(|c| id(*c)).collect(),
            depth: 1,
        }
    }

    #[test]
    fn a_cycle_of_orphans_is_cut_at_its_smallest_id() {
        let claims = BTreeMap::from([
            (id(1), claim(Some(3), &[2])),
            (id(2), claim(Some(1), &[3])),
            (id(3), claim(Some(2), &[1])),
        ]);
        let links = orphan_links(&claims);
        assert_eq!(links.get(&id(1)), None);
        assert_eq!(links.get(&id(2)), Some(&id(1)));
        assert_eq!(links.get(&id(3)), Some(&id(2)));
    }

    #[test]
    fn only_mutual_claims_link_orphans() {
        let claims = BTreeMap::from([
            (id(1), claim(None, &[2, 3])),
            (id(2), claim(Some(1), &[])),
            (id(3), claim(Some(4), &[])),
        ]);
        let links = orphan_links(&claims);
        assert_eq!(links, BTreeMap::from([(id(2), id(1))]));
    }
}
