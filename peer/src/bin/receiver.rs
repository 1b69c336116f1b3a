//! `receiver`: a headless viewer. Authenticates, joins a stream (waiting for it if it is not live),
//! verifies, relays to its children, models playback, and writes what it received.

use anyhow::Context;
use clap::Parser;
use ownstream_peer::cli::{exit_code, init_logging, shutdown_signal, CommonArgs};
use ownstream_peer::node::{Faults, Node};
use ownstream_peer::sink::FileSink;
use std::path::PathBuf;

// glibc's malloc gave the pages of every freed ~150 KB chunk back and zeroed fresh ones for the
// next (5 % of a relaying process in `clear_page`); jemalloc keeps them for a while
// (`experiments/results/allocator`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Headless ownstream receiver: watch (and relay) a live stream without a browser.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Name of the stream to join.
    #[arg(long)]
    stream: String,
    /// Write the received WebM (init segment + clusters from where this receiver joined) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write a JSON summary of the run here at exit (with --count: an array, one per receiver).
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Run this many independent receivers in this one process (each its own key, peer id and
    /// place in the tree): how load tests and the experiments put many viewers on one machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    count: u32,
    /// Fraction of chunks whose HMAC tag is checked (0.0-1.0); init and end chunks always are.
    #[arg(long, default_value_t = 1.0, value_parser = parse_fraction)]
    verify_fraction: f64,
    /// Never relay: ask the supervisor to place this receiver as a leaf of the tree (for a
    /// viewer that admits no inbound connection or pays for upload).
    #[arg(long)]
    no_relay: bool,
    /// Fault injection for tests: alter chunk SEQ before relaying it to children.
    #[arg(long, hide = true)]
    fault_corrupt_relayed_seq: Option<u64>,
    /// Fault injection for tests: alter chunk SEQ and recompute its HMAC tag with the stream key
    /// before relaying it to children (a forging relay; the signature cannot be remade).
    #[arg(long, hide = true)]
    fault_forge_relayed_seq: Option<u64>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0.0 and 1.0".into())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    if cli.count > 1 {
        anyhow::ensure!(
            cli.out.is_none(),
            "--out writes one receiver's media: it does not go with --count"
        );
        return run_many(&cli).await;
    }
    let mut config = cli
        .common
        .node_config(ownstream_core::protocol::ComponentType::Receiver)?;
    config.verify_fraction = cli.verify_fraction;
    config.can_relay = !cli.no_relay;
    config.faults = Faults {
        corrupt_relayed_seq: cli.fault_corrupt_relayed_seq,
        forge_relayed_seq: cli.fault_forge_relayed_seq,
    };
    let sink = match &cli.out {
        Some(path) => Some(
            FileSink::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let (mut node, handle) = Node::new(config, &cli.stream);
    if let Some(sink) = sink {
        node.set_sink(Box::new(sink));
    }
    eprintln!(
        "receiver {} joining stream `{}`",
        node.peer_id(),
        cli.stream
    );
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.stop();
    });
    let summary = node.run().await;
    eprintln!("receiver {} finished: {}", summary.peer_id, summary.ending);
    if let Some(path) = &cli.stats {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if summary.outcome.is_failure() {
        anyhow::bail!("{}", summary.ending);
    }
    Ok(())
}

/// `--count N`: N receivers in one process, stopped together.
async fn run_many(cli: &Cli) -> anyhow::Result<()> {
    // Keys are the slow part of starting many peers: make them on every core.
    let mut keygen = tokio::task::JoinSet::new();
    for _ in 0..cli.count {
        let common = cli.common.clone();
        keygen.spawn_blocking(move || {
            common.node_config(ownstream_core::protocol::ComponentType::Receiver)
        });
    }
    let mut nodes = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    while let Some(config) = keygen.join_next().await {
        let mut config = config.context("key generation panicked")??;
        config.verify_fraction = cli.verify_fraction;
        config.can_relay = !cli.no_relay;
        let (node, handle) = Node::new(config, &cli.stream);
        eprintln!(
            "receiver {} joining stream `{}`",
            node.peer_id(),
            cli.stream
        );
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            handle.stop();
        });
        nodes.spawn(node.run());
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut summaries = Vec::new();
    while let Some(summary) = nodes.join_next().await {
        let summary = summary.context("a receiver panicked")?;
        eprintln!("receiver {} finished: {}", summary.peer_id, summary.ending);
        summaries.push(summary);
    }
    if let Some(path) = &cli.stats {
        let json = serde_json::to_string_pretty(&summaries)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let failed: Vec<&str> = summaries
        .iter()
        .filter(|s| s.outcome.is_failure())
        .map(|s| s.ending.as_str())
        .collect();
    if let Some(first) = failed.first() {
        anyhow::bail!(
            "{} of {} receivers failed; the first: {first}",
            failed.len(),
            summaries.len()
        );
    }
    Ok(())
}
