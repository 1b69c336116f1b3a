//! Chunk framing: header, HMAC-SHA256 tag, fragmentation and reassembly (owned by the media helper).

use crate::ids::ChunkSeq;
use bytes::Bytes;

/// One unit of media as it travels the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the stream; the init segment is always sequence 0.
    pub seq: ChunkSeq,
    /// Bit set of `FLAG_*`.
    pub flags: u8,
    /// Media time of the chunk's first block, milliseconds from the stream's start.
    pub timestamp_ms: u64,
    /// WebM bytes: the init segment, or one or more whole clusters.
    pub payload: Bytes,
    /// HMAC-SHA256 over the header fields and the payload under the stream key.
    pub tag: [u8; 32],
}

/// The chunk is the WebM init segment (EBML header, Segment Info, Tracks).
pub const FLAG_INIT: u8 = 1;
/// The chunk's first block is a video keyframe: a new viewer can start playing here.
pub const FLAG_KEYFRAME: u8 = 2;
/// The broadcaster ended the stream after this chunk (payload is empty).
pub const FLAG_END: u8 = 4;
