//! `experiments`: reproduces the OwnStream paper's measurements on one machine, with real WebRTC
//! between headless Rust receivers, and plots them (see `experiments/README.md`).

mod api;
mod failures;
mod flood;
mod paper;
mod plot;
mod procs;
mod scale;
mod security;
mod stats;
mod testbed;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Reproduce the OwnStream paper's experiments on this machine and plot them.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Failure runs (paper figures 6-11): stalled playbacks, total and average stalled time
    /// against the failure rate, for each distribution.
    Failures(FailuresArgs),
    /// Security layer costs (paper figures 12-13): RSA key generation, keyed hash, digest,
    /// nonce, integrity check per chunk.
    Security(SecurityArgs),
    /// How many receivers this machine carries at the paper's bitrate; CPU per relayed Mbit/s;
    /// per-hop latency by depth; join to first chunk.
    Scale(ScaleArgs),
    /// Signaling under attack: N idle unauthenticated WebSockets from many loopback addresses
    /// while honest peers join (supervisor memory, honest join latency, refusals), then handshake
    /// spam answering the challenge with random bytes (RSA decryptions per second).
    Flood(FloodArgs),
}

#[derive(clap::Args, Debug)]
struct FloodArgs {
    #[command(flatten)]
    common: Common,
    /// Idle sockets to keep open.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Loopback source addresses of the idle sockets (127.0.0.2 and up).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=190))]
    addrs: u8,
    /// Honest joins per round (one round a second while the flood holds).
    #[arg(long, default_value_t = 5)]
    honest: usize,
    /// How long the flood holds after its ramp, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    hold: Duration,
    /// Length of the handshake-spam phase, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    spam: Duration,
    /// Concurrent spam connections (from 127.0.0.200-203).
    #[arg(long, default_value_t = 32)]
    spam_conns: usize,
    /// Names the run in flood.csv and <label>.json.
    #[arg(long, default_value = "defaults")]
    label: String,
    /// Extra argument for the supervisor (repeatable, e.g. --supervisor-arg=--max-pending-handshakes=20000).
    #[arg(long = "supervisor-arg", allow_hyphen_values = true)]
    supervisor_args: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct Common {
    /// Directory for the results (CSV, charts, summary.md, logs).
    #[arg(long)]
    out: PathBuf,
    /// WebM clip to broadcast (default: the paper-like clip, made at first use).
    #[arg(long)]
    clip: Option<PathBuf>,
    /// A short run (minutes, not hours) for a smoke test; the numbers are not the paper's.
    #[arg(long)]
    quick: bool,
    /// The broadcaster's latency mode (`broadcaster --latency`): `normal` or `low`.
    #[arg(long, default_value = "normal", value_parser = ["normal", "low"])]
    latency: String,
}

#[derive(clap::Args, Debug)]
struct FailuresArgs {
    #[command(flatten)]
    common: Common,
    /// Headless receivers in the tree.
    #[arg(long, default_value_t = 80)]
    receivers: usize,
    /// Distributions, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "uniform,binomial,poisson,beta,chisquared"
    )]
    distributions: Vec<String>,
    /// Failure rates (per second), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
    rates: Vec<u32>,
    /// Length of each run, e.g. 60s or 2m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Runs per distribution and rate.
    #[arg(long, default_value_t = 4)]
    samples: u32,
    /// Base seed of the runs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Receivers per process.
    #[arg(long, default_value_t = 40)]
    per_process: usize,
    /// RSA key size of every peer.
    #[arg(long, default_value_t = 2048)]
    key_bits: u32,
    /// Run the grid on the simulator (`ownstream-sim`: the real registry and nodes on virtual
    /// time over a modelled loopback) instead of real processes: minutes, not hours.
    #[arg(long)]
    sim: bool,
    /// Run nothing: pool the `results.csv` of grids run in several sittings (comma-separated
    /// paths; each run keeps its own seed) and write `--out`'s CSV, charts and summary from them.
    /// The cells are those of `--distributions` and `--rates`.
    #[arg(long, value_delimiter = ',', conflicts_with = "sim")]
    merge: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct SecurityArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    /// Receiver counts to try, comma-separated, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,40,80,120,160,200,250,300,400,500,600,700,800,1000"
    )]
    steps: Vec<usize>,
    /// Measured window per step, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    window: Duration,
    /// Stop the ramp above this CPU use of all processes together (% of one core).
    #[arg(long, default_value_t = 180.0)]
    cpu_limit: f64,
    /// Receivers per process. Fewer, fuller processes cost less CPU per relayed Mbit/s (fewer
    /// runtimes parking and waking) and keep up better when the cores saturate: 600 at once play
    /// with 200 per process, not with 40 (`experiments/results/per-process`).
    #[arg(long, default_value_t = 200)]
    per_process: usize,
    /// RSA key size of every peer.
    #[arg(long, default_value_t = 2048)]
    key_bits: u32,
    /// How the supervisor arranges the viewers (`supervisor --topology`): a chain reaches a
    /// depth a tree would need thousands of receivers for.
    #[arg(long, value_enum, default_value = "tree")]
    topology: scale::Topology,
    /// Children per node in a tree (`supervisor --fanout`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    fanout: u16,
}

/// `90`, `90s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (t.strip_suffix('s').unwrap_or(t), 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 60s or 2m"))?;
    if n == 0 {
        return Err("the duration must be above 0".into());
    }
    Ok(Duration::from_secs(n * unit))
}

/// One line describing this machine, for the reports.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = procs::run(
        std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]),
        "date",
    )
    .map(|d| d.trim().to_string())
    .unwrap_or_default();
    format!("{date}, {cores} cores ({cpu})")
}

fn clip(common: &Common, seconds: u32) -> anyhow::Result<PathBuf> {
    match &common.clip {
        Some(p) => Ok(p.clone()),
        None => procs::paper_clip(seconds),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = match &cli.command {
        Cmd::Security(a) => &a.common,
        Cmd::Scale(a) => &a.common,
        Cmd::Flood(a) => &a.common,
        Cmd::Failures(a) => &a.common,
    };
    testbed::set_latency(&common.latency);
    match cli.command {
        Cmd::Security(a) => {
            let clip = clip(&a.common, 20)?;
            security::run(&a.common.out, &clip, a.common.quick)?;
            println!("wrote {}", a.common.out.join("summary.md").display());
        }
        Cmd::Scale(a) => {
            let clip = clip(&a.common, 20)?;
            // --quick changes only the ramp and the window.
            let (steps, window) = if a.common.quick {
                (vec![5, 10], Duration::from_secs(8))
            } else {
                (a.steps, a.window)
            };
            let cfg = scale::ScaleConfig {
                steps,
                window,
                per_process: a.per_process,
                cpu_limit: a.cpu_limit,
                key_bits: a.key_bits,
                topology: a.topology,
                fanout: a.fanout,
            };
            scale::run(&a.common.out, &clip, &cfg)?;
            println!("wrote {}", a.common.out.join("summary.md").display());
        }
        Cmd::Flood(a) => {
            let clip = clip(&a.common, 20)?;
            let mut cfg = flood::FloodConfig {
                idle: a.idle,
                addrs: a.addrs,
                honest: a.honest,
                hold: a.hold,
                spam: a.spam,
                spam_conns: a.spam_conns,
                label: a.label,
                supervisor_args: a.supervisor_args,
            };
            if a.common.quick {
                cfg = flood::FloodConfig {
                    idle: 1000,
                    addrs: 8,
                    hold: Duration::from_secs(5),
                    spam: Duration::from_secs(4),
                    spam_conns: 8,
                    ..cfg
                };
            }
            flood::run(&a.common.out, &clip, &cfg).context("the flood experiment failed")?;
            println!("wrote {}", a.common.out.join("flood.csv").display());
        }
        Cmd::Failures(a) => {
            let clip = clip(&a.common, 20)?;
            let mut cfg = failures::FailuresConfig {
                receivers: a.receivers,
                distributions: a.distributions,
                rates: a.rates,
                duration: a.duration,
                samples: a.samples,
                seed: a.seed,
                per_process: a.per_process,
                key_bits: a.key_bits,
                merged: 0,
            };
            for d in &cfg.distributions {
                let known = ["uniform", "binomial", "poisson", "beta", "chisquared"];
                anyhow::ensure!(
                    known.contains(&d.as_str()),
                    "unknown distribution `{d}`: use {}",
                    known.join(", ")
                );
            }
            anyhow::ensure!(
                cfg.rates.iter().all(|r| (1..=100).contains(r)),
                "rates are failures per second, 1 to 100"
            );
            if a.common.quick {
                cfg = failures::FailuresConfig {
                    receivers: 15,
                    distributions: vec!["uniform".into()],
                    rates: vec![2],
                    duration: Duration::from_secs(10),
                    samples: 1,
                    ..cfg
                };
            }
            if !a.merge.is_empty() {
                failures::merge(&a.common.out, &clip, &cfg, &a.merge)
                    .context("merging the failure results failed")?;
            } else if a.sim {
                failures::run_simulated(&a.common.out, &clip, &cfg)
                    .context("the simulated failure experiment failed")?;
            } else {
                failures::run(&a.common.out, &clip, &cfg)
                    .context("the failure experiment failed")?;
            }
            println!("wrote {}", a.common.out.join("summary.md").display());
        }
    }
    Ok(())
}
