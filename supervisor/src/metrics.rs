//! `GET /metrics`: Prometheus text exposition of the supervisor's totals (joins, leaves, repairs,
//! kills, authentication failures, chunks rejected, stalls, handshakes refused by the admission
//! limits) and current gauges (peers, streams, viewers per stream, handshakes in progress).
//! Read-only and unauthenticated, as scrapers expect; it reveals counts only.
//!
//! The totals live in the registry (the hub owns it); each scrape takes one snapshot and encodes it
//! with `prometheus-client`, so there is no second copy of the numbers to keep in step.

use crate::http::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ownstream_core::admission::Refusal;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Totals counted by the shell itself (outside the registry).
#[derive(Debug, Default)]
pub struct ShellMetrics {
    /// Handshakes that failed (bad answer, bad key, timeout, malformed message...).
    pub auth_failures: AtomicU64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthQuantileLabel {
    stream: String,
    depth: String,
    quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Handshakes in progress, refusals by reason, and challenge answers decrypted.
fn register_admission(r: &mut Registry, gate: &crate::gate::Gate) {
    let (pending, counts) = gate.snapshot();
    r.register(
        "handshakes_pending",
        "Connections in their authentication handshake",
        ConstGauge::new(pending as i64),
    );
    r.register(
        "handshakes_admitted",
        "Connections admitted to the authentication handshake",
        ConstCounter::new(counts.admitted),
    );
    let refused = Family::<ReasonLabel, Counter>::default();
    for (reason, n) in Refusal::LABELS.into_iter().zip(counts.refused) {
        refused.get_or_create(&ReasonLabel { reason }).inc_by(n);
    }
    r.register(
        "handshakes_refused",
        "Connections refused by the handshake limits, by reason; decrypt_rate counts each time an answer had to wait for its turn",
        refused,
    );
    r.register(
        "answer_decryptions",
        "Challenge answers decrypted with the supervisor's private key",
        ConstCounter::new(counts.decrypts),
    );
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state
        .hub
        .query(|reg, _| {
            let streams = reg.streams();
            let latency: Vec<_> = streams
                .iter()
                .map(|s| (s.name.clone(), reg.latency_by_depth(&s.name)))
                .collect();
            (reg.counters(), streams, reg.peer_count(), latency)
        })
        .await;
    let Some((c, streams, peers, latency)) = snapshot else {
        return (StatusCode::SERVICE_UNAVAILABLE, "supervisor shutting down").into_response();
    };
    let mut r = Registry::with_prefix("ownstream");
    let counter = |v: u64| ConstCounter::new(v);
    r.register(
        "joins",
        "Viewers placed in a tree, re-joins included",
        counter(c.joins),
    );
    r.register(
        "leaves",
        "Viewers that left a tree (closed, failed or killed)",
        counter(c.leaves),
    );
    r.register(
        "repairs",
        "Children re-attached by a tree repair",
        counter(c.repairs),
    );
    r.register(
        "kills",
        "Peers killed by the operator or a failure run",
        counter(c.kills),
    );
    let auth = state.metrics.auth_failures.load(Ordering::Relaxed);
    r.register(
        "auth_failures",
        "Failed authentication handshakes",
        counter(auth),
    );
    r.register(
        "chunks_rejected",
        "Chunks viewers dropped for a bad HMAC tag",
        counter(c.chunks_rejected),
    );
    r.register(
        "stalls",
        "Stalled playbacks reported by viewers",
        counter(c.stalls),
    );
    r.register(
        "stalled_milliseconds",
        "Stalled playback time reported by viewers",
        counter(c.stalled_ms),
    );
    r.register(
        "peers",
        "Authenticated peers connected",
        ConstGauge::new(peers as i64),
    );
    r.register(
        "streams",
        "Live streams",
        ConstGauge::new(streams.len() as i64),
    );
    let viewers = Family::<StreamLabel, Gauge>::default();
    for s in &streams {
        let label = StreamLabel {
            stream: s.name.clone(),
        };
        viewers.get_or_create(&label).set(s.viewers as i64);
    }
    r.register("viewers", "Viewers in each stream's tree", viewers);
    let glass = Family::<DepthQuantileLabel, Gauge>::default();
    for (stream, depths) in &latency {
        for d in depths {
            for (quantile, ms) in [("0.5", d.p50_ms), ("0.95", d.p95_ms)] {
                let label = DepthQuantileLabel {
                    stream: stream.clone(),
                    depth: d.depth.to_string(),
                    quantile: quantile.to_string(),
                };
                glass.get_or_create(&label).set(ms);
            }
        }
    }
    r.register(
        "glass_to_glass_milliseconds",
        "How far behind live viewers play (capture to display), by stream and depth, from their latest reports",
        glass,
    );
    register_admission(&mut r, &state.gate);
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &r).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
