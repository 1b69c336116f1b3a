//! Property on simulated time: under any mix of crashes (the process comes back as a new
//! viewer), operator kills with re-join, freezes and joins, at any times, over links of any
//! latency up to 40 ms that lose up to 2% of messages, no viewer misses a chunk
//! that a buffer serving it still held, and once the churn stops the tree settles with every
//! viewer playing under the parent the supervisor gave it.

use ownstream_sim::{HostId, LinkConfig, Sim, SimConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Kill the process; a new one joins a moment later.
    Crash,
    /// The operator's kill; the peer re-joins by itself.
    Kill,
    /// SIGSTOP for this long, then SIGCONT.
    Freeze(u64),
    /// A new viewer.
    Join,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Crash),
        Just(Op::Kill),
        (500u64..15_000).prop_map(Op::Freeze),
        Just(Op::Join),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn no_viewer_misses_a_chunk_the_buffers_held(
        seed in any::<u64>(),
        latency_ms in 1u64..40,
        loss in 0.0f64..0.02,
        ops in proptest::collection::vec((0u64..60_000, op(), any::<prop::sample::Index>()), 1..25),
    ) {
        let mut config = SimConfig { seed, verify_fraction: 0.25, ..SimConfig::default() };
        config.net.link = LinkConfig { latency_ms, loss, ..LinkConfig::default() };
        config.net.signaling_latency_ms = latency_ms;
        let mut sim = Sim::new(config);
        sim.add_broadcaster(0);
        sim.run_for(100);
        for _ in 0..15 {
            sim.add_receiver();
        }
        prop_assert!(sim.run_while_not(30_000, Sim::all_playing));
        let start = sim.now();
        let mut ops = ops;
        ops.sort_by_key(|(at, _, _)| *at);
        let mut thaws: Vec<(u64, HostId)> = Vec::new();
        for (at, op, pick) in ops {
            sim.run_until(start + at);
            for (t, h) in std::mem::take(&mut thaws) {
                if t <= sim.now() { sim.thaw(h) } else { thaws.push((t, h)) }
            }
            let live = sim.live_receivers();
            if live.is_empty() && !matches!(op, Op::Join) {
                continue;
            }
            let victim = live[pick.index(live.len().max(1))];
            match op {
                Op::Crash => {
                    sim.crash(victim);
                    sim.run_for(200);
                    sim.add_receiver();
                }
                Op::Kill => {
                    let peer = sim.host(victim).peer;
                    let now = sim.now();
                    sim.registry_mut().kill_peer(now, peer, true, "property test");
                }
                Op::Freeze(ms) => {
                    sim.freeze(victim);
                    thaws.push((sim.now() + ms, victim));
                }
                Op::Join => {
                    sim.add_receiver();
                }
            }
        }
        sim.run_until(start + 60_000);
        for (_, h) in thaws {
            sim.thaw(h);
        }
        sim.run_for(35_000);
        let viewers = sim.live_receivers();
        // Lossy links keep a few switches to standby parents going (a viewer about to starve
        // while a lost packet holds its parent's channel), each a moment of disagreement: the
        // tree must settle, not be still at one given instant.
        sim.run_while_not(10_000, |s| s.tree_problems().is_empty());
        let problems = sim.tree_problems();
        prop_assert!(problems.is_empty(), "{:?}", problems);
        // A lost message holds its channel up for a second, so a viewer may be in a short stall at
        // any one instant: over the last 5 s each one must play and keep up with the stream.
        let mut played: std::collections::HashSet<HostId> = std::collections::HashSet::new();
        for _ in 0..50 {
            sim.run_for(100);
            played.extend(viewers.iter().copied().filter(|v| sim.host(*v).node().stats().playing));
        }
        let newest = sim.host(HostId(0)).node().last_seq().map_or(0, |s| s.0);
        for v in &viewers {
            let s = sim.host(*v).node().stats();
            prop_assert!(played.contains(v), "{:?} did not play in the last 5 s: {:?}", v, s);
            let last = s.last_seq.map_or(0, |l| l.0);
            // Each lost message costs a second at every hop below it: a deep viewer of a lossy
            // tree runs a few seconds late, and catches up (the relay sends at 8x the bitrate).
            prop_assert!(last + 8 >= newest, "{:?} at {} while the stream is at {}", v, last, newest);
        }
        let all: Vec<HostId> = sim.hosts().filter(|(_, h)| h.component == ownstream_core::protocol::ComponentType::Receiver).map(|(id, _)| id).collect();
        let losses = sim.losses_beyond_buffers(&all);
        prop_assert!(losses.is_empty(), "{} losses, first: {}", losses.len(), losses[0]);
    }
}
