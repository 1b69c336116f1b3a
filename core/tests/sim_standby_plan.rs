//! The standby plan under churn (issue 12), on simulated time: while a failure run kills viewers
//! five times a second, no two viewers are ever each other's standby parent. Signaling names
//! peers, not edges, so a pair holding two warm edges between them had the second edge's answer
//! delivered to the first: the viewer switched to a standby whose edge never carried a chunk.

use ownstream_core::failures::FailureRequest;
use ownstream_sim::{Sim, SimConfig, STREAM};
use std::collections::{BTreeMap, HashMap};

#[test]
fn no_two_viewers_are_each_others_standby_while_viewers_are_killed() {
    let mut sim = Sim::new(SimConfig {
        seed: 2,
        verify_fraction: 0.1,
        ..SimConfig::default()
    });
    sim.add_broadcaster(0);
    sim.run_for(500);
    for _ in 0..40 {
        sim.add_receiver();
    }
    assert!(sim.run_while_not(60_000, Sim::all_playing));
    let spec = FailureRequest {
        distribution: "beta".into(),
        params: BTreeMap::new(),
        rate: 5.0,
        duration_s: 10.0,
        seed: Some(2),
        rejoin: true,
    }
    .validate(2)
    .unwrap();
    let now = sim.now();
    sim.registry_mut().start_run(now, STREAM, spec).unwrap();
    let mut checked = 0;
    for _ in 0..150 {
        sim.run_for(100);
        let standby: HashMap<_, _> = sim
            .hosts()
            .filter(|(_, h)| h.is_running())
            .filter_map(|(_, h)| Some((h.peer, h.node().standby()?.0)))
            .collect();
        for (a, b) in &standby {
            assert_ne!(
                standby.get(b),
                Some(a),
                "{a} and {b} are each other's standby"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "standbys were planned: {checked} checked");
}
