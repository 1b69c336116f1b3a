//! The peer's side of the handshake: announce itself, check (and optionally pin) the supervisor's
//! key, decrypt the challenge, and answer it encrypted to the supervisor.

use super::{
    challenge_answer, encrypt, fingerprint, normalize_fingerprint, parse_public_key, split_nonce,
    AuthError, Identity,
};
use crate::ids::PeerId;
use crate::protocol::{
    Agent, ComponentType, IceServer, IceTransportPolicy, PeerMessage, ServerMessage,
    MAX_SUPERVISOR_URLS, PROTOCOL_VERSION,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rsa::rand_core::CryptoRng;
use rsa::RsaPublicKey;
use std::collections::VecDeque;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a peer learns when its handshake succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The id the supervisor registered.
    pub peer_id: PeerId,
    /// Heartbeat interval to keep.
    pub heartbeat_ms: u64,
    /// ICE servers for peer connections.
    pub ice_servers: Vec<IceServer>,
    /// Which candidates peer connections may use.
    pub ice_transport_policy: IceTransportPolicy,
    /// The supervisor's fingerprint.
    pub supervisor_fingerprint: String,
    /// Other supervisors it advertised (at most [`MAX_SUPERVISOR_URLS`]).
    pub supervisors: Vec<String>,
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
        Self {
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
                    ice_transport_policy,
                    mut supervisors,
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
                    ice_transport_policy,
                    supervisor_fingerprint: fp,
                    supervisors: {
                        supervisors.truncate(MAX_SUPERVISOR_URLS);
                        supervisors
                    },
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
