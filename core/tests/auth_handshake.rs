//! The RSA challenge handshake, both sides, including every failure the supervisor must catch.

use ownstream_core::auth::{
    AuthError, HandshakeConfig, Identity, PeerHandshake, SupervisorHandshake,
};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::{Arc, OnceLock};

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn key(slot: usize, bits: usize) -> Arc<Identity> {
    static KEYS: OnceLock<Vec<Arc<Identity>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let mut r = StdRng::seed_from_u64(42);
        vec![
            Arc::new(Identity::generate(&mut r, 2048).unwrap()),
            Arc::new(Identity::generate(&mut r, 2048).unwrap()),
            Arc::new(Identity::generate(&mut r, 2048).unwrap()),
            Arc::new(Identity::generate(&mut r, 1024).unwrap()),
        ]
    });
    let k = keys[slot].clone();
    assert_eq!(k.bits(), bits);
    k
}

fn supervisor() -> SupervisorHandshake {
    SupervisorHandshake::new(key(0, 2048), HandshakeConfig::default(), vec![], 0)
}

fn peer(id: u8, identity: Arc<Identity>) -> PeerHandshake {
    PeerHandshake::new(
        identity,
        PeerId::from_bytes([id; 16]),
        ComponentType::Receiver,
        None,
    )
}

/// Runs server->peer messages into the peer and returns the peer's answer, if any.
fn to_peer(
    s: &mut SupervisorHandshake,
    p: &mut PeerHandshake,
) -> Result<Option<PeerMessage>, AuthError> {
    while let Some(m) = s.poll_message() {
        p.handle_message(m, &mut rng())?;
    }
    Ok(p.poll_message())
}

#[test]
fn honest_peer_is_authenticated() {
    let mut s = supervisor();
    let mut p = peer(1, key(1, 2048));
    let mut t = 0;
    loop {
        let m = to_peer(&mut s, &mut p).unwrap().expect("peer answers");
        t += 10;
        if let Some(done) = s.handle_message(t, m, &mut rng()).unwrap() {
            assert_eq!(done.peer_id, PeerId::from_bytes([1; 16]));
            assert_eq!(done.component, ComponentType::Receiver);
            break;
        }
    }
    let last = s.poll_message().unwrap();
    let session = p.handle_message(last, &mut rng()).unwrap().unwrap();
    assert_eq!(session.supervisor_fingerprint, key(0, 2048).fingerprint());
    assert_eq!(s.poll_timeout(), None, "no deadline once authenticated");
}

/// Drives both sides until the peer has produced its challenge response.
fn until_challenge_response(s: &mut SupervisorHandshake, p: &mut PeerHandshake) -> PeerMessage {
    let info = to_peer(s, p).unwrap().unwrap();
    s.handle_message(1, info, &mut rng()).unwrap();
    let ack = to_peer(s, p).unwrap().unwrap();
    s.handle_message(2, ack, &mut rng()).unwrap();
    to_peer(s, p).unwrap().unwrap()
}

#[test]
fn answer_meant_for_another_session_is_refused() {
    // Same peer id and key in two sessions: each session's random numbers differ, so a
    // replayed or cross-wired answer does not match.
    let (mut s1, mut s2) = (supervisor(), supervisor());
    let (mut p1, mut p2) = (peer(1, key(1, 2048)), peer(1, key(1, 2048)));
    let r1 = until_challenge_response(&mut s1, &mut p1);
    let mut seeded = StdRng::seed_from_u64(99);
    // s2 must draw different numbers than s1, so advance it with another RNG stream.
    let info = to_peer(&mut s2, &mut p2).unwrap().unwrap();
    s2.handle_message(1, info, &mut seeded).unwrap();
    let ack = to_peer(&mut s2, &mut p2).unwrap().unwrap();
    s2.handle_message(2, ack, &mut seeded).unwrap();
    let err = s2.handle_message(3, r1, &mut rng()).unwrap_err();
    assert_eq!(err, AuthError::WrongAnswer);
}

#[test]
fn wrong_answer_is_refused() {
    let mut s = supervisor();
    let mut p = peer(1, key(1, 2048));
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(1, info, &mut rng()).unwrap();
    s.poll_message();
    s.handle_message(2, PeerMessage::AuthenticationResponse {}, &mut rng())
        .unwrap();
    // A peer that cannot decrypt guesses: encrypts 32 zero bytes to the supervisor's key.
    let sup_key = rsa::RsaPublicKey::from_public_key_der(key(0, 2048).public_der()).unwrap();
    let guess = sup_key
        .encrypt(&mut rng(), rsa::Oaep::<sha2::Sha256>::new(), &[0u8; 32])
        .unwrap();
    use base64::Engine;
    use rsa::pkcs8::DecodePublicKey;
    let response = base64::engine::general_purpose::STANDARD.encode(guess);
    let err = s
        .handle_message(
            3,
            PeerMessage::AuthenticationChallengeResponse { response },
            &mut rng(),
        )
        .unwrap_err();
    assert_eq!(err, AuthError::WrongAnswer);
}

#[test]
fn answer_encrypted_to_another_key_has_bad_padding() {
    let mut s = supervisor();
    let mut p = peer(1, key(1, 2048));
    // The peer pins nothing, so feed it a different supervisor key: its answer is then encrypted
    // to the wrong key and the real supervisor cannot decrypt it.
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(1, info, &mut rng()).unwrap();
    let mut real = s.poll_message().unwrap();
    if let ServerMessage::AuthenticationRequest { supervisor_key } = &mut real {
        use base64::Engine;
        *supervisor_key =
            base64::engine::general_purpose::STANDARD.encode(key(2, 2048).public_der());
    }
    p.handle_message(real, &mut rng()).unwrap();
    let ack = p.poll_message().unwrap();
    s.handle_message(2, ack, &mut rng()).unwrap();
    let response = to_peer(&mut s, &mut p).unwrap().unwrap();
    let err = s.handle_message(3, response, &mut rng()).unwrap_err();
    // Undecryptable and wrong answers fail alike: a distinct error would be a padding oracle.
    assert_eq!(err, AuthError::WrongAnswer);
}

#[test]
fn garbage_ciphertext_and_base64_are_refused() {
    for (response, want) in [
        ("AAAA".to_string(), AuthError::WrongAnswer),
        (
            "!!not base64!!".to_string(),
            AuthError::BadBase64("response"),
        ),
    ] {
        let mut s = supervisor();
        let mut p = peer(1, key(1, 2048));
        let _ = until_challenge_response(&mut s, &mut p);
        let err = s
            .handle_message(
                3,
                PeerMessage::AuthenticationChallengeResponse { response },
                &mut rng(),
            )
            .unwrap_err();
        assert_eq!(err, want);
    }
}

#[test]
fn small_keys_are_refused_unless_allowed() {
    let mut s = supervisor();
    let mut p = peer(1, key(3, 1024));
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    let err = s.handle_message(1, info.clone(), &mut rng()).unwrap_err();
    assert_eq!(
        err,
        AuthError::KeyTooSmall {
            bits: 1024,
            min: 2048
        }
    );

    let config = HandshakeConfig {
        min_key_bits: 1024,
        ..HandshakeConfig::default()
    };
    let mut lenient = SupervisorHandshake::new(key(0, 2048), config, vec![], 0);
    lenient.poll_message();
    assert!(lenient.handle_message(1, info, &mut rng()).is_ok());
}

#[test]
fn messages_out_of_order_are_refused() {
    let mut s = supervisor();
    let err = s
        .handle_message(1, PeerMessage::AuthenticationResponse {}, &mut rng())
        .unwrap_err();
    assert!(matches!(
        err,
        AuthError::OutOfOrder {
            got: "AUTHENTICATION_RESPONSE",
            ..
        }
    ));
    // Once failed, always failed.
    assert_eq!(
        s.handle_message(2, PeerMessage::Heartbeat {}, &mut rng())
            .unwrap_err(),
        AuthError::AlreadyFailed
    );

    let mut s = supervisor();
    let mut p = peer(1, key(1, 2048));
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(1, info, &mut rng()).unwrap();
    for early in [
        PeerMessage::JoinStream {
            stream: "x".into(),
            wait: false,
            relay: true,
        },
        PeerMessage::AuthenticationChallengeResponse {
            response: String::new(),
        },
    ] {
        let mut s2 = supervisor();
        let mut p2 = peer(2, key(1, 2048));
        let info = to_peer(&mut s2, &mut p2).unwrap().unwrap();
        s2.handle_message(1, info, &mut rng()).unwrap();
        assert!(matches!(
            s2.handle_message(2, early, &mut rng()),
            Err(AuthError::OutOfOrder { .. })
        ));
    }
}

#[test]
fn silence_fails_at_the_step_deadline() {
    let mut s = supervisor();
    assert_eq!(s.poll_timeout(), Some(3_000));
    assert!(s.handle_timeout(2_999).is_ok());
    let err = s.handle_timeout(3_000).unwrap_err();
    assert_eq!(
        err,
        AuthError::StepTimeout {
            expected: "COLLECT_PEER_INFO_RESPONSE",
            ms: 3_000
        }
    );
    assert_eq!(
        err.to_string(),
        "no COLLECT_PEER_INFO_RESPONSE within 3000 ms"
    );
    // A late answer is refused too.
    let mut s = supervisor();
    let mut p = peer(1, key(1, 2048));
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    assert!(matches!(
        s.handle_message(3_001, info, &mut rng()).unwrap_err(),
        AuthError::StepTimeout { .. }
    ));
}

#[test]
fn each_answer_restarts_the_step_deadline_but_not_the_total() {
    let mut s = supervisor();
    let mut p = peer(1, key(1, 2048));
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(2_500, info, &mut rng()).unwrap();
    assert_eq!(s.poll_timeout(), Some(5_500));
    p.handle_message(s.poll_message().unwrap(), &mut rng())
        .unwrap();
    let ack = p.poll_message().unwrap();
    s.handle_message(5_000, ack, &mut rng()).unwrap();
    assert!(s.awaits_answer());
    assert_eq!(s.poll_timeout(), Some(8_000));
    let response = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(7_900, response, &mut rng())
        .unwrap()
        .unwrap();
    assert_eq!(s.poll_timeout(), None);

    // Answering each step just in time still ends at the total deadline.
    let config = HandshakeConfig {
        step_timeout_ms: 6_000,
        ..HandshakeConfig::default()
    };
    let mut s = SupervisorHandshake::new(key(0, 2048), config, vec![], 0);
    let mut p = peer(1, key(1, 2048));
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(5_000, info, &mut rng()).unwrap();
    assert_eq!(s.poll_timeout(), Some(10_000));
    assert_eq!(s.handle_timeout(10_000), Err(AuthError::Timeout));
}

#[test]
fn pinned_fingerprint_is_enforced_by_the_peer() {
    let mut s = supervisor();
    let wrong = key(2, 2048).fingerprint();
    let mut p = PeerHandshake::new(
        key(1, 2048),
        PeerId::from_bytes([1; 16]),
        ComponentType::Receiver,
        Some(wrong),
    );
    let info = to_peer(&mut s, &mut p).unwrap().unwrap();
    s.handle_message(1, info, &mut rng()).unwrap();
    let err = to_peer(&mut s, &mut p).unwrap_err();
    assert!(matches!(err, AuthError::FingerprintMismatch { .. }));

    // The right pin, written in another case and without the prefix, passes.
    let mut s = supervisor();
    let right = key(0, 2048)
        .fingerprint()
        .trim_start_matches("SHA256:")
        .to_uppercase();
    let mut p = PeerHandshake::new(
        key(1, 2048),
        PeerId::from_bytes([1; 16]),
        ComponentType::Receiver,
        Some(right),
    );
    let _ = until_challenge_response(&mut s, &mut p);
}

#[test]
fn keys_round_trip_through_pkcs8_pem() {
    let pem = key(0, 2048).to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = Identity::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.fingerprint(), key(0, 2048).fingerprint());
    assert!(Identity::from_pkcs8_pem("not a key").is_err());
}
