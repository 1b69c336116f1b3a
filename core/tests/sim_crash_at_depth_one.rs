//! Whole system on simulated time: a relay at depth 1 crashes mid-stream; its children and their
//! subtrees are re-attached and lose nothing (the new parents' buffers cover the gap).

use ownstream_sim::{Sim, SimConfig};

#[test]
fn a_crash_at_depth_one_loses_nothing_for_the_survivors() {
    let mut sim = Sim::new(SimConfig::default());
    sim.add_broadcaster(0);
    sim.run_for(100);
    let viewers: Vec<_> = (0..7).map(|_| sim.add_receiver()).collect();
    assert!(
        sim.run_while_not(30_000, Sim::all_playing),
        "{:?}",
        sim.tree_problems()
    );
    sim.run_for(5000);
    let tree = sim.registry().tree(ownstream_sim::STREAM).unwrap();
    let relay = tree
        .nodes
        .iter()
        .find(|n| n.depth == 1)
        .map(|n| n.id)
        .unwrap();
    let victim = sim.host_of(relay).unwrap();
    let before: Vec<_> = tree
        .nodes
        .iter()
        .filter(|n| n.parent == Some(relay))
        .map(|n| n.id)
        .collect();
    assert!(!before.is_empty(), "the relay has children");
    sim.crash(victim);
    sim.run_for(20_000);
    let survivors: Vec<_> = viewers.iter().copied().filter(|v| *v != victim).collect();
    for &v in &survivors {
        let s = sim.host(v).node().stats();
        assert_eq!(s.chunks_skipped, 0, "{v:?}: {s:?}");
        assert!(s.playing, "{v:?}: {s:?}");
    }
    let losses = sim.losses_beyond_buffers(&survivors);
    assert!(losses.is_empty(), "{losses:?}");
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
    println!(
        "stalls: {:?}",
        survivors
            .iter()
            .map(|v| sim.host(*v).node().stats().stalls)
            .collect::<Vec<_>>()
    );
}
