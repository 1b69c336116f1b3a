//! Whole system on simulated time: a relay at depth 1 freezes (SIGSTOP: its sockets stay open, it
//! answers nothing). The supervisor notices the missing heartbeats and moves its children, which
//! lose nothing; when the relay thaws twenty seconds later it finds itself dropped, reconnects,
//! re-joins and plays again, missing only what no buffer held any more.

use ownstream_sim::{Sim, SimConfig, STREAM};

#[test]
fn a_frozen_relay_is_routed_around_and_comes_back() {
    let mut sim = Sim::new(SimConfig::default());
    sim.add_broadcaster(0);
    sim.run_for(100);
    let viewers: Vec<_> = (0..7).map(|_| sim.add_receiver()).collect();
    assert!(sim.run_while_not(30_000, Sim::all_playing));
    sim.run_for(5000);
    let tree = sim.registry().tree(STREAM).unwrap();
    let relay = tree.nodes.iter().find(|n| n.depth == 1).unwrap().id;
    let children: Vec<_> = tree
        .nodes
        .iter()
        .filter(|n| n.parent == Some(relay))
        .filter_map(|n| sim.host_of(n.id))
        .collect();
    assert!(!children.is_empty());
    let frozen = sim.host_of(relay).unwrap();
    sim.freeze(frozen);
    sim.run_for(20_000);
    for &c in &children {
        let parent = sim.host(c).node().parent();
        assert_ne!(
            parent,
            Some(relay),
            "{c:?} was moved away from the frozen relay"
        );
        assert!(sim.host(c).node().stats().playing, "{c:?} plays again");
    }
    sim.thaw(frozen);
    sim.run_for(20_000);
    assert!(sim.all_playing());
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
    let s = sim.host(frozen).node().stats();
    assert!(
        s.repairs >= 1 && sim.host(frozen).node().reconnects() == 1,
        "{s:?}"
    );
    let survivors: Vec<_> = viewers.iter().copied().filter(|v| *v != frozen).collect();
    for &v in &survivors {
        assert_eq!(sim.host(v).node().stats().chunks_skipped, 0, "{v:?}");
    }
    let losses = sim.losses_beyond_buffers(&viewers);
    assert!(losses.is_empty(), "{losses:?}");
    assert!(
        s.chunks_skipped > 0,
        "the frozen relay was away longer than any buffer"
    );
}
