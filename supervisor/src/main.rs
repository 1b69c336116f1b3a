//! `supervisor`: parses the command line, binds, prints how to connect, and serves until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use ownstream_core::admission::AdmissionConfig;
use ownstream_core::auth::DEFAULT_STEP_TIMEOUT_MS;
use ownstream_core::protocol::{IceServer, IceTransportPolicy, TopologyName};
use ownstream_core::publish::{parse_key_grant, parse_token_grant, KeyGrant, TokenGrant};
use ownstream_core::registry::JoinPacing;
use ownstream_supervisor::config::ClusterSettings;
use ownstream_supervisor::config::{parse_embed_origin, parse_ice_server, read_token_file, Config};
use std::path::PathBuf;

// The same allocator as `receiver` and `broadcaster` (see there): `--demo` broadcasts from this
// process, and the supervisor's own allocations are many and small.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Supervisor private key (PKCS#8 PEM). When omitted, the key kept in --data-dir is used
    /// (a 2048-bit one is made there the first time), so the fingerprint survives restarts.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Directory (created 0700) that keeps the supervisor's key (`supervisor-key.pem`, 0600).
    /// Default: $OWNSTREAM_DATA_DIR, else $XDG_STATE_HOME/ownstream, else
    /// ~/.local/state/ownstream.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Smallest RSA key a peer may authenticate with.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u16).range(512..=8192))]
    min_key_bits: u16,
    /// ICE server for peers: `stun:host:port`, or `turn:host:port;username=U;credential=C`. Repeatable.
    #[arg(long = "ice-server", value_parser = parse_ice_server)]
    ice_servers: Vec<IceServer>,
    /// Which ICE candidates every peer may use: `all`, or `relay` for TURN-relayed candidates
    /// only (needs a `turn:` --ice-server; no peer then learns another's address).
    #[arg(long, value_enum, default_value = "all")]
    ice_transport_policy: PolicyArg,
    /// An origin whose pages may show /embed/{name} in an iframe (`https://example.org`).
    /// Repeatable; without it any site may embed the player. Other pages are never framed.
    #[arg(long = "embed-origin", value_parser = parse_embed_origin)]
    embed_origins: Vec<String>,
    /// Most WebRTC edges being set up at once (viewers joining or moved); further joins wait in
    /// line, told their place. The window adapts between --min-edge-setups and this to how fast
    /// edges open. See `ownstream_core::registry::JoinPacing`.
    #[arg(long, default_value_t = JoinPacing::default().max_setups as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_edge_setups: u32,
    /// The pacing window never shrinks below this many set-ups at once.
    #[arg(long, default_value_t = JoinPacing::default().min_setups as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    min_edge_setups: u32,
    /// Most joins waiting in line for a set-up slot; further ones are refused (`busy`).
    #[arg(long, default_value_t = JoinPacing::default().max_queued as u32, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    max_queued_joins: u32,
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
    /// Each answer of a peer during the authentication handshake must come within this long (ms);
    /// a client that goes silent is closed then, with the reason.
    #[arg(long, default_value_t = DEFAULT_STEP_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(100..=10_000))]
    handshake_step_timeout_ms: u64,
    /// Connections in their authentication handshake at once, in all; more get HTTP 503.
    #[arg(long, default_value_t = AdmissionConfig::default().max_pending)]
    max_pending_handshakes: usize,
    /// Connections in their authentication handshake at once from one address (IPv6: one /64);
    /// more get HTTP 429.
    #[arg(long, default_value_t = AdmissionConfig::default().max_pending_per_addr)]
    max_pending_handshakes_per_addr: usize,
    /// Handshakes one address may start per second, sustained (also its challenge answers
    /// decrypted per second); more get HTTP 429 with Retry-After.
    #[arg(long, default_value_t = AdmissionConfig::default().attempts_per_sec)]
    handshakes_per_addr_per_sec: u32,
    /// Handshakes one address may start in a burst (and answers decrypted in a burst).
    #[arg(long, default_value_t = AdmissionConfig::default().attempts_burst)]
    handshake_burst_per_addr: u32,
    /// Challenge answers decrypted with the supervisor's private key per second, in all (bounds
    /// the RSA work anyone can cause, see SECURITY.md); answers beyond wait for their turn within
    /// the handshake's deadline.
    #[arg(long, default_value_t = AdmissionConfig::default().global_decrypts_per_sec)]
    decrypts_per_sec: u32,
    /// Publish token a broadcaster must present to go live: `TOKEN` for any stream, `NAME=TOKEN`
    /// for the stream NAME only (`*=TOKEN` when the token holds `=`); at least 16 characters.
    /// Repeatable. Without any publish token or --publisher-key, a random one is made and printed
    /// at start.
    #[arg(long = "publish-token", value_name = "[NAME=]TOKEN", env = "OWNSTREAM_PUBLISH_TOKEN",
          hide_env_values = true, value_parser = parse_token_grant)]
    publish_tokens: Vec<TokenGrant>,
    /// File of publish tokens, one per line as for --publish-token (`#` starts a comment).
    #[arg(long = "publish-token-file", value_name = "PATH")]
    publish_token_files: Vec<PathBuf>,
    /// Broadcaster key allowed to publish without a token: `SHA256:<hex>` (the fingerprint a
    /// broadcaster prints at start), or `NAME=SHA256:<hex>` for the stream NAME only. Repeatable.
    #[arg(long = "publisher-key", value_name = "[NAME=]SHA256:HEX", value_parser = parse_key_grant)]
    publisher_keys: Vec<KeyGrant>,
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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PolicyArg {
    All,
    Relay,
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
    let mut publish_tokens = cli.publish_tokens.clone();
    for path in &cli.publish_token_files {
        publish_tokens.extend(read_token_file(path)?);
    }
    let config = Config {
        listen: cli.listen.clone(),
        topology: match cli.topology {
            TopologyArg::Tree => TopologyName::Tree,
            TopologyArg::Chain => TopologyName::Chain,
        },
        fanout: cli.fanout as usize,
        key_path: cli.key.clone(),
        data_dir: Some(
            cli.data_dir
                .clone()
                .unwrap_or_else(ownstream_supervisor::keystore::default_data_dir),
        ),
        min_key_bits: cli.min_key_bits as usize,
        ice_servers: cli.ice_servers.clone(),
        ice_transport_policy: match cli.ice_transport_policy {
            PolicyArg::All => IceTransportPolicy::All,
            PolicyArg::Relay => IceTransportPolicy::Relay,
        },
        embed_origins: cli.embed_origins.clone(),
        heartbeat_timeout_ms: cli.heartbeat_timeout_ms,
        heartbeat_ms: (cli.heartbeat_timeout_ms / 3).max(100),
        tls_cert: cli.tls_cert.clone(),
        tls_key: cli.tls_key.clone(),
        admin_token: cli.admin_token.clone().unwrap_or_default(),
        handshake_step_timeout_ms: cli.handshake_step_timeout_ms,
        admission: AdmissionConfig {
            max_pending: cli.max_pending_handshakes,
            max_pending_per_addr: cli.max_pending_handshakes_per_addr,
            attempts_per_sec: cli.handshakes_per_addr_per_sec,
            attempts_burst: cli.handshake_burst_per_addr,
            decrypts_per_sec: cli.handshakes_per_addr_per_sec,
            decrypts_burst: cli.handshake_burst_per_addr,
            global_decrypts_per_sec: cli.decrypts_per_sec,
            ..AdmissionConfig::default()
        },
        join_pacing: JoinPacing {
            max_setups: cli.max_edge_setups as usize,
            min_setups: cli.min_edge_setups.min(cli.max_edge_setups) as usize,
            max_queued: cli.max_queued_joins as usize,
        },
        publish_tokens,
        publisher_keys: cli.publisher_keys.clone(),
        cluster: cli.cluster.clone().map(|redis_url| ClusterSettings {
            redis_url,
            advertise_url: cli.advertise_url.clone(),
            lease: Default::default(),
        }),
        ..Config::default()
    };
    let has_turn = config
        .ice_servers
        .iter()
        .any(|s| s.urls.iter().any(|u| u.starts_with("turn")) && s.credential.is_some());
    anyhow::ensure!(
        config.ice_transport_policy == IceTransportPolicy::All || has_turn,
        "--ice-transport-policy relay needs a TURN server: add \
         --ice-server 'turn:HOST:PORT;username=U;credential=C'"
    );
    let (tokens, keys) = (config.publish_tokens.len(), config.publisher_keys.len());
    let config_dir = config.data_dir.clone();
    let mut bound = ownstream_supervisor::bind(config).await?;
    let demo_token = cli.demo.then(|| bound.internal_publish_token(demo::STREAM));
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
    match bound.publish_token() {
        Some(token) => println!(
            "publish token: {token}  (broadcasters: --publish-token or OWNSTREAM_PUBLISH_TOKEN; \
             the /broadcast page asks for it)"
        ),
        None => println!(
            "publish credentials: {tokens} token(s) and {keys} broadcaster key(s), the ones you gave"
        ),
    }
    if let (None, Some(dir)) = (&cli.key, &config_dir) {
        println!(
            "supervisor key kept in {}",
            dir.join(ownstream_supervisor::keystore::KEY_FILE).display()
        );
    }
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
    let demo = if let Some(token) = demo_token {
        let source = demo::source(cli.demo_clip.as_deref())?;
        Some(tokio::spawn(demo::run(
            peer_addr,
            token,
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
