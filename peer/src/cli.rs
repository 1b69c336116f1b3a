//! Command-line pieces shared by the `broadcaster` and `receiver` binaries.

use crate::edge::EdgeConfig;
use crate::node::{Faults, NodeConfig};
use crate::signaling::PeerIdentity;
use anyhow::Context;
use ownstream_core::auth::{Identity, DEFAULT_KEY_BITS};
use ownstream_core::frame::SigningKey;
use ownstream_core::ids::PeerId;
use ownstream_core::player::PlayerConfig;
use ownstream_core::protocol::ComponentType;
use ownstream_core::relay::RelayConfig;
use std::net::IpAddr;
use std::sync::Arc;

/// Options every peer takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Supervisor WebSocket URL. Repeatable: the peer moves to the next URL after each failed
    /// attempt and each lost connection (it also adds the ones a supervisor advertises).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub supervisor: Vec<String>,
    /// Expected supervisor key fingerprint (`SHA256:<hex>`, printed by the supervisor at start).
    #[arg(long, value_parser = parse_fingerprint)]
    pub supervisor_fingerprint: Option<String>,
    /// Extra CA certificate(s), PEM, to trust for a `wss://` supervisor (e.g. its self-signed cert).
    #[arg(long)]
    pub supervisor_ca: Option<std::path::PathBuf>,
    /// Size of this peer's fresh RSA key.
    #[arg(long, default_value_t = DEFAULT_KEY_BITS as u16, value_parser = clap::value_parser!(u16).range(1024..=8192))]
    pub key_bits: u16,
    /// Local IP address(es) to gather WebRTC candidates on. Repeatable. Default: every interface.
    #[arg(long = "webrtc-ip")]
    pub webrtc_ips: Vec<IpAddr>,
    /// Use relayed (TURN) ICE candidates only, whatever the supervisor advertises: every byte
    /// goes through the TURN server the supervisor names (`--ice-server turn:...`).
    #[arg(long)]
    pub ice_relay_only: bool,
    /// Pace each child's sends at this many bits per second (backlogs after a join or repair too).
    #[arg(long, default_value_t = 8_000_000)]
    pub pace_bps: u64,
}

impl CommonArgs {
    /// Generates this peer's key and builds a node configuration.
    pub fn node_config(&self, component: ComponentType) -> anyhow::Result<NodeConfig> {
        let key = Identity::generate(&mut rand::rng(), self.key_bits as usize)
            .context("cannot generate an RSA key")?;
        Ok(self.node_config_with_key(component, key))
    }

    /// Builds a node configuration around a key this peer already has (a broadcaster's `--key`).
    pub fn node_config_with_key(&self, component: ComponentType, key: Identity) -> NodeConfig {
        let mut config = NodeConfig::with_key(&self.supervisor[0], component, key);
        config
            .supervisor_urls
            .extend(self.supervisor[1..].iter().cloned());
        config.identity.pinned_fingerprint = self.supervisor_fingerprint.clone();
        config.identity.supervisor_ca = self.supervisor_ca.clone();
        if !self.webrtc_ips.is_empty() {
            config.edge.bind_ips = self.webrtc_ips.clone();
        }
        config.edge.relay_only = self.ice_relay_only;
        config.relay.rate_bytes_per_s = (self.pace_bps / 8).max(1);
        config
    }
}

impl NodeConfig {
    /// Defaults for a peer of `component` with a fresh `key_bits`-bit RSA key and a random id.
    pub fn generate(
        supervisor_url: &str,
        component: ComponentType,
        key_bits: usize,
    ) -> anyhow::Result<Self> {
        let key =
            Identity::generate(&mut rand::rng(), key_bits).context("cannot generate an RSA key")?;
        Ok(Self::with_key(supervisor_url, component, key))
    }

    /// Defaults for a peer of `component` with the key `key` and a random id.
    pub fn with_key(supervisor_url: &str, component: ComponentType, key: Identity) -> Self {
        Self {
            supervisor_urls: vec![supervisor_url.to_string()],
            identity: PeerIdentity {
                peer_id: PeerId::random(),
                key: Arc::new(key),
                component,
                pinned_fingerprint: None,
                supervisor_ca: None,
            },
            edge: EdgeConfig::default(),
            verify_fraction: 1.0,
            relay: RelayConfig::default(),
            player: PlayerConfig::default(),
            faults: Faults::default(),
            wait_viewers: 0,
            // A fresh key per run; `broadcaster --signing-key` replaces it with a kept one.
            signing_key: (component == ComponentType::Broadcaster)
                .then(|| SigningKey::random(&mut rand::rng())),
            publish_token: None,
            can_relay: true,
            latency: Default::default(),
        }
    }
}

/// Accepts `SHA256:<64 hex digits>` (case-insensitive, prefix optional), as printed by the supervisor.
fn parse_fingerprint(text: &str) -> Result<String, String> {
    let normalized = ownstream_core::auth::normalize_fingerprint(text);
    let hex = &normalized["SHA256:".len()..];
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(normalized)
    } else {
        Err("expected SHA256: followed by 64 hex digits, as the supervisor prints at start".into())
    }
}

/// Turns a binary's result into its exit code, printing an error as one plain line of causes
/// (`error: cannot reach ...: connection refused`) instead of a debug dump.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,webrtc=error,rtc=error,rtc_ice=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
