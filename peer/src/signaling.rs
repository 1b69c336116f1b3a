//! The signaling client: WebSocket to the supervisor and the peer side of the RSA handshake.
//!
//! [`connect`] returns only once the peer is authenticated. After that one task owns the socket: it
//! writes what the node sends (heartbeats included: the node decides when) and forwards what the
//! supervisor sends (bounded in size). When the socket ends, the event stream yields
//! [`SignalingEvent::Closed`] with the supervisor's close reason and then ends.

use futures_util::{SinkExt, StreamExt};
use ownstream_core::auth::{Identity, PeerHandshake, Session};
use ownstream_core::ids::PeerId;
use ownstream_core::node::rules::HANDSHAKE_TIMEOUT_MS;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage, MAX_MESSAGE_LEN};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the whole handshake may take before the peer gives up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The supervisor could not be reached.
    #[error("cannot reach the supervisor at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The handshake failed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The supervisor took the connection but did not finish the handshake in time (it, or this
    /// machine, is busy).
    #[error("the supervisor at {url} did not finish the handshake within {ms} ms")]
    Busy {
        /// The URL tried.
        url: String,
        /// The limit.
        ms: u64,
    },
}

/// What the node hears from the supervisor.
#[derive(Debug)]
pub enum SignalingEvent {
    /// A message.
    Message(ServerMessage),
    /// The connection ended, with the reason the supervisor gave if any.
    Closed(String),
}

/// An authenticated signaling connection.
pub struct Signaling {
    /// What the supervisor said when it authenticated us.
    pub session: Session,
    /// Messages to send.
    pub outgoing: mpsc::UnboundedSender<PeerMessage>,
    /// Messages received.
    pub events: mpsc::UnboundedReceiver<SignalingEvent>,
}

/// Who is connecting.
#[derive(Clone)]
pub struct PeerIdentity {
    /// The peer's 128-bit id.
    pub peer_id: PeerId,
    /// Its RSA key pair.
    pub key: Arc<Identity>,
    /// Broadcaster or receiver.
    pub component: ComponentType,
    /// Expected supervisor fingerprint, if pinned.
    pub pinned_fingerprint: Option<String>,
    /// Extra CA certificates (PEM) to trust for a `wss://` supervisor, e.g. a self-signed one.
    pub supervisor_ca: Option<PathBuf>,
}

/// Connects to `url`, authenticates, and starts the socket task.
pub async fn connect(url: &str, who: &PeerIdentity) -> Result<Signaling, SignalingError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN));
    let unreachable = |reason: String| SignalingError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let connector = if url.starts_with("wss:") {
        Some(tls_connector(who.supervisor_ca.as_deref()).map_err(unreachable)?)
    } else {
        None
    };
    let (mut socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), false, connector)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    // A supervisor that stops answering, or a connection that breaks, is worth trying again; a
    // refusal (the handshake failed, or the supervisor closed with its reason) is not.
    let session = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut socket, who))
        .await
        .map_err(|_| SignalingError::Busy {
            url: url.to_string(),
            ms: HANDSHAKE_TIMEOUT_MS,
        })?
        .map_err(|e| match e {
            HandshakeError::Refused(reason) => SignalingError::Auth(reason),
            HandshakeError::Broken(reason) => unreachable(reason),
        })?;
    let (outgoing, out_rx) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    tokio::spawn(pump(socket, out_rx, ev_tx));
    Ok(Signaling {
        session,
        outgoing,
        events,
    })
}

/// TLS for `wss://`: the public web roots plus any CA certificates in `ca` (PEM).
fn tls_connector(ca: Option<&Path>) -> Result<Connector, String> {
    // webrtc already links ring; use it for rustls too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("unusable certificate in {}: {e}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// How a handshake failed.
enum HandshakeError {
    /// The handshake itself failed, or the supervisor closed the connection saying why.
    Refused(String),
    /// The connection broke or closed without a reason.
    Broken(String),
}

async fn handshake(socket: &mut Socket, who: &PeerIdentity) -> Result<Session, HandshakeError> {
    let mut hs = PeerHandshake::new(
        who.key.clone(),
        who.peer_id,
        who.component,
        who.pinned_fingerprint.clone(),
    );
    loop {
        let msg = match next_message(socket).await {
            Ok(msg) => msg,
            Err(Closed::Silently(reason)) => return Err(HandshakeError::Broken(reason)),
            Err(refusal) => return Err(HandshakeError::Refused(refusal.into_reason())),
        };
        let done = hs
            .handle_message(msg, &mut rand::rng())
            .map_err(|e| HandshakeError::Refused(e.to_string()))?;
        while let Some(out) = hs.poll_message() {
            socket
                .send(Message::text(out.encode()))
                .await
                .map_err(|e| HandshakeError::Broken(format!("send failed: {e}")))?;
        }
        if let Some(session) = done {
            return Ok(session);
        }
    }
}

/// Why no message came.
enum Closed {
    /// The supervisor closed the connection and said why.
    WithReason(String),
    /// It sent something that is not a supervisor message.
    Malformed(String),
    /// The connection ended or broke without a word.
    Silently(String),
}

impl Closed {
    fn into_reason(self) -> String {
        match self {
            Self::WithReason(r) | Self::Malformed(r) | Self::Silently(r) => r,
        }
    }
}

/// Reads the next supervisor message.
async fn next_message(socket: &mut Socket) -> Result<ServerMessage, Closed> {
    loop {
        match socket.next().await {
            None => return Err(Closed::Silently("connection closed".into())),
            Some(Err(e)) => return Err(Closed::Silently(format!("connection error: {e}"))),
            Some(Ok(Message::Text(text))) => {
                return ServerMessage::decode(&text).map_err(|e| Closed::Malformed(e.to_string()));
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame
                    .map(|f| f.reason.to_string())
                    .filter(|r| !r.is_empty());
                return Err(match reason {
                    Some(reason) => Closed::WithReason(reason),
                    None => Closed::Silently("the supervisor closed the connection".into()),
                });
            }
            Some(Ok(_)) => continue,
        }
    }
}

async fn pump(
    mut socket: Socket,
    mut out_rx: mpsc::UnboundedReceiver<PeerMessage>,
    events: mpsc::UnboundedSender<SignalingEvent>,
) {
    let reason = loop {
        tokio::select! {
            msg = next_message(&mut socket) => match msg {
                Ok(msg) => {
                    if events.send(SignalingEvent::Message(msg)).is_err() {
                        break "node stopped".to_string();
                    }
                }
                Err(closed) => break closed.into_reason(),
            },
            out = out_rx.recv() => match out {
                Some(msg) => {
                    if let Err(e) = socket.send(Message::text(msg.encode())).await {
                        break format!("send failed: {e}");
                    }
                }
                None => {
                    let _ = socket.close(None).await;
                    break "node stopped".to_string();
                }
            },
        }
    };
    let _ = events.send(SignalingEvent::Closed(reason));
}
