//! A node of a stream's tree: the broadcaster (root) or a receiver. One task owns all of its state:
//! the signaling connection, the WebRTC edges to its parent and children, the core's relay buffer,
//! reassembler and player model. Edge callbacks and the media source only forward events to it.
//!
//! Receivers check the HMAC tag of a random fraction of chunks (always the init and end chunks),
//! drop and count a chunk whose tag fails, and hand every other chunk to the relay, the player model
//! and the output sink. A chunk whose sequence number is not above the last one held is a duplicate
//! (a re-attached child may be sent the init segment again) and is ignored.

use crate::edge::{Edge, EdgeConfig, EdgeEvent, IceServerConfig, Role as EdgeRole};
use crate::signaling::{self, PeerIdentity, SignalingError, SignalingEvent};
use bytes::Bytes;
use ownstream_core::frame::{self, Chunk, Message as WireMessage, Reassembler, StreamKey};
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::player::{Player, PlayerConfig};
use ownstream_core::protocol::{
    ComponentType, PeerMessage, PeerStats, ServerMessage, SignalPayload,
};
use ownstream_core::relay::{Relay, RelayConfig, RelayEvent};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long a finished node waits for its children to take the last chunks before it leaves.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a receiver told that the stream ended waits for the end chunk to arrive through the tree.
const END_GRACE: Duration = Duration::from_secs(5);

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
    /// Gaps skipped because a parent's buffer did not cover a repair.
    pub chunks_skipped: u64,
}

enum Input {
    Signal(SignalingEvent),
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
    skipped: u64,
    last_seq: Option<ChunkSeq>,
    sink: Option<Box<dyn ChunkSink>>,
    rng: StdRng,
    started: Instant,
    joined_at: Option<Instant>,
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
        let mut events = sig.events;
        let forward = inputs.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if forward.send(Input::Signal(ev)).is_err() {
                    break;
                }
            }
        });
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
            skipped: 0,
            last_seq: None,
            sink: None,
            rng: StdRng::from_rng(&mut rand::rng()),
            started: Instant::now(),
            joined_at: None,
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
            Input::Signal(SignalingEvent::Message(msg)) => self.handle_server(msg).await,
            Input::Signal(SignalingEvent::Closed(reason)) => {
                if self.ending.is_none() {
                    self.end_now(Ending::SupervisorLost(reason));
                }
            }
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
                self.joined_at.get_or_insert_with(Instant::now);
                self.parent = Some(ParentEdge {
                    peer: parent,
                    edge: None,
                });
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
                self.reassembler = Reassembler::default();
                self.parent = Some(ParentEdge {
                    peer: parent,
                    edge: None,
                });
            }
            ServerMessage::ConnectChild { child, .. } => self.connect_child(child).await,
            ServerMessage::DropChild { child, .. } => self.drop_child(child).await,
            ServerMessage::Signal { from, payload } => self.route_signal(from, payload).await,
            ServerMessage::StreamList { streams } => self.check_ready(&streams),
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

    async fn open_edge(&mut self, remote: PeerId, role: EdgeRole) -> Option<(Arc<Edge>, u64)> {
        self.generation += 1;
        let generation = self.generation;
        let (tx, mut rx) = mpsc::channel(1024);
        let edge = match Edge::start(role, &self.config.edge, tx).await {
            Ok(edge) => Arc::new(edge),
            Err(e) => {
                tracing::warn!(%remote, error = %e, "cannot create a peer connection");
                return None;
            }
        };
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if inputs.send(Input::Edge(remote, generation, ev)).is_err() {
                    break;
                }
            }
        });
        Some((edge, generation))
    }

    async fn connect_child(&mut self, child: PeerId) {
        self.drop_child(child).await;
        if let Some((edge, generation)) = self.open_edge(child, EdgeRole::Offerer).await {
            let _ = self.relay.add_child(child);
            self.children.insert(child, ChildEdge { edge, generation });
        }
    }

    async fn drop_child(&mut self, child: PeerId) {
        if let Some(old) = self.children.remove(&child) {
            old.edge.close().await;
        }
        let _ = self.relay.remove_child(child);
    }

    async fn route_signal(&mut self, from: PeerId, payload: SignalPayload) {
        let is_parent = self.parent.as_ref().is_some_and(|p| p.peer == from);
        if is_parent {
            if matches!(payload, SignalPayload::Offer { .. }) {
                // A fresh offer means a fresh edge (the parent may have restarted it).
                if let Some((old, _)) = self.parent.as_mut().and_then(|p| p.edge.take()) {
                    old.close().await;
                }
                let edge = self.open_edge(from, EdgeRole::Answerer).await;
                if let Some(p) = self.parent.as_mut() {
                    p.edge = edge;
                }
            }
            if let Some((edge, _)) = self.parent.as_ref().and_then(|p| p.edge.clone()) {
                if let Err(e) = edge.handle_signal(payload).await {
                    tracing::warn!(%from, error = %e, "bad signaling from parent");
                }
            }
        } else if let Some(child) = self.children.get(&from) {
            if let Err(e) = child.edge.handle_signal(payload).await {
                tracing::warn!(%from, error = %e, "bad signaling from child");
            }
        }
    }

    async fn handle_edge(&mut self, peer: PeerId, generation: u64, ev: EdgeEvent) {
        let parent_edge = self
            .parent
            .as_ref()
            .and_then(|p| p.edge.as_ref().filter(|_| p.peer == peer))
            .filter(|(_, g)| *g == generation)
            .map(|(e, _)| e.clone());
        if let Some(edge) = parent_edge {
            return self.handle_parent_event(peer, edge, ev).await;
        }
        if self
            .children
            .get(&peer)
            .is_some_and(|c| c.generation == generation)
        {
            self.handle_child_event(peer, ev).await;
        }
        // Anything else comes from an edge that was already replaced: ignore it.
    }

    async fn handle_parent_event(&mut self, peer: PeerId, edge: Arc<Edge>, ev: EdgeEvent) {
        match ev {
            EdgeEvent::Signal(payload) => self.send(PeerMessage::Signal { to: peer, payload }),
            EdgeEvent::Open => {
                let hello = WireMessage::Hello {
                    last: self.last_seq,
                }
                .encode();
                if let Err(e) = edge.send(hello).await {
                    tracing::warn!(error = %e, "cannot greet parent");
                }
                self.stats.connected = true;
                self.report_stats();
            }
            EdgeEvent::Message(bytes) => self.handle_parent_message(bytes),
            EdgeEvent::Closed { reason } => {
                tracing::info!(%peer, %reason, "parent edge closed");
                self.stats.connected = false;
                if let Some(p) = self.parent.as_mut() {
                    p.edge = None;
                }
                if self.ending.is_none() {
                    self.send(PeerMessage::ParentLost { parent: peer });
                }
            }
        }
    }

    async fn handle_child_event(&mut self, peer: PeerId, ev: EdgeEvent) {
        match ev {
            EdgeEvent::Signal(payload) => self.send(PeerMessage::Signal { to: peer, payload }),
            EdgeEvent::Open => tracing::debug!(%peer, "child edge open"),
            EdgeEvent::Message(bytes) => match WireMessage::decode(bytes) {
                Ok(WireMessage::Hello { last }) => {
                    if let Err(e) = self.relay.handle_hello(self.now(), peer, last) {
                        tracing::warn!(%peer, error = %e, "unexpected HELLO");
                    }
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(%peer, "child sent something other than HELLO; closing its edge");
                    self.drop_child(peer).await;
                }
            },
            EdgeEvent::Closed { reason } => {
                tracing::info!(%peer, %reason, "child edge closed");
                self.children.remove(&peer);
                let _ = self.relay.remove_child(peer);
            }
        }
    }

    fn handle_parent_message(&mut self, bytes: Bytes) {
        let result = WireMessage::decode(bytes).and_then(|m| match m {
            WireMessage::Fragment(f) => self.reassembler.handle_fragment(f),
            _ => Ok(None),
        });
        match result {
            Ok(Some(chunk)) => self.accept_chunk(chunk, true),
            Ok(None) => {}
            Err(e) => {
                // An ordered channel that delivered a bad fragment cannot resynchronise: leave
                // this parent and let the supervisor find another.
                tracing::warn!(error = %e, "malformed data from parent; asking to be moved");
                self.stats.chunks_rejected += 1;
                self.reassembler = Reassembler::default();
                if let Some(p) = self.parent.as_mut() {
                    let parent = p.peer;
                    if let Some((edge, _)) = p.edge.take() {
                        tokio::spawn(async move { edge.close().await });
                    }
                    self.stats.connected = false;
                    self.send(PeerMessage::ParentLost { parent });
                }
            }
        }
    }

    /// Takes a chunk from the parent (`check = true`) or from the broadcaster's source.
    fn accept_chunk(&mut self, chunk: Chunk, check: bool) {
        if self.last_seq.is_some_and(|last| chunk.seq <= last) {
            return; // duplicate after a re-attach
        }
        if check {
            self.stats.chunks_received += 1;
            self.stats.bytes_received += chunk.payload.len() as u64;
            if self.stats.first_chunk_latency_ms.is_none() {
                let since = self.joined_at.map_or(0, |t| t.elapsed().as_millis() as u64);
                self.stats.first_chunk_latency_ms = Some(since);
            }
            let must = chunk.is_init() || chunk.is_end();
            if must || self.rng.random::<f64>() < self.config.verify_fraction {
                let ok = self.key.as_ref().is_some_and(|k| chunk.verify(k).is_ok());
                if !ok {
                    self.stats.chunks_rejected += 1;
                    tracing::warn!(seq = %chunk.seq, "chunk failed HMAC verification; dropped");
                    return;
                }
                self.stats.chunks_verified += 1;
            }
        }
        if let Some(last) = self.last_seq {
            self.skipped += chunk.seq.0.saturating_sub(last.0 + 1);
        }
        self.last_seq = Some(chunk.seq);
        self.stats.last_seq = Some(chunk.seq);
        if let Some(sink) = self.sink.as_mut() {
            if let Err(e) = sink.chunk(&chunk) {
                tracing::error!(error = %e, "cannot write output; stopping");
                self.end_now(Ending::Stopped);
            }
        }
        let now = self.now();
        if chunk.is_end() {
            self.end_seen = true;
            self.player.handle_end();
            self.ending = Some((Ending::StreamEnded("end of stream".into()), Instant::now()));
        } else if !chunk.is_init() && !self.broadcaster {
            self.player
                .handle_chunk(now, chunk.timestamp_ms, chunk.duration_ms);
        }
        let relayed = self.maybe_corrupt(chunk);
        if let Err(e) = self.relay.handle_chunk(now, &relayed) {
            tracing::warn!(error = %e, "relay refused a chunk");
        }
    }

    fn maybe_corrupt(&self, chunk: Chunk) -> Chunk {
        if self.config.faults.corrupt_relayed_seq != Some(chunk.seq.0) || chunk.payload.is_empty() {
            return chunk;
        }
        tracing::warn!(seq = %chunk.seq, "fault injection: corrupting this chunk for my children");
        let mut payload = chunk.payload.to_vec();
        let mid = payload.len() / 2;
        payload[mid] ^= 0xff;
        Chunk {
            payload: Bytes::from(payload),
            ..chunk
        }
    }

    async fn pump_relay(&mut self) {
        let now = self.now();
        for (peer, child) in &self.children {
            let amount = child.edge.buffered_amount().await as u64;
            let _ = self.relay.handle_buffered_amount(*peer, amount);
        }
        self.relay.handle_timeout(now);
        while let Some(t) = self.relay.poll_transmit(now) {
            let Some(child) = self.children.get(&t.child) else {
                continue;
            };
            let len = t.message.len() as u64;
            if let Err(e) = child.edge.send(t.message).await {
                tracing::debug!(child = %t.child, error = %e, "send failed");
                continue;
            }
            self.stats.bytes_sent += len;
            let amount = child.edge.buffered_amount().await as u64;
            let _ = self.relay.handle_buffered_amount(t.child, amount);
        }
        while let Some(ev) = self.relay.poll_event() {
            match ev {
                RelayEvent::GapSkipped { child, skipped } => {
                    tracing::warn!(%child, skipped, "child resumed from beyond the buffer; skipped ahead")
                }
                other => tracing::info!(event = ?other, "relay"),
            }
        }
    }

    fn report_stats(&mut self) {
        let p = self.player.stats();
        self.stats.stalls = p.stalls;
        self.stats.stalled_ms = p.stalled_ms;
        self.stats.buffer_ahead_ms = p.buffer_ahead_ms;
        self.stats.playing = p.playing;
        let _ = self.sig_out.send(PeerMessage::Stats {
            stats: self.stats.clone(),
        });
    }

    fn send(&self, msg: PeerMessage) {
        let _ = self.sig_out.send(msg);
    }

    /// Decides whether the run is over: stop and supervisor loss end at once; a stream end waits for
    /// the end chunk (bounded by a grace period) and for the children to take what is queued for them.
    async fn finished(&mut self) -> Option<Ending> {
        let (ending, since) = self.ending.clone()?;
        match ending {
            Ending::Stopped | Ending::SupervisorLost(_) => Some(ending),
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
        };
        Summary {
            peer_id: self.peer_id,
            stream: self.stream.clone(),
            ending: ending_text,
            stats: self.stats.clone(),
            chunks_skipped: self.skipped,
        }
    }
}
