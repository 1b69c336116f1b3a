//! One WebSocket connection: the authentication handshake, then forwarding to and from the hub.
//!
//! Nothing but the handshake is accepted before it completes. Every failure closes the socket with a
//! close frame whose reason says what went wrong, and is logged. The connection holds one of the
//! admission's handshake slots until its handshake ends; each step has its own deadline, and the
//! challenge answer is decrypted only with the admission's permit.

use crate::gate::{Gate, Pending};
use crate::http::AppState;
use crate::hub::{now_ms, Outbound, OUTBOUND_QUEUE};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use ownstream_core::auth::{fingerprint, AuthenticatedPeer, HandshakeConfig, SupervisorHandshake};
use ownstream_core::protocol::{PeerMessage, ServerMessage, MAX_MESSAGE_LEN};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// Close code for protocol violations (RFC 6455 1008, policy violation).
const CLOSE_POLICY: u16 = 1008;
/// Close code for a normal close.
const CLOSE_NORMAL: u16 = 1000;

/// A failed challenge answer (step 6) is answered this long after its decryption began, whatever
/// the decryption took: the close reaches the client at the same moment for a bad padding and a
/// wrong answer, so the network carries no timing of the RSA operation (RUSTSEC-2023-0071, see
/// SECURITY.md). Far above the few milliseconds a 2048- to 8192-bit decryption takes.
const ANSWER_FAILURE_DELAY: Duration = Duration::from_millis(500);
/// A close frame that cannot be written within this long (a client that stopped reading) is given
/// up, so a connection's task never outlives its handshake by more.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// Drives one connection to its end; `pending` is its handshake slot, given back when the
/// handshake ends.
pub async fn serve_socket(mut socket: WebSocket, state: AppState, pending: Pending) {
    let addr = pending.addr();
    let limit = Duration::from_millis(state.config.handshake_timeout_ms) + CLOSE_LIMIT;
    let result = tokio::time::timeout(limit, authenticate(&mut socket, &state, addr))
        .await
        .unwrap_or_else(|_| Err("authentication timed out".into()));
    drop(pending);
    let peer = match result {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::info!(%reason, %addr, "authentication failed");
            state
                .metrics
                .auth_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            close(&mut socket, CLOSE_POLICY, &reason).await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let Some(conn) = state
        .hub
        .connect(
            peer.peer_id,
            peer.component,
            peer.agent,
            fingerprint(&peer.public_der),
            tx,
        )
        .await
    else {
        let reason = format!("peer id {} is already connected", peer.peer_id);
        tracing::info!(%reason, "refused duplicate peer");
        close(&mut socket, CLOSE_POLICY, &reason).await;
        return;
    };
    tracing::info!(peer = %peer.peer_id, component = ?peer.component, agent = ?peer.agent, "authenticated");
    let end = forward(&mut socket, &state, &peer, conn, rx).await;
    state.hub.disconnect(peer.peer_id, conn);
    tracing::info!(peer = %peer.peer_id, reason = %end, "disconnected");
}

async fn authenticate(
    socket: &mut WebSocket,
    state: &AppState,
    addr: IpAddr,
) -> Result<AuthenticatedPeer, String> {
    let config = HandshakeConfig {
        min_key_bits: state.config.min_key_bits,
        timeout_ms: state.config.handshake_timeout_ms,
        step_timeout_ms: state.config.handshake_step_timeout_ms,
        heartbeat_ms: state.config.heartbeat_ms,
    };
    let mut hs = SupervisorHandshake::new(
        state.identity.clone(),
        config,
        state.config.ice_servers.clone(),
        now_ms(),
    )
    .with_ice_transport_policy(state.config.ice_transport_policy);
    loop {
        while let Some(msg) = hs.poll_message() {
            send(socket, &msg).await?;
        }
        let deadline = hs.poll_timeout().unwrap_or_else(now_ms);
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms()));
        let text = match tokio::time::timeout(wait, next_text(socket)).await {
            Err(_) => {
                hs.handle_timeout(now_ms()).map_err(|e| e.to_string())?;
                continue;
            }
            Ok(text) => text?,
        };
        let arrived = now_ms();
        let msg = PeerMessage::decode(&text).map_err(|e| e.to_string())?;
        let answer = hs.awaits_answer();
        if answer {
            decrypt_permit(&state.gate, addr, &hs).await?;
        }
        let started = tokio::time::Instant::now();
        // The RNG is not Send: keep it out of any await. The message is judged at its arrival:
        // time spent waiting for a decryption permit is the supervisor's, not the peer's.
        let done = hs.handle_message(arrived, msg, &mut rand::rng());
        let done = match done {
            Err(e) if answer => {
                tokio::time::sleep_until(started + ANSWER_FAILURE_DELAY).await;
                return Err(e.to_string());
            }
            other => other.map_err(|e| e.to_string())?,
        };
        if let Some(peer) = done {
            while let Some(msg) = hs.poll_message() {
                send(socket, &msg).await?;
            }
            return Ok(peer);
        }
    }
}

/// Waits for admission to allow one more RSA decryption for `addr`, as long as the handshake's
/// total deadline allows: in a join storm honest answers queue (each holding its handshake slot)
/// rather than fail; one that cannot be decrypted in time is refused with the reason.
async fn decrypt_permit(gate: &Gate, addr: IpAddr, hs: &SupervisorHandshake) -> Result<(), String> {
    loop {
        let refusal = match gate.decrypt(addr) {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        };
        let retry = refusal.retry_after_ms().unwrap_or(u64::MAX);
        let deadline = hs.total_deadline_ms().unwrap_or_else(now_ms);
        if now_ms().saturating_add(retry) >= deadline {
            return Err(refusal.to_string());
        }
        tokio::time::sleep(Duration::from_millis(retry)).await;
    }
}

async fn forward(
    socket: &mut WebSocket,
    state: &AppState,
    peer: &AuthenticatedPeer,
    conn: u64,
    mut rx: mpsc::Receiver<Outbound>,
) -> String {
    loop {
        tokio::select! {
            incoming = next_text(socket) => {
                let text = match incoming {
                    Ok(text) => text,
                    Err(reason) => return reason,
                };
                match PeerMessage::decode(&text) {
                    Ok(msg) => state.hub.message(peer.peer_id, conn, msg),
                    Err(e) => {
                        let reason = e.to_string();
                        let _ = send(socket, &ServerMessage::fatal("bad_message", reason.clone())).await;
                        close(socket, CLOSE_POLICY, &reason).await;
                        return reason;
                    }
                }
            }
            out = rx.recv() => match out {
                Some(Outbound::Message(msg)) => {
                    if let Err(reason) = send(socket, &msg).await {
                        return reason;
                    }
                }
                Some(Outbound::Close(reason)) => {
                    close(socket, CLOSE_NORMAL, &reason).await;
                    return reason;
                }
                None => return "supervisor shutting down".into(),
            }
        }
    }
}

/// Waits for the next text frame, answering pings; binary frames and oversized frames are errors.
async fn next_text(socket: &mut WebSocket) -> Result<String, String> {
    loop {
        match socket.recv().await {
            None => return Err("connection closed".into()),
            Some(Err(e)) => return Err(format!("connection error: {e}")),
            Some(Ok(Message::Text(t))) => {
                if t.len() > MAX_MESSAGE_LEN {
                    return Err(format!("message over {MAX_MESSAGE_LEN} bytes"));
                }
                return Ok(t.to_string());
            }
            Some(Ok(Message::Binary(_))) => {
                return Err("binary frames are not part of the protocol".into())
            }
            Some(Ok(Message::Close(_))) => return Err("peer closed the connection".into()),
            Some(Ok(_)) => continue,
        }
    }
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), String> {
    socket
        .send(Message::Text(Utf8Bytes::from(msg.encode())))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close reason is limited to 123 bytes by RFC 6455; cut on a character boundary.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    };
    let _ = tokio::time::timeout(CLOSE_LIMIT, socket.send(Message::Close(Some(frame)))).await;
}
