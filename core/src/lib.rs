//! Sans-IO core of ownstream.
//!
//! Every decision of the system lives here, free of sockets, tasks, locks and clocks: time comes in
//! as milliseconds (`now_ms: u64`) and randomness as a caller-provided RNG, so every state machine is
//! deterministic and testable on simulated time. The shells (`supervisor`, `broadcaster`, `ownstream-peer`)
//! feed inputs with `handle_*` and drain outputs with `poll_*`.
#![deny(missing_docs)]

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod failures;
pub mod frame;
pub mod ids;
pub mod latency;
pub mod node;
pub mod pacer;
pub mod player;
pub mod protocol;
pub mod publish;
pub mod registry;
pub mod relay;
pub mod topology;
pub mod webm;
