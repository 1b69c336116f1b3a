//! The ownstream supervisor: an axum HTTP + WebSocket server around the core's handshake and registry.
//!
//! One task (the hub, [`hub`]) owns the [`ownstream_core::registry::Registry`]; each WebSocket
//! connection runs its own handshake state machine and, once authenticated, only forwards messages to
//! the hub and writes what the hub sends back. HTTP handlers ask the hub for snapshots.

pub mod assets;
pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod monitor;
pub mod ws;

use anyhow::Context;
pub use config::Config;
use ownstream_core::auth::Identity;
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
                let _ = axum::serve(local, app)
                    .with_graceful_shutdown(stopped(rx))
                    .await;
            });
        }
        let result = match self.tls {
            None => axum::serve(self.listener, app)
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
        .serve(app.into_make_service())
        .await
        .context("HTTPS server failed")
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
/// by a fresh random one (see [`Bound::admin_token`]).
pub async fn bind(mut config: Config) -> anyhow::Result<Bound> {
    if config.admin_token.is_empty() {
        config.admin_token = random_token();
    }
    anyhow::ensure!(
        config.admin_token.len() >= 16,
        "the admin token must be at least 16 characters (it guards the monitor's kill switches)"
    );
    let identity = Arc::new(load_identity(&config)?);
    let listener = TcpListener::bind(&config.listen)
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
    let state = http::AppState {
        identity,
        config: Arc::new(config),
        hub: handle,
        metrics: Arc::default(),
    };
    Ok(Bound {
        listener,
        local,
        tls,
        state,
        hub,
    })
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
        None => Identity::generate(&mut rand::rng(), config.key_bits)
            .context("cannot generate the supervisor key"),
    }
}
