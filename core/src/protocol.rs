//! Signaling messages exchanged over the supervisor's WebSocket, as JSON text frames.
//!
//! Every message is an object whose `type` field names it. The authentication messages keep the
//! paper's names (section III.C.1); the rest are ownstream's. Both directions are closed enums, so an
//! unknown or malformed message is a decode error, which the shell answers by closing the socket with
//! the error's text. A frame longer than [`MAX_MESSAGE_LEN`] is refused before it is parsed.
//!
//! Binary values (keys, ciphertexts) travel as standard base64 with padding.

use crate::ids::{ChunkSeq, PeerId};
pub use crate::latency::LatencyMode;
use serde::{Deserialize, Serialize};

/// Largest signaling frame either side accepts, in bytes.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Longest stream name accepted; names are also restricted to a URL-safe alphabet.
pub const MAX_STREAM_NAME_LEN: usize = 64;

/// Version of this protocol, sent in `COLLECT_PEER_INFO_REQUEST`. 4: chunk format 3, whose tag and
/// signature cover the payload's SHA-256 digest (a version 3 peer would reject every chunk). 3:
/// edges use a pre-negotiated
/// data channel and the KEEPALIVE and ABORT messages, which a version 2 peer could not open or
/// would close the edge on. 2: chunks carry the broadcaster's Ed25519 signature. A peer of another
/// version is refused at the handshake, with a message that says so, instead of failing later.
pub const PROTOCOL_VERSION: u32 = 4;

/// What kind of peer is connecting (the paper's `componentType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    /// The source of one stream.
    Broadcaster,
    /// A viewer, which also relays to its children.
    Receiver,
}

/// What software a peer runs: the Rust peers, or a browser tab (receiver-web). Only shown to the
/// operator; it changes nothing in how a peer is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agent {
    /// A Rust peer (`broadcaster`, `receiver`).
    #[default]
    Native,
    /// A browser tab.
    Browser,
}

/// How a stream's viewers are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyName {
    /// A k-ary tree (binary by default, as in the paper).
    Tree,
    /// A chain: every viewer has at most one child.
    Chain,
}

/// An ICE server handed to every peer (STUN or TURN).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Which ICE candidates a peer may use (the WebRTC `iceTransportPolicy`), as the supervisor
/// advertises it in `AUTHENTICATED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceTransportPolicy {
    /// Any candidate: host, server-reflexive or relayed.
    #[default]
    All,
    /// Relayed (TURN) candidates only: every byte of every edge goes through a TURN server, so
    /// no peer learns another's address.
    Relay,
}

impl IceTransportPolicy {
    /// True for the default, which `AUTHENTICATED` leaves out.
    pub fn is_all(&self) -> bool {
        *self == Self::All
    }
}

/// Serde default of the `relay` flags: a peer that does not say can relay.
fn can_relay() -> bool {
    true
}

/// Skips a `relay` flag that holds the default, so the wire stays as before for relaying peers.
fn is_true(b: &bool) -> bool {
    *b
}

/// One live stream as listed to peers and by the HTTP API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// Tree or chain.
    pub topology: TopologyName,
    /// Viewers currently in the topology.
    pub viewers: usize,
    /// Whether the broadcaster is connected (a stream is listed only while live).
    pub live: bool,
    /// Viewers whose latest report says their parent's data channel is open.
    pub ready: usize,
    /// With several supervisors (`--cluster`): the WebSocket URL of the one that serves the
    /// stream, when it is not the one answering. Absent for a single supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<String>,
}

/// What a peer reports about itself every second.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStats {
    /// Chunks fully received (init segment included).
    pub chunks_received: u64,
    /// Chunks whose HMAC tag was checked and matched.
    pub chunks_verified: u64,
    /// Chunks whose HMAC tag did not match; they were dropped.
    pub chunks_rejected: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Payload bytes sent to children.
    pub bytes_sent: u64,
    /// Times playback ran dry after it began.
    pub stalls: u32,
    /// Milliseconds spent stalled.
    pub stalled_ms: u64,
    /// Times this peer's parent changed after its first one.
    pub repairs: u32,
    /// Chunks never received: holes a new parent's buffer no longer covered after a repair.
    pub chunks_skipped: u64,
    /// Media buffered ahead of the play position, in milliseconds.
    pub buffer_ahead_ms: u64,
    /// Whether playback is running.
    pub playing: bool,
    /// Whether the data channel from the parent is open.
    pub connected: bool,
    /// Whether the warm edge to the standby parent is open (absent while not). The supervisor
    /// paces the set-up of standby edges by it.
    #[serde(skip_serializing_if = "is_false")]
    pub standby_connected: bool,
    /// From joining to the first chunk, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_chunk_latency_ms: Option<u64>,
    /// Highest chunk sequence number held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<ChunkSeq>,
    /// Repairs completed since the previous report: from losing the parent (its channel closed,
    /// `SET_PARENT`, or a `KILL` with rejoin) to the first chunk from the new parent, in ms. At
    /// most [`MAX_REPAIR_SAMPLES`] per report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repair_times_ms: Vec<u32>,
    /// Times this peer left a parent that went silent (data-channel keepalives stopped for
    /// `SILENCE_LIMIT_MS`, see `node::rules`). Absent from peers that predate keepalives.
    #[serde(skip_serializing_if = "is_zero")]
    pub parents_silent: u32,
    /// Times this peer switched to the open warm edge of its standby parent (after losing its
    /// parent, or told to by a `SET_PARENT` naming the standby).
    #[serde(skip_serializing_if = "is_zero")]
    pub standby_switches: u32,
    /// Switches to the standby completed since the previous report: from losing the parent to
    /// the first chunk from the standby, in ms (at most [`MAX_REPAIR_SAMPLES`]); these are not
    /// in `repair_times_ms`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switch_times_ms: Vec<u32>,
    /// What each full repair in `repair_times_ms` added to this peer's delay behind the source,
    /// in ms: how much later after its release the first new chunk after the repair came than
    /// the last chunk before it, at least 0 (at most [`MAX_REPAIR_SAMPLES`]). A repair that ends
    /// before the next chunk exists adds nothing, whatever its time. Absent for repairs made
    /// before the clock offset and the stream's epoch were known, and for a `KILL` with
    /// re-join (the viewer starts over from the latest keyframe).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repair_delays_ms: Vec<u32>,
    /// The same for the switches in `switch_times_ms`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switch_delays_ms: Vec<u32>,
    /// Glass-to-glass latency: how far behind live the media on screen is, in ms (see
    /// [`crate::latency`]); absent until the clock offset and the stream's epoch are known and
    /// playback started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Most children a `RESUME` may list (the largest fanout the supervisor accepts).
pub const MAX_RESUME_CHILDREN: usize = 64;

/// Most supervisor URLs a peer keeps from `AUTHENTICATED` (the rest are ignored).
pub const MAX_SUPERVISOR_URLS: usize = 8;

/// Most repair-time samples one `STATS` report carries (the supervisor ignores the rest).
pub const MAX_REPAIR_SAMPLES: usize = 64;

/// Messages from the supervisor to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerMessage {
    /// First message on every connection: who are you?
    CollectPeerInfoRequest {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// The supervisor's public key (SPKI DER, base64).
    AuthenticationRequest {
        /// SPKI DER, base64.
        supervisor_key: String,
    },
    /// Two fresh random numbers encrypted to the peer's key (RSA-OAEP SHA-256), base64.
    AuthenticationChallengeRequest {
        /// Ciphertext, base64.
        challenge: String,
    },
    /// The challenge was answered: the peer may now use the rest of the protocol.
    Authenticated {
        /// The peer's id, as registered.
        peer_id: PeerId,
        /// Send a `HEARTBEAT` at least this often.
        heartbeat_ms: u64,
        /// ICE servers for every peer connection.
        ice_servers: Vec<IceServer>,
        /// Which candidates every peer connection may use (absent: all).
        #[serde(default, skip_serializing_if = "IceTransportPolicy::is_all")]
        ice_transport_policy: IceTransportPolicy,
        /// Other supervisors' WebSocket URLs this peer may reconnect to when this one is lost
        /// (`ws://` or `wss://`, at most [`MAX_SUPERVISOR_URLS`] are used). Absent: none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        supervisors: Vec<String>,
    },
    /// Answer to `LIST_STREAMS`.
    StreamList {
        /// Live streams.
        streams: Vec<StreamInfo>,
    },
    /// The broadcaster's stream is registered; `key` tags every chunk.
    StreamRegistered {
        /// Stream name.
        stream: String,
        /// 256-bit HMAC key, base64.
        key: String,
    },
    /// A `JOIN_STREAM` with `wait` for a stream that is not live yet, or a join queued for a
    /// set-up slot (`queued`): the join completes (`JOINED`) when it can.
    StreamWaiting {
        /// Stream name.
        stream: String,
        /// The stream is live, but edges are being set up at the pace the tree absorbs: this
        /// viewer's place in the queue of joins (1 = next) when it was queued. Absent while
        /// waiting for the stream itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued: Option<u64>,
    },
    /// The viewer joined: `key` checks chunk tags and `signing_key` their signatures; expect an
    /// offer from `parent`.
    Joined {
        /// Stream name.
        stream: String,
        /// 256-bit HMAC key, base64.
        key: String,
        /// The broadcaster's Ed25519 public key (32 bytes, base64), bound to the stream at
        /// registration: every chunk must carry its signature.
        signing_key: String,
        /// The viewer's parent.
        parent: PeerId,
        /// The viewer's depth (the broadcaster is at 0).
        depth: usize,
    },
    /// Answer to `RESUME`: the peer's place in the rebuilt tree. With `parent` equal to the one
    /// it claimed, it keeps its edge; otherwise it closes it and expects an offer from `parent`.
    /// `key` is the stream's key: a different one than the peer holds is a new broadcast.
    Resumed {
        /// Stream name.
        stream: String,
        /// 256-bit HMAC key, base64.
        key: String,
        /// The broadcaster's Ed25519 public key (base64), as in `JOINED`.
        signing_key: String,
        /// The peer's parent (absent for the broadcaster).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<PeerId>,
        /// The peer's depth (the broadcaster is at 0).
        depth: usize,
    },
    /// The viewer's parent changed (repair): expect an offer from `parent`.
    SetParent {
        /// Stream name.
        stream: String,
        /// The new parent.
        parent: PeerId,
        /// The viewer's new depth.
        depth: usize,
    },
    /// Open an edge to a new child: create a peer connection and send it an offer.
    ConnectChild {
        /// Stream name.
        stream: String,
        /// The child.
        child: PeerId,
        /// What software the child runs, as it said at its handshake (additive: absent from an
        /// older supervisor, which means unknown). A Rust parent sends larger packets to a Rust
        /// child on loopback (`peer::edge`'s SCTP MTU); a browser could not take them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<Agent>,
    },
    /// Close the edge to a child that moved elsewhere or left.
    DropChild {
        /// Stream name.
        stream: String,
        /// The child.
        child: PeerId,
    },
    /// A move of a live viewer, make-before-break (additive, from issue 12): the parent is now
    /// `parent` (expect its offer), but keep taking chunks from the current one until the new
    /// edge opens; then say HELLO on it (the newest chunk held: the switch falls on a chunk
    /// boundary) and close the old edge. A viewer without an open parent edge takes it as
    /// `SET_PARENT`. The old parent is not sent `DROP_CHILD`: the child closes that edge.
    Move {
        /// Stream name.
        stream: String,
        /// The new parent.
        parent: PeerId,
        /// The viewer's new depth.
        depth: usize,
    },
    /// The viewer's standby parent (additive, from issue 12): keep a warm edge to `standby`
    /// (expect its offer; keepalives only, no media) and switch to it at once when the parent is
    /// lost. Absent `standby`: drop the standby edge.
    Standby {
        /// Stream name.
        stream: String,
        /// The standby parent, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        standby: Option<PeerId>,
    },
    /// Open a warm edge to `child`, whose standby parent this peer is: create a peer connection
    /// and send it an offer; send keepalives only, until the child says HELLO on it (it switched:
    /// it is a child from then on) or `CONNECT_CHILD` names it (the registry moved it here).
    ConnectStandby {
        /// Stream name.
        stream: String,
        /// The child.
        child: PeerId,
        /// What software the child runs, as for `CONNECT_CHILD`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<Agent>,
    },
    /// Close the warm edge to a child whose standby parent this peer no longer is.
    DropStandby {
        /// Stream name.
        stream: String,
        /// The child.
        child: PeerId,
    },
    /// Signaling from a neighbour.
    Signal {
        /// The neighbour that sent it.
        from: PeerId,
        /// Offer, answer or candidate.
        payload: SignalPayload,
    },
    /// The stream ended; viewers should finish playing what they hold.
    StreamEnded {
        /// Stream name.
        stream: String,
        /// Why it ended.
        reason: String,
    },
    /// The operator killed this peer (failure injection): it must drop every edge at once, as a
    /// crash would, and, with `rejoin`, connect again and join the stream as a new viewer (same
    /// peer id, so its statistics continue). The supervisor closes the connection after this.
    Kill {
        /// Why, for logs.
        reason: String,
        /// Come back as a new viewer.
        rejoin: bool,
    },
    /// With several supervisors: `stream` is served by the supervisor at `url`, not this one.
    /// The peer connects there, authenticates again (it is another supervisor, with its own key)
    /// and repeats its request; this connection is closed after this message.
    Redirect {
        /// The stream the peer asked for.
        stream: String,
        /// The WebSocket URL to connect to instead.
        url: String,
    },
    /// Answer to `CLOCK_REQUEST`: the supervisor's clock when it answered (ms since the Unix
    /// epoch), so the peer can estimate its offset ([`crate::latency::ClockSync`]).
    Clock {
        /// The request's `t0`, echoed.
        t0: u64,
        /// The supervisor's clock.
        now_ms: u64,
    },
    /// The stream's latency mode and epoch, from its broadcaster: sent to a viewer right after
    /// `JOINED` or `RESUMED` (before any media reaches it), and to every viewer when it changes.
    StreamTiming {
        /// Stream name.
        stream: String,
        /// Chunk length and player buffer the broadcaster chose.
        latency: LatencyMode,
        /// Supervisor-clock time of media time 0; absent until the broadcaster released media.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch_ms: Option<i64>,
    },
    /// A request failed; `fatal` errors are followed by closing the connection.
    Error {
        /// Stable machine-readable code, e.g. `stream_not_found`.
        code: String,
        /// Plain-words explanation.
        message: String,
        /// Whether the supervisor closes the connection after this.
        fatal: bool,
    },
}

/// Messages from a peer to the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeerMessage {
    /// The peer's identity: its 128-bit id, RSA public key and kind.
    CollectPeerInfoResponse {
        /// Random UUID chosen by the peer.
        peer_id: PeerId,
        /// SPKI DER, base64.
        public_key: String,
        /// Broadcaster or receiver.
        component_type: ComponentType,
        /// Rust peer or browser tab (absent: native).
        #[serde(default)]
        agent: Agent,
    },
    /// Acknowledges the supervisor's public key.
    AuthenticationResponse {},
    /// The challenge function's result encrypted to the supervisor's key (RSA-OAEP SHA-256), base64.
    AuthenticationChallengeResponse {
        /// Ciphertext, base64.
        response: String,
    },
    /// Which streams are live?
    ListStreams {},
    /// Broadcaster only: start a stream under this name.
    RegisterStream {
        /// Stream name.
        stream: String,
        /// The broadcaster's Ed25519 public key (32 bytes, base64) that signs every chunk; the
        /// supervisor binds it to the stream and hands it to viewers. Missing or malformed: the
        /// registration is refused (`bad_signing_key`).
        #[serde(default)]
        signing_key: String,
        /// The operator's publish token (see [`crate::publish`]); absent: the broadcaster's key
        /// must be allow-listed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Receiver only: join a stream; with `wait`, a stream that is not live yet is waited for.
    JoinStream {
        /// Stream name.
        stream: String,
        /// Wait for the stream instead of failing when it is not live.
        #[serde(default)]
        wait: bool,
        /// Whether this viewer can relay to children of its own (absent: yes). A viewer that
        /// cannot (no inbound connections, a metered link) is placed as a leaf.
        #[serde(default = "can_relay", skip_serializing_if = "is_true")]
        relay: bool,
    },
    /// After reconnecting (to the same supervisor restarted, or another one), instead of
    /// `REGISTER_STREAM` or `JOIN_STREAM`: what this peer already is in `stream`, so the supervisor
    /// rebuilds the stream's tree from its peers (soft state; rules in `registry::rebuild`). The
    /// role is the handshake's `component_type`. Answered by `RESUMED`.
    Resume {
        /// The stream this peer is in.
        stream: String,
        /// The parent whose edge this peer holds (absent for the broadcaster, or a receiver whose
        /// parent's channel closed while no supervisor was reachable).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<PeerId>,
        /// The children this peer holds edges to, in the order they were attached (at most
        /// [`MAX_RESUME_CHILDREN`]).
        #[serde(default)]
        children: Vec<PeerId>,
        /// The depth the previous supervisor gave (0 for the broadcaster).
        #[serde(default)]
        depth: usize,
        /// Newest chunk held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<ChunkSeq>,
        /// Broadcaster only: the stream's HMAC key it tags chunks with (base64), so the viewers'
        /// keys stay valid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Broadcaster only: its Ed25519 public key (base64), bound to the stream again as at
        /// `REGISTER_STREAM`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_key: Option<String>,
        /// Broadcaster only: its publish token, checked as at `REGISTER_STREAM`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Receiver only: whether it can relay (absent: yes), as in `JOIN_STREAM`.
        #[serde(default = "can_relay", skip_serializing_if = "is_true")]
        relay: bool,
    },
    /// Signaling for a neighbour.
    Signal {
        /// The neighbour.
        to: PeerId,
        /// Offer, answer or candidate.
        payload: SignalPayload,
    },
    /// Liveness.
    Heartbeat {},
    /// The data channel to this viewer's parent closed: re-attach me now.
    ParentLost {
        /// The parent that vanished.
        parent: PeerId,
    },
    /// The parent `lost` was lost (its channel closed or went silent) and this viewer switched
    /// to its standby `parent` (HELLO said on the warm edge): confirm or correct it.
    SwitchedParent {
        /// The parent that was lost.
        lost: PeerId,
        /// The standby parent the viewer now takes its chunks from.
        parent: PeerId,
    },
    /// Periodic statistics.
    Stats {
        /// Latest counters.
        stats: PeerStats,
    },
    /// Broadcaster only: the stream is over.
    EndStream {},
    /// Asks for the supervisor's clock (answered by `CLOCK`); `t0` is the peer's own clock,
    /// echoed back.
    ClockRequest {
        /// The peer's clock when it sent this.
        t0: u64,
    },
    /// Broadcaster only: the stream's latency mode and epoch (supervisor clock), after
    /// `STREAM_REGISTERED` or `RESUMED` and whenever the epoch estimate moves.
    StreamTiming {
        /// Chunk length and player buffer.
        latency: LatencyMode,
        /// Supervisor-clock time of media time 0, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch_ms: Option<i64>,
    },
}

/// Why a signaling frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame is longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes is over the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge(usize),
    /// The frame is not one of the known messages.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A stream name is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid stream name: must be 1-{MAX_STREAM_NAME_LEN} characters of A-Z a-z 0-9 . _ -"
    )]
    BadStreamName,
}

impl PeerMessage {
    /// The message's wire name, for logs and error texts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CollectPeerInfoResponse { .. } => "COLLECT_PEER_INFO_RESPONSE",
            Self::AuthenticationResponse {} => "AUTHENTICATION_RESPONSE",
            Self::AuthenticationChallengeResponse { .. } => "AUTHENTICATION_CHALLENGE_RESPONSE",
            Self::ListStreams {} => "LIST_STREAMS",
            Self::RegisterStream { .. } => "REGISTER_STREAM",
            Self::JoinStream { .. } => "JOIN_STREAM",
            Self::Resume { .. } => "RESUME",
            Self::Signal { .. } => "SIGNAL",
            Self::Heartbeat {} => "HEARTBEAT",
            Self::ParentLost { .. } => "PARENT_LOST",
            Self::SwitchedParent { .. } => "SWITCHED_PARENT",
            Self::Stats { .. } => "STATS",
            Self::EndStream {} => "END_STREAM",
            Self::ClockRequest { .. } => "CLOCK_REQUEST",
            Self::StreamTiming { .. } => "STREAM_TIMING",
        }
    }

    /// Parses a text frame from a peer, enforcing the size limit first.
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        decode_bounded(text)
    }

    /// Serializes to a JSON text frame.
    pub fn encode(&self) -> String {
        // Serializing these plain data types cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(self).expect("PeerMessage serializes")
    }
}

impl ServerMessage {
    /// The message's wire name, for logs and error texts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CollectPeerInfoRequest { .. } => "COLLECT_PEER_INFO_REQUEST",
            Self::AuthenticationRequest { .. } => "AUTHENTICATION_REQUEST",
            Self::AuthenticationChallengeRequest { .. } => "AUTHENTICATION_CHALLENGE_REQUEST",
            Self::Authenticated { .. } => "AUTHENTICATED",
            Self::StreamList { .. } => "STREAM_LIST",
            Self::StreamRegistered { .. } => "STREAM_REGISTERED",
            Self::StreamWaiting { .. } => "STREAM_WAITING",
            Self::Joined { .. } => "JOINED",
            Self::Resumed { .. } => "RESUMED",
            Self::SetParent { .. } => "SET_PARENT",
            Self::ConnectChild { .. } => "CONNECT_CHILD",
            Self::DropChild { .. } => "DROP_CHILD",
            Self::Move { .. } => "MOVE",
            Self::Standby { .. } => "STANDBY",
            Self::ConnectStandby { .. } => "CONNECT_STANDBY",
            Self::DropStandby { .. } => "DROP_STANDBY",
            Self::Signal { .. } => "SIGNAL",
            Self::StreamEnded { .. } => "STREAM_ENDED",
            Self::Kill { .. } => "KILL",
            Self::Redirect { .. } => "REDIRECT",
            Self::Clock { .. } => "CLOCK",
            Self::StreamTiming { .. } => "STREAM_TIMING",
            Self::Error { .. } => "ERROR",
        }
    }

    /// Parses a text frame from the supervisor, enforcing the size limit first.
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        decode_bounded(text)
    }

    /// Serializes to a JSON text frame.
    pub fn encode(&self) -> String {
        // As for PeerMessage: plain data, serialization cannot fail.
        serde_json::to_string(self).expect("ServerMessage serializes")
    }

    /// A fatal error message.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_string(),
            message: message.into(),
            fatal: true,
        }
    }
}

fn decode_bounded<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ProtocolError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// Checks a stream name: 1-64 characters of `[A-Za-z0-9._-]`, so it is safe in URLs and logs.
pub fn validate_stream_name(name: &str) -> Result<(), ProtocolError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadStreamName)
    }
}

/// WebRTC signaling relayed between two neighbours; the JSON shape matches the browser's
/// `RTCSessionDescriptionInit` / `RTCIceCandidateInit` so JavaScript peers can pass it straight through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SignalPayload {
    /// SDP offer; the parent of an edge always offers and creates the data channel.
    Offer {
        /// Session description text.
        sdp: String,
    },
    /// SDP answer from the child.
    Answer {
        /// Session description text.
        sdp: String,
    },
    /// A trickled ICE candidate; an empty `candidate` string means end of candidates.
    Candidate {
        /// The `candidate:` attribute line.
        candidate: String,
        /// Media stream id the candidate belongs to.
        #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// Index of the m-line the candidate belongs to.
        #[serde(
            rename = "sdpMLineIndex",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        sdp_mline_index: Option<u16>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_messages_use_the_papers_names() {
        let m = ServerMessage::CollectPeerInfoRequest { protocol: 1 };
        assert_eq!(
            m.encode(),
            r#"{"type":"COLLECT_PEER_INFO_REQUEST","protocol":1}"#
        );
        let p = PeerMessage::decode(r#"{"type":"AUTHENTICATION_RESPONSE"}"#).unwrap();
        assert_eq!(p, PeerMessage::AuthenticationResponse {});
    }

    #[test]
    fn signal_payload_matches_browser_shapes() {
        let c = SignalPayload::Candidate {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""sdpMid":"0""#) && json.contains(r#""sdpMLineIndex":0"#));
        let back: SignalPayload = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let big = format!(
            r#"{{"type":"HEARTBEAT","x":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_LEN)
        );
        assert!(matches!(
            PeerMessage::decode(&big),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(matches!(
            PeerMessage::decode(r#"{"type":"BECOME_ROOT"}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(PeerMessage::decode("not json").is_err());
    }

    #[test]
    fn connect_child_names_the_childs_agent_only_when_known() {
        let id = "00000000-0000-0000-0000-000000000009";
        let old = format!(r#"{{"type":"CONNECT_CHILD","stream":"s","child":"{id}"}}"#);
        let m = ServerMessage::decode(&old).unwrap();
        assert!(matches!(m, ServerMessage::ConnectChild { agent: None, .. }));
        assert_eq!(m.encode(), old, "unknown: the field is left out");
        let native = ServerMessage::ConnectStandby {
            stream: "s".into(),
            child: PeerId::from_bytes([9; 16]),
            agent: Some(Agent::Native),
        };
        assert!(native.encode().contains(r#""agent":"native""#));
        let bad = format!(r#"{{"type":"CONNECT_CHILD","stream":"s","child":"{id}","agent":"x"}}"#);
        assert!(ServerMessage::decode(&bad).is_err());
    }

    #[test]
    fn stream_names_are_restricted() {
        assert!(validate_stream_name("demo-1.cam_2").is_ok());
        for bad in ["", "a b", "../x", "é", &"x".repeat(65)] {
            assert_eq!(validate_stream_name(bad), Err(ProtocolError::BadStreamName));
        }
    }
}
