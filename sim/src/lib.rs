//! A whole ownstream system on virtual time: the core's [`Registry`] (the supervisor's brain), a
//! broadcaster node and any number of receiver nodes (the core's [`Node`], the very state machine
//! the Rust peers drive), and an in-memory network between them ([`net`]) whose links have
//! latency, bandwidth and loss. Processes can crash, freeze (stop answering but keep their
//! sockets), thaw, and new ones can join at any time.
//!
//! One loop on one clock: every message, every deadline a node or the registry asks for and every
//! chunk the source releases is an event at a time; [`Sim::step`] takes the earliest. Ten
//! simulated minutes of a paper-sized tree take seconds, and a run is reproducible from its seed.
//!
//! What is modelled and what is not:
//! - signaling is the real protocol (the nodes' and the registry's messages, in order, one
//!   latency apart); the RSA handshake is a delay ([`NetConfig::connect_ms`]);
//! - an edge is set up through the nodes' real offer/answer exchange; ICE, DTLS and SCTP are a
//!   set-up time; data channels are reliable and ordered, paced by bandwidth, with loss as a
//!   retransmission delay; a channel's buffered amount is what it has not put on the wire yet;
//! - the supervisor can crash and restart ([`Sim::crash_supervisor`]), losing its registry; CPU
//!   is free: a real machine's load (what makes edges
//!   slow to open and stalls grow when 2 cores run 80 peers) is not in the model.
//!
//! [`Registry`]: ownstream_core::registry::Registry
//! [`Node`]: ownstream_core::node::Node

mod check;
mod host;
mod links;
mod media;
pub mod net;
mod recoveries;
mod source;
mod supervisor;

pub use check::Violation;
pub use host::{Delivery, EventRecord, HelloRecord, Host, HostState};
pub use media::{MediaPlan, PlannedChunk};
pub use net::{LinkConfig, NetConfig};
pub use recoveries::{Recovery, RecoveryKind};

use bytes::Bytes;
use net::{Endpoint, EpId};
use ownstream_core::frame::{ChunkSigner, SigningKey};
use ownstream_core::ids::PeerId;
use ownstream_core::latency::LatencyMode;
use ownstream_core::node::{ConnectFailure, NodeConfig};
use ownstream_core::player::PlayerConfig;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage, SignalPayload};
use ownstream_core::publish::{PublishPolicy, Scope, TokenGrant};
use ownstream_core::registry::{JoinPacing, Registry, RegistryConfig};
use ownstream_core::relay::RelayConfig;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The stream every simulation broadcasts.
pub const STREAM: &str = "sim";

/// Heartbeat interval the simulated supervisor asks for (the real one's default).
const HEARTBEAT_MS: u64 = 1000;
/// The publish token the simulated supervisor grants and its broadcaster presents.
const PUBLISH_TOKEN: &str = "simulated-publish-token";

/// Number of a host (a process) in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub usize);

/// Everything a simulation is made of.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every random choice: placement keys, node RNGs, set-up times, loss.
    pub seed: u64,
    /// The supervisor's settings.
    pub registry: RegistryConfig,
    /// The supervisor's join pacing.
    pub pacing: JoinPacing,
    /// The network.
    pub net: NetConfig,
    /// What the broadcaster streams.
    pub media: MediaPlan,
    /// Every node's relay.
    pub relay: RelayConfig,
    /// Every receiver's playback model.
    pub player: PlayerConfig,
    /// Fraction of chunks receivers verify.
    pub verify_fraction: f64,
    /// The broadcaster's latency mode (viewers learn it through the registry's `STREAM_TIMING`);
    /// the media plan should be cut to its chunk length.
    pub latency: LatencyMode,
    /// Keep a log of every host's inputs and outputs (not media) in [`Host::trace`], to find out
    /// why a scenario failed.
    pub trace: bool,
    /// Keep every node event, with its time and the node's standby then, in [`Host::events`]
    /// (to measure where a repair's time goes).
    pub record_events: bool,
    /// Whether the supervisor gives viewers standby parents (as the real one does).
    pub standby_edges: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            registry: RegistryConfig::default(),
            pacing: JoinPacing::default(),
            net: NetConfig::default(),
            media: MediaPlan::default(),
            relay: RelayConfig::default(),
            player: PlayerConfig::default(),
            verify_fraction: 1.0,
            latency: LatencyMode::Normal,
            trace: false,
            record_events: false,
            standby_edges: true,
        }
    }
}

/// What reaches a node from outside.
#[derive(Debug)]
enum NodeIn {
    Connected(u64),
    ConnectFailed(u64, ConnectFailure),
    Server(u64, ServerMessage),
    Disconnected(u64, String),
    EdgeSignal(EpId, SignalPayload),
    EdgeOpen(EpId),
    /// A message from `from`, which left it at `sent_at`.
    EdgeMessage {
        to: EpId,
        from: EpId,
        sent_at: u64,
        bytes: Bytes,
    },
    EdgeClosed(EpId, String),
}

/// What reaches the supervisor.
#[derive(Debug)]
enum SupIn {
    Auth(PeerId, u64, ComponentType),
    // Boxed: a `STATS` makes `PeerMessage` several times larger than the other events.
    Message(PeerId, u64, Box<PeerMessage>),
    Closed(PeerId, u64),
}

#[derive(Debug)]
enum Event {
    Node(HostId, u32, NodeIn),
    Sup(SupIn),
    /// A node's deadline (ignored unless it is still the one the node asked for).
    Wake(HostId, u32),
    SupWake,
    /// Deliver what the registry said after the caller acted on it.
    SupFlush,
    /// The source's next chunk is due.
    Source,
    /// The remote of this endpoint went silent at the time given: close it if it still is.
    Silence(EpId),
}

/// The simulation: see the crate docs.
pub struct Sim {
    config: SimConfig,
    now: u64,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    registry: Registry,
    sup_wake: Option<u64>,
    /// The current supervisor connection of each peer.
    sup_conns: HashMap<PeerId, u64>,
    sup_down: bool,
    next_conn: u64,
    hosts: Vec<Host>,
    by_peer: HashMap<PeerId, HostId>,
    endpoints: HashMap<EpId, Endpoint>,
    next_ep: u64,
    links: HashMap<(HostId, HostId), LinkConfig>,
    source: Option<Source>,
    /// The broadcaster's signing key (the latest broadcaster's).
    signing: Option<SigningKey>,
    /// When each edge set-up under way ends (for [`NetConfig::edge_setup_load_ms`]).
    setups_until: Vec<u64>,
}

/// The broadcaster's source while it runs.
struct Source {
    host: HostId,
    signer: ChunkSigner,
    /// When media chunk 0 was released, and its stream timestamp.
    start: u64,
    next: u64,
    stopped: bool,
}

/// A supervisor's empty registry. The broadcaster goes live as on a real supervisor: with the
/// operator's publish token (a restarted supervisor is configured alike).
fn new_registry(
    config: RegistryConfig,
    pacing: JoinPacing,
    standby: bool,
    seed: [u8; 32],
) -> Registry {
    let mut registry = Registry::new(config, seed);
    registry.set_join_pacing(pacing);
    registry.set_standby_edges(standby);
    registry.set_publish_policy(PublishPolicy::new(
        &[TokenGrant {
            scope: Scope::AnyStream,
            token: PUBLISH_TOKEN.into(),
        }],
        &[],
    ));
    registry
}

impl Sim {
    /// An empty world at time 0.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let registry = new_registry(
            config.registry,
            config.pacing,
            config.standby_edges,
            rng.random(),
        );
        Self {
            config,
            now: 0,
            rng,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            registry,
            sup_wake: None,
            sup_conns: HashMap::new(),
            sup_down: false,
            next_conn: 0,
            hosts: Vec::new(),
            by_peer: HashMap::new(),
            endpoints: HashMap::new(),
            next_ep: 0,
            links: HashMap::new(),
            source: None,
            signing: None,
            setups_until: Vec::new(),
        }
    }

    /// Virtual time, ms.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The supervisor's registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The supervisor's registry, to act on it as the operator would (failure runs, kills); the
    /// simulator delivers what it says as soon as the next event is handled.
    pub fn registry_mut(&mut self) -> &mut Registry {
        self.schedule(self.now, Event::SupFlush);
        &mut self.registry
    }

    /// A host.
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.0]
    }

    /// Every host ever started, by id.
    pub fn hosts(&self) -> impl Iterator<Item = (HostId, &Host)> {
        self.hosts.iter().enumerate().map(|(i, h)| (HostId(i), h))
    }

    /// The host of a peer.
    pub fn host_of(&self, peer: PeerId) -> Option<HostId> {
        self.by_peer.get(&peer).copied()
    }

    /// Uses `link` for the edges between hosts `a` and `b`, both ways.
    pub fn set_link(&mut self, a: HostId, b: HostId, link: LinkConfig) {
        self.links.insert((a, b), link);
        self.links.insert((b, a), link);
    }

    /// Starts the broadcaster (it registers the stream and streams [`SimConfig::media`]).
    pub fn add_broadcaster(&mut self, wait_viewers: usize) -> HostId {
        let mut config = self.node_config(ComponentType::Broadcaster);
        config.wait_viewers = wait_viewers;
        let signing = SigningKey::from_seed(self.rng.random());
        config.signing_key = Some(signing.verifying_key());
        self.signing = Some(signing);
        config.publish_token = Some(PUBLISH_TOKEN.into());
        self.add_host(config)
    }

    /// Starts a receiver process: a new peer that joins the stream.
    pub fn add_receiver(&mut self) -> HostId {
        let config = self.node_config(ComponentType::Receiver);
        self.add_host(config)
    }

    fn node_config(&mut self, component: ComponentType) -> NodeConfig {
        let mut c = NodeConfig::new(component, STREAM);
        c.relay = self.config.relay;
        c.player = self.config.player;
        c.verify_fraction = self.config.verify_fraction;
        if component == ComponentType::Broadcaster {
            c.latency = self.config.latency;
        }
        c.seed = self.rng.random();
        c
    }

    fn add_host(&mut self, config: NodeConfig) -> HostId {
        let id = HostId(self.hosts.len());
        let peer = PeerId::from_bytes(self.rng.random());
        self.by_peer.insert(peer, id);
        self.hosts.push(Host::new(peer, config, self.now));
        self.after_node(id);
        id
    }

    /// Kills a process: its supervisor connection closes at once (the OS resets it), its edges go
    /// silent and their remotes notice after [`NetConfig::silence_timeout_ms`].
    pub fn crash(&mut self, id: HostId) {
        self.note(id, || "crashed".into());
        if !self.hosts[id.0].is_running() && !self.hosts[id.0].is_frozen() {
            return;
        }
        self.hosts[id.0].state = HostState::Crashed;
        if let Some(conn) = self.hosts[id.0].conn.take() {
            let peer = self.hosts[id.0].peer;
            self.sup_after(SupIn::Closed(peer, conn));
        }
        self.silence_edges_of(id, true);
    }

    /// Stops a process without closing anything (SIGSTOP): it answers nothing, sends no
    /// heartbeat, and its remotes notice only by silence.
    pub fn freeze(&mut self, id: HostId) {
        self.note(id, || "frozen".into());
        if self.hosts[id.0].is_running() {
            self.hosts[id.0].state = HostState::Frozen;
            self.silence_edges_of(id, false);
        }
    }

    /// Lets a frozen process go on: it handles everything that reached it meanwhile, in order.
    pub fn thaw(&mut self, id: HostId) {
        self.note(id, || "thawed".into());
        if !self.hosts[id.0].is_frozen() {
            return;
        }
        self.hosts[id.0].state = HostState::Running;
        // Deadlines that passed while frozen were skipped: ask for the next one afresh.
        self.hosts[id.0].wake = None;
        for input in std::mem::take(&mut self.hosts[id.0].held) {
            self.node_input(id, input);
        }
        self.after_node(id);
    }

    /// Stops the broadcaster's source: the end chunk goes out now.
    pub fn end_stream(&mut self) {
        if let Some(s) = self.source.as_mut() {
            s.stopped = true;
        }
        self.release_end();
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: u64) {
        while self.next_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Runs until `done` holds (checked after every event) or `limit` ms passed; whether it held.
    pub fn run_while_not(&mut self, limit: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        let until = self.now + limit;
        while !done(self) {
            match self.next_time() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => {
                    self.now = until;
                    return done(self);
                }
            }
        }
        true
    }

    fn next_time(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    /// Handles the earliest event; false if there is none.
    pub fn step(&mut self) -> bool {
        let Some(Reverse((at, n))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let Some(event) = self.events.remove(&n) else {
            return true;
        };
        match event {
            Event::Node(id, incarnation, input) => {
                if self.hosts[id.0].incarnation == incarnation {
                    self.node_input(id, input);
                    self.after_node(id);
                }
            }
            Event::Sup(input) => self.sup_input(input),
            Event::Wake(id, incarnation) => self.wake(id, incarnation, at),
            Event::SupWake => {
                if self.sup_wake == Some(at) && !self.sup_down {
                    self.sup_wake = None;
                    self.registry.handle_timeout(self.now);
                    self.flush_registry();
                }
            }
            Event::SupFlush if !self.sup_down => self.flush_registry(),
            Event::SupFlush => {}
            Event::Source => self.release_next(),
            Event::Silence(ep) => self.silence(ep),
        }
        true
    }

    /// Adds to a host's trace, if tracing.
    pub(crate) fn note(&mut self, id: HostId, what: impl FnOnce() -> String) {
        if self.config.trace {
            let line = format!("{} {}", self.now, what());
            self.hosts[id.0].trace.push(line);
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        let n = self.next_event;
        self.next_event += 1;
        self.events.insert(n, event);
        self.queue.push(Reverse((at.max(self.now), n)));
    }

    fn deliver_to(&mut self, at: u64, id: HostId, input: NodeIn) {
        let incarnation = self.hosts[id.0].incarnation;
        self.schedule(at, Event::Node(id, incarnation, input));
    }

    fn sup_after(&mut self, input: SupIn) {
        let at = self.now + self.config.net.signaling_latency_ms;
        self.schedule(at, Event::Sup(input));
    }
}
