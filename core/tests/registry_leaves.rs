//! Viewers that cannot relay (`relay: false` in `JOIN_STREAM` / `RESUME`) in the supervisor's
//! registry: never told to connect a child, never a repair's new parent, kept waiting while no
//! viewer that relays has room and placed as soon as one has; `relay` absent means true.

mod common;

use common::register;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage, TopologyName};
use ownstream_core::publish::PublishPolicy;
use ownstream_core::registry::{JoinPacing, Output, Registry, RegistryConfig};
use proptest::prelude::*;
use std::collections::HashSet;

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
    // No edge ever reports itself open here: without a wide pacing window, joins past the
    // window would wait in line, which is not what these properties are about.
    r.set_join_pacing(JoinPacing {
        max_setups: 100_000,
        ..JoinPacing::default()
    });
    r.set_publish_policy(PublishPolicy::open());
    r.handle_authenticated(0, id(0), ComponentType::Broadcaster);
    r.handle_message(0, id(0), register("s"));
    drain(&mut r);
    r
}

fn drain(r: &mut Registry) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn join(r: &mut Registry, v: u8, relay: bool) -> Vec<Output> {
    r.handle_authenticated(0, id(v), ComponentType::Receiver);
    let msg = PeerMessage::JoinStream {
        stream: "s".into(),
        wait: false,
        relay,
    };
    r.handle_message(0, id(v), msg);
    drain(r)
}

/// Every `CONNECT_CHILD` of `out` goes to a peer that relays.
fn no_child_for(out: &[Output], leaves: &HashSet<PeerId>) {
    for o in out {
        if let Output::Send(to, ServerMessage::ConnectChild { child, .. }) = o {
            assert!(
                !leaves.contains(to),
                "{to} cannot relay but was given {child}"
            );
        }
        if let Output::Send(to, ServerMessage::SetParent { parent, .. }) = o {
            assert!(
                !leaves.contains(parent),
                "{to} moved under {parent}, a leaf"
            );
        }
    }
}

fn parent_of(r: &Registry, v: u8) -> Option<PeerId> {
    r.tree("s")?
        .nodes
        .iter()
        .find(|n| n.id == id(v))
        .and_then(|n| n.parent)
}

#[test]
fn relay_is_true_when_absent() {
    let msg: PeerMessage = serde_json::from_str(r#"{"type":"JOIN_STREAM","stream":"s"}"#).unwrap();
    assert!(matches!(msg, PeerMessage::JoinStream { relay: true, .. }));
    let msg: PeerMessage =
        serde_json::from_str(r#"{"type":"JOIN_STREAM","stream":"s","relay":false}"#).unwrap();
    assert!(matches!(msg, PeerMessage::JoinStream { relay: false, .. }));
    // A relaying peer's message is what it was before the field existed.
    let text = serde_json::to_string(&PeerMessage::JoinStream {
        stream: "s".into(),
        wait: true,
        relay: true,
    })
    .unwrap();
    assert_eq!(text, r#"{"type":"JOIN_STREAM","stream":"s","wait":true}"#);
    let msg: PeerMessage = serde_json::from_str(r#"{"type":"RESUME","stream":"s"}"#).unwrap();
    assert!(matches!(msg, PeerMessage::Resume { relay: true, .. }));
}

#[test]
fn a_leaf_waits_for_room_and_is_placed_when_a_relay_joins() {
    let mut r = registry(TopologyName::Tree);
    join(&mut r, 1, false);
    join(&mut r, 2, false);
    let out = join(&mut r, 3, false);
    assert!(
        matches!(out.as_slice(), [Output::Send(p, ServerMessage::StreamWaiting { .. })] if *p == id(3)),
        "{out:?}"
    );
    assert_eq!(r.tree("s").unwrap().nodes.len(), 3);
    // A viewer that relays takes leaf 1's slot under the broadcaster; 1 moves under it, and the
    // waiting leaf 3 takes the slot left.
    let out = join(&mut r, 4, true);
    assert_eq!(parent_of(&r, 4), Some(id(0)));
    assert_eq!(parent_of(&r, 1), Some(id(4)));
    assert_eq!(parent_of(&r, 3), Some(id(4)));
    let to1: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send(p, m) if *p == id(1) => Some(m),
            _ => None,
        })
        .collect();
    assert!(
        matches!(to1.as_slice(), [ServerMessage::SetParent { parent, depth: 2, .. }] if *parent == id(4)),
        "{to1:?}"
    );
    assert!(
        out.iter().any(|o| matches!(o,
        Output::Send(p, ServerMessage::DropChild { child, .. }) if *p == id(0) && *child == id(1)))
    );
    assert!(out.iter().any(|o| matches!(o,
        Output::Send(p, ServerMessage::Joined { parent, .. }) if *p == id(3) && *parent == id(4))));
    let leaves = HashSet::from([id(1), id(2), id(3)]);
    no_child_for(&out, &leaves);
    let tree = r.tree("s").unwrap();
    let flags: Vec<bool> = [1, 2, 3, 4]
        .map(|v| tree.nodes.iter().find(|n| n.id == id(v)).unwrap().relay)
        .into();
    assert_eq!(flags, [false, false, false, true]);
}

#[derive(Clone, Debug)]
enum Op {
    Join(bool),
    Leave(usize),
    ParentLost(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => any::<bool>().prop_map(Op::Join),
        2 => any::<usize>().prop_map(Op::Leave),
        1 => any::<usize>().prop_map(Op::ParentLost),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Over random joins, leaves and broken edges: no leaf is ever told to connect a child or
    /// named as anyone's new parent, no leaf has a child in the tree, every viewer that relays
    /// is in the tree, and a leaf is out of it only while no viewer that relays has room.
    #[test]
    fn a_viewer_that_cannot_relay_is_never_a_parent(
        chain in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let topology = if chain { TopologyName::Chain } else { TopologyName::Tree };
        let mut r = registry(topology);
        let (mut leaves, mut relays) = (HashSet::new(), HashSet::new());
        let mut next = 1u8;
        for op in ops {
            let in_tree: Vec<PeerId> = r.tree("s").unwrap().nodes.iter().skip(1).map(|n| n.id).collect();
            let out = match op {
                Op::Join(relay) if next < 250 => {
                    let v = next;
                    next += 1;
                    if relay { relays.insert(id(v)) } else { leaves.insert(id(v)) };
                    join(&mut r, v, relay)
                }
                Op::Leave(i) if !in_tree.is_empty() => {
                    let gone = in_tree[i % in_tree.len()];
                    leaves.remove(&gone);
                    relays.remove(&gone);
                    r.handle_disconnected(0, gone);
                    drain(&mut r)
                }
                Op::ParentLost(i) if !in_tree.is_empty() => {
                    let child = in_tree[i % in_tree.len()];
                    let parent = r.tree("s").unwrap().nodes.iter().find(|n| n.id == child).unwrap().parent.unwrap();
                    r.handle_message(0, child, PeerMessage::ParentLost { parent });
                    drain(&mut r)
                }
                _ => continue,
            };
            no_child_for(&out, &leaves);
            let tree = r.tree("s").unwrap();
            let ids: HashSet<PeerId> = tree.nodes.iter().map(|n| n.id).collect();
            for n in &tree.nodes {
                if let Some(p) = n.parent {
                    prop_assert!(!leaves.contains(&p), "{} is under leaf {}", n.id, p);
                }
            }
            for v in &relays {
                prop_assert!(ids.contains(v), "{} relays but is not in the tree", v);
            }
            let out_of_tree = leaves.iter().any(|l| !ids.contains(l));
            if out_of_tree {
                let fanout = if chain { 1 } else { 2 };
                let room = tree.nodes.iter().any(|n| {
                    n.relay && tree.nodes.iter().filter(|c| c.parent == Some(n.id)).count() < fanout
                });
                prop_assert!(!room, "a leaf waits while a viewer that relays has room");
            }
        }
    }
}
