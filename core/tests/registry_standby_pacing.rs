//! Standby edges in the supervisor's registry are paced as joins are: a `CONNECT_STANDBY` takes
//! a set-up slot until the child's `STATS` says its standby edge is open, standby edges take at
//! most half the window and only what joins leave, and the viewers waiting for theirs get them
//! shallow first as slots free. Joins never wait for standby edges.

mod common;

use common::standby_registry;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, PeerStats, ServerMessage};
use ownstream_core::registry::{JoinPacing, Output, Registry};

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 16])
}

fn drain(r: &mut Registry) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// `(standby parent, child)` of every `CONNECT_STANDBY` in `out`.
fn connect_standbys(out: &[Output]) -> Vec<(PeerId, PeerId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(to, ServerMessage::ConnectStandby { child, .. }) => Some((*to, *child)),
            _ => None,
        })
        .collect()
}

fn stats(
    r: &mut Registry,
    now: u64,
    v: u8,
    connected: bool,
    standby_connected: bool,
) -> Vec<Output> {
    let stats = PeerStats {
        connected,
        standby_connected,
        ..PeerStats::default()
    };
    r.handle_message(now, id(v), PeerMessage::Stats { stats });
    drain(r)
}

#[test]
fn standby_edges_wait_for_slots_joins_do_not() {
    let mut r = standby_registry(JoinPacing {
        max_setups: 4,
        min_setups: 4,
        max_queued: 100,
    });
    drain(&mut r);
    let mut standbys = Vec::new();
    // Six viewers, each reporting its parent open at once: none waits in line.
    for v in 1..=6 {
        r.handle_authenticated(0, id(v), ComponentType::Receiver);
        let join = PeerMessage::JoinStream {
            stream: "s".into(),
            wait: false,
            relay: true,
        };
        r.handle_message(0, id(v), join);
        let out = drain(&mut r);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Send(_, ServerMessage::Joined { .. }))),
            "viewer {v} placed at once: {out:?}"
        );
        standbys.extend(connect_standbys(&out));
        standbys.extend(connect_standbys(&stats(&mut r, 0, v, true, false)));
    }
    assert_eq!(r.join_pacing_load().0, 0, "every join's edge reported open");
    // Half of the window of 4: two standby edges under way, the rest wait.
    assert_eq!(standbys.len(), 2, "{standbys:?}");
    assert_eq!(r.standby_setups(), 2);
    let depth = |r: &Registry, c: PeerId| {
        r.tree("s")
            .unwrap()
            .nodes
            .iter()
            .find(|n| n.id == c)
            .unwrap()
            .depth
    };
    let mut told: Vec<PeerId> = standbys.iter().map(|(_, c)| *c).collect();
    let mut under_way = told.clone();
    // Each report of an open standby edge frees a slot for the next viewer.
    for round in 0..10 {
        let Some(c) = under_way.pop() else { break };
        let v = c.0.as_bytes()[0];
        let next = connect_standbys(&stats(&mut r, 100 + round, v, true, true));
        assert!(next.len() <= 1, "one slot freed, one edge: {next:?}");
        assert!(r.standby_setups() <= 2);
        under_way.extend(next.iter().map(|(_, c)| *c));
        told.extend(next.iter().map(|(_, c)| *c));
    }
    assert_eq!(r.standby_setups(), 0, "all done");
    // After the joins the plan held still: the edges it still needed went out shallow first.
    let after_joins: Vec<usize> = told[2..].iter().map(|c| depth(&r, *c)).collect();
    assert!(
        after_joins.windows(2).all(|w| w[0] <= w[1]),
        "shallow viewers first: {after_joins:?}"
    );
    let mut unique = told.clone();
    unique.sort();
    unique.dedup();
    // The depth-2 viewers (3 to 6) all have a standby: their grandparent or a spare slot.
    assert_eq!(unique, (3..=6).map(id).collect::<Vec<_>>(), "{told:?}");
}

/// A parent is told what software its new child runs, for its edge and its standby edge alike:
/// a Rust parent may send a Rust child larger packets on loopback, never a browser.
#[test]
fn connect_child_and_connect_standby_name_the_childs_agent() {
    use ownstream_core::protocol::Agent;
    let mut r = standby_registry(JoinPacing {
        max_setups: 8,
        min_setups: 8,
        max_queued: 100,
    });
    drain(&mut r);
    let agents = [Agent::Native, Agent::Browser, Agent::Browser, Agent::Native];
    let mut told = Vec::new();
    for (v, agent) in (1..).zip(agents) {
        r.handle_authenticated(0, id(v), ComponentType::Receiver);
        r.set_agent(id(v), agent);
        let join = PeerMessage::JoinStream {
            stream: "s".into(),
            wait: false,
            relay: true,
        };
        r.handle_message(0, id(v), join);
        let mut out = drain(&mut r);
        out.extend(stats(&mut r, 0, v, true, false));
        told.extend(out.into_iter().filter_map(|o| match o {
            Output::Send(_, ServerMessage::ConnectChild { child, agent, .. }) => {
                Some(("child", child, agent))
            }
            Output::Send(_, ServerMessage::ConnectStandby { child, agent, .. }) => {
                Some(("standby", child, agent))
            }
            _ => None,
        }));
    }
    let agent_of = |c: PeerId| Some(agents[usize::from(c.0.as_bytes()[0]) - 1]);
    assert!(told.iter().any(|(k, ..)| *k == "child"));
    assert!(told.iter().any(|(k, ..)| *k == "standby"), "{told:?}");
    for (kind, child, agent) in &told {
        assert_eq!(*agent, agent_of(*child), "{kind} {child}");
    }
}
