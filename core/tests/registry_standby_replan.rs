//! A flash crowd does not make the registry plan standbys after every join: a plan costs
//! `O(n^2)`, so past 63 viewers changes that come within `replan_interval_ms(n)` of the last plan
//! are planned together at its end (a timeout the shell is asked for), and then every viewer that
//! joined meanwhile is told its standby.

mod common;

use common::standby_registry;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage};
use ownstream_core::registry::{replan_interval_ms, JoinPacing, Output, Registry};
use std::collections::HashSet;

fn id(n: u32) -> PeerId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[4] = 1; // never the broadcaster's all-zero id
    PeerId::from_bytes(b)
}

/// Children named by a `STANDBY` with a standby parent in `out`.
fn told(out: &[Output]) -> HashSet<PeerId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(
                to,
                ServerMessage::Standby {
                    standby: Some(_), ..
                },
            ) => Some(*to),
            _ => None,
        })
        .collect()
}

fn registry() -> Registry {
    // Slots for everybody: pacing is not what this test looks at.
    standby_registry(JoinPacing {
        max_setups: 2000,
        min_setups: 2000,
        max_queued: 2000,
    })
}

fn join(r: &mut Registry, now: u64, v: u32) -> Vec<Output> {
    r.handle_authenticated(now, id(v), ComponentType::Receiver);
    let join = PeerMessage::JoinStream {
        stream: "s".into(),
        wait: false,
        relay: true,
    };
    r.handle_message(now, id(v), join);
    std::iter::from_fn(|| r.poll_output()).collect()
}

#[test]
fn the_interval_grows_with_the_square_of_the_tree() {
    assert_eq!(
        replan_interval_ms(63),
        0,
        "small trees are planned at every change"
    );
    assert_eq!(replan_interval_ms(64), 1);
    assert_eq!(replan_interval_ms(300), 22);
    assert_eq!(replan_interval_ms(1000), 250);
}

#[test]
fn a_burst_of_joins_is_planned_once_the_interval_is_over() {
    let mut r = registry();
    let mut during = HashSet::new();
    for v in 1..=300 {
        during.extend(told(&join(&mut r, 0, v)));
    }
    // Up to 63 viewers every join was planned at once; past that the plan waits.
    let late: Vec<u32> = (64..=300).filter(|v| during.contains(&id(*v))).collect();
    assert!(late.is_empty(), "told before the interval ended: {late:?}");
    assert!(!during.is_empty(), "the first joins were planned at once");
    let due = r.poll_timeout(0).expect("a plan is due");
    assert!(
        due <= replan_interval_ms(300),
        "the next plan is due within the interval, not at {due} ms"
    );
    let mut after = HashSet::new();
    let mut now = due;
    while now <= replan_interval_ms(300) {
        r.handle_timeout(now);
        after.extend(told(
            &std::iter::from_fn(|| r.poll_output()).collect::<Vec<_>>(),
        ));
        now = r.poll_timeout(now).unwrap_or(u64::MAX).max(now + 1);
    }
    let planned: Vec<u32> = (64..=300).filter(|v| after.contains(&id(*v))).collect();
    assert!(
        planned.len() > 200,
        "the viewers that joined meanwhile were told their standbys: {} of 237",
        planned.len()
    );
}
