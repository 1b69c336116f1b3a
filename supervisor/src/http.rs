//! HTTP routes: the WebSocket endpoint and the JSON API.

use crate::config::Config;
use crate::hub::HubHandle;
use crate::monitor;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ownstream_core::admission::Refusal;
use ownstream_core::auth::Identity;
use ownstream_core::protocol::{PeerStats, MAX_MESSAGE_LEN};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The supervisor's key pair.
    pub identity: Arc<Identity>,
    /// Settings.
    pub config: Arc<Config>,
    /// The hub.
    pub hub: HubHandle,
    /// Totals the shell counts itself.
    pub metrics: Arc<crate::metrics::ShellMetrics>,
    /// Admission of connections that have not finished the handshake.
    pub gate: crate::gate::Gate,
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/streams", get(list_streams))
        .route("/api/streams/{name}/tree", get(stream_tree))
        .route("/api/streams/{name}/stats", get(stream_stats))
        .route("/", get(crate::assets::index))
        .route("/watch/{name}", get(crate::assets::watch))
        .route("/embed/{name}", get(crate::assets::embed))
        .route("/broadcast", get(crate::assets::broadcast))
        .route("/monitor", get(crate::assets::monitor))
        .route("/metrics", get(crate::metrics::metrics))
        .route(
            "/api/streams/{name}/failures",
            post(monitor::start_run).delete(monitor::stop_run),
        )
        .route("/api/streams/{name}/runs", get(monitor::runs))
        .route("/api/peers/{id}/kill", post(monitor::kill))
        .route("/api/monitor/events", get(monitor::events))
        .layer(DefaultBodyLimit::max(monitor::MAX_BODY))
        .route("/assets/{*path}", get(crate::assets::file))
        .with_state(state)
}

/// What tungstenite reads from the socket at a time. Its default, 128 KiB, is allocated for every
/// connection up front and was most of the ~140 KB an idle socket cost; signaling messages are
/// small, and a larger one still arrives, in more reads.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Outgoing bytes gathered before a write; only a threshold, the buffer grows as needed.
const WS_WRITE_BUFFER: usize = 4 * 1024;

/// Admission is decided before the upgrade, so a refused client gets a plain HTTP answer (429 or
/// 503, `Retry-After` when known, the reason in the body) and costs no WebSocket.
async fn ws_upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> Response {
    let pending = match state.gate.admit(from.ip()) {
        Ok(pending) => pending,
        Err(refusal) => return refused(&refusal, from),
    };
    ws.max_message_size(MAX_MESSAGE_LEN)
        .max_frame_size(MAX_MESSAGE_LEN)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| crate::ws::serve_socket(socket, state, pending))
}

fn refused(refusal: &Refusal, from: SocketAddr) -> Response {
    tracing::debug!(%from, %refusal, "connection refused before the handshake");
    let status = match refusal {
        Refusal::Busy | Refusal::TooManyAddrs => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::TOO_MANY_REQUESTS,
    };
    // Retry-After is in whole seconds; round up so a client that obeys it is admitted.
    let retry = refusal
        .retry_after_ms()
        .unwrap_or(1000)
        .div_ceil(1000)
        .max(1);
    // `Connection: close` ends the TCP connection with the answer: a refused client keeps nothing.
    (
        status,
        [
            (header::RETRY_AFTER, retry.to_string()),
            (header::CONNECTION, "close".to_string()),
        ],
        refusal.to_string(),
    )
        .into_response()
}

#[derive(Serialize)]
struct StreamEntry {
    #[serde(flatten)]
    info: ownstream_core::protocol::StreamInfo,
    /// When the stream went live, Unix time in milliseconds (unknown for a stream another
    /// supervisor of the cluster serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    live_since_unix_ms: Option<u64>,
}

async fn list_streams(State(state): State<AppState>) -> Response {
    let answer = state
        .hub
        .query(|reg, now| {
            let unix_now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            reg.streams()
                .into_iter()
                .map(|info| {
                    let age = now.saturating_sub(reg.started_at_ms(&info.name).unwrap_or(now));
                    StreamEntry {
                        info,
                        live_since_unix_ms: Some(unix_now.saturating_sub(age)),
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
    let Some(mut streams) = answer else {
        return unavailable();
    };
    let remote = state.hub.remote_streams().await.into_iter();
    streams.extend(remote.map(|info| StreamEntry {
        info,
        live_since_unix_ms: None,
    }));
    Json(streams).into_response()
}

async fn stream_tree(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.hub.query(move |reg, _| reg.tree(&name)).await {
        Some(Some(tree)) => Json(tree).into_response(),
        Some(None) => not_found(),
        None => unavailable(),
    }
}

#[derive(Serialize)]
struct NodeStats {
    id: ownstream_core::ids::PeerId,
    parent: Option<ownstream_core::ids::PeerId>,
    depth: usize,
    stats: Option<PeerStats>,
}

async fn stream_stats(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let answer = state
        .hub
        .query(move |reg, _| {
            let tree = reg.tree(&name)?;
            let nodes: Vec<NodeStats> = tree
                .nodes
                .into_iter()
                .map(|n| NodeStats {
                    id: n.id,
                    parent: n.parent,
                    depth: n.depth,
                    stats: reg.stats(n.id).cloned(),
                })
                .collect();
            Some(nodes)
        })
        .await;
    match answer {
        Some(Some(nodes)) => Json(nodes).into_response(),
        Some(None) => not_found(),
        None => unavailable(),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "no live stream with that name"})),
    )
        .into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "supervisor shutting down").into_response()
}
