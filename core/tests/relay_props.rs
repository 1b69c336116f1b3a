//! Relay properties over random runs: chunk arrivals (with holes upstream), time passing, channels
//! that get stuck and drain, and children joining fresh or resuming. Per child, chunks stay in
//! order without duplicates or interleaved fragments, every hole is reported, queues stay bounded.

mod relay_sim;

use ownstream_core::frame::{FLAG_INIT, FLAG_KEYFRAME};
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::relay::{RelayConfig, RelayEvent};
use proptest::prelude::*;
use relay_sim::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    /// A chunk arrives; `hole` skips one seq first (a hole upstream).
    Chunk {
        len: usize,
        key: bool,
        hole: bool,
    },
    Advance(u64),
    /// A child's channel gets stuck or drains.
    Block {
        child: u8,
        blocked: bool,
    },
    /// A child joins: fresh (`None`) or resuming `back` chunks behind the newest.
    Join {
        child: u8,
        back: Option<u64>,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..60_000, prop::bool::weighted(0.1), prop::bool::weighted(0.03))
            .prop_map(|(len, key, hole)| Op::Chunk { len, key, hole }),
        3 => (1u64..300).prop_map(Op::Advance),
        1 => (0u8..3, any::<bool>()).prop_map(|(child, blocked)| Op::Block { child, blocked }),
        1 => (0u8..3, prop::option::of(0u64..80)).prop_map(|(child, back)| Op::Join { child, back }),
    ]
}

/// Every hole in what a child received adds up to the `GapSkipped` it was told about.
fn check_gap_accounting(sim: &Sim, starts: &HashMap<PeerId, Option<u64>>) {
    for (child, start) in starts {
        let Some(r) = sim.got.get(child) else {
            continue;
        };
        let mut prev = *start;
        let mut holes = 0;
        for seq in r.media() {
            if let Some(p) = prev {
                holes += seq - p - 1;
            }
            prev = Some(seq);
        }
        let reported: u64 = sim
            .events
            .iter()
            .filter_map(|e| match e {
                RelayEvent::GapSkipped { child: c, skipped } if c == child => Some(*skipped),
                _ => None,
            })
            .sum();
        assert_eq!(holes, reported, "unreported hole for {child}");
    }
}

fn apply(sim: &mut Sim, op: Op, seq: &mut u64, starts: &mut HashMap<PeerId, Option<u64>>) {
    match op {
        Op::Chunk { len, key, hole } => {
            *seq += 1 + u64::from(hole);
            let flags = if key { FLAG_KEYFRAME } else { 0 };
            let c = TestChunk {
                seq: *seq,
                flags,
                ts: sim.now,
                len,
            };
            sim.relay.handle_chunk(sim.now, &c).unwrap();
        }
        Op::Advance(ms) => sim.run_to(sim.now + ms),
        Op::Block { child, blocked } => {
            let peer = id(child);
            if blocked {
                sim.blocked.insert(peer);
            } else {
                sim.blocked.remove(&peer);
            }
            let amount = if blocked { 2 << 20 } else { 0 };
            // The child may not have joined yet: an unknown-child error is expected then.
            let _ = sim.relay.handle_buffered_amount(peer, amount);
        }
        Op::Join { child, back } => {
            let peer = id(child);
            if starts.contains_key(&peer) {
                return;
            }
            let last = back.map(|b| seq.saturating_sub(b));
            sim.relay.add_child(peer).unwrap();
            sim.relay
                .handle_hello(sim.now, peer, last.map(ChunkSeq))
                .unwrap();
            if sim.blocked.contains(&peer) {
                sim.relay.handle_buffered_amount(peer, 2 << 20).unwrap();
            }
            starts.insert(peer, last);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random arrivals, stuck channels and joins: per child, chunks stay in order without
    /// duplicates or interleaved fragments, every hole is reported, and queues stay bounded.
    #[test]
    fn random_runs_keep_delivery_invariants(ops in prop::collection::vec(op_strategy(), 1..300)) {
        let config = RelayConfig {
            keep_ms: 1000,
            rate_bytes_per_s: 300_000,
            max_queue_bytes: 150_000,
            ..RelayConfig::default()
        };
        let mut sim = Sim::new(config);
        let init = TestChunk { seq: 0, flags: FLAG_INIT, ts: 0, len: 4000 };
        sim.relay.handle_chunk(0, &init).unwrap();
        let (mut seq, mut starts) = (0u64, HashMap::new());
        for op in ops {
            apply(&mut sim, op, &mut seq, &mut starts);
            sim.drain();
            for peer in starts.keys() {
                let queued = sim.relay.queued_bytes(*peer).unwrap();
                // Bounded, give or take the one chunk a restart or an empty queue admits.
                prop_assert!(queued <= config.max_queue_bytes + 60_000, "queue {}", queued);
            }
        }
        sim.blocked.clear();
        for peer in starts.keys() {
            sim.relay.handle_buffered_amount(*peer, 0).unwrap();
        }
        sim.run_to(sim.now + 60_000);
        check_gap_accounting(&sim, &starts);
        for peer in starts.keys() {
            prop_assert_eq!(sim.relay.queued_bytes(*peer), Some(0));
        }
    }
}
