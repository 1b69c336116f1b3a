//! The supervisor's decisions for authenticated peers: the stream registry, one topology per stream,
//! which signaling may pass, how the tree is repaired when a peer leaves or fails, and how it is
//! rebuilt from the peers' re-announcements when the registry starts empty ([`rebuild`]).
//!
//! The shell feeds `handle_*` and drains [`Registry::poll_output`]; it never decides anything itself.
//!
//! Invariants:
//! - a stream exists exactly while its broadcaster is connected and has not ended it;
//! - a stream is registered only when the [`PublishPolicy`] allows its broadcaster to publish that
//!   name (a default registry allows nobody), at `REGISTER_STREAM` and at a broadcaster's `RESUME`;
//! - every viewer of a stream is in that stream's topology, and is in at most one stream (a viewer
//!   whose `RESUME` is not placed yet is in none: it waits for its stream, or for the rebuild);
//! - signaling passes only between a parent and its child in the current topology;
//! - a repair sends `SET_PARENT` to each moved child before `CONNECT_CHILD` to its new parent, so the
//!   child knows whom to expect before the offer arrives (both travel over ordered WebSockets, and the
//!   offer goes through the supervisor after `CONNECT_CHILD`);
//! - a peer silent for longer than the heartbeat timeout is treated as failed.

use crate::failures::Run;
use crate::frame::VerifyingKey;
use crate::ids::PeerId;
use crate::latency::LatencyMode;
use crate::protocol::{
    validate_stream_name, Agent, ComponentType, PeerMessage, PeerStats, ServerMessage, TopologyName,
};
use crate::publish::{PublishPolicy, PUBLISH_FORBIDDEN};
use crate::topology::{Topology, TopologyKind};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, VecDeque};

mod handoff;
mod pacing;
mod rebuild;
mod repair;
mod runs;
mod standby;
mod views;
pub use pacing::{JoinPacing, FAST_SETUP_MS, SETUP_SLOT_MS};
pub use rebuild::SETTLE_MS;
pub use runs::{Counters, RunError};
pub use standby::{replan_interval_ms, MAX_STANDBY_CHILDREN, OVERFULL_GRACE_MS};
pub use views::{DepthLatency, TreeNode, TreeView};

/// Settings for every stream.
#[derive(Clone, Copy, Debug)]
pub struct RegistryConfig {
    /// Tree or chain.
    pub topology: TopologyName,
    /// Children per node in a tree.
    pub fanout: usize,
    /// A peer silent this long is failed.
    pub heartbeat_timeout_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            topology: TopologyName::Tree,
            fanout: 2,
            heartbeat_timeout_ms: 3000,
        }
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a message to a connected peer.
    Send(PeerId, ServerMessage),
    /// Close a peer's connection with a reason (after sending anything queued before it).
    Close(PeerId, String),
}

struct PeerEntry {
    component: ComponentType,
    agent: Agent,
    /// Fingerprint of the key it authenticated with, for the publish policy's key allow-list.
    key_fingerprint: Option<String>,
    last_seen_ms: u64,
    stream: Option<String>,
    waiting_for: Option<String>,
    /// A `RESUME` not yet given its place (then `waiting_for` names its stream).
    claim: Option<rebuild::Claim>,
    stats: Option<PeerStats>,
    /// Whether it may be given children (`relay` of its `JOIN_STREAM` or `RESUME`).
    relays: bool,
}

struct StreamEntry {
    key: [u8; 32],
    /// The broadcaster's public key, bound at registration: viewers accept only its chunks.
    signing_key: VerifyingKey,
    broadcaster: PeerId,
    topology: Topology,
    started_at_ms: u64,
    /// While the tree is rebuilt from re-announcements.
    rebuild: Option<rebuild::Rebuild>,
    /// The viewers' standby parents ([`standby`]).
    standbys: standby::Standbys,
    /// The broadcaster's latest `STREAM_TIMING` (latency mode, epoch); none yet: viewers are
    /// told nothing (they keep what they knew, or the normal mode).
    timing: Option<(LatencyMode, Option<i64>)>,
}

/// The supervisor's registry of peers and streams.
pub struct Registry {
    config: RegistryConfig,
    peers: HashMap<PeerId, PeerEntry>,
    streams: BTreeMap<String, StreamEntry>,
    outputs: VecDeque<Output>,
    rng: StdRng,
    runs: Vec<Run>,
    next_run: u64,
    counters: Counters,
    publish: PublishPolicy,
    /// Edge set-ups under way and joins waiting for a slot.
    pacing: pacing::Pacing,
    /// The latest time an input brought (set-ups are stamped with it).
    clock_ms: u64,
    /// Whether viewers are given standby parents ([`Registry::set_standby_edges`]).
    standby_edges: bool,
    /// Added to `now_ms` in `CLOCK` answers, so peers see the supervisor's wall clock.
    clock_base_ms: u64,
}

impl Registry {
    /// An empty registry; `seed` drives stream key generation (the shell seeds it from the OS).
    /// Nobody may publish until [`Registry::set_publish_policy`] says who may.
    pub fn new(config: RegistryConfig, seed: [u8; 32]) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            streams: BTreeMap::new(),
            outputs: VecDeque::new(),
            rng: StdRng::from_seed(seed),
            runs: Vec::new(),
            next_run: 1,
            counters: Counters::default(),
            publish: PublishPolicy::default(),
            pacing: pacing::Pacing::new(JoinPacing::default()),
            clock_ms: 0,
            standby_edges: false,
            clock_base_ms: 0,
        }
    }

    /// What `CLOCK` answers add to `now_ms`: the shell passes the Unix time (ms) at which its
    /// `now_ms` clock read 0, so every supervisor of a cluster (and a restarted one) answers on
    /// the same wall clock and the viewers' offsets stay comparable.
    pub fn set_clock_base(&mut self, base_ms: u64) {
        self.clock_base_ms = base_ms;
    }

    /// Who may publish from now on (streams already live stay live).
    pub fn set_publish_policy(&mut self, policy: PublishPolicy) {
        self.publish = policy;
    }

    /// How many edges may be set up at once and how many joins may wait for one (see
    /// [`JoinPacing`]); set it before peers join (set-ups under way are forgotten).
    pub fn set_join_pacing(&mut self, limits: JoinPacing) {
        self.pacing = pacing::Pacing::new(limits);
    }

    /// Edges being set up for joins and moves, the pacing window, and joins queued for a slot.
    pub fn join_pacing_load(&self) -> (usize, usize, usize) {
        self.pacing.load()
    }

    /// Standby edges being set up (paced in what joins leave of the window).
    pub fn standby_setups(&self) -> usize {
        self.pacing.standby_load()
    }

    /// The publish policy, to grant more (an in-process broadcaster's token).
    pub fn publish_policy_mut(&mut self) -> &mut PublishPolicy {
        &mut self.publish
    }

    /// Records the fingerprint of the key an authenticated peer proved it holds (from its
    /// handshake), which the publish policy's key allow-list matches.
    pub fn set_key_fingerprint(&mut self, peer: PeerId, fingerprint: String) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.key_fingerprint = Some(fingerprint);
        }
    }

    /// Records whether a peer may be given children; a viewer that cannot relay is a leaf.
    fn set_relays(&mut self, peer: PeerId, relays: bool) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.relays = relays;
        }
    }

    /// Whether `peer` said it can relay (unknown peers: yes).
    pub fn relays(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_none_or(|e| e.relays)
    }

    /// What software a connected peer runs, for its parents (`CONNECT_CHILD`'s `agent`).
    fn agent_of(&self, peer: PeerId) -> Option<Agent> {
        self.peers.get(&peer).map(|e| e.agent)
    }

    /// Records what kind of software an authenticated peer runs (from its handshake).
    pub fn set_agent(&mut self, peer: PeerId, agent: Agent) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.agent = agent;
        }
    }

    /// A peer finished the handshake. A second connection claiming a connected id is refused.
    pub fn handle_authenticated(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        component: ComponentType,
    ) -> bool {
        self.clock_ms = self.clock_ms.max(now_ms);
        if self.peers.contains_key(&peer) {
            return false;
        }
        self.peers.insert(
            peer,
            PeerEntry {
                component,
                agent: Agent::Native,
                key_fingerprint: None,
                last_seen_ms: now_ms,
                stream: None,
                waiting_for: None,
                claim: None,
                stats: None,
                relays: true,
            },
        );
        true
    }

    /// A message from an authenticated peer.
    pub fn handle_message(&mut self, now_ms: u64, from: PeerId, msg: PeerMessage) {
        self.clock_ms = self.clock_ms.max(now_ms);
        let Some(entry) = self.peers.get_mut(&from) else {
            return;
        };
        entry.last_seen_ms = now_ms;
        let component = entry.component;
        let replan = !matches!(
            msg,
            PeerMessage::Heartbeat {} | PeerMessage::Stats { .. } | PeerMessage::Signal { .. }
        );
        self.handle_peer_message(now_ms, from, component, msg);
        if replan {
            self.replan_standbys(now_ms);
        }
    }

    fn handle_peer_message(
        &mut self,
        now_ms: u64,
        from: PeerId,
        component: ComponentType,
        msg: PeerMessage,
    ) {
        match msg {
            PeerMessage::Heartbeat {} => {}
            PeerMessage::ListStreams {} => {
                let streams = self.streams();
                self.send(from, ServerMessage::StreamList { streams });
            }
            PeerMessage::Stats { stats } => self.handle_stats(now_ms, from, stats),
            PeerMessage::RegisterStream {
                stream,
                signing_key,
                token,
            } if component == ComponentType::Broadcaster => {
                self.register(now_ms, from, stream, &signing_key, token.as_deref())
            }
            PeerMessage::JoinStream {
                stream,
                wait,
                relay,
            } if component == ComponentType::Receiver => {
                self.set_relays(from, relay);
                self.join(from, stream, wait);
            }
            PeerMessage::Resume {
                stream,
                parent,
                children,
                depth,
                key,
                signing_key,
                token,
                relay,
                ..
            } => {
                self.set_relays(from, relay || component == ComponentType::Broadcaster);
                let resume = rebuild::Resume {
                    stream,
                    parent,
                    children,
                    depth,
                    key,
                    signing_key,
                    token,
                };
                let broadcaster = component == ComponentType::Broadcaster;
                self.resume(now_ms, from, resume, broadcaster);
            }
            PeerMessage::Signal { to, payload } => self.relay_signal(from, to, payload),
            PeerMessage::ParentLost { parent } => self.parent_lost(now_ms, from, parent),
            PeerMessage::SwitchedParent { lost, parent } => {
                self.switched_parent(now_ms, from, lost, parent);
            }
            PeerMessage::EndStream {} if component == ComponentType::Broadcaster => {
                self.end_stream_of(from, "the broadcaster ended the stream");
            }
            PeerMessage::ClockRequest { t0 } => {
                let now_ms = now_ms.saturating_add(self.clock_base_ms);
                self.send(from, ServerMessage::Clock { t0, now_ms });
            }
            PeerMessage::StreamTiming { latency, epoch_ms }
                if component == ComponentType::Broadcaster =>
            {
                self.stream_timing(from, latency, epoch_ms);
            }
            other => {
                let message = format!("{} is not allowed for a {:?}", other.name(), component);
                self.refuse(from, "not_allowed", message.clone(), true);
                // Closing must take the peer out of its stream as any disconnection does: a
                // broadcaster's stream ends, a viewer's subtree moves to a live parent.
                self.fail_peer(now_ms, from, &message);
            }
        }
    }

    /// A peer's connection closed (or the shell gave up on it).
    pub fn handle_disconnected(&mut self, now_ms: u64, peer: PeerId) {
        self.clock_ms = self.clock_ms.max(now_ms);
        let Some(entry) = self.peers.remove(&peer) else {
            return;
        };
        self.pacing.forget(peer);
        if let Some(stream) = entry.stream {
            if entry.component == ComponentType::Broadcaster {
                self.end_stream(&stream, "the broadcaster disconnected");
            } else {
                self.counters.leaves += 1;
                self.remove_viewer(now_ms, &stream, peer);
            }
        }
        self.admit_queued();
        self.replan_standbys(now_ms);
    }

    /// Fails every peer whose heartbeat is overdue, and drives the failure runs.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.pacing.expire(now_ms);
        self.admit_queued();
        self.apply_all_standbys(now_ms);
        self.drive_runs(now_ms);
        self.rebuild_timers(now_ms);
        let limit = self.config.heartbeat_timeout_ms;
        let mut overdue: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.last_seen_ms) >= limit)
            .map(|(id, _)| *id)
            .collect();
        overdue.sort();
        for peer in overdue {
            self.fail_peer(now_ms, peer, "no heartbeat within the timeout");
        }
        self.relieve_overfull(now_ms);
        self.replan_standbys(now_ms);
    }

    /// Disconnects a peer as failed (heartbeat loss, or the operator's kill) and repairs the tree.
    pub fn fail_peer(&mut self, now_ms: u64, peer: PeerId, reason: &str) {
        if self.peers.contains_key(&peer) {
            self.handle_disconnected(now_ms, peer);
            self.outputs
                .push_back(Output::Close(peer, reason.to_string()));
        }
    }

    /// The next action for the shell.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Registry::handle_timeout`] is next due.
    pub fn poll_timeout(&self, now_ms: u64) -> Option<u64> {
        let heartbeats = self
            .peers
            .values()
            .map(|e| e.last_seen_ms + self.config.heartbeat_timeout_ms);
        let runs = self.runs.iter().filter_map(|r| r.poll_timeout(now_ms));
        heartbeats
            .chain(runs)
            .chain(self.rebuild_timeout())
            .chain(self.pacing.poll_timeout())
            .chain(self.overfull_timeout())
            .chain(self.replan_timeout())
            .min()
    }

    fn send(&mut self, to: PeerId, msg: ServerMessage) {
        if matches!(msg, ServerMessage::Joined { .. }) {
            self.counters.joins += 1;
        }
        let timing = match &msg {
            ServerMessage::Joined { stream, .. } | ServerMessage::Resumed { stream, .. } => {
                self.timing_message(stream, to)
            }
            _ => None,
        };
        self.outputs.push_back(Output::Send(to, msg));
        // Right behind its place in the tree, before any media can reach it: the viewer's
        // player must know the stream's mode before its first chunk.
        if let Some(timing) = timing {
            self.outputs.push_back(Output::Send(to, timing));
        }
    }

    /// `STREAM_TIMING` of `stream` for a viewer `to`, if its broadcaster announced one.
    fn timing_message(&self, stream: &str, to: PeerId) -> Option<ServerMessage> {
        let entry = self.streams.get(stream)?;
        let (latency, epoch_ms) = entry.timing?;
        (entry.broadcaster != to).then(|| ServerMessage::StreamTiming {
            stream: stream.to_string(),
            latency,
            epoch_ms,
        })
    }

    /// The broadcaster's `STREAM_TIMING`: kept for later viewers, passed on to every viewer now.
    fn stream_timing(&mut self, from: PeerId, latency: LatencyMode, epoch_ms: Option<i64>) {
        let Some(stream) = self.peers.get(&from).and_then(|e| e.stream.clone()) else {
            return;
        };
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if entry.broadcaster != from || entry.timing == Some((latency, epoch_ms)) {
            return;
        }
        entry.timing = Some((latency, epoch_ms));
        let mut viewers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, e)| **id != from && e.stream.as_deref() == Some(stream.as_str()))
            .map(|(id, _)| *id)
            .collect();
        viewers.sort();
        for viewer in viewers {
            let msg = ServerMessage::StreamTiming {
                stream: stream.clone(),
                latency,
                epoch_ms,
            };
            self.outputs.push_back(Output::Send(viewer, msg));
        }
    }

    /// Whether the publish policy lets `from` publish `stream`; refuses it (fatally: a broadcaster
    /// that may not publish has nothing else to do here, and every further guess then costs a
    /// new handshake) when not.
    fn may_publish(
        &mut self,
        now_ms: u64,
        from: PeerId,
        stream: &str,
        token: Option<&str>,
    ) -> bool {
        let key = self
            .peers
            .get(&from)
            .and_then(|e| e.key_fingerprint.as_deref());
        match self.publish.check(stream, token, key) {
            Ok(()) => true,
            Err(e) => {
                let message = e.to_string();
                self.refuse(from, PUBLISH_FORBIDDEN, message.clone(), true);
                self.fail_peer(now_ms, from, &message);
                false
            }
        }
    }

    /// Refuses (`already_joined`, with `message`) a peer that is in a stream or waiting for one.
    fn refused_as_busy(&mut self, from: PeerId, message: &str) -> bool {
        let busy = self
            .peers
            .get(&from)
            .is_some_and(|e| e.stream.is_some() || e.waiting_for.is_some());
        if busy {
            self.refuse(from, "already_joined", message.into(), false);
        }
        busy
    }

    /// Sends an error; with `fatal` the caller closes the connection right after.
    fn refuse(&mut self, to: PeerId, code: &str, message: String, fatal: bool) {
        self.send(
            to,
            ServerMessage::Error {
                code: code.to_string(),
                message,
                fatal,
            },
        );
    }

    fn register(
        &mut self,
        now_ms: u64,
        from: PeerId,
        stream: String,
        signing_key: &str,
        token: Option<&str>,
    ) {
        if let Err(e) = validate_stream_name(&stream) {
            return self.refuse(from, "bad_stream_name", e.to_string(), false);
        }
        if !self.may_publish(now_ms, from, &stream, token) {
            return;
        }
        let signing_key = match VerifyingKey::from_base64(signing_key) {
            Ok(k) => k,
            Err(e) => {
                return self.refuse(
                    from,
                    "bad_signing_key",
                    format!("REGISTER_STREAM needs `signing_key`, the broadcaster's Ed25519 public key (32 bytes, base64): {e}"),
                    false,
                )
            }
        };
        if self
            .peers
            .get(&from)
            .and_then(|e| e.stream.as_ref())
            .is_some()
        {
            return self.refuse(
                from,
                "already_streaming",
                "this broadcaster already has a stream".into(),
                false,
            );
        }
        if self.streams.contains_key(&stream) {
            return self.refuse(
                from,
                "stream_exists",
                format!("stream `{stream}` is already live"),
                false,
            );
        }
        let mut key = [0u8; 32];
        self.rng.fill_bytes(&mut key);
        let kind = match self.config.topology {
            TopologyName::Tree => TopologyKind::Tree {
                fanout: self.config.fanout.max(1),
            },
            TopologyName::Chain => TopologyKind::Chain,
        };
        self.streams.insert(
            stream.clone(),
            StreamEntry {
                key,
                signing_key,
                broadcaster: from,
                topology: Topology::new(kind, from),
                started_at_ms: now_ms,
                rebuild: None,
                standbys: standby::Standbys::default(),
                timing: None,
            },
        );
        if let Some(e) = self.peers.get_mut(&from) {
            e.stream = Some(stream.clone());
        }
        self.send(
            from,
            ServerMessage::StreamRegistered {
                stream: stream.clone(),
                key: B64.encode(key),
            },
        );
        let mut waiting: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| e.waiting_for.as_deref() == Some(stream.as_str()))
            .map(|(id, _)| *id)
            .collect();
        waiting.sort();
        for viewer in waiting {
            self.admit_or_queue(&stream, viewer);
        }
    }

    fn join(&mut self, from: PeerId, stream: String, wait: bool) {
        if let Err(e) = validate_stream_name(&stream) {
            return self.refuse(from, "bad_stream_name", e.to_string(), false);
        }
        if self.refused_as_busy(from, "this peer already joined a stream") {
            return;
        }
        if self.streams.contains_key(&stream) && !self.rebuilding(&stream) {
            self.admit_or_queue(&stream, from);
        } else if wait || self.rebuilding(&stream) {
            if let Some(e) = self.peers.get_mut(&from) {
                e.waiting_for = Some(stream.clone());
            }
            self.send(
                from,
                ServerMessage::StreamWaiting {
                    stream,
                    queued: None,
                },
            );
        } else {
            self.refuse(
                from,
                "stream_not_found",
                format!("no live stream named `{stream}`"),
                false,
            );
        }
    }

    fn end_stream_of(&mut self, broadcaster: PeerId, reason: &str) {
        let stream = self
            .peers
            .get_mut(&broadcaster)
            .and_then(|e| e.stream.take());
        if let Some(stream) = stream {
            self.end_stream(&stream, reason);
        }
    }

    fn end_stream(&mut self, stream: &str, reason: &str) {
        let Some(s) = self.streams.remove(stream) else {
            return;
        };
        let viewers: Vec<PeerId> = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| n.peer)
            .filter(|id| *id != s.broadcaster)
            .collect();
        for v in viewers {
            if let Some(e) = self.peers.get_mut(&v) {
                e.stream = None;
            }
            self.send(
                v,
                ServerMessage::StreamEnded {
                    stream: stream.to_string(),
                    reason: reason.to_string(),
                },
            );
        }
    }
}
