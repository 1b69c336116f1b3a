//! Supervisor settings, shared by the CLI and by tests that start a supervisor in-process.

use anyhow::Context;
use ownstream_core::admission::AdmissionConfig;
use ownstream_core::auth::DEFAULT_STEP_TIMEOUT_MS;
use ownstream_core::protocol::{IceServer, IceTransportPolicy, TopologyName};
use ownstream_core::publish::parse_token_file;
use ownstream_core::publish::{KeyGrant, TokenGrant};
use ownstream_core::registry::JoinPacing;
use std::path::{Path, PathBuf};

/// Everything the supervisor needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` to listen on.
    pub listen: String,
    /// Tree or chain.
    pub topology: TopologyName,
    /// Children per node in a tree.
    pub fanout: usize,
    /// PKCS#8 PEM key file; when absent, the key kept in `data_dir` (made there the first time).
    pub key_path: Option<PathBuf>,
    /// Directory that keeps the supervisor's key across restarts; `None` (and no `key_path`):
    /// a fresh key for this run only (tests that start a supervisor in-process).
    pub data_dir: Option<PathBuf>,
    /// Size of a generated supervisor key.
    pub key_bits: usize,
    /// Smallest peer key accepted.
    pub min_key_bits: usize,
    /// ICE servers handed to peers.
    pub ice_servers: Vec<IceServer>,
    /// Which candidates peers may use (`--ice-transport-policy relay`: TURN only).
    pub ice_transport_policy: IceTransportPolicy,
    /// Origins whose pages may frame `/embed/{name}` (`--embed-origin`); empty: any.
    pub embed_origins: Vec<String>,
    /// A peer silent this long is failed.
    pub heartbeat_timeout_ms: u64,
    /// Heartbeat interval peers are told to keep.
    pub heartbeat_ms: u64,
    /// Deadline for the authentication handshake.
    pub handshake_timeout_ms: u64,
    /// Deadline for each answer of a peer during the handshake.
    pub handshake_step_timeout_ms: u64,
    /// Caps and rates for connections that have not finished the handshake.
    pub admission: AdmissionConfig,
    /// How many edges may be set up at once, how many joins may wait for one.
    pub join_pacing: JoinPacing,
    /// Serve HTTPS/WSS with this certificate chain (PEM) and `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Token the monitor and its API require; empty: a random one is made at start.
    pub admin_token: String,
    /// Publish tokens broadcasters must present (`--publish-token`); with none and no
    /// `publisher_keys`, a random one is made at start (see `Bound::publish_token`).
    pub publish_tokens: Vec<TokenGrant>,
    /// Broadcaster keys allowed to publish without a token (`--publisher-key`).
    pub publisher_keys: Vec<KeyGrant>,
    /// Several supervisors sharing the streams through Redis (`--cluster`); none: alone.
    pub cluster: Option<ClusterSettings>,
}

/// `--cluster` and `--advertise-url`.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// The WebSocket URL peers use to reach this supervisor; derived from the bound address
    /// when absent.
    pub advertise_url: Option<String>,
    /// Lease timing (the defaults are justified in `ownstream_core::cluster`).
    pub lease: ownstream_core::cluster::ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            topology: TopologyName::Tree,
            fanout: 2,
            key_path: None,
            data_dir: None,
            key_bits: 2048,
            min_key_bits: 2048,
            ice_servers: Vec::new(),
            ice_transport_policy: IceTransportPolicy::All,
            embed_origins: Vec::new(),
            heartbeat_timeout_ms: 3000,
            heartbeat_ms: 1000,
            handshake_timeout_ms: 10_000,
            handshake_step_timeout_ms: DEFAULT_STEP_TIMEOUT_MS,
            admission: AdmissionConfig::default(),
            join_pacing: JoinPacing::default(),
            tls_cert: None,
            tls_key: None,
            admin_token: String::new(),
            publish_tokens: Vec::new(),
            publisher_keys: Vec::new(),
            cluster: None,
        }
    }
}

/// Reads a `--publish-token-file`: one token per line, `TOKEN` or `NAME=TOKEN` as for
/// `--publish-token`; blank lines and `#` comments are skipped.
pub fn read_token_file(path: &Path) -> anyhow::Result<Vec<TokenGrant>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the publish token file {}", path.display()))?;
    parse_token_file(&text).with_context(|| format!("in the publish token file {}", path.display()))
}

/// Parses `--ice-server` values: `URL` or `URL;username=U;credential=C`.
pub fn parse_ice_server(text: &str) -> Result<IceServer, String> {
    let mut parts = text.split(';');
    let url = parts.next().unwrap_or_default().trim().to_string();
    if !(url.starts_with("stun:") || url.starts_with("turn:") || url.starts_with("turns:")) {
        return Err(format!("`{url}` is not a stun:, turn: or turns: URL"));
    }
    let mut server = IceServer {
        urls: vec![url],
        username: None,
        credential: None,
    };
    for part in parts {
        match part.split_once('=') {
            Some(("username", v)) => server.username = Some(v.to_string()),
            Some(("credential", v)) => server.credential = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "unknown ICE server option `{part}` (use username=..;credential=..)"
                ))
            }
        }
    }
    Ok(server)
}

/// Parses `--embed-origin`: a page origin (`https://example.org`, `http://localhost:3000`) as a
/// `frame-ancestors` source; anything that could end the directive or start another is refused.
pub fn parse_embed_origin(text: &str) -> Result<String, String> {
    let t = text.trim().trim_end_matches('/');
    let (scheme, host) = t
        .split_once("://")
        .ok_or_else(|| format!("`{text}` is not an origin like https://example.org"))?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:*[]".contains(&b));
    if !(scheme == "http" || scheme == "https") || !host_ok {
        return Err(format!(
            "`{text}` is not an origin like https://example.org or http://localhost:3000"
        ));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_origins_are_plain_origins() {
        assert_eq!(
            parse_embed_origin("https://example.org/").unwrap(),
            "https://example.org"
        );
        assert!(parse_embed_origin("http://localhost:3000").is_ok());
        assert!(parse_embed_origin("example.org").is_err());
        assert!(parse_embed_origin("https://a.org; script-src *").is_err());
        assert!(parse_embed_origin("javascript://x").is_err());
    }

    #[test]
    fn ice_servers_parse_with_credentials() {
        let s = parse_ice_server("turn:turn.example.org:3478;username=u;credential=p").unwrap();
        assert_eq!(s.urls, vec!["turn:turn.example.org:3478".to_string()]);
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.credential.as_deref(), Some("p"));
        assert!(parse_ice_server("http://x").is_err());
        assert!(parse_ice_server("stun:x;pw=1").is_err());
    }
}
