//! The driver of a node: the core's [`ownstream_core::node::Node`] state machine, given its
//! supervisor connections, WebRTC edges, clock and output file. It decides nothing: it feeds every
//! event to the state machine, does what the state machine says, and wakes it when it asks. The
//! broadcaster and the headless receiver are the same driver with a different role.
//!
//! One task owns the state machine; the signaling connection, each edge and the media source only
//! send [`Input`]s to it. A supervisor connection and an edge are known by a number; events of a
//! connection the node dropped or replaced, and of an edge it closed, are not passed on.

mod log;

use crate::edge::{Edge, EdgeConfig, EdgeEvent, IceServerConfig, Role as EdgeRole};
use crate::signaling::{self, PeerIdentity, SignalingError, SignalingEvent};
use ownstream_core::frame::{Chunk, ChunkSigner, SigningKey};
use ownstream_core::ids::PeerId;
use ownstream_core::node::{self as core, ConnectFailure, EdgeId, Ending, Output};
use ownstream_core::player::PlayerConfig;
use ownstream_core::protocol::{
    Agent, IceTransportPolicy, PeerMessage, PeerStats, MAX_SUPERVISOR_URLS,
};
use ownstream_core::relay::RelayConfig;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

pub use ownstream_core::node::rules::MAX_ARRIVALS;

/// Where accepted chunks go besides the relay (the receiver's `--out` file).
pub trait ChunkSink: Send + Sync {
    /// A verified, in-order, non-duplicate chunk.
    fn chunk(&mut self, chunk: &Chunk) -> std::io::Result<()>;
}

/// Test and fault-injection hooks; all off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Flip a payload byte of this chunk before relaying it (the node keeps the original).
    pub corrupt_relayed_seq: Option<u64>,
    /// Flip a payload byte of this chunk and recompute its tag with the stream key before
    /// relaying it: a relay that forges chunks for its subtree.
    pub forge_relayed_seq: Option<u64>,
}

/// Settings shared by broadcaster and receiver nodes.
#[derive(Clone)]
pub struct NodeConfig {
    /// `ws://host:port/ws`, then any other supervisors to reconnect to (at least one).
    pub supervisor_urls: Vec<String>,
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
    /// Broadcaster: the Ed25519 key that signs every chunk (its public half is registered with
    /// the stream). Receivers leave it `None`.
    pub signing_key: Option<SigningKey>,
    /// Broadcaster: the supervisor operator's publish token (`--publish-token`).
    pub publish_token: Option<String>,
    /// Receiver: whether it may be given children (`receiver --no-relay`: placed as a leaf).
    pub can_relay: bool,
    /// Broadcaster: the stream's latency mode, announced to viewers (`--latency`); its source
    /// must cut chunks of [`LatencyMode::chunk_ms`](ownstream_core::latency::LatencyMode::chunk_ms).
    pub latency: ownstream_core::latency::LatencyMode,
}

/// Final statistics of a run, as written by `--stats`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// This peer.
    pub peer_id: PeerId,
    /// The stream.
    pub stream: String,
    /// Why the run ended, in words.
    pub ending: String,
    /// Why the run ended.
    #[serde(skip)]
    pub outcome: Ending,
    /// Counters.
    #[serde(flatten)]
    pub stats: PeerStats,
    /// `(seq, unix_ms)`: when each chunk reached this node (for the broadcaster: when it was
    /// released), the latest [`MAX_ARRIVALS`]. Nodes on one machine share the clock, so the
    /// experiments derive per-hop latency from these.
    pub arrivals: Vec<(u64, u64)>,
}

enum Input {
    /// The result of connection attempt number `.0`.
    Connected(u64, Result<signaling::Signaling, SignalingError>),
    /// An event of signaling connection number `.0`.
    Signal(u64, SignalingEvent),
    Edge(EdgeId, EdgeEvent),
    Source(Chunk),
    Stop,
}

/// Controls a running node from outside: stop it, feed the broadcaster's chunks, learn the key.
#[derive(Clone)]
pub struct NodeHandle {
    inputs: mpsc::UnboundedSender<Input>,
    ready: watch::Receiver<Option<ChunkSigner>>,
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
    /// the signer of the stream's chunks, or `None` if the node stopped first.
    pub async fn wait_ready(&self) -> Option<ChunkSigner> {
        let mut ready = self.ready.clone();
        let key = ready.wait_for(|k| k.is_some()).await.ok()?;
        key.clone()
    }
}

/// A node and everything it drives.
pub struct Node {
    core: core::Node,
    /// The supervisors to connect to: the configured ones, then those advertised (see
    /// [`core::Node::connect_attempt`] for which is tried when).
    urls: Vec<String>,
    identity: PeerIdentity,
    edge_config: EdgeConfig,
    /// Relay-only ICE asked for on the command line, whatever a supervisor advertises.
    relay_only: bool,
    inputs: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    /// Number of the current (or pending) supervisor connection.
    conn: u64,
    /// Where the next connection goes instead of `url` (`REDIRECT`).
    redirect: Option<String>,
    sig_out: Option<mpsc::UnboundedSender<PeerMessage>>,
    edges: HashMap<EdgeId, Arc<Edge>>,
    sink: Option<Box<dyn ChunkSink>>,
    ready: watch::Sender<Option<ChunkSigner>>,
    /// Broadcaster: the stream name and signing key, for the signer handed out at `Ready`.
    signing: Option<(String, SigningKey)>,
    started: Instant,
    ending: Option<Ending>,
}

impl Node {
    /// A node of `stream` that connects when it runs; [`Node::run`] drives it.
    pub fn new(config: NodeConfig, stream: &str) -> (Self, NodeHandle) {
        let mut c = core::NodeConfig::new(config.identity.component, stream);
        c.verify_fraction = config.verify_fraction;
        c.relay = config.relay;
        c.player = config.player;
        c.wait_viewers = config.wait_viewers;
        c.publish_token = config.publish_token;
        c.latency = config.latency;
        c.corrupt_relayed_seq = config.faults.corrupt_relayed_seq;
        c.forge_relayed_seq = config.faults.forge_relayed_seq;
        c.signing_key = config.signing_key.as_ref().map(SigningKey::verifying_key);
        c.can_relay = config.can_relay;
        c.seed = rand::random();
        let (inputs, rx) = mpsc::unbounded_channel();
        let (ready, ready_rx) = watch::channel(None);
        let node = Self {
            core: core::Node::new(c, 0),
            urls: config.supervisor_urls,
            identity: config.identity,
            relay_only: config.edge.relay_only,
            edge_config: config.edge,
            inputs: inputs.clone(),
            rx,
            conn: 0,
            redirect: None,
            sig_out: None,
            edges: HashMap::new(),
            sink: None,
            ready,
            signing: config.signing_key.clone().map(|k| (stream.to_string(), k)),
            started: Instant::now(),
            ending: None,
        };
        let handle = NodeHandle {
            inputs,
            ready: ready_rx,
        };
        (node, handle)
    }

    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id
    }

    /// Sets where accepted chunks are written (the receiver's `--out`).
    pub fn set_sink(&mut self, sink: Box<dyn ChunkSink>) {
        self.sink = Some(sink);
    }

    /// Runs until the state machine ends.
    pub async fn run(mut self) -> Summary {
        loop {
            self.apply_outputs().await;
            if let Some(ending) = self.ending.take() {
                return self.finish(ending);
            }
            let wake = self.core.poll_timeout();
            let now = self.now();
            let sleep = async {
                match wake {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = self.rx.recv() => {
                    // The node holds a sender itself, so the channel never closes while it runs.
                    if let Some(input) = input {
                        self.handle_input(input).await;
                    }
                }
                () = sleep => {
                    self.report_buffered().await;
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn handle_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Connected(conn, result) if conn == self.conn => match result {
                Ok(sig) => self.attach(sig, now),
                Err(e) => {
                    let failure = match e {
                        SignalingError::Unreachable { .. } => {
                            ConnectFailure::Unreachable(e.to_string())
                        }
                        SignalingError::Auth(_) => ConnectFailure::Refused(e.to_string()),
                        SignalingError::Busy { .. } => ConnectFailure::Busy(e.to_string()),
                    };
                    self.core.handle_connect_failed(now, failure);
                }
            },
            Input::Signal(conn, ev) if conn == self.conn => match ev {
                SignalingEvent::Message(msg) => self.core.handle_server(now, msg),
                SignalingEvent::Closed(reason) => {
                    self.sig_out = None;
                    self.core.handle_disconnected(now, &reason);
                }
            },
            // Connections the node already dropped or replaced.
            Input::Connected(..) | Input::Signal(..) => {}
            Input::Edge(edge, ev) if self.edges.contains_key(&edge) => match ev {
                EdgeEvent::Signal(payload) => self.core.handle_edge_signal(now, edge, payload),
                EdgeEvent::Open => self.core.handle_edge_open(now, edge),
                EdgeEvent::Message(bytes) => self.core.handle_edge_message(now, edge, bytes),
                EdgeEvent::Closed { reason } => {
                    self.edges.remove(&edge);
                    self.core.handle_edge_closed(now, edge, &reason);
                }
            },
            Input::Edge(..) => {}
            Input::Source(chunk) => self.core.handle_source_chunk(now, chunk),
            Input::Stop => self.core.handle_stop(now),
        }
    }

    fn attach(&mut self, sig: signaling::Signaling, now: u64) {
        self.edge_config.ice_servers = sig
            .session
            .ice_servers
            .iter()
            .map(|s| IceServerConfig {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        self.edge_config.relay_only =
            self.relay_only || sig.session.ice_transport_policy == IceTransportPolicy::Relay;
        for url in &sig.session.supervisors {
            let usable = url.starts_with("ws://") || url.starts_with("wss://");
            if usable && !self.urls.contains(url) && self.urls.len() < MAX_SUPERVISOR_URLS {
                self.urls.push(url.clone());
            }
        }
        self.sig_out = Some(sig.outgoing);
        let conn = self.conn;
        let (mut events, inputs) = (sig.events, self.inputs.clone());
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if inputs.send(Input::Signal(conn, ev)).is_err() {
                    break;
                }
            }
        });
        self.core.handle_connected(now, sig.session.heartbeat_ms);
    }

    /// Does what the state machine asks, until it has nothing more to say.
    async fn apply_outputs(&mut self) {
        while let Some(out) = self.core.poll_output() {
            let now = self.now();
            match out {
                Output::Connect => self.connect(),
                Output::Redirect(url) => self.redirect = Some(url),
                Output::Disconnect(_) => {
                    // Dropping the sender closes the socket after what is queued on it.
                    self.sig_out = None;
                    self.conn += 1;
                }
                Output::Send(msg) => {
                    if let Some(out) = &self.sig_out {
                        let _ = out.send(msg);
                    }
                }
                Output::OpenEdge {
                    edge,
                    peer,
                    offerer,
                    remote_agent,
                } => self.open_edge(edge, peer, offerer, remote_agent).await,
                Output::SignalEdge { edge, payload } => {
                    if let Some(e) = self.edges.get(&edge) {
                        if let Err(err) = e.handle_signal(payload).await {
                            tracing::warn!(%edge, error = %err, "bad signaling from the remote");
                        }
                    }
                }
                Output::CloseEdge(edge) => {
                    if let Some(e) = self.edges.remove(&edge) {
                        tokio::spawn(async move { e.close().await });
                    }
                }
                Output::Transmit { edge, message } => {
                    if let Some(e) = self.edges.get(&edge).cloned() {
                        if let Err(err) = e.send(message).await {
                            tracing::debug!(%edge, error = %err, "send failed");
                        }
                        let amount = e.buffered_amount().await as u64;
                        self.core.handle_buffered_amount(edge, amount);
                    }
                }
                Output::Deliver(chunk) => {
                    if let Some(Err(e)) = self.sink.as_mut().map(|s| s.chunk(&chunk)) {
                        self.core.handle_output_failed(now, &e.to_string());
                    }
                }
                Output::Ready(key) => {
                    if let Some((stream, signing)) = &self.signing {
                        let signer = ChunkSigner::new(stream, key, signing.clone());
                        self.ready.send_replace(Some(signer));
                    }
                }
                Output::Event(ev) => log::event(&ev),
                Output::Ended(ending) => self.ending = Some(ending),
            }
        }
    }

    fn connect(&mut self) {
        self.conn += 1;
        let attempt = self.core.connect_attempt() as usize;
        let url = (self.urls.get(attempt % self.urls.len().max(1)).cloned()).unwrap_or_default();
        // A redirect names the next connection only; later ones use the node's own list.
        let url = self.redirect.take().unwrap_or(url);
        let (conn, url, who, inputs) = (self.conn, url, self.identity.clone(), self.inputs.clone());
        tokio::spawn(async move {
            let result = signaling::connect(&url, &who).await;
            let _ = inputs.send(Input::Connected(conn, result));
        });
    }

    async fn open_edge(
        &mut self,
        edge: EdgeId,
        peer: PeerId,
        offerer: bool,
        remote_agent: Option<Agent>,
    ) {
        let role = if offerer {
            EdgeRole::Offerer
        } else {
            EdgeRole::Answerer
        };
        let (tx, rx) = mpsc::channel(1024);
        let sctp_mtu = self.edge_config.sctp_mtu_toward(remote_agent);
        let config = if sctp_mtu == self.edge_config.sctp_mtu {
            Cow::Borrowed(&self.edge_config)
        } else {
            Cow::Owned(EdgeConfig {
                sctp_mtu,
                ..self.edge_config.clone()
            })
        };
        match Edge::start(role, &config, tx).await {
            Ok(e) => {
                self.edges.insert(edge, Arc::new(e));
                let inputs = self.inputs.clone();
                tokio::spawn(async move {
                    let mut rx = rx;
                    while let Some(ev) = rx.recv().await {
                        if inputs.send(Input::Edge(edge, ev)).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot create a peer connection");
                let now = self.now();
                self.core.handle_edge_closed(
                    now,
                    edge,
                    &format!("cannot create a peer connection: {e}"),
                );
            }
        }
    }

    /// Tells the state machine how much each edge's channel still holds.
    async fn report_buffered(&mut self) {
        for (id, edge) in &self.edges {
            let amount = edge.buffered_amount().await as u64;
            self.core.handle_buffered_amount(*id, amount);
        }
    }

    fn finish(mut self, ending: Ending) -> Summary {
        self.sink = None; // flushes and closes the output
        let unix0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(self.now());
        Summary {
            peer_id: self.identity.peer_id,
            stream: self.core.config().stream.clone(),
            ending: ending.describe(),
            stats: self.core.stats(),
            arrivals: self.core.arrivals().map(|(s, t)| (s, unix0 + t)).collect(),
            outcome: ending,
        }
    }
}
