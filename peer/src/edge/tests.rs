//! Unit tests of the edge: configuration, SDP helpers, and bad remote input.

use super::*;

#[test]
fn first_mid_reads_the_first_media_section() {
    let sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=mid:1\r\n";
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
async fn larger_packets_only_toward_a_rust_peer_on_a_loopback_only_path() {
    let loopback = EdgeConfig::loopback();
    // Linux since 5.0 coalesces UDP datagrams (GRO); Debian's kernels do.
    let coalesces = runtime::udp_coalesces();
    assert_eq!(coalesces, cfg!(target_os = "linux"));
    let big = coalesces.then_some(LOOPBACK_SCTP_MTU);
    assert_eq!(loopback.sctp_mtu_toward(Some(Agent::Native)), big);
    assert_eq!(loopback.sctp_mtu_toward(Some(Agent::Browser)), None);
    assert_eq!(loopback.sctp_mtu_toward(None), None, "unknown agent");
    let set = EdgeConfig {
        sctp_mtu: Some(1100),
        ..EdgeConfig::loopback()
    };
    assert_eq!(set.sctp_mtu_toward(Some(Agent::Browser)), Some(1100));
    // Any path that might leave the host keeps the standard size.
    let not_loopback = [
        EdgeConfig::default(),
        EdgeConfig {
            ice_servers: vec![IceServerConfig {
                urls: vec!["turn:127.0.0.1:3478".into()],
                ..IceServerConfig::default()
            }],
            ..EdgeConfig::loopback()
        },
        EdgeConfig {
            relay_only: true,
            ..EdgeConfig::loopback()
        },
        EdgeConfig {
            bind_ips: Vec::new(),
            ..EdgeConfig::loopback()
        },
    ];
    for config in not_loopback {
        assert_eq!(
            config.sctp_mtu_toward(Some(Agent::Native)),
            None,
            "{config:?}"
        );
    }
}

#[test]
fn consent_is_checked_every_second_only_where_a_pair_may_be_relayed() {
    let server = |url: &str| IceServerConfig {
        urls: vec![url.into()],
        ..IceServerConfig::default()
    };
    let direct = [
        EdgeConfig::default(),
        EdgeConfig::loopback(),
        EdgeConfig {
            ice_servers: vec![server("stun:127.0.0.1:3478")],
            ..EdgeConfig::default()
        },
    ];
    for config in direct {
        assert_eq!(
            config.consent_interval(),
            DIRECT_CONSENT_INTERVAL,
            "{config:?}"
        );
    }
    let relayed = [
        EdgeConfig {
            ice_servers: vec![server("stun:127.0.0.1:3478"), server("turn:127.0.0.1:3478")],
            ..EdgeConfig::default()
        },
        EdgeConfig {
            ice_servers: vec![server("turns:turn.example.org:5349")],
            ..EdgeConfig::default()
        },
        EdgeConfig {
            relay_only: true,
            ..EdgeConfig::default()
        },
    ];
    for config in relayed {
        assert_eq!(
            config.consent_interval(),
            RELAYED_CONSENT_INTERVAL,
            "{config:?}"
        );
    }
    assert!(RELAYED_CONSENT_INTERVAL < DIRECT_CONSENT_INTERVAL);
    // The checks must keep a quiet standby edge inside ICE's silence limit.
    assert!(DIRECT_CONSENT_INTERVAL < EdgeConfig::default().ice_disconnected_timeout);
    let set = EdgeConfig {
        ice_keepalive_interval: Some(Duration::from_millis(500)),
        relay_only: true,
        ..EdgeConfig::default()
    };
    assert_eq!(set.consent_interval(), Duration::from_millis(500));
}

/// SCTP's DATA-chunk payload in a packet of `mtu` bytes: less its 12-byte common header and the
/// 16-byte chunk header, rounded down to SCTP's 4-byte padding (what `webrtc` 0.21 derives).
fn sctp_payload(mtu: u32) -> usize {
    (mtu as usize - 28) & !3
}

#[test]
fn a_fragment_fills_whole_packets_at_both_packet_sizes() {
    use ownstream_core::frame::FRAGMENT_LEN;
    // Between Rust peers on loopback: no short packet at all.
    assert_eq!(FRAGMENT_LEN % sctp_payload(LOOPBACK_SCTP_MTU), 0);
    // At webrtc's default 1191 bytes (browsers, any other path): the last packet nearly full.
    let payload = sctp_payload(1191);
    let last = FRAGMENT_LEN % payload;
    assert!(
        last == 0 || last * 100 >= payload * 95,
        "last packet holds {last} of {payload}"
    );
}

#[test]
fn outside_a_runtime_the_probe_says_no_rather_than_panic() {
    // The probe needs tokio's reactor; without one it must not panic (it may answer from an
    // earlier probe in this process).
    let _ = runtime::udp_coalesces();
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
