//! `experiments failures`: the paper's failure experiments (section IV.B-C, figures 6-11). One
//! stream of N headless receivers; for every distribution, rate and sample, a failure run through
//! the supervisor's API (the monitor's), measured by the supervisor from the viewers' reports: the
//! paper's stalled playbacks, total and average stalled time, plus kills, repairs, repair time,
//! chunks lost by the surviving viewers, and CPU. Between runs the tree is let heal: every killed
//! viewer back and playing.

use crate::paper;
use crate::plot::{self, format_value, Series};
use crate::stats::{cpu_percent, mean};
use crate::testbed::{Testbed, STREAM};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod simulated;
pub(crate) use simulated::run_simulated;

/// Settings of a failure experiment.
#[derive(Clone)]
pub(crate) struct FailuresConfig {
    /// Headless receivers.
    pub receivers: usize,
    /// Distributions, as the API names them.
    pub distributions: Vec<String>,
    /// Failures per second.
    pub rates: Vec<u32>,
    /// Length of each run.
    pub duration: Duration,
    /// Runs per distribution and rate.
    pub samples: u32,
    /// Base seed; each run's seed derives from it.
    pub seed: u64,
    /// Receivers per process.
    pub per_process: usize,
    /// Peer key size.
    pub key_bits: u32,
    /// With `--merge`: how many grids' results were pooled (0: the runs were made here, from
    /// `seed`).
    pub merged: usize,
}

/// One run's results.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    distribution: String,
    rate: u32,
    sample: u32,
    seed: u64,
    kills: u64,
    repairs: u64,
    stalls: u64,
    stalled_ms: u64,
    avg_stall_ms: u64,
    repair_ms_median: Option<u64>,
    repair_ms_p95: Option<u64>,
    /// Switches to a standby parent (not in the repair times, which are full repairs).
    switches: u64,
    switch_ms_median: Option<u64>,
    switch_ms_p95: Option<u64>,
    /// Every recovery, switch or full repair.
    recovery_ms_median: Option<u64>,
    recovery_ms_p95: Option<u64>,
    /// What recoveries added to the viewers' delay behind the source, as they report it: every
    /// recovery, then full repairs alone.
    delay_added_ms_median: Option<u64>,
    delay_added_ms_p95: Option<u64>,
    repair_delay_ms_median: Option<u64>,
    repair_delay_ms_p95: Option<u64>,
    chunks_lost_by_survivors: u64,
    /// CPU of every process (a real run only: the simulator models no CPU).
    cpu_percent: Option<f64>,
    viewers_min: u64,
}

/// Every run of the grid in the order they go: `(distribution, rate, sample, seed)`, each run's
/// seed derived from the base seed and its place in the grid (the same in real and simulated runs).
pub(crate) fn cells(cfg: &FailuresConfig) -> Vec<(&str, u32, u32, u64)> {
    let mut cells = Vec::new();
    for dist in &cfg.distributions {
        for &rate in &cfg.rates {
            for sample in 0..cfg.samples {
                let index = cells.len() as u64 + 1;
                let seed = cfg.seed.wrapping_mul(1000).wrapping_add(index);
                cells.push((dist.as_str(), rate, sample, seed));
            }
        }
    }
    cells
}

/// Where a grid's numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Real processes over real WebRTC on this machine.
    Real,
    /// `ownstream-sim`: the same code on virtual time over a modelled network.
    Simulated,
}

/// Runs the whole grid and writes `results.csv`, the charts and `summary.md`.
pub(crate) fn run(out: &Path, clip: &Path, cfg: &FailuresConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut bed = Testbed::start(
        &out.join("raw"),
        clip,
        cfg.receivers,
        cfg.per_process,
        cfg.key_bits,
        &[],
    )?;
    bed.wait_playing(Duration::from_secs(60 + cfg.receivers as u64))?;
    let runs = cfg.distributions.len() * cfg.rates.len() * cfg.samples as usize;
    let bar = ProgressBar::new(runs as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} runs, {elapsed} elapsed, ~{eta} left {msg}",
    )?);
    let mut rows = Vec::new();
    for (dist, rate, sample, seed) in cells(cfg) {
        bar.set_message(format!("{dist} {rate}/s #{}", sample + 1));
        let row = one_run(&mut bed, cfg, dist, rate, sample, seed)
            .with_context(|| format!("{dist} at {rate}/s, sample {}", sample + 1))?;
        bar.suspend(|| {
            eprintln!(
                "{dist:>10} {rate}/s #{}: {} kills, {} stalls, {:.1} s stalled",
                sample + 1,
                row.kills,
                row.stalls,
                row.stalled_ms as f64 / 1000.0
            )
        });
        rows.push(row);
        bar.inc(1);
        write_csv(out, &rows)?;
    }
    bar.finish_and_clear();
    let _ = bed.stop();
    write_charts(out, cfg, &rows)?;
    write_summary(out, clip, cfg, &rows, Mode::Real)
}

fn one_run(
    bed: &mut Testbed,
    cfg: &FailuresConfig,
    dist: &str,
    rate: u32,
    sample: u32,
    seed: u64,
) -> anyhow::Result<Row> {
    let before: Vec<Value> = bed.stats();
    let (c0, t0) = (bed.cpu(), Instant::now());
    let body = json!({
        "distribution": dist, "rate": rate, "duration_s": cfg.duration.as_secs_f64(),
        "seed": seed, "rejoin": true,
    });
    let id = bed.api.start_run(STREAM, &body)?;
    let limit = cfg.duration + Duration::from_secs(60);
    let report = loop {
        std::thread::sleep(Duration::from_millis(500));
        let runs = bed.api.runs(STREAM)?;
        let run = runs
            .into_iter()
            .find(|r| r["id"] == id)
            .context("the run vanished")?;
        if run["state"] == "finished" {
            break run;
        }
        anyhow::ensure!(
            t0.elapsed() < limit,
            "the run did not finish within {limit:?}"
        );
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = c0.until(&bed.cpu());
    let after = bed.stats();
    let victims: HashSet<&str> = report["victims"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let skipped = |stats: &[Value], id: &str| {
        stats
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["stats"]["chunks_skipped"].as_u64())
            .unwrap_or(0)
    };
    let lost = before
        .iter()
        .filter_map(|n| n["id"].as_str())
        .filter(|id| !victims.contains(id))
        .map(|id| skipped(&after, id).saturating_sub(skipped(&before, id)))
        .sum();
    let m = &report["metrics"];
    let viewers_min = report["timeline"]
        .as_array()
        .and_then(|t| t.iter().filter_map(|p| p["viewers"].as_u64()).min())
        .unwrap_or(0);
    // Heal before the next run: every viewer back and playing.
    bed.wait_playing(Duration::from_secs(90))?;
    Ok(Row {
        distribution: dist.to_string(),
        rate,
        sample: sample + 1,
        seed,
        kills: m["kills"].as_u64().unwrap_or(0),
        repairs: m["repairs"].as_u64().unwrap_or(0),
        stalls: m["stalls"].as_u64().unwrap_or(0),
        stalled_ms: m["stalled_ms"].as_u64().unwrap_or(0),
        avg_stall_ms: m["avg_stall_ms"].as_u64().unwrap_or(0),
        repair_ms_median: m["repair_ms_median"].as_u64(),
        repair_ms_p95: m["repair_ms_p95"].as_u64(),
        switches: m["switch_samples"].as_u64().unwrap_or(0),
        switch_ms_median: m["switch_ms_median"].as_u64(),
        switch_ms_p95: m["switch_ms_p95"].as_u64(),
        recovery_ms_median: m["recovery_ms_median"].as_u64(),
        recovery_ms_p95: m["recovery_ms_p95"].as_u64(),
        delay_added_ms_median: m["delay_added_ms_median"].as_u64(),
        delay_added_ms_p95: m["delay_added_ms_p95"].as_u64(),
        repair_delay_ms_median: m["repair_delay_ms_median"].as_u64(),
        repair_delay_ms_p95: m["repair_delay_ms_p95"].as_u64(),
        chunks_lost_by_survivors: lost,
        cpu_percent: Some(cpu_percent(cpu.total(), wall)),
        viewers_min,
    })
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

pub(crate) fn write_csv(out: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let mut csv = String::from("distribution,rate_per_s,sample,seed,kills,repairs,stalls,stalled_ms,avg_stall_ms,repair_ms_median,repair_ms_p95,chunks_lost_by_survivors,cpu_percent,viewers_min,switches,switch_ms_median,switch_ms_p95,recovery_ms_median,recovery_ms_p95,delay_added_ms_median,delay_added_ms_p95,repair_delay_ms_median,repair_delay_ms_p95\n");
    for r in rows {
        writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.distribution,
            r.rate,
            r.sample,
            r.seed,
            r.kills,
            r.repairs,
            r.stalls,
            r.stalled_ms,
            r.avg_stall_ms,
            opt(r.repair_ms_median),
            opt(r.repair_ms_p95),
            r.chunks_lost_by_survivors,
            r.cpu_percent
                .map_or_else(String::new, |c| format!("{c:.1}")),
            r.viewers_min,
            r.switches,
            opt(r.switch_ms_median),
            opt(r.switch_ms_p95),
            opt(r.recovery_ms_median),
            opt(r.recovery_ms_p95),
            opt(r.delay_added_ms_median),
            opt(r.delay_added_ms_p95),
            opt(r.repair_delay_ms_median),
            opt(r.repair_delay_ms_p95)
        )?;
    }
    std::fs::write(out.join("results.csv"), csv)?;
    Ok(())
}

/// Reads back a `results.csv` written by [`write_csv`] (columns by name, so files from before a
/// column was added read as if it were empty).
fn read_csv(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let at = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|k| fields.get(k).copied())
                .filter(|v| !v.is_empty())
        };
        let context = || format!("{} line {}", path.display(), i + 2);
        let num = |name: &str| -> anyhow::Result<Option<u64>> {
            at(name)
                .map(|v| v.parse::<u64>())
                .transpose()
                .with_context(|| format!("{}: column {name}", context()))
        };
        let need = |name: &str| -> anyhow::Result<u64> {
            num(name)?.with_context(|| format!("{}: no {name}", context()))
        };
        rows.push(Row {
            distribution: at("distribution")
                .with_context(|| format!("{}: no distribution", context()))?
                .to_string(),
            rate: u32::try_from(need("rate_per_s")?)?,
            sample: u32::try_from(need("sample")?)?,
            seed: need("seed")?,
            kills: need("kills")?,
            repairs: need("repairs")?,
            stalls: need("stalls")?,
            stalled_ms: need("stalled_ms")?,
            avg_stall_ms: need("avg_stall_ms")?,
            repair_ms_median: num("repair_ms_median")?,
            repair_ms_p95: num("repair_ms_p95")?,
            switches: num("switches")?.unwrap_or(0),
            switch_ms_median: num("switch_ms_median")?,
            switch_ms_p95: num("switch_ms_p95")?,
            recovery_ms_median: num("recovery_ms_median")?,
            recovery_ms_p95: num("recovery_ms_p95")?,
            delay_added_ms_median: num("delay_added_ms_median")?,
            delay_added_ms_p95: num("delay_added_ms_p95")?,
            repair_delay_ms_median: num("repair_delay_ms_median")?,
            repair_delay_ms_p95: num("repair_delay_ms_p95")?,
            chunks_lost_by_survivors: need("chunks_lost_by_survivors")?,
            cpu_percent: at("cpu_percent")
                .map(|v| v.parse::<f64>())
                .transpose()
                .with_context(|| format!("{}: column cpu_percent", context()))?,
            viewers_min: num("viewers_min")?.unwrap_or(0),
        });
    }
    Ok(rows)
}

/// `--merge`: the runs of several `results.csv` pooled into one grid's outputs. Samples are
/// numbered again per cell in the order read; each run keeps its seed.
pub(crate) fn merge(
    out: &Path,
    clip: &Path,
    cfg: &FailuresConfig,
    inputs: &[PathBuf],
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for input in inputs {
        rows.extend(read_csv(input)?);
    }
    let mut seeds = HashSet::new();
    for r in &rows {
        anyhow::ensure!(
            seeds.insert((r.distribution.clone(), r.rate, r.seed)),
            "{} at {}/s with seed {} is in the inputs twice",
            r.distribution,
            r.rate,
            r.seed
        );
    }
    rows.retain(|r| cfg.distributions.contains(&r.distribution) && cfg.rates.contains(&r.rate));
    anyhow::ensure!(
        !rows.is_empty(),
        "no run of the given distributions and rates"
    );
    rows.sort_by_key(|r| {
        let d = cfg.distributions.iter().position(|d| *d == r.distribution);
        (d, r.rate, r.seed)
    });
    // Sorted by cell: a cell's runs are consecutive and numbered 1, 2, ... in seed order.
    let mut samples = 0;
    for i in 0..rows.len() {
        let same_cell = i > 0
            && rows[i - 1].distribution == rows[i].distribution
            && rows[i - 1].rate == rows[i].rate;
        rows[i].sample = if same_cell { rows[i - 1].sample + 1 } else { 1 };
        samples = samples.max(rows[i].sample);
    }
    std::fs::create_dir_all(out)?;
    let cfg = FailuresConfig {
        samples,
        merged: inputs.len(),
        ..cfg.clone()
    };
    write_csv(out, &rows)?;
    write_charts(out, &cfg, &rows)?;
    write_summary(out, clip, &cfg, &rows, Mode::Real)
}

/// Mean over samples of `f` for one distribution and rate.
fn cell(rows: &[Row], dist: &str, rate: u32, f: impl Fn(&Row) -> f64) -> Option<f64> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.distribution == dist && r.rate == rate)
        .map(f)
        .collect();
    mean(&v)
}

pub(crate) fn write_charts(out: &Path, cfg: &FailuresConfig, rows: &[Row]) -> anyhow::Result<()> {
    for (i, dist) in cfg.distributions.iter().enumerate() {
        let pts = |f: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
            cfg.rates
                .iter()
                .filter_map(|&r| Some((f64::from(r), cell(rows, dist, r, f)?)))
                .collect()
        };
        plot::line_chart(
            &out.join(format!("fig{}-{dist}", 6 + i)),
            &format!("{dist}: stalled playbacks and total stalled time"),
            "failures per second",
            "stalled playbacks / total stalled time (s)",
            &[
                Series {
                    name: "stalled playbacks".into(),
                    points: pts(&|r| r.stalls as f64),
                },
                Series {
                    name: "total stalled time (s)".into(),
                    points: pts(&|r| r.stalled_ms as f64 / 1000.0),
                },
            ],
        )?;
    }
    let series: Vec<Series> = cfg
        .distributions
        .iter()
        .map(|dist| Series {
            name: dist.clone(),
            points: cfg
                .rates
                .iter()
                .filter_map(|&r| {
                    let stalls = cell(rows, dist, r, |x| x.stalls as f64)?;
                    let ms = cell(rows, dist, r, |x| x.stalled_ms as f64)?;
                    Some((
                        f64::from(r),
                        if stalls > 0.0 {
                            ms / stalls / 1000.0
                        } else {
                            0.0
                        },
                    ))
                })
                .collect(),
        })
        .collect();
    plot::line_chart(
        &out.join("fig11-average-stalled-time"),
        "Average stalled time per distribution",
        "failures per second",
        "average stalled time (s)",
        &series,
    )
}

pub(crate) fn write_summary(
    out: &Path,
    clip: &Path,
    cfg: &FailuresConfig,
    rows: &[Row],
    mode: Mode,
) -> anyhow::Result<()> {
    let mut md = String::new();
    writeln!(
        md,
        "# Failure experiments (paper section IV, figures 6-11)\n"
    )?;
    let clip_name = clip
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().to_string());
    match mode {
        Mode::Real if cfg.merged > 0 => writeln!(
            md,
            "Pooled by `experiments failures --merge` on {} from the runs of {} grids of `experiments failures` (each run's seed is in `results.csv`): one stream of {} headless receivers ({} per process) in a binary tree, a broadcaster of `{}` on a loop, every process a release build on loopback. {} runs per distribution and rate, {} s each (+5 s for the last kills' stalls to show); killed viewers re-join as new viewers, as in the paper. Values are means over the samples; `results.csv` has every run.\n",
            crate::machine(),
            cfg.merged,
            cfg.receivers,
            cfg.per_process,
            clip_name,
            cfg.samples,
            cfg.duration.as_secs(),
        )?,
        Mode::Real => writeln!(
            md,
            "Measured by `experiments failures` on {}: one stream of {} headless receivers ({} per process) in a binary tree, a broadcaster of `{}` on a loop, every process a release build on loopback. {} runs per distribution and rate, {} s each (+5 s for the last kills' stalls to show), seeds from {}; killed viewers re-join as new viewers, as in the paper. Values are means over the samples; `results.csv` has every run.\n",
            crate::machine(),
            cfg.receivers,
            cfg.per_process,
            clip_name,
            cfg.samples,
            cfg.duration.as_secs(),
            cfg.seed
        )?,
        Mode::Simulated => writeln!(
            md,
            "Simulated by `experiments failures --sim` on {}: the same grid on `ownstream-sim` (the supervisor's registry and {} receiver nodes of the real code on virtual time, over a modelled loopback: 1 ms links, edges open {}-{} ms after the answer, a silent peer noticed after {} s), broadcasting the chunks of `{}` on a loop. {} runs per distribution and rate, {} s each (+5 s to settle), seeds from {}; killed viewers re-join as new viewers. The model has no CPU: the `CPU` column is empty. Values are means over the samples; `results.csv` has every run.\n",
            crate::machine(),
            cfg.receivers,
            ownstream_sim::NetConfig::default().edge_setup_ms.0,
            ownstream_sim::NetConfig::default().edge_setup_ms.1,
            ownstream_sim::NetConfig::default().silence_timeout_ms / 1000,
            clip_name,
            cfg.samples,
            cfg.duration.as_secs(),
            cfg.seed
        )?,
    }
    writeln!(md, "| distribution | failures/s | kills | stalled playbacks | total stalled time | average stalled time | repair median / p95 | chunks lost by survivors | CPU (% of a core) | paper says |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for dist in &cfg.distributions {
        for &rate in &cfg.rates {
            let Some(kills) = cell(rows, dist, rate, |r| r.kills as f64) else {
                continue;
            };
            let stalls = cell(rows, dist, rate, |r| r.stalls as f64).unwrap_or(0.0);
            let ms = cell(rows, dist, rate, |r| r.stalled_ms as f64).unwrap_or(0.0);
            let med =
                cell(rows, dist, rate, |r| r.repair_ms_median.unwrap_or(0) as f64).unwrap_or(0.0);
            let p95 =
                cell(rows, dist, rate, |r| r.repair_ms_p95.unwrap_or(0) as f64).unwrap_or(0.0);
            let lost = cell(rows, dist, rate, |r| r.chunks_lost_by_survivors as f64).unwrap_or(0.0);
            let cpu = match mode {
                Mode::Real => {
                    let c = cell(rows, dist, rate, |r| r.cpu_percent.unwrap_or(0.0));
                    format!("{:.0}", c.unwrap_or(0.0))
                }
                Mode::Simulated => "-".to_string(),
            };
            let says = paper::note(dist, rate).map_or_else(
                || "no value printed".to_string(),
                |n| match (n.stalls, n.stalled_s) {
                    (Some(s), Some(t)) => format!("{s} stalls, {t} s"),
                    _ => n.text.to_string(),
                },
            );
            writeln!(
                md,
                "| {dist} | {rate} | {} | {} | {} s | {} s | {} / {} ms | {} | {} | {says} |",
                format_value(kills),
                format_value(stalls),
                format_value(ms / 1000.0),
                format_value(if stalls > 0.0 {
                    ms / stalls / 1000.0
                } else {
                    0.0
                }),
                format_value(med),
                format_value(p95),
                format_value(lost),
                cpu
            )?;
        }
    }
    writeln!(
        md,
        "\nRecoveries by kind (issue 12): a switch to the standby parent over its warm edge, or a full repair (a new edge); each from the parent lost to the first chunk from the new parent, as viewers measure it (with 1 s chunks, up to 1 s of it is the wait for a chunk the source had not released yet). The full repairs' times include killed viewers coming back as new viewers (kill to first chunk). `added`: what recoveries of surviving viewers added to their delay behind the source, as they report it: how much later after its release the first new chunk after a recovery came than the last chunk before it (re-joins are not measured). Means over the runs that measured each figure; `-`: no run did (no such recovery).\n\n| distribution | failures/s | switches | switch median / p95 | full repairs | full repair median / p95 | every recovery median / p95 | added, every recovery median / p95 | added, full repairs median / p95 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for dist in &cfg.distributions {
        for &rate in &cfg.rates {
            // Over the runs that measured it: a run without any recovery of a kind has no time
            // for it, which is not a time of 0.
            let avg = |f: &dyn Fn(&Row) -> Option<u64>| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.distribution == *dist && r.rate == rate)
                    .filter_map(|r| f(r).map(|x| x as f64))
                    .collect();
                mean(&v).map_or_else(|| "-".to_string(), format_value)
            };
            if cell(rows, dist, rate, |r| r.kills as f64).is_none() {
                continue;
            }
            writeln!(
                md,
                "| {dist} | {rate} | {} | {} / {} ms | {} | {} / {} ms | {} / {} ms | {} / {} ms | {} / {} ms |",
                avg(&|r| Some(r.switches)),
                avg(&|r| r.switch_ms_median),
                avg(&|r| r.switch_ms_p95),
                avg(&|r| r.repairs.checked_sub(r.switches)),
                avg(&|r| r.repair_ms_median),
                avg(&|r| r.repair_ms_p95),
                avg(&|r| r.recovery_ms_median),
                avg(&|r| r.recovery_ms_p95),
                avg(&|r| r.delay_added_ms_median),
                avg(&|r| r.delay_added_ms_p95),
                avg(&|r| r.repair_delay_ms_median),
                avg(&|r| r.repair_delay_ms_p95),
            )?;
        }
    }
    writeln!(
        md,
        "\nWhat the paper's text says about each distribution (its figures print no values):\n"
    )?;
    for n in paper::NOTES
        .iter()
        .filter(|n| cfg.distributions.iter().any(|d| d == n.distribution))
    {
        writeln!(
            md,
            "- {}{}: {}",
            n.distribution,
            n.rate.map_or(String::new(), |r| format!(" at {r}/s")),
            n.text
        )?;
    }
    writeln!(md, "\nCharts: `fig6-*` to `fig10-*` (one per distribution, in the order given), `fig11-average-stalled-time`, each as SVG and PNG.")?;
    std::fs::write(out.join("summary.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dist: &str, rate: u32, seed: u64, delay: Option<u64>) -> Row {
        Row {
            distribution: dist.into(),
            rate,
            sample: 1,
            seed,
            kills: 60,
            repairs: 55,
            stalls: 2,
            stalled_ms: 1341,
            avg_stall_ms: 670,
            repair_ms_median: Some(886),
            repair_ms_p95: None,
            switches: 50,
            switch_ms_median: Some(500),
            switch_ms_p95: Some(900),
            recovery_ms_median: Some(510),
            recovery_ms_p95: Some(950),
            delay_added_ms_median: delay,
            delay_added_ms_p95: delay.map(|d| d * 10),
            repair_delay_ms_median: None,
            repair_delay_ms_p95: None,
            chunks_lost_by_survivors: 0,
            cpu_percent: Some(33.6),
            viewers_min: 79,
        }
    }

    #[test]
    fn results_read_back_as_written_and_merge_refuses_a_run_twice() {
        let dir = std::env::temp_dir().join(format!("ownstream-merge-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let first = vec![row("uniform", 1, 1001, Some(3)), row("beta", 5, 1020, None)];
        write_csv(&a, &first).unwrap();
        let back = read_csv(&a.join("results.csv")).unwrap();
        assert_eq!(format!("{first:?}"), format!("{back:?}"));
        // A file from before the delay columns existed reads them as empty.
        std::fs::write(
            b.join("results.csv"),
            "distribution,rate_per_s,sample,seed,kills,repairs,stalls,stalled_ms,avg_stall_ms,repair_ms_median,repair_ms_p95,chunks_lost_by_survivors,cpu_percent,viewers_min\nuniform,1,1,2001,60,55,0,0,0,886,1042,0,33.6,79\n",
        )
        .unwrap();
        let old = read_csv(&b.join("results.csv")).unwrap();
        assert_eq!((old[0].seed, old[0].delay_added_ms_median), (2001, None));
        let cfg = FailuresConfig {
            receivers: 80,
            distributions: vec!["uniform".into(), "beta".into()],
            rates: vec![1, 5],
            duration: Duration::from_secs(60),
            samples: 1,
            seed: 1,
            per_process: 40,
            key_bits: 2048,
            merged: 0,
        };
        let clip = Path::new("clip.webm");
        let out = dir.join("out");
        merge(
            &out,
            clip,
            &cfg,
            &[a.join("results.csv"), b.join("results.csv")],
        )
        .unwrap();
        let pooled = read_csv(&out.join("results.csv")).unwrap();
        let uniform: Vec<(u32, u64)> = pooled
            .iter()
            .filter(|r| r.distribution == "uniform")
            .map(|r| (r.sample, r.seed))
            .collect();
        assert_eq!(uniform, [(1, 1001), (2, 2001)]);
        let twice = merge(
            &out,
            clip,
            &cfg,
            &[a.join("results.csv"), a.join("results.csv")],
        );
        assert!(twice.unwrap_err().to_string().contains("twice"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
