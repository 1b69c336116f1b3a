//! One WebRTC edge of the tree: one peer connection carrying one data channel, as a thin async
//! shell over `webrtc` 0.21.
//!
//! The parent of an edge is the [`Role::Offerer`]: it creates the data channel `"ownstream"`
//! (ordered, reliable) and the SDP offer. The child is the [`Role::Answerer`]. Everything the
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
//! defaults (1 s keepalive, 3 s + 2 s) a killed remote is noticed after about 5 s; `webrtc`'s own
//! defaults (2 s, 5 s + 25 s) would take 30 s. The same timers bound the checking phase: ICE that
//! has not connected within their sum fails. Before the remote description arrives there is no
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
use ownstream_core::protocol::SignalPayload;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

/// Label of the one data channel of an edge.
pub const CHANNEL_LABEL: &str = "ownstream";

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
    /// Local addresses to gather host candidates on, one UDP socket each (port chosen by the OS).
    /// An unspecified address means every interface of that family except loopback.
    pub bind_ips: Vec<IpAddr>,
    /// Largest message accepted, advertised to the remote; [`Edge::send`] refuses larger ones too.
    pub max_message_size: usize,
    /// Silence from the remote after which ICE reports `disconnected`.
    pub ice_disconnected_timeout: Duration,
    /// Further silence after which ICE reports `failed` and the edge closes (the grace period).
    pub ice_failed_timeout: Duration,
    /// How often ICE sends a consent check on the selected pair.
    pub ice_keepalive_interval: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            ice_servers: Vec::new(),
            bind_ips: vec![Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into()],
            max_message_size: SctpMaxMessageSize::DEFAULT_MESSAGE_SIZE as usize,
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(2),
            ice_keepalive_interval: Duration::from_secs(1),
        }
    }
}

impl EdgeConfig {
    /// The defaults, but gathering on `127.0.0.1` only: for tests and single-host demos.
    pub fn loopback() -> Self {
        EdgeConfig {
            bind_ips: vec![Ipv4Addr::LOCALHOST.into()],
            ..EdgeConfig::default()
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

/// What the driver callbacks and `handle_signal` hand to the edge's task.
///
/// Unbounded on purpose: it carries a handful of candidates and state changes per edge, never
/// media, and the driver must never wait on the owner.
enum Internal {
    LocalDescription(SignalPayload),
    LocalCandidate(RTCIceCandidateInit),
    GatheringComplete,
    IceState(RTCIceConnectionState),
    PeerState(RTCPeerConnectionState),
    Channel(Arc<dyn DataChannel>),
}

/// Forwards the driver's callbacks to the edge's task.
struct Handler {
    tx: mpsc::UnboundedSender<Internal>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.tx.send(Internal::LocalCandidate(init));
            }
            Err(e) => tracing::warn!("cannot encode a local candidate: {e}"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(Internal::GatheringComplete);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        let _ = self.tx.send(Internal::IceState(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(Internal::PeerState(state));
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let _ = self.tx.send(Internal::Channel(data_channel));
    }
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
    /// Set once: at start for the offerer, when the remote's channel arrives for the answerer.
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
    ) -> Result<Edge, EdgeError> {
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
        if role == Role::Offerer {
            if let Err(e) = shared.offer().await {
                let _ = shared.pc.close().await;
                return Err(e);
            }
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), internal_rx, events, shutdown_rx));
        Ok(Edge {
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
            Some(config.ice_keepalive_interval),
        )
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(max_message_size))
        // Browsers hide their host addresses behind mDNS names, so this side usually learns a
        // browser's address as a peer-reflexive candidate from its checks. The default wait before
        // nominating such a pair (1 s) delayed every Rust -> browser edge by a second (measured:
        // join to open channel 1.7 s); on the paths it finds there is nothing better to wait for.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .build();
    let bind: Vec<SocketAddr> = config
        .bind_ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, 0))
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(ice_servers)
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

    /// Offerer: creates the channel and the offer, and hands the offer to the task to emit.
    async fn offer(&self) -> Result<(), EdgeError> {
        let channel = self
            .pc
            .create_data_channel(CHANNEL_LABEL, Some(RTCDataChannelInit::default()))
            .await
            .map_err(rtc_err("create data channel"))?;
        let _ = self.channel.set(channel.clone());
        let _ = self.internal.send(Internal::Channel(channel));
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

/// Why the task's loop stopped.
enum Exit {
    /// The owner closed or dropped the edge: no event.
    Owner,
    /// The edge failed or the remote went away.
    Closed(String),
}

/// What woke the edge's task.
enum Wake {
    Stop,
    Internal(Option<Internal>),
    Channel(Option<DataChannelEvent>),
}

/// The edge's task: forwards events to the owner until the edge closes, then tears down.
async fn run(
    shared: Arc<Shared>,
    mut internal: mpsc::UnboundedReceiver<Internal>,
    events: mpsc::Sender<EdgeEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut task = Task {
        shared: &shared,
        events: &events,
        channel: None,
        held_candidates: Some(Vec::new()),
    };
    let exit = loop {
        let wake = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => Wake::Stop,
            msg = internal.recv() => Wake::Internal(msg),
            event = next_channel_event(&task.channel) => Wake::Channel(event),
        };
        let step = match wake {
            Wake::Stop => Err(Exit::Owner),
            Wake::Internal(Some(msg)) => task.on_internal(msg).await,
            Wake::Internal(None) => Err(Exit::Closed("peer connection driver stopped".into())),
            Wake::Channel(event) => task.on_channel(event).await,
        };
        if let Err(exit) = step {
            break exit;
        }
    };
    if let Exit::Closed(reason) = exit {
        tracing::debug!("edge closed: {reason}");
        let _ = events.send(EdgeEvent::Closed { reason }).await;
    }
    if let Err(e) = shared.pc.close().await {
        tracing::debug!("closing peer connection: {e}");
    }
}

async fn next_channel_event(channel: &Option<Arc<dyn DataChannel>>) -> Option<DataChannelEvent> {
    match channel {
        Some(channel) => channel.poll().await,
        None => std::future::pending().await,
    }
}

/// State of the edge's task between events.
struct Task<'a> {
    shared: &'a Shared,
    events: &'a mpsc::Sender<EdgeEvent>,
    /// The channel being polled.
    channel: Option<Arc<dyn DataChannel>>,
    /// Local candidates gathered before the local description was emitted (`None` after).
    held_candidates: Option<Vec<RTCIceCandidateInit>>,
}

impl Task<'_> {
    async fn emit(&self, event: EdgeEvent) -> Result<(), Exit> {
        // The owner dropped its receiver: nobody is left to use the edge.
        self.events.send(event).await.map_err(|_| Exit::Owner)
    }

    async fn on_internal(&mut self, msg: Internal) -> Result<(), Exit> {
        match msg {
            Internal::LocalDescription(payload) => {
                self.emit(EdgeEvent::Signal(payload)).await?;
                for init in self.held_candidates.take().unwrap_or_default() {
                    let signal = self.shared.candidate_signal(init);
                    self.emit(EdgeEvent::Signal(signal)).await?;
                }
            }
            Internal::LocalCandidate(init) => match &mut self.held_candidates {
                Some(held) => held.push(init),
                None => {
                    let signal = self.shared.candidate_signal(init);
                    self.emit(EdgeEvent::Signal(signal)).await?;
                }
            },
            Internal::GatheringComplete => tracing::debug!("ICE gathering complete"),
            Internal::IceState(state) => return ice_state(state),
            Internal::PeerState(state) => return peer_state(state),
            Internal::Channel(channel) => self.adopt(channel).await,
        }
        Ok(())
    }

    /// Polls the edge's channel; a second channel from the remote is closed.
    async fn adopt(&mut self, channel: Arc<dyn DataChannel>) {
        let label = channel.label().await.unwrap_or_default();
        if self.channel.is_some() || label != CHANNEL_LABEL {
            tracing::warn!("closing unexpected data channel {label:?}");
            let _ = channel.close().await;
            return;
        }
        let _ = self.shared.channel.set(channel.clone());
        self.channel = Some(channel);
    }

    async fn on_channel(&mut self, event: Option<DataChannelEvent>) -> Result<(), Exit> {
        match event {
            Some(DataChannelEvent::OnOpen) => {
                let _ = self.shared.open.set(());
                self.emit(EdgeEvent::Open).await
            }
            Some(DataChannelEvent::OnMessage(msg)) => {
                self.emit(EdgeEvent::Message(msg.data.freeze())).await
            }
            Some(DataChannelEvent::OnClose) => Err(Exit::Closed("data channel closed".into())),
            Some(DataChannelEvent::OnError) => {
                tracing::warn!("data channel error");
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(Exit::Closed("data channel ended".into())),
        }
    }
}

fn ice_state(state: RTCIceConnectionState) -> Result<(), Exit> {
    tracing::debug!("ICE connection state: {state}");
    match state {
        RTCIceConnectionState::Failed => Err(Exit::Closed("ICE failed".into())),
        _ => Ok(()),
    }
}

fn peer_state(state: RTCPeerConnectionState) -> Result<(), Exit> {
    tracing::debug!("peer connection state: {state}");
    match state {
        RTCPeerConnectionState::Failed => Err(Exit::Closed("peer connection failed".into())),
        RTCPeerConnectionState::Closed => Err(Exit::Closed("peer connection closed".into())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_mid_reads_the_first_media_section() {
        let sdp =
            "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=mid:1\r\n";
        assert_eq!(first_mid(sdp), Some("0"));
        assert_eq!(first_mid("v=0\r\n"), None);
    }

    #[test]
    fn default_config_gathers_on_interfaces_and_loopback() {
        let config = EdgeConfig::default();
        assert!(config.bind_ips.iter().any(IpAddr::is_unspecified));
        assert!(config.bind_ips.iter().any(IpAddr::is_loopback));
        assert_eq!(config.max_message_size, 65_536);
        assert_eq!(
            EdgeConfig::loopback().bind_ips,
            vec![IpAddr::from(Ipv4Addr::LOCALHOST)]
        );
    }

    #[tokio::test]
    async fn bad_remote_sdp_is_an_error_not_a_panic() {
        let (tx, _rx) = mpsc::channel(16);
        let edge = Edge::start(Role::Answerer, &EdgeConfig::loopback(), tx)
            .await
            .expect("edge starts");
        let bad = SignalPayload::Offer {
            sdp: "not sdp".into(),
        };
        assert!(edge.handle_signal(bad).await.is_err());
        let answer = SignalPayload::Answer { sdp: String::new() };
        assert!(matches!(
            edge.handle_signal(answer).await,
            Err(EdgeError::UnexpectedSignal { .. })
        ));
        assert!(matches!(
            edge.send(Bytes::from_static(b"x")).await,
            Err(EdgeError::NotOpen)
        ));
        edge.close().await;
    }

    fn candidate(line: &str) -> SignalPayload {
        SignalPayload::Candidate {
            candidate: line.into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }
    }

    #[tokio::test]
    async fn bad_remote_candidates_never_break_the_edge() {
        let (tx, mut rx) = mpsc::channel(16);
        let offerer = Edge::start(Role::Offerer, &EdgeConfig::loopback(), tx).await;
        let offerer = offerer.expect("offerer starts");
        let Some(EdgeEvent::Signal(offer)) = rx.recv().await else {
            panic!("the offer comes first")
        };
        let (tx, _rx) = mpsc::channel(16);
        let answerer = Edge::start(Role::Answerer, &EdgeConfig::loopback(), tx).await;
        let answerer = answerer.expect("answerer starts");
        // Queued before the offer, then dropped with a log when it fails to apply.
        answerer
            .handle_signal(candidate("garbage"))
            .await
            .expect("queued");
        answerer.handle_signal(offer).await.expect("offer applies");
        assert!(answerer.handle_signal(candidate("garbage")).await.is_err());
        // Chrome's mDNS host candidate: whatever add does with it, the edge stays usable.
        let mdns = "candidate:1 1 udp 2122260223 0b1e5c9e-6a8f-4b7e-9c4e-1f2a3b4c5d6e.local \
                    54321 typ host generation 0";
        let _ = answerer.handle_signal(candidate(mdns)).await;
        let end = candidate("");
        answerer
            .handle_signal(end)
            .await
            .expect("end of candidates");
        offerer.close().await;
        answerer.close().await;
    }
}
