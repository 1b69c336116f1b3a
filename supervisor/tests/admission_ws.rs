//! Handshake admission over real sockets: idle connections beyond the per-address cap are refused
//! with HTTP 429 and a reason before the upgrade, while a peer from another address still
//! authenticates; a freed slot admits again; a burst beyond the per-address rate gets Retry-After;
//! every refusal is counted in /metrics.

use futures_util::{SinkExt, StreamExt};
use ownstream_core::admission::AdmissionConfig;
use ownstream_core::auth::{Identity, PeerHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, ServerMessage};
use ownstream_supervisor::Config;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn start(admission: AdmissionConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let bound = ownstream_supervisor::bind(Config {
        listen: "127.0.0.1:0".into(),
        admission,
        ..Config::default()
    })
    .await
    .unwrap();
    let addr = bound.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Opens a WebSocket from `127.0.0.<from>`; `Err` carries the HTTP status, Retry-After and body.
async fn open(server: SocketAddr, from: u8) -> Result<Ws, (u16, Option<String>, String)> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)),
        0,
    ))
    .unwrap();
    let stream = sock.connect(server).await.unwrap();
    match tokio_tungstenite::client_async(format!("ws://{server}/ws"), stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => {
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into();
            Err((resp.status().as_u16(), retry, body))
        }
        Err(e) => panic!("unexpected connection error: {e}"),
    }
}

async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a message within 20 s");
        match next {
            Some(Ok(Message::Text(t))) => return ServerMessage::decode(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn authenticate(ws: &mut Ws) -> bool {
    let key = Arc::new(Identity::generate(&mut rand::rng(), 2048).unwrap());
    let mut hs = PeerHandshake::new(key, PeerId::random(), ComponentType::Receiver, None);
    loop {
        let msg = recv(ws).await;
        let done = hs.handle_message(msg, &mut rand::rng()).unwrap();
        while let Some(out) = hs.poll_message() {
            ws.send(Message::text(out.encode())).await.unwrap();
        }
        if done.is_some() {
            return true;
        }
    }
}

async fn metrics(server: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test]
async fn idle_sockets_beyond_the_address_cap_are_refused_and_others_still_authenticate() {
    let (server, _stop) = start(AdmissionConfig {
        max_pending_per_addr: 3,
        ..AdmissionConfig::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut ws = open(server, 2).await.expect("under the cap");
        // The supervisor has started its handshake: the socket now holds a slot, silently.
        assert!(matches!(
            recv(&mut ws).await,
            ServerMessage::CollectPeerInfoRequest { .. }
        ));
        idle.push(ws);
    }
    let (status, _, body) = open(server, 2).await.expect_err("over the cap");
    assert_eq!(status, 429);
    assert_eq!(body, "too many handshakes in progress from your address");

    let mut honest = open(server, 1).await.expect("another address");
    assert!(authenticate(&mut honest).await);

    // Closing one idle socket gives its slot back.
    drop(idle.pop());
    let mut admitted = false;
    for _ in 0..100 {
        if open(server, 2).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the freed slot was never given back");

    let text = metrics(server).await;
    assert!(
        text.lines().any(|l| l
            .starts_with("ownstream_handshakes_refused_total{reason=\"addr_pending\"}")
            && !l.ends_with(" 0")),
        "{text}"
    );
    assert!(text.contains("ownstream_handshakes_pending "), "{text}");
}

#[tokio::test]
async fn a_burst_beyond_the_address_rate_gets_retry_after() {
    let (server, _stop) = start(AdmissionConfig {
        attempts_per_sec: 1,
        attempts_burst: 2,
        ..AdmissionConfig::default()
    })
    .await;
    let _a = open(server, 3).await.expect("first of the burst");
    let _b = open(server, 3).await.expect("second of the burst");
    let (status, retry, body) = open(server, 3).await.expect_err("beyond the burst");
    assert_eq!(status, 429);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        body.starts_with("too many handshakes from your address"),
        "{body}"
    );
    // Another address is not affected.
    assert!(open(server, 4).await.is_ok());
}
