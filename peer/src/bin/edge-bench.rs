//! Benchmark of a fresh edge between two Rust peers on loopback (not a test: it asserts nothing,
//! it measures and prints): where the time from "the parent starts its edge" to "the child holds
//! its first chunk" goes, step by step, over `--rounds` edges set up one after the other.
//!
//!   cargo run --release -p ownstream-peer --bin edge-bench -- [--rounds 30] [--signal-ms 1]
//!       [--check-ms 20] [--max-requests 100]
//!
//! Signaling is relayed in-process, each message delayed by `--signal-ms` (the supervisor hop over
//! a loopback WebSocket). The child's edge is created when the offer arrives, as a node does. The
//! steps are the edges' own events; `RUST_LOG=ownstream_peer::edge=debug` adds ICE and DTLS state
//! changes to stderr with timestamps for a finer breakdown.

use bytes::Bytes;
use ownstream_peer::edge::{Edge, EdgeConfig, EdgeEvent, Role};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const STEPS: [&str; 6] = [
    "offer",
    "answer",
    "child_open",
    "parent_open",
    "hello",
    "first_chunk",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ownstream_peer::cli::init_logging();
    let mut rounds = 30usize;
    let mut signal_ms = 1u64;
    let mut config = EdgeConfig::loopback();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--rounds" => rounds = v.parse()?,
            "--signal-ms" => signal_ms = v.parse()?,
            // `webrtc`'s own defaults are 200 ms and 7, to compare against.
            "--check-ms" => config.ice_check_interval = Duration::from_millis(v.parse()?),
            "--max-requests" => config.ice_max_binding_requests = v.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let delay = Duration::from_millis(signal_ms);
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for _ in 0..rounds {
        rows.push(round(&config, delay).await?);
    }
    println!(
        "Fresh edge between two Rust peers on loopback, {rounds} rounds, signaling hop {signal_ms} ms, ICE checks every {} ms",
        config.ice_check_interval.as_millis()
    );
    println!("(ms since the parent started its edge)");
    for (i, step) in STEPS.iter().enumerate() {
        let mut xs: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        xs.sort_by(f64::total_cmp);
        let pick = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {step:<12} median {:7.1}   p95 {:7.1}   min {:7.1}   max {:7.1}",
            pick(0.5),
            pick(0.95),
            xs[0],
            xs[xs.len() - 1]
        );
    }
    Ok(())
}

/// One edge: the parent offers, the child answers, the child says HELLO once open and the parent
/// answers with a 64 KiB "chunk". Returns the time of each of [`STEPS`].
async fn round(config: &EdgeConfig, delay: Duration) -> anyhow::Result<[f64; 6]> {
    let t0 = Instant::now();
    let ms = move || t0.elapsed().as_secs_f64() * 1000.0;
    let (ptx, mut prx) = mpsc::channel(64);
    let (ctx, mut crx) = mpsc::channel(64);
    let parent = Edge::start(Role::Offerer, config, ptx).await?;
    let mut child: Option<Edge> = None;
    let mut at = [f64::NAN; 6];
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while at[5].is_nan() {
        tokio::select! {
            _ = &mut deadline => anyhow::bail!("edge not set up within 20 s: {at:?}"),
            Some(ev) = prx.recv() => match ev {
                EdgeEvent::Signal(p) => {
                    if at[0].is_nan() { at[0] = ms(); }
                    tokio::time::sleep(delay).await;
                    if child.is_none() {
                        child = Some(Edge::start(Role::Answerer, config, ctx.clone()).await?);
                    }
                    if let Some(c) = &child { c.handle_signal(p).await?; }
                }
                EdgeEvent::Open => at[3] = ms(),
                EdgeEvent::Message(_) => {
                    at[4] = ms();
                    parent.send(chunk.clone()).await?;
                }
                EdgeEvent::Closed { reason } => anyhow::bail!("parent edge closed: {reason}"),
            },
            Some(ev) = crx.recv() => match ev {
                EdgeEvent::Signal(p) => {
                    if at[1].is_nan() { at[1] = ms(); }
                    tokio::time::sleep(delay).await;
                    parent.handle_signal(p).await?;
                }
                EdgeEvent::Open => {
                    at[2] = ms();
                    if let Some(c) = &child { c.send(Bytes::from_static(b"hello")).await?; }
                }
                EdgeEvent::Message(_) => at[5] = ms(),
                EdgeEvent::Closed { reason } => anyhow::bail!("child edge closed: {reason}"),
            },
        }
    }
    parent.close().await;
    if let Some(c) = child {
        c.close().await;
    }
    Ok(at)
}
