//! The RSA challenge handshake of the paper (section III.C.1, figure 5), as two state machines.
//!
//! ```text
//! supervisor                                   peer
//!   COLLECT_PEER_INFO_REQUEST          ->
//!                                      <-  COLLECT_PEER_INFO_RESPONSE {peer_id, public_key, component_type}
//!   AUTHENTICATION_REQUEST {supervisor_key} ->
//!                                      <-  AUTHENTICATION_RESPONSE
//!   AUTHENTICATION_CHALLENGE_REQUEST {Enc_peer(a || b)} ->
//!                                      <-  AUTHENTICATION_CHALLENGE_RESPONSE {Enc_supervisor(f(a, b))}
//!   AUTHENTICATED {peer_id, ...}       ->
//! ```
//!
//! `a` and `b` are two fresh 128-bit random numbers (32 bytes of plaintext). The challenge function is
//! `f(a, b) = SHA-256("ownstream-challenge-v1" || peer_id (16 bytes) || a || b)`: binding the peer id
//! means an answer computed for one session is wrong for every other. Both directions use RSA-OAEP
//! with SHA-256 (and MGF1-SHA-256, empty label), which WebCrypto's `RSA-OAEP` implements. Public keys
//! travel as base64 SPKI DER.
//!
//! Invariants: the supervisor side accepts exactly one message per state and fails on anything else;
//! every failure is terminal (`Failed`), so a peer can never retry within one connection; the answer
//! is compared in constant time; a handshake not finished within `timeout_ms` of its start fails, and so
//! does one whose peer takes longer than `step_timeout_ms` to answer any one message.

use crate::ids::PeerId;
use crate::protocol::PROTOCOL_VERSION;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::rand_core::CryptoRng;
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};

mod peer;
mod supervisor;
pub use peer::{PeerHandshake, Session};
pub use supervisor::{AuthenticatedPeer, HandshakeConfig, SupervisorHandshake};

/// Default and minimum recommended RSA modulus size.
pub const DEFAULT_KEY_BITS: usize = 2048;
/// Largest peer key accepted: bounds the supervisor's cost per join.
pub const MAX_KEY_BITS: usize = 8192;
/// A handshake must finish within this long.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Each answer of a peer during the handshake must come within this long. Peers make their key
/// before they connect, so an answer costs one RSA operation at most (milliseconds).
pub const DEFAULT_STEP_TIMEOUT_MS: u64 = 3_000;
const CHALLENGE_DOMAIN: &[u8] = b"ownstream-challenge-v1";

/// Why a handshake failed. The text is sent to the peer as the close reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// A message arrived that the current state does not accept.
    #[error("unexpected {got} during authentication (expected {expected})")]
    OutOfOrder {
        /// What the state machine was waiting for.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// The peer's key is smaller than the configured minimum.
    #[error("RSA key of {bits} bits is too small (minimum {min})")]
    KeyTooSmall {
        /// The key's modulus size.
        bits: usize,
        /// The configured minimum.
        min: usize,
    },
    /// The peer's key is larger than [`MAX_KEY_BITS`].
    #[error("RSA key of {0} bits is too large (maximum {MAX_KEY_BITS})")]
    KeyTooLarge(usize),
    /// A key could not be parsed.
    #[error("invalid public key: {0}")]
    BadKey(String),
    /// A field was not valid base64.
    #[error("field `{0}` is not valid base64")]
    BadBase64(&'static str),
    /// OAEP decryption failed: bad padding, wrong key or wrong length.
    #[error("could not decrypt the {0} (bad padding or wrong key)")]
    Decrypt(&'static str),
    /// The peer's answer does not match this session's challenge.
    #[error("challenge response does not match")]
    WrongAnswer,
    /// The handshake took too long.
    #[error("authentication timed out")]
    Timeout,
    /// The peer did not answer one step in time.
    #[error("no {expected} within {ms} ms")]
    StepTimeout {
        /// The message the supervisor waited for.
        expected: &'static str,
        /// The step deadline.
        ms: u64,
    },
    /// The supervisor's key does not have the pinned fingerprint.
    #[error("supervisor key fingerprint {got} does not match the pinned {expected}")]
    FingerprintMismatch {
        /// Pinned fingerprint.
        expected: String,
        /// Offered key's fingerprint.
        got: String,
    },
    /// The supervisor speaks another protocol version.
    #[error("supervisor speaks protocol {0}, this peer speaks {PROTOCOL_VERSION}")]
    Version(u32),
    /// The supervisor acknowledged another peer id.
    #[error("supervisor authenticated a different peer id")]
    PeerIdMismatch,
    /// The supervisor refused us.
    #[error("supervisor refused authentication: {0}")]
    Refused(String),
    /// A message after a failure.
    #[error("handshake already failed")]
    AlreadyFailed,
    /// Key generation or encryption failed inside the RSA library.
    #[error("RSA operation failed: {0}")]
    Rsa(String),
}

/// An RSA key pair: a peer's or the supervisor's.
pub struct Identity {
    key: RsaPrivateKey,
    public: RsaPublicKey,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Identity({} bits, {})", self.bits(), self.fingerprint())
    }
}

impl Identity {
    /// Generates a fresh key pair of `bits` bits.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, bits: usize) -> Result<Self, AuthError> {
        let key = RsaPrivateKey::new(rng, bits).map_err(|e| AuthError::Rsa(e.to_string()))?;
        Self::from_private(key)
    }

    /// Loads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, AuthError> {
        let key =
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| AuthError::BadKey(e.to_string()))?;
        Self::from_private(key)
    }

    fn from_private(key: RsaPrivateKey) -> Result<Self, AuthError> {
        let public = key.to_public_key();
        let public_der = public
            .to_public_key_der()
            .map_err(|e| AuthError::Rsa(e.to_string()))?
            .into_vec();
        Ok(Self {
            key,
            public,
            public_der,
        })
    }

    /// The private key as PKCS#8 PEM, to save with `--key`.
    pub fn to_pkcs8_pem(&self) -> Result<String, AuthError> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuthError::Rsa(e.to_string()))?;
        Ok(pem.to_string())
    }

    /// The public key as SPKI DER.
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.public.n().bits() as usize
    }

    /// `SHA256:` followed by the hex SHA-256 of the SPKI DER public key.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_der)
    }

    fn decrypt(&self, what: &'static str, ciphertext: &[u8]) -> Result<Vec<u8>, AuthError> {
        self.key
            .decrypt(Oaep::<Sha256>::new(), ciphertext)
            .map_err(|_| AuthError::Decrypt(what))
    }
}

/// `SHA256:<hex>` of an SPKI DER public key: what `--supervisor-fingerprint` pins.
pub fn fingerprint(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("SHA256:{hex}")
}

/// Accepts `SHA256:<hex>`, `sha256:<hex>` or bare hex, in any case, as a pinned fingerprint.
pub fn normalize_fingerprint(text: &str) -> String {
    let t = text.trim().to_ascii_lowercase();
    let hex = t.strip_prefix("sha256:").unwrap_or(&t);
    format!("SHA256:{hex}")
}

/// The challenge function both sides compute from the two random numbers.
pub fn challenge_answer(peer_id: PeerId, a: &[u8; 16], b: &[u8; 16]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHALLENGE_DOMAIN);
    h.update(peer_id.0.as_bytes());
    h.update(a);
    h.update(b);
    h.finalize().into()
}

fn parse_public_key(b64: &str, field: &'static str) -> Result<(RsaPublicKey, Vec<u8>), AuthError> {
    let der = B64.decode(b64).map_err(|_| AuthError::BadBase64(field))?;
    let key =
        RsaPublicKey::from_public_key_der(&der).map_err(|e| AuthError::BadKey(e.to_string()))?;
    Ok((key, der))
}

fn encrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &RsaPublicKey,
    msg: &[u8],
) -> Result<String, AuthError> {
    let ct = key
        .encrypt(rng, Oaep::<Sha256>::new(), msg)
        .map_err(|e| AuthError::Rsa(e.to_string()))?;
    Ok(B64.encode(ct))
}

fn split_nonce(nonce: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&nonce[..16]);
    b.copy_from_slice(&nonce[16..]);
    (a, b)
}
