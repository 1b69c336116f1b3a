//! Viewers that cannot relay are leaves: under random join / leave / broken-edge sequences mixing
//! viewers that relay and viewers that cannot, for chains and trees of fanout 1..=4,
//! - no viewer that cannot relay ever has a child (never a slot, never a repair's new parent);
//! - every node reaches the root and no node has more than `fanout` children;
//! - a viewer that relays is always placed (taking the place of one that cannot when no slot is
//!   free), and a viewer that cannot is refused only when no viewer that relays has room;
//! - a removal's orphans that relay are all placed again; only ones that cannot may be left out.
//!
//! The depth bound is not claimed here: with viewers that cannot relay the tree may hold more
//! viewers than slots allow at the optimal depth (see `topology.rs`).

use ownstream_core::ids::PeerId;
use ownstream_core::topology::{Topology, TopologyError, TopologyKind};
use proptest::prelude::*;
use std::collections::HashSet;

fn id(n: u128) -> PeerId {
    PeerId::from_bytes(n.to_be_bytes())
}

fn check(t: &Topology, leaves: &HashSet<PeerId>) {
    let nodes = t.nodes();
    assert_eq!(nodes.len(), t.len() + 1, "nodes() lists every node once");
    for n in &nodes {
        let kids = t.children(n.peer);
        assert!(kids.len() <= t.fanout(), "fanout exceeded at {}", n.peer);
        if leaves.contains(&n.peer) {
            assert!(kids.is_empty(), "{} cannot relay but has children", n.peer);
            assert!(!t.relays(n.peer));
        }
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
    }
}

/// Whether some node that relays has a free slot.
fn has_free_slot(t: &Topology) -> bool {
    t.nodes().iter().any(|n| t.has_room(n.peer))
}

#[derive(Clone, Debug)]
enum Op {
    /// Join a viewer; `bool`: it can relay.
    Join(bool),
    /// Remove the viewer at this index (mod the number of viewers).
    Leave(usize),
    /// The viewer at this index reports its parent edge broken.
    Reattach(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => any::<bool>().prop_map(Op::Join),
        2 => any::<usize>().prop_map(Op::Leave),
        1 => any::<usize>().prop_map(Op::Reattach),
    ]
}

fn run(fanout: usize, ops: &[Op]) {
    let kind = if fanout == 1 {
        TopologyKind::Chain
    } else {
        TopologyKind::Tree { fanout }
    };
    let mut t = Topology::new(kind, id(0));
    let mut leaves = HashSet::new();
    let mut members = HashSet::new(); // every viewer placed and not removed nor left out
    let mut next = 1u128;
    for op in ops {
        let viewers: Vec<PeerId> = t.nodes().iter().skip(1).map(|n| n.peer).collect();
        match op {
            Op::Join(relays) => {
                let peer = id(next);
                next += 1;
                let room = has_free_slot(&t);
                match t.join_as(peer, *relays) {
                    Ok(p) => {
                        assert_eq!(t.parent(peer), Some(p.parent));
                        assert!(
                            t.relays(p.parent),
                            "placed under a viewer that cannot relay"
                        );
                        if let Some(leaf) = p.displaced {
                            assert!(*relays && !room, "displaced a leaf while a slot was free");
                            assert_eq!(t.parent(leaf), Some(peer));
                        }
                        if !relays {
                            leaves.insert(peer);
                        }
                        members.insert(peer);
                    }
                    Err(TopologyError::NoRoom) => {
                        assert!(!relays, "a viewer that relays was refused");
                        assert!(!room, "refused while a viewer that relays had room");
                        assert!(!t.contains(peer));
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Leave(i) if !viewers.is_empty() => {
                let gone = viewers[i % viewers.len()];
                let orphans: Vec<PeerId> = t.children(gone).to_vec();
                let repair = t.remove(gone).unwrap();
                leaves.remove(&gone);
                members.remove(&gone);
                for (child, parent) in repair.rewired.iter().chain(&repair.rebalanced) {
                    assert!(
                        t.relays(*parent),
                        "{child} moved under a viewer that cannot relay"
                    );
                }
                for u in &repair.unplaced {
                    assert!(leaves.contains(u), "{u} relays but was left out");
                    assert!(!t.contains(*u));
                    leaves.remove(u);
                    members.remove(u);
                }
                for o in orphans.iter().filter(|o| !leaves.contains(o)) {
                    if !repair.unplaced.contains(o) {
                        assert!(t.contains(*o), "orphan {o} lost");
                    }
                }
            }
            Op::Reattach(i) if !viewers.is_empty() => {
                let child = viewers[i % viewers.len()];
                let parent = t.parent(child).unwrap();
                let repair = t.reattach(child, parent).unwrap();
                for (c, p) in repair.rewired.iter().chain(&repair.rebalanced) {
                    assert!(t.relays(*p), "{c} moved under a viewer that cannot relay");
                }
            }
            _ => {}
        }
        check(&t, &leaves);
        for m in &members {
            assert!(t.contains(*m), "{m} vanished without being reported");
        }
        assert_eq!(
            members.len(),
            t.len(),
            "the overlay holds exactly the placed viewers"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn viewers_that_cannot_relay_stay_leaves(fanout in 1usize..=4, ops in prop::collection::vec(op(), 1..120)) {
        run(fanout, &ops);
    }
}

#[test]
fn a_viewer_that_relays_takes_the_place_of_a_leaf_when_the_tree_is_full() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    t.join_as(id(1), false).unwrap();
    t.join_as(id(2), false).unwrap();
    assert_eq!(t.join_as(id(3), false), Err(TopologyError::NoRoom));
    let p = t.join_as(id(4), true).unwrap();
    assert_eq!((p.parent, p.depth, p.displaced), (id(0), 1, Some(id(1))));
    assert_eq!(t.parent(id(1)), Some(id(4)));
    assert_eq!(t.depth(id(1)), Some(2));
    // The newcomer has a slot left for the viewer refused before.
    assert_eq!(t.join_as(id(3), false).unwrap().parent, id(4));
}

#[test]
fn the_orphan_that_relays_takes_the_vacated_slot() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    t.join_as(id(1), true).unwrap(); // under 0
    t.join_as(id(2), false).unwrap(); // under 0
    t.join_as(id(3), false).unwrap(); // under 1
    t.join_as(id(4), true).unwrap(); // under 1
    let repair = t.remove(id(1)).unwrap();
    assert_eq!(repair.rewired[0], (id(4), id(0)));
    assert_eq!(t.parent(id(3)), Some(id(4)));
    assert!(repair.unplaced.is_empty());
}

#[test]
fn a_leaf_orphan_without_room_is_left_out() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    t.join_as(id(1), true).unwrap(); // under 0
    t.join_as(id(2), false).unwrap(); // under 0
    t.join_as(id(3), false).unwrap(); // under 1
    t.join_as(id(4), false).unwrap(); // under 1
    let repair = t.remove(id(1)).unwrap();
    assert_eq!(repair.rewired, vec![(id(3), id(0))]);
    assert_eq!(repair.unplaced, vec![id(4)]);
    assert!(!t.contains(id(4)));
}
