//! Whole system on simulated time: every link loses 1% of its messages and takes 20 ms. Lost
//! messages cost a retransmission (a second, as webrtc 0.21's SCTP) and hold their ordered channel
//! up, so viewers may stall, but no chunk is ever lost and everyone keeps playing.

use ownstream_sim::{LinkConfig, Sim, SimConfig};

#[test]
fn lossy_links_delay_chunks_but_lose_none() {
    let mut config = SimConfig {
        seed: 5,
        ..SimConfig::default()
    };
    config.net.link = LinkConfig {
        latency_ms: 20,
        loss: 0.01,
        ..LinkConfig::default()
    };
    config.net.signaling_latency_ms = 20;
    let mut sim = Sim::new(config);
    sim.add_broadcaster(0);
    sim.run_for(100);
    let viewers: Vec<_> = (0..15).map(|_| sim.add_receiver()).collect();
    assert!(sim.run_while_not(30_000, Sim::all_playing));
    sim.run_for(120_000);
    let mut stalls = 0;
    let mut switches = 0;
    for &v in &viewers {
        let s = sim.host(v).node().stats();
        assert_eq!(s.chunks_skipped, 0, "{v:?}: {s:?}");
        stalls += s.stalls;
        switches += s.standby_switches;
    }
    println!("15 viewers, 2 minutes over 1% loss: {stalls} stalls, {switches} switches in all");
    assert!(sim.losses_beyond_buffers(&viewers).is_empty());
    // A viewer whose buffer runs low while a lost packet holds its parent's channel switches to
    // its standby, and a standby parent takes a switching child over its fanout for a grace
    // (OVERFULL_GRACE_MS): at any one instant a switch may be under way, so the tree must settle.
    sim.run_while_not(10_000, |s| s.tree_problems().is_empty());
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
}
