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
//! is compared in constant time; a handshake not finished within `timeout_ms` of its start fails.

use crate::ids::PeerId;
use crate::protocol::{
    Agent, ComponentType, IceServer, PeerMessage, ServerMessage, PROTOCOL_VERSION,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::rand_core::CryptoRng;
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use std::collections::VecDeque;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Default and minimum recommended RSA modulus size.
pub const DEFAULT_KEY_BITS: usize = 2048;
/// Largest peer key accepted: bounds the supervisor's cost per join.
pub const MAX_KEY_BITS: usize = 8192;
/// A handshake must finish within this long.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
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
        Ok(Identity {
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

/// Settings of the supervisor's side.
#[derive(Clone, Copy, Debug)]
pub struct HandshakeConfig {
    /// Smallest peer key accepted.
    pub min_key_bits: usize,
    /// Deadline for the whole handshake.
    pub timeout_ms: u64,
    /// Advertised heartbeat interval.
    pub heartbeat_ms: u64,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            min_key_bits: DEFAULT_KEY_BITS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            heartbeat_ms: 1000,
        }
    }
}

/// A peer that proved possession of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedPeer {
    /// Its id.
    pub peer_id: PeerId,
    /// Broadcaster or receiver.
    pub component: ComponentType,
    /// Rust peer or browser tab, as it says.
    pub agent: Agent,
    /// Its public key, SPKI DER.
    pub public_der: Vec<u8>,
}

struct Claimed {
    peer_id: PeerId,
    component: ComponentType,
    agent: Agent,
    key: RsaPublicKey,
    der: Vec<u8>,
}

enum SupState {
    AwaitInfo,
    AwaitAck(Claimed),
    AwaitAnswer(Claimed, [u8; 32]),
    Done,
    Failed,
}

/// The supervisor's side of one connection's handshake.
pub struct SupervisorHandshake {
    identity: Arc<Identity>,
    config: HandshakeConfig,
    ice_servers: Vec<IceServer>,
    state: SupState,
    deadline_ms: u64,
    outbox: VecDeque<ServerMessage>,
}

impl SupervisorHandshake {
    /// Starts a handshake at `now_ms`; the first message (`COLLECT_PEER_INFO_REQUEST`) is queued.
    pub fn new(
        identity: Arc<Identity>,
        config: HandshakeConfig,
        ice_servers: Vec<IceServer>,
        now_ms: u64,
    ) -> Self {
        let mut outbox = VecDeque::new();
        outbox.push_back(ServerMessage::CollectPeerInfoRequest {
            protocol: PROTOCOL_VERSION,
        });
        SupervisorHandshake {
            identity,
            config,
            ice_servers,
            state: SupState::AwaitInfo,
            deadline_ms: now_ms.saturating_add(config.timeout_ms),
            outbox,
        }
    }

    /// Feeds one message from the peer. Returns the peer once the challenge is answered correctly.
    pub fn handle_message<R: CryptoRng + ?Sized>(
        &mut self,
        now_ms: u64,
        msg: PeerMessage,
        rng: &mut R,
    ) -> Result<Option<AuthenticatedPeer>, AuthError> {
        if now_ms >= self.deadline_ms {
            return self.fail(AuthError::Timeout);
        }
        let state = std::mem::replace(&mut self.state, SupState::Failed);
        let result = self.step(state, msg, rng);
        if result.is_err() {
            self.state = SupState::Failed;
        }
        result
    }

    fn step<R: CryptoRng + ?Sized>(
        &mut self,
        state: SupState,
        msg: PeerMessage,
        rng: &mut R,
    ) -> Result<Option<AuthenticatedPeer>, AuthError> {
        match (state, msg) {
            (
                SupState::AwaitInfo,
                PeerMessage::CollectPeerInfoResponse {
                    peer_id,
                    public_key,
                    component_type,
                    agent,
                },
            ) => {
                let (key, der) = parse_public_key(&public_key, "public_key")?;
                self.check_key_size(key.n().bits() as usize)?;
                self.outbox.push_back(ServerMessage::AuthenticationRequest {
                    supervisor_key: B64.encode(self.identity.public_der()),
                });
                self.state = SupState::AwaitAck(Claimed {
                    peer_id,
                    component: component_type,
                    agent,
                    key,
                    der,
                });
                Ok(None)
            }
            (SupState::AwaitAck(claimed), PeerMessage::AuthenticationResponse {}) => {
                let mut nonce = [0u8; 32];
                rng.fill_bytes(&mut nonce);
                let (a, b) = split_nonce(&nonce);
                let expected = challenge_answer(claimed.peer_id, &a, &b);
                let challenge = encrypt(rng, &claimed.key, &nonce)?;
                self.outbox
                    .push_back(ServerMessage::AuthenticationChallengeRequest { challenge });
                self.state = SupState::AwaitAnswer(claimed, expected);
                Ok(None)
            }
            (
                SupState::AwaitAnswer(claimed, expected),
                PeerMessage::AuthenticationChallengeResponse { response },
            ) => {
                let ct = B64
                    .decode(&response)
                    .map_err(|_| AuthError::BadBase64("response"))?;
                let answer = self.identity.decrypt("challenge response", &ct)?;
                if !bool::from(answer.as_slice().ct_eq(&expected[..])) {
                    return Err(AuthError::WrongAnswer);
                }
                self.outbox.push_back(ServerMessage::Authenticated {
                    peer_id: claimed.peer_id,
                    heartbeat_ms: self.config.heartbeat_ms,
                    ice_servers: self.ice_servers.clone(),
                });
                self.state = SupState::Done;
                Ok(Some(AuthenticatedPeer {
                    peer_id: claimed.peer_id,
                    component: claimed.component,
                    agent: claimed.agent,
                    public_der: claimed.der,
                }))
            }
            (SupState::Failed, _) => Err(AuthError::AlreadyFailed),
            (state, msg) => Err(AuthError::OutOfOrder {
                expected: expected_name(&state),
                got: msg.name(),
            }),
        }
    }

    fn check_key_size(&self, bits: usize) -> Result<(), AuthError> {
        if bits < self.config.min_key_bits {
            Err(AuthError::KeyTooSmall {
                bits,
                min: self.config.min_key_bits,
            })
        } else if bits > MAX_KEY_BITS {
            Err(AuthError::KeyTooLarge(bits))
        } else {
            Ok(())
        }
    }

    fn fail<T>(&mut self, e: AuthError) -> Result<T, AuthError> {
        self.state = SupState::Failed;
        Err(e)
    }

    /// Fails the handshake if its deadline has passed.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), AuthError> {
        match self.state {
            SupState::Done | SupState::Failed => Ok(()),
            _ if now_ms >= self.deadline_ms => self.fail(AuthError::Timeout),
            _ => Ok(()),
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            SupState::Done | SupState::Failed => None,
            _ => Some(self.deadline_ms),
        }
    }

    /// Next message to send to the peer.
    pub fn poll_message(&mut self) -> Option<ServerMessage> {
        self.outbox.pop_front()
    }
}

fn expected_name(state: &SupState) -> &'static str {
    match state {
        SupState::AwaitInfo => "COLLECT_PEER_INFO_RESPONSE",
        SupState::AwaitAck(_) => "AUTHENTICATION_RESPONSE",
        SupState::AwaitAnswer(..) => "AUTHENTICATION_CHALLENGE_RESPONSE",
        SupState::Done => "nothing: already authenticated",
        SupState::Failed => "nothing: failed",
    }
}

fn split_nonce(nonce: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&nonce[..16]);
    b.copy_from_slice(&nonce[16..]);
    (a, b)
}

/// What a peer learns when its handshake succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The id the supervisor registered.
    pub peer_id: PeerId,
    /// Heartbeat interval to keep.
    pub heartbeat_ms: u64,
    /// ICE servers for peer connections.
    pub ice_servers: Vec<IceServer>,
    /// The supervisor's fingerprint.
    pub supervisor_fingerprint: String,
}

enum PeerState {
    AwaitInfoRequest,
    AwaitAuthRequest,
    AwaitChallenge(RsaPublicKey, String),
    AwaitAuthenticated(String),
    Done,
    Failed,
}

/// A peer's side of the handshake.
pub struct PeerHandshake {
    identity: Arc<Identity>,
    peer_id: PeerId,
    component: ComponentType,
    pinned: Option<String>,
    state: PeerState,
    outbox: VecDeque<PeerMessage>,
}

impl PeerHandshake {
    /// A handshake for `peer_id` with `identity`'s key; `pinned` is an expected supervisor fingerprint.
    pub fn new(
        identity: Arc<Identity>,
        peer_id: PeerId,
        component: ComponentType,
        pinned: Option<String>,
    ) -> Self {
        PeerHandshake {
            identity,
            peer_id,
            component,
            pinned: pinned.map(|p| normalize_fingerprint(&p)),
            state: PeerState::AwaitInfoRequest,
            outbox: VecDeque::new(),
        }
    }

    /// Feeds one supervisor message; returns the session once authenticated.
    pub fn handle_message<R: CryptoRng + ?Sized>(
        &mut self,
        msg: ServerMessage,
        rng: &mut R,
    ) -> Result<Option<Session>, AuthError> {
        if let ServerMessage::Error { message, .. } = &msg {
            self.state = PeerState::Failed;
            return Err(AuthError::Refused(message.clone()));
        }
        let state = std::mem::replace(&mut self.state, PeerState::Failed);
        let result = self.step(state, msg, rng);
        if result.is_err() {
            self.state = PeerState::Failed;
        }
        result
    }

    fn step<R: CryptoRng + ?Sized>(
        &mut self,
        state: PeerState,
        msg: ServerMessage,
        rng: &mut R,
    ) -> Result<Option<Session>, AuthError> {
        match (state, msg) {
            (PeerState::AwaitInfoRequest, ServerMessage::CollectPeerInfoRequest { protocol }) => {
                if protocol != PROTOCOL_VERSION {
                    return Err(AuthError::Version(protocol));
                }
                self.outbox.push_back(PeerMessage::CollectPeerInfoResponse {
                    peer_id: self.peer_id,
                    public_key: B64.encode(self.identity.public_der()),
                    component_type: self.component,
                    agent: Agent::Native,
                });
                self.state = PeerState::AwaitAuthRequest;
                Ok(None)
            }
            (
                PeerState::AwaitAuthRequest,
                ServerMessage::AuthenticationRequest { supervisor_key },
            ) => {
                let (key, der) = parse_public_key(&supervisor_key, "supervisor_key")?;
                let got = fingerprint(&der);
                if let Some(expected) = &self.pinned {
                    if !bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
                        return Err(AuthError::FingerprintMismatch {
                            expected: expected.clone(),
                            got,
                        });
                    }
                }
                self.outbox
                    .push_back(PeerMessage::AuthenticationResponse {});
                self.state = PeerState::AwaitChallenge(key, got);
                Ok(None)
            }
            (
                PeerState::AwaitChallenge(key, fp),
                ServerMessage::AuthenticationChallengeRequest { challenge },
            ) => {
                let ct = B64
                    .decode(&challenge)
                    .map_err(|_| AuthError::BadBase64("challenge"))?;
                let nonce = self.identity.decrypt("challenge", &ct)?;
                let nonce: [u8; 32] = nonce
                    .try_into()
                    .map_err(|_| AuthError::Decrypt("challenge"))?;
                let (a, b) = split_nonce(&nonce);
                let answer = challenge_answer(self.peer_id, &a, &b);
                let response = encrypt(rng, &key, &answer)?;
                self.outbox
                    .push_back(PeerMessage::AuthenticationChallengeResponse { response });
                self.state = PeerState::AwaitAuthenticated(fp);
                Ok(None)
            }
            (
                PeerState::AwaitAuthenticated(fp),
                ServerMessage::Authenticated {
                    peer_id,
                    heartbeat_ms,
                    ice_servers,
                },
            ) => {
                if peer_id != self.peer_id {
                    return Err(AuthError::PeerIdMismatch);
                }
                self.state = PeerState::Done;
                Ok(Some(Session {
                    peer_id,
                    heartbeat_ms,
                    ice_servers,
                    supervisor_fingerprint: fp,
                }))
            }
            (PeerState::Failed, _) => Err(AuthError::AlreadyFailed),
            (state, msg) => Err(AuthError::OutOfOrder {
                expected: match state {
                    PeerState::AwaitInfoRequest => "COLLECT_PEER_INFO_REQUEST",
                    PeerState::AwaitAuthRequest => "AUTHENTICATION_REQUEST",
                    PeerState::AwaitChallenge(..) => "AUTHENTICATION_CHALLENGE_REQUEST",
                    PeerState::AwaitAuthenticated(_) => "AUTHENTICATED",
                    PeerState::Done | PeerState::Failed => "nothing",
                },
                got: msg.name(),
            }),
        }
    }

    /// Next message to send to the supervisor.
    pub fn poll_message(&mut self) -> Option<PeerMessage> {
        self.outbox.pop_front()
    }
}
