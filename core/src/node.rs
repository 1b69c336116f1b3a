//! One peer of a stream's tree, broadcaster (the root) or receiver, as a deterministic state
//! machine: everything a node decides, none of the I/O.
//!
//! The driver (the Rust peer in `ownstream-peer`, the browser tab's port of this module, the
//! simulator) owns the sockets, the WebRTC edges, the clock and the output file. It feeds the
//! node `handle_*` inputs, each with `now_ms` (milliseconds on one monotonic clock), drains
//! [`Node::poll_output`] after every input, and calls [`Node::handle_timeout`] at
//! [`Node::poll_timeout`]. Before each timeout it reports the buffered amount of every edge it
//! holds ([`Node::handle_buffered_amount`]). Randomness (sampled verification, reconnection
//! waits) is drawn from the config's seed ([`rules::sample_unit`], [`rules::jitter`]), the same
//! numbers as the browser port's, so a run is reproducible from its inputs.
//!
//! What the node decides, each rule once (the numbers are in [`rules`]):
//! - **the supervisor connection** ([`session`]): connecting and, after a failure, reconnecting
//!   with jittered backoff, without stopping the media; the first message (`REGISTER_STREAM` or
//!   `JOIN_STREAM`, or `RESUME` after a lost connection); heartbeats, statistics
//!   and stream-list polls; which refusals and errors end the node; the operator's kill and the
//!   re-join that may follow; a broadcaster waiting for its first viewers;
//! - **the edges** ([`edges`]): the edge to the parent the supervisor named (answering its offer,
//!   HELLO and its repeat, giving up an edge that never opens, reporting a lost parent), and one
//!   edge per child (offering, routing its signaling, its HELLO, dropping a child that misbehaves);
//! - **the media** ([`media`]): reassembly, duplicates, sampled HMAC verification, holes, the
//!   playback model, delivery to the output, the relay to the children;
//! - **the end** ([`ending`]): the grace for the end chunk, the drain, the final report.
//!
//! Invariants:
//! - edge ids are never reused: events of an edge the node already replaced or closed are ignored;
//! - chunks are delivered ([`Output::Deliver`]) in strictly increasing sequence order, never twice,
//!   and only after their tag was checked when sampled (always for the init and end chunks);
//! - every hole after the first media chunk counts in `chunks_skipped`;
//! - after [`Output::Ended`] nothing more is emitted and every input is ignored.

mod edges;
mod ending;
mod liveness;
mod media;
mod output;
pub mod rules;
mod session;
mod standby;
#[cfg(test)]
mod test;
mod timing;

use crate::frame::{self, Chunk, Reassembler, StreamKey, VerifyingKey};
use crate::ids::{ChunkSeq, PeerId};
use crate::latency::{ClockSync, Epoch, LatencyMode};
use crate::player::{Player, PlayerConfig};
use crate::protocol::{ComponentType, PeerMessage, PeerStats, ServerMessage};
use crate::relay::{Relay, RelayConfig};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

pub use output::{NodeEvent, Output};

/// One edge (peer connection + data channel) of this node, numbered by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeId(pub u64);

impl fmt::Display for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "edge#{}", self.0)
    }
}

/// What a node is and how it behaves.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Broadcaster (registers the stream, is the root) or receiver.
    pub component: ComponentType,
    /// The stream to register or join.
    pub stream: String,
    /// Broadcaster: the operator's publish token, sent with `REGISTER_STREAM`.
    pub publish_token: Option<String>,
    /// Fraction of the parent's chunks whose tag is checked (init and end chunks always are).
    pub verify_fraction: f64,
    /// Relay buffer and pacing.
    pub relay: RelayConfig,
    /// Playback model.
    pub player: PlayerConfig,
    /// Broadcaster: hold the first chunk until this many viewers are connected.
    pub wait_viewers: usize,
    /// Whether a first connection that fails is retried (a page: the viewer may open the link
    /// before the supervisor is up) or ends the node (a command: a wrong URL, fingerprint or
    /// certificate should be seen at once). Later losses are always retried by receivers.
    pub retry_first_connect: bool,
    /// Ask for the stream list every [`rules::VIEWER_LIST_MS`] and report the viewer count
    /// ([`NodeEvent::Viewers`]): pages show it.
    pub list_viewers: bool,
    /// Fault injection for tests: alter this chunk's payload before relaying it (the node keeps
    /// and plays the original).
    pub corrupt_relayed_seq: Option<u64>,
    /// Fault injection for tests: alter this chunk's payload and recompute its tag with the
    /// stream key before relaying it, as a relay that holds the key can (the signature stays the
    /// broadcaster's, so children must reject it).
    pub forge_relayed_seq: Option<u64>,
    /// Broadcaster: the public key of the key that signs its chunks, sent in `REGISTER_STREAM`.
    pub signing_key: Option<VerifyingKey>,
    /// Receiver: whether it may be given children; `false` asks (`relay: false` in `JOIN_STREAM`
    /// and `RESUME`) to be placed as a leaf.
    pub can_relay: bool,
    /// Broadcaster: the latency mode it announces (its source must cut chunks to match).
    /// Receiver: the mode assumed until the stream's `STREAM_TIMING` says otherwise.
    pub latency: LatencyMode,
    /// Seed of the node's draws: which chunks are sampled, how long reconnection waits.
    pub seed: u64,
}

impl NodeConfig {
    /// The defaults for a `component` of `stream`.
    pub fn new(component: ComponentType, stream: &str) -> Self {
        Self {
            component,
            stream: stream.to_string(),
            publish_token: None,
            verify_fraction: 1.0,
            relay: RelayConfig::default(),
            player: PlayerConfig::default(),
            wait_viewers: 0,
            retry_first_connect: false,
            list_viewers: false,
            corrupt_relayed_seq: None,
            forge_relayed_seq: None,
            signing_key: None,
            can_relay: true,
            latency: LatencyMode::Normal,
            seed: 0,
        }
    }
}

/// Why a connection attempt to the supervisor failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing answered, or the connection broke before the handshake finished.
    Unreachable(String),
    /// The supervisor (or the peer's own pin) refused the handshake.
    Refused(String),
    /// The connection was made but the handshake did not finish in time: the supervisor, or this
    /// machine, is busy (a flash crowd's handshakes). Tried again even on a first connection, as
    /// a refusal for a handshake the supervisor timed out is: giving up there left 9 of 500
    /// viewers arriving at once out for good (`experiments scale`, 2 cores).
    Busy(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(r) | Self::Refused(r) | Self::Busy(r) => f.write_str(r),
        }
    }
}

/// How a node's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The stream ended normally.
    StreamEnded(String),
    /// The node was asked to stop.
    Stopped,
    /// The supervisor could not be reached or refused this peer, before it ever joined.
    ConnectFailed(String),
    /// The supervisor connection was lost or refused a request for good.
    SupervisorLost(String),
    /// The operator killed this peer without asking it to come back.
    Killed(String),
    /// The output (the receiver's file) could not be written.
    OutputFailed(String),
}

impl Ending {
    /// One line for people and for the `--stats` summary.
    pub fn describe(&self) -> String {
        match self {
            Self::StreamEnded(r) => format!("stream ended: {r}"),
            Self::Stopped => "stopped".into(),
            Self::ConnectFailed(r) => r.clone(),
            Self::SupervisorLost(r) => format!("supervisor connection lost: {r}"),
            Self::Killed(r) => format!("killed by the operator: {r}"),
            Self::OutputFailed(r) => format!("cannot write the output: {r}"),
        }
    }

    /// Whether the run failed (a command exits with an error).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::ConnectFailed(_) | Self::SupervisorLost(_) | Self::OutputFailed(_)
        )
    }
}

/// The edge to the parent the supervisor named.
#[derive(Debug)]
struct Parent {
    peer: PeerId,
    edge: Option<EdgeId>,
    open: bool,
    /// When the current wait for the edge to open began (the open limit counts from it).
    waiting_since: Option<u64>,
    /// When HELLO was last said, while nothing came back yet.
    greeted_at: Option<u64>,
    /// When the parent was last heard, once it sent a KEEPALIVE (silence is timed from here).
    heard_at: Option<u64>,
}

/// Where the node is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Live,
    /// Told the stream ended; waiting for the end chunk until `until`.
    Grace {
        until: u64,
        reason: String,
    },
    /// Letting the children take the last chunks until `until`.
    Draining {
        until: u64,
        ending: Ending,
    },
    Done,
}

/// The state machine of one peer: see the module docs.
pub struct Node {
    config: NodeConfig,
    /// Sampling draws so far ([`rules::sample_unit`]).
    sample_draws: u64,
    now_ms: u64,
    outputs: VecDeque<Output>,
    phase: Phase,
    link: session::Link,
    key: Option<StreamKey>,
    /// Receiver: the broadcaster's public key from `JOINED`; every chunk must carry its signature.
    origin: Option<VerifyingKey>,
    parent: Option<Parent>,
    /// Each child's edge (its queue and channel are the relay's).
    children: BTreeMap<PeerId, EdgeId>,
    /// Children whose HELLO came (they are sent keepalives), with when each was last heard once
    /// it sent a KEEPALIVE.
    child_heard: BTreeMap<PeerId, Option<u64>>,
    /// When keepalives were last sent to the children.
    keepalive_sent: u64,
    /// When keepalives were last sent to the parent.
    keepalive_slow_sent: u64,
    /// A make-before-break move under way (`MOVE`): the new parent's edge, opening while the
    /// current parent still sends.
    pending: Option<Parent>,
    /// The warm edge to the standby parent the supervisor planned ([`standby`]).
    standby: Option<standby::Standby>,
    /// Warm edges to the children this node is the standby parent of (not children).
    standby_children: BTreeMap<PeerId, standby::StandbyChild>,
    /// Children that switched here by a HELLO on their standby edge, until `CONNECT_CHILD`
    /// confirms them (it keeps the edge).
    promoted: BTreeSet<PeerId>,
    /// The repair under way is a switch to the standby (its time is reported apart).
    repair_by_switch: bool,
    /// Switch times (ms) measured since the last report.
    switch_times: Vec<u32>,
    next_edge: u64,
    relay: Relay,
    reassembler: Reassembler,
    player: Player,
    /// Stalls of players replaced by a new broadcast.
    player_base: (u32, u64),
    stats: PeerStats,
    last_seq: Option<ChunkSeq>,
    joined_at: Option<u64>,
    /// Since when this node has been without a parent, until its next chunk arrives.
    repair_start: Option<u64>,
    /// Parent edges in a row that did not open (see `rules::parent_open_limit_ms`).
    failed_opens: u32,
    /// Repair times (ms) measured since the last report.
    repair_times: Vec<u32>,
    /// How far behind the source's release the latest new media chunk arrived (ms), once the
    /// clock offset and the stream's epoch are known (see [`Node::chunk_late`]).
    last_late: Option<i64>,
    /// A recovery just ended (its first chunk came): whether it was a switch, and `last_late`
    /// before it. The next new media chunk tells what it added to the delay.
    delay_pending: Option<(bool, Option<i64>)>,
    /// What each recovery added to the delay behind the source (ms) since the last report:
    /// switches, then full repairs.
    switch_delays: Vec<u32>,
    repair_delays: Vec<u32>,
    /// `(seq, now_ms)` of the latest chunks received (the broadcaster: released).
    arrivals: VecDeque<(u64, u64)>,
    end_seen: bool,
    kills: u32,
    reconnects: u32,
    /// Depth the supervisor last gave (0 for the broadcaster), re-announced in `RESUME`.
    depth: usize,
    /// Offset to the supervisor's clock.
    clock: ClockSync,
    /// Broadcaster: the stream's epoch on its own clock.
    epoch: Epoch,
    /// Broadcaster: the `STREAM_TIMING` last sent on this connection.
    timing_sent: Option<(LatencyMode, Option<i64>)>,
    /// Receiver: the stream's epoch on the supervisor's clock.
    stream_epoch_ms: Option<i64>,
}

fn new_relay(config: RelayConfig) -> Relay {
    // A chunk too large to frame reaches no child; the relay reports the hole.
    Relay::new(config, |c: &Chunk| {
        frame::fragment(c, frame::FRAGMENT_LEN).unwrap_or_default()
    })
}

impl Node {
    /// A node that has done nothing yet; its first output is [`Output::Connect`].
    pub fn new(config: NodeConfig, now_ms: u64) -> Self {
        let mut node = Self {
            sample_draws: 0,
            now_ms,
            outputs: VecDeque::new(),
            phase: Phase::Live,
            link: session::Link::new(),
            key: None,
            origin: None,
            parent: None,
            children: BTreeMap::new(),
            child_heard: BTreeMap::new(),
            keepalive_sent: 0,
            keepalive_slow_sent: 0,
            pending: None,
            standby: None,
            standby_children: BTreeMap::new(),
            promoted: BTreeSet::new(),
            repair_by_switch: false,
            switch_times: Vec::new(),
            next_edge: 0,
            relay: new_relay(config.relay),
            reassembler: Reassembler::default(),
            player: Player::new(config.player),
            player_base: (0, 0),
            stats: PeerStats::default(),
            last_seq: None,
            joined_at: None,
            repair_start: None,
            failed_opens: 0,
            repair_times: Vec::new(),
            last_late: None,
            delay_pending: None,
            switch_delays: Vec::new(),
            repair_delays: Vec::new(),
            arrivals: VecDeque::new(),
            end_seen: false,
            kills: 0,
            reconnects: 0,
            depth: 0,
            clock: ClockSync::new(),
            epoch: Epoch::default(),
            timing_sent: None,
            stream_epoch_ms: None,
            config,
        };
        node.connect();
        node
    }

    /// This node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Whether this node is the stream's broadcaster.
    pub fn is_broadcaster(&self) -> bool {
        self.config.component == ComponentType::Broadcaster
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due (`None` once the node has ended).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.phase == Phase::Done {
            return None;
        }
        let ticking = matches!(self.phase, Phase::Draining { .. })
            || self.children.keys().any(|p| !self.relay.drained(*p));
        [
            self.session_timeout(),
            self.parent_timeout(),
            self.liveness_timeout(),
            self.ending_timeout(),
            self.relay.poll_timeout(),
            self.player.poll_timeout(),
            ticking.then_some(self.now_ms + rules::TICK_MS),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time passed: fires whatever is due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if !self.advance(now_ms) {
            return;
        }
        self.player.handle_timeout(self.now_ms);
        self.session_timers();
        self.parent_timers();
        self.liveness_timers();
        self.ending_timers();
        self.pump();
    }

    /// The node was asked to stop: it reports, closes everything and ends at once.
    pub fn handle_stop(&mut self, now_ms: u64) {
        if self.advance(now_ms) {
            self.finish(Ending::Stopped);
        }
    }

    /// The output could not take a delivered chunk: the node ends.
    pub fn handle_output_failed(&mut self, now_ms: u64, reason: &str) {
        if self.advance(now_ms) {
            self.finish(Ending::OutputFailed(reason.to_string()));
        }
    }

    /// The counters a peer reports (`STATS`), as of now.
    pub fn stats(&self) -> PeerStats {
        let p = self.player.stats();
        let mut stats = self.stats.clone();
        stats.stalls = self.player_base.0 + p.stalls;
        stats.stalled_ms = self.player_base.1 + p.stalled_ms;
        stats.buffer_ahead_ms = p.buffer_ahead_ms;
        stats.playing = p.playing;
        stats.connected = self.parent.as_ref().is_some_and(|p| p.open);
        stats.standby_connected = self.standby.as_ref().is_some_and(|s| s.open);
        stats.last_seq = self.last_seq;
        stats.latency_ms = self.latency_ms();
        stats
    }

    /// `(seq, now_ms)` of the latest chunks received (the broadcaster: released), at most
    /// [`rules::MAX_ARRIVALS`].
    pub fn arrivals(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.arrivals.iter().copied()
    }

    /// Times the operator killed this node (it came back each time).
    pub fn kills(&self) -> u32 {
        self.kills
    }

    /// Times the node reconnected to the supervisor after losing it.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// The current parent, if any.
    pub fn parent(&self) -> Option<PeerId> {
        self.parent.as_ref().map(|p| p.peer)
    }

    /// The current children.
    pub fn children(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.children.keys().copied()
    }

    /// The standby parent, if any, and whether its warm edge is open.
    pub fn standby(&self) -> Option<(PeerId, bool)> {
        self.standby.as_ref().map(|s| (s.peer, s.open))
    }

    /// The newest chunk held.
    pub fn last_seq(&self) -> Option<ChunkSeq> {
        self.last_seq
    }

    /// The media chunks the relay holds for children that resume: oldest and newest.
    pub fn buffered_range(&self) -> Option<(ChunkSeq, ChunkSeq)> {
        self.relay.buffered_range()
    }

    /// Moves the clock; false once the node has ended (inputs are then ignored).
    fn advance(&mut self, now_ms: u64) -> bool {
        self.now_ms = self.now_ms.max(now_ms);
        self.phase != Phase::Done
    }

    fn live(&self) -> bool {
        self.phase == Phase::Live
    }

    fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    fn event(&mut self, event: NodeEvent) {
        self.emit(Output::Event(event));
    }

    fn send(&mut self, msg: PeerMessage) {
        if self.link.is_connected() {
            self.emit(Output::Send(msg));
        }
    }

    fn new_edge(&mut self) -> EdgeId {
        self.next_edge += 1;
        EdgeId(self.next_edge)
    }

    /// A message from the supervisor on the current connection.
    pub fn handle_server(&mut self, now_ms: u64, msg: ServerMessage) {
        if !self.advance(now_ms) {
            return;
        }
        match msg {
            ServerMessage::StreamRegistered { key, .. } => self.registered(&key),
            ServerMessage::Joined {
                key,
                signing_key,
                parent,
                depth,
                ..
            } => self.joined(&key, &signing_key, parent, depth),
            ServerMessage::Resumed {
                key,
                signing_key,
                parent,
                depth,
                ..
            } => self.resumed(&key, &signing_key, parent, depth),
            ServerMessage::StreamWaiting { queued, .. } => {
                self.event(NodeEvent::Waiting { queued });
            }
            ServerMessage::SetParent { parent, depth, .. } => self.set_parent(parent, depth),
            ServerMessage::ConnectChild { child, agent, .. } => self.connect_child(child, agent),
            ServerMessage::DropChild { child, .. } => self.drop_child(child),
            ServerMessage::Move { parent, depth, .. } => self.move_to(parent, depth),
            ServerMessage::Standby { standby, .. } => self.set_standby(standby),
            ServerMessage::ConnectStandby { child, agent, .. } => {
                self.connect_standby(child, agent);
            }
            ServerMessage::DropStandby { child, .. } => self.drop_standby(child),
            ServerMessage::Signal { from, payload } => self.route_signal(from, payload),
            ServerMessage::StreamList { streams } => self.stream_list(&streams),
            ServerMessage::Kill { reason, rejoin } => self.killed(reason, rejoin),
            ServerMessage::Redirect { url, .. } => self.redirected(url),
            ServerMessage::Clock { t0, now_ms } => self.clock_reply(t0, now_ms),
            ServerMessage::StreamTiming {
                latency, epoch_ms, ..
            } => self.stream_timing(latency, epoch_ms),
            ServerMessage::StreamEnded { reason, .. } => self.stream_ended(reason),
            ServerMessage::Error {
                code,
                message,
                fatal,
            } => self.refused(code, message, fatal),
            // Handshake messages belong to the driver's handshake, before the node sees a link.
            ServerMessage::CollectPeerInfoRequest { .. }
            | ServerMessage::AuthenticationRequest { .. }
            | ServerMessage::AuthenticationChallengeRequest { .. }
            | ServerMessage::Authenticated { .. } => {}
        }
        self.pump();
    }
}
