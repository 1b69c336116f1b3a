//! The paper's experiment on simulated time: a binary tree of 80 viewers under a failure run that
//! kills a uniformly chosen viewer 5 times a second for 10 minutes, every killed viewer re-joining
//! (the paper's section IV.B at its highest rate, ten times longer). The whole system, the
//! registry's run included, is the real code; only the network and the clock are simulated.

use ownstream_core::failures::{Distribution, FailureSpec};
use ownstream_sim::{Sim, SimConfig, STREAM};
use std::time::Instant;

#[test]
fn the_paper_tree_under_uniform_churn_at_5_per_second_for_10_minutes() {
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        seed: 11,
        // Nothing is tampered with here, so checking every tag changes no outcome; it only costs
        // (HMAC was half of this test's time). The verification rules have their own tests.
        verify_fraction: 0.1,
        ..SimConfig::default()
    });
    sim.add_broadcaster(0);
    sim.run_for(100);
    let viewers: Vec<_> = (0..80).map(|_| sim.add_receiver()).collect();
    assert!(
        sim.run_while_not(60_000, Sim::all_playing),
        "{:?}",
        sim.tree_problems()
    );
    let now = sim.now();
    let spec = FailureSpec {
        distribution: Distribution::Uniform,
        rate: 5.0,
        duration_ms: 600_000,
        seed: 7,
        rejoin: true,
    };
    let run = sim.registry_mut().start_run(now, STREAM, spec).unwrap();
    sim.run_for(600_000 + 10_000);
    let report = sim
        .registry()
        .runs(sim.now(), STREAM)
        .into_iter()
        .find(|r| r.id == run)
        .unwrap();
    let m = &report.metrics;
    println!(
        "10 simulated minutes in {:.2} s of wall time: {} kills, {} repairs, {} stalls, {} ms stalled, repair median {:?} ms, p95 {:?} ms",
        wall.elapsed().as_secs_f64(), m.kills, m.repairs, m.stalls, m.stalled_ms, m.repair_ms_median, m.repair_ms_p95
    );
    assert_eq!(report.state, "finished");
    assert_eq!(m.kills, 3000);
    assert!(
        sim.run_while_not(30_000, |s| s.all_playing() && s.tree_problems().is_empty()),
        "{:?}",
        sim.tree_problems()
    );
    assert_eq!(
        sim.registry().tree(STREAM).unwrap().nodes.len(),
        81,
        "every killed viewer came back"
    );
    let losses = sim.losses_beyond_buffers(&viewers);
    assert!(
        losses.is_empty(),
        "{} losses, first: {}",
        losses.len(),
        losses[0]
    );
}
