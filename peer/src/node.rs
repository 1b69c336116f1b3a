//! A node of a stream's tree: the broadcaster (root) or a receiver. One task owns all of its state:
//! the signaling connection, the WebRTC edges to its parent and children, the core's relay buffer,
//! reassembler and player model. Edge callbacks and the media source only forward events to it.
//!
//! Receivers check the HMAC tag of a random fraction of chunks (always the init and end chunks),
//! drop and count a chunk whose tag fails, and hand every other chunk to the relay, the player model
//! and the output sink. A chunk whose sequence number is not above the last one held is a duplicate
//! (a re-attached child may be sent the init segment again) and is ignored.

mod edges;
mod media;
mod rejoin;

use crate::edge::{Edge, EdgeConfig, EdgeEvent, IceServerConfig};
use crate::signaling::{self, PeerIdentity, SignalingError, SignalingEvent};
use ownstream_core::frame::{self, Chunk, Reassembler, StreamKey};
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::player::{Player, PlayerConfig};
use ownstream_core::protocol::{ComponentType, PeerMessage, PeerStats, ServerMessage};
use ownstream_core::relay::{Relay, RelayConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long a finished node waits for its children to take the last chunks before it leaves.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a receiver told that the stream ended waits for the end chunk to arrive through the tree.
const END_GRACE: Duration = Duration::from_secs(5);
/// A child that has heard nothing this long after its HELLO says it again: webrtc 0.21 was seen to
/// lose a browser's first message right after the channel opened (1 join in ~15 on loopback).
const HELLO_REPEAT: Duration = Duration::from_millis(500);
/// A parent edge that has not opened this long after the supervisor named the parent is given up
/// and reported as lost, so the supervisor places the child elsewhere: an offer lost on the way or
/// ICE checks that never end would otherwise leave the child waiting forever.
const PARENT_OPEN_LIMIT: Duration = Duration::from_secs(8);

/// Where received chunks go besides the relay (the receiver's `--out` file).
pub trait ChunkSink: Send + Sync {
    /// A verified, in-order, non-duplicate chunk.
    fn chunk(&mut self, chunk: &Chunk) -> std::io::Result<()>;
}

/// Test and fault-injection hooks; all off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Flip a payload byte of this chunk before relaying it (the node keeps the original).
    pub corrupt_relayed_seq: Option<u64>,
}

/// Settings shared by broadcaster and receiver nodes.
#[derive(Clone)]
pub struct NodeConfig {
    /// `ws://host:port/ws`.
    pub supervisor_url: String,
    /// Who this node is.
    pub identity: PeerIdentity,
    /// WebRTC settings (ICE servers are added from the supervisor's session).
    pub edge: EdgeConfig,
    /// Fraction of chunks whose HMAC is checked.
    pub verify_fraction: f64,
    /// Relay buffer and pacing.
    pub relay: RelayConfig,
    /// Player model.
    pub player: PlayerConfig,
    /// Fault injection.
    pub faults: Faults,
    /// Broadcaster: hold the first chunk until this many viewers are connected.
    pub wait_viewers: usize,
}

/// How a node's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The stream ended normally.
    StreamEnded(String),
    /// The node was asked to stop.
    Stopped,
    /// The supervisor closed the connection or became unreachable.
    SupervisorLost(String),
    /// The operator killed this peer without asking it to come back.
    Killed(String),
}

/// Final statistics of a run, as written by `--stats`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// This peer.
    pub peer_id: PeerId,
    /// The stream.
    pub stream: String,
    /// Why the run ended.
    pub ending: String,
    /// Counters.
    #[serde(flatten)]
    pub stats: PeerStats,
    /// `(seq, unix_ms)`: when each chunk reached this node (for the broadcaster: when it was
    /// released), the latest [`MAX_ARRIVALS`]. Nodes on one machine share the clock, so the
    /// experiments derive per-hop latency from these.
    pub arrivals: Vec<(u64, u64)>,
}

/// Chunk arrival times kept for the summary.
pub const MAX_ARRIVALS: usize = 20_000;

enum Input {
    /// An event of signaling connection number `.0` (a re-join after a kill opens a new one).
    Signal(u64, SignalingEvent),
    /// The re-join's new connection, or why it could not be made.
    Reconnected(Result<signaling::Signaling, String>),
    Edge(PeerId, u64, EdgeEvent),
    Source(Chunk),
    Stop,
}

struct ChildEdge {
    edge: Arc<Edge>,
    generation: u64,
}

struct ParentEdge {
    peer: PeerId,
    edge: Option<(Arc<Edge>, u64)>,
    /// When HELLO was last sent on this edge, while nothing has come back yet.
    greeted: Option<Instant>,
    /// Since when the child has waited for this edge to open (`None` once it opened).
    waiting_since: Option<Instant>,
}

impl ParentEdge {
    fn new(peer: PeerId) -> Self {
        ParentEdge {
            peer,
            edge: None,
            greeted: None,
            waiting_since: Some(Instant::now()),
        }
    }
}

/// Controls a running node from outside: stop it, feed the broadcaster's chunks, learn the key.
#[derive(Clone)]
pub struct NodeHandle {
    inputs: mpsc::UnboundedSender<Input>,
    ready: watch::Receiver<Option<StreamKey>>,
}

impl NodeHandle {
    /// Asks the node to stop (it flushes its sink and stats first).
    pub fn stop(&self) {
        let _ = self.inputs.send(Input::Stop);
    }

    /// Broadcaster: a signed chunk to distribute. False once the node has stopped.
    pub fn push(&self, chunk: Chunk) -> bool {
        self.inputs.send(Input::Source(chunk)).is_ok()
    }

    /// Broadcaster: waits until the stream is registered and enough viewers are connected; returns
    /// the stream key, or `None` if the node stopped first.
    pub async fn wait_ready(&self) -> Option<StreamKey> {
        let mut ready = self.ready.clone();
        let key = ready.wait_for(|k| k.is_some()).await.ok()?;
        key.clone()
    }
}

/// Runtime state of a node.
pub struct Node {
    config: NodeConfig,
    broadcaster: bool,
    peer_id: PeerId,
    stream: String,
    key: Option<StreamKey>,
    ready: watch::Sender<Option<StreamKey>>,
    sig_out: mpsc::UnboundedSender<PeerMessage>,
    inputs: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    parent: Option<ParentEdge>,
    children: HashMap<PeerId, ChildEdge>,
    generation: u64,
    relay: Relay,
    reassembler: Reassembler,
    player: Player,
    stats: PeerStats,
    last_seq: Option<ChunkSeq>,
    sink: Option<Box<dyn ChunkSink>>,
    rng: StdRng,
    started: Instant,
    joined_at: Option<Instant>,
    /// Number of the current signaling connection (see `Input::Signal`).
    sig_conn: u64,
    /// Since when this node has been without a parent, until its next chunk arrives.
    repair_start: Option<Instant>,
    /// Repair times (ms) measured since the last stats report.
    repair_times: Vec<u32>,
    /// See [`Summary::arrivals`].
    arrivals: std::collections::VecDeque<(u64, u64)>,
    end_seen: bool,
    ending: Option<(Ending, Instant)>,
    next_list: Instant,
}

fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

impl Node {
    /// Connects and authenticates, then registers (broadcaster) or joins (receiver) `stream`.
    pub async fn connect(
        config: NodeConfig,
        stream: &str,
    ) -> Result<(Node, NodeHandle), SignalingError> {
        let sig = signaling::connect(&config.supervisor_url, &config.identity).await?;
        let (inputs, rx) = mpsc::unbounded_channel();
        rejoin::forward_events(sig.events, inputs.clone(), 0);
        let (ready, ready_rx) = watch::channel(None);
        let broadcaster = config.identity.component == ComponentType::Broadcaster;
        let first = if broadcaster {
            PeerMessage::RegisterStream {
                stream: stream.to_string(),
            }
        } else {
            PeerMessage::JoinStream {
                stream: stream.to_string(),
                wait: true,
            }
        };
        let _ = sig.outgoing.send(first);
        let mut config = config;
        config.edge.ice_servers = sig
            .session
            .ice_servers
            .iter()
            .map(|s| IceServerConfig {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let node = Node {
            broadcaster,
            peer_id: config.identity.peer_id,
            stream: stream.to_string(),
            key: None,
            ready,
            sig_out: sig.outgoing,
            inputs: inputs.clone(),
            rx,
            parent: None,
            children: HashMap::new(),
            generation: 0,
            relay: Relay::new(config.relay, |c: &Chunk| {
                // A chunk too large to frame reaches no child; the relay reports the hole.
                frame::fragment(c, frame::MAX_MESSAGE).unwrap_or_default()
            }),
            reassembler: Reassembler::default(),
            player: Player::new(config.player),
            stats: PeerStats::default(),
            last_seq: None,
            sink: None,
            rng: StdRng::from_rng(&mut rand::rng()),
            started: Instant::now(),
            joined_at: None,
            sig_conn: 0,
            repair_start: None,
            repair_times: Vec::new(),
            arrivals: std::collections::VecDeque::new(),
            end_seen: false,
            ending: None,
            next_list: Instant::now(),
            config,
        };
        let handle = NodeHandle {
            inputs,
            ready: ready_rx,
        };
        Ok((node, handle))
    }

    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Sets where accepted chunks are written (the receiver's `--out`).
    pub fn set_sink(&mut self, sink: Box<dyn ChunkSink>) {
        self.sink = Some(sink);
    }

    /// Runs until the stream ends, the node is stopped, or the supervisor goes away.
    pub async fn run(mut self) -> Summary {
        let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let wake = self.next_wake();
            tokio::select! {
                input = self.rx.recv() => {
                    // The node holds a sender itself, so the channel never closes while it runs.
                    if let Some(input) = input {
                        self.handle_input(input).await;
                    }
                }
                _ = stats_tick.tick() => self.report_stats(),
                _ = tokio::time::sleep(wake) => {}
            }
            self.poll_viewers();
            self.repeat_hello().await;
            self.check_parent_open();
            self.pump_relay().await;
            if let Some(ending) = self.finished().await {
                return self.finish(ending).await;
            }
        }
    }

    fn now(&self) -> u64 {
        ms_since(self.started)
    }

    fn next_wake(&self) -> Duration {
        let now = self.now();
        let at = [self.relay.poll_timeout(), self.player.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + 250);
        Duration::from_millis(at.saturating_sub(now).clamp(1, 250))
    }

    async fn handle_input(&mut self, input: Input) {
        match input {
            // Events of a connection left behind by a re-join are stale.
            Input::Signal(conn, _) if conn != self.sig_conn => {}
            Input::Signal(_, SignalingEvent::Message(msg)) => self.handle_server(msg).await,
            Input::Signal(_, SignalingEvent::Closed(reason)) => {
                if self.ending.is_none() {
                    self.end_now(Ending::SupervisorLost(reason));
                }
            }
            Input::Reconnected(result) => self.reconnected(result),
            Input::Edge(peer, generation, ev) => self.handle_edge(peer, generation, ev).await,
            Input::Source(chunk) => self.accept_chunk(chunk, false),
            Input::Stop => self.end_now(Ending::Stopped),
        }
    }

    fn end_now(&mut self, ending: Ending) {
        self.ending = Some((ending, Instant::now()));
    }

    async fn handle_server(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::StreamRegistered { key, .. } => self.set_key(&key),
            ServerMessage::Joined {
                key, parent, depth, ..
            } => {
                self.set_key(&key);
                tracing::info!(%parent, depth, "joined");
                if self.joined_at.is_some() {
                    self.stats.repairs += 1; // back as a new viewer after a kill
                }
                self.joined_at.get_or_insert_with(Instant::now);
                self.parent = Some(ParentEdge::new(parent));
            }
            ServerMessage::StreamWaiting { stream } => {
                tracing::info!(%stream, "stream not live yet; waiting for it");
            }
            ServerMessage::SetParent { parent, depth, .. } => {
                tracing::info!(%parent, depth, "re-attached to a new parent");
                if let Some(old) = self.parent.take() {
                    if let Some((edge, _)) = old.edge {
                        edge.close().await;
                    }
                }
                self.stats.repairs += 1;
                self.repair_start.get_or_insert_with(Instant::now);
                self.reassembler = Reassembler::default();
                self.parent = Some(ParentEdge::new(parent));
            }
            ServerMessage::ConnectChild { child, .. } => self.connect_child(child).await,
            ServerMessage::DropChild { child, .. } => self.drop_child(child).await,
            ServerMessage::Signal { from, payload } => self.route_signal(from, payload).await,
            ServerMessage::StreamList { streams } => self.check_ready(&streams),
            ServerMessage::Kill { reason, rejoin } => self.killed(reason, rejoin).await,
            // The end chunk may still be travelling down the tree: give it time.
            ServerMessage::StreamEnded { reason, .. } if self.ending.is_none() => {
                self.ending = Some((Ending::StreamEnded(reason), Instant::now() + END_GRACE));
            }
            ServerMessage::Error {
                code,
                message,
                fatal,
            } => {
                tracing::warn!(%code, %message, fatal, "supervisor refused a request");
                let joined = self.key.is_some();
                if fatal || !joined {
                    self.end_now(Ending::SupervisorLost(format!("{code}: {message}")));
                }
            }
            _ => {}
        }
    }

    fn set_key(&mut self, b64: &str) {
        match StreamKey::from_base64(b64) {
            Ok(key) => self.key = Some(key),
            Err(e) => self.end_now(Ending::SupervisorLost(format!("bad stream key: {e}"))),
        }
    }

    fn poll_viewers(&mut self) {
        let waiting = self.broadcaster && self.key.is_some() && self.ready.borrow().is_none();
        if waiting && Instant::now() >= self.next_list {
            self.next_list = Instant::now() + Duration::from_millis(200);
            let _ = self.sig_out.send(PeerMessage::ListStreams {});
        }
    }

    fn check_ready(&mut self, streams: &[ownstream_core::protocol::StreamInfo]) {
        let Some(info) = streams.iter().find(|s| s.name == self.stream) else {
            return;
        };
        if info.ready >= self.config.wait_viewers && self.ready.borrow().is_none() {
            tracing::info!(viewers = info.viewers, "viewers connected; starting");
            self.ready.send_replace(self.key.clone());
        }
    }
    /// Decides whether the run is over: stop and supervisor loss end at once; a stream end waits for
    /// the end chunk (bounded by a grace period) and for the children to take what is queued for them.
    async fn finished(&mut self) -> Option<Ending> {
        let (ending, since) = self.ending.clone()?;
        match ending {
            Ending::Stopped | Ending::SupervisorLost(_) | Ending::Killed(_) => Some(ending),
            Ending::StreamEnded(_) if !self.end_seen && Instant::now() < since => None,
            Ending::StreamEnded(_) => {
                let queued = self
                    .children
                    .keys()
                    .any(|c| self.relay.queued_bytes(*c).unwrap_or(0) > 0);
                let drained = !queued && self.children_flushed().await;
                let expired = since.elapsed() >= DRAIN_TIMEOUT;
                (drained || expired).then_some(ending)
            }
        }
    }

    async fn children_flushed(&self) -> bool {
        for child in self.children.values() {
            if child.edge.buffered_amount().await > 0 {
                return false;
            }
        }
        true
    }

    async fn finish(mut self, ending: Ending) -> Summary {
        self.report_stats();
        if self.broadcaster && matches!(ending, Ending::StreamEnded(_)) {
            self.send(PeerMessage::EndStream {});
        }
        for child in self.children.values() {
            child.edge.close().await;
        }
        if let Some((edge, _)) = self.parent.as_ref().and_then(|p| p.edge.clone()) {
            edge.close().await;
        }
        self.sink = None; // flushes and closes the output
        let ending_text = match &ending {
            Ending::StreamEnded(r) => format!("stream ended: {r}"),
            Ending::Stopped => "stopped".into(),
            Ending::SupervisorLost(r) => format!("supervisor connection lost: {r}"),
            Ending::Killed(r) => format!("killed by the operator: {r}"),
        };
        Summary {
            peer_id: self.peer_id,
            stream: self.stream.clone(),
            ending: ending_text,
            stats: self.stats.clone(),
            arrivals: self.arrivals.iter().copied().collect(),
        }
    }
}
