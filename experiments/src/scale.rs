//! `experiments scale`: how many headless receivers this machine carries at the paper's bitrate
//! with no failures. For each step of a ramp, a fresh stream of N receivers is started; once all
//! play, a window is measured: stalls, CPU of every process, megabits relayed, per-hop latency by
//! depth (from each chunk's arrival time at a node and at its parent, one clock on one machine),
//! and join-to-first-chunk. The ramp stops at the first step with stalls or with CPU past the
//! limit.

use crate::plot::{self, format_value, Series};
use crate::stats::{cpu_percent, median, percentile};
use crate::testbed::Testbed;
use indicatif::ProgressBar;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Settings of a scale run.
pub(crate) struct ScaleConfig {
    /// Receiver counts to try, in order.
    pub steps: Vec<usize>,
    /// Measured window per step.
    pub window: Duration,
    /// Receivers per process.
    pub per_process: usize,
    /// Stop when all processes together use more than this (% of one core).
    pub cpu_limit: f64,
    /// Peer key size.
    pub key_bits: u32,
    /// How the viewers are arranged.
    pub topology: Topology,
    /// Children per node in a tree.
    pub fanout: u16,
}

/// The supervisor's `--topology`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Topology {
    Tree,
    Chain,
}

impl ScaleConfig {
    /// The supervisor's arguments for this shape.
    fn supervisor_args(&self) -> Vec<String> {
        match self.topology {
            Topology::Tree => vec!["--fanout".into(), self.fanout.to_string()],
            Topology::Chain => vec!["--topology".into(), "chain".into()],
        }
    }

    /// The shape in words, for the summary.
    fn shape(&self) -> String {
        match self.topology {
            Topology::Tree => format!("a tree of fanout {}", self.fanout),
            Topology::Chain => "a chain (each viewer relays to one)".into(),
        }
    }
}

/// What one step measured.
#[derive(Debug, Default)]
pub(crate) struct Step {
    n: usize,
    stalls: u64,
    stalled_ms: u64,
    cpu_percent: f64,
    receivers_cpu_percent: f64,
    relayed_mbps: f64,
    join_first_chunk_ms: Vec<f64>,
    /// From starting the receivers (all at once: a flash crowd) to every one of them playing.
    all_playing_s: f64,
    hop_ms: BTreeMap<u64, Vec<f64>>,
    e2e_ms: BTreeMap<u64, Vec<f64>>,
    /// Glass-to-glass latency by depth: every viewer's report, sampled each second of the window.
    glass_ms: BTreeMap<u64, Vec<f64>>,
    depth: u64,
}

/// Adds every viewer's glass-to-glass figure (`latency_ms` of its latest report) by depth.
fn sample_glass(into: &mut BTreeMap<u64, Vec<f64>>, stats: &[Value]) {
    for n in stats {
        if let (Some(depth), Some(ms)) = (n["depth"].as_u64(), n["stats"]["latency_ms"].as_f64()) {
            into.entry(depth).or_default().push(ms);
        }
    }
}

fn sum(stats: &[Value], field: &str) -> u64 {
    stats
        .iter()
        .filter_map(|n| n["stats"][field].as_u64())
        .sum()
}

/// Measures one step.
fn step(out: &Path, clip: &Path, n: usize, cfg: &ScaleConfig) -> anyhow::Result<Step> {
    let dir = out.join("raw").join(format!("step-{n}"));
    let started = Instant::now();
    let mut bed = Testbed::start(
        &dir,
        clip,
        n,
        cfg.per_process,
        cfg.key_bits,
        &cfg.supervisor_args(),
    )?;
    bed.wait_playing(Duration::from_secs(60 + n as u64))?;
    let all_playing_s = started.elapsed().as_secs_f64();
    // Let the start-up bursts (keyframe backlogs to every new child) settle first.
    std::thread::sleep(Duration::from_secs(3));
    let (s0, c0, t0) = (bed.stats(), bed.cpu(), Instant::now());
    let mut glass_ms = BTreeMap::new();
    while t0.elapsed() + Duration::from_secs(1) < cfg.window {
        std::thread::sleep(Duration::from_secs(1));
        sample_glass(&mut glass_ms, &bed.stats());
    }
    std::thread::sleep(cfg.window.saturating_sub(t0.elapsed()));
    let (s1, c1, wall) = (bed.stats(), bed.cpu(), t0.elapsed().as_secs_f64());
    let tree = bed.api.tree(crate::testbed::STREAM);
    let cpu = c0.until(&c1);
    let (broadcaster, receivers) = bed.stop()?;
    let mut step = Step {
        n,
        stalls: sum(&s1, "stalls").saturating_sub(sum(&s0, "stalls")),
        stalled_ms: sum(&s1, "stalled_ms").saturating_sub(sum(&s0, "stalled_ms")),
        cpu_percent: cpu_percent(cpu.total(), wall),
        receivers_cpu_percent: cpu_percent(cpu.receivers, wall),
        relayed_mbps: (sum(&s1, "bytes_sent").saturating_sub(sum(&s0, "bytes_sent"))) as f64 * 8.0
            / wall
            / 1e6,
        join_first_chunk_ms: s1
            .iter()
            .filter_map(|n| n["stats"]["first_chunk_latency_ms"].as_f64())
            .collect(),
        depth: tree.iter().map(|t| t.2).max().unwrap_or(0),
        all_playing_s,
        glass_ms,
        ..Step::default()
    };
    latencies(&mut step, &tree, &broadcaster, &receivers);
    Ok(step)
}

/// Per-hop and end-to-end latency by depth from the nodes' chunk arrival times.
fn latencies(
    step: &mut Step,
    tree: &[(String, Option<String>, u64)],
    broadcaster: &Value,
    receivers: &[Value],
) {
    let arrivals = |v: &Value| -> HashMap<u64, f64> {
        v["arrivals"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_u64()?, p[1].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut by_id: HashMap<String, HashMap<u64, f64>> = HashMap::new();
    if let Some(id) = broadcaster["peer_id"].as_str() {
        by_id.insert(id.to_string(), arrivals(broadcaster));
    }
    for r in receivers {
        if let Some(id) = r["peer_id"].as_str() {
            by_id.insert(id.to_string(), arrivals(r));
        }
    }
    let root = tree.iter().find(|t| t.1.is_none()).map(|t| t.0.clone());
    let Some(release) = root.and_then(|r| by_id.get(&r)).cloned() else {
        return;
    };
    for (id, parent, depth) in tree {
        let (Some(parent), Some(mine)) = (parent, by_id.get(id)) else {
            continue;
        };
        let Some(theirs) = by_id.get(parent) else {
            continue;
        };
        for (seq, t) in mine {
            // Chunk 0 and the joiner's backlog are sent at once, not at their release: skip the
            // first seconds of each node by comparing only chunks both saw after the start.
            if *seq < 5 {
                continue;
            }
            if let Some(tp) = theirs.get(seq) {
                step.hop_ms.entry(*depth).or_default().push(t - tp);
            }
            if let Some(tr) = release.get(seq) {
                step.e2e_ms.entry(*depth).or_default().push(t - tr);
            }
        }
    }
}

/// Runs the ramp and writes `scale.csv`, `latency.csv`, charts and `summary.md`. A step that
/// cannot finish (its viewers never all play, a process dies) ends the ramp: the steps before it
/// are written out, the summary says why it ended, and the error is returned.
pub(crate) fn run(out: &Path, clip: &Path, cfg: &ScaleConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let bar = ProgressBar::new(cfg.steps.len() as u64);
    let mut steps = Vec::new();
    let mut failed = None;
    for &n in &cfg.steps {
        bar.set_message(format!("{n} receivers"));
        let s = match step(out, clip, n, cfg) {
            Ok(s) => s,
            Err(e) => {
                failed = Some((n, e));
                break;
            }
        };
        bar.suspend(|| {
            eprintln!(
                "{n} receivers: {} stalls, CPU {:.0}%, relayed {:.1} Mbit/s, depth {}",
                s.stalls, s.cpu_percent, s.relayed_mbps, s.depth
            )
        });
        bar.inc(1);
        let stop = s.stalls > 0 || s.cpu_percent > cfg.cpu_limit;
        steps.push(s);
        if stop {
            break;
        }
    }
    bar.finish_and_clear();
    let failure = failed.as_ref().map(|(n, e)| (*n, format!("{e:#}")));
    if !steps.is_empty() {
        write_outputs(out, clip, cfg, &steps, failure.as_ref())?;
    }
    match failed {
        Some((n, e)) if steps.is_empty() => Err(e.context(format!("the {n}-receiver step"))),
        Some((n, e)) => Err(e.context(format!(
            "the {n}-receiver step did not finish; the steps before it are in {}",
            out.join("summary.md").display()
        ))),
        None => Ok(()),
    }
}

fn write_outputs(
    out: &Path,
    clip: &Path,
    cfg: &ScaleConfig,
    steps: &[Step],
    failure: Option<&(usize, String)>,
) -> anyhow::Result<()> {
    let mut csv = String::from(
        "receivers,depth,stalls,stalled_ms,cpu_percent,receivers_cpu_percent,relayed_mbps,cpu_percent_per_relayed_mbps,join_first_chunk_ms_median,join_first_chunk_ms_p95,all_playing_s\n",
    );
    let mut lat = String::from(
        "receivers,depth,hop_ms_median,hop_ms_p95,end_to_end_ms_median,end_to_end_ms_p95,samples\n",
    );
    for s in steps {
        writeln!(
            csv,
            "{},{},{},{},{:.1},{:.1},{:.2},{:.2},{:.0},{:.0},{:.1}",
            s.n,
            s.depth,
            s.stalls,
            s.stalled_ms,
            s.cpu_percent,
            s.receivers_cpu_percent,
            s.relayed_mbps,
            s.cpu_percent / s.relayed_mbps.max(1e-9),
            median(&s.join_first_chunk_ms).unwrap_or(0.0),
            percentile(&s.join_first_chunk_ms, 95.0).unwrap_or(0.0),
            s.all_playing_s
        )?;
        for (depth, hops) in &s.hop_ms {
            let e2e = s.e2e_ms.get(depth).cloned().unwrap_or_default();
            writeln!(
                lat,
                "{},{depth},{:.1},{:.1},{:.1},{:.1},{}",
                s.n,
                median(hops).unwrap_or(0.0),
                percentile(hops, 95.0).unwrap_or(0.0),
                median(&e2e).unwrap_or(0.0),
                percentile(&e2e, 95.0).unwrap_or(0.0),
                hops.len()
            )?;
        }
    }
    std::fs::write(out.join("scale.csv"), csv)?;
    std::fs::write(out.join("glass.csv"), glass_csv(steps))?;
    std::fs::write(out.join("latency.csv"), lat)?;
    let pts = |f: &dyn Fn(&Step) -> f64| steps.iter().map(|s| (s.n as f64, f(s))).collect();
    plot::line_chart(
        &out.join("scale-cpu"),
        "CPU and relayed traffic against receivers",
        "receivers",
        "CPU (% of one core) / relayed Mbit/s",
        &[
            Series {
                name: "CPU, all processes (%)".into(),
                points: pts(&|s| s.cpu_percent),
            },
            Series {
                name: "relayed (Mbit/s)".into(),
                points: pts(&|s| s.relayed_mbps),
            },
        ],
    )?;
    let ok = steps.iter().filter(|s| s.stalls == 0).map(|s| s.n).max();
    let last_ok = steps.iter().rfind(|s| s.stalls == 0);
    if let Some(s) = last_ok {
        let series = vec![
            Series {
                name: "per hop (median)".into(),
                points: s
                    .hop_ms
                    .iter()
                    .map(|(d, v)| (*d as f64, median(v).unwrap_or(0.0)))
                    .collect(),
            },
            Series {
                name: "per hop (p95)".into(),
                points: s
                    .hop_ms
                    .iter()
                    .map(|(d, v)| (*d as f64, percentile(v, 95.0).unwrap_or(0.0)))
                    .collect(),
            },
            Series {
                name: "from the broadcaster (median)".into(),
                points: s
                    .e2e_ms
                    .iter()
                    .map(|(d, v)| (*d as f64, median(v).unwrap_or(0.0)))
                    .collect(),
            },
        ];
        plot::line_chart(
            &out.join("scale-latency"),
            &format!("Chunk latency by depth, {} receivers", s.n),
            "depth",
            "milliseconds",
            &series,
        )?;
    }
    let mut md = String::new();
    writeln!(
        md,
        "# Scale: receivers on one machine at the paper's bitrate\n"
    )?;
    writeln!(
        md,
        "Measured by `experiments scale` on {}: a supervisor, a broadcaster of `{}` ({} latency mode) on a loop and N headless receivers ({} per process) in {}, all release builds on loopback, a fresh stream per step, a {} s window once every receiver plays; the ramp stops at the first step with a stall or above {:.0}% CPU.\n",
        crate::machine(),
        clip.file_name().map_or_else(String::new, |f| f.to_string_lossy().to_string()),
        crate::testbed::latency(),
        cfg.per_process,
        cfg.shape(),
        cfg.window.as_secs(),
        cfg.cpu_limit
    )?;
    writeln!(md, "| receivers | depth | stalls | CPU (all, % of a core) | relayed Mbit/s | CPU % per relayed Mbit/s | join to first chunk, median / p95 | all playing after |\n|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for s in steps {
        writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.1} | {:.2} | {} / {} ms | {:.1} s |",
            s.n,
            s.depth,
            s.stalls,
            s.cpu_percent,
            s.relayed_mbps,
            s.cpu_percent / s.relayed_mbps.max(1e-9),
            format_value(median(&s.join_first_chunk_ms).unwrap_or(0.0)),
            format_value(percentile(&s.join_first_chunk_ms, 95.0).unwrap_or(0.0)),
            s.all_playing_s
        )?;
    }
    if let Some((n, why)) = failure {
        writeln!(md, "| {n} | – | – | – | – | – | – | did not finish |")?;
        writeln!(
            md,
            "\nThe {n}-receiver step did not finish, which ended the ramp: {why}"
        )?;
    }
    let ended_clean = failure.is_none()
        && steps
            .last()
            .is_some_and(|s| s.stalls == 0 && s.cpu_percent <= cfg.cpu_limit);
    match ok {
        Some(n) if ended_clean => writeln!(
            md,
            "\n**Largest N without a stall: {n}, the ramp's last step: the machine may carry more.**"
        )?,
        Some(n) => writeln!(md, "\n**Largest N without a stall: {n}.**")?,
        None => writeln!(md, "\n**Every step stalled.**")?,
    }
    if let Some(s) = last_ok {
        writeln!(md, "\nLatency by depth at {} receivers (a chunk's arrival at a node minus its arrival at the parent; from the broadcaster: minus its release):\n\n| depth | per hop median | per hop p95 | from the broadcaster, median |\n|---:|---:|---:|---:|", s.n)?;
        for (d, hops) in &s.hop_ms {
            let e2e = s.e2e_ms.get(d).cloned().unwrap_or_default();
            writeln!(
                md,
                "| {d} | {} ms | {} ms | {} ms |",
                format_value(median(hops).unwrap_or(0.0)),
                format_value(percentile(hops, 95.0).unwrap_or(0.0)),
                format_value(median(&e2e).unwrap_or(0.0))
            )?;
        }
    }
    glass_summary(&mut md, steps)?;
    writeln!(md, "\nCharts: `scale-cpu.svg/png`, `scale-latency.svg/png`; numbers: `scale.csv`, `latency.csv`.")?;
    std::fs::write(out.join("summary.md"), md)?;
    Ok(())
}

/// `glass.csv`: glass-to-glass latency by step and depth.
fn glass_csv(steps: &[Step]) -> String {
    let mut csv = String::from("receivers,depth,glass_ms_median,glass_ms_p95,samples\n");
    for s in steps {
        for (depth, v) in &s.glass_ms {
            let _ = writeln!(
                csv,
                "{},{depth},{:.0},{:.0},{}",
                s.n,
                median(v).unwrap_or(0.0),
                percentile(v, 95.0).unwrap_or(0.0),
                v.len()
            );
        }
    }
    csv
}

/// The summary's glass-to-glass table: one row per depth, one column pair per step.
fn glass_summary(md: &mut String, steps: &[Step]) -> std::fmt::Result {
    if steps.iter().all(|s| s.glass_ms.is_empty()) {
        return Ok(());
    }
    writeln!(md, "\nGlass-to-glass latency by depth (how far behind live each viewer plays: capture, or the file's live schedule, to display; every viewer's report each second of the window), median / p95:\n")?;
    let head: Vec<String> = steps.iter().map(|s| format!("{} receivers", s.n)).collect();
    writeln!(md, "| depth | {} |", head.join(" | "))?;
    writeln!(md, "|---:|{}", "---:|".repeat(steps.len()))?;
    let depths: std::collections::BTreeSet<u64> = steps
        .iter()
        .flat_map(|s| s.glass_ms.keys().copied())
        .collect();
    for d in depths {
        let cells: Vec<String> = steps
            .iter()
            .map(|s| match s.glass_ms.get(&d) {
                Some(v) => format!(
                    "{} / {} ms",
                    format_value(median(v).unwrap_or(0.0)),
                    format_value(percentile(v, 95.0).unwrap_or(0.0))
                ),
                None => "–".into(),
            })
            .collect();
        writeln!(md, "| {d} | {} |", cells.join(" | "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_did_not_finish_is_in_the_summary_and_ends_the_claim() {
        let out = std::env::temp_dir().join(format!("scale-summary-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let cfg = ScaleConfig {
            steps: vec![400, 500],
            window: Duration::from_secs(20),
            per_process: 200,
            cpu_limit: 180.0,
            key_bits: 2048,
            topology: Topology::Tree,
            fanout: 2,
        };
        let done = Step {
            n: 400,
            cpu_percent: 150.0,
            relayed_mbps: 460.0,
            depth: 8,
            hop_ms: BTreeMap::from([(1, vec![90.0]), (2, vec![30.0])]),
            ..Step::default()
        };
        let why = (500, "only 491 of 500 viewers play after 560s".to_string());
        write_outputs(&out, Path::new("clip.webm"), &cfg, &[done], Some(&why)).unwrap();
        let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        assert!(
            md.contains("| 500 | – | – | – | – | – | – | did not finish |"),
            "{md}"
        );
        assert!(
            md.contains("The 500-receiver step did not finish, which ended the ramp: only 491"),
            "{md}"
        );
        // Not "the ramp's last step: the machine may carry more": the next step was tried.
        assert!(md.contains("**Largest N without a stall: 400.**"), "{md}");
    }
}
