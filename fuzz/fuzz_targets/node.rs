//! A receiver's node state machine fed arbitrary supervisor messages (structured, or any text
//! that decodes), edge events, data-channel messages (raw bytes, HELLOs, or the fragments of real
//! chunks, some altered), buffered amounts, connection events and clock jumps.
//!
//! Checks: never a panic; nothing after `Ended`, which comes once; every delivered chunk verifies
//! under a key the supervisor gave (when every tag is checked), so an altered chunk is never delivered; every transmitted
//! message is a valid data-channel message within `MAX_MESSAGE`.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ownstream_core::frame::{fragment, ChunkSigner, Message, SigningKey, StreamKey, MAX_MESSAGE};
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::node::{ConnectFailure, EdgeId, Node, NodeConfig, Output};
use ownstream_core::protocol::{Agent, ComponentType, ServerMessage, SignalPayload};

const KEY: [u8; 32] = [5; 32];
const STREAM: &str = "s";

#[derive(Arbitrary, Debug)]
enum Op {
    Joined {
        parent: u8,
        depth: u8,
    },
    SetParent {
        parent: u8,
        depth: u8,
    },
    ConnectChild {
        child: u8,
        /// 0: unknown, 1: a Rust peer, anything else: a browser.
        agent: u8,
    },
    DropChild {
        child: u8,
    },
    Signal {
        from: u8,
        kind: u8,
    },
    StreamEnded,
    Kill {
        rejoin: bool,
    },
    Error {
        fatal: bool,
        code: bool,
    },
    Text(String),
    EdgeOpen {
        edge: u8,
    },
    EdgeRaw {
        edge: u8,
        bytes: Vec<u8>,
    },
    EdgeHello {
        edge: u8,
        last: Option<u16>,
    },
    EdgeChunk {
        edge: u8,
        seq: u16,
        flags: u8,
        len: u16,
        alter: Option<u16>,
        max_message: u16,
    },
    EdgeClosed {
        edge: u8,
    },
    EdgeSignal {
        edge: u8,
    },
    Buffered {
        edge: u8,
        bytes: u32,
    },
    Connected {
        heartbeat_ms: u16,
    },
    ConnectFailed {
        refused: bool,
    },
    Disconnected,
    Advance {
        ms: u16,
    },
    OutputFailed,
    Stop,
}

#[derive(Arbitrary, Debug)]
struct Input {
    verify_all: bool,
    ops: Vec<Op>,
}

fn peer(n: u8) -> PeerId {
    PeerId::from_bytes([n % 6 + 1; 16])
}

fn edge(n: u8) -> EdgeId {
    EdgeId(u64::from(n % 10))
}

struct Harness {
    node: Node,
    now: u64,
    keys: Vec<StreamKey>,
    ended: bool,
    /// Only with every tag checked is an altered chunk sure to be refused.
    verify_all: bool,
}

fuzz_target!(|input: Input| {
    let mut config = NodeConfig::new(ComponentType::Receiver, STREAM);
    config.retry_first_connect = true;
    if !input.verify_all {
        config.verify_fraction = 0.5;
    }
    let signer = ChunkSigner::new(STREAM, StreamKey::new(KEY), SigningKey::from_seed([7; 32]));
    let mut h = Harness {
        node: Node::new(config, 0),
        now: 0,
        keys: vec![],
        ended: false,
        verify_all: input.verify_all,
    };
    h.node.handle_connected(0, 1000);
    h.drain();
    for op in input.ops {
        h.apply(op, &signer);
        h.drain();
    }
});

impl Harness {
    fn server(&mut self, msg: ServerMessage) {
        if let ServerMessage::Joined { key, .. } = &msg {
            if let Ok(k) = StreamKey::from_base64(key) {
                self.keys.push(k);
            }
        }
        self.node.handle_server(self.now, msg);
    }

    fn apply(&mut self, op: Op, signer: &ChunkSigner) {
        let key = signer.stream_key();
        let now = self.now;
        let stream = STREAM.to_string();
        match op {
            Op::Joined { parent, depth } => self.server(ServerMessage::Joined {
                stream,
                key: key.to_base64(),
                signing_key: signer.verifying_key().to_base64(),
                parent: peer(parent),
                depth: usize::from(depth),
            }),
            Op::SetParent { parent, depth } => self.server(ServerMessage::SetParent {
                stream,
                parent: peer(parent),
                depth: usize::from(depth),
            }),
            Op::ConnectChild { child, agent } => self.server(ServerMessage::ConnectChild {
                stream,
                child: peer(child),
                agent: match agent {
                    0 => None,
                    1 => Some(Agent::Native),
                    _ => Some(Agent::Browser),
                },
            }),
            Op::DropChild { child } => self.server(ServerMessage::DropChild {
                stream,
                child: peer(child),
            }),
            Op::Signal { from, kind } => {
                let payload = match kind % 3 {
                    0 => SignalPayload::Offer { sdp: "v=0".into() },
                    1 => SignalPayload::Answer { sdp: "v=0".into() },
                    _ => SignalPayload::Candidate {
                        candidate: String::new(),
                        sdp_mid: None,
                        sdp_mline_index: Some(0),
                    },
                };
                self.server(ServerMessage::Signal {
                    from: peer(from),
                    payload,
                });
            }
            Op::StreamEnded => self.server(ServerMessage::StreamEnded {
                stream,
                reason: "over".into(),
            }),
            Op::Kill { rejoin } => self.server(ServerMessage::Kill {
                reason: "fuzz".into(),
                rejoin,
            }),
            Op::Error { fatal, code } => self.server(ServerMessage::Error {
                code: if code {
                    "stream_not_found"
                } else {
                    "not_allowed"
                }
                .into(),
                message: "no".into(),
                fatal,
            }),
            Op::Text(text) => {
                if let Ok(msg) = ServerMessage::decode(&text) {
                    self.server(msg);
                }
            }
            Op::EdgeOpen { edge: e } => self.node.handle_edge_open(now, edge(e)),
            Op::EdgeRaw { edge: e, bytes } => {
                self.node
                    .handle_edge_message(now, edge(e), Bytes::from(bytes))
            }
            Op::EdgeHello { edge: e, last } => {
                let hello = Message::Hello {
                    last: last.map(|s| ChunkSeq(u64::from(s))),
                };
                self.node.handle_edge_message(now, edge(e), hello.encode());
            }
            Op::EdgeChunk {
                edge: e,
                seq,
                flags,
                len,
                alter,
                max_message,
            } => {
                // Small chunks and few fragments keep executions fast; size limits are the
                // frame target's business.
                let payload: Vec<u8> = (0..usize::from(len % 4096)).map(|i| i as u8).collect();
                let chunk = signer.sign(
                    ChunkSeq(u64::from(seq)),
                    flags,
                    u64::from(seq) * 100,
                    100,
                    Bytes::from(payload),
                );
                let Ok(pieces) = fragment(&chunk, 256 + usize::from(max_message) % MAX_MESSAGE)
                else {
                    return;
                };
                let alter = alter.map(|a| usize::from(a) % chunk.encoded_len());
                let mut at = 0;
                for piece in pieces {
                    let mut bytes = piece.to_vec();
                    if let Some(a) = alter {
                        // Any byte after the fragment header: the chunk's header, tag or payload.
                        if a >= at && a < at + bytes.len() - 18 {
                            bytes[18 + a - at] ^= 0x55;
                        }
                    }
                    at += bytes.len() - 18;
                    self.node
                        .handle_edge_message(now, edge(e), Bytes::from(bytes));
                }
            }
            Op::EdgeClosed { edge: e } => self.node.handle_edge_closed(now, edge(e), "closed"),
            Op::EdgeSignal { edge: e } => self.node.handle_edge_signal(
                now,
                edge(e),
                SignalPayload::Answer { sdp: "v=0".into() },
            ),
            Op::Buffered { edge: e, bytes } => {
                self.node.handle_buffered_amount(edge(e), u64::from(bytes))
            }
            Op::Connected { heartbeat_ms } => {
                self.node.handle_connected(now, u64::from(heartbeat_ms))
            }
            Op::ConnectFailed { refused } => self.node.handle_connect_failed(
                now,
                if refused {
                    ConnectFailure::Refused("no".into())
                } else {
                    ConnectFailure::Unreachable("down".into())
                },
            ),
            Op::Disconnected => self.node.handle_disconnected(now, "gone"),
            Op::Advance { ms } => {
                self.now += u64::from(ms);
                self.node.handle_timeout(self.now);
            }
            Op::OutputFailed => self.node.handle_output_failed(now, "disk full"),
            Op::Stop => self.node.handle_stop(now),
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            assert!(!self.ended, "{out:?} after Ended");
            match out {
                Output::Deliver(chunk) if self.verify_all => {
                    assert!(
                        self.keys.iter().any(|k| chunk.verify(k).is_ok()),
                        "delivered a chunk no given key verifies: {chunk:?}"
                    );
                }
                Output::Transmit { message, .. } => {
                    assert!(message.len() <= MAX_MESSAGE);
                    Message::decode(message).expect("a transmitted message decodes");
                }
                Output::Ended(_) => self.ended = true,
                _ => {}
            }
        }
        let _ = self.node.poll_timeout();
        let _ = self.node.stats();
    }
}
