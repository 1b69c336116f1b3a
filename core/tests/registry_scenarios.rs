//! The supervisor's registry on simulated time: registration, joins, signaling rules, repairs,
//! heartbeats and stream ends, checked through the messages it emits.

mod common;

use base64::Engine as _;
use common::{register, signing_key};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{
    ComponentType, PeerMessage, PeerStats, ServerMessage, SignalPayload, TopologyName,
};
use ownstream_core::publish::PublishPolicy;
use ownstream_core::registry::{Output, Registry, RegistryConfig};

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 16])
}

fn registry(topology: TopologyName) -> Registry {
    let config = RegistryConfig {
        topology,
        fanout: 2,
        heartbeat_timeout_ms: 3000,
    };
    let mut r = Registry::new(config, [9; 32]);
    r.set_publish_policy(PublishPolicy::open());
    r
}

fn drain(r: &mut Registry) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn sent_to(out: &[Output], peer: PeerId) -> Vec<&ServerMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(p, m) if *p == peer => Some(m),
            _ => None,
        })
        .collect()
}

/// Broadcaster 0 with stream "s" and viewers 1..=n joined in order.
fn stream_with(topology: TopologyName, n: u8) -> Registry {
    let mut r = registry(topology);
    assert!(r.handle_authenticated(0, id(0), ComponentType::Broadcaster));
    r.handle_message(0, id(0), register("s"));
    for v in 1..=n {
        assert!(r.handle_authenticated(0, id(v), ComponentType::Receiver));
        r.handle_message(
            0,
            id(v),
            PeerMessage::JoinStream {
                stream: "s".into(),
                wait: false,
                relay: true,
            },
        );
    }
    drain(&mut r);
    r
}

#[test]
fn broadcaster_gets_a_key_and_viewers_get_the_same_key() {
    let mut r = registry(TopologyName::Tree);
    r.handle_authenticated(0, id(0), ComponentType::Broadcaster);
    r.handle_message(0, id(0), register("s"));
    let out = drain(&mut r);
    let ServerMessage::StreamRegistered { key, .. } = sent_to(&out, id(0))[0] else {
        panic!("expected STREAM_REGISTERED, got {out:?}");
    };
    r.handle_authenticated(0, id(1), ComponentType::Receiver);
    r.handle_message(
        0,
        id(1),
        PeerMessage::JoinStream {
            stream: "s".into(),
            wait: false,
            relay: true,
        },
    );
    let out = drain(&mut r);
    match sent_to(&out, id(1))[0] {
        ServerMessage::Joined {
            key: k,
            signing_key: sk,
            parent,
            depth,
            ..
        } => {
            assert_eq!(k, key);
            assert_eq!(*sk, signing_key(), "the key bound at registration");
            assert_eq!(*parent, id(0));
            assert_eq!(*depth, 1);
        }
        other => panic!("expected JOINED, got {other:?}"),
    }
    assert!(
        matches!(sent_to(&out, id(0))[0], ServerMessage::ConnectChild { child, .. } if *child == id(1))
    );
}

#[test]
fn a_binary_tree_of_seven_fills_level_by_level() {
    let r = stream_with(TopologyName::Tree, 7);
    let tree = r.tree("s").unwrap();
    assert_eq!(tree.nodes.len(), 8);
    let depth_of = |p: PeerId| tree.nodes.iter().find(|n| n.id == p).unwrap().depth;
    assert_eq!([1, 2].map(|v| depth_of(id(v))), [1, 1]);
    assert_eq!([3, 4, 5, 6].map(|v| depth_of(id(v))), [2, 2, 2, 2]);
    assert_eq!(depth_of(id(7)), 3);
    assert_eq!(r.streams()[0].viewers, 7);
}

#[test]
fn crash_at_depth_one_rewires_only_its_children() {
    let mut r = stream_with(TopologyName::Tree, 7);
    // Viewer 1 is at depth 1 with children 3 and 4 (and 7 below 3).
    r.handle_disconnected(10, id(1));
    let out = drain(&mut r);
    let set_parent: Vec<PeerId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send(p, ServerMessage::SetParent { .. }) => Some(*p),
            _ => None,
        })
        .collect();
    let mut moved = set_parent.clone();
    moved.sort();
    assert_eq!(moved, vec![id(3), id(4)]);
    // Each moved child hears about its new parent before the parent is told to connect.
    for child in set_parent {
        let pos_set = out
            .iter()
            .position(
                |o| matches!(o, Output::Send(p, ServerMessage::SetParent { .. }) if *p == child),
            )
            .unwrap();
        let pos_connect = out.iter().position(|o| matches!(o, Output::Send(_, ServerMessage::ConnectChild { child: c, .. }) if *c == child)).unwrap();
        assert!(pos_set < pos_connect);
    }
    let tree = r.tree("s").unwrap();
    assert_eq!(tree.nodes.len(), 7);
    assert!(tree.nodes.iter().all(|n| n.id != id(1)));
}

#[test]
fn signaling_passes_only_between_neighbours() {
    let mut r = stream_with(TopologyName::Tree, 3);
    let offer = SignalPayload::Offer { sdp: "v=0".into() };
    // 0 -> 1 are neighbours.
    r.handle_message(
        1,
        id(0),
        PeerMessage::Signal {
            to: id(1),
            payload: offer.clone(),
        },
    );
    let out = drain(&mut r);
    assert!(
        matches!(sent_to(&out, id(1))[0], ServerMessage::Signal { from, .. } if *from == id(0))
    );
    // 2 -> 3 are not (3 is 1's child).
    r.handle_message(
        1,
        id(2),
        PeerMessage::Signal {
            to: id(3),
            payload: offer,
        },
    );
    assert!(drain(&mut r).is_empty());
}

#[test]
fn receivers_may_not_register_and_broadcasters_may_not_join() {
    let mut r = registry(TopologyName::Tree);
    r.handle_authenticated(0, id(1), ComponentType::Receiver);
    r.handle_message(0, id(1), register("s"));
    let out = drain(&mut r);
    assert!(
        matches!(&out[0], Output::Send(_, ServerMessage::Error { code, fatal: true, .. }) if code == "not_allowed")
    );
    assert!(matches!(&out[1], Output::Close(p, _) if *p == id(1)));
}

/// Found by `fuzz/registry`: a broadcaster sending `JOIN_STREAM` was closed but its stream stayed
/// live with a broadcaster gone (input: Auth 1 as broadcaster, REGISTER_STREAM "b",
/// JOIN_STREAM "b"), and a viewer closed the same way stayed in the tree.
#[test]
fn a_peer_closed_for_a_forbidden_message_leaves_its_stream() {
    let mut r = registry(TopologyName::Tree);
    r.handle_authenticated(0, id(1), ComponentType::Broadcaster);
    r.handle_message(0, id(1), register("b"));
    r.handle_message(
        0,
        id(1),
        PeerMessage::JoinStream {
            stream: "b".into(),
            wait: true,
            relay: true,
        },
    );
    let out = drain(&mut r);
    assert!(matches!(out.last(), Some(Output::Close(p, _)) if *p == id(1)));
    assert!(r.streams().is_empty(), "{:?}", r.streams());
    assert_eq!(r.peer_count(), 0);

    // Viewer 1 is a parent (of 3); forbidden, it is closed and its child moves to a live parent.
    let mut r = stream_with(TopologyName::Tree, 3);
    r.handle_message(1, id(1), register("x"));
    let out = drain(&mut r);
    assert!(matches!(out.last(), Some(Output::Close(p, _)) if *p == id(1)));
    let tree = r.tree("s").unwrap();
    assert!(tree.nodes.iter().all(|n| n.id != id(1)), "{tree:?}");
    assert!(
        tree.nodes.iter().all(|n| n.parent != Some(id(1))),
        "{tree:?}"
    );
    assert!(sent_to(&out, id(3))
        .iter()
        .any(|m| matches!(m, ServerMessage::SetParent { .. })));
}

#[test]
fn joining_an_unknown_stream_fails_or_waits() {
    let mut r = registry(TopologyName::Tree);
    r.handle_authenticated(0, id(1), ComponentType::Receiver);
    r.handle_message(
        0,
        id(1),
        PeerMessage::JoinStream {
            stream: "later".into(),
            wait: false,
            relay: true,
        },
    );
    let out = drain(&mut r);
    assert!(
        matches!(sent_to(&out, id(1))[0], ServerMessage::Error { code, fatal: false, .. } if code == "stream_not_found")
    );

    r.handle_authenticated(0, id(2), ComponentType::Receiver);
    r.handle_message(
        0,
        id(2),
        PeerMessage::JoinStream {
            stream: "later".into(),
            wait: true,
            relay: true,
        },
    );
    assert!(matches!(
        sent_to(&drain(&mut r), id(2))[0],
        ServerMessage::StreamWaiting { .. }
    ));
    r.handle_authenticated(0, id(0), ComponentType::Broadcaster);
    r.handle_message(5, id(0), register("later"));
    let out = drain(&mut r);
    assert!(
        matches!(sent_to(&out, id(2))[0], ServerMessage::Joined { parent, .. } if *parent == id(0))
    );
}

#[test]
fn silent_peers_fail_after_the_heartbeat_timeout() {
    let mut r = stream_with(TopologyName::Tree, 3);
    assert_eq!(r.poll_timeout(0), Some(3000));
    for p in [0, 2, 3] {
        r.handle_message(2500, id(p), PeerMessage::Heartbeat {});
    }
    r.handle_timeout(3000);
    let out = drain(&mut r);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close(p, _) if *p == id(1))));
    assert_eq!(r.tree("s").unwrap().nodes.len(), 3);
}

#[test]
fn broadcaster_leaving_ends_the_stream_for_everyone() {
    let mut r = stream_with(TopologyName::Chain, 3);
    r.handle_message(1, id(0), PeerMessage::EndStream {});
    let out = drain(&mut r);
    for v in 1..=3 {
        assert!(matches!(
            sent_to(&out, id(v))[0],
            ServerMessage::StreamEnded { .. }
        ));
    }
    assert!(r.streams().is_empty());
    assert!(r.tree("s").is_none());
}

#[test]
fn parent_lost_moves_the_child_but_keeps_the_parent() {
    let mut r = stream_with(TopologyName::Tree, 4);
    // 3 is 1's child; 3 reports that its channel to 1 closed.
    r.handle_message(1, id(3), PeerMessage::ParentLost { parent: id(1) });
    let out = drain(&mut r);
    assert!(
        matches!(sent_to(&out, id(1))[0], ServerMessage::DropChild { child, .. } if *child == id(3))
    );
    let ServerMessage::SetParent { parent, .. } = sent_to(&out, id(3))[0] else {
        panic!("expected SET_PARENT, got {out:?}");
    };
    assert_ne!(*parent, id(1));
    let tree = r.tree("s").unwrap();
    assert_eq!(tree.nodes.len(), 5, "the parent stays");
    // A stale report (3 no longer has 1 as parent) changes nothing.
    r.handle_message(2, id(3), PeerMessage::ParentLost { parent: id(1) });
    assert!(drain(&mut r).is_empty());
}

#[test]
fn ready_counts_viewers_whose_parent_channel_is_open() {
    let mut r = stream_with(TopologyName::Tree, 3);
    assert_eq!(r.streams()[0].ready, 0);
    for v in [1, 2] {
        let stats = PeerStats {
            connected: true,
            ..PeerStats::default()
        };
        r.handle_message(1, id(v), PeerMessage::Stats { stats });
    }
    assert_eq!(r.streams()[0].ready, 2);
}

#[test]
fn duplicate_peer_ids_are_refused() {
    let mut r = registry(TopologyName::Tree);
    assert!(r.handle_authenticated(0, id(1), ComponentType::Receiver));
    assert!(!r.handle_authenticated(0, id(1), ComponentType::Receiver));
}

#[test]
fn a_registration_without_a_usable_signing_key_is_refused() {
    let mut r = registry(TopologyName::Tree);
    r.handle_authenticated(0, id(0), ComponentType::Broadcaster);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = base64::engine::general_purpose::STANDARD.encode(identity);
    for bad in ["", "!!", "AAAA", weak.as_str()] {
        r.handle_message(
            0,
            id(0),
            PeerMessage::RegisterStream {
                stream: "s".into(),
                signing_key: bad.into(),
                token: None,
            },
        );
        let out = drain(&mut r);
        assert!(
            matches!(sent_to(&out, id(0))[0], ServerMessage::Error { code, fatal: false, message } if code == "bad_signing_key" && message.contains("Ed25519")),
            "{bad:?}: {out:?}"
        );
    }
    // Missing from the JSON altogether: the same refusal, not a parse error.
    let msg = PeerMessage::decode(r#"{"type":"REGISTER_STREAM","stream":"s"}"#).unwrap();
    r.handle_message(0, id(0), msg);
    let out = drain(&mut r);
    assert!(
        matches!(sent_to(&out, id(0))[0], ServerMessage::Error { code, .. } if code == "bad_signing_key")
    );
    r.handle_message(0, id(0), PeerMessage::ListStreams {});
    assert!(
        matches!(sent_to(&drain(&mut r), id(0))[0], ServerMessage::StreamList { streams } if streams.is_empty()),
        "nothing was registered"
    );
    r.handle_message(0, id(0), register("s"));
    assert!(matches!(
        sent_to(&drain(&mut r), id(0))[0],
        ServerMessage::StreamRegistered { .. }
    ));
}

#[test]
fn clock_answers_are_on_the_wall_clock_and_stream_timing_reaches_every_viewer() {
    use ownstream_core::protocol::LatencyMode;
    let mut r = stream_with(TopologyName::Tree, 2);
    r.set_clock_base(1_000_000);
    r.handle_message(50, id(1), PeerMessage::ClockRequest { t0: 7 });
    let out = drain(&mut r);
    assert_eq!(
        sent_to(&out, id(1)),
        [&ServerMessage::Clock {
            t0: 7,
            now_ms: 1_000_050
        }]
    );
    // The broadcaster's timing reaches both viewers (a viewer's would be refused, fatally, as
    // every broadcaster-only message is).
    let timing = PeerMessage::StreamTiming {
        latency: LatencyMode::Low,
        epoch_ms: Some(123),
    };
    r.handle_message(60, id(0), timing.clone());
    let out = drain(&mut r);
    let expected = ServerMessage::StreamTiming {
        stream: "s".into(),
        latency: LatencyMode::Low,
        epoch_ms: Some(123),
    };
    for v in [1, 2] {
        assert_eq!(sent_to(&out, id(v)), [&expected]);
    }
    assert!(sent_to(&out, id(0)).is_empty());
    // The same again changes nothing; a later viewer gets it right after JOINED.
    r.handle_message(70, id(0), timing);
    assert!(drain(&mut r).is_empty());
    assert!(r.handle_authenticated(80, id(3), ComponentType::Receiver));
    r.handle_message(
        80,
        id(3),
        PeerMessage::JoinStream {
            stream: "s".into(),
            wait: false,
            relay: true,
        },
    );
    let out = drain(&mut r);
    let to_new = sent_to(&out, id(3));
    assert!(
        matches!(to_new[0], ServerMessage::Joined { .. }),
        "{to_new:?}"
    );
    assert_eq!(to_new[1], &expected);
}
