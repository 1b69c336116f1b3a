//! Where a recovery's time goes, on simulated time: one failure run as `experiments failures
//! --sim` runs it (80 viewers, killed viewers join again), every node event recorded, then:
//!
//! - each recovery ([`Sim::recoveries`]) by kind: over an open standby edge, over a new edge, or
//!   a killed viewer joining again; the viewers' own measure (loss to the first chunk), how much
//!   of it was waiting for the source to release that chunk, and the delay the recovery added;
//! - how often a viewer below depth 1 held an open standby edge (sampled every 100 ms);
//! - stalls, and when they began.
//!
//! `cargo run --release -p ownstream-sim --example switch_breakdown -- beta 5 30 [seed]`
//! With `BREAKDOWN_HOST=n` it prints host n's events and chunks (`BREAKDOWN_TRACE=1`: its
//! trace too); with `BREAKDOWN_WINDOW=from,to` every host's events in that window.

use ownstream_core::failures::FailureRequest;
use ownstream_sim::{HostId, Recovery, RecoveryKind, Sim, SimConfig, STREAM};
use std::collections::{BTreeMap, HashMap};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dist = args.first().map_or("uniform", String::as_str).to_string();
    let rate: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let secs: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30.0);
    let seed: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);

    let mut sim = Sim::new(SimConfig {
        seed,
        verify_fraction: 0.1,
        record_events: true,
        trace: std::env::var_os("BREAKDOWN_TRACE").is_some(),
        ..SimConfig::default()
    });
    let broadcaster = sim.add_broadcaster(0);
    sim.run_for(500);
    for _ in 0..80 {
        sim.add_receiver();
    }
    assert!(
        sim.run_while_not(90_000, Sim::all_playing),
        "tree never played"
    );
    sim.run_for(5000);
    let start = sim.now();
    let spec = FailureRequest {
        distribution: dist.clone(),
        params: BTreeMap::new(),
        rate,
        duration_s: secs,
        seed: Some(seed),
        rejoin: true,
    }
    .validate(seed)
    .expect("a valid run");
    sim.registry_mut()
        .start_run(start, STREAM, spec)
        .expect("run starts");

    let root = sim.host(broadcaster).peer;
    let mut coverage: BTreeMap<&str, u64> = BTreeMap::new();
    let mut stalls: HashMap<HostId, u32> = sim
        .hosts()
        .map(|(id, h)| (id, h.node().stats().stalls))
        .collect();
    let mut stall_starts: Vec<(u64, usize)> = Vec::new();
    let end = start + (secs * 1000.0) as u64 + 5000;
    while sim.now() < end {
        sim.run_for(100);
        for (id, h) in sim.hosts() {
            let n = h.node().stats().stalls;
            if n > stalls.insert(id, n).unwrap_or(0) {
                stall_starts.push((sim.now(), id.0));
            }
            let node = h.node();
            if id == broadcaster || !h.is_running() || node.parent().is_none_or(|p| p == root) {
                continue;
            }
            let k = match node.standby() {
                None => "none",
                Some((_, false)) => "not open",
                Some((_, true)) => "open",
            };
            *coverage.entry(k).or_default() += 1;
        }
    }
    println!("{dist} {rate}/s for {secs} s, seed {seed}");
    println!("standby of viewers below depth 1, sampled every 100 ms: {coverage:?}");
    println!(
        "stalls began (100 ms resolution: time, host): {} {stall_starts:?}",
        stall_starts.len()
    );
    report(&sim.recoveries(start));
    if let Some(h) = std::env::var("BREAKDOWN_HOST")
        .ok()
        .and_then(|h| h.parse().ok())
    {
        print_host(&sim, HostId(h), start);
    }
    if let Some((a, b)) = std::env::var("BREAKDOWN_WINDOW")
        .ok()
        .and_then(|w| w.split_once(',').map(|(a, b)| (a.parse(), b.parse())))
        .and_then(|(a, b)| Some((a.ok()?, b.ok()?)))
    {
        print_window(&sim, a, b);
    }
}

fn quantiles(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    format!("{} / {} / {}", q(0.5), q(0.95), v[v.len() - 1])
}

fn report(all: &[Recovery]) {
    println!("| kind | n | loss to first chunk p50/p95/max | of which waiting for the source | delay added p50/p95/max |");
    println!("|---|---:|---:|---:|---:|");
    for kind in [
        RecoveryKind::Switch,
        RecoveryKind::Full,
        RecoveryKind::Rejoin,
    ] {
        let g: Vec<&Recovery> = all.iter().filter(|r| r.kind == kind).collect();
        println!(
            "| {kind:?} | {} | {} | {} | {} |",
            g.len(),
            quantiles(g.iter().map(|r| r.first_chunk_ms).collect()),
            quantiles(g.iter().map(|r| r.source_wait_ms).collect()),
            quantiles(g.iter().map(|r| r.delay_added_ms).collect()),
        );
    }
}

fn print_host(sim: &Sim, id: HostId, start: u64) {
    let host = sim.host(id);
    for (t, e, sb) in host.events.iter().filter(|(t, _, _)| *t >= start) {
        println!("{t} {e:?} standby={sb:?}");
    }
    for line in &host.trace {
        println!("trace {line}");
    }
    for d in host.delivered.iter().filter(|d| d.at >= start) {
        println!("{} chunk {}", d.at, d.seq);
    }
}

fn print_window(sim: &Sim, a: u64, b: u64) {
    let names: Vec<(String, String)> = sim
        .hosts()
        .map(|(i, h)| (format!("PeerId({})", h.peer), format!("H{}", i.0)))
        .collect();
    let mut lines = Vec::new();
    for (id, h) in sim.hosts() {
        for (t, e, sb) in h.events.iter().filter(|(t, _, _)| (a..=b).contains(t)) {
            let mut e = format!("{e:?}");
            for (peer, name) in &names {
                e = e.replace(peer, name);
            }
            let sb = sb.map(|(p, open)| (sim.host_of(p).map_or(0, |h| h.0), open));
            lines.push((*t, id.0, e, sb));
        }
    }
    lines.sort();
    for (t, id, e, sb) in lines {
        println!("{t} H{id} {e} standby={sb:?}");
    }
}
