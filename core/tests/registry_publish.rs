//! Who may go live: the registry registers a stream only for a broadcaster the publish policy
//! allows, and refuses every other with `publish_forbidden`, fatally, saying why.

mod common;

use common::signing_key;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage};
use ownstream_core::publish::{parse_key_grant, parse_token_grant, PublishPolicy};
use ownstream_core::registry::{Output, Registry, RegistryConfig};

const ANY: &str = "operator-token-0123456789";
const CAM: &str = "camera-only-token-abcdef";
const KEY: &str = "SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 16])
}

fn registry() -> Registry {
    let mut r = Registry::new(RegistryConfig::default(), [3; 32]);
    r.set_publish_policy(PublishPolicy::new(
        &[
            parse_token_grant(ANY).unwrap(),
            parse_token_grant(&format!("cam={CAM}")).unwrap(),
        ],
        &[parse_key_grant(&format!("studio={KEY}")).unwrap()],
    ));
    r
}

/// Broadcaster `n` asks to publish `stream` with `token`; returns what the registry answered.
fn register(r: &mut Registry, n: u8, stream: &str, token: Option<&str>) -> Vec<Output> {
    assert!(r.handle_authenticated(0, id(n), ComponentType::Broadcaster));
    r.handle_message(
        0,
        id(n),
        PeerMessage::RegisterStream {
            stream: stream.into(),
            signing_key: signing_key(),
            token: token.map(str::to_string),
        },
    );
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// The `publish_forbidden` refusal's message; panics unless `out` is exactly that refusal, fatal
/// and followed by closing the connection.
fn forbidden(out: &[Output], n: u8) -> String {
    let [Output::Send(
        to,
        ServerMessage::Error {
            code,
            message,
            fatal: true,
        },
    ), Output::Close(closed, _)] = out
    else {
        panic!("expected a fatal publish_forbidden, got {out:?}");
    };
    assert_eq!(
        (*to, *closed, code.as_str()),
        (id(n), id(n), "publish_forbidden")
    );
    message.clone()
}

fn registered(out: &[Output]) -> bool {
    matches!(
        out.first(),
        Some(Output::Send(_, ServerMessage::StreamRegistered { .. }))
    )
}

#[test]
fn a_broadcaster_without_a_credential_is_refused_and_one_with_it_goes_live() {
    let mut r = registry();
    let why = forbidden(&register(&mut r, 1, "news", None), 1);
    assert!(
        why.contains("needs a publish token") && why.contains("`news`"),
        "{why}"
    );
    assert!(r.streams().is_empty(), "nothing was listed");
    let why = forbidden(&register(&mut r, 2, "news", Some("guess-guess-guess-1")), 2);
    assert!(why.contains("does not allow publishing `news`"), "{why}");
    assert!(registered(&register(&mut r, 3, "news", Some(ANY))));
    assert_eq!(r.streams()[0].name, "news");
}

#[test]
fn a_per_stream_token_allows_only_its_name() {
    let mut r = registry();
    forbidden(&register(&mut r, 1, "other", Some(CAM)), 1);
    assert!(registered(&register(&mut r, 2, "cam", Some(CAM))));
}

#[test]
fn an_allow_listed_key_publishes_its_stream_without_a_token() {
    let mut r = registry();
    assert!(r.handle_authenticated(0, id(1), ComponentType::Broadcaster));
    r.set_key_fingerprint(id(1), KEY.to_lowercase());
    r.handle_message(
        0,
        id(1),
        PeerMessage::RegisterStream {
            stream: "studio".into(),
            signing_key: signing_key(),
            token: None,
        },
    );
    assert!(registered(
        &std::iter::from_fn(|| r.poll_output()).collect::<Vec<_>>()
    ));
    // The same key may not take another name.
    assert!(r.handle_authenticated(0, id(2), ComponentType::Broadcaster));
    r.set_key_fingerprint(id(2), KEY.into());
    r.handle_message(
        0,
        id(2),
        PeerMessage::RegisterStream {
            stream: "elsewhere".into(),
            signing_key: signing_key(),
            token: None,
        },
    );
    forbidden(
        &std::iter::from_fn(|| r.poll_output()).collect::<Vec<_>>(),
        2,
    );
}

#[test]
fn a_default_registry_lets_nobody_publish() {
    let mut r = Registry::new(RegistryConfig::default(), [3; 32]);
    forbidden(&register(&mut r, 1, "s", Some(ANY)), 1);
}

#[test]
fn the_token_travels_only_when_given() {
    let with = PeerMessage::RegisterStream {
        stream: "s".into(),
        signing_key: signing_key(),
        token: Some(ANY.into()),
    };
    let key = signing_key();
    assert_eq!(
        with.encode(),
        format!(
            r#"{{"type":"REGISTER_STREAM","stream":"s","signing_key":"{key}","token":"{ANY}"}}"#
        )
    );
    let without = PeerMessage::decode(&format!(
        r#"{{"type":"REGISTER_STREAM","stream":"s","signing_key":"{key}"}}"#
    ))
    .unwrap();
    assert_eq!(
        without,
        PeerMessage::RegisterStream {
            stream: "s".into(),
            signing_key: signing_key(),
            token: None
        }
    );
}
