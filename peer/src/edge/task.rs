//! The edge's task and the driver's callbacks: `webrtc` calls [`Handler`] on its driver task, which
//! only forwards to the edge's task over an unbounded channel; the task ([`run`]) owns the owner's
//! event sender, polls the data channel, decides when the edge is closed (see the parent module)
//! and closes the peer connection on the way out.

use super::{EdgeEvent, Shared, CHANNEL_LABEL};
use ownstream_core::protocol::SignalPayload;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

/// What the driver callbacks and `handle_signal` hand to the edge's task.
///
/// Unbounded on purpose: it carries a handful of candidates and state changes per edge, never
/// media, and the driver must never wait on the owner.
pub(super) enum Internal {
    LocalDescription(SignalPayload),
    LocalCandidate(RTCIceCandidateInit),
    GatheringComplete,
    IceState(RTCIceConnectionState),
    PeerState(RTCPeerConnectionState),
    Channel(Arc<dyn DataChannel>),
}

/// Forwards the driver's callbacks to the edge's task.
pub(super) struct Handler {
    pub(super) tx: mpsc::UnboundedSender<Internal>,
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
pub(super) async fn run(
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
            Internal::IceState(state) => {
                if state == RTCIceConnectionState::Connected {
                    self.nudge().await; // the DTLS ClientHello
                }
                return ice_state(state);
            }
            Internal::PeerState(state) => {
                if state == RTCPeerConnectionState::Connected {
                    self.nudge().await; // the SCTP INIT
                }
                return peer_state(state);
            }
            Internal::Channel(channel) => self.adopt(channel).await,
        }
        Ok(())
    }

    /// Wakes `webrtc`'s driver so it sends what it queued. Why: the driver (0.21) transmits what
    /// its own state changes produce (the DTLS ClientHello once ICE connects, the SCTP INIT once
    /// DTLS is done) only at its next wake-up, and with no datagram in flight that is its next
    /// timer tick: the ICE check interval while connecting, 200 ms once connected. Measured on
    /// loopback, those ticks were 400 of the 450 ms an edge took to open (`edge-bench`). Setting
    /// the channel's low threshold to its own value changes nothing but wakes the driver.
    async fn nudge(&self) {
        let Some(channel) = &self.channel else {
            return;
        };
        if let Ok(threshold) = channel.buffered_amount_low_threshold().await {
            let _ = channel.set_buffered_amount_low_threshold(threshold).await;
        }
    }

    /// Polls the edge's channel; any channel the remote announces in band is closed (the edge's
    /// own is negotiated).
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
