//! The supervisor's registry driven by an arbitrary sequence of peers' operations: handshakes,
//! registrations, joins (waiting or not), signaling, lost parents, stats, heartbeats, stream ends,
//! disconnections, kills, clock jumps and arbitrary signaling text.
//!
//! Checks after every operation, against a model of who is connected: no panic; a second
//! connection with a connected id is refused; nothing is sent to a peer after its connection was
//! closed; every live stream is a tree rooted at its connected broadcaster, whose every node is a
//! connected receiver reachable from the root, at its parent's depth plus one, in one stream only,
//! with at most `fanout` children per node; and every viewer in a tree was last told (JOINED or
//! SET_PARENT) the parent it has in that tree.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::protocol::{
    Agent, ComponentType, PeerMessage, PeerStats, ServerMessage, SignalPayload, TopologyName,
};
use ownstream_core::registry::{Output, Registry, RegistryConfig};
use std::collections::{BTreeMap, BTreeSet};

const PEERS: u8 = 8;
const NAMES: [&str; 4] = ["a", "b", "c", "bad name"];

#[derive(Arbitrary, Debug)]
enum Op {
    Auth {
        peer: u8,
        broadcaster: bool,
    },
    Agent {
        peer: u8,
        browser: bool,
    },
    Register {
        peer: u8,
        name: u8,
    },
    Join {
        peer: u8,
        name: u8,
        wait: bool,
    },
    Signal {
        from: u8,
        to: u8,
        offer: bool,
    },
    ParentLost {
        from: u8,
        parent: u8,
    },
    Heartbeat {
        peer: u8,
    },
    ListStreams {
        peer: u8,
    },
    Stats {
        peer: u8,
        connected: bool,
        last_seq: Option<u64>,
        repairs: Vec<u32>,
    },
    EndStream {
        peer: u8,
    },
    Text {
        peer: u8,
        text: String,
    },
    Disconnect {
        peer: u8,
    },
    Kill {
        peer: u8,
        rejoin: bool,
    },
    Advance {
        ms: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    chain: bool,
    fanout: u8,
    ops: Vec<Op>,
}

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n % PEERS; 16])
}

fn name(n: u8) -> String {
    NAMES[usize::from(n) % NAMES.len()].to_string()
}

#[derive(Default)]
struct Model {
    connected: BTreeMap<PeerId, ComponentType>,
    /// The parent each viewer was last told to expect.
    told_parent: BTreeMap<PeerId, PeerId>,
}

fuzz_target!(|input: Input| {
    let fanout = usize::from(input.fanout % 4) + 1;
    let config = RegistryConfig {
        topology: if input.chain {
            TopologyName::Chain
        } else {
            TopologyName::Tree
        },
        fanout,
        heartbeat_timeout_ms: 3000,
    };
    let max_children = if input.chain { 1 } else { fanout };
    let mut r = Registry::new(config, [3; 32]);
    r.set_publish_policy(ownstream_core::publish::PublishPolicy::open());
    let mut m = Model::default();
    let mut now = 0u64;
    for op in input.ops {
        apply(&mut r, &mut m, &mut now, op);
        drain(&mut r, &mut m);
        check(&r, &m, max_children);
    }
});

fn apply(r: &mut Registry, m: &mut Model, now: &mut u64, op: Op) {
    let now = *now_step(now, &op);
    let msg = |peer: u8, msg: PeerMessage| (id(peer), msg);
    let (from, message) = match op {
        Op::Auth { peer, broadcaster } => {
            let kind = if broadcaster {
                ComponentType::Broadcaster
            } else {
                ComponentType::Receiver
            };
            let fresh = !m.connected.contains_key(&id(peer));
            assert_eq!(r.handle_authenticated(now, id(peer), kind), fresh);
            if fresh {
                m.connected.insert(id(peer), kind);
            }
            return;
        }
        Op::Agent { peer, browser } => {
            r.set_agent(
                id(peer),
                if browser {
                    Agent::Browser
                } else {
                    Agent::Native
                },
            );
            return;
        }
        Op::Disconnect { peer } => {
            m.connected.remove(&id(peer));
            m.told_parent.remove(&id(peer));
            r.handle_disconnected(now, id(peer));
            return;
        }
        Op::Kill { peer, rejoin } => {
            let connected = m.connected.contains_key(&id(peer));
            assert_eq!(r.kill_peer(now, id(peer), rejoin, "fuzz"), connected);
            return;
        }
        Op::Advance { .. } => {
            r.handle_timeout(now);
            return;
        }
        Op::Register { peer, name: n } => msg(
            peer,
            PeerMessage::RegisterStream {
                stream: name(n),
                signing_key: ownstream_core::frame::SigningKey::from_seed([n; 32])
                    .verifying_key()
                    .to_base64(),
                token: None,
            },
        ),
        Op::Join {
            peer,
            name: n,
            wait,
        } => msg(
            peer,
            PeerMessage::JoinStream {
                stream: name(n),
                wait,
                relay: true,
            },
        ),
        Op::Signal { from, to, offer } => {
            let payload = if offer {
                SignalPayload::Offer { sdp: "v=0".into() }
            } else {
                SignalPayload::Candidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_mline_index: None,
                }
            };
            msg(
                from,
                PeerMessage::Signal {
                    to: id(to),
                    payload,
                },
            )
        }
        Op::ParentLost { from, parent } => {
            msg(from, PeerMessage::ParentLost { parent: id(parent) })
        }
        Op::Heartbeat { peer } => msg(peer, PeerMessage::Heartbeat {}),
        Op::ListStreams { peer } => msg(peer, PeerMessage::ListStreams {}),
        Op::Stats {
            peer,
            connected,
            last_seq,
            repairs,
        } => {
            let stats = PeerStats {
                connected,
                last_seq: last_seq.map(ChunkSeq),
                repair_times_ms: repairs,
                ..PeerStats::default()
            };
            msg(peer, PeerMessage::Stats { stats })
        }
        Op::EndStream { peer } => msg(peer, PeerMessage::EndStream {}),
        Op::Text { peer, text } => match PeerMessage::decode(&text) {
            Ok(decoded) => msg(peer, decoded),
            Err(_) => return,
        },
    };
    r.handle_message(now, from, message);
}

fn now_step<'a>(now: &'a mut u64, op: &Op) -> &'a u64 {
    if let Op::Advance { ms } = op {
        *now += u64::from(*ms);
    }
    now
}

fn drain(r: &mut Registry, m: &mut Model) {
    while let Some(out) = r.poll_output() {
        match out {
            Output::Send(to, msg) => {
                assert!(
                    m.connected.contains_key(&to),
                    "{msg:?} sent to {to:?}, not connected"
                );
                match msg {
                    ServerMessage::Joined { parent, .. }
                    | ServerMessage::SetParent { parent, .. } => {
                        m.told_parent.insert(to, parent);
                    }
                    ServerMessage::StreamEnded { .. } => {
                        m.told_parent.remove(&to);
                    }
                    _ => {}
                }
            }
            Output::Close(peer, _) => {
                assert!(m.connected.remove(&peer).is_some(), "closed {peer:?} twice");
                m.told_parent.remove(&peer);
            }
        }
    }
}

fn check(r: &Registry, m: &Model, max_children: usize) {
    assert_eq!(
        r.peer_count(),
        m.connected.len(),
        "registry and model disagree on who is connected"
    );
    let mut seen = BTreeSet::new();
    for info in r.streams() {
        let tree = r.tree(&info.name).expect("a listed stream has a tree");
        let root = tree.nodes.first().expect("a tree has its broadcaster");
        assert_eq!(root.parent, None);
        assert_eq!(root.depth, 0);
        assert_eq!(
            m.connected.get(&root.id),
            Some(&ComponentType::Broadcaster),
            "stream {} of a gone broadcaster",
            info.name
        );
        let mut depth = BTreeMap::new();
        let mut children: BTreeMap<PeerId, usize> = BTreeMap::new();
        for node in &tree.nodes {
            assert!(seen.insert(node.id), "{:?} is twice in the trees", node.id);
            if let Some(parent) = node.parent {
                let pd = *depth
                    .get(&parent)
                    .unwrap_or_else(|| panic!("{:?} not reachable from the root", node.id));
                assert_eq!(node.depth, pd + 1);
                let n = children.entry(parent).or_default();
                *n += 1;
                assert!(
                    *n <= max_children,
                    "{parent:?} has more than {max_children} children"
                );
                assert_eq!(
                    m.connected.get(&node.id),
                    Some(&ComponentType::Receiver),
                    "viewer {:?} in {} is not a connected receiver",
                    node.id,
                    info.name
                );
                assert_eq!(
                    m.told_parent.get(&node.id),
                    Some(&parent),
                    "viewer {:?} was not told its parent",
                    node.id
                );
            }
            depth.insert(node.id, node.depth);
        }
        assert_eq!(
            info.viewers,
            tree.nodes.len() - 1,
            "viewers of {}",
            info.name
        );
    }
}
