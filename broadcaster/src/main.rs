//! `broadcaster`: registers a stream and broadcasts a WebM file or standard input to its viewers.

use clap::Parser;
use ownstream_broadcaster::{run, BroadcastConfig, Source};
use ownstream_peer::cli::{exit_code, init_logging, shutdown_signal, CommonArgs};
use std::path::PathBuf;

/// Broadcast a WebM source down an ownstream tree.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Name of the stream to register.
    #[arg(long)]
    name: String,
    /// WebM file to broadcast.
    #[arg(long, conflicts_with = "stdin", required_unless_present = "stdin")]
    file: Option<PathBuf>,
    /// Restart the file at its end, forever, with seamless timestamps.
    #[arg(long = "loop", requires = "file")]
    looped: bool,
    /// Read a live WebM pipe from standard input (e.g. `ffmpeg ... -f webm -`).
    #[arg(long)]
    stdin: bool,
    /// Hold the first chunk until this many viewers are connected.
    #[arg(long, default_value_t = 0)]
    wait_viewers: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_code(run_cli().await)
}

async fn run_cli() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    let source = match &cli.file {
        Some(path) => Source::File {
            path: path.clone(),
            looped: cli.looped,
        },
        None => Source::Stdin,
    };
    source.check().await?;
    let mut node = cli
        .common
        .node_config(ownstream_core::protocol::ComponentType::Broadcaster)?;
    node.wait_viewers = cli.wait_viewers;
    eprintln!(
        "broadcaster {} registering stream `{}`",
        node.identity.peer_id, cli.name
    );
    let summary = run(
        BroadcastConfig {
            node,
            name: cli.name.clone(),
            source,
        },
        shutdown_signal(),
    )
    .await?;
    eprintln!("broadcast finished: {}", summary.ending);
    if summary.ending.starts_with("supervisor connection lost") {
        anyhow::bail!("{}", summary.ending);
    }
    Ok(())
}
