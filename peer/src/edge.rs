//! One WebRTC edge of the tree: one peer connection carrying one data channel, as a thin async
//! shell over `webrtc` 0.21.
//!
//! The parent of an edge is the [`Role::Offerer`]: it makes the SDP offer. The child is the
//! [`Role::Answerer`]. Both create the one data channel `"ownstream"` (ordered, reliable,
//! negotiated out of band with stream id [`CHANNEL_ID`]) themselves. Everything the
//! owner needs to know comes out of one `mpsc` channel of [`EdgeEvent`]s: signaling to relay to
//! the remote through the supervisor, `Open`, each message, and `Closed` once.
//!
//! # How it is wired
//!
//! `webrtc` 0.21 runs a background driver task per peer connection. It reports connection-level
//! events by calling a [`PeerConnectionEventHandler`] (on the driver task itself, so the handler
//! here only forwards them over an internal channel), and data-channel events through
//! `DataChannel::poll()`. One task per edge (`run`) owns the owner's event sender: it reads the
//! internal channel and polls the data channel, decides when the edge is closed, and on the way
//! out closes the peer connection, which stops the driver and ends `poll()`. That task ends when
//! the edge closes for any reason, including [`Edge::close`] and dropping the [`Edge`]; after it
//! ends the owner's event receiver yields `None`.
//!
//! Invariants:
//! - The local description is emitted before any local candidate (candidates gathered before it
//!   is announced are held back), because a browser refuses `addIceCandidate` before it has the
//!   remote description.
//! - Remote candidates that arrive before the remote description are queued and applied right
//!   after it. A candidate that cannot be added (say an unresolvable mDNS `.local` name from
//!   Chrome) is an error for that call only; the edge goes on, and Chrome's real address is
//!   learnt from its connectivity checks anyway.
//! - [`EdgeEvent::Closed`] is emitted at most once, and never after the owner's own `close()` or
//!   drop: the owner already knows.
//!
//! # When an edge counts as closed
//!
//! - the peer connection state becomes `failed` or `closed`, or the ICE connection state becomes
//!   `failed`;
//! - the data channel reports `close` (the remote closed it or the association ended) or its
//!   event stream ends (the driver stopped).
//!
//! ICE `disconnected` alone is *not* closed: it means nothing was heard from the remote for
//! [`EdgeConfig::ice_disconnected_timeout`] and may heal. The grace period is ICE's own failed
//! timer: after a further [`EdgeConfig::ice_failed_timeout`] of silence the agent goes `failed`
//! (and throws away its candidates, so it cannot heal any more) and the edge closes. With the
//! defaults (1 s consent checks, 3 s + 2 s) a killed remote is noticed after about 5 s; `webrtc`'s
//! own defaults (2 s, 5 s + 25 s) would take 30 s. The same timers bound the checking phase: ICE
//! that has not connected within their sum fails. Before the remote description arrives there is no
//! timer at all; the owner bounds signaling itself.
//!
//! # Bind addresses (what `webrtc` 0.21 does)
//!
//! `PeerConnectionBuilder::with_udp_addrs` takes several addresses and binds one UDP socket per
//! address; each socket gives one host candidate. A wildcard (`0.0.0.0`, `::`) is expanded into
//! one socket per interface address of that family, skipping loopback and link-local, so it
//! never yields loopback. A concrete address, loopback included, is bound as given. Hence
//! [`EdgeConfig::default`] binds `0.0.0.0` *and* `127.0.0.1` (real interfaces plus loopback, so
//! two peers on one host always meet) and [`EdgeConfig::loopback`] binds `127.0.0.1` only.
//! (`SettingEngine::with_include_loopback_candidate` exists but nothing in 0.21.1 reads it.)

use bytes::{Bytes, BytesMut};
use ownstream_core::protocol::{Agent, SignalPayload};
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCIceServer, RTCIceTransportPolicy, RTCSessionDescription, SettingEngineBuilder,
};

mod runtime;
mod task;
use runtime::BufferedRuntime;
use task::{run, Handler, Internal};

/// Label of the one data channel of an edge.
pub const CHANNEL_LABEL: &str = "ownstream";

/// SCTP stream id of the edge's channel. Both ends create it themselves (`negotiated`), so it
/// opens as soon as the SCTP association is up: no in-band `DATA_CHANNEL_OPEN`/`ACK` round trip,
/// and no open message that `webrtc` 0.21 would only send at its next timer tick (see
/// [`task`]'s `nudge`). The browser twin (`receiver-web/js/net/edge.js`) uses the same id.
pub const CHANNEL_ID: u16 = 0;

/// An ICE server (STUN or TURN) for an edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceServerConfig {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

/// How an edge is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// STUN/TURN servers; empty means host candidates only.
    pub ice_servers: Vec<IceServerConfig>,
    /// Gather and use relayed (TURN) candidates only (ICE transport policy `relay`): every byte
    /// goes through a TURN server of `ice_servers`, and without one no edge opens.
    pub relay_only: bool,
    /// Local addresses to gather host candidates on, one UDP socket each (port chosen by the OS).
    /// An unspecified address means every interface of that family except loopback.
    pub bind_ips: Vec<IpAddr>,
    /// Largest message accepted, advertised to the remote; [`Edge::send`] refuses larger ones too.
    pub max_message_size: usize,
    /// Silence from the remote after which ICE reports `disconnected`.
    pub ice_disconnected_timeout: Duration,
    /// Further silence after which ICE reports `failed` and the edge closes (the grace period).
    pub ice_failed_timeout: Duration,
    /// How often ICE sends a consent check on the selected pair; `None` chooses by the path
    /// ([`EdgeConfig::consent_interval`]).
    pub ice_keepalive_interval: Option<Duration>,
    /// While connecting, how often ICE runs its checks: a round of binding requests, then the
    /// nomination of a pair that answered, each waits for the next round.
    pub ice_check_interval: Duration,
    /// Unanswered binding requests after which ICE gives up on a candidate pair.
    pub ice_max_binding_requests: u16,
    /// Receive buffer asked for each UDP socket (bytes; 0 keeps the system's default). See
    /// `edge/runtime.rs`: drops there cost SCTP at least a second.
    pub udp_recv_buffer: usize,
    /// Largest SCTP packet this end sends (one DTLS record, one UDP datagram); `None` keeps
    /// `webrtc`'s 1191 bytes, which crosses any path, TURN over IPv6 included. See
    /// [`EdgeConfig::sctp_mtu_toward`].
    pub sctp_mtu: Option<u32>,
}

/// [`EdgeConfig::sctp_mtu`] toward a Rust peer on loopback. Why: every SCTP packet costs a full
/// trip through `webrtc` at both ends (SCTP, DTLS, a syscall, a SACK, task wake-ups), and a
/// 64 KiB fragment is 57 packets at 1191 bytes but 9 at this size. Loopback carries 64 KiB
/// datagrams, and `webrtc` 0.21 reads a socket that coalesces (UDP GRO) into 96 KB buffers; its
/// SCTP and DTLS declare 8 KiB inbound buffers, hence a DTLS record (this plus 37 bytes) kept
/// under 8192. Measured at 400 receivers (`experiments scale --steps 400 --per-process 400`,
/// receivers' CPU per relayed Mbit/s, 3 alternating runs of one build): 0.288/0.283/0.261 at
/// 1191 against 0.244/0.243/0.205 at 8000; 16384 was no better than 8000.
pub const LOOPBACK_SCTP_MTU: u32 = 8000;

/// Default [`EdgeConfig::ice_check_interval`]. `webrtc`'s 200 ms made ICE take two to three
/// rounds (~0.4-0.6 s) on loopback, where a check is answered in well under a millisecond; the
/// rounds only run while connecting, so checking ten times as often costs a few more datagrams
/// per edge set-up, nothing once connected.
pub const DEFAULT_ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// [`EdgeConfig::consent_interval`] on direct paths: `webrtc`'s own default. Consent checks were
/// 27 % of the datagrams of 400 receivers on loopback (tcpdump; half of them on standby edges,
/// which carry nothing else), and every 2 s instead of 1 s cost 4-11 % less CPU per relayed
/// Mbit/s (two sets of 4 alternating pairs, `experiments/results/fragments-consent`). Silence,
/// not the checks, finds a dead remote: any datagram counts as heard, a tree edge carries
/// keepalives and SACKs several times a second, and on a standby edge each end hears the other's
/// check every 2 s, inside the [`EdgeConfig::ice_disconnected_timeout`] of 3 s.
pub const DIRECT_CONSENT_INTERVAL: Duration = Duration::from_secs(2);

/// [`EdgeConfig::consent_interval`] where a TURN server is configured. With checks every 2 s,
/// the test of a Rust chain relayed through coturn (`receiver-web/tests/turn.test.mjs`) failed
/// in 5 of 72 runs (none of the last 30, which logged more), against 0 of 34 with checks every
/// 1 s: maybe chance (p ~ 0.14), maybe not. In the failures looked at, ~3 s after ICE connected
/// a parent's SCTP stopped sending (it still held ~27 packets when the edge closed; ICE had not
/// reported the pair `disconnected`) and the child left it 1.2 s later. Not understood, so
/// wherever a pair may be relayed the checks stay at 1 s, as they were.
pub const RELAYED_CONSENT_INTERVAL: Duration = Duration::from_secs(1);

/// Default [`EdgeConfig::udp_recv_buffer`]: Debian's default `net.core.rmem_max`, the most an
/// unprivileged process gets.
pub const DEFAULT_UDP_RECV_BUFFER: usize = 4 << 20;

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            relay_only: false,
            bind_ips: vec![Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into()],
            max_message_size: SctpMaxMessageSize::DEFAULT_MESSAGE_SIZE as usize,
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(2),
            ice_keepalive_interval: None,
            ice_check_interval: DEFAULT_ICE_CHECK_INTERVAL,
            // 100 x 20 ms: a pair is given 2 s to answer, as long as the library's default
            // (7 x 200 ms = 1.4 s) gives a path with a long round trip.
            ice_max_binding_requests: 100,
            udp_recv_buffer: DEFAULT_UDP_RECV_BUFFER,
            sctp_mtu: None,
        }
    }
}

impl EdgeConfig {
    /// The SCTP packet size for an edge to a remote that runs `agent` (`None`: not known): larger
    /// packets ([`LOOPBACK_SCTP_MTU`]) only where they are sure to arrive whole. That is when
    /// - the remote is a Rust peer: a browser may not read more than a standard packet (libwebrtc,
    ///   Chromium's WebRTC, queues received DTLS datagrams in 2048-byte buffers), and a tab cannot
    ///   choose its own packet size either;
    /// - every address this end gathers on is loopback and no STUN/TURN server is configured, so
    ///   the path is loopback whatever pair ICE picks (with real interfaces it could be a network
    ///   of 1500 bytes or less, where IP fragments are lost or dropped by middleboxes);
    /// - this host's UDP sockets coalesce datagrams (GRO, Linux 5.0 and later): otherwise `webrtc`
    ///   reads each datagram into a 2000-byte buffer and a larger one is cut short. On loopback the
    ///   remote shares this host, hence its kernel.
    ///
    /// Otherwise [`EdgeConfig::sctp_mtu`] as configured.
    pub fn sctp_mtu_toward(&self, agent: Option<Agent>) -> Option<u32> {
        let loopback_only =
            !self.bind_ips.is_empty() && self.bind_ips.iter().all(IpAddr::is_loopback);
        if agent == Some(Agent::Native)
            && loopback_only
            && self.ice_servers.is_empty()
            && !self.relay_only
            && runtime::udp_coalesces()
        {
            Some(LOOPBACK_SCTP_MTU)
        } else {
            self.sctp_mtu
        }
    }

    /// How often ICE checks consent on the selected pair (RFC 7675; a request and a response
    /// each way): [`EdgeConfig::ice_keepalive_interval`] if set, else [`DIRECT_CONSENT_INTERVAL`]
    /// when no TURN server is configured (every pair is direct) and [`RELAYED_CONSENT_INTERVAL`]
    /// when one is (ICE may pick a relayed pair).
    pub fn consent_interval(&self) -> Duration {
        let turn = self.relay_only
            || self
                .ice_servers
                .iter()
                .flat_map(|s| &s.urls)
                .any(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        self.ice_keepalive_interval.unwrap_or(if turn {
            RELAYED_CONSENT_INTERVAL
        } else {
            DIRECT_CONSENT_INTERVAL
        })
    }

    /// The defaults, but gathering on `127.0.0.1` only: for tests and single-host demos.
    pub fn loopback() -> Self {
        Self {
            bind_ips: vec![Ipv4Addr::LOCALHOST.into()],
            ..Self::default()
        }
    }
}

/// Which end of the edge this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The parent: creates the data channel and the offer.
    Offerer,
    /// The child: answers the parent's offer.
    Answerer,
}

/// What an edge tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeEvent {
    /// Signaling to relay to the remote end (through the supervisor).
    Signal(SignalPayload),
    /// The data channel is open: [`Edge::send`] works from now on.
    Open,
    /// One data channel message, in order.
    Message(Bytes),
    /// The edge is gone (see the module docs for what counts); emitted at most once, and last.
    Closed {
        /// What happened, for logs and for the supervisor.
        reason: String,
    },
}

/// Why an edge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A `webrtc` call failed.
    #[error("{op}: {source}")]
    WebRtc {
        /// The operation, e.g. `set remote description`.
        op: &'static str,
        /// The library's error.
        #[source]
        source: webrtc::error::Error,
    },
    /// The remote sent a signal this role never receives (an offer to the offerer, say).
    #[error("unexpected {signal} signal for the {role:?} end of an edge")]
    UnexpectedSignal {
        /// `offer` or `answer`.
        signal: &'static str,
        /// This end's role.
        role: Role,
    },
    /// The data channel is not open (yet, or any more).
    #[error("the data channel is not open")]
    NotOpen,
    /// The message is larger than [`EdgeConfig::max_message_size`].
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Length of the refused message.
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn rtc_err(op: &'static str) -> impl FnOnce(webrtc::error::Error) -> EdgeError {
    move |source| EdgeError::WebRtc { op, source }
}

/// Remote-description progress, guarded so concurrent `handle_signal` calls apply in order.
#[derive(Default)]
struct Remote {
    described: bool,
    pending: Vec<RTCIceCandidateInit>,
}

/// What the [`Edge`] handle and its task share.
struct Shared {
    role: Role,
    max_message_size: usize,
    pc: Arc<dyn PeerConnection>,
    /// Set once, at start.
    channel: OnceLock<Arc<dyn DataChannel>>,
    /// Set when the data channel reports open.
    open: OnceLock<()>,
    /// `mid` of our media section, echoed in candidates so browsers can place them.
    mid: OnceLock<String>,
    internal: mpsc::UnboundedSender<Internal>,
    remote: Mutex<Remote>,
}

/// One WebRTC edge; see the module docs.
pub struct Edge {
    shared: Arc<Shared>,
    /// Dropping it (with the `Edge`) or sending `true` stops the task.
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Edge {
    /// Builds the peer connection and starts the edge's task; an offerer also creates the data
    /// channel and emits its offer followed by its candidates.
    pub async fn start(
        role: Role,
        config: &EdgeConfig,
        events: mpsc::Sender<EdgeEvent>,
    ) -> Result<Self, EdgeError> {
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let pc = build_peer_connection(config, internal.clone()).await?;
        let shared = Arc::new(Shared {
            role,
            max_message_size: config.max_message_size,
            pc,
            channel: OnceLock::new(),
            open: OnceLock::new(),
            mid: OnceLock::new(),
            internal,
            remote: Mutex::new(Remote::default()),
        });
        let ready = match role {
            Role::Offerer => shared.offer().await,
            Role::Answerer => shared.create_channel().await,
        };
        if let Err(e) = ready {
            let _ = shared.pc.close().await;
            return Err(e);
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), internal_rx, events, shutdown_rx));
        Ok(Self {
            shared,
            shutdown,
            task: Mutex::new(Some(task)),
        })
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// Applies signaling from the remote: an answerer answers an offer (emitting the answer),
    /// an offerer applies the answer, both add candidates (queued until the remote description
    /// is known). An error concerns this payload only; the edge goes on.
    pub async fn handle_signal(&self, payload: SignalPayload) -> Result<(), EdgeError> {
        let shared = &self.shared;
        let mut remote = shared.remote.lock().await;
        match (payload, shared.role) {
            (SignalPayload::Offer { sdp }, Role::Answerer) => {
                let offer = RTCSessionDescription::offer(sdp).map_err(rtc_err("parse offer"))?;
                shared.apply_remote(&mut remote, offer).await?;
                shared.answer().await
            }
            (SignalPayload::Answer { sdp }, Role::Offerer) => {
                let answer = RTCSessionDescription::answer(sdp).map_err(rtc_err("parse answer"))?;
                shared.apply_remote(&mut remote, answer).await
            }
            (
                SignalPayload::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                },
                _,
            ) => {
                let init = RTCIceCandidateInit {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                    ..RTCIceCandidateInit::default()
                };
                if !remote.described {
                    remote.pending.push(init);
                    return Ok(());
                }
                shared
                    .pc
                    .add_ice_candidate(init)
                    .await
                    .map_err(rtc_err("add candidate"))
            }
            (SignalPayload::Offer { .. }, role) => Err(EdgeError::UnexpectedSignal {
                signal: "offer",
                role,
            }),
            (SignalPayload::Answer { .. }, role) => Err(EdgeError::UnexpectedSignal {
                signal: "answer",
                role,
            }),
        }
    }

    /// Queues one message on the data channel; it never waits for the remote. Pace with
    /// [`Edge::buffered_amount`].
    pub async fn send(&self, msg: Bytes) -> Result<(), EdgeError> {
        if msg.len() > self.shared.max_message_size {
            return Err(EdgeError::TooLarge {
                len: msg.len(),
                max: self.shared.max_message_size,
            });
        }
        let channel = self.shared.open_channel().ok_or(EdgeError::NotOpen)?;
        channel
            .send(BytesMut::from(msg))
            .await
            .map_err(rtc_err("send"))
    }

    /// Bytes handed to [`Edge::send`] that the remote has not acknowledged yet (0 before open and
    /// after close).
    pub async fn buffered_amount(&self) -> usize {
        match self.shared.open_channel() {
            Some(channel) => channel.outstanding_bytes().await.unwrap_or(0),
            None => 0,
        }
    }

    /// Closes the peer connection and waits for the edge's task to end. No `Closed` event
    /// follows. Idempotent. Dropping the `Edge` does the same without waiting.
    pub async fn close(&self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!("edge task ended abnormally: {e}");
            }
        }
    }
}

async fn build_peer_connection(
    config: &EdgeConfig,
    internal: mpsc::UnboundedSender<Internal>,
) -> Result<Arc<dyn PeerConnection>, EdgeError> {
    let ice_servers = config
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect();
    let max_message_size = u32::try_from(config.max_message_size).unwrap_or(u32::MAX);
    let settings = SettingEngineBuilder::new()
        .with_ice_timeouts(
            Some(config.ice_disconnected_timeout),
            Some(config.ice_failed_timeout),
            Some(config.consent_interval()),
        )
        .with_ice_connection_attempts(
            Some(config.ice_check_interval),
            Some(config.ice_max_binding_requests),
        )
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(max_message_size))
        // Browsers hide their host addresses behind mDNS names, so this side usually learns a
        // browser's address as a peer-reflexive candidate from its checks. The default wait before
        // nominating such a pair (1 s) delayed every Rust -> browser edge by a second (measured:
        // join to open channel 1.7 s); on the paths it finds there is nothing better to wait for.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO));
    let settings = match config.sctp_mtu {
        Some(mtu) => settings.with_sctp_mtu(mtu),
        None => settings,
    }
    .build();
    let bind: Vec<SocketAddr> = config
        .bind_ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, 0))
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_runtime(BufferedRuntime::shared(config.udp_recv_buffer))
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(ice_servers)
                .with_ice_transport_policy(if config.relay_only {
                    RTCIceTransportPolicy::Relay
                } else {
                    RTCIceTransportPolicy::All
                })
                .build(),
        )
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler { tx: internal }))
        .with_udp_addrs(bind)
        .build()
        .await
        .map_err(rtc_err("build peer connection"))?;
    Ok(Arc::new(pc))
}

impl Shared {
    fn open_channel(&self) -> Option<&Arc<dyn DataChannel>> {
        self.open.get().and(self.channel.get())
    }

    /// Both ends: the edge's one channel, negotiated out of band (see [`CHANNEL_ID`]).
    async fn create_channel(&self) -> Result<(), EdgeError> {
        let init = RTCDataChannelInit {
            negotiated: Some(CHANNEL_ID),
            ..RTCDataChannelInit::default()
        };
        let channel = self
            .pc
            .create_data_channel(CHANNEL_LABEL, Some(init))
            .await
            .map_err(rtc_err("create data channel"))?;
        let _ = self.channel.set(channel.clone());
        let _ = self.internal.send(Internal::Channel(channel));
        Ok(())
    }

    /// Offerer: creates the channel and the offer, and hands the offer to the task to emit.
    async fn offer(&self) -> Result<(), EdgeError> {
        self.create_channel().await?;
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(rtc_err("create offer"))?;
        self.set_local(offer, |sdp| SignalPayload::Offer { sdp })
            .await
    }

    /// Answerer: creates and applies the answer, and hands it to the task to emit.
    async fn answer(&self) -> Result<(), EdgeError> {
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(rtc_err("create answer"))?;
        self.set_local(answer, |sdp| SignalPayload::Answer { sdp })
            .await
    }

    async fn set_local(
        &self,
        desc: RTCSessionDescription,
        payload: fn(String) -> SignalPayload,
    ) -> Result<(), EdgeError> {
        if let Some(mid) = first_mid(&desc.sdp) {
            let _ = self.mid.set(mid.to_owned());
        }
        let sdp = desc.sdp.clone();
        self.pc
            .set_local_description(desc)
            .await
            .map_err(rtc_err("set local description"))?;
        let _ = self.internal.send(Internal::LocalDescription(payload(sdp)));
        Ok(())
    }

    /// Applies the remote description, then the candidates that came before it.
    async fn apply_remote(
        &self,
        remote: &mut Remote,
        desc: RTCSessionDescription,
    ) -> Result<(), EdgeError> {
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(rtc_err("set remote description"))?;
        remote.described = true;
        for candidate in std::mem::take(&mut remote.pending) {
            if let Err(e) = self.pc.add_ice_candidate(candidate.clone()).await {
                tracing::warn!("ignoring remote candidate {:?}: {e}", candidate.candidate);
            }
        }
        Ok(())
    }

    fn candidate_signal(&self, init: RTCIceCandidateInit) -> SignalPayload {
        SignalPayload::Candidate {
            candidate: init.candidate,
            sdp_mid: self.mid.get().cloned(),
            sdp_mline_index: Some(0),
        }
    }
}

/// The `mid` of the first media section of an SDP.
fn first_mid(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.strip_prefix("a=mid:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests;
