//! The peer side of ownstream: the async shells a broadcaster or viewer runs around the core.
//!
//! [`edge`] is one WebRTC edge of the tree (one peer connection, one data channel), driven by
//! signaling relayed through the supervisor.

pub mod edge;
