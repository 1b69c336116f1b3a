//! Chunk framing: the signed chunk, its byte layout, and the data-channel messages that carry it.
//!
//! This is a wire format shared with the browser's JavaScript; the layouts below are normative.
//! All integers are unsigned and big-endian unless stated otherwise.
//!
//! # Encoded chunk (`Chunk::encode` / `Chunk::decode`)
//!
//! | offset | size | field          | meaning                                                   |
//! |-------:|-----:|----------------|-----------------------------------------------------------|
//! | 0      | 8    | `seq`          | chunk sequence number; the init segment is 0              |
//! | 8      | 1    | `flags`        | bit set: 1 = init, 2 = keyframe, 4 = end (others: 0)      |
//! | 9      | 8    | `timestamp_ms` | media time of the chunk's first block                     |
//! | 17     | 4    | `duration_ms`  | media time until the next chunk starts (estimate at ends) |
//! | 21     | 4    | `payload_len`  | length of the payload in bytes                            |
//! | 25     | 32   | `tag`          | HMAC-SHA256(stream key, bytes 0..25 ‖ payload)            |
//! | 57     | n    | `payload`      | WebM bytes: init segment or one whole Cluster             |
//!
//! The tag covers the 25 header bytes exactly as encoded, then the payload, so a receiver verifies
//! before it interprets anything. An encoded chunk is exactly `57 + payload_len` bytes long.
//! In a browser: `crypto.subtle.verify("HMAC", key, bytes.subarray(25, 57),
//! concat(bytes.subarray(0, 25), bytes.subarray(57)))` with a raw 32-byte HMAC/SHA-256 key; read
//! the u64 fields with `DataView.getBigUint64(offset, false)`. Unknown flag bits must be ignored.
//!
//! # Data-channel messages ([`Message`])
//!
//! Every message starts with `version: u8 = 1` and `type: u8`.
//!
//! * type 1, FRAGMENT (parent to child), 18-byte header then data:
//!   `0: version | 1: type | 2: seq u64 | 10: index u16 | 12: count u16 | 14: total_len u32 | 18: bytes`.
//!   An encoded chunk of `total_len` bytes is cut into `count` consecutive pieces, sent in order
//!   with `index` 0..count; each whole message is at most [`MAX_MESSAGE`] bytes (16,384 B, the
//!   size every WebRTC implementation accepts). Every piece but the last is full.
//! * type 2, HELLO (child to parent, the first message on a new edge), 11 bytes:
//!   `0: version | 1: type | 2: has_last u8 (0 or 1) | 3: last_seq u64`. `has_last = 1` means
//!   "I hold every chunk up to `last_seq`" (a re-attach after a parent failure); `has_last = 0`
//!   means "I am new" and `last_seq` must be 0.
//!
//! Invariants: decoding never panics and never trusts a length it has not checked; a reassembled
//! chunk is at most [`MAX_CHUNK_LEN`] bytes encoded, and its own `seq` is its fragments' `seq`
//! (anything else is refused: [`FrameError::ChunkSeqMismatch`]).

mod message;

pub use message::{fragment, Fragment, Message, Reassembler};

use crate::ids::ChunkSeq;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// One unit of media as it travels the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the stream; the init segment is always sequence 0.
    pub seq: ChunkSeq,
    /// Bit set of `FLAG_*`.
    pub flags: u8,
    /// Media time of the chunk's first block, milliseconds from the stream's start.
    pub timestamp_ms: u64,
    /// Media time from this chunk's start to the next chunk's start, in milliseconds.
    pub duration_ms: u32,
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

/// Length of the signed chunk header (`seq`, `flags`, `timestamp_ms`, `duration_ms`, `payload_len`).
pub const HEADER_LEN: usize = 25;
/// Length of the HMAC-SHA256 tag that follows the header.
pub const TAG_LEN: usize = 32;
/// Largest encoded chunk (header + tag + payload) a receiver accepts: 16 MiB.
pub const MAX_CHUNK_LEN: usize = 16 * 1024 * 1024;
/// Largest data-channel message we send: 16 KiB, safe between every WebRTC implementation.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Everything that can be wrong with a chunk, a message, or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the fixed part of the structure needs.
    #[error("truncated {what}: need {need} bytes, got {got}")]
    Truncated {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes the fixed part needs.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// A chunk's `payload_len` disagrees with the bytes that follow its tag.
    #[error("chunk payload_len says {declared} bytes but {actual} follow the tag")]
    PayloadLength {
        /// Length in the header.
        declared: usize,
        /// Length actually present.
        actual: usize,
    },
    /// The HMAC tag does not match: wrong key, or the chunk was altered.
    #[error("chunk tag does not verify")]
    BadTag,
    /// A chunk (encoded) larger than the receiver accepts.
    #[error("chunk of {len} bytes exceeds the {max}-byte limit")]
    ChunkTooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message's version byte is not 1.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u8),
    /// The message's type byte is not a known message.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// A HELLO message whose length or fields are wrong.
    #[error("malformed HELLO: {0}")]
    BadHello(&'static str),
    /// A stream key that is not 32 bytes.
    #[error("stream key must be 32 bytes, got {0}")]
    KeyLength(usize),
    /// A stream key whose base64 text does not decode.
    #[error("stream key is not valid base64")]
    KeyBase64,
    /// `max_message` leaves no room for data after the fragment header.
    #[error("max message size {0} leaves no room for fragment data")]
    MessageLimitTooSmall(usize),
    /// The chunk needs more than 65,535 fragments at this message size.
    #[error("chunk would need {0} fragments, more than a u16 can count")]
    TooManyFragments(usize),
    /// A fragment declaring zero fragments.
    #[error("fragment count is 0")]
    ZeroFragmentCount,
    /// A fragment whose index is not below its count.
    #[error("fragment index {index} is not below count {count}")]
    IndexOutOfRange {
        /// Index in the fragment.
        index: u16,
        /// Count in the fragment.
        count: u16,
    },
    /// A fragment arrived out of order on an ordered channel.
    #[error("fragment index {got} arrived, expected {expected}")]
    OutOfOrder {
        /// Index the reassembler waits for.
        expected: u16,
        /// Index that arrived.
        got: u16,
    },
    /// A fragment of another chunk arrived while one was in progress.
    #[error("fragment for seq {got} arrived while seq {expected} is in progress")]
    SeqMismatch {
        /// Sequence in progress.
        expected: u64,
        /// Sequence that arrived.
        got: u64,
    },
    /// The reassembled chunk's own `seq` is not the one its fragments carry.
    #[error("fragments of seq {fragments} carry a chunk of seq {chunk}")]
    ChunkSeqMismatch {
        /// Sequence in the fragments' headers.
        fragments: u64,
        /// Sequence in the chunk's (signed) header.
        chunk: u64,
    },
    /// A fragment whose `count` or `total_len` differs from the first fragment's.
    #[error("fragment header changed mid-chunk (count or total_len)")]
    InconsistentFragment,
    /// The fragments' data does not add up to `total_len`.
    #[error("fragments carry {received} bytes, total_len says {total_len}")]
    LengthMismatch {
        /// Declared total.
        total_len: usize,
        /// Bytes received so far.
        received: usize,
    },
}

/// The per-stream HMAC-SHA256 key the supervisor issues; its `Debug` output hides the bytes.
#[derive(Clone)]
pub struct StreamKey([u8; 32]);

impl StreamKey {
    /// Wraps 32 key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from a cryptographic RNG.
    pub fn random(rng: &mut impl rand::CryptoRng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Builds a key from a slice, which must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FrameError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| FrameError::KeyLength(bytes.len()))?;
        Ok(Self(arr))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 (with padding), as the browser's `atob` reads it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard base64 (with padding) holding exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, FrameError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| FrameError::KeyBase64)?;
        Self::from_slice(&bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of every length (long ones are hashed), so this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

impl PartialEq for StreamKey {
    fn eq(&self, other: &Self) -> bool {
        // Constant time, so comparing keys leaks nothing through timing.
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for StreamKey {}

impl Chunk {
    /// Builds a chunk and computes its tag under `key`.
    pub fn sign(
        key: &StreamKey,
        seq: ChunkSeq,
        flags: u8,
        timestamp_ms: u64,
        duration_ms: u32,
        payload: Bytes,
    ) -> Self {
        let mut chunk = Self {
            seq,
            flags,
            timestamp_ms,
            duration_ms,
            payload,
            tag: [0; TAG_LEN],
        };
        let mac = chunk.keyed_mac(key);
        chunk.tag.copy_from_slice(&mac.finalize().into_bytes());
        chunk
    }

    /// Checks the tag in constant time; `Err(BadTag)` if the key is wrong or anything changed.
    pub fn verify(&self, key: &StreamKey) -> Result<(), FrameError> {
        self.keyed_mac(key)
            .verify_slice(&self.tag)
            .map_err(|_| FrameError::BadTag)
    }

    /// The chunk's bytes in wire order (see the module docs).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + TAG_LEN + self.payload.len());
        out.put_slice(&self.header());
        out.put_slice(&self.tag);
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// Parses an encoded chunk; the payload shares `bytes`' memory. Does not verify the tag.
    pub fn decode(bytes: Bytes) -> Result<Self, FrameError> {
        let fixed = HEADER_LEN + TAG_LEN;
        if bytes.len() < fixed {
            return Err(FrameError::Truncated {
                what: "chunk",
                need: fixed,
                got: bytes.len(),
            });
        }
        let declared = be_u32(&bytes[21..25]) as usize;
        let actual = bytes.len() - fixed;
        if declared != actual {
            return Err(FrameError::PayloadLength { declared, actual });
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&bytes[HEADER_LEN..fixed]);
        Ok(Self {
            seq: ChunkSeq(be_u64(&bytes[0..8])),
            flags: bytes[8],
            timestamp_ms: be_u64(&bytes[9..17]),
            duration_ms: be_u32(&bytes[17..21]),
            payload: bytes.slice(fixed..),
            tag,
        })
    }

    /// Length of [`Chunk::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + TAG_LEN + self.payload.len()
    }

    /// The chunk is the init segment.
    pub fn is_init(&self) -> bool {
        self.flags & FLAG_INIT != 0
    }

    /// The chunk starts with a video keyframe.
    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// The chunk marks the end of the stream.
    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END != 0
    }

    /// The 25 signed header bytes.
    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&self.seq.0.to_be_bytes());
        h[8] = self.flags;
        h[9..17].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        h[17..21].copy_from_slice(&self.duration_ms.to_be_bytes());
        // A payload over 4 GiB cannot be represented; saturating makes such a chunk fail
        // `decode`'s length check instead of silently aliasing a shorter length.
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        h[21..25].copy_from_slice(&len.to_be_bytes());
        h
    }

    fn keyed_mac(&self, key: &StreamKey) -> Hmac<Sha256> {
        let mut mac = key.mac();
        mac.update(&self.header());
        mac.update(&self.payload);
        mac
    }
}

/// Reads a big-endian u64 from exactly 8 bytes (callers slice after checking lengths).
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// Reads a big-endian u32 from exactly 4 bytes.
fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

/// Reads a big-endian u16 from exactly 2 bytes.
fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[cfg(test)]
mod test {
    use super::*;

    fn key(b: u8) -> StreamKey {
        StreamKey::new([b; 32])
    }

    fn sample() -> Chunk {
        Chunk::sign(
            &key(7),
            ChunkSeq(42),
            FLAG_KEYFRAME,
            123_456,
            1000,
            Bytes::from_static(b"cluster bytes"),
        )
    }

    #[test]
    fn header_layout_matches_the_documented_offsets() {
        let enc = sample().encode();
        assert_eq!(enc.len(), 57 + 13);
        assert_eq!(&enc[0..8], &42u64.to_be_bytes());
        assert_eq!(enc[8], FLAG_KEYFRAME);
        assert_eq!(&enc[9..17], &123_456u64.to_be_bytes());
        assert_eq!(&enc[17..21], &1000u32.to_be_bytes());
        assert_eq!(&enc[21..25], &13u32.to_be_bytes());
        assert_eq!(&enc[57..], b"cluster bytes");
    }

    #[test]
    fn tag_is_hmac_of_header_then_payload() {
        let c = sample();
        let enc = c.encode();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(&enc[..25]);
        mac.update(&enc[57..]);
        assert_eq!(&mac.finalize().into_bytes()[..], &c.tag[..]);
    }

    #[test]
    fn decode_round_trips_and_verifies() {
        let c = sample();
        let d = Chunk::decode(c.encode()).unwrap();
        assert_eq!(d, c);
        d.verify(&key(7)).unwrap();
        assert_eq!(d.verify(&key(8)), Err(FrameError::BadTag));
    }

    #[test]
    fn decode_rejects_bad_lengths() {
        let enc = sample().encode();
        assert!(matches!(
            Chunk::decode(enc.slice(..56)),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            Chunk::decode(enc.slice(..enc.len() - 1)),
            Err(FrameError::PayloadLength { .. })
        ));
    }

    #[test]
    fn key_helpers() {
        let k = key(3);
        assert_eq!(StreamKey::from_base64(&k.to_base64()).unwrap(), k);
        assert_eq!(format!("{k:?}"), "StreamKey(<redacted>)");
        assert_eq!(
            StreamKey::from_slice(&[0; 31]),
            Err(FrameError::KeyLength(31))
        );
        assert_eq!(StreamKey::from_base64("!!"), Err(FrameError::KeyBase64));
        assert_ne!(StreamKey::random(&mut rand::rng()), k);
    }

    #[test]
    fn flags_accessors() {
        let c = Chunk::sign(
            &key(1),
            ChunkSeq(0),
            FLAG_INIT | FLAG_END,
            0,
            0,
            Bytes::new(),
        );
        assert!(c.is_init() && c.is_end() && !c.is_keyframe());
    }
}
