//! A host: one process running one node, and what the simulator records of it. The driver side
//! of the simulator lives here: feeding a node its inputs and doing what its outputs say, the way
//! `ownstream-peer`'s driver does with real sockets.

use crate::net::{endpoint_in, sdp_of, EpId};
use crate::{Event, HostId, NodeIn, Sim, SupIn, HEARTBEAT_MS};
use ownstream_core::frame::Chunk;
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::node::{EdgeId, Ending, Node, NodeConfig, NodeEvent, Output};
use ownstream_core::protocol::{ComponentType, SignalPayload};
use ownstream_core::relay::RelayEvent;
use rand::RngExt;
use std::collections::HashMap;

/// Whether a host runs.
#[derive(Debug)]
pub enum HostState {
    /// Handles inputs and timers.
    Running,
    /// Stopped (SIGSTOP): inputs wait, timers do not fire.
    Frozen,
    /// Killed: everything addressed to it is lost.
    Crashed,
    /// Its node ended and the process exited.
    Exited,
}

/// A chunk a node took (delivered, or for the broadcaster released).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its sequence number.
    pub seq: u64,
    /// When, ms.
    pub at: u64,
    /// Keyframe-first.
    pub keyframe: bool,
    /// The node's parent when it took the chunk, the neighbour that sent it (none at the
    /// broadcaster).
    pub from: Option<PeerId>,
}

/// A child's HELLO as its parent handled it, with what the parent's buffer held then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloRecord {
    /// When, ms.
    pub at: u64,
    /// The child.
    pub child: PeerId,
    /// The newest chunk the child held.
    pub last: Option<ChunkSeq>,
    /// The oldest media chunk in the parent's buffer.
    pub front: Option<ChunkSeq>,
}

/// A node event as recorded: when, the event, and the node's standby parent right after (with
/// whether its warm edge was open).
pub type EventRecord = (u64, NodeEvent, Option<(PeerId, bool)>);

/// One process of the simulation.
pub struct Host {
    /// Its peer id.
    pub peer: PeerId,
    /// Broadcaster or receiver.
    pub component: ComponentType,
    pub(crate) node: Node,
    pub(crate) incarnation: u32,
    /// Whether it runs.
    pub state: HostState,
    /// Inputs that reached it while frozen, in order.
    pub(crate) held: Vec<NodeIn>,
    pub(crate) conn: Option<u64>,
    pending_conn: Option<u64>,
    pub(crate) edges: HashMap<EdgeId, EpId>,
    pub(crate) wake: Option<u64>,
    /// Every chunk it took, in order.
    pub delivered: Vec<Delivery>,
    /// Every child HELLO it handled.
    pub hellos: Vec<HelloRecord>,
    /// Children its relay restarted because their queue overflowed: `(when, child)`.
    pub lagging: Vec<(u64, PeerId)>,
    /// How its node ended.
    pub ended: Option<Ending>,
    /// What it did, with [`crate::SimConfig::trace`].
    pub trace: Vec<String>,
    /// Its node's events with [`crate::SimConfig::record_events`]: when, the event, and its
    /// standby parent (and whether that edge was open) right after.
    pub events: Vec<EventRecord>,
}

impl Host {
    pub(crate) fn new(peer: PeerId, config: NodeConfig, now: u64) -> Self {
        Self {
            peer,
            component: config.component,
            node: Node::new(config, now),
            incarnation: 0,
            state: HostState::Running,
            held: Vec::new(),
            conn: None,
            pending_conn: None,
            edges: HashMap::new(),
            wake: None,
            delivered: Vec::new(),
            hellos: Vec::new(),
            lagging: Vec::new(),
            ended: None,
            trace: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Its node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Handles inputs.
    pub fn is_running(&self) -> bool {
        matches!(self.state, HostState::Running)
    }

    /// Stopped, keeping its sockets.
    pub fn is_frozen(&self) -> bool {
        matches!(self.state, HostState::Frozen)
    }

    pub(crate) fn record_delivery(&mut self, at: u64, chunk: &Chunk) {
        self.delivered.push(Delivery {
            seq: chunk.seq.0,
            at,
            keyframe: chunk.is_keyframe(),
            from: self.node.parent(),
        });
    }
}

impl Sim {
    pub(crate) fn node_input(&mut self, id: HostId, input: NodeIn) {
        if !matches!(input, NodeIn::EdgeMessage { .. }) {
            self.note(id, || format!("in {input:?}"));
        }
        let now = self.now;
        let host = &mut self.hosts[id.0];
        match host.state {
            HostState::Running => {}
            HostState::Frozen => return host.held.push(input),
            HostState::Crashed | HostState::Exited => return,
        }
        let edge_of = |ep: &EpId, eps: &HashMap<EpId, crate::net::Endpoint>| {
            eps.get(ep).filter(|e| e.alive()).map(|e| e.edge)
        };
        let n = &mut host.node;
        match input {
            NodeIn::Connected(conn) if host.pending_conn == Some(conn) => {
                host.pending_conn = None;
                host.conn = Some(conn);
                n.handle_connected(now, HEARTBEAT_MS);
            }
            NodeIn::ConnectFailed(conn, failure) if host.pending_conn == Some(conn) => {
                host.pending_conn = None;
                n.handle_connect_failed(now, failure);
            }
            NodeIn::Server(conn, msg) if host.conn == Some(conn) => n.handle_server(now, msg),
            NodeIn::Disconnected(conn, reason) if host.conn == Some(conn) => {
                host.conn = None;
                n.handle_disconnected(now, &reason);
            }
            NodeIn::Connected(_)
            | NodeIn::ConnectFailed(..)
            | NodeIn::Server(..)
            | NodeIn::Disconnected(..) => {}
            NodeIn::EdgeSignal(ep, payload) => {
                if let Some(edge) = edge_of(&ep, &self.endpoints) {
                    n.handle_edge_signal(now, edge, payload);
                }
            }
            NodeIn::EdgeOpen(ep) => {
                let remote_alive = self
                    .endpoints
                    .get(&ep)
                    .and_then(|e| e.remote)
                    .and_then(|r| self.endpoints.get(&r))
                    .is_some_and(|r| r.alive());
                if let (Some(edge), true) = (edge_of(&ep, &self.endpoints), remote_alive) {
                    if let Some(e) = self.endpoints.get_mut(&ep) {
                        e.open = true;
                    }
                    n.handle_edge_open(now, edge);
                }
            }
            NodeIn::EdgeMessage {
                to,
                from,
                sent_at,
                bytes,
            } => {
                let sender_ok = self
                    .endpoints
                    .get(&from)
                    .is_some_and(|e| e.closed_at.is_none_or(|c| c >= sent_at));
                if let (Some(edge), true) = (edge_of(&to, &self.endpoints), sender_ok) {
                    n.handle_edge_message(now, edge, bytes);
                }
            }
            NodeIn::EdgeClosed(ep, reason) => {
                if let Some(edge) = edge_of(&ep, &self.endpoints) {
                    if let Some(e) = self.endpoints.get_mut(&ep) {
                        e.closed_at = Some(now);
                    }
                    host.edges.remove(&edge);
                    n.handle_edge_closed(now, edge, &reason);
                }
            }
        }
    }

    /// Does what a host's node asked, and schedules its next deadline.
    pub(crate) fn after_node(&mut self, id: HostId) {
        if !self.hosts[id.0].is_running() {
            return;
        }
        while let Some(out) = self.hosts[id.0].node.poll_output() {
            self.apply(id, out);
        }
        let now = self.now;
        let host = &mut self.hosts[id.0];
        // A deadline already past is due now (the wake is compared with the time it fires at).
        let due = host.node.poll_timeout().map(|t| t.max(now));
        if due.is_some() && due != host.wake && host.is_running() {
            host.wake = due;
            let incarnation = host.incarnation;
            self.schedule(due.unwrap_or(0), Event::Wake(id, incarnation));
        }
    }

    pub(crate) fn wake(&mut self, id: HostId, incarnation: u32, at: u64) {
        let host = &mut self.hosts[id.0];
        if host.incarnation != incarnation || host.wake != Some(at) || !host.is_running() {
            return;
        }
        host.wake = None;
        let now = self.now;
        let edges: Vec<(EdgeId, EpId)> = host.edges.iter().map(|(e, p)| (*e, *p)).collect();
        for (edge, ep) in edges {
            if let Some(amount) = self.endpoints.get_mut(&ep).map(|e| e.buffered(now)) {
                self.hosts[id.0].node.handle_buffered_amount(edge, amount);
            }
        }
        self.hosts[id.0].node.handle_timeout(now);
        self.after_node(id);
    }

    fn apply(&mut self, id: HostId, out: Output) {
        if !matches!(out, Output::Transmit { .. } | Output::Deliver(_)) {
            self.note(id, || format!("out {out:?}"));
        }
        let now = self.now;
        let lat = self.config.net.signaling_latency_ms;
        let peer = self.hosts[id.0].peer;
        match out {
            Output::Connect => {
                self.next_conn += 1;
                let conn = self.next_conn;
                let host = &mut self.hosts[id.0];
                host.conn = None;
                host.pending_conn = Some(conn);
                let at = now + self.config.net.connect_ms;
                let component = host.component;
                self.schedule(at, Event::Sup(SupIn::Auth(peer, conn, component)));
            }
            Output::Disconnect(_) => {
                let host = &mut self.hosts[id.0];
                host.pending_conn = None;
                if let Some(conn) = host.conn.take() {
                    self.sup_after(SupIn::Closed(peer, conn));
                }
            }
            // One supervisor in the simulated world: nobody is ever redirected.
            Output::Redirect(_) => {}
            Output::Send(msg) => {
                if let Some(conn) = self.hosts[id.0].conn {
                    self.schedule(
                        now + lat,
                        Event::Sup(SupIn::Message(peer, conn, Box::new(msg))),
                    );
                }
            }
            Output::OpenEdge { edge, offerer, .. } => {
                let ep = self.new_endpoint(id, edge);
                self.hosts[id.0].edges.insert(edge, ep);
                if offerer {
                    let offer = SignalPayload::Offer { sdp: sdp_of(ep) };
                    self.deliver_to(now, id, NodeIn::EdgeSignal(ep, offer));
                }
            }
            Output::SignalEdge { edge, payload } => self.signal_edge(id, edge, payload),
            Output::CloseEdge(edge) => {
                let Some(ep) = self.hosts[id.0].edges.remove(&edge) else {
                    return;
                };
                let remote = self.endpoints.get_mut(&ep).and_then(|e| {
                    e.closed_at.get_or_insert(now);
                    e.remote
                });
                let live_remote = remote.and_then(|r| {
                    self.endpoints
                        .get(&r)
                        .filter(|e| e.alive() && e.remote == Some(ep))
                        .map(|e| (r, e.host))
                });
                if let Some((r, rh)) = live_remote {
                    let at = now + self.link(id, rh).latency_ms;
                    self.deliver_to(
                        at,
                        rh,
                        NodeIn::EdgeClosed(r, "the remote closed the edge".into()),
                    );
                }
            }
            Output::Transmit { edge, message } => self.transmit(id, edge, message),
            Output::Deliver(chunk) => self.hosts[id.0].record_delivery(now, &chunk),
            Output::Ready(key) => self.start_source(id, key),
            Output::Event(ev) => self.record_event(id, ev),
            Output::Ended(ending) => {
                let host = &mut self.hosts[id.0];
                host.ended = Some(ending);
                host.state = HostState::Exited;
            }
        }
    }

    fn signal_edge(&mut self, id: HostId, edge: EdgeId, payload: SignalPayload) {
        let now = self.now;
        let Some(ep) = self.hosts[id.0].edges.get(&edge).copied() else {
            return;
        };
        match payload {
            SignalPayload::Offer { sdp } => {
                if let (Some(remote), Some(e)) = (endpoint_in(&sdp), self.endpoints.get_mut(&ep)) {
                    e.remote = Some(remote);
                    let answer = SignalPayload::Answer { sdp: sdp_of(ep) };
                    self.deliver_to(now, id, NodeIn::EdgeSignal(ep, answer));
                }
            }
            SignalPayload::Answer { sdp } => {
                let Some(remote) = endpoint_in(&sdp) else {
                    return;
                };
                if let Some(e) = self.endpoints.get_mut(&ep) {
                    e.remote = Some(remote);
                }
                let paired = self
                    .endpoints
                    .get(&remote)
                    .filter(|r| r.alive() && r.remote == Some(ep))
                    .map(|r| r.host);
                match paired {
                    Some(rh) if self.hosts[rh.0].is_running() => {
                        let (lo, hi) = self.config.net.edge_setup_ms;
                        let base = if hi > lo {
                            self.rng.random_range(lo..=hi)
                        } else {
                            lo
                        };
                        self.setups_until.retain(|t| *t > now);
                        let load =
                            self.setups_until.len() as u64 * self.config.net.edge_setup_load_ms;
                        let setup = base + load;
                        self.setups_until.push(now + setup);
                        self.deliver_to(now + setup, id, NodeIn::EdgeOpen(ep));
                        self.deliver_to(now + setup, rh, NodeIn::EdgeOpen(remote));
                    }
                    _ => {
                        let at = now + self.config.net.silence_timeout_ms;
                        self.deliver_to(
                            at,
                            id,
                            NodeIn::EdgeClosed(ep, "ICE failed: no answer to the checks".into()),
                        );
                    }
                }
            }
            SignalPayload::Candidate { .. } => {}
        }
    }

    fn transmit(&mut self, id: HostId, edge: EdgeId, message: bytes::Bytes) {
        let now = self.now;
        let Some(ep) = self.hosts[id.0].edges.get(&edge).copied() else {
            return;
        };
        let Some(remote) = self
            .endpoints
            .get(&ep)
            .filter(|e| e.open && e.alive())
            .and_then(|e| e.remote)
        else {
            return; // a channel that is not open refuses to send
        };
        let Some(rh) = self.endpoints.get(&remote).map(|e| e.host) else {
            return;
        };
        let link = self.link(id, rh);
        let lost = link.loss > 0.0 && self.rng.random::<f64>() < link.loss;
        let Some(e) = self.endpoints.get_mut(&ep) else {
            return;
        };
        let arrival = e.send(now, message.len(), &link, lost);
        let amount = e.buffered(now);
        let input = NodeIn::EdgeMessage {
            to: remote,
            from: ep,
            sent_at: now,
            bytes: message,
        };
        self.deliver_to(arrival, rh, input);
        self.hosts[id.0].node.handle_buffered_amount(edge, amount);
    }

    fn record_event(&mut self, id: HostId, ev: NodeEvent) {
        let now = self.now;
        let host = &mut self.hosts[id.0];
        if self.config.record_events {
            let standby = host.node.standby();
            host.events.push((now, ev.clone(), standby));
        }
        match ev {
            NodeEvent::ChildHello { child, last } => {
                let front = host.node.buffered_range().map(|(f, _)| f);
                host.hellos.push(HelloRecord {
                    at: now,
                    child,
                    last,
                    front,
                });
            }
            NodeEvent::Relay(RelayEvent::ChildLagging { child, .. }) => {
                host.lagging.push((now, child))
            }
            _ => {}
        }
    }
}
