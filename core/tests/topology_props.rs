//! Topology invariants under random join / leave / crash sequences, for chains and trees of fanout
//! 1..=4: every viewer reaches the root, no fanout overflow, the documented depth bound, joins at
//! the shallowest free slot, removals re-wire only the removed node's children (plus reported
//! rebalance moves of leaves).

use ownstream_core::ids::PeerId;
use ownstream_core::topology::{Repair, Topology, TopologyError, TopologyKind};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

fn id(n: u128) -> PeerId {
    PeerId::from_bytes(n.to_be_bytes())
}

/// Independent of the crate's `optimal_depth`: grow a complete tree level by level.
fn d_opt(n: usize, k: usize) -> u32 {
    if k == 1 {
        return n as u32;
    }
    let (mut depth, mut cap, mut level) = (0, 0usize, 1usize);
    while cap < n {
        level *= k;
        cap += level;
        depth += 1;
    }
    depth
}

fn bound(n: usize, k: usize) -> u32 {
    if k == 1 {
        n as u32
    } else {
        2 * d_opt(n, k) + 1
    }
}

fn parents(t: &Topology) -> HashMap<PeerId, Option<PeerId>> {
    t.nodes().iter().map(|n| (n.peer, n.parent)).collect()
}

/// Checks the structural invariants that must hold between operations.
fn check_invariants(t: &Topology) {
    let k = t.fanout();
    let nodes = t.nodes();
    assert_eq!(nodes.len(), t.len() + 1, "nodes() lists every node once");
    assert_eq!(nodes[0].peer, t.root());
    assert_eq!(nodes[0].parent, None);
    let mut prev_depth = 0;
    for n in &nodes {
        assert!(n.depth >= prev_depth, "nodes() is in BFS order");
        prev_depth = n.depth;
        assert!(
            t.children(n.peer).len() <= k,
            "fanout exceeded at {}",
            n.peer
        );
        for c in t.children(n.peer) {
            assert_eq!(t.parent(*c), Some(n.peer), "children and parent disagree");
        }
        // Walk up: must reach the root in exactly `depth` steps (no cycles, depths right).
        let (mut cur, mut steps) = (n.peer, 0);
        while let Some(p) = t.parent(cur) {
            assert!(
                t.children(p).contains(&cur),
                "parent does not list its child"
            );
            cur = p;
            steps += 1;
            assert!(steps <= nodes.len(), "cycle above {}", n.peer);
        }
        assert_eq!(cur, t.root(), "{} does not reach the root", n.peer);
        assert_eq!(t.depth(n.peer), Some(steps as u32));
    }
    assert!(t.max_depth() <= bound(t.len(), k), "depth bound broken");
    assert_eq!(t.depth_bound(), bound(t.len(), k));
}

/// Depth of the shallowest free slot at this moment.
fn shallowest_slot_depth(t: &Topology) -> u32 {
    let k = t.fanout();
    let free = t
        .nodes()
        .into_iter()
        .filter(|n| t.children(n.peer).len() < k);
    free.map(|n| n.depth + 1)
        .min()
        .expect("a tree always has a free slot")
}

fn check_join(t: &mut Topology, peer: PeerId) {
    let expected = shallowest_slot_depth(t);
    let placed = t.join(peer).unwrap();
    assert_eq!(
        placed.depth, expected,
        "join not at the shallowest free slot"
    );
    assert_eq!(t.parent(peer), Some(placed.parent));
    assert_eq!(t.depth(peer), Some(placed.depth));
}

fn check_remove(t: &mut Topology, peer: PeerId) -> Repair {
    let before = parents(t);
    let old_children: Vec<PeerId> = t.children(peer).to_vec();
    let repair = t.remove(peer).unwrap();
    assert!(!t.contains(peer));
    let mut rewired: Vec<PeerId> = repair.rewired.iter().map(|(c, _)| *c).collect();
    let mut expected = old_children.clone();
    rewired.sort();
    expected.sort();
    assert_eq!(
        rewired, expected,
        "rewired must be exactly the removed node's children"
    );
    let moved: HashSet<PeerId> = repair
        .rewired
        .iter()
        .chain(&repair.rebalanced)
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(
        moved.len(),
        repair.rewired.len() + repair.rebalanced.len(),
        "a node reported twice"
    );
    for (c, p) in repair.rewired.iter().chain(&repair.rebalanced) {
        assert_eq!(
            t.parent(*c),
            Some(*p),
            "reported parent is not the actual one"
        );
    }
    for (n, p) in parents(t) {
        if !moved.contains(&n) {
            assert_eq!(before[&n], p, "{n} was re-wired without being reported");
        }
    }
    repair
}

fn kind_strategy() -> impl Strategy<Value = TopologyKind> {
    prop_oneof![
        Just(TopologyKind::Chain),
        (1usize..=4).prop_map(|fanout| TopologyKind::Tree { fanout }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_churn_keeps_invariants(
        kind in kind_strategy(),
        ops in prop::collection::vec((0u8..5, any::<u16>()), 1..300),
    ) {
        let mut t = Topology::new(kind, id(0));
        let mut next = 1u128;
        let mut viewers: Vec<PeerId> = Vec::new();
        for (op, pick) in ops {
            // 3 in 5 ops join so trees grow deep; leave and crash are the same event here.
            if op < 3 || viewers.is_empty() {
                check_join(&mut t, id(next));
                viewers.push(id(next));
                next += 1;
            } else {
                let victim = viewers.swap_remove(usize::from(pick) % viewers.len());
                check_remove(&mut t, victim);
            }
            check_invariants(&t);
        }
    }

    /// Removals that prefer the standby plan (as the registry's do) keep the same invariants,
    /// and no plan gives a viewer its own parent or a node of its own subtree.
    #[test]
    fn removals_preferring_standbys_keep_invariants(
        kind in kind_strategy(),
        ops in prop::collection::vec((0u8..5, any::<u16>()), 1..200),
    ) {
        let mut t = Topology::new(kind, id(0));
        let mut next = 1u128;
        let mut viewers: Vec<PeerId> = Vec::new();
        let mut plan = HashMap::new();
        for (op, pick) in ops {
            if op < 3 || viewers.is_empty() {
                check_join(&mut t, id(next));
                viewers.push(id(next));
                next += 1;
            } else {
                let victim = viewers.swap_remove(usize::from(pick) % viewers.len());
                let repair = t.remove_preferring(victim, &plan).unwrap();
                // Orphans without room anywhere leave the overlay, as in a plain removal.
                for gone in &repair.unplaced {
                    viewers.retain(|v| v != gone);
                }
            }
            check_invariants(&t);
            plan = t.standby_plan_preferring(&plan);
            for (viewer, standby) in &plan {
                prop_assert!(!t.subtree(*viewer).contains(standby));
                prop_assert_ne!(t.parent(*viewer), Some(*standby));
            }
        }
    }
}

#[test]
fn errors_leave_the_topology_unchanged() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    t.join(id(1)).unwrap();
    let before = t.nodes();
    assert_eq!(t.join(id(1)), Err(TopologyError::DuplicatePeer(id(1))));
    assert_eq!(t.remove(id(0)), Err(TopologyError::RemoveRoot(id(0))));
    assert_eq!(t.remove(id(7)), Err(TopologyError::UnknownPeer(id(7))));
    assert_eq!(t.nodes(), before);
}

#[test]
fn binary_tree_of_seven_crash_at_depth_one() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    for i in 1..=7 {
        check_join(&mut t, id(i));
    }
    let victim = t.children(id(0))[0];
    let orphans = t.children(victim).to_vec();
    assert_eq!(orphans.len(), 2);
    let repair = check_remove(&mut t, victim);
    assert_eq!(repair.rewired.len(), 2);
    assert!(repair.rebalanced.is_empty());
    check_invariants(&t);
    assert_eq!(
        t.max_depth(),
        2,
        "six viewers fit in depth 2 and the repair keeps it"
    );
}

/// Shrinking a deep binary tree to one long path forces the rebalance to move leaves.
#[test]
fn shrinking_to_a_deep_path_triggers_rebalance() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    for i in 1..=300 {
        t.join(id(i)).unwrap();
    }
    let last = id(300);
    let mut path = HashSet::from([last]);
    let mut cur = last;
    while let Some(p) = t.parent(cur) {
        path.insert(p);
        cur = p;
    }
    let mut rebalanced = 0;
    let order: Vec<PeerId> = t.nodes().into_iter().rev().map(|n| n.peer).collect();
    for peer in order.into_iter().filter(|p| !path.contains(p)) {
        rebalanced += check_remove(&mut t, peer).rebalanced.len();
        check_invariants(&t);
    }
    assert!(rebalanced > 0, "the depth bound never needed a rebalance");
    assert_eq!(t.len(), 8);
    assert!(t.max_depth() <= 2 * 3 + 1);
}
