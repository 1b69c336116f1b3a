//! The broadcaster's Ed25519 keys: the signing key it keeps, the public key the supervisor binds
//! to its stream, and the signer that makes a stream's chunks (layout and signed message in the
//! parent module's docs).

use super::{Chunk, FrameError, StreamKey, SIGNATURE_LEN, TAG_LEN};
use crate::ids::ChunkSeq;
use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::ed25519::signature::{MultipartSigner, MultipartVerifier};
use std::fmt;

/// What every chunk signature starts with (see the module docs of `frame`).
pub const SIGNATURE_DOMAIN: &[u8] = b"ownstream-chunk-v3";

/// A broadcaster's Ed25519 signing key; its `Debug` output hides the secret.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// The key of a 32-byte seed (RFC 8032's private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A fresh key from a cryptographic RNG (the workspace's `rand`, so dalek's own `rand_core`
    /// feature is not needed).
    pub fn random(rng: &mut impl rand::CryptoRng) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The 32-byte seed, to keep the key in a file.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half, which the supervisor binds to the stream.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    pub(super) fn sign_parts(&self, parts: &[&[u8]]) -> [u8; SIGNATURE_LEN] {
        self.0.multipart_sign(parts).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(<redacted>, public {})", self.verifying_key())
    }
}

/// A broadcaster's Ed25519 public key, as `REGISTER_STREAM` and `JOINED` carry it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Parses the 32-byte compressed point; refuses bytes that are not a point and the weak
    /// (small-order) keys, for which a signature could verify on more than one message.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, FrameError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| FrameError::BadSigningKey("not an Ed25519 public key"))?;
        if key.is_weak() {
            return Err(FrameError::BadSigningKey("a weak (small-order) key"));
        }
        Ok(Self(key))
    }

    /// Parses standard base64 (with padding) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, FrameError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| FrameError::BadSigningKey("not valid base64"))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| FrameError::BadSigningKey("not 32 bytes"))?;
        Self::from_bytes(&arr)
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes())
    }

    pub(super) fn verify_parts(
        &self,
        parts: &[&[u8]],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), FrameError> {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.0
            .multipart_verify(parts, &signature)
            .map_err(|_| FrameError::BadSignature)
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({self})")
    }
}

/// Makes one broadcast's chunks: tagged with its stream key, signed by the broadcaster.
#[derive(Clone, Debug)]
pub struct ChunkSigner {
    stream: String,
    key: StreamKey,
    signing: SigningKey,
}

impl ChunkSigner {
    /// The signer of the broadcast of `stream` registered with stream key `key`.
    pub fn new(stream: &str, key: StreamKey, signing: SigningKey) -> Self {
        Self {
            stream: stream.to_string(),
            key,
            signing,
        }
    }

    /// The stream key the chunks are tagged with.
    pub fn stream_key(&self) -> &StreamKey {
        &self.key
    }

    /// The public key that verifies the chunks.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The stream name the chunks are bound to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// A tagged and signed chunk.
    pub fn sign(
        &self,
        seq: ChunkSeq,
        flags: u8,
        timestamp_ms: u64,
        duration_ms: u32,
        payload: Bytes,
    ) -> Chunk {
        let mut chunk = Chunk {
            seq,
            flags,
            timestamp_ms,
            duration_ms,
            payload,
            tag: [0; TAG_LEN],
            signature: [0; SIGNATURE_LEN],
        };
        let digest = chunk.digest();
        chunk.tag = chunk.tag_of(&self.key, &digest);
        chunk.signature = self.signing.sign_parts(
            &chunk
                .signed_parts(&self.key, &self.stream, &digest)
                .slices(),
        );
        chunk
    }
}
