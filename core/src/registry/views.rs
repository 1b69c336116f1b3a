//! What the registry shows to the HTTP API and the monitor: live streams, a stream's tree, a peer's
//! latest stats. Read-only views; nothing here changes the registry.

use super::Registry;
use crate::ids::PeerId;
use crate::protocol::{Agent, ComponentType, PeerStats, StreamInfo};
use serde::Serialize;

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
    /// False for a viewer that cannot relay (placed as a leaf); left out when true.
    #[serde(skip_serializing_if = "is_true")]
    pub relay: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Glass-to-glass latency of the viewers at one depth ([`Registry::latency_by_depth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DepthLatency {
    /// Hops from the broadcaster.
    pub depth: usize,
    /// Median, ms.
    pub p50_ms: i64,
    /// 95th percentile, ms.
    pub p95_ms: i64,
    /// Viewers at this depth that reported a figure.
    pub viewers: usize,
}

/// A stream's whole topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeView {
    /// Stream name.
    pub name: String,
    /// Every node, breadth-first from the broadcaster.
    pub nodes: Vec<TreeNode>,
}

impl Registry {
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
                supervisor: None,
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
                relay: s.topology.relays(n.peer),
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

    /// Glass-to-glass latency (ms) of a stream's viewers from their latest reports, by depth:
    /// median, 95th percentile and count per depth (nearest-rank percentiles).
    pub fn latency_by_depth(&self, stream: &str) -> Vec<DepthLatency> {
        let Some(s) = self.streams.get(stream) else {
            return Vec::new();
        };
        let mut by_depth: std::collections::BTreeMap<usize, Vec<i64>> = Default::default();
        for n in s.topology.nodes() {
            let latency = self.stats(n.peer).and_then(|st| st.latency_ms);
            if let Some(ms) = latency {
                by_depth.entry(n.depth as usize).or_default().push(ms);
            }
        }
        by_depth
            .into_iter()
            .map(|(depth, mut v)| {
                v.sort_unstable();
                let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
                DepthLatency {
                    depth,
                    p50_ms: rank(0.5),
                    p95_ms: rank(0.95),
                    viewers: v.len(),
                }
            })
            .collect()
    }

    /// Number of authenticated peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}
