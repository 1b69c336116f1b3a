//! Unit tests of what the shared scenarios (`testdata/node-scenarios`) do not cover: the playback
//! model, arrivals, sampling, fault injection, the tick that keeps buffered amounts fresh.

use super::*;
use crate::frame::{ChunkSigner, FrameError, Message, SigningKey, FLAG_INIT, FLAG_KEYFRAME};
use crate::protocol::SignalPayload;
use bytes::Bytes;

const KEY: [u8; 32] = [7; 32];

fn peer(n: u8) -> PeerId {
    PeerId::from_bytes([n; 16])
}

fn key_b64() -> String {
    StreamKey::new(KEY).to_base64()
}

const SEED: [u8; 32] = [5; 32];

fn signer_of(seed: [u8; 32]) -> ChunkSigner {
    ChunkSigner::new("s", StreamKey::new(KEY), SigningKey::from_seed(seed))
}

fn chunk(seq: u64, flags: u8) -> Chunk {
    chunk_by(&signer_of(SEED), seq, flags)
}

fn chunk_by(signer: &ChunkSigner, seq: u64, flags: u8) -> Chunk {
    let ts = seq.saturating_sub(1) * 1000;
    let dur = if flags & FLAG_INIT != 0 { 0 } else { 1000 };
    signer.sign(
        ChunkSeq(seq),
        flags,
        ts,
        dur,
        Bytes::from(vec![seq as u8; 300]),
    )
}

fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// A receiver joined under `peer(1)` with its parent edge (edge 1) open at 30 ms.
fn joined(config: NodeConfig) -> Node {
    let mut n = offered(config);
    n.handle_edge_open(30, EdgeId(1));
    drain(&mut n);
    n
}

/// A receiver joined under `peer(1)`, whose offer came at 20 ms; its outputs not drained.
fn offered(config: NodeConfig) -> Node {
    let mut n = Node::new(config, 0);
    n.handle_connected(5, 1000);
    n.handle_server(
        10,
        ServerMessage::Joined {
            stream: "s".into(),
            key: key_b64(),
            signing_key: signer_of(SEED).verifying_key().to_base64(),
            parent: peer(1),
            depth: 1,
        },
    );
    n.handle_server(
        20,
        ServerMessage::Signal {
            from: peer(1),
            payload: SignalPayload::Offer { sdp: "o".into() },
        },
    );
    n
}

fn feed(n: &mut Node, now: u64, c: &Chunk) {
    for m in frame::fragment(c, frame::MAX_MESSAGE).unwrap() {
        n.handle_edge_message(now, EdgeId(1), m);
    }
}

/// A new child `peer(9)` on edge 2 at 35 ms, its HELLO at 36 ms.
fn add_child(n: &mut Node) {
    n.handle_server(
        35,
        ServerMessage::ConnectChild {
            stream: "s".into(),
            child: peer(9),
            agent: None,
        },
    );
    n.handle_edge_message(36, EdgeId(2), Message::Hello { last: None }.encode());
}

fn receiver() -> NodeConfig {
    NodeConfig::new(ComponentType::Receiver, "s")
}

#[test]
fn playback_model_plays_and_counts_a_stall_at_a_hole() {
    let mut n = joined(receiver());
    feed(&mut n, 40, &chunk(0, FLAG_INIT));
    for seq in 1..=3 {
        feed(&mut n, 40 + seq * 1000, &chunk(seq, FLAG_KEYFRAME));
    }
    // Playing since 2 s of media arrived (2040 ms); chunk 4 never comes, so it runs dry at 3 s
    // of media, 5040 ms.
    n.handle_timeout(5000);
    assert!(n.stats().playing);
    n.handle_timeout(6000);
    let s = n.stats();
    assert!(!s.playing);
    assert_eq!(s.stalls, 1);
}

#[test]
fn arrivals_record_when_each_chunk_came() {
    let mut n = joined(receiver());
    feed(&mut n, 40, &chunk(0, FLAG_INIT));
    feed(&mut n, 70, &chunk(1, FLAG_KEYFRAME));
    assert_eq!(n.arrivals().collect::<Vec<_>>(), [(0, 40), (1, 70)]);
}

#[test]
fn sampled_verification_checks_the_seeds_draws_below_the_asked_fraction() {
    for seed in [0, 42, (1 << 53) - 1] {
        let mut config = receiver();
        config.verify_fraction = 0.25;
        config.seed = seed;
        let mut n = joined(config);
        feed(&mut n, 40, &chunk(0, FLAG_INIT));
        for seq in 1..=400 {
            feed(&mut n, 40 + seq, &chunk(seq, 0));
        }
        // Media chunk `seq` takes draw `seq - 1`, as in the browser port (node.test.mjs).
        let expected = (0..400)
            .filter(|d| rules::sample_unit(seed, *d) < 0.25)
            .count() as u64;
        let checked = n.stats().chunks_verified - 1; // the init chunk is always checked
        assert_eq!(checked, expected, "seed {seed}");
        assert!((70..=130).contains(&checked), "{checked} of 400 checked");
    }
}

#[test]
fn the_chunks_sampled_are_the_seeds_draws() {
    // Every media chunk's tag is spoiled (its signature still holds): exactly the sampled ones
    // are rejected, so the test sees which chunks were checked, not only how many.
    let seed = 7;
    let mut config = receiver();
    config.verify_fraction = 0.25;
    config.seed = seed;
    let mut n = joined(config);
    feed(&mut n, 40, &chunk(0, FLAG_INIT));
    for seq in 1..=200 {
        let mut bytes = chunk(seq, 0).encode().to_vec();
        bytes[frame::HEADER_LEN] ^= 1;
        let spoiled = Chunk::decode(Bytes::from(bytes)).expect("still a chunk");
        feed(&mut n, 40 + seq, &spoiled);
    }
    let delivered: Vec<u64> = drain(&mut n)
        .iter()
        .filter_map(|o| match o {
            Output::Deliver(c) => Some(c.seq.0),
            _ => None,
        })
        .collect();
    let expected: Vec<u64> = std::iter::once(0)
        .chain((1..=200).filter(|seq| rules::sample_unit(seed, seq - 1) >= 0.25))
        .collect();
    assert_eq!(delivered, expected);
    assert_eq!(n.stats().chunks_rejected, 200 - (expected.len() as u64 - 1));
}

#[test]
fn fault_injection_spoils_what_children_get_but_not_what_the_node_plays() {
    let mut config = receiver();
    config.corrupt_relayed_seq = Some(2);
    let mut n = joined(config);
    add_child(&mut n);
    drain(&mut n);
    feed(&mut n, 40, &chunk(0, FLAG_INIT));
    feed(&mut n, 41, &chunk(1, FLAG_KEYFRAME));
    feed(&mut n, 42, &chunk(2, 0));
    let outs = drain(&mut n);
    let delivered = outs.iter().find_map(|o| match o {
        Output::Deliver(c) if c.seq == ChunkSeq(2) => Some(c.clone()),
        _ => None,
    });
    assert!(delivered.unwrap().verify(&StreamKey::new(KEY)).is_ok());
    let mut reassembler = Reassembler::default();
    let relayed = outs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { edge, message } if *edge == EdgeId(2) => Some(message.clone()),
            _ => None,
        })
        .filter_map(|m| match Message::decode(m).unwrap() {
            Message::Fragment(f) => reassembler.handle_fragment(f).unwrap(),
            Message::Hello { .. } | Message::Abort { .. } | Message::Keepalive => None,
        })
        .find(|c| c.seq == ChunkSeq(2))
        .unwrap();
    assert!(relayed.verify(&StreamKey::new(KEY)).is_err());
}

#[test]
fn a_chunk_cut_anew_goes_in_fragments_of_whole_packets() {
    let mut n = joined(receiver());
    let signer = signer_of(SEED);
    let big = |seq: u64, flags: u8| {
        let dur = if flags & FLAG_INIT != 0 { 0 } else { 1000 };
        signer.sign(
            ChunkSeq(seq),
            flags,
            0,
            dur,
            Bytes::from(vec![7u8; 150_000]),
        )
    };
    feed(&mut n, 40, &big(0, FLAG_INIT));
    feed(&mut n, 41, &big(1, FLAG_KEYFRAME));
    drain(&mut n);
    add_child(&mut n); // after the chunks came: its relay sends them from its backlog
    let mut outs = drain(&mut n);
    for now in (100..3000).step_by(100) {
        n.handle_timeout(now); // the pacing lets the rest out
        outs.extend(drain(&mut n));
    }
    let sizes: Vec<usize> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { edge, message } if *edge == EdgeId(2) => Some(message.len()),
            _ => None,
        })
        .filter(|&len| len > frame::FRAGMENT_HEADER_LEN + 2)
        .collect();
    // The init chunk is kept whole and cut anew: two FRAGMENT_LEN pieces, then the rest. The
    // keyframe chunk, passed on as it came (cut-through keeps its pieces), keeps the sender's.
    assert_eq!(sizes.len(), 6, "{sizes:?}");
    assert_eq!(&sizes[..2], &[frame::FRAGMENT_LEN, frame::FRAGMENT_LEN]);
    assert!(sizes[2] < frame::FRAGMENT_LEN, "{sizes:?}");
    assert_eq!(&sizes[3..5], &[frame::MAX_MESSAGE, frame::MAX_MESSAGE]);
}

/// The chunks a node sent its child on edge 2, reassembled.
fn relayed_to_child(outs: &[Output]) -> Vec<Chunk> {
    let mut reassembler = Reassembler::default();
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit { edge, message } if *edge == EdgeId(2) => Some(message.clone()),
            _ => None,
        })
        .filter_map(|m| match Message::decode(m).unwrap() {
            Message::Fragment(f) => reassembler.handle_fragment(f).unwrap(),
            Message::Hello { .. } | Message::Abort { .. } | Message::Keepalive => None,
        })
        .collect()
}

#[test]
fn a_forging_relay_sends_a_chunk_whose_tag_passes_and_signature_fails() {
    let mut config = receiver();
    config.forge_relayed_seq = Some(2);
    let mut n = joined(config);
    add_child(&mut n);
    drain(&mut n);
    for (seq, flags) in [(0, FLAG_INIT), (1, FLAG_KEYFRAME), (2, 0)] {
        feed(&mut n, 40 + seq, &chunk(seq, flags));
    }
    let relayed = relayed_to_child(&drain(&mut n));
    let forged = relayed.iter().find(|c| c.seq == ChunkSeq(2)).unwrap();
    let key = StreamKey::new(KEY);
    assert_ne!(forged.payload, chunk(2, 0).payload, "altered");
    forged
        .verify(&key)
        .expect("the relay holds the key: the tag passes");
    let public = signer_of(SEED).verifying_key();
    assert_eq!(
        forged.verify_signature(&public, &key, "s"),
        Err(FrameError::BadSignature)
    );
}

/// What a child under a forging parent does with the forged chunk: drop it, count it, name the
/// parent, deliver and relay nothing of it, even when no tag is sampled.
#[test]
fn a_chunk_not_signed_by_the_broadcaster_is_dropped_whoever_sent_it() {
    let mut config = receiver();
    config.verify_fraction = 0.0;
    let mut n = joined(config);
    add_child(&mut n);
    drain(&mut n);
    feed(&mut n, 40, &chunk(0, FLAG_INIT));
    feed(&mut n, 41, &chunk(1, FLAG_KEYFRAME));
    let key = StreamKey::new(KEY);
    let mut forged = chunk(2, 0);
    let mut payload = forged.payload.to_vec();
    payload[150] ^= 0xff;
    forged.payload = payload.into();
    forged.retag(&key);
    feed(&mut n, 42, &forged);
    // A relay that signs with a key of its own, tag and all.
    let impostor = signer_of([6; 32]);
    feed(&mut n, 43, &chunk_by(&impostor, 3, 0));
    // A genuine chunk of the same broadcaster but another stream name.
    let elsewhere = ChunkSigner::new("t", key.clone(), SigningKey::from_seed(SEED));
    feed(&mut n, 44, &chunk_by(&elsewhere, 4, 0));
    feed(&mut n, 45, &chunk(5, 0));
    let outs = drain(&mut n);
    let delivered: Vec<u64> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Deliver(c) => Some(c.seq.0),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [0, 1, 5]);
    let relayed: Vec<u64> = relayed_to_child(&outs).iter().map(|c| c.seq.0).collect();
    assert_eq!(relayed, [0, 1, 5]);
    let rejected: Vec<(u64, Option<PeerId>, FrameError)> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Event(NodeEvent::ChunkRejected { seq, from, error }) => {
                Some((seq.0, *from, error.clone()))
            }
            _ => None,
        })
        .collect();
    let bad = |seq| (seq, Some(peer(1)), FrameError::BadSignature);
    assert_eq!(rejected, [bad(2), bad(3), bad(4)]);
    let s = n.stats();
    assert_eq!(s.chunks_rejected, 3);
    assert_eq!(s.chunks_received, 6);
}

#[test]
fn a_join_with_an_unusable_signing_key_ends_the_node() {
    let mut n = Node::new(receiver(), 0);
    n.handle_connected(5, 1000);
    n.handle_server(
        10,
        ServerMessage::Joined {
            stream: "s".into(),
            key: key_b64(),
            signing_key: "AAAA".into(),
            parent: peer(1),
            depth: 1,
        },
    );
    let outs = drain(&mut n);
    assert!(
        outs.iter().any(
            |o| matches!(o, Output::Ended(Ending::SupervisorLost(r)) if r.contains("signing key"))
        ),
        "{outs:?}"
    );
}

#[test]
fn a_node_with_queued_children_wakes_to_refresh_buffered_amounts() {
    let mut n = joined(receiver());
    add_child(&mut n);
    feed(&mut n, 40, &chunk(0, FLAG_INIT));
    // The init chunk went out; its bytes count as buffered until the driver reports. (The
    // child's keepalives, once it said HELLO, wake the node sooner still.)
    assert!(n.poll_timeout().unwrap() <= 40 + rules::TICK_MS);
    n.handle_buffered_amount(EdgeId(2), 0);
}

#[test]
fn a_childs_agent_reaches_the_driver_with_its_edge_and_the_parents_edge_has_none() {
    use crate::protocol::Agent;
    let opened = |outs: &[Output]| -> Vec<(PeerId, bool, Option<Agent>)> {
        outs.iter()
            .filter_map(|o| match o {
                Output::OpenEdge {
                    peer,
                    offerer,
                    remote_agent,
                    ..
                } => Some((*peer, *offerer, *remote_agent)),
                _ => None,
            })
            .collect()
    };
    let mut n = offered(receiver());
    assert_eq!(opened(&drain(&mut n)), [(peer(1), false, None)]);
    n.handle_edge_open(30, EdgeId(1));
    for (child, agent) in [
        (peer(9), Some(Agent::Native)),
        (peer(10), Some(Agent::Browser)),
        (peer(11), None),
    ] {
        n.handle_server(
            35,
            ServerMessage::ConnectChild {
                stream: "s".into(),
                child,
                agent,
            },
        );
        assert_eq!(opened(&drain(&mut n)), [(child, true, agent)]);
    }
    n.handle_server(
        36,
        ServerMessage::ConnectStandby {
            stream: "s".into(),
            child: peer(12),
            agent: Some(Agent::Native),
        },
    );
    assert_eq!(
        opened(&drain(&mut n)),
        [(peer(12), true, Some(Agent::Native))]
    );
}

#[test]
fn nothing_comes_out_of_a_node_that_ended() {
    let mut n = joined(receiver());
    n.handle_stop(40);
    assert!(matches!(
        drain(&mut n).last(),
        Some(Output::Ended(Ending::Stopped))
    ));
    assert_eq!(n.poll_timeout(), None);
    feed(&mut n, 50, &chunk(0, FLAG_INIT));
    n.handle_timeout(100_000);
    n.handle_connected(100_001, 1000);
    assert!(drain(&mut n).is_empty());
}

#[test]
fn endings_say_what_happened() {
    let e = Ending::ConnectFailed("cannot reach the supervisor at ws://x/ws: refused".into());
    assert_eq!(
        e.describe(),
        "cannot reach the supervisor at ws://x/ws: refused"
    );
    assert!(e.is_failure());
    assert_eq!(
        Ending::StreamEnded("end of stream".into()).describe(),
        "stream ended: end of stream"
    );
    assert!(!Ending::Stopped.is_failure());
}

#[test]
fn each_failed_attempt_and_each_lost_connection_moves_to_the_next_supervisor() {
    let mut config = NodeConfig::new(ComponentType::Receiver, "s");
    config.retry_first_connect = true;
    let mut n = Node::new(config, 0);
    assert_eq!(n.connect_attempt(), 0);
    n.handle_connect_failed(1, ConnectFailure::Unreachable("refused".into()));
    assert_eq!(n.connect_attempt(), 1);
    let at = n.poll_timeout().unwrap();
    n.handle_timeout(at);
    n.handle_connected(at + 1, 1000);
    assert_eq!(n.connect_attempt(), 1, "a success stays where it is");
    n.handle_disconnected(at + 2, "gone");
    assert_eq!(n.connect_attempt(), 2);
    assert!(drain(&mut n)
        .iter()
        .all(|o| !matches!(o, Output::Ended(_) | Output::CloseEdge(_))));
}
