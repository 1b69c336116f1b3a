//! `supervisor`: parses the command line, binds, prints how to connect, and serves until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use ownstream_core::protocol::{IceServer, TopologyName};
use ownstream_supervisor::config::{parse_ice_server, ClusterSettings, Config};
use std::path::PathBuf;

mod demo;

/// The ownstream supervisor: authenticates peers, arranges each stream's viewers into a tree or a
/// chain, relays WebRTC signaling between neighbours and repairs the tree when a peer fails.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Address to listen on (HTTP API and WebSocket at /ws).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How viewers are arranged.
    #[arg(long, value_enum, default_value = "tree")]
    topology: TopologyArg,
    /// Children per node in a tree (2 = the paper's binary tree).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    fanout: u16,
    /// Supervisor private key (PKCS#8 PEM); a fresh 2048-bit key is generated when omitted.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Smallest RSA key a peer may authenticate with.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u16).range(512..=8192))]
    min_key_bits: u16,
    /// ICE server for peers: `stun:host:port`, or `turn:host:port;username=U;credential=C`. Repeatable.
    #[arg(long = "ice-server", value_parser = parse_ice_server)]
    ice_servers: Vec<IceServer>,
    /// A peer silent for this long (ms) is treated as failed.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(500..=60_000))]
    heartbeat_timeout_ms: u64,
    /// Serve HTTPS and WSS with this certificate chain (PEM); needs --tls-key. Browsers allow
    /// WebCrypto and WebRTC only on https or localhost, so viewers on other machines need this.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Token the monitor (/monitor) and its API require (at least 16 characters). Without it, a
    /// random token is made and printed at start.
    #[arg(long, env = "OWNSTREAM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Share the streams with other supervisors through this Redis (`redis://host:port[/db]`):
    /// each stream is served by one of them at a time, and peers are sent to it.
    #[arg(long, value_name = "REDIS_URL")]
    cluster: Option<String>,
    /// With --cluster: the WebSocket URL peers use to reach this supervisor (default: ws://
    /// or wss:// on the address it listens on, which must then not be 0.0.0.0).
    #[arg(long, requires = "cluster")]
    advertise_url: Option<String>,
    /// Also broadcast a clip on a loop as the stream `demo` (the bundled sample unless --demo-clip).
    #[arg(long)]
    demo: bool,
    /// WebM file for --demo instead of the bundled sample.
    #[arg(long, requires = "demo")]
    demo_clip: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TopologyArg {
    Tree,
    Chain,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ownstream_peer::cli::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,webrtc=error,rtc=error,rtc_ice=error".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = Config {
        listen: cli.listen.clone(),
        topology: match cli.topology {
            TopologyArg::Tree => TopologyName::Tree,
            TopologyArg::Chain => TopologyName::Chain,
        },
        fanout: cli.fanout as usize,
        key_path: cli.key.clone(),
        min_key_bits: cli.min_key_bits as usize,
        ice_servers: cli.ice_servers.clone(),
        heartbeat_timeout_ms: cli.heartbeat_timeout_ms,
        heartbeat_ms: (cli.heartbeat_timeout_ms / 3).max(100),
        tls_cert: cli.tls_cert.clone(),
        tls_key: cli.tls_key.clone(),
        admin_token: cli.admin_token.clone().unwrap_or_default(),
        cluster: cli.cluster.clone().map(|redis_url| ClusterSettings {
            redis_url,
            advertise_url: cli.advertise_url.clone(),
            lease: Default::default(),
        }),
        ..Config::default()
    };
    let bound = ownstream_supervisor::bind(config).await?;
    let addr = bound.local_addr().context("no local address")?;
    let (http, ws) = if bound.is_tls() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("supervisor listening on {http}://{addr}  (WebSocket: {ws}://{addr}/ws)");
    // Peers on this machine (and the demo broadcaster) use a plain loopback port when TLS is on.
    let peer_addr = bound.plain_local_addr().unwrap_or(addr);
    if bound.is_tls() {
        println!("plain WebSocket for peers on this machine: ws://{peer_addr}/ws");
    }
    println!("supervisor key fingerprint: {}", bound.fingerprint());
    let page = format!("{http}://{}", browser_host(addr));
    if cli.demo {
        println!("watch the demo in a browser: {page}/watch/{}", demo::STREAM);
    }
    println!("live streams: {page}/");
    match cli.admin_token {
        Some(_) => println!("monitor: {page}/monitor  (admin token: the one you gave)"),
        None => println!(
            "monitor: {page}/monitor  (admin token: {})",
            bound.admin_token()
        ),
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(bound.serve(wait_true(stop_rx.clone())));
    let demo = if cli.demo {
        let source = demo::source(cli.demo_clip.as_deref())?;
        Some(tokio::spawn(demo::run(
            peer_addr,
            source,
            wait_true(stop_rx),
        )))
    } else {
        None
    };
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Some(demo) = demo {
        let _ = demo.await;
    }
    server.await.context("server task failed")?
}

/// `localhost` for loopback and unspecified addresses: browsers treat only it (not 0.0.0.0) as a
/// secure context without TLS.
fn browser_host(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

async fn wait_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
