//! Unit tests of the topology on small hand-built trees (random sequences are in `tests/`).

use super::*;

fn id(i: u8) -> PeerId {
    PeerId::from_bytes([i; 16])
}

#[test]
fn optimal_depth_of_binary_trees() {
    let got: Vec<u32> = [0, 1, 2, 3, 6, 7, 14, 15]
        .iter()
        .map(|n| optimal_depth(*n, 2))
        .collect();
    assert_eq!(got, vec![0, 1, 1, 2, 2, 3, 3, 4]);
    assert_eq!(optimal_depth(5, 1), 5);
}

#[test]
fn binary_tree_of_seven_fills_level_by_level() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    let parents: Vec<PeerId> = (1..=7).map(|i| t.join(id(i)).unwrap().parent).collect();
    assert_eq!(
        parents,
        vec![id(0), id(0), id(1), id(1), id(2), id(2), id(3)]
    );
    assert_eq!(t.max_depth(), 3);
}

#[test]
fn crash_at_depth_one_reattaches_both_children() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    for i in 1..=7 {
        t.join(id(i)).unwrap();
    }
    // id(1) has children id(3) (with child id(7)) and id(4).
    let repair = t.remove(id(1)).unwrap();
    assert_eq!(repair.former_parent, id(0));
    // The taller orphan takes the vacated root slot; the other goes to the shallowest slot.
    assert_eq!(repair.rewired, vec![(id(3), id(0)), (id(4), id(3))]);
    assert!(repair.rebalanced.is_empty());
    assert_eq!(t.children(id(0)), &[id(2), id(3)]);
    assert_eq!(t.children(id(3)), &[id(7), id(4)]);
    assert_eq!(t.depth(id(7)), Some(2));
    assert_eq!(t.len(), 6);
}

#[test]
fn errors() {
    let mut t = Topology::new(TopologyKind::Chain, id(0));
    t.join(id(1)).unwrap();
    assert_eq!(t.join(id(1)), Err(TopologyError::DuplicatePeer(id(1))));
    assert_eq!(t.join(id(0)), Err(TopologyError::DuplicatePeer(id(0))));
    assert_eq!(t.remove(id(9)), Err(TopologyError::UnknownPeer(id(9))));
    assert_eq!(t.remove(id(0)), Err(TopologyError::RemoveRoot(id(0))));
}

#[test]
fn chain_closes_the_gap() {
    let mut t = Topology::new(TopologyKind::Chain, id(0));
    for i in 1..=4 {
        assert_eq!(t.join(id(i)).unwrap().depth, u32::from(i));
    }
    let repair = t.remove(id(2)).unwrap();
    assert_eq!(repair.rewired, vec![(id(3), id(1))]);
    assert_eq!(t.depth(id(4)), Some(3));
    assert_eq!(t.max_depth(), t.depth_bound());
}

#[test]
fn a_removal_gives_an_orphan_the_parent_it_prefers_when_that_one_can_take_it() {
    let seven = || {
        let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
        for i in 1..=7 {
            t.join(id(i)).unwrap();
        }
        t
    };
    // id(1) has children id(3) (with child id(7)) and id(4); id(5) is a leaf under id(2).
    let mut t = seven();
    let prefer = HashMap::from([(id(4), id(5))]);
    let repair = t.remove_preferring(id(1), &prefer).unwrap();
    assert_eq!(repair.rewired, vec![(id(3), id(0)), (id(4), id(5))]);
    assert_eq!(t.parent(id(4)), Some(id(5)));

    // Not taken: the removed node itself, or a node inside the orphan's own (detached) subtree.
    let mut t = seven();
    let prefer = HashMap::from([(id(4), id(1)), (id(3), id(7))]);
    let repair = t.remove_preferring(id(1), &prefer).unwrap();
    assert_eq!(repair.rewired, vec![(id(3), id(0)), (id(4), id(3))]);
}

#[test]
fn a_standby_stays_planned_while_it_can_take_the_viewer() {
    let mut t = Topology::new(TopologyKind::Tree { fanout: 2 }, id(0));
    for i in 1..=7 {
        t.join(id(i)).unwrap();
    }
    assert_eq!(t.standby_plan().get(&id(4)), Some(&id(3)));
    let kept = t.standby_plan_preferring(&HashMap::from([(id(4), id(5))]));
    assert_eq!(kept.get(&id(4)), Some(&id(5)));
    assert_eq!(kept.get(&id(3)), Some(&id(0)));
}
