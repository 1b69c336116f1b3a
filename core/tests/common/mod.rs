//! Helpers shared by the registry's test files.
// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use ownstream_core::protocol::PeerMessage;

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
