//! Whole system on simulated time, with standby parents (issue 12): while chunks flow, a relay at
//! depth 1 freezes (SIGSTOP: sockets open, silent), then another relay crashes. Their children
//! notice (silence within `SILENCE_LIMIT_MS`, or the supervisor's repair), switch to the warm
//! edge of their planned standby parent, and keep playing: no chunk missing, no stall, for
//! every survivor; the supervisor confirms the switches, and the tree ends within its fanout.

use ownstream_core::node::rules::SILENCE_LIMIT_MS;
use ownstream_sim::{HostId, Sim, SimConfig, STREAM};

fn relay_at(sim: &Sim, depth: usize, not_under: &[HostId]) -> Option<(HostId, Vec<HostId>)> {
    let tree = sim.registry().tree(STREAM)?;
    let avoid: Vec<_> = not_under.iter().map(|h| sim.host(*h).peer).collect();
    tree.nodes
        .iter()
        .filter(|n| n.depth == depth && !avoid.contains(&n.id))
        .filter(|n| n.parent.is_none_or(|p| !avoid.contains(&p)))
        .find_map(|n| {
            let children: Vec<_> = tree
                .nodes
                .iter()
                .filter(|c| c.parent == Some(n.id))
                .filter_map(|c| sim.host_of(c.id))
                .collect();
            (!children.is_empty()).then(|| (sim.host_of(n.id).unwrap(), children))
        })
}

#[test]
fn frozen_and_crashed_parents_are_switched_away_from_without_a_stall() {
    let mut sim = Sim::new(SimConfig::default());
    sim.add_broadcaster(0);
    sim.run_for(100);
    let viewers: Vec<_> = (0..14).map(|_| sim.add_receiver()).collect();
    assert!(sim.run_while_not(30_000, Sim::all_playing));
    sim.run_for(5000);
    let stalls_before: Vec<u32> = viewers
        .iter()
        .map(|v| sim.host(*v).node().stats().stalls)
        .collect();

    let (frozen, frozen_children) = relay_at(&sim, 1, &[]).expect("a relay at depth 1");
    sim.freeze(frozen);
    sim.run_for(SILENCE_LIMIT_MS + 400);
    for &c in &frozen_children {
        let s = sim.host(c).node().stats();
        assert!(s.parents_silent >= 1, "{c:?} noticed the silence: {s:?}");
        assert!(s.standby_switches >= 1, "{c:?} switched: {s:?}");
    }
    sim.run_for(5000);

    let (crashed, crashed_children) =
        relay_at(&sim, 2, &[frozen]).expect("a relay at depth 2 elsewhere");
    sim.crash(crashed);
    sim.run_for(10_000);
    sim.thaw(frozen);
    sim.run_for(10_000);

    let survivors: Vec<_> = viewers
        .iter()
        .copied()
        .filter(|v| *v != frozen && *v != crashed)
        .collect();
    for (i, &v) in viewers.iter().enumerate() {
        if !survivors.contains(&v) {
            continue;
        }
        let s = sim.host(v).node().stats();
        assert_eq!(s.chunks_skipped, 0, "{v:?}: {s:?}");
        assert_eq!(s.stalls, stalls_before[i], "{v:?} did not stall: {s:?}");
        assert!(s.playing, "{v:?}: {s:?}");
    }
    for &c in &crashed_children {
        let s = sim.host(c).node().stats();
        assert!(s.standby_switches >= 1, "{c:?} switched: {s:?}");
    }
    let losses = sim.losses_beyond_buffers(&survivors);
    assert!(losses.is_empty(), "{losses:?}");
    assert!(sim.registry().counters().switches >= 1);
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
}
