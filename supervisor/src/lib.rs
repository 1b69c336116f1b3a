//! The ownstream supervisor: an axum HTTP + WebSocket server around the core's handshake and registry.
//!
//! One task (the hub, [`hub`]) owns the [`ownstream_core::registry::Registry`]; each WebSocket
//! connection runs its own handshake state machine and, once authenticated, only forwards messages to
//! the hub and writes what the hub sends back. HTTP handlers ask the hub for snapshots.

pub mod assets;
pub mod cluster;
pub mod config;
pub mod gate;
pub mod http;
pub mod hub;
pub mod keystore;
pub mod metrics;
pub mod monitor;
pub mod ws;

use anyhow::Context;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
pub use config::Config;
use ownstream_core::auth::Identity;
use ownstream_core::publish::{Scope, TokenGrant};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A bound, not yet serving supervisor; lets callers learn the port before serving (tests use port 0).
pub struct Bound {
    listener: TcpListener,
    /// With TLS: a plain listener on loopback for peers on this machine (and the demo).
    local: Option<TcpListener>,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    state: http::AppState,
    hub: hub::HubTask,
    /// The publish token made at start when the operator configured none.
    publish_token: Option<String>,
}

impl Bound {
    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the main listener speaks TLS (https/wss).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The plain loopback listener's address, when TLS is on.
    pub fn plain_local_addr(&self) -> Option<SocketAddr> {
        self.local.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The admin token that the monitor and its API require.
    pub fn admin_token(&self) -> &str {
        &self.state.config.admin_token
    }

    /// The publish token made at start because no publish credential was configured (printed
    /// for the operator); `None` when the operator gave tokens or keys.
    pub fn publish_token(&self) -> Option<&str> {
        self.publish_token.as_deref()
    }

    /// A fresh token that allows publishing `stream` only, for a broadcaster that runs inside this
    /// process (`--demo`): it needs no step from the operator and opens nothing else.
    pub fn internal_publish_token(&mut self, stream: &str) -> String {
        let token = random_token();
        self.hub.allow_publish_token(TokenGrant {
            scope: Scope::Stream(stream.to_string()),
            token: token.clone(),
        });
        token
    }

    /// The supervisor key's fingerprint, for peers to pin.
    pub fn fingerprint(&self) -> String {
        self.state.identity.fingerprint()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let hub = tokio::spawn(self.hub.run());
        let app = http::router(self.state);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Some(local) = self.local {
            let (app, rx) = (app.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let _ = axum::serve(local, with_addr(app))
                    .with_graceful_shutdown(stopped(rx))
                    .await;
            });
        }
        let result = match self.tls {
            None => axum::serve(self.listener, with_addr(app))
                .with_graceful_shutdown(stopped(stop_rx))
                .await
                .context("HTTP server failed"),
            Some(tls) => serve_tls(self.listener, tls, app, stopped(stop_rx)).await,
        };
        hub.abort();
        result
    }
}

async fn serve_tls(
    listener: TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
    });
    let listener = listener
        .into_std()
        .context("cannot hand the listener to the TLS server")?;
    axum_server::from_tcp_rustls(listener, tls)
        .context("cannot start the TLS server")?
        .handle(handle)
        .serve(with_addr(app))
        .await
        .context("HTTPS server failed")
}

/// The router as a service that knows each connection's source address (admission counts by it).
fn with_addr(app: axum::Router) -> IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr> {
    app.into_make_service_with_connect_info::<SocketAddr>()
}

async fn load_tls(
    config: &Config,
) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    // webrtc already links ring; use it for rustls too instead of a second crypto library.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "cannot load the TLS certificate {} and key {} (PEM expected)",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Some(tls))
}

/// Loads or generates the supervisor key and binds the listener. An empty admin token is replaced
/// by a fresh random one (see [`Bound::admin_token`]), and so is a missing publish credential (see
/// [`Bound::publish_token`]): nobody publishes without one.
pub async fn bind(mut config: Config) -> anyhow::Result<Bound> {
    if config.admin_token.is_empty() {
        config.admin_token = random_token();
    }
    let publish_token = if config.publish_tokens.is_empty() && config.publisher_keys.is_empty() {
        // Kept in the data directory like the key, so a restart does not lock out the
        // broadcasters that were given it.
        let token = match &config.data_dir {
            Some(dir) => keystore::load_or_create_token(dir, &random_token())?,
            None => random_token(),
        };
        config.publish_tokens.push(TokenGrant {
            scope: Scope::AnyStream,
            token: token.clone(),
        });
        Some(token)
    } else {
        None
    };
    anyhow::ensure!(
        config.admin_token.len() >= 16,
        "the admin token must be at least 16 characters (it guards the monitor's kill switches)"
    );
    let identity = Arc::new(load_identity(&config)?);
    let listener = listen(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let tls = load_tls(&config).await?;
    let local = match tls {
        Some(_) => Some(
            TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot bind the loopback listener")?,
        ),
        None => None,
    };
    let (mut hub, handle) = hub::HubTask::new(&config);
    if let Some(settings) = &config.cluster {
        let url = advertise_url(settings, listener.local_addr()?, tls.is_some())?;
        let me = uuid::Uuid::new_v4().to_string();
        let store =
            cluster::Store::connect(&settings.redis_url, me, url, settings.lease.lease_ms).await?;
        tracing::info!(id = store.id(), url = store.url(), "joined the cluster");
        hub.join_cluster(store, settings.lease);
    }
    let gate = gate::Gate::new(config.admission);
    let state = http::AppState {
        identity,
        config: Arc::new(config),
        gate,
        hub: handle,
        metrics: Arc::default(),
    };
    Ok(Bound {
        listener,
        local,
        tls,
        state,
        hub,
        publish_token,
    })
}

/// Connections the kernel queues before the server accepts them. tokio's `bind` asks for 1024; under
/// a flood of connection attempts a short queue overflows and honest clients' SYNs are dropped
/// (each drop costs them a 1, 2, 4 s retransmission). Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The URL other supervisors send this one's peers to: `--advertise-url`, or the bound address.
fn advertise_url(
    settings: &config::ClusterSettings,
    bound: SocketAddr,
    tls: bool,
) -> anyhow::Result<String> {
    if let Some(url) = &settings.advertise_url {
        anyhow::ensure!(
            url.starts_with("ws://") || url.starts_with("wss://"),
            "--advertise-url must be a ws:// or wss:// URL, not {url}"
        );
        return Ok(url.clone());
    }
    anyhow::ensure!(
        !bound.ip().is_unspecified(),
        "listening on {bound}: give --advertise-url, the address peers on other machines reach \
         this supervisor at"
    );
    let scheme = if tls { "wss" } else { "ws" };
    Ok(format!("{scheme}://{bound}/ws"))
}

/// 128 random bits, hex.
fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn load_identity(config: &Config) -> anyhow::Result<Identity> {
    match &config.key_path {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read key file {}", path.display()))?;
            Identity::from_pkcs8_pem(&pem)
                .with_context(|| format!("{} is not a PKCS#8 PEM RSA private key", path.display()))
        }
        None => match &config.data_dir {
            Some(dir) => keystore::load_or_create(dir, config.key_bits),
            None => Identity::generate(&mut rand::rng(), config.key_bits)
                .context("cannot generate the supervisor key"),
        },
    }
}
