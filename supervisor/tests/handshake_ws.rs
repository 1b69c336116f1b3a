//! The handshake over a real WebSocket against a real supervisor on port 0: an honest peer is
//! authenticated, and every failure closes the socket with a close frame that says why.

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use ownstream_core::auth::{Identity, PeerHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage};
use ownstream_supervisor::Config;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn peer_key(bits: usize) -> Arc<Identity> {
    static K2048: OnceLock<Arc<Identity>> = OnceLock::new();
    static K1024: OnceLock<Arc<Identity>> = OnceLock::new();
    let cell = if bits == 2048 { &K2048 } else { &K1024 };
    cell.get_or_init(|| Arc::new(Identity::generate(&mut rand::rng(), bits).unwrap()))
        .clone()
}

async fn start(config: Config) -> (String, tokio::sync::oneshot::Sender<()>) {
    let bound = ownstream_supervisor::bind(Config {
        listen: "127.0.0.1:0".into(),
        ..config
    })
    .await
    .unwrap();
    let addr = bound.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (format!("ws://{addr}/ws"), stop)
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn recv(ws: &mut Ws) -> Result<ServerMessage, String> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .map_err(|_| "timed out waiting".to_string())?;
        match next {
            Some(Ok(Message::Text(t))) => return Ok(ServerMessage::decode(&t).unwrap()),
            Some(Ok(Message::Close(f))) => {
                return Err(f.map(|f| f.reason.to_string()).unwrap_or_default())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("error: {e}")),
            None => return Err("ended".into()),
        }
    }
}

/// Reads messages until the supervisor closes; returns the close reason.
async fn close_reason(ws: &mut Ws) -> String {
    loop {
        if let Err(reason) = recv(ws).await {
            return reason;
        }
    }
}

async fn send(ws: &mut Ws, msg: &PeerMessage) {
    ws.send(Message::text(msg.encode())).await.unwrap();
}

fn handshake(bits: usize) -> PeerHandshake {
    PeerHandshake::new(
        peer_key(bits),
        PeerId::random(),
        ComponentType::Receiver,
        None,
    )
}

/// Runs the honest handshake up to (not including) the peer's challenge response.
async fn until_response(ws: &mut Ws, hs: &mut PeerHandshake) -> PeerMessage {
    for _ in 0..3 {
        let m = recv(ws).await.unwrap();
        hs.handle_message(m, &mut rand::rng()).unwrap();
        let out = hs.poll_message().unwrap();
        if matches!(out, PeerMessage::AuthenticationChallengeResponse { .. }) {
            return out;
        }
        send(ws, &out).await;
    }
    unreachable!("three supervisor messages lead to the challenge")
}

#[tokio::test]
async fn honest_peer_is_authenticated_and_can_list_streams() {
    let (url, _stop) = start(Config::default()).await;
    let mut ws = connect(&url).await;
    let mut hs = handshake(2048);
    let response = until_response(&mut ws, &mut hs).await;
    send(&mut ws, &response).await;
    let ok = recv(&mut ws).await.unwrap();
    assert!(hs.handle_message(ok, &mut rand::rng()).unwrap().is_some());
    send(&mut ws, &PeerMessage::ListStreams {}).await;
    assert_eq!(
        recv(&mut ws).await.unwrap(),
        ServerMessage::StreamList { streams: vec![] }
    );
}

#[tokio::test]
async fn wrong_answer_closes_with_a_reason() {
    let (url, _stop) = start(Config::default()).await;
    let mut ws = connect(&url).await;
    let mut hs = handshake(2048);
    let _ = until_response(&mut ws, &mut hs).await;
    // Answer another session's challenge: a well-formed but wrong ciphertext.
    let mut ws2 = connect(&url).await;
    let mut hs2 = handshake(2048);
    let other = until_response(&mut ws2, &mut hs2).await;
    send(&mut ws, &other).await;
    assert_eq!(
        close_reason(&mut ws).await,
        "challenge response does not match"
    );
}

#[tokio::test]
async fn bad_padding_closes_with_a_reason() {
    let (url, _stop) = start(Config::default()).await;
    let mut ws = connect(&url).await;
    let mut hs = handshake(2048);
    let _ = until_response(&mut ws, &mut hs).await;
    let junk = base64::engine::general_purpose::STANDARD.encode([7u8; 256]);
    send(
        &mut ws,
        &PeerMessage::AuthenticationChallengeResponse { response: junk },
    )
    .await;
    // Bad padding and a wrong answer close alike, at the same delay: no padding oracle.
    let sent = std::time::Instant::now();
    assert_eq!(
        close_reason(&mut ws).await,
        "challenge response does not match"
    );
    assert!(sent.elapsed() >= Duration::from_millis(450));
}

#[tokio::test]
async fn small_keys_are_refused_by_default() {
    let (url, _stop) = start(Config::default()).await;
    let mut ws = connect(&url).await;
    let mut hs = handshake(1024);
    let m = recv(&mut ws).await.unwrap();
    hs.handle_message(m, &mut rand::rng()).unwrap();
    send(&mut ws, &hs.poll_message().unwrap()).await;
    assert_eq!(
        close_reason(&mut ws).await,
        "RSA key of 1024 bits is too small (minimum 2048)"
    );
}

#[tokio::test]
async fn out_of_order_and_early_requests_are_refused() {
    let (url, _stop) = start(Config::default()).await;
    let mut ws = connect(&url).await;
    let _ = recv(&mut ws).await.unwrap();
    send(
        &mut ws,
        &PeerMessage::JoinStream {
            stream: "x".into(),
            wait: false,
            relay: true,
        },
    )
    .await;
    assert_eq!(
        close_reason(&mut ws).await,
        "unexpected JOIN_STREAM during authentication (expected COLLECT_PEER_INFO_RESPONSE)"
    );
}

#[tokio::test]
async fn oversized_and_binary_frames_close_the_connection() {
    let (url, _stop) = start(Config::default()).await;
    let mut ws = connect(&url).await;
    let _ = recv(&mut ws).await.unwrap();
    let huge = format!(
        r#"{{"type":"HEARTBEAT","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let _ = ws.send(Message::text(huge)).await;
    // The server refuses the frame at the WebSocket layer (over 64 KiB) and drops the connection.
    let reason = close_reason(&mut ws).await;
    assert!(!reason.is_empty());

    let mut ws = connect(&url).await;
    let _ = recv(&mut ws).await.unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        close_reason(&mut ws).await,
        "binary frames are not part of the protocol"
    );

    let mut ws = connect(&url).await;
    let _ = recv(&mut ws).await.unwrap();
    ws.send(Message::text("{not json")).await.unwrap();
    assert!(close_reason(&mut ws).await.starts_with("malformed message"));
}

#[tokio::test]
async fn silence_closes_after_the_handshake_timeout() {
    let (url, _stop) = start(Config {
        handshake_timeout_ms: 300,
        ..Config::default()
    })
    .await;
    let mut ws = connect(&url).await;
    assert_eq!(close_reason(&mut ws).await, "authentication timed out");
}

#[tokio::test]
async fn a_silent_step_closes_at_the_step_deadline_with_the_reason() {
    let (url, _stop) = start(Config {
        handshake_step_timeout_ms: 300,
        ..Config::default()
    })
    .await;
    // Silent from the start.
    let mut ws = connect(&url).await;
    assert_eq!(
        close_reason(&mut ws).await,
        "no COLLECT_PEER_INFO_RESPONSE within 300 ms"
    );
    // Silent after answering the first step: the deadline restarted, and names the next step.
    let mut ws = connect(&url).await;
    let mut hs = handshake(2048);
    let m = recv(&mut ws).await.unwrap();
    hs.handle_message(m, &mut rand::rng()).unwrap();
    send(&mut ws, &hs.poll_message().unwrap()).await;
    assert!(matches!(
        recv(&mut ws).await.unwrap(),
        ServerMessage::AuthenticationRequest { .. }
    ));
    assert_eq!(
        close_reason(&mut ws).await,
        "no AUTHENTICATION_RESPONSE within 300 ms"
    );
}

#[tokio::test]
async fn lowered_minimum_admits_small_keys() {
    let (url, _stop) = start(Config {
        min_key_bits: 1024,
        ..Config::default()
    })
    .await;
    let mut ws = connect(&url).await;
    let mut hs = handshake(1024);
    let response = until_response(&mut ws, &mut hs).await;
    send(&mut ws, &response).await;
    assert!(matches!(
        recv(&mut ws).await.unwrap(),
        ServerMessage::Authenticated { .. }
    ));
}
