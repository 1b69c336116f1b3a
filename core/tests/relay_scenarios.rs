//! Relay scenarios on simulated time: 10 s of 30 fps-like chunks with one keyframe per second,
//! new and re-attached children, a too-old resume, pacing, buffered-amount backpressure, queue
//! overflow, and two children served independently.

use bytes::Bytes;
use ownstream_core::frame::{FLAG_INIT, FLAG_KEYFRAME};
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::relay::{Relay, RelayChunk, RelayConfig, RelayError, RelayEvent};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

/// Fragment size of the test fragmenter.
const MSG: usize = 16 * 1024;
/// Chunks per second and chunks per keyframe interval.
const FPS: u64 = 30;

/// A chunk as the relay sees it; the test fragmenter writes `seq`, the fragment index and count
/// into each message so the receiver side can check ordering.
struct TestChunk {
    seq: u64,
    flags: u8,
    ts: u64,
    len: usize,
}

impl RelayChunk for TestChunk {
    fn seq(&self) -> ChunkSeq {
        ChunkSeq(self.seq)
    }
    fn flags(&self) -> u8 {
        self.flags
    }
    fn timestamp_ms(&self) -> u64 {
        self.ts
    }
}

fn fragment(c: &TestChunk) -> Vec<Bytes> {
    let count = c.len.div_ceil(MSG).max(1);
    (0..count)
        .map(|i| {
            let len = if i + 1 == count { c.len - i * MSG } else { MSG };
            let mut m = vec![0u8; len.max(12)];
            m[..8].copy_from_slice(&c.seq.to_be_bytes());
            m[8..10].copy_from_slice(&(i as u16).to_be_bytes());
            m[10..12].copy_from_slice(&(count as u16).to_be_bytes());
            Bytes::from(m)
        })
        .collect()
}

fn id(i: u8) -> PeerId {
    PeerId::from_bytes([i; 16])
}

/// Media chunk `seq` (1-based): 33 ms apart, a keyframe every `FPS` chunks starting at seq 1.
fn media(seq: u64, len: usize, key_len: usize) -> TestChunk {
    let key = seq % FPS == 1;
    let flags = if key { FLAG_KEYFRAME } else { 0 };
    let len = if key { key_len } else { len };
    TestChunk {
        seq,
        flags,
        ts: (seq - 1) * 1000 / FPS,
        len,
    }
}

/// Reassembles one child's messages and checks that fragments never interleave.
#[derive(Default)]
struct Receiver {
    chunks: Vec<u64>,
    current: Option<(u64, u16)>,
    bytes: usize,
}

impl Receiver {
    fn receive(&mut self, m: &Bytes) {
        let seq = u64::from_be_bytes(m[..8].try_into().unwrap());
        let idx = u16::from_be_bytes([m[8], m[9]]);
        let count = u16::from_be_bytes([m[10], m[11]]);
        let expected = self.current.map_or(0, |(s, next)| {
            assert_eq!(s, seq, "fragments of two chunks interleaved");
            next
        });
        assert_eq!(idx, expected, "fragment out of order");
        self.bytes += m.len();
        self.current = if idx + 1 == count {
            None
        } else {
            Some((seq, idx + 1))
        };
        if idx + 1 == count {
            self.chunks.push(seq);
        }
    }

    /// Media seqs received (init excluded), asserted strictly increasing.
    fn media(&self) -> Vec<u64> {
        let m: Vec<u64> = self.chunks.iter().copied().filter(|s| *s != 0).collect();
        assert!(
            m.windows(2).all(|w| w[0] < w[1]),
            "media out of order or duplicated"
        );
        m
    }
}

struct Sim {
    relay: Relay<TestChunk>,
    now: u64,
    got: HashMap<PeerId, Receiver>,
    /// `(time, child, len)` of every message emitted.
    sent: Vec<(u64, PeerId, usize)>,
    /// The channel drains instantly: report a zero buffered amount after each message.
    auto_drain: bool,
    /// Children whose channel is stuck (no zero report even with `auto_drain`).
    blocked: HashSet<PeerId>,
    events: Vec<RelayEvent>,
}

impl Sim {
    fn new(config: RelayConfig) -> Self {
        let relay = Relay::new(config, fragment);
        let (got, sent, events) = (HashMap::new(), Vec::new(), Vec::new());
        Sim {
            relay,
            now: 0,
            got,
            sent,
            auto_drain: true,
            blocked: HashSet::new(),
            events,
        }
    }

    fn drain(&mut self) {
        while let Some(tx) = self.relay.poll_transmit(self.now) {
            self.got.entry(tx.child).or_default().receive(&tx.message);
            self.sent.push((self.now, tx.child, tx.message.len()));
            if self.auto_drain && !self.blocked.contains(&tx.child) {
                self.relay.handle_buffered_amount(tx.child, 0).unwrap();
            }
        }
        while let Some(e) = self.relay.poll_event() {
            self.events.push(e);
        }
    }

    /// Advances to `t`, waking at every deadline the relay asks for.
    fn run_to(&mut self, t: u64) {
        loop {
            self.drain();
            match self.relay.poll_timeout() {
                Some(d) if d <= t => {
                    assert!(
                        d > self.now,
                        "deadline {d} due but poll_transmit had nothing"
                    );
                    self.now = d;
                    self.relay.handle_timeout(d);
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
        self.relay.handle_timeout(self.now);
        self.drain();
    }

    /// Init at t=0, then media chunks `from..=to` at their media time.
    fn feed(&mut self, from: u64, to: u64, len: usize, key_len: usize) {
        if from == 1 {
            let init = TestChunk {
                seq: 0,
                flags: FLAG_INIT,
                ts: 0,
                len: 4000,
            };
            self.relay.handle_chunk(self.now, &init).unwrap();
        }
        for seq in from..=to {
            let c = media(seq, len, key_len);
            self.run_to(c.ts);
            self.relay.handle_chunk(self.now, &c).unwrap();
        }
        self.drain();
    }

    fn received(&self, child: PeerId) -> (&[u64], Vec<u64>) {
        let r = &self.got[&child];
        (&r.chunks, r.media())
    }
}

/// 300 chunks = 10 s; the latest keyframe is seq 271 (keyframes at 1, 31, ..., 271).
const LAST: u64 = 300;
const LATEST_KEY: u64 = 271;

#[test]
fn new_child_gets_init_then_chunks_from_latest_keyframe() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, LAST, 4000, 20_000);
    assert_eq!(sim.relay.latest_keyframe(), Some(ChunkSeq(LATEST_KEY)));
    sim.relay.add_child(id(1)).unwrap();
    sim.run_to(sim.now + 1000);
    assert!(!sim.got.contains_key(&id(1)), "nothing before the hello");
    sim.relay.handle_hello(sim.now, id(1), None).unwrap();
    sim.run_to(sim.now + 2000);
    let (all, media) = sim.received(id(1));
    assert_eq!(all[0], 0, "the init chunk comes first");
    assert_eq!(media, (LATEST_KEY..=LAST).collect::<Vec<_>>());
    // Live chunks follow without a hole.
    sim.feed(LAST + 1, LAST + 30, 4000, 20_000);
    sim.run_to(sim.now + 1000);
    let (_, media) = sim.received(id(1));
    assert_eq!(media, (LATEST_KEY..=LAST + 30).collect::<Vec<_>>());
    assert!(sim.events.is_empty(), "{:?}", sim.events);
}

#[test]
fn buffer_keeps_keep_ms_and_the_latest_keyframe() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, LAST, 4000, 20_000);
    let (oldest, newest) = sim.relay.buffered_range().unwrap();
    assert_eq!(newest, ChunkSeq(LAST));
    let span_ms = (newest.0 - oldest.0) * 1000 / FPS;
    assert!((6000..=6100).contains(&span_ms), "span {span_ms} ms");

    let small = RelayConfig {
        max_bytes: 100_000,
        ..RelayConfig::default()
    };
    let mut sim = Sim::new(small);
    sim.feed(1, LAST, 4000, 20_000);
    assert!(sim.relay.buffered_bytes() <= 100_000);
}

#[test]
fn reattached_child_gets_exactly_the_chunks_after_its_last() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, LAST, 4000, 20_000);
    sim.relay.add_child(id(2)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(2), Some(ChunkSeq(250)))
        .unwrap();
    sim.run_to(sim.now + 2000);
    let (all, media) = sim.received(id(2));
    assert!(
        !all.contains(&0),
        "a re-attached child already has the init chunk"
    );
    assert_eq!(media, (251..=LAST).collect::<Vec<_>>());
    assert!(sim.events.is_empty());
}

#[test]
fn too_old_resume_restarts_from_keyframe_with_a_gap_event() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, LAST, 4000, 20_000);
    sim.relay.add_child(id(3)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(3), Some(ChunkSeq(10)))
        .unwrap();
    sim.run_to(sim.now + 2000);
    let (all, media) = sim.received(id(3));
    assert_eq!(all[0], 0);
    assert_eq!(media, (LATEST_KEY..=LAST).collect::<Vec<_>>());
    let skipped = LATEST_KEY - 10 - 1;
    assert_eq!(
        sim.events,
        vec![RelayEvent::GapSkipped {
            child: id(3),
            skipped
        }]
    );
}

#[test]
fn pacing_never_exceeds_rate_plus_burst() {
    let config = RelayConfig::default();
    let mut sim = Sim::new(config);
    // 20 kB chunks, 100 kB keyframes: a backlog of ~0.7 MB, live ~0.66 MB/s.
    sim.feed(1, LAST, 20_000, 100_000);
    sim.relay.add_child(id(4)).unwrap();
    let t0 = sim.now;
    sim.relay.handle_hello(t0, id(4), None).unwrap();
    sim.feed(LAST + 1, LAST + 90, 20_000, 100_000);
    sim.run_to(sim.now + 5000);
    let mut total = 0u64;
    for (t, _, len) in &sim.sent {
        total += *len as u64;
        let allowed = config.rate_bytes_per_s * (t - t0) / 1000 + config.burst_bytes;
        assert!(
            total <= allowed,
            "{total} bytes by {t} ms exceeds {allowed}"
        );
    }
    // The backlog took time: pacing really spread it out.
    assert!(sim.sent.last().unwrap().0 - t0 > 500);
    let (_, media) = sim.received(id(4));
    assert_eq!(media, (LATEST_KEY..=LAST + 90).collect::<Vec<_>>());
}

#[test]
fn buffered_amount_backpressure_stops_output_until_it_drops() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.auto_drain = false;
    sim.feed(1, 60, 4000, 20_000);
    sim.relay.add_child(id(5)).unwrap();
    sim.relay.handle_buffered_amount(id(5), 2 << 20).unwrap();
    sim.relay
        .handle_hello(sim.now, id(5), Some(ChunkSeq(40)))
        .unwrap();
    sim.run_to(sim.now + 1000);
    assert!(sim.sent.is_empty(), "sent while the channel held 2 MiB");
    assert_eq!(sim.relay.poll_timeout(), None, "no deadline while blocked");
    sim.relay.handle_buffered_amount(id(5), 0).unwrap();
    sim.run_to(sim.now + 1000);
    assert_eq!(sim.received(id(5)).1, (41..=60).collect::<Vec<_>>());
}

#[test]
fn without_reports_the_estimate_caps_unacknowledged_bytes() {
    let config = RelayConfig::default();
    let mut sim = Sim::new(config);
    sim.auto_drain = false;
    sim.feed(1, LAST, 40_000, 200_000);
    sim.relay.add_child(id(6)).unwrap();
    sim.relay.handle_hello(sim.now, id(6), None).unwrap();
    sim.run_to(sim.now + 10_000);
    let sent: u64 = sim.sent.iter().map(|s| s.2 as u64).sum();
    assert!(sent > config.max_buffered && sent <= config.max_buffered + MSG as u64);
}

#[test]
fn two_children_are_independent() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, 100, 4000, 20_000);
    for child in [id(7), id(8)] {
        sim.relay.add_child(child).unwrap();
        sim.relay
            .handle_hello(sim.now, child, Some(ChunkSeq(100)))
            .unwrap();
    }
    // Child 7's channel is stuck; child 8 keeps receiving every live chunk.
    sim.relay.handle_buffered_amount(id(7), 2 << 20).unwrap();
    sim.auto_drain = false;
    for seq in 101..=160 {
        let c = media(seq, 4000, 20_000);
        sim.run_to(c.ts);
        sim.relay.handle_chunk(sim.now, &c).unwrap();
        sim.relay.handle_buffered_amount(id(8), 0).unwrap();
    }
    sim.run_to(sim.now + 1000);
    assert_eq!(sim.received(id(8)).1, (101..=160).collect::<Vec<_>>());
    assert!(!sim.got.contains_key(&id(7)));
    sim.relay.remove_child(id(7)).unwrap();
    assert_eq!(
        sim.relay.remove_child(id(7)),
        Err(RelayError::UnknownChild(id(7)))
    );
    assert_eq!(sim.relay.children().collect::<Vec<_>>(), vec![id(8)]);
}

#[test]
fn a_stuck_child_is_restarted_from_a_keyframe_with_bounded_queue() {
    let config = RelayConfig {
        max_queue_bytes: 200_000,
        ..RelayConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.feed(1, 30, 4000, 20_000);
    sim.relay.add_child(id(9)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(9), Some(ChunkSeq(30)))
        .unwrap();
    sim.relay.handle_buffered_amount(id(9), 2 << 20).unwrap();
    sim.auto_drain = false;
    for seq in 31..=150 {
        let c = media(seq, 4000, 20_000);
        sim.run_to(c.ts);
        sim.relay.handle_chunk(sim.now, &c).unwrap();
        assert!(sim.relay.queued_bytes(id(9)).unwrap() <= 200_000);
    }
    assert!(matches!(
        sim.events.first(),
        Some(RelayEvent::ChildLagging { .. })
    ));
    sim.auto_drain = true;
    sim.relay.handle_buffered_amount(id(9), 0).unwrap();
    sim.run_to(sim.now + 2000);
    let (all, media) = sim.received(id(9));
    assert!(!all.contains(&0));
    // It resumed at a keyframe and everything after it is there.
    let first = media[0];
    assert_eq!((first - 1) % FPS, 0, "restart at a keyframe, got {first}");
    assert_eq!(media, (first..=150).collect::<Vec<_>>());
    let gap = sim.events.iter().find_map(|e| match e {
        RelayEvent::GapSkipped { child, skipped } if *child == id(9) => Some(*skipped),
        _ => None,
    });
    assert_eq!(
        gap,
        Some(first - 31),
        "the skipped seqs 31..first are reported"
    );
}

#[test]
fn upstream_holes_and_stale_chunks() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, 10, 4000, 20_000);
    let c = media(15, 4000, 20_000);
    sim.relay.handle_chunk(sim.now, &c).unwrap();
    let stale = media(12, 4000, 20_000);
    let err = sim.relay.handle_chunk(sim.now, &stale);
    assert_eq!(
        err,
        Err(RelayError::StaleChunk {
            seq: ChunkSeq(12),
            newest: ChunkSeq(15)
        })
    );
    sim.drain();
    let gap = RelayEvent::UpstreamGap {
        after: ChunkSeq(10),
        next: ChunkSeq(15),
    };
    assert_eq!(sim.events, vec![gap]);
    assert_eq!(sim.relay.add_child(id(1)), Ok(()));
    assert_eq!(
        sim.relay.add_child(id(1)),
        Err(RelayError::DuplicateChild(id(1)))
    );
    sim.relay.handle_hello(sim.now, id(1), None).unwrap();
    let again = sim.relay.handle_hello(sim.now, id(1), None);
    assert_eq!(again, Err(RelayError::DuplicateHello(id(1))));
}

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
