//! `experiments failures --sim`: the same grid as the real run, on `ownstream-sim`. The supervisor's
//! registry (its failure runs and metrics included) and every node are the real code; processes,
//! sockets and WebRTC are replaced by a modelled loopback on virtual time. The runs are measured
//! exactly as the real ones: from the registry's run report and the viewers' reported counters.

use super::{cells, write_charts, write_csv, write_summary, FailuresConfig, Mode, Row};
use crate::stats::percentile;
use anyhow::Context;
use ownstream_core::failures::FailureRequest;
use ownstream_core::ids::PeerId;
use ownstream_core::latency::LatencyMode;
use ownstream_sim::{MediaPlan, Recovery, RecoveryKind, Sim, SimConfig, STREAM};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// How long the whole tree may take to play at the start and after each run (virtual ms).
const HEAL_LIMIT_MS: u64 = 90_000;

/// Runs the grid on the simulator and writes the same files as the real run.
pub(crate) fn run_simulated(out: &Path, clip: &Path, cfg: &FailuresConfig) -> anyhow::Result<()> {
    let wall = Instant::now();
    std::fs::create_dir_all(out)?;
    let bytes = std::fs::read(clip).with_context(|| format!("cannot read {}", clip.display()))?;
    let latency = if crate::testbed::latency() == "low" {
        LatencyMode::Low
    } else {
        LatencyMode::Normal
    };
    let media = MediaPlan::from_webm_cut(&bytes, latency.chunk_ms())
        .with_context(|| format!("{} is not WebM", clip.display()))?;
    let mut sim = Sim::new(SimConfig {
        seed: cfg.seed,
        media,
        // Nothing is tampered with, so checking every tag would change no outcome here; it
        // would only cost wall time (the model has no CPU).
        verify_fraction: 0.1,
        latency,
        // For the recoveries' own table: what each one added, beside the viewers' measure.
        record_events: true,
        ..SimConfig::default()
    });
    sim.add_broadcaster(0);
    sim.run_for(500);
    for _ in 0..cfg.receivers {
        sim.add_receiver();
    }
    anyhow::ensure!(
        sim.run_while_not(HEAL_LIMIT_MS, Sim::all_playing),
        "the simulated tree did not play within {} s",
        HEAL_LIMIT_MS / 1000
    );
    let mut rows = Vec::new();
    let mut recoveries: Vec<(String, u32, Vec<Recovery>)> = Vec::new();
    for (dist, rate, sample, seed) in cells(cfg) {
        let run_start = sim.now();
        let row = one_run(&mut sim, cfg, dist, rate, sample, seed)
            .with_context(|| format!("{dist} at {rate}/s, sample {}", sample + 1))?;
        let now = sim.now();
        let of_run = sim
            .recoveries(run_start)
            .into_iter()
            .filter(|r| r.at < now)
            .collect();
        recoveries.push((dist.to_string(), rate, of_run));
        let (g50, g95) = glass(&sim);
        eprintln!(
            "{dist:>10} {rate}/s #{}: {} kills, {} stalls, {:.1} s stalled, behind live {g50} / {g95} ms median / p95 (simulated)",
            sample + 1,
            row.kills,
            row.stalls,
            row.stalled_ms as f64 / 1000.0
        );
        rows.push(row);
        write_csv(out, &rows)?;
    }
    eprintln!(
        "{} simulated runs in {:.1} s of wall time",
        rows.len(),
        wall.elapsed().as_secs_f64()
    );
    write_charts(out, cfg, &rows)?;
    write_recoveries(out, cfg, &recoveries)?;
    write_summary(out, clip, cfg, &rows, Mode::Simulated)
}

/// `recoveries.md`: every recovery of each cell's runs pooled, by kind, as the simulator sees
/// them: the viewers' own measure (parent lost to the first chunk) and the delay the recovery
/// added behind the source (which leaves out waiting for a chunk the source had not released).
fn write_recoveries(
    out: &Path,
    cfg: &FailuresConfig,
    runs: &[(String, u32, Vec<Recovery>)],
) -> anyhow::Result<()> {
    let mut text = String::from(
        "# Recoveries by kind (simulated)\n\nEvery recovery of a cell's runs pooled, seen from outside the nodes (`Sim::recoveries`). `switch`: a survivor that lost its parent and switched over the open warm edge of its standby parent; `full`: a survivor that needed a new edge (no standby, or its edge not open yet); `re-join`: a killed viewer joining again as a new viewer. `to first chunk`: parent lost (or killed) to the first chunk after, as viewers measure it (with 1 s chunks up to 1 s of it is waiting for the source to release the next chunk); `added`: how much further behind the source the first chunk after the loss came than the last chunk before it. Counts are per run; times p50 / p95 in ms.\n\n| distribution | failures/s | switches | switch: to first chunk | switch: added | full | full: to first chunk | full: added | re-joins | re-join: added | survivors, every recovery: added |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let samples = u64::from(cfg.samples.max(1));
    let mut cells: Vec<(String, u32)> = runs.iter().map(|(d, r, _)| (d.clone(), *r)).collect();
    cells.dedup();
    for (dist, rate) in cells {
        let pooled: Vec<Recovery> = runs
            .iter()
            .filter(|(d, r, _)| *d == dist && *r == rate)
            .flat_map(|(_, _, v)| v.iter().copied())
            .collect();
        let of = |k: RecoveryKind| pooled.iter().filter(move |r| r.kind == k);
        let q = |xs: Vec<u64>| {
            let xs: Vec<f64> = xs.into_iter().map(|x| x as f64).collect();
            match (percentile(&xs, 50.0), percentile(&xs, 95.0)) {
                (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
                _ => "-".into(),
            }
        };
        let per_run = |k: RecoveryKind| format!("{:.1}", of(k).count() as f64 / samples as f64);
        let survivors: Vec<u64> = pooled
            .iter()
            .filter(|r| r.kind != RecoveryKind::Rejoin)
            .map(|r| r.delay_added_ms)
            .collect();
        text.push_str(&format!(
            "| {dist} | {rate} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            per_run(RecoveryKind::Switch),
            q(of(RecoveryKind::Switch).map(|r| r.first_chunk_ms).collect()),
            q(of(RecoveryKind::Switch).map(|r| r.delay_added_ms).collect()),
            per_run(RecoveryKind::Full),
            q(of(RecoveryKind::Full).map(|r| r.first_chunk_ms).collect()),
            q(of(RecoveryKind::Full).map(|r| r.delay_added_ms).collect()),
            per_run(RecoveryKind::Rejoin),
            q(of(RecoveryKind::Rejoin).map(|r| r.delay_added_ms).collect()),
            q(survivors),
        ));
    }
    std::fs::write(out.join("recoveries.md"), text)?;
    Ok(())
}

/// Median and p95 of every viewer's latest glass-to-glass report (ms), as the supervisor holds it.
fn glass(sim: &Sim) -> (i64, i64) {
    let mut v: Vec<i64> = sim
        .registry()
        .tree(STREAM)
        .map(|t| t.nodes)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| sim.registry().stats(n.id)?.latency_ms)
        .collect();
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.5), rank(0.95))
}

/// Every viewer's latest reported `chunks_skipped`, as the supervisor holds it.
fn skipped(sim: &Sim) -> BTreeMap<PeerId, u64> {
    let Some(tree) = sim.registry().tree(STREAM) else {
        return BTreeMap::new();
    };
    tree.nodes
        .iter()
        .filter(|n| n.parent.is_some())
        .filter_map(|n| Some((n.id, sim.registry().stats(n.id)?.chunks_skipped)))
        .collect()
}

fn one_run(
    sim: &mut Sim,
    cfg: &FailuresConfig,
    dist: &str,
    rate: u32,
    sample: u32,
    seed: u64,
) -> anyhow::Result<Row> {
    let before = skipped(sim);
    let request = FailureRequest {
        distribution: dist.to_string(),
        params: BTreeMap::new(),
        rate: f64::from(rate),
        duration_s: cfg.duration.as_secs_f64(),
        seed: Some(seed),
        rejoin: true,
    };
    let spec = request.validate(seed)?;
    let now = sim.now();
    let id = sim.registry_mut().start_run(now, STREAM, spec)?;
    let limit = cfg.duration.as_millis() as u64 + 60_000;
    let finished = |s: &Sim| {
        s.registry()
            .runs(s.now(), STREAM)
            .iter()
            .any(|r| r.id == id && r.state == "finished")
    };
    // Checking after every event would cost more than the run: step a second at a time.
    let start = sim.now();
    while !finished(sim) {
        anyhow::ensure!(
            sim.now() - start < limit,
            "the run did not finish within {limit} ms"
        );
        sim.run_for(1000);
    }
    let report = sim
        .registry()
        .runs(sim.now(), STREAM)
        .into_iter()
        .find(|r| r.id == id)
        .context("the run vanished")?;
    let after = skipped(sim);
    let victims: HashSet<PeerId> = report.victims.iter().copied().collect();
    let lost = before
        .iter()
        .filter(|(p, _)| !victims.contains(p))
        .map(|(p, b)| after.get(p).copied().unwrap_or(*b).saturating_sub(*b))
        .sum();
    anyhow::ensure!(
        sim.run_while_not(HEAL_LIMIT_MS, Sim::all_playing),
        "the tree did not heal within {} s after the run",
        HEAL_LIMIT_MS / 1000
    );
    let m = &report.metrics;
    Ok(Row {
        distribution: dist.to_string(),
        rate,
        sample: sample + 1,
        seed,
        kills: m.kills,
        repairs: m.repairs,
        stalls: m.stalls,
        stalled_ms: m.stalled_ms,
        avg_stall_ms: m.avg_stall_ms,
        repair_ms_median: m.repair_ms_median,
        repair_ms_p95: m.repair_ms_p95,
        switches: m.switch_samples as u64,
        switch_ms_median: m.switch_ms_median,
        switch_ms_p95: m.switch_ms_p95,
        recovery_ms_median: m.recovery_ms_median,
        recovery_ms_p95: m.recovery_ms_p95,
        delay_added_ms_median: m.delay_added_ms_median,
        delay_added_ms_p95: m.delay_added_ms_p95,
        repair_delay_ms_median: m.repair_delay_ms_median,
        repair_delay_ms_p95: m.repair_delay_ms_p95,
        chunks_lost_by_survivors: lost,
        cpu_percent: None,
        viewers_min: report
            .timeline
            .iter()
            .map(|p| p.viewers as u64)
            .min()
            .unwrap_or(0),
    })
}
