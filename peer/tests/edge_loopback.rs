//! Two real WebRTC edges on loopback, wired together the way the supervisor relays signaling.
//!
//! Timings are printed (run with `--nocapture` to see them), not asserted, except the bound on
//! noticing a vanished remote.

use bytes::Bytes;
use ownstream_core::frame::MAX_MESSAGE;
use ownstream_core::protocol::{Agent, SignalPayload};
use ownstream_peer::edge::{Edge, EdgeConfig, EdgeEvent, Role};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

const CHUNK: usize = 16 * 1024;
const CHUNKS: usize = 200;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// One end as the test sees it: the edge and its non-signal events.
struct Side {
    edge: Arc<Edge>,
    events: mpsc::UnboundedReceiver<EdgeEvent>,
}

/// Relays `edge`'s signals to `signals_out` (candidates only if `forward_candidates`), applies
/// what arrives on `signals_in`, and passes every other event on to the returned [`Side`].
fn wire(
    edge: Edge,
    mut events: mpsc::Receiver<EdgeEvent>,
    mut signals_in: mpsc::UnboundedReceiver<SignalPayload>,
    signals_out: mpsc::UnboundedSender<SignalPayload>,
    forward_candidates: bool,
) -> Side {
    let edge = Arc::new(edge);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                EdgeEvent::Signal(SignalPayload::Candidate { .. }) if !forward_candidates => {}
                EdgeEvent::Signal(payload) => {
                    let _ = signals_out.send(payload);
                }
                other => {
                    let _ = out_tx.send(other);
                }
            }
        }
    });
    let weak = Arc::downgrade(&edge);
    tokio::spawn(async move {
        while let Some(payload) = signals_in.recv().await {
            let Some(edge) = weak.upgrade() else { break };
            if let Err(e) = edge.handle_signal(payload).await {
                eprintln!("handle_signal: {e}");
            }
        }
    });
    Side {
        edge,
        events: out_rx,
    }
}

/// Starts an edge of `role` on the current runtime and wires it.
async fn start_side(
    role: Role,
    config: EdgeConfig,
    signals_in: mpsc::UnboundedReceiver<SignalPayload>,
    signals_out: mpsc::UnboundedSender<SignalPayload>,
) -> Side {
    let (tx, rx) = mpsc::channel(64);
    let edge = Edge::start(role, &config, tx).await.expect("edge starts");
    wire(edge, rx, signals_in, signals_out, true)
}

/// Two signal pipes: (to the answerer, its receiver), (to the offerer, its receiver).
#[allow(clippy::type_complexity)]
fn pipes() -> (
    (
        mpsc::UnboundedSender<SignalPayload>,
        mpsc::UnboundedReceiver<SignalPayload>,
    ),
    (
        mpsc::UnboundedSender<SignalPayload>,
        mpsc::UnboundedReceiver<SignalPayload>,
    ),
) {
    (mpsc::unbounded_channel(), mpsc::unbounded_channel())
}

async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// The next event that is not `ignore`d, or `None` once the edge's stream ended.
async fn next_event(side: &mut Side) -> Option<EdgeEvent> {
    side.events.recv().await
}

async fn expect_open(side: &mut Side, name: &str) {
    let event = within(&format!("{name} to open"), OPEN_TIMEOUT, next_event(side)).await;
    assert_eq!(event, Some(EdgeEvent::Open), "{name}'s first event");
}

/// Waits for `Closed`, skipping messages; returns its reason.
async fn expect_closed(side: &mut Side) -> String {
    loop {
        match next_event(side).await {
            Some(EdgeEvent::Closed { reason }) => return reason,
            Some(EdgeEvent::Message(_)) => {}
            other => panic!("expected Closed, got {other:?}"),
        }
    }
}

/// The stream of a closed edge ends: its task is gone.
async fn expect_end(side: &mut Side, name: &str) {
    let rest = within(&format!("{name}'s events to end"), OPEN_TIMEOUT, async {
        let mut rest = Vec::new();
        while let Some(event) = next_event(side).await {
            rest.push(event);
        }
        rest
    })
    .await;
    assert!(
        rest.iter().all(|e| matches!(e, EdgeEvent::Closed { .. })),
        "{name}: {rest:?}"
    );
}

fn chunk(i: usize) -> Bytes {
    let mut data = vec![(i % 251) as u8; CHUNK];
    data[..4].copy_from_slice(&(i as u32).to_be_bytes());
    Bytes::from(data)
}

async fn open_pair() -> (Side, Side) {
    open_pair_with(&EdgeConfig::loopback()).await
}

/// An open pair whose parent (the offerer) has `parent_config`.
async fn open_pair_with(parent_config: &EdgeConfig) -> (Side, Side) {
    let ((to_answerer, answerer_in), (to_offerer, offerer_in)) = pipes();
    let started = Instant::now();
    let parent_config = parent_config.clone();
    let mut parent = start_side(Role::Offerer, parent_config, offerer_in, to_answerer).await;
    let loopback = EdgeConfig::loopback();
    let mut child = start_side(Role::Answerer, loopback, answerer_in, to_offerer).await;
    expect_open(&mut parent, "offerer").await;
    expect_open(&mut child, "answerer").await;
    println!("start to open on both ends: {:?}", started.elapsed());
    (parent, child)
}

#[tokio::test]
async fn messages_arrive_in_order_and_intact_both_ways() {
    let (mut parent, mut child) = open_pair().await;

    let started = Instant::now();
    for i in 0..CHUNKS {
        parent.edge.send(chunk(i)).await.expect("send");
    }
    println!(
        "queued {CHUNKS} x {CHUNK} B, buffered {} B",
        parent.edge.buffered_amount().await
    );
    for i in 0..CHUNKS {
        let event = within("a chunk", OPEN_TIMEOUT, next_event(&mut child)).await;
        assert_eq!(event, Some(EdgeEvent::Message(chunk(i))), "chunk {i}");
    }
    let elapsed = started.elapsed();
    let mb = (CHUNKS * CHUNK) as f64 / 1e6;
    println!(
        "{CHUNKS} x 16 KiB in {elapsed:?}: {:.1} MB/s",
        mb / elapsed.as_secs_f64()
    );

    child
        .edge
        .send(Bytes::from_static(b"thanks"))
        .await
        .expect("send back");
    let event = within("the reply", OPEN_TIMEOUT, next_event(&mut parent)).await;
    assert_eq!(
        event,
        Some(EdgeEvent::Message(Bytes::from_static(b"thanks")))
    );
    let buffered = parent.edge.buffered_amount().await;
    println!("buffered after the reply: {buffered} B");
    assert!(
        buffered < CHUNKS * CHUNK,
        "acknowledgements drain the buffer"
    );

    parent.edge.close().await;
    child.edge.close().await;
    expect_end(&mut parent, "offerer").await;
    expect_end(&mut child, "answerer").await;
}

/// A Rust parent on loopback sends a Rust child larger SCTP packets
/// (`EdgeConfig::sctp_mtu_toward`): messages of the relay's largest size, back to back, arrive
/// whole and in order, which they would not if the child cut a datagram short.
#[tokio::test]
async fn larger_packets_toward_a_rust_peer_arrive_whole() {
    let loopback = EdgeConfig::loopback();
    let config = EdgeConfig {
        sctp_mtu: loopback.sctp_mtu_toward(Some(Agent::Native)),
        ..loopback
    };
    assert!(config.sctp_mtu.is_some() || !cfg!(target_os = "linux"));
    let (parent, mut child) = open_pair_with(&config).await;
    let message = |i: usize| {
        let mut data = vec![(i % 251) as u8; MAX_MESSAGE];
        data[..4].copy_from_slice(&(i as u32).to_be_bytes());
        Bytes::from(data)
    };
    let started = Instant::now();
    for i in 0..64 {
        parent.edge.send(message(i)).await.expect("send");
    }
    for i in 0..64 {
        let event = within("a message", OPEN_TIMEOUT, next_event(&mut child)).await;
        assert_eq!(event, Some(EdgeEvent::Message(message(i))), "message {i}");
    }
    println!(
        "64 x 64 KiB at SCTP MTU {:?} in {:?}",
        config.sctp_mtu,
        started.elapsed()
    );
    parent.edge.close().await;
    child.edge.close().await;
}

#[tokio::test]
async fn candidates_before_the_offer_are_queued() {
    let (tx_a, mut rx_a) = mpsc::channel(64);
    let offerer = Edge::start(Role::Offerer, &EdgeConfig::loopback(), tx_a)
        .await
        .expect("offerer starts");
    // Hold the offer back until a candidate has been seen, then deliver it last.
    let mut early = Vec::new();
    let mut offer = None;
    while offer.is_none() || early.is_empty() {
        match within("offer and a candidate", OPEN_TIMEOUT, rx_a.recv()).await {
            Some(EdgeEvent::Signal(o @ SignalPayload::Offer { .. })) => offer = Some(o),
            Some(EdgeEvent::Signal(c)) => early.push(c),
            other => panic!("unexpected {other:?}"),
        }
    }
    let ((to_answerer, answerer_in), (to_offerer, offerer_in)) = pipes();
    for c in early.into_iter().chain(offer) {
        to_answerer.send(c).expect("pipe open");
    }
    let mut parent = wire(offerer, rx_a, offerer_in, to_answerer, true);
    // The answerer's candidates are dropped: the edge can only come up if the answerer applied
    // the offerer's queued candidate (the offerer then learns the answerer from its checks).
    let (tx_b, rx_b) = mpsc::channel(64);
    let answerer = Edge::start(Role::Answerer, &EdgeConfig::loopback(), tx_b)
        .await
        .expect("answerer starts");
    let mut child = wire(answerer, rx_b, answerer_in, to_offerer, false);
    expect_open(&mut parent, "offerer").await;
    expect_open(&mut child, "answerer").await;
    parent.edge.close().await;
    child.edge.close().await;
}

#[tokio::test]
async fn closing_one_end_closes_the_other() {
    let (mut parent, mut child) = open_pair().await;
    let started = Instant::now();
    parent.edge.close().await;
    let reason = within("Closed", Duration::from_secs(10), expect_closed(&mut child)).await;
    println!(
        "child noticed its parent's close() after {:?}: {reason}",
        started.elapsed()
    );
    expect_end(&mut child, "answerer").await;
    let rest = within(
        "the closed end's events to end",
        OPEN_TIMEOUT,
        next_event(&mut parent),
    );
    assert_eq!(rest.await, None, "no Closed after the owner's own close()");
}

#[tokio::test]
async fn dropping_an_edge_closes_it() {
    let (mut parent, child) = open_pair().await;
    let Side {
        edge: child_edge,
        events: mut child_events,
    } = child;
    let started = Instant::now();
    drop(child_edge);
    let reason = within(
        "Closed",
        Duration::from_secs(10),
        expect_closed(&mut parent),
    )
    .await;
    println!(
        "parent noticed its dropped child after {:?}: {reason}",
        started.elapsed()
    );
    let rest = within(
        "the dropped end's events to end",
        OPEN_TIMEOUT,
        child_events.recv(),
    );
    assert_eq!(rest.await, None, "the dropped edge's task ended");
}

/// A parent that vanishes without a word (its process killed) is noticed by its child.
///
/// The parent runs on a runtime of its own; shutting that runtime down drops its driver and
/// sockets at once, so nothing is sent on the way out, as with a killed process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_notices_a_killed_parent() {
    let parent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ((to_answerer, answerer_in), (to_offerer, offerer_in)) = pipes();
    let mut parent = parent_rt
        .spawn(start_side(
            Role::Offerer,
            EdgeConfig::loopback(),
            offerer_in,
            to_answerer,
        ))
        .await
        .expect("parent side starts");
    let mut child = start_side(
        Role::Answerer,
        EdgeConfig::loopback(),
        answerer_in,
        to_offerer,
    )
    .await;
    expect_open(&mut parent, "offerer").await;
    expect_open(&mut child, "answerer").await;
    parent.edge.send(chunk(0)).await.expect("send");
    let event = within("a chunk", OPEN_TIMEOUT, next_event(&mut child)).await;
    assert_eq!(event, Some(EdgeEvent::Message(chunk(0))));

    let killed = Instant::now();
    parent_rt.shutdown_background();
    let reason = within(
        "the child to notice",
        Duration::from_secs(10),
        expect_closed(&mut child),
    )
    .await;
    println!(
        "child noticed its killed parent after {:?}: {reason}",
        killed.elapsed()
    );
    expect_end(&mut child, "answerer").await;
    drop(parent);
}
