//! The peer side of ownstream: the async shells a broadcaster or viewer runs around the core.
//!
//! - [`signaling`]: WebSocket to the supervisor, the peer side of the RSA handshake, heartbeats;
//! - [`edge`]: one WebRTC edge of the tree (one peer connection, one data channel);
//! - [`node`]: one task that owns a node's state (edges, relay buffer, reassembly, verification,
//!   player model) and reacts to signaling, edge and source events;
//! - [`sink`], [`cli`]: the receiver's output file and the options shared by the binaries.

pub mod cli;
pub mod edge;
pub mod node;
pub mod signaling;
pub mod sink;
