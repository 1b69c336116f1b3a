//! Whole system on simulated time: the supervisor crashes and restarts while viewers join, leave
//! and crash. The peers outlive it (media keeps flowing on the edges they have), re-announce
//! themselves to the new supervisor, which rebuilds the tree from them; survivors lose no chunk
//! and the tree is whole again.

use ownstream_sim::{HostId, Sim, SimConfig, STREAM};
use std::collections::BTreeMap;

/// `(viewer, parent)` of every viewer in the supervisor's tree.
fn edges(sim: &Sim) -> BTreeMap<String, Option<String>> {
    let tree = sim.registry().tree(STREAM).expect("the stream is live");
    tree.nodes
        .iter()
        .map(|n| (n.id.to_string(), n.parent.map(|p| p.to_string())))
        .collect()
}

fn settled(sim: &Sim) -> bool {
    sim.registry().tree(STREAM).is_some() && sim.tree_problems().is_empty() && sim.all_playing()
}

fn started(viewers: usize, seed: u64) -> (Sim, Vec<HostId>) {
    let config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.add_broadcaster(0);
    sim.run_for(100);
    let v: Vec<_> = (0..viewers).map(|_| sim.add_receiver()).collect();
    assert!(
        sim.run_while_not(30_000, settled),
        "{:?}",
        sim.tree_problems()
    );
    sim.run_for(3000);
    (sim, v)
}

#[test]
fn a_clean_restart_rebuilds_the_same_tree_and_nobody_misses_a_chunk() {
    let (mut sim, viewers) = started(7, 1);
    let before = edges(&sim);
    let delivered_before: Vec<usize> = viewers
        .iter()
        .map(|v| sim.host(*v).delivered.len())
        .collect();
    sim.crash_supervisor();
    sim.run_for(3000);
    // Nobody stopped, and media kept flowing without a supervisor.
    for (i, v) in viewers.iter().enumerate() {
        let h = sim.host(*v);
        assert!(h.ended.is_none(), "{v:?} ended: {:?}", h.ended);
        assert!(h.delivered.len() > delivered_before[i], "{v:?} got nothing");
    }
    sim.restart_supervisor();
    let t0 = sim.now();
    assert!(
        sim.run_while_not(10_000, |s| settled(s) && edges(s) == before),
        "{:?}\nbefore {before:?}\nafter {:?}",
        sim.tree_problems(),
        sim.registry().tree(STREAM).map(|_| edges(&sim))
    );
    println!("tree rebuilt {} ms after the restart", sim.now() - t0);
    sim.run_for(5000);
    let losses = sim.losses_beyond_buffers(&viewers);
    assert!(losses.is_empty(), "{losses:?}");
    for v in &viewers {
        let s = sim.host(*v).node().stats();
        assert_eq!((s.chunks_skipped, s.stalls), (0, 0), "{v:?}: {s:?}");
    }
}

#[test]
fn churn_while_the_supervisor_is_down_is_repaired_once_it_is_back() {
    let (mut sim, mut viewers) = started(9, 7);
    let tree = sim.registry().tree(STREAM).unwrap();
    // A relay at depth 1 will crash while no supervisor runs: its children become orphans.
    let relay = tree
        .nodes
        .iter()
        .find(|n| n.depth == 1)
        .map(|n| n.id)
        .unwrap();
    let relay = sim.host_of(relay).unwrap();
    // And a leaf leaves.
    let leaf = tree
        .nodes
        .iter()
        .rev()
        .find(|n| n.depth > 1 && !tree.nodes.iter().any(|c| c.parent == Some(n.id)))
        .map(|n| n.id)
        .unwrap();
    let leaf = sim.host_of(leaf).unwrap();
    sim.crash_supervisor();
    sim.run_for(500);
    sim.crash(relay);
    sim.crash(leaf);
    sim.run_for(1000);
    sim.run_for(1500);
    // (A viewer started while no supervisor runs ends at once: a command's first connection
    // that fails is reported, not retried; `retry_first_connect` is for pages.)
    sim.restart_supervisor();
    let late = sim.add_receiver();
    // Viewers join and crash while the tree is rebuilt.
    sim.run_for(300);
    let early = sim.add_receiver();
    sim.run_for(200);
    viewers.retain(|v| *v != relay && *v != leaf);
    let victim = *viewers.last().unwrap();
    sim.crash(victim);
    viewers.pop();
    viewers.extend([late, early]);
    assert!(
        sim.run_while_not(30_000, settled),
        "{:?}",
        sim.tree_problems()
    );
    sim.run_for(8000);
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
    let survivors: Vec<_> = viewers
        .iter()
        .copied()
        .filter(|v| sim.host(*v).is_running())
        .collect();
    let exited: Vec<_> = viewers
        .iter()
        .filter(|v| !sim.host(**v).is_running())
        .map(|v| (v, &sim.host(*v).ended))
        .collect();
    assert!(exited.is_empty(), "no peer exits: {exited:?}");
    let losses = sim.losses_beyond_buffers(&survivors);
    assert!(losses.is_empty(), "{losses:?}");
    for v in &survivors {
        let s = sim.host(*v).node().stats();
        assert_eq!(s.chunks_skipped, 0, "{v:?}: {s:?}");
        assert!(s.playing, "{v:?}: {s:?}");
    }
    println!(
        "stalls: {:?}",
        survivors
            .iter()
            .map(|v| sim.host(*v).node().stats().stalls)
            .collect::<Vec<_>>()
    );
}
