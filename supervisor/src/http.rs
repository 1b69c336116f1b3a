//! HTTP routes: the WebSocket endpoint and the JSON API.

use crate::config::Config;
use crate::hub::HubHandle;
use crate::monitor;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ownstream_core::auth::Identity;
use ownstream_core::protocol::{PeerStats, MAX_MESSAGE_LEN};
use serde::Serialize;
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

async fn ws_upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(MAX_MESSAGE_LEN)
        .max_frame_size(MAX_MESSAGE_LEN)
        .on_upgrade(move |socket| crate::ws::serve_socket(socket, state))
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
