//! `broadcaster`: registers a stream and broadcasts a WebM file or standard input to its viewers.

use anyhow::Context;
use clap::Parser;
use ownstream_broadcaster::webcam::{self, AudioInput, Webcam};
use ownstream_broadcaster::{run, signing_key_file, BroadcastConfig, Source};
use ownstream_core::auth::Identity;
use ownstream_core::latency::LatencyMode;
use ownstream_core::node::Ending;
use ownstream_core::publish::PUBLISH_FORBIDDEN;
use ownstream_peer::cli::{exit_code, init_logging, shutdown_signal, CommonArgs};
use std::path::{Path, PathBuf};

// glibc's malloc gave the pages of every freed ~150 KB chunk back and zeroed fresh ones for the
// next (5 % of a relaying process in `clear_page`); jemalloc keeps them for a while
// (`experiments/results/allocator`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    #[arg(long, conflicts_with_all = ["stdin", "webcam"], required_unless_present_any = ["stdin", "webcam"])]
    file: Option<PathBuf>,
    /// Restart the file at its end, forever, with seamless timestamps.
    #[arg(long = "loop", requires = "file")]
    looped: bool,
    /// Read a live WebM pipe from standard input (e.g. `ffmpeg ... -f webm -`).
    #[arg(long, conflicts_with = "webcam")]
    stdin: bool,
    /// Capture a camera (V4L2 device, default /dev/video0) and microphone with ffmpeg, as
    /// VP8/Opus with a keyframe every second.
    #[arg(long, value_name = "DEVICE", num_args = 0..=1, default_missing_value = webcam::DEFAULT_DEVICE)]
    webcam: Option<PathBuf>,
    /// Microphone for --webcam.
    #[arg(long, value_enum, default_value = "auto", requires = "webcam")]
    webcam_audio: AudioInput,
    /// Capture size for --webcam, e.g. 1280x720 (default: the camera's).
    #[arg(long, requires = "webcam", value_parser = parse_size)]
    webcam_size: Option<String>,
    /// VP8 bitrate for --webcam, e.g. 800k or 2M.
    #[arg(long, default_value = "1500k", requires = "webcam")]
    webcam_bitrate: String,
    /// The supervisor operator's publish token (the supervisor prints one at start unless it was
    /// given its own).
    #[arg(long, env = "OWNSTREAM_PUBLISH_TOKEN", hide_env_values = true)]
    publish_token: Option<String>,
    /// This broadcaster's RSA key (PKCS#8 PEM), so that its fingerprint stays the same from run to
    /// run and a supervisor may allow-list it (`supervisor --publisher-key`); a fresh key each run
    /// when omitted.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// Latency mode of the stream, told to every viewer: `low` cuts 250 ms chunks and has players
    /// start with 500 ms buffered (and skip ahead after a stall); `normal` cuts chunks of up to
    /// one second and starts players with 1.5 s.
    #[arg(long, value_enum, default_value = "normal")]
    latency: LatencyArg,
    /// Hold the first chunk until this many viewers are connected.
    #[arg(long, default_value_t = 0)]
    wait_viewers: usize,
    /// Write a JSON summary at exit, with the release time of every chunk.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Keep the Ed25519 key that signs every chunk in this file (made on first use, owner-only):
    /// the same broadcaster then registers the same public key on every run. Without it, a fresh
    /// key per run.
    #[arg(long, value_name = "PATH")]
    signing_key: Option<PathBuf>,
}

/// `--latency`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LatencyArg {
    Low,
    Normal,
}

fn load_key(path: &Path) -> anyhow::Result<Identity> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    Identity::from_pkcs8_pem(&pem)
        .with_context(|| format!("{} is not a PKCS#8 PEM RSA private key", path.display()))
}

/// The supervisor's reason, when it refused to let this broadcaster publish.
fn publish_refusal(outcome: &Ending) -> Option<&str> {
    match outcome {
        Ending::SupervisorLost(r) => r
            .strip_prefix(PUBLISH_FORBIDDEN)
            .and_then(|r| r.strip_prefix(": ")),
        _ => None,
    }
}

fn parse_size(text: &str) -> Result<String, String> {
    let ok = text
        .split_once('x')
        .is_some_and(|(w, h)| w.parse::<u16>().is_ok() && h.parse::<u16>().is_ok());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("`{text}` is not WIDTHxHEIGHT, e.g. 1280x720"))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_code(run_cli().await)
}

async fn run_cli() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    let source = match (&cli.file, &cli.webcam) {
        (Some(path), _) => Source::File {
            path: path.clone(),
            looped: cli.looped,
        },
        (None, Some(device)) => Source::Webcam(Webcam {
            device: device.clone(),
            audio: cli.webcam_audio,
            size: cli.webcam_size.clone(),
            bitrate: cli.webcam_bitrate.clone(),
        }),
        (None, None) => Source::Stdin,
    };
    source.check().await?;
    let component = ownstream_core::protocol::ComponentType::Broadcaster;
    let mut node = match &cli.key {
        Some(path) => cli.common.node_config_with_key(component, load_key(path)?),
        None => cli.common.node_config(component)?,
    };
    node.wait_viewers = cli.wait_viewers;
    node.latency = match cli.latency {
        LatencyArg::Low => LatencyMode::Low,
        LatencyArg::Normal => LatencyMode::Normal,
    };
    if let Some(path) = &cli.signing_key {
        node.signing_key = Some(signing_key_file(path)?);
    }
    node.publish_token = cli.publish_token.clone();
    eprintln!(
        "broadcaster {} registering stream `{}`, chunks signed by {}",
        node.identity.peer_id,
        cli.name,
        node.signing_key
            .as_ref()
            .map(|k| k.verifying_key().to_string())
            .unwrap_or_default()
    );
    // What an operator allow-lists with `supervisor --publisher-key`.
    eprintln!(
        "broadcaster key fingerprint: {}",
        node.identity.key.fingerprint()
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
    if let Some(why) = publish_refusal(&summary.outcome) {
        let hint = match cli.publish_token {
            None => {
                "pass the supervisor's publish token with --publish-token TOKEN (or \
                     OWNSTREAM_PUBLISH_TOKEN); the supervisor prints it at start"
            }
            Some(_) => {
                "check the token given with --publish-token (or OWNSTREAM_PUBLISH_TOKEN): \
                        it is wrong, or granted for another stream name"
            }
        };
        anyhow::bail!("the supervisor refused to publish: {why}; {hint}");
    }
    eprintln!("broadcast finished: {}", summary.ending);
    if let Some(path) = &cli.stats {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if summary.outcome.is_failure() {
        anyhow::bail!("{}", summary.ending);
    }
    Ok(())
}
