//! Relay scenarios on simulated time: 10 s of 30 fps-like chunks with one keyframe per second,
//! new and re-attached children, a too-old resume, pacing, buffered-amount backpressure, queue
//! overflow, and two children served independently.

mod relay_sim;

use ownstream_core::ids::ChunkSeq;
use ownstream_core::relay::{RelayConfig, RelayError, RelayEvent};
use relay_sim::*;

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
fn too_old_resume_restarts_at_the_earliest_keyframe_held_with_a_gap_event() {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, LAST, 4000, 20_000);
    sim.relay.add_child(id(3)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(3), Some(ChunkSeq(10)))
        .unwrap();
    sim.run_to(sim.now + 2000);
    let (all, media) = sim.received(id(3));
    let front = sim.relay.buffered_range().unwrap().0 .0;
    let earliest_key = (front..).find(|s| s % FPS == 1).unwrap();
    assert!(front > 11 && earliest_key < LATEST_KEY, "front {front}");
    assert!(!all.contains(&0), "it holds the init chunk already");
    assert_eq!(media, (earliest_key..=LAST).collect::<Vec<_>>());
    let skipped = earliest_key - 10 - 1;
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
