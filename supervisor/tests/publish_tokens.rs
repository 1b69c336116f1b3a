//! Publishing needs a credential: over a real WebSocket against an in-process supervisor, a
//! broadcaster without the operator's publish token (or an allow-listed key) is refused with
//! `publish_forbidden` and a reason, and one with it goes live; then the real binaries, with the
//! token given on the command line, in the environment and in a file.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use ownstream_core::auth::{Identity, PeerHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage};
use ownstream_core::publish::{parse_key_grant, parse_token_grant};
use ownstream_supervisor::Config;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const TOKEN: &str = "publish-test-token-0123";
const CAM_TOKEN: &str = "camera-only-token-4567";

fn key() -> Arc<Identity> {
    static KEY: OnceLock<Arc<Identity>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(Identity::generate(&mut rand::rng(), 2048).unwrap()))
        .clone()
}

/// A supervisor on port 0 with `config`; its WebSocket URL, the token it made (if any), and what
/// stops it when dropped.
async fn start(config: Config) -> (String, Option<String>, tokio::sync::oneshot::Sender<()>) {
    let bound = ownstream_supervisor::bind(Config {
        listen: "127.0.0.1:0".into(),
        ..config
    })
    .await
    .unwrap();
    let url = format!("ws://{}/ws", bound.local_addr().unwrap());
    let made = bound.publish_token().map(str::to_string);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (url, made, stop)
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

async fn send(ws: &mut Ws, msg: &PeerMessage) {
    ws.send(Message::text(msg.encode())).await.unwrap();
}

/// An authenticated broadcaster (with [`key`]) asks to publish `stream` with `token`; returns the
/// supervisor's answer and, for a refusal, the reason it closed the connection with.
async fn register(url: &str, stream: &str, token: Option<&str>) -> (ServerMessage, Option<String>) {
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let mut hs = PeerHandshake::new(key(), PeerId::random(), ComponentType::Broadcaster, None);
    loop {
        let m = recv(&mut ws).await.unwrap();
        if hs.handle_message(m, &mut rand::rng()).unwrap().is_some() {
            break;
        }
        send(&mut ws, &hs.poll_message().unwrap()).await;
    }
    let msg = PeerMessage::RegisterStream {
        stream: stream.into(),
        signing_key: ownstream_core::frame::SigningKey::from_seed([5; 32])
            .verifying_key()
            .to_base64(),
        token: token.map(str::to_string),
    };
    send(&mut ws, &msg).await;
    let answer = recv(&mut ws).await.unwrap();
    let closed = match &answer {
        ServerMessage::Error { fatal: true, .. } => Some(recv(&mut ws).await.unwrap_err()),
        _ => None,
    };
    (answer, closed)
}

/// Panics unless `answer` is the fatal `publish_forbidden` refusal; returns its message.
fn forbidden((answer, closed): (ServerMessage, Option<String>)) -> String {
    let ServerMessage::Error {
        code,
        message,
        fatal: true,
    } = answer
    else {
        panic!("expected a fatal publish_forbidden, got {answer:?}");
    };
    assert_eq!(code, "publish_forbidden");
    assert!(
        closed.is_some_and(|c| !c.is_empty()),
        "the connection closes with a reason"
    );
    message
}

fn live((answer, _): (ServerMessage, Option<String>)) -> bool {
    matches!(answer, ServerMessage::StreamRegistered { .. })
}

#[tokio::test]
async fn without_the_made_token_a_broadcaster_is_refused_and_with_it_goes_live() {
    let (url, made, _stop) = start(Config::default()).await;
    let made = made.expect("with no credential configured, the supervisor makes a token");
    assert!(made.len() >= 16);
    let why = forbidden(register(&url, "s", None).await);
    assert_eq!(
        why,
        "publishing `s` needs a publish token from the supervisor's operator (the supervisor \
         prints one at start), and none was given"
    );
    let why = forbidden(register(&url, "s", Some("not-the-token-000000")).await);
    assert_eq!(why, "the publish token given does not allow publishing `s`");
    assert!(live(register(&url, "s", Some(&made)).await));
}

#[tokio::test]
async fn a_per_stream_token_does_not_open_another_name() {
    let (url, made, _stop) = start(Config {
        publish_tokens: vec![
            parse_token_grant(TOKEN).unwrap(),
            parse_token_grant(&format!("cam={CAM_TOKEN}")).unwrap(),
        ],
        ..Config::default()
    })
    .await;
    assert_eq!(made, None, "the operator's tokens replace the made one");
    forbidden(register(&url, "other", Some(CAM_TOKEN)).await);
    assert!(live(register(&url, "cam", Some(CAM_TOKEN)).await));
    assert!(live(register(&url, "other", Some(TOKEN)).await));
}

#[tokio::test]
async fn an_allow_listed_key_goes_live_without_a_token() {
    let grant = parse_key_grant(&format!("studio={}", key().fingerprint())).unwrap();
    let (url, made, _stop) = start(Config {
        publisher_keys: vec![grant],
        ..Config::default()
    })
    .await;
    assert_eq!(made, None);
    assert!(live(register(&url, "studio", None).await));
    forbidden(register(&url, "elsewhere", None).await);
}

/// A broadcaster of the keyframe clip as stream `s`, with these flags and environment, and no
/// publish token unless they give one.
fn broadcaster_with(sup: &Supervisor, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(bin("broadcaster"));
    cmd.args(peer_args(sup))
        .args(["--name", "s", "--loop", "--file"])
        .arg(clip("clip-keyframe-clusters.webm"))
        .args(extra)
        .env_remove("OWNSTREAM_PUBLISH_TOKEN")
        .envs(env.iter().copied());
    Proc::spawn("broadcaster", &mut cmd)
}

fn wait_live(sup: &Supervisor) {
    wait_for("stream s to be live", Duration::from_secs(30), || {
        let streams = sup.get_json("/api/streams")?;
        (streams[0]["name"] == "s").then_some(())
    });
}

#[test]
fn a_broadcaster_without_the_token_stops_with_the_reason_and_the_fix() {
    let sup = Supervisor::start(&[]);
    assert!(
        sup.publish_token.is_some(),
        "the supervisor printed its token"
    );
    let mut b = broadcaster_with(&sup, &[], &[]);
    let status = b.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let stderr = b.stderr_until(|l| l.starts_with("error: "), Duration::from_secs(5));
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert_eq!(
        error,
        "error: the supervisor refused to publish: publishing `s` needs a publish token from the \
         supervisor's operator (the supervisor prints one at start), and none was given; pass the \
         supervisor's publish token with --publish-token TOKEN (or OWNSTREAM_PUBLISH_TOKEN); the \
         supervisor prints it at start"
    );
    assert!(
        sup.get_json("/api/streams").unwrap()[0].is_null(),
        "nothing went live"
    );
}

#[test]
fn tokens_from_a_file_and_from_the_environment_are_honoured() {
    let dir = out_dir("publish_tokens_file");
    let file = dir.join("tokens");
    std::fs::write(&file, format!("# who may publish\n\ns={TOKEN}\n")).unwrap();
    let sup = Supervisor::start(&["--publish-token-file", file.to_str().unwrap()]);
    assert_eq!(
        sup.publish_token, None,
        "the file's tokens replace the made one"
    );
    let _b = broadcaster_with(&sup, &[], &[("OWNSTREAM_PUBLISH_TOKEN", TOKEN)]);
    wait_live(&sup);

    let env = [("OWNSTREAM_PUBLISH_TOKEN", CAM_TOKEN)];
    let sup = Supervisor::start_with_env("127.0.0.1:0", &[], &env);
    assert_eq!(
        sup.publish_token, None,
        "the environment's token replaces the made one"
    );
    let _b = broadcaster_with(&sup, &["--publish-token", CAM_TOKEN], &[]);
    wait_live(&sup);
}

#[test]
fn a_bad_token_file_stops_the_supervisor_with_the_line() {
    let dir = out_dir("publish_tokens_bad_file");
    let file = dir.join("tokens");
    std::fs::write(&file, format!("{TOKEN}\nshort\n")).unwrap();
    let out = Command::new(bin("supervisor"))
        .args(["--listen", "127.0.0.1:0", "--publish-token-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: a publish token must be 16-256 visible ASCII characters"),
        "{stderr}"
    );
}
