//! The ownstream supervisor: an axum HTTP + WebSocket server around the core's handshake and registry.
//!
//! One task (the hub, [`hub`]) owns the [`ownstream_core::registry::Registry`]; each WebSocket
//! connection runs its own handshake state machine and, once authenticated, only forwards messages to
//! the hub and writes what the hub sends back. HTTP handlers ask the hub for snapshots.

pub mod config;
pub mod http;
pub mod hub;
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
    state: http::AppState,
    hub: hub::HubTask,
}

impl Bound {
    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        hub.abort();
        Ok(())
    }
}

/// Loads or generates the supervisor key and binds the listener.
pub async fn bind(config: Config) -> anyhow::Result<Bound> {
    let identity = Arc::new(load_identity(&config)?);
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (hub, handle) = hub::HubTask::new(&config);
    let state = http::AppState {
        identity,
        config: Arc::new(config),
        hub: handle,
    };
    Ok(Bound {
        listener,
        state,
        hub,
    })
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
