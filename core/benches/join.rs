//! The supervisor's cost per authenticated join: its side of the RSA handshake (parse the peer's
//! key, encrypt the challenge, decrypt and check the answer) plus placing the viewer in a tree of 80
//! (the paper's size). Only the supervisor's calls are timed; the peer's work runs between them.

use criterion::{criterion_group, criterion_main, Criterion};
use ownstream_core::auth::{HandshakeConfig, Identity, PeerHandshake, SupervisorHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage};
use ownstream_core::publish::PublishPolicy;
use ownstream_core::registry::{Registry, RegistryConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn stream_of(n: u8) -> Registry {
    let mut r = Registry::new(RegistryConfig::default(), [1; 32]);
    r.set_publish_policy(PublishPolicy::open());
    r.handle_authenticated(0, PeerId::from_bytes([0; 16]), ComponentType::Broadcaster);
    r.handle_message(
        0,
        PeerId::from_bytes([0; 16]),
        PeerMessage::RegisterStream {
            stream: "s".into(),
            signing_key: ownstream_core::frame::SigningKey::from_seed([5; 32])
                .verifying_key()
                .to_base64(),
            token: None,
        },
    );
    for i in 1..=n {
        let id = PeerId::from_bytes([i; 16]);
        r.handle_authenticated(0, id, ComponentType::Receiver);
        r.handle_message(
            0,
            id,
            PeerMessage::JoinStream {
                stream: "s".into(),
                wait: false,
                relay: true,
            },
        );
    }
    while r.poll_output().is_some() {}
    r
}

/// One join; returns the time spent in supervisor-side calls.
fn one_join(
    sup_key: &Arc<Identity>,
    peer_key: &Arc<Identity>,
    rng: &mut StdRng,
    registry: &mut Registry,
) -> Duration {
    let id = PeerId::random();
    let mut peer = PeerHandshake::new(peer_key.clone(), id, ComponentType::Receiver, None);
    let mut spent = Duration::ZERO;
    let t = Instant::now();
    let mut sup = SupervisorHandshake::new(sup_key.clone(), HandshakeConfig::default(), vec![], 0);
    let mut to_peer: Vec<_> = std::iter::from_fn(|| sup.poll_message()).collect();
    spent += t.elapsed();
    loop {
        for m in to_peer.drain(..) {
            peer.handle_message(m, rng).unwrap();
        }
        let Some(answer) = peer.poll_message() else {
            break;
        };
        let t = Instant::now();
        let done = sup.handle_message(1, answer, rng).unwrap();
        to_peer.extend(std::iter::from_fn(|| sup.poll_message()));
        if let Some(done) = done {
            registry.handle_authenticated(1, done.peer_id, done.component);
            registry.handle_message(
                1,
                done.peer_id,
                PeerMessage::JoinStream {
                    stream: "s".into(),
                    wait: false,
                    relay: true,
                },
            );
            while registry.poll_output().is_some() {}
            spent += t.elapsed();
            registry.handle_disconnected(2, done.peer_id);
            while registry.poll_output().is_some() {}
            break;
        }
        spent += t.elapsed();
    }
    spent
}

fn bench_join(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let sup_key = Arc::new(Identity::generate(&mut rng, 2048).unwrap());
    let peer_key = Arc::new(Identity::generate(&mut rng, 2048).unwrap());
    let mut registry = stream_of(80);
    c.bench_function("supervisor_join/rsa2048_tree80", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| one_join(&sup_key, &peer_key, &mut rng, &mut registry))
                .sum()
        })
    });
    c.bench_function("topology_join_leave/tree80", |b| {
        b.iter(|| {
            let id = PeerId::random();
            registry.handle_authenticated(1, id, ComponentType::Receiver);
            registry.handle_message(
                1,
                id,
                PeerMessage::JoinStream {
                    stream: "s".into(),
                    wait: false,
                    relay: true,
                },
            );
            registry.handle_disconnected(2, id);
            while registry.poll_output().is_some() {}
        })
    });
}

criterion_group!(benches, bench_join);
criterion_main!(benches);
