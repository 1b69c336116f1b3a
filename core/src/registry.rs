//! The supervisor's decisions for authenticated peers: the stream registry, one topology per stream,
//! which signaling may pass, and how the tree is repaired when a peer leaves or fails.
//!
//! The shell feeds `handle_*` and drains [`Registry::poll_output`]; it never decides anything itself.
//!
//! Invariants:
//! - a stream exists exactly while its broadcaster is connected and has not ended it;
//! - every viewer of a stream is in that stream's topology, and is in at most one stream;
//! - signaling passes only between a parent and its child in the current topology;
//! - a repair sends `SET_PARENT` to each moved child before `CONNECT_CHILD` to its new parent, so the
//!   child knows whom to expect before the offer arrives (both travel over ordered WebSockets, and the
//!   offer goes through the supervisor after `CONNECT_CHILD`);
//! - a peer silent for longer than the heartbeat timeout is treated as failed.

use crate::failures::Run;
use crate::ids::PeerId;
use crate::protocol::{
    validate_stream_name, Agent, ComponentType, PeerMessage, PeerStats, ServerMessage, StreamInfo,
    TopologyName,
};
use crate::topology::{Topology, TopologyKind};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};

mod runs;
pub use runs::{Counters, RunError};

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
        RegistryConfig {
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

/// One node of a stream's tree, for the HTTP API and the monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    /// The peer.
    pub id: PeerId,
    /// Its parent; `None` for the broadcaster.
    pub parent: Option<PeerId>,
    /// Hops from the broadcaster.
    pub depth: usize,
    /// `broadcaster` or `receiver`.
    pub kind: ComponentType,
    /// `native` (a Rust peer) or `browser` (a tab).
    pub agent: Agent,
}

/// A stream's whole topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeView {
    /// Stream name.
    pub name: String,
    /// Every node, breadth-first from the broadcaster.
    pub nodes: Vec<TreeNode>,
}

struct PeerEntry {
    component: ComponentType,
    agent: Agent,
    last_seen_ms: u64,
    stream: Option<String>,
    waiting_for: Option<String>,
    stats: Option<PeerStats>,
}

struct StreamEntry {
    key: [u8; 32],
    broadcaster: PeerId,
    topology: Topology,
    started_at_ms: u64,
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
}

impl Registry {
    /// An empty registry; `seed` drives stream key generation (the shell seeds it from the OS).
    pub fn new(config: RegistryConfig, seed: [u8; 32]) -> Self {
        Registry {
            config,
            peers: HashMap::new(),
            streams: BTreeMap::new(),
            outputs: VecDeque::new(),
            rng: StdRng::from_seed(seed),
            runs: Vec::new(),
            next_run: 1,
            counters: Counters::default(),
        }
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
        if self.peers.contains_key(&peer) {
            return false;
        }
        self.peers.insert(
            peer,
            PeerEntry {
                component,
                agent: Agent::Native,
                last_seen_ms: now_ms,
                stream: None,
                waiting_for: None,
                stats: None,
            },
        );
        true
    }

    /// A message from an authenticated peer.
    pub fn handle_message(&mut self, now_ms: u64, from: PeerId, msg: PeerMessage) {
        let Some(entry) = self.peers.get_mut(&from) else {
            return;
        };
        entry.last_seen_ms = now_ms;
        let component = entry.component;
        match msg {
            PeerMessage::Heartbeat {} => {}
            PeerMessage::ListStreams {} => {
                let streams = self.streams();
                self.send(from, ServerMessage::StreamList { streams });
            }
            PeerMessage::Stats { stats } => self.handle_stats(now_ms, from, stats),
            PeerMessage::RegisterStream { stream } if component == ComponentType::Broadcaster => {
                self.register(now_ms, from, stream)
            }
            PeerMessage::JoinStream { stream, wait } if component == ComponentType::Receiver => {
                self.join(from, stream, wait)
            }
            PeerMessage::Signal { to, payload } => self.relay_signal(from, to, payload),
            PeerMessage::ParentLost { parent } => self.parent_lost(now_ms, from, parent),
            PeerMessage::EndStream {} if component == ComponentType::Broadcaster => {
                self.end_stream_of(from, "the broadcaster ended the stream");
            }
            other => self.refuse(
                from,
                "not_allowed",
                format!("{} is not allowed for a {:?}", other.name(), component),
                true,
            ),
        }
    }

    /// A peer's connection closed (or the shell gave up on it).
    pub fn handle_disconnected(&mut self, now_ms: u64, peer: PeerId) {
        let Some(entry) = self.peers.remove(&peer) else {
            return;
        };
        let Some(stream) = entry.stream else { return };
        if entry.component == ComponentType::Broadcaster {
            self.end_stream(&stream, "the broadcaster disconnected");
        } else {
            self.counters.leaves += 1;
            self.remove_viewer(now_ms, &stream, peer);
        }
    }

    /// Fails every peer whose heartbeat is overdue, and drives the failure runs.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.drive_runs(now_ms);
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
        heartbeats.chain(runs).min()
    }

    /// Live streams, by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.streams
            .iter()
            .map(|(name, s)| StreamInfo {
                name: name.clone(),
                topology: self.config.topology,
                viewers: s.topology.len(),
                live: true,
                ready: s
                    .topology
                    .nodes()
                    .iter()
                    .filter(|n| {
                        self.peers
                            .get(&n.peer)
                            .and_then(|e| e.stats.as_ref())
                            .is_some_and(|st| st.connected)
                    })
                    .count(),
            })
            .collect()
    }

    /// When a stream went live, in the shell's milliseconds.
    pub fn started_at_ms(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).map(|s| s.started_at_ms)
    }

    /// A stream's topology, breadth-first.
    pub fn tree(&self, stream: &str) -> Option<TreeView> {
        let s = self.streams.get(stream)?;
        let nodes = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| TreeNode {
                id: n.peer,
                parent: n.parent,
                depth: n.depth as usize,
                kind: if n.parent.is_none() {
                    ComponentType::Broadcaster
                } else {
                    ComponentType::Receiver
                },
                agent: self.peers.get(&n.peer).map_or(Agent::Native, |e| e.agent),
            })
            .collect();
        Some(TreeView {
            name: stream.to_string(),
            nodes,
        })
    }

    /// The latest stats a peer reported.
    pub fn stats(&self, peer: PeerId) -> Option<&PeerStats> {
        self.peers.get(&peer)?.stats.as_ref()
    }

    /// Number of authenticated peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn send(&mut self, to: PeerId, msg: ServerMessage) {
        if matches!(msg, ServerMessage::Joined { .. }) {
            self.counters.joins += 1;
        }
        self.outputs.push_back(Output::Send(to, msg));
    }

    fn refuse(&mut self, to: PeerId, code: &str, message: String, fatal: bool) {
        self.send(
            to,
            ServerMessage::Error {
                code: code.to_string(),
                message: message.clone(),
                fatal,
            },
        );
        if fatal {
            self.peers.remove(&to);
            self.outputs.push_back(Output::Close(to, message));
        }
    }

    fn register(&mut self, now_ms: u64, from: PeerId, stream: String) {
        if let Err(e) = validate_stream_name(&stream) {
            return self.refuse(from, "bad_stream_name", e.to_string(), false);
        }
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
                broadcaster: from,
                topology: Topology::new(kind, from),
                started_at_ms: now_ms,
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
            self.place_viewer(&stream, viewer);
        }
    }

    fn join(&mut self, from: PeerId, stream: String, wait: bool) {
        if let Err(e) = validate_stream_name(&stream) {
            return self.refuse(from, "bad_stream_name", e.to_string(), false);
        }
        let busy = self
            .peers
            .get(&from)
            .is_some_and(|e| e.stream.is_some() || e.waiting_for.is_some());
        if busy {
            return self.refuse(
                from,
                "already_joined",
                "this peer already joined a stream".into(),
                false,
            );
        }
        if self.streams.contains_key(&stream) {
            self.place_viewer(&stream, from);
        } else if wait {
            if let Some(e) = self.peers.get_mut(&from) {
                e.waiting_for = Some(stream.clone());
            }
            self.send(from, ServerMessage::StreamWaiting { stream });
        } else {
            self.refuse(
                from,
                "stream_not_found",
                format!("no live stream named `{stream}`"),
                false,
            );
        }
    }

    fn place_viewer(&mut self, stream: &str, viewer: PeerId) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let Ok(placement) = s.topology.join(viewer) else {
            return;
        };
        let (parent, depth) = (placement.parent, placement.depth as usize);
        let key = B64.encode(s.key);
        if let Some(e) = self.peers.get_mut(&viewer) {
            e.waiting_for = None;
            e.stream = Some(stream.to_string());
        }
        self.send(
            viewer,
            ServerMessage::Joined {
                stream: stream.to_string(),
                key,
                parent,
                depth,
            },
        );
        self.send(
            parent,
            ServerMessage::ConnectChild {
                stream: stream.to_string(),
                child: viewer,
            },
        );
    }

    fn relay_signal(&mut self, from: PeerId, to: PeerId, payload: crate::protocol::SignalPayload) {
        let neighbours = self
            .peers
            .get(&from)
            .and_then(|e| e.stream.as_ref())
            .and_then(|name| self.streams.get(name))
            .is_some_and(|s| {
                s.topology.parent(to) == Some(from) || s.topology.parent(from) == Some(to)
            });
        if neighbours {
            self.send(to, ServerMessage::Signal { from, payload });
        }
        // Otherwise the edge was re-wired while this was in flight: a stale candidate or answer
        // for an edge that no longer exists is dropped, not an error.
    }

    fn parent_lost(&mut self, now_ms: u64, child: PeerId, parent: PeerId) {
        let Some(stream) = self.peers.get(&child).and_then(|e| e.stream.clone()) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.topology.parent(child) != Some(parent) {
            return; // already repaired
        }
        // Only this edge is known to be broken; the parent may be alive for its other children.
        // Moving the child's subtree elsewhere repairs it now; a dead parent is caught by its own
        // socket closing or its heartbeat stopping.
        let before: HashMap<PeerId, Option<PeerId>> = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| (n.peer, n.parent))
            .collect();
        if let Ok(repair) = s.topology.reattach(child, parent) {
            let moved = (repair.rewired.len() + repair.rebalanced.len()) as u64;
            for (peer, new_parent) in repair.rewired.into_iter().chain(repair.rebalanced) {
                let old = before.get(&peer).copied().flatten();
                self.apply_moves(&stream, &[(peer, new_parent)], old);
            }
            self.count_repairs(now_ms, &stream, moved);
        }
    }

    fn remove_viewer(&mut self, now_ms: u64, stream: &str, viewer: PeerId) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        // Rebalanced leaves leave a live parent behind, which must drop them: remember parents.
        let before: HashMap<PeerId, Option<PeerId>> = s
            .topology
            .nodes()
            .into_iter()
            .map(|n| (n.peer, n.parent))
            .collect();
        let Ok(repair) = s.topology.remove(viewer) else {
            return;
        };
        let moved = (repair.rewired.len() + repair.rebalanced.len()) as u64;
        self.count_repairs(now_ms, stream, moved);
        self.apply_moves(stream, &repair.rewired, None);
        for (leaf, new_parent) in repair.rebalanced {
            let old = before.get(&leaf).copied().flatten();
            self.apply_moves(stream, &[(leaf, new_parent)], old);
        }
    }

    fn apply_moves(
        &mut self,
        stream: &str,
        moves: &[(PeerId, PeerId)],
        old_parent: Option<PeerId>,
    ) {
        for &(child, parent) in moves {
            if let Some(old) = old_parent {
                self.send(
                    old,
                    ServerMessage::DropChild {
                        stream: stream.to_string(),
                        child,
                    },
                );
            }
            let depth = self
                .streams
                .get(stream)
                .and_then(|s| s.topology.depth(child))
                .map_or(1, |d| d as usize);
            self.send(
                child,
                ServerMessage::SetParent {
                    stream: stream.to_string(),
                    parent,
                    depth,
                },
            );
            self.send(
                parent,
                ServerMessage::ConnectChild {
                    stream: stream.to_string(),
                    child,
                },
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
