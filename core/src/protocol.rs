//! Signaling messages exchanged over the supervisor's WebSocket (JSON text frames).
//!
//! (being written; `SignalPayload` is stable)

use serde::{Deserialize, Serialize};

/// WebRTC signaling relayed between two neighbours; the JSON shape matches the browser's
/// `RTCSessionDescriptionInit` / `RTCIceCandidateInit` so JavaScript peers can pass it straight through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SignalPayload {
    /// SDP offer; the parent of an edge always offers and creates the data channel.
    Offer {
        /// Session description text.
        sdp: String,
    },
    /// SDP answer from the child.
    Answer {
        /// Session description text.
        sdp: String,
    },
    /// A trickled ICE candidate; an empty `candidate` string means end of candidates.
    Candidate {
        /// The `candidate:` attribute line.
        candidate: String,
        /// Media stream id the candidate belongs to.
        #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// Index of the m-line the candidate belongs to.
        #[serde(rename = "sdpMLineIndex", default, skip_serializing_if = "Option::is_none")]
        sdp_mline_index: Option<u16>,
    },
}
