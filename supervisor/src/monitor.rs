//! The operator's API behind the monitor page: failure runs, kills, and a live feed of a stream's
//! tree, stats and runs. Every route needs the admin token (`Authorization: Bearer TOKEN`,
//! compared in constant time) and answers 401 without it; bad input is a 400 whose JSON `error`
//! says what is wrong; bodies are bounded.
//!
//! The live feed is Server-Sent Events on `GET /api/monitor/events?stream=NAME`. The page reads it
//! with `fetch`, not `EventSource`, because only `fetch` can send the token in a header (a token in
//! a URL ends up in logs and history). A snapshot goes out when it changed, at most every
//! [`FEED_INTERVAL`], so hundreds of nodes cost one message per interval, not one per event.

use crate::http::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ownstream_core::failures::FailureRequest;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::PeerStats;
use ownstream_core::registry::RunError;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How often the live feed looks for changes.
pub const FEED_INTERVAL: Duration = Duration::from_millis(500);
/// Largest JSON body a monitor route accepts.
pub const MAX_BODY: usize = 16 * 1024;

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = Json(serde_json::json!({ "error": message.into() }));
    (status, body).into_response()
}

/// Checks the admin token: `None` if it is right, else the 401 to send.
pub fn refusal(headers: &HeaderMap, state: &AppState) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = state.config.admin_token.as_bytes();
    // ct_eq is constant time for equal lengths; a length mismatch is refused without comparing.
    if given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected)) {
        return None;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin token: send `Authorization: Bearer TOKEN` (the supervisor prints \
         its token at start, or takes one with --admin-token)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(response)
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "supervisor shutting down")
}

fn run_error(e: RunError) -> Response {
    let status = match e {
        RunError::NoStream(_) | RunError::NoRun => StatusCode::NOT_FOUND,
        RunError::Busy(_) => StatusCode::CONFLICT,
    };
    error(status, e.to_string())
}

/// `POST /api/streams/{name}/failures`: starts a failure run.
pub async fn start_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<FailureRequest>, JsonRejection>,
) -> Response {
    if let Some(r) = refusal(&headers, &state) {
        return r;
    }
    let request = match body {
        Ok(Json(r)) => r,
        // Bad input is a 400 (axum says 422 for well-formed JSON of the wrong shape); a body over
        // the limit stays a 413 and a missing JSON content type a 415.
        Err(e) => {
            let status = match e.status() {
                StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                other => other,
            };
            return error(status, e.body_text());
        }
    };
    let spec = match request.validate(rand::random()) {
        Ok(spec) => spec,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let seed = spec.seed;
    let started = state
        .hub
        .query(move |reg, now| reg.start_run(now, &name, spec))
        .await;
    match started {
        Some(Ok(id)) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "id": id, "seed": seed })),
        )
            .into_response(),
        Some(Err(e)) => run_error(e),
        None => unavailable(),
    }
}

/// `DELETE /api/streams/{name}/failures`: stops the stream's run.
pub async fn stop_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = refusal(&headers, &state) {
        return r;
    }
    match state
        .hub
        .query(move |reg, now| reg.stop_run(now, &name))
        .await
    {
        Some(Ok(id)) => Json(serde_json::json!({ "id": id, "state": "stopped" })).into_response(),
        Some(Err(e)) => run_error(e),
        None => unavailable(),
    }
}

/// `GET /api/streams/{name}/runs`: every run of the stream with its metrics.
pub async fn runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = refusal(&headers, &state) {
        return r;
    }
    match state.hub.query(move |reg, now| reg.runs(now, &name)).await {
        Some(runs) => Json(runs).into_response(),
        None => unavailable(),
    }
}

/// Body of `POST /api/peers/{id}/kill`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// The peer joins again as a new viewer (default true, as in the paper).
    #[serde(default = "yes")]
    rejoin: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/peers/{id}/kill`: kills one peer.
pub async fn kill(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refusal(&headers, &state) {
        return r;
    }
    let Ok(peer) = id.parse::<uuid::Uuid>().map(PeerId) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a peer id (a UUID)"),
        );
    };
    // The body is optional: none means the default (re-join).
    let rejoin = if body.iter().all(u8::is_ascii_whitespace) {
        true
    } else {
        match serde_json::from_slice::<KillRequest>(&body) {
            Ok(k) => k.rejoin,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad kill request: {e}")),
        }
    };
    let reason = "killed by the operator";
    match state
        .hub
        .query(move |reg, now| reg.kill_peer(now, peer, rejoin, reason))
        .await
    {
        Some(true) => Json(serde_json::json!({ "killed": peer, "rejoin": rejoin })).into_response(),
        Some(false) => error(StatusCode::NOT_FOUND, format!("no connected peer {peer}")),
        None => unavailable(),
    }
}

/// Query of the live feed.
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    stream: String,
}

/// One node with its latest report, as the feed sends it.
#[derive(Serialize, PartialEq)]
struct FeedNode {
    #[serde(flatten)]
    node: ownstream_core::registry::TreeNode,
    stats: Option<PeerStats>,
}

/// `GET /api/monitor/events?stream=NAME`: the stream's tree, stats and runs, pushed on change.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(r) = refusal(&headers, &state) {
        return r;
    }
    let Ok(Query(FeedQuery { stream })) = query else {
        return error(StatusCode::BAD_REQUEST, "name the stream: ?stream=NAME");
    };
    let hub = state.hub.clone();
    let feed = futures_util::stream::unfold(
        (hub, stream, String::new(), true),
        |(hub, stream, last, first)| async move {
            if !first {
                tokio::time::sleep(FEED_INTERVAL).await;
            }
            loop {
                let name = stream.clone();
                let snapshot = hub.query(move |reg, now| snapshot(reg, now, &name)).await?;
                if snapshot != last {
                    let event = Event::default().event("snapshot").data(snapshot.clone());
                    return Some((Ok::<_, Infallible>(event), (hub, stream, snapshot, false)));
                }
                tokio::time::sleep(FEED_INTERVAL).await;
            }
        },
    );
    Sse::new(feed)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn snapshot(reg: &mut ownstream_core::registry::Registry, now: u64, stream: &str) -> String {
    let live = reg.streams().into_iter().find(|s| s.name == stream);
    let nodes: Vec<FeedNode> = reg
        .tree(stream)
        .map(|t| t.nodes)
        .unwrap_or_default()
        .into_iter()
        .map(|node| FeedNode {
            stats: reg.stats(node.id).cloned(),
            node,
        })
        .collect();
    let runs = reg.runs(now, stream);
    serde_json::json!({
        "stream": stream,
        "live": live,
        "nodes": nodes,
        "runs": runs,
        "counters": reg.counters(),
        "latency_by_depth": reg.latency_by_depth(stream),
    })
    .to_string()
}
