//! Cut-through on simulated time: a relay passes a chunk's messages on as they arrive, holds the
//! last until the chunk verified, takes back (ABORT) a chunk that fails or stops arriving, and
//! gives children that join meanwhile only verified chunks; pacing and the queue order still hold.

mod relay_sim;

use ownstream_core::ids::ChunkSeq;
use ownstream_core::relay::{RelayConfig, RelayError, RelayEvent};
use relay_sim::*;

/// A relay with one caught-up child that holds everything up to chunk 30.
fn caught_up(children: &[u8]) -> Sim {
    let mut sim = Sim::new(RelayConfig::default());
    sim.feed(1, 30, 4000, 20_000);
    for &c in children {
        sim.relay.add_child(id(c)).unwrap();
        sim.relay.handle_hello(sim.now, id(c), None).unwrap();
    }
    sim.run_to(sim.now + 2000);
    sim
}

/// A 5-message keyframe chunk after 30.
fn big(seq: u64) -> TestChunk {
    let mut c = media(seq, 4000, 5 * MSG);
    c.flags = ownstream_core::frame::FLAG_KEYFRAME;
    c.len = 5 * MSG;
    c
}

fn sent_to(sim: &Sim, child: u8, since: usize) -> Vec<u64> {
    sim.sent[since..]
        .iter()
        .filter(|s| s.1 == id(child))
        .map(|s| s.0)
        .collect()
}

#[test]
fn messages_go_on_as_they_arrive_and_the_last_once_the_chunk_verified() {
    let mut sim = caught_up(&[1, 2]);
    let (c, start, mark) = (big(31), sim.now, sim.sent.len());
    sim.arrive(&c, 0, 5, 20);
    // Four messages passed on at their arrival (20 ms apart, within the burst), the fifth held.
    let times = sent_to(&sim, 1, mark);
    assert_eq!(times, vec![start, start + 20, start + 40, start + 60]);
    assert_eq!(sent_to(&sim, 2, mark).len(), 4);
    assert!(
        sim.relay.buffered_range().unwrap().1 < ChunkSeq(31),
        "not kept yet"
    );
    sim.relay.handle_chunk(sim.now, &c).unwrap();
    sim.run_to(sim.now + 1);
    assert_eq!(sent_to(&sim, 1, mark).len(), 5);
    assert_eq!(sim.got[&id(1)].media().last(), Some(&31));
    assert_eq!(sim.relay.buffered_range().unwrap().1, ChunkSeq(31));
    assert!(sim.events.is_empty(), "{:?}", sim.events);
}

#[test]
fn a_chunk_that_fails_is_taken_back_and_its_hole_reported() {
    let mut sim = caught_up(&[1]);
    let c = big(31);
    sim.arrive(&c, 0, 5, 5);
    assert!(sim.relay.handle_abort(sim.now, ChunkSeq(31)));
    assert!(!sim.relay.handle_abort(sim.now, ChunkSeq(31)), "once");
    sim.run_to(sim.now + 10);
    assert_eq!(sim.got[&id(1)].aborts, vec![31]);
    assert!(!sim.got[&id(1)].chunks.contains(&31));
    sim.arrive_whole(&media(32, 4000, 4000), 0);
    sim.run_to(sim.now + 100);
    assert_eq!(sim.got[&id(1)].media().last(), Some(&32));
    let upstream = RelayEvent::UpstreamGap {
        after: ChunkSeq(30),
        next: ChunkSeq(32),
    };
    let gap = RelayEvent::GapSkipped {
        child: id(1),
        skipped: 1,
    };
    assert_eq!(sim.events, vec![upstream, gap]);
    // A later child never sees it either.
    sim.relay.add_child(id(2)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(2), Some(ChunkSeq(30)))
        .unwrap();
    sim.run_to(sim.now + 100);
    assert_eq!(sim.got[&id(2)].media(), vec![32]);
}

#[test]
fn a_child_that_got_nothing_of_a_failed_chunk_gets_no_abort() {
    let mut sim = caught_up(&[1]);
    sim.relay.handle_buffered_amount(id(1), 2 << 20).unwrap();
    sim.blocked.insert(id(1));
    sim.arrive(&big(31), 0, 3, 5);
    sim.relay.handle_abort(sim.now, ChunkSeq(31));
    sim.blocked.clear();
    sim.relay.handle_buffered_amount(id(1), 0).unwrap();
    sim.run_to(sim.now + 100);
    assert!(sim.got[&id(1)].aborts.is_empty());
    assert_eq!(sim.relay.queued_bytes(id(1)), Some(0));
}

#[test]
fn a_child_that_says_hello_mid_chunk_gets_only_verified_chunks() {
    let mut sim = caught_up(&[1]);
    let c = big(31);
    sim.arrive(&c, 0, 2, 5);
    sim.relay.add_child(id(2)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(2), Some(ChunkSeq(30)))
        .unwrap();
    sim.arrive(&c, 2, 5, 5);
    sim.run_to(sim.now + 100);
    assert!(!sim.got.contains_key(&id(2)), "nothing unverified");
    sim.relay.handle_chunk(sim.now, &c).unwrap();
    sim.run_to(sim.now + 1000);
    assert_eq!(sim.got[&id(2)].media(), vec![31]);
    assert_eq!(sim.got[&id(1)].media().last(), Some(&31));
}

#[test]
fn a_child_with_a_backlog_takes_the_arriving_chunk_after_it() {
    let mut sim = caught_up(&[]);
    sim.relay.add_child(id(3)).unwrap();
    // A new child's backlog from the latest keyframe (20 KB + 29 x 4 KB) is paced over ~100 ms.
    sim.relay.handle_hello(sim.now, id(3), None).unwrap();
    let c = big(31);
    sim.arrive(&c, 0, 5, 1);
    sim.relay.handle_chunk(sim.now, &c).unwrap();
    sim.run_to(sim.now + 2000);
    let media = sim.got[&id(3)].media();
    assert_eq!(media.first(), Some(&1));
    assert_eq!(media.last(), Some(&31));
    assert_eq!(
        media.len(),
        31,
        "every chunk once, in order, never interleaved"
    );
}

#[test]
fn a_new_first_fragment_takes_back_the_chunk_that_stopped_arriving() {
    // The relay's parent was lost mid-chunk; the new parent sends the chunk again from its start.
    let mut sim = caught_up(&[1]);
    let c = big(31);
    sim.arrive(&c, 0, 2, 5);
    sim.arrive_whole(&c, 5);
    sim.run_to(sim.now + 100);
    let r = &sim.got[&id(1)];
    assert_eq!(r.aborts, vec![31]);
    assert_eq!(r.media().last(), Some(&31));
    assert!(sim.events.is_empty(), "{:?}", sim.events);
}

#[test]
fn fragments_out_of_order_or_of_old_chunks_are_refused() {
    let mut sim = caught_up(&[1]);
    let c = big(31);
    let err = |sim: &mut Sim, c: &TestChunk, from: usize| {
        let arriving = ownstream_core::relay::Arriving {
            seq: ChunkSeq(c.seq),
            index: from as u16,
            count: 5,
            total_len: c.len as u32,
            flags: c.flags,
            timestamp_ms: c.ts,
            message: fragment(c)[from].clone(),
        };
        sim.relay.handle_fragment(sim.now, arriving).unwrap_err()
    };
    assert!(matches!(
        err(&mut sim, &c, 2),
        RelayError::UnexpectedFragment { .. }
    ));
    let old = big(30);
    assert!(matches!(
        err(&mut sim, &old, 0),
        RelayError::StaleChunk { .. }
    ));
}

#[test]
fn pacing_still_holds_under_cut_through() {
    // Messages arriving faster than the child's rate are passed on at the rate.
    let config = RelayConfig {
        rate_bytes_per_s: 100_000,
        burst_bytes: MSG as u64,
        ..RelayConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.feed(1, 1, 4000, 4000);
    sim.relay.add_child(id(1)).unwrap();
    sim.relay
        .handle_hello(sim.now, id(1), Some(ChunkSeq(1)))
        .unwrap();
    sim.run_to(5000);
    let (c, start, mark) = (big(31), sim.now, sim.sent.len());
    sim.arrive(&c, 0, 5, 0);
    sim.relay.handle_chunk(sim.now, &c).unwrap();
    sim.run_to(sim.now + 5000);
    let times = sent_to(&sim, 1, mark);
    assert_eq!(times.len(), 5);
    for (i, t) in times.iter().enumerate() {
        // MSG bytes at 100 kB/s: one message every 164 ms after the first.
        assert!(*t >= start + i as u64 * 163, "message {i} at {t}");
    }
}
