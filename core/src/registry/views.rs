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

    /// Number of authenticated peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}
