//! What a node tells its driver ([`Output`]) and what it reports for logs and pages
//! ([`NodeEvent`]).

use super::{EdgeId, Ending};
use crate::frame::{Chunk, FrameError, StreamKey};
use crate::ids::{ChunkSeq, PeerId};
use crate::protocol::{Agent, PeerMessage, SignalPayload};
use crate::relay::RelayEvent;
use bytes::Bytes;

/// What the node tells its driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a new connection to the supervisor and authenticate; answer with
    /// [`Node::handle_connected`] or [`Node::handle_connect_failed`].
    Connect,
    /// Close the current supervisor connection after what is queued on it; its later events
    /// must not reach the node.
    Disconnect(String),
    /// The next [`Output::Connect`], and only that one, goes to this URL: the supervisor that
    /// serves the stream (`REDIRECT`). Later connections go back to the node's own URL(s).
    Redirect(String),
    /// Send a message to the supervisor.
    Send(PeerMessage),
    /// Create an edge to `peer`: as the offerer (a child's edge: create the data channel and the
    /// offer) or as the answerer (the parent's edge: an offer follows in [`Output::SignalEdge`]).
    OpenEdge {
        /// The node's number for it.
        edge: EdgeId,
        /// The remote peer.
        peer: PeerId,
        /// Offerer (toward a child) or answerer (toward the parent).
        offerer: bool,
        /// What software a child runs, when the supervisor said (`CONNECT_CHILD`); `None` toward
        /// the parent. A Rust driver may send larger packets to a Rust child on loopback; the
        /// browser's cannot choose its packet size and ignores it.
        remote_agent: Option<Agent>,
    },
    /// Apply the remote's signaling (offer, answer, candidate) to an edge.
    SignalEdge {
        /// The edge.
        edge: EdgeId,
        /// What the remote sent.
        payload: SignalPayload,
    },
    /// Close an edge; no event of it may reach the node any more.
    CloseEdge(EdgeId),
    /// Send one data-channel message; then report the edge's buffered amount.
    Transmit {
        /// The edge.
        edge: EdgeId,
        /// The message.
        message: Bytes,
    },
    /// A verified chunk for the output and the player, in order.
    Deliver(Chunk),
    /// Broadcaster: the stream is registered (and the viewers it waits for are there): start the
    /// source and sign its chunks with this key.
    Ready(StreamKey),
    /// Something to log or to show.
    Event(NodeEvent),
    /// The node is done; the last output.
    Ended(Ending),
}

/// What happened, for logs and pages; the node has already acted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// Authenticated with the supervisor.
    Connected,
    /// A connection attempt failed; the next one is due at `retry_at_ms`.
    ConnectFailed {
        /// Why.
        reason: String,
        /// When the node tries again.
        retry_at_ms: u64,
    },
    /// The supervisor connection was lost; the node keeps its edges, relays and plays, and
    /// reconnects (then re-announces itself with `RESUME`).
    SupervisorLost {
        /// The close reason.
        reason: String,
    },
    /// The stream is not live yet, or (`queued`: the place in line) the supervisor is setting up
    /// as many edges as it lets run at once; the join completes when it can.
    Waiting {
        /// Place in the supervisor's line of joins (1 = next), when queued.
        queued: Option<u64>,
    },
    /// Another supervisor serves the stream: the node connects there.
    Redirected {
        /// Where.
        url: String,
    },
    /// Joined the tree under `parent`.
    Joined {
        /// The parent.
        parent: PeerId,
        /// This node's depth.
        depth: usize,
    },
    /// Moved under a new parent by a repair.
    Reattached {
        /// The new parent.
        parent: PeerId,
        /// This node's new depth.
        depth: usize,
    },
    /// Told to move (make-before-break): the current parent keeps sending until the new edge
    /// opens.
    Moving {
        /// The new parent.
        parent: PeerId,
        /// This node's new depth.
        depth: usize,
    },
    /// A supervisor took this node's re-announcement: its place in the rebuilt tree.
    Resumed {
        /// Its parent (none for the broadcaster).
        parent: Option<PeerId>,
        /// Its depth.
        depth: usize,
    },
    /// The supervisor handed a different stream key: a new broadcast under the same name, so the
    /// media state started over.
    NewBroadcast,
    /// The edge to the parent opened (HELLO sent).
    ParentOpen {
        /// The parent.
        parent: PeerId,
    },
    /// The edge to the parent closed.
    ParentClosed {
        /// The parent.
        parent: PeerId,
        /// Why, as the driver said.
        reason: String,
    },
    /// The edge to the parent did not open in time; asked to be moved.
    ParentOpenTimeout {
        /// The parent.
        parent: PeerId,
    },
    /// The parent sent bytes that are not our wire format; asked to be moved.
    MalformedFromParent {
        /// What was wrong.
        error: String,
    },
    /// The parent sent keepalives, then nothing for `silent_ms`: left as if its edge had closed.
    ParentSilent {
        /// The parent.
        parent: PeerId,
        /// How long it had been silent.
        silent_ms: u64,
    },
    /// A child sent keepalives, then nothing for the silence limit: dropped.
    ChildSilent {
        /// The child.
        child: PeerId,
    },
    /// The parent was lost (or the supervisor named the standby): the standby edge is the
    /// parent edge now.
    SwitchedToStandby {
        /// The standby, now the parent.
        parent: PeerId,
    },
    /// A child switched to this node, its standby parent (HELLO on the warm edge).
    StandbyChildSwitched {
        /// The child.
        child: PeerId,
    },
    /// HELLO was said again: nothing came from the parent yet.
    HelloRepeated,
    /// A child said HELLO (`last`: the newest chunk it holds).
    ChildHello {
        /// The child.
        child: PeerId,
        /// Its newest chunk.
        last: Option<ChunkSeq>,
    },
    /// A child sent something other than HELLO; its edge was closed.
    ChildMisbehaved {
        /// The child.
        child: PeerId,
    },
    /// A chunk failed verification and was dropped.
    ChunkRejected {
        /// Its sequence number.
        seq: ChunkSeq,
        /// The parent that sent it.
        from: Option<PeerId>,
        /// Which check failed: [`FrameError::BadTag`] (the sampled HMAC check) or
        /// [`FrameError::BadSignature`] (not the broadcaster's chunk: the sender or someone
        /// above it altered or made it).
        error: FrameError,
    },
    /// The relay refused a chunk (out of order).
    RelayRefused {
        /// Why.
        error: String,
    },
    /// Something the relay reports (a lagging child, a gap).
    Relay(RelayEvent),
    /// The supervisor refused a request (and the node went on, or ended if `fatal`).
    Refused {
        /// Its code.
        code: String,
        /// Its message.
        message: String,
        /// Whether this ended the node.
        fatal: bool,
    },
    /// The operator killed this peer.
    Killed {
        /// Why.
        reason: String,
        /// Whether it comes back as a new viewer.
        rejoin: bool,
    },
    /// The stream is ending: playing what is left.
    StreamEnding {
        /// Why.
        reason: String,
    },
    /// The stream's viewer count, from the stream list (`None`: not live).
    Viewers {
        /// Viewers in the tree.
        viewers: Option<usize>,
    },
}
