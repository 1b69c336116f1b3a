//! The supervisor's side of the handshake: exactly one expected message per state, every failure
//! terminal, the answer compared in constant time, the whole exchange bounded by `timeout_ms` and
//! each answer of the peer by `step_timeout_ms`.

use super::{
    challenge_answer, encrypt, parse_public_key, split_nonce, AuthError, Identity,
    DEFAULT_KEY_BITS, DEFAULT_STEP_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, MAX_KEY_BITS,
};
use crate::ids::PeerId;
use crate::protocol::{
    Agent, ComponentType, IceServer, IceTransportPolicy, PeerMessage, ServerMessage,
    PROTOCOL_VERSION,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rsa::rand_core::CryptoRng;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use std::collections::VecDeque;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Settings of the supervisor's side.
#[derive(Clone, Copy, Debug)]
pub struct HandshakeConfig {
    /// Smallest peer key accepted.
    pub min_key_bits: usize,
    /// Deadline for the whole handshake.
    pub timeout_ms: u64,
    /// Deadline for each answer of the peer, counted from the message it answers: a client that
    /// goes silent is dropped after this long, not after the whole `timeout_ms`.
    pub step_timeout_ms: u64,
    /// Advertised heartbeat interval.
    pub heartbeat_ms: u64,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            min_key_bits: DEFAULT_KEY_BITS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            step_timeout_ms: DEFAULT_STEP_TIMEOUT_MS,
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
    ice_transport_policy: IceTransportPolicy,
    supervisors: Vec<String>,
    state: SupState,
    deadline_ms: u64,
    step_deadline_ms: u64,
    outbox: VecDeque<ServerMessage>,
}

impl SupervisorHandshake {
    /// Advertises other supervisors' WebSocket URLs in `AUTHENTICATED` (a cluster's peers
    /// reconnect to them when this one is lost).
    pub fn with_supervisors(mut self, urls: Vec<String>) -> Self {
        self.supervisors = urls;
        self
    }

    /// Tells every peer which ICE candidates to use (`AUTHENTICATED` `ice_transport_policy`).
    pub fn with_ice_transport_policy(mut self, policy: IceTransportPolicy) -> Self {
        self.ice_transport_policy = policy;
        self
    }

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
        Self {
            identity,
            config,
            ice_servers,
            ice_transport_policy: IceTransportPolicy::All,
            supervisors: Vec::new(),
            state: SupState::AwaitInfo,
            deadline_ms: now_ms.saturating_add(config.timeout_ms),
            step_deadline_ms: now_ms.saturating_add(config.step_timeout_ms),
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
        if now_ms >= self.step_deadline_ms {
            return self.fail(self.step_timeout());
        }
        let state = std::mem::replace(&mut self.state, SupState::Failed);
        let result = self.step(state, msg, rng);
        match &result {
            Err(_) => self.state = SupState::Failed,
            Ok(_) => {
                self.step_deadline_ms = now_ms.saturating_add(self.config.step_timeout_ms);
            }
        }
        result
    }

    /// When the whole handshake fails, whatever step it is in (`None` once it has ended).
    pub fn total_deadline_ms(&self) -> Option<u64> {
        match self.state {
            SupState::Done | SupState::Failed => None,
            _ => Some(self.deadline_ms),
        }
    }

    /// Whether the next message is the challenge answer (step 6), the one the supervisor decrypts
    /// with its private key: the shell rate-limits it and answers its failure at a fixed time.
    pub fn awaits_answer(&self) -> bool {
        matches!(self.state, SupState::AwaitAnswer(..))
    }

    fn step_timeout(&self) -> AuthError {
        AuthError::StepTimeout {
            expected: expected_name(&self.state),
            ms: self.config.step_timeout_ms,
        }
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
                // A padding failure and a wrong answer must look the same from outside (same error,
                // same text), or the close reason is a padding oracle (Manger/Bleichenbacher).
                let answer = self
                    .identity
                    .decrypt("challenge response", &ct)
                    .map_err(|_| AuthError::WrongAnswer)?;
                if !bool::from(answer.as_slice().ct_eq(&expected[..])) {
                    return Err(AuthError::WrongAnswer);
                }
                self.outbox.push_back(ServerMessage::Authenticated {
                    peer_id: claimed.peer_id,
                    heartbeat_ms: self.config.heartbeat_ms,
                    ice_servers: self.ice_servers.clone(),
                    ice_transport_policy: self.ice_transport_policy,
                    supervisors: self.supervisors.clone(),
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
            _ if now_ms >= self.step_deadline_ms => self.fail(self.step_timeout()),
            _ => Ok(()),
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            SupState::Done | SupState::Failed => None,
            _ => Some(self.deadline_ms.min(self.step_deadline_ms)),
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
