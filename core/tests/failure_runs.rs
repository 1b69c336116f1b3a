//! Failure runs in the registry on simulated time: the schedule and count of kills, the KILL and
//! close a victim gets, re-joins keeping the tree whole, the metrics computed from viewers'
//! reports, and the run's errors.

mod common;

use common::register;
use ownstream_core::failures::FailureRequest;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{
    ComponentType, PeerMessage, PeerStats, ServerMessage, TopologyName,
};
use ownstream_core::publish::PublishPolicy;
use ownstream_core::registry::{Output, Registry, RegistryConfig, RunError};
use std::collections::BTreeMap;

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 16])
}

fn drain(r: &mut Registry) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn join(r: &mut Registry, now: u64, v: PeerId) {
    assert!(r.handle_authenticated(now, v, ComponentType::Receiver));
    let join = PeerMessage::JoinStream {
        stream: "s".into(),
        wait: false,
        relay: true,
    };
    r.handle_message(now, v, join);
}

/// Broadcaster 0 with stream "s" and viewers 1..=n, heartbeats far away.
fn stream_with(n: u8) -> Registry {
    let config = RegistryConfig {
        topology: TopologyName::Tree,
        fanout: 2,
        heartbeat_timeout_ms: 3_600_000,
    };
    let mut r = Registry::new(config, [9; 32]);
    r.set_publish_policy(PublishPolicy::open());
    assert!(r.handle_authenticated(0, id(0), ComponentType::Broadcaster));
    r.handle_message(0, id(0), register("s"));
    for v in 1..=n {
        join(&mut r, 0, id(v));
    }
    drain(&mut r);
    r
}

fn request(distribution: &str, rate: f64, duration_s: f64, seed: u64) -> FailureRequest {
    FailureRequest {
        distribution: distribution.into(),
        params: BTreeMap::new(),
        rate,
        duration_s,
        seed: Some(seed),
        rejoin: true,
    }
}

/// Runs the registry to `until`, waking at each deadline; killed viewers (told by KILL, then
/// closed) re-join `rejoin_after` ms later under the same id, as the peers do.
fn run_until(r: &mut Registry, from: u64, until: u64, rejoin_after: u64) -> Vec<PeerId> {
    let mut now = from;
    let mut killed = Vec::new();
    let mut pending: Vec<(u64, PeerId)> = Vec::new();
    loop {
        for out in drain(r) {
            if let Output::Send(p, ServerMessage::Kill { rejoin, .. }) = out {
                assert!(rejoin);
                killed.push(p);
                pending.push((now + rejoin_after, p));
            }
        }
        pending.retain(|(at, p)| {
            if *at <= now {
                join(r, now, *p);
                false
            } else {
                true
            }
        });
        let next = [r.poll_timeout(now), pending.iter().map(|(at, _)| *at).min()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= until => {
                now = t.max(now + 1);
                r.handle_timeout(now);
            }
            _ => break,
        }
    }
    killed
}

#[test]
fn uniform_at_two_per_second_for_ten_seconds_kills_twenty_and_the_tree_ends_whole() {
    let mut r = stream_with(15);
    let spec = request("uniform", 2.0, 10.0, 7).validate(0).unwrap();
    let run = r.start_run(1000, "s", spec).unwrap();
    let killed = run_until(&mut r, 1000, 30_000, 300);
    assert_eq!(killed.len(), 20, "rate x duration kills");
    let tree = r.tree("s").unwrap();
    assert_eq!(tree.nodes.len(), 16, "every killed viewer came back");
    assert!(tree.nodes[1..].iter().all(|n| n.parent.is_some()));
    let reports = r.runs(30_000, "s");
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!((report.id, report.state), (run, "finished"));
    assert_eq!(report.metrics.kills, 20);
    assert_eq!(report.victims, killed);
    assert!(
        report.metrics.repairs > 0,
        "killed relays' children were re-attached"
    );
    assert!(
        report.timeline.len() >= 14,
        "a sample a second: {}",
        report.timeline.len()
    );
    // The same seed over the same tree picks the same victims.
    let mut again = stream_with(15);
    let spec = request("uniform", 2.0, 10.0, 7).validate(0).unwrap();
    again.start_run(1000, "s", spec).unwrap();
    assert_eq!(run_until(&mut again, 1000, 30_000, 300), killed);
}

#[test]
fn beta_kills_near_the_root() {
    let mut r = stream_with(30);
    let spec = request("beta", 5.0, 4.0, 3).validate(0).unwrap();
    r.start_run(0, "s", spec).unwrap();
    // Depth of each victim at the moment it was chosen: look it up before the kill lands.
    let mut depths = Vec::new();
    let mut now = 0;
    while let Some(t) = r.poll_timeout(now).filter(|t| *t <= 4000) {
        now = t.max(now + 1);
        let tree = r.tree("s").unwrap();
        r.handle_timeout(now);
        for out in drain(&mut r) {
            if let Output::Send(p, ServerMessage::Kill { .. }) = out {
                let n = tree.nodes.iter().find(|n| n.id == p).unwrap();
                depths.push(n.depth);
                join(&mut r, now, p);
            }
        }
        drain(&mut r);
    }
    assert_eq!(depths.len(), 20);
    let mean = depths.iter().sum::<usize>() as f64 / depths.len() as f64;
    // 30 viewers in a binary tree reach depth 4; beta's mean position (1/7 of the order) is
    // depth 2, uniform's would be about 3.3.
    assert!(mean < 2.8, "beta's victims sit near the root: {depths:?}");
}

#[test]
fn metrics_count_what_viewers_report_during_the_run() {
    let mut r = stream_with(3);
    let stats = |stalls: u32, stalled_ms: u64, repairs: Vec<u32>| PeerMessage::Stats {
        stats: PeerStats {
            stalls,
            stalled_ms,
            repair_times_ms: repairs,
            ..PeerStats::default()
        },
    };
    // Before the run: viewer 1 already stalled twice (the baseline).
    r.handle_message(500, id(1), stats(2, 900, vec![]));
    let spec = request("uniform", 1.0, 2.0, 1).validate(0).unwrap();
    r.start_run(1000, "s", spec).unwrap();
    r.handle_message(1500, id(1), stats(3, 1300, vec![120]));
    r.handle_message(1600, id(2), stats(1, 200, vec![80, 400]));
    r.handle_message(1700, id(3), stats(0, 0, vec![100]));
    let m = &r.runs(1800, "s")[0].metrics;
    assert_eq!((m.stalls, m.stalled_ms, m.avg_stall_ms), (1, 400, 400));
    assert_eq!(m.repair_samples, 4);
    assert_eq!(
        (m.repair_ms_median, m.repair_ms_p95),
        (Some(100), Some(400))
    );
    // What recoveries added to the delay: switches and full repairs pooled, full repairs apart.
    r.handle_message(
        1900,
        id(2),
        PeerMessage::Stats {
            stats: PeerStats {
                stalls: 1,
                stalled_ms: 200,
                repair_delays_ms: vec![300, 0],
                switch_delays_ms: vec![0, 0, 10],
                ..PeerStats::default()
            },
        },
    );
    let m = &r.runs(2000, "s")[0].metrics;
    assert_eq!(m.delay_samples, 5);
    assert_eq!(
        (m.delay_added_ms_median, m.delay_added_ms_p95),
        (Some(0), Some(300))
    );
    assert_eq!(
        (m.repair_delay_ms_median, m.repair_delay_ms_p95),
        (Some(0), Some(300))
    );
    // Reports after the run settled change nothing.
    r.handle_message(60_000, id(3), stats(9, 9000, vec![]));
    let m = &r.runs(60_000, "s")[0].metrics;
    assert_eq!(m.stalls, 1);
    let c = r.counters();
    assert_eq!((c.stalls, c.stalled_ms), (2 + 1 + 1 + 9, 1300 + 200 + 9000));
}

#[test]
fn runs_refuse_what_cannot_be_done() {
    let mut r = stream_with(2);
    let spec = || request("uniform", 1.0, 5.0, 1).validate(0).unwrap();
    assert_eq!(
        r.start_run(0, "nope", spec()),
        Err(RunError::NoStream("nope".into()))
    );
    assert_eq!(r.stop_run(0, "s"), Err(RunError::NoRun));
    let id1 = r.start_run(0, "s", spec()).unwrap();
    assert_eq!(r.start_run(10, "s", spec()), Err(RunError::Busy(id1)));
    assert_eq!(r.stop_run(100, "s"), Ok(id1));
    assert_eq!(r.runs(100, "s")[0].state, "stopped");
    assert!(
        r.start_run(200, "s", spec()).is_ok(),
        "a new run after a stop"
    );
}

#[test]
fn killing_a_peer_tells_it_then_closes_it_and_repairs() {
    let mut r = stream_with(3);
    assert!(r.kill_peer(10, id(1), false, "operator"));
    let out = drain(&mut r);
    let kill = out.iter().position(
        |o| matches!(o, Output::Send(p, ServerMessage::Kill { rejoin: false, .. }) if *p == id(1)),
    );
    let close = out
        .iter()
        .position(|o| matches!(o, Output::Close(p, _) if *p == id(1)));
    assert!(kill.unwrap() < close.unwrap(), "KILL before the close");
    let tree = r.tree("s").unwrap();
    assert_eq!(tree.nodes.len(), 3);
    assert!(
        !r.kill_peer(10, id(1), false, "again"),
        "no longer connected"
    );
    assert_eq!(r.counters().kills, 1);
}
