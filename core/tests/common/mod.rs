//! Helpers shared by the registry's test files.
// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, TopologyName};
use ownstream_core::publish::PublishPolicy;
use ownstream_core::registry::{JoinPacing, Registry, RegistryConfig};

/// A broadcaster's Ed25519 public key (base64), as `REGISTER_STREAM` and `RESUME` carry it.
pub(crate) fn signing_key() -> String {
    ownstream_core::frame::SigningKey::from_seed([5; 32])
        .verifying_key()
        .to_base64()
}

/// REGISTER_STREAM of `stream` with a valid signing key and no publish token.
pub(crate) fn register(stream: &str) -> PeerMessage {
    PeerMessage::RegisterStream {
        stream: stream.into(),
        signing_key: signing_key(),
        token: None,
    }
}

/// A registry with standby edges on and `pacing`, a binary tree, heartbeats that never expire in
/// a test, and stream "s" registered by the broadcaster of all-zero id (its outputs not drained).
pub(crate) fn standby_registry(pacing: JoinPacing) -> Registry {
    let mut r = Registry::new(
        RegistryConfig {
            topology: TopologyName::Tree,
            fanout: 2,
            heartbeat_timeout_ms: 60_000,
        },
        [9; 32],
    );
    r.set_standby_edges(true);
    r.set_join_pacing(pacing);
    r.set_publish_policy(PublishPolicy::open());
    let broadcaster = PeerId::from_bytes([0; 16]);
    r.handle_authenticated(0, broadcaster, ComponentType::Broadcaster);
    r.handle_message(0, broadcaster, register("s"));
    r
}
