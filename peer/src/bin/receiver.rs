//! `receiver`: a headless viewer. Authenticates, joins a stream (waiting for it if it is not live),
//! verifies, relays to its children, models playback, and writes what it received.

use anyhow::Context;
use clap::Parser;
use ownstream_peer::cli::{exit_code, init_logging, shutdown_signal, CommonArgs};
use ownstream_peer::node::{Faults, Node};
use ownstream_peer::sink::FileSink;
use std::path::PathBuf;

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
    /// Write a JSON summary of the run here at exit.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Fraction of chunks whose HMAC tag is checked (0.0-1.0); init and end chunks always are.
    #[arg(long, default_value_t = 1.0, value_parser = parse_fraction)]
    verify_fraction: f64,
    /// Fault injection for tests: alter chunk SEQ before relaying it to children.
    #[arg(long, hide = true)]
    fault_corrupt_relayed_seq: Option<u64>,
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
    let mut config = cli
        .common
        .node_config(ownstream_core::protocol::ComponentType::Receiver)?;
    config.verify_fraction = cli.verify_fraction;
    config.faults = Faults {
        corrupt_relayed_seq: cli.fault_corrupt_relayed_seq,
    };
    let sink = match &cli.out {
        Some(path) => Some(
            FileSink::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let (mut node, handle) = Node::connect(config, &cli.stream).await?;
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
    if summary.ending.starts_with("supervisor connection lost") {
        anyhow::bail!("{}", summary.ending);
    }
    Ok(())
}
