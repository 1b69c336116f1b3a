//! Signaling text through the supervisor's side of the RSA handshake.
//!
//! Every op either decodes arbitrary text as a `PeerMessage` (whatever decodes must re-encode and
//! decode to the same message) and feeds it to the supervisor, feeds a structured message (a real
//! or forged peer key, random ciphertext), relays the next message of an honest `PeerHandshake`
//! that hears everything the supervisor says, or moves the clock. Checks: never a panic; every
//! failure is terminal; only the honest peer, with its own id and key, is ever authenticated, and
//! only once; the supervisor says each of its messages at most once, in order; no deadline after
//! the end.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ownstream_core::auth::{HandshakeConfig, Identity, PeerHandshake, SupervisorHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{Agent, ComponentType, PeerMessage, ServerMessage};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::{Arc, OnceLock};

const HONEST: [u8; 16] = [0x42; 16];

struct Keys {
    supervisor: Arc<Identity>,
    peer: Arc<Identity>,
    peer_b64: String,
    other_b64: String,
}

/// RSA key generation is slow: once per process. 1024 bits is the smallest key whose OAEP-SHA256
/// block holds the 32-byte challenge with room to spare, and keeps each decryption cheap.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use base64::Engine as _;
        let mut rng = StdRng::seed_from_u64(1);
        let mut gen = || Arc::new(Identity::generate(&mut rng, 1024).expect("key generation"));
        let (supervisor, peer, other) = (gen(), gen(), gen());
        let b64 = |k: &Identity| base64::engine::general_purpose::STANDARD.encode(k.public_der());
        Keys {
            peer_b64: b64(&peer),
            other_b64: b64(&other),
            supervisor,
            peer,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Op {
    Text(String),
    Honest,
    Info {
        id: u8,
        key: KeyChoice,
        broadcaster: bool,
        browser: bool,
    },
    Ack,
    Answer(Vec<u8>),
    Advance(u16),
    Timeout,
}

#[derive(Arbitrary, Debug)]
enum KeyChoice {
    Honest,
    Other,
    Raw(Vec<u8>),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let k = keys();
    let mut rng = StdRng::seed_from_u64(input.seed);
    let config = HandshakeConfig {
        min_key_bits: 1024,
        ..HandshakeConfig::default()
    };
    let mut sup = SupervisorHandshake::new(k.supervisor.clone(), config, vec![], 0);
    let honest_id = PeerId::from_bytes(HONEST);
    let mut peer = PeerHandshake::new(k.peer.clone(), honest_id, ComponentType::Receiver, None);
    let mut now = 0u64;
    let mut failed = false;
    let mut authenticated = false;
    let mut said: Vec<&'static str> = Vec::new();
    deliver(&mut sup, &mut peer, &mut rng, &mut said);
    for op in input.ops {
        let msg = match op {
            Op::Text(text) => match PeerMessage::decode(&text) {
                Ok(m) => {
                    let again = PeerMessage::decode(&m.encode()).expect("re-decodes");
                    assert_eq!(again, m);
                    m
                }
                Err(_) => continue,
            },
            Op::Honest => match peer.poll_message() {
                Some(m) => m,
                None => continue,
            },
            Op::Info {
                id,
                key,
                broadcaster,
                browser,
            } => PeerMessage::CollectPeerInfoResponse {
                peer_id: PeerId::from_bytes([id; 16]),
                public_key: match key {
                    KeyChoice::Honest => k.peer_b64.clone(),
                    KeyChoice::Other => k.other_b64.clone(),
                    KeyChoice::Raw(b) => b64(&b),
                    KeyChoice::Text(t) => t,
                },
                component_type: if broadcaster {
                    ComponentType::Broadcaster
                } else {
                    ComponentType::Receiver
                },
                agent: if browser {
                    Agent::Browser
                } else {
                    Agent::Native
                },
            },
            Op::Ack => PeerMessage::AuthenticationResponse {},
            Op::Answer(bytes) => PeerMessage::AuthenticationChallengeResponse {
                response: b64(&bytes),
            },
            Op::Advance(ms) => {
                now += u64::from(ms);
                continue;
            }
            Op::Timeout => {
                let r = sup.handle_timeout(now);
                failed |= r.is_err();
                if failed || authenticated {
                    assert_eq!(sup.poll_timeout(), None);
                }
                continue;
            }
        };
        match sup.handle_message(now, msg, &mut rng) {
            Ok(Some(p)) => {
                assert!(!failed && !authenticated, "authenticated after the end");
                assert_eq!(p.peer_id, honest_id, "a peer that is not the honest one");
                assert_eq!(p.public_der, k.peer.public_der());
                authenticated = true;
            }
            Ok(None) => assert!(
                !failed && !authenticated,
                "accepted a message after the end"
            ),
            Err(_) => failed = true,
        }
        if failed || authenticated {
            assert_eq!(sup.poll_timeout(), None);
        }
        deliver(&mut sup, &mut peer, &mut rng, &mut said);
    }
});

/// Passes what the supervisor says to the honest peer (which may fail on it: not our concern) and
/// checks the order of the supervisor's messages.
fn deliver(
    sup: &mut SupervisorHandshake,
    peer: &mut PeerHandshake,
    rng: &mut StdRng,
    said: &mut Vec<&'static str>,
) {
    const ORDER: [&str; 4] = [
        "COLLECT_PEER_INFO_REQUEST",
        "AUTHENTICATION_REQUEST",
        "AUTHENTICATION_CHALLENGE_REQUEST",
        "AUTHENTICATED",
    ];
    while let Some(m) = sup.poll_message() {
        let name = m.name();
        assert_eq!(
            Some(&name),
            ORDER.get(said.len()),
            "supervisor said {name} after {said:?}"
        );
        said.push(name);
        let again = ServerMessage::decode(&m.encode()).expect("re-decodes");
        assert_eq!(again, m);
        let _ = peer.handle_message(m, rng);
    }
}
