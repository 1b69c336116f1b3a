//! The in-memory network: edges as pairs of endpoints whose data channels are reliable and
//! ordered, with a one-way latency, a bandwidth that serialises messages, and loss that costs a
//! retransmission delay (webrtc 0.21's SCTP waits at least 1 s for a lost packet, and an ordered
//! channel holds everything behind it).
//!
//! An edge is set up the way WebRTC does it, through the nodes' real signaling: the offerer's
//! endpoint writes its own id into its offer, the answerer answers with its id, and once the
//! offerer holds the answer of the endpoint that holds its offer, both open after a set-up time
//! drawn from [`NetConfig::edge_setup_ms`] (ICE, DTLS, SCTP). An endpoint whose remote dies or
//! stops answering closes after [`NetConfig::silence_timeout_ms`] (ICE consent); one the remote
//! closes on purpose closes one latency later.

use crate::HostId;
use ownstream_core::node::EdgeId;
use std::collections::VecDeque;

/// One direction of an edge.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way delay, ms.
    pub latency_ms: u64,
    /// Bytes per second on the wire; `None` is unlimited (loopback).
    pub bandwidth: Option<u64>,
    /// Probability that a message's first transmission is lost.
    pub loss: f64,
    /// What a lost message costs before its retransmission arrives, ms.
    pub retransmit_ms: u64,
}

impl Default for LinkConfig {
    /// Loopback, as in the end-to-end tests and the paper's experiments on one machine.
    fn default() -> Self {
        Self {
            latency_ms: 1,
            bandwidth: None,
            loss: 0.0,
            retransmit_ms: 1000,
        }
    }
}

/// The network's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// One-way delay between a peer and the supervisor, ms.
    pub signaling_latency_ms: u64,
    /// From opening a supervisor connection to being authenticated, ms (TCP, WebSocket and the
    /// RSA handshake's round trips).
    pub connect_ms: u64,
    /// Every edge's links, unless [`crate::Sim::set_link`] says otherwise for a pair of hosts.
    pub link: LinkConfig,
    /// From the offerer holding the answer to both ends open (ICE, DTLS, SCTP): uniform in this
    /// range, ms. Measured on loopback since the 20 ms ICE check interval: ~50 ms on an idle
    /// machine (a tab's edge, created to open: 35-51 ms in the end-to-end tests' marks), a few
    /// hundred under load; before it, ~0.3-0.9 s.
    pub edge_setup_ms: (u64, u64),
    /// Extra set-up time per other edge being set up anywhere at that moment, ms: the hosts
    /// share one machine's CPU, and each set-up (DTLS above all) costs some of it. 0 leaves CPU
    /// out; with it a flash crowd slows every set-up as it does on a real small machine.
    pub edge_setup_load_ms: u64,
    /// A remote that went silent (crashed, frozen) is noticed after this long, ms: ICE consent
    /// (3 s disconnected + 2 s failed in `ownstream-peer`'s edge).
    pub silence_timeout_ms: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            signaling_latency_ms: 1,
            connect_ms: 20,
            link: LinkConfig::default(),
            edge_setup_ms: (50, 250),
            edge_setup_load_ms: 0,
            silence_timeout_ms: 5000,
        }
    }
}

/// Number of an endpoint in the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpId(pub u64);

/// One end of an edge.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) host: HostId,
    pub(crate) edge: EdgeId,
    /// The remote endpoint, once the offer or answer named it.
    pub(crate) remote: Option<EpId>,
    pub(crate) open: bool,
    /// When it closed (by its node, or silently with its host); nothing leaves it after.
    pub(crate) closed_at: Option<u64>,
    /// When the wire is free again (ms, fractional).
    busy_until: f64,
    /// Arrival of the latest message sent: later ones may not overtake it.
    last_arrival: u64,
    /// `(departure, bytes)` of messages not yet on the wire: the buffered amount.
    queued: VecDeque<(f64, u64)>,
}

impl Endpoint {
    pub(crate) fn new(host: HostId, edge: EdgeId) -> Self {
        Self {
            host,
            edge,
            remote: None,
            open: false,
            closed_at: None,
            busy_until: 0.0,
            last_arrival: 0,
            queued: VecDeque::new(),
        }
    }

    pub(crate) fn alive(&self) -> bool {
        self.closed_at.is_none()
    }

    /// Puts a message of `len` bytes on the wire at `now`; returns when it arrives (`lost`: its
    /// first transmission is lost).
    pub(crate) fn send(&mut self, now: u64, len: usize, link: &LinkConfig, lost: bool) -> u64 {
        let start = self.busy_until.max(now as f64);
        let wire_ms = link
            .bandwidth
            .map_or(0.0, |bps| len as f64 * 1000.0 / bps as f64);
        let departure = start + wire_ms;
        self.busy_until = departure;
        self.queued.push_back((departure, len as u64));
        let penalty = if lost { link.retransmit_ms } else { 0 };
        let arrival = (departure.ceil() as u64 + link.latency_ms + penalty).max(self.last_arrival);
        self.last_arrival = arrival;
        arrival
    }

    /// Bytes handed to the channel and not yet on the wire at `now`.
    pub(crate) fn buffered(&mut self, now: u64) -> u64 {
        while self.queued.front().is_some_and(|(d, _)| *d <= now as f64) {
            self.queued.pop_front();
        }
        self.queued.iter().map(|(_, len)| len).sum()
    }
}

/// The id an endpoint writes into its offer or answer.
pub(crate) fn sdp_of(ep: EpId) -> String {
    format!("sim-endpoint {}", ep.0)
}

/// The endpoint named by an offer or answer of this simulator.
pub(crate) fn endpoint_in(sdp: &str) -> Option<EpId> {
    sdp.strip_prefix("sim-endpoint ")?.parse().ok().map(EpId)
}
