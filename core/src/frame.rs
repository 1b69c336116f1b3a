//! Chunk framing: the signed chunk, its byte layout, and the data-channel messages that carry it.
//!
//! This is a wire format shared with the browser's JavaScript; the layouts below are normative.
//! All integers are unsigned and big-endian unless stated otherwise.
//!
//! # Encoded chunk, format 3 (`Chunk::encode` / `Chunk::decode`)
//!
//! | offset | size | field          | meaning                                                   |
//! |-------:|-----:|----------------|-----------------------------------------------------------|
//! | 0      | 8    | `seq`          | chunk sequence number; the init segment is 0              |
//! | 8      | 1    | `flags`        | bit set: 1 = init, 2 = keyframe, 4 = end (others: 0)      |
//! | 9      | 8    | `timestamp_ms` | media time of the chunk's first block                     |
//! | 17     | 4    | `duration_ms`  | media time until the next chunk starts (estimate at ends) |
//! | 21     | 4    | `payload_len`  | length of the payload in bytes                            |
//! | 25     | 32   | `tag`          | HMAC-SHA256(stream key, bytes 0..25 ‖ SHA-256(payload))   |
//! | 57     | 64   | `signature`    | Ed25519(broadcaster's signing key, signed message below)  |
//! | 121    | n    | `payload`      | WebM bytes: init segment or one whole Cluster             |
//!
//! An encoded chunk is exactly `121 + payload_len` bytes long. The layout is format 2's; what
//! changed is what the tag and the signature cover: the payload's SHA-256 digest, not the payload
//! itself, so a node hashes each chunk's bytes once for both checks instead of twice (HMAC's
//! SHA-256, then Ed25519's SHA-512: that second pass was 5-6 % of a relaying process's CPU).
//! Format 3's messages carry version byte 3, format 2's carried 2 (below); format 1 (no
//! signature) is long gone.
//!
//! **Digest.** `digest = SHA-256(payload)`, 32 bytes, over the payload bytes exactly as they
//! follow the signature (an empty payload has the digest of the empty string). Binding the
//! payload through its digest is as strong as SHA-256's collision resistance (128 bits), the same
//! margin as the tag itself and Ed25519's.
//!
//! **Tag.** HMAC-SHA256 under the stream key over the 25 header bytes exactly as encoded, then the
//! digest (not the signature). It is the paper's one-time key check: every viewer holds the
//! stream key, so it proves only that *some* holder of the key made the chunk. A receiver may
//! check a sampled fraction of tags.
//!
//! **Signature.** Ed25519 (RFC 8032, pure, no context) by the broadcaster's own key, whose 32-byte
//! public key the supervisor binds to the stream at `REGISTER_STREAM` and hands every viewer in
//! `JOINED` (`signing_key`). The signed message is
//!
//! ```text
//! "ownstream-chunk-v3" (18 ASCII bytes) ‖ stream key (the 32 raw bytes of the HMAC key)
//!     ‖ stream_len u16 ‖ stream name (stream_len bytes, UTF-8) ‖ bytes 0..25 (the header as
//!     encoded) ‖ digest (32 bytes)
//! ```
//!
//! The domain string keeps the signature from meaning anything outside this format (and a format
//! 2 signature, over the payload itself, from passing as a format 3 one). The stream
//! name and the stream key (fresh at every registration) bind the chunk to one broadcast: a chunk
//! cannot be replayed into another stream, nor into a later broadcast of the same name even when
//! the broadcaster keeps its signing key across runs. Every receiver verifies the signature of
//! **every** chunk (not a sample) before it plays it, writes it out or keeps it for its children,
//! and drops the chunk if it fails. Relays cannot make a valid signature, so an altered chunk stops
//! at the first honest child. What a forging relay can still do is withhold or delay chunks, or
//! send chunks its children drop (each costs them one signature check): its subtree loses those
//! chunks (holes, stalls) until the relay's edge fails or the operator moves it (a child does not
//! report a parent whose chunks fail), but nothing it made up plays.
//! `seq` is in the signed header, so an older chunk of the same broadcast replayed by a relay
//! keeps its old `seq` and receivers ignore it as a duplicate.
//!
//! In a browser: the digest with `crypto.subtle.digest("SHA-256", bytes.subarray(121))`; the tag
//! with HMAC over `concat(bytes.subarray(0, 25), digest)`, the tag at `bytes.subarray(25, 57)`; the
//! signature with `crypto.subtle.verify("Ed25519", publicKey, bytes.subarray(57, 121), message)`
//! where `publicKey` is imported `raw` (32 bytes). Read the u64
//! fields with `DataView.getBigUint64(offset, false)`. Unknown flag bits must be ignored.
//!
//! # Data-channel messages ([`Message`])
//!
//! Every message starts with `version: u8 = 3` and `type: u8`; a message with any other version
//! is an error (a peer of chunk format 2 cannot exchange chunks with a peer of format 3).
//!
//! * type 1, FRAGMENT (parent to child), 18-byte header then data:
//!   `0: version | 1: type | 2: seq u64 | 10: index u16 | 12: count u16 | 14: total_len u32 | 18: bytes`.
//!   An encoded chunk of `total_len` bytes is cut into `count` consecutive pieces, sent in order
//!   with `index` 0..count; each whole message is at most [`MAX_MESSAGE`] bytes (65,536 B:
//!   webrtc-rs's default max-message-size; Chrome advertises 262,144 and Firefox more, so every
//!   peer of ours takes it, and relays pass messages on unchanged); our nodes cut at
//!   [`FRAGMENT_LEN`] (63,776 B, whole SCTP packets). Every piece but the last is full. A
//!   receiver takes pieces of any size up to [`MAX_MESSAGE`].
//! * type 2, HELLO (child to parent, the first message on a new edge), 11 bytes:
//!   `0: version | 1: type | 2: has_last u8 (0 or 1) | 3: last_seq u64`. `has_last = 1` means
//!   "I hold every chunk up to `last_seq`" (a re-attach after a parent failure); `has_last = 0`
//!   means "I am new" and `last_seq` must be 0.
//! * type 3, KEEPALIVE (both ways, only after the child's HELLO), exactly 2 bytes:
//!   `0: version | 1: type`. A parent sends one every `KEEPALIVE_MS`, a child every
//!   `KEEPALIVE_SLOW_MS` (`node::rules`), whatever else it sends, and a standby parent one as a
//!   standby edge opens (and none after it until the child switches: `node::standby`); a peer
//!   that has sent one and then nothing at all for `SILENCE_LIMIT_MS` (a parent) or
//!   `CHILD_SILENCE_LIMIT_MS` (a child) is taken as failed: a frozen process keeps its sockets
//!   open, so only silence shows it. Any other length is an error.
//! * type 4, ABORT (parent to child), 10 bytes: `0: version | 1: type | 2: seq u64`. "Drop
//!   chunk `seq`: none of it will follow." A relay passes a chunk's fragments on as they arrive
//!   (cut-through), all but the last, which it sends only once the whole chunk verified; when
//!   the chunk fails, or the relay loses its parent mid-chunk, it sends ABORT to each child that
//!   got part of it and drops the rest. A child drops that chunk in progress (and passes the
//!   ABORT on to its own children); an ABORT for a chunk not in progress is ignored. A fragment
//!   with index 0 while another chunk is in progress is still an error: ABORT comes first.
//!
//! Invariants: decoding never panics and never trusts a length it has not checked; a reassembled
//! chunk is at most [`MAX_CHUNK_LEN`] bytes encoded, and its own `seq` is its fragments' `seq`
//! (anything else is refused: [`FrameError::ChunkSeqMismatch`]).

mod message;
mod origin;

pub use message::{fragment, Fragment, Message, Reassembler, FRAGMENT_HEADER_LEN};
pub use origin::{ChunkSigner, SigningKey, VerifyingKey, SIGNATURE_DOMAIN};

use crate::ids::ChunkSeq;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};
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
    /// Ed25519 signature of the broadcaster over the stream name, the header and the payload.
    pub signature: [u8; SIGNATURE_LEN],
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
/// Length of the Ed25519 signature that follows the tag.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes before the payload: header, tag and signature.
pub const PREFIX_LEN: usize = HEADER_LEN + TAG_LEN + SIGNATURE_LEN;
/// Largest encoded chunk (header + tag + signature + payload) a receiver accepts: 16 MiB.
pub const MAX_CHUNK_LEN: usize = 16 * 1024 * 1024;
/// Largest data-channel message we send: 64 KiB, what webrtc-rs accepts by default (browsers take
/// more). Fewer, larger messages cost less per relayed byte (one channel send, one driver wake-up
/// and one buffered-amount check each) and still pass on at once under cut-through.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The size a node cuts a chunk's encoding into ([`fragment`]'s `max_message` wherever a chunk is
/// sent whole: a source, and a relay serving a chunk from its backlog; under cut-through a relay
/// passes on what it received). Why not [`MAX_MESSAGE`]: SCTP carries a message in DATA chunks of
/// the packet size less 28 bytes (rounded down to 4), so 65,536 bytes took 8 full packets and a
/// ninth of ~1.5 KB between Rust peers (7,972 bytes each at `peer::edge`'s 8000-byte loopback
/// MTU), 57 with a short last one at webrtc's default 1191 (1,160 each). This is exactly 8 x
/// 7,972 and 55 packets of 1,160 but for 24 bytes: in a tcpdump at 400 receivers the short
/// packets went from 15 % of the media datagrams to 4 % (one per chunk). Measured only together
/// with ICE consent checks every 2 s (as direct paths have them, `peer::edge`), 4 alternating
/// pairs of `experiments scale --steps 400 --per-process 400`: receivers' CPU per relayed Mbit/s
/// 0.1845 against 0.1925 (median), every pair lower; this change's own share is smaller.
pub const FRAGMENT_LEN: usize = 8 * 7_972;
const _: () = assert!(FRAGMENT_LEN <= MAX_MESSAGE);

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
    /// The broadcaster's signature does not match: the chunk was altered or made by someone else.
    #[error("chunk signature does not verify")]
    BadSignature,
    /// A broadcaster's public signing key that is not a usable Ed25519 key.
    #[error("bad signing key: {0}")]
    BadSigningKey(&'static str),
    /// A chunk (encoded) larger than the receiver accepts.
    #[error("chunk of {len} bytes exceeds the {max}-byte limit")]
    ChunkTooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message's version byte is not this format's (3).
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u8),
    /// The message's type byte is not a known message.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// A HELLO message whose length or fields are wrong.
    #[error("malformed HELLO: {0}")]
    BadHello(&'static str),
    /// A KEEPALIVE whose length is not 2 bytes.
    #[error("malformed KEEPALIVE: length is not 2 bytes")]
    BadKeepalive,
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
    /// Recomputes the tag under `key` (what any holder of the stream key can do; the signature
    /// is left as it is).
    pub fn retag(&mut self, key: &StreamKey) {
        self.tag = self.tag_of(key, &self.digest());
    }

    /// SHA-256 of the payload: what the tag and the signature cover in its place (module docs).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.payload).into()
    }

    /// Checks the broadcaster's signature for the broadcast of `stream` under `stream_key`;
    /// `Err(BadSignature)` if anything in the header or payload changed, the broadcast is another,
    /// or another key signed it.
    pub fn verify_signature(
        &self,
        key: &VerifyingKey,
        stream_key: &StreamKey,
        stream: &str,
    ) -> Result<(), FrameError> {
        self.verify_signature_of(&self.digest(), key, stream_key, stream)
    }

    /// What every node does with a chunk from its parent: the tag if `tag_too`, then the
    /// signature, hashing the payload once for both. `Err(BadTag)` or `Err(BadSignature)`, as
    /// [`Chunk::verify`] and [`Chunk::verify_signature`] would say.
    pub fn verify_all(
        &self,
        tag_too: bool,
        key: &VerifyingKey,
        stream_key: &StreamKey,
        stream: &str,
    ) -> Result<(), FrameError> {
        let digest = self.digest();
        if tag_too {
            self.verify_tag_of(&digest, stream_key)?;
        }
        self.verify_signature_of(&digest, key, stream_key, stream)
    }

    fn verify_signature_of(
        &self,
        digest: &[u8; 32],
        key: &VerifyingKey,
        stream_key: &StreamKey,
        stream: &str,
    ) -> Result<(), FrameError> {
        key.verify_parts(
            &self.signed_parts(stream_key, stream, digest).slices(),
            &self.signature,
        )
    }

    /// The signed message in pieces (see the module docs).
    fn signed_parts<'a>(
        &self,
        stream_key: &'a StreamKey,
        stream: &'a str,
        digest: &'a [u8; 32],
    ) -> SignedParts<'a> {
        // Stream names are at most 64 bytes (protocol::MAX_STREAM_NAME_LEN); a longer one would
        // saturate here and no longer match what a receiver computes, failing closed.
        let len = u16::try_from(stream.len()).unwrap_or(u16::MAX);
        SignedParts {
            stream_key: stream_key.as_bytes(),
            len: len.to_be_bytes(),
            stream: stream.as_bytes(),
            header: self.header(),
            digest,
        }
    }

    /// Checks the tag in constant time; `Err(BadTag)` if the key is wrong or anything changed.
    pub fn verify(&self, key: &StreamKey) -> Result<(), FrameError> {
        self.verify_tag_of(&self.digest(), key)
    }

    fn verify_tag_of(&self, digest: &[u8; 32], key: &StreamKey) -> Result<(), FrameError> {
        self.keyed_mac(key, digest)
            .verify_slice(&self.tag)
            .map_err(|_| FrameError::BadTag)
    }

    /// The chunk's bytes in wire order (see the module docs).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(PREFIX_LEN + self.payload.len());
        out.put_slice(&self.prefix());
        out.put_slice(&self.payload);
        out.freeze()
    }

    /// Parses an encoded chunk; the payload shares `bytes`' memory. Verifies neither the tag nor
    /// the signature.
    pub fn decode(bytes: Bytes) -> Result<Self, FrameError> {
        let fixed = PREFIX_LEN;
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
        tag.copy_from_slice(&bytes[HEADER_LEN..HEADER_LEN + TAG_LEN]);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[HEADER_LEN + TAG_LEN..fixed]);
        Ok(Self {
            seq: ChunkSeq(be_u64(&bytes[0..8])),
            flags: bytes[8],
            timestamp_ms: be_u64(&bytes[9..17]),
            duration_ms: be_u32(&bytes[17..21]),
            payload: bytes.slice(fixed..),
            tag,
            signature,
        })
    }

    /// Length of [`Chunk::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        PREFIX_LEN + self.payload.len()
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

    /// Header, tag and signature: the encoding's bytes before the payload.
    pub(crate) fn prefix(&self) -> [u8; PREFIX_LEN] {
        let mut p = [0u8; PREFIX_LEN];
        p[..HEADER_LEN].copy_from_slice(&self.header());
        p[HEADER_LEN..HEADER_LEN + TAG_LEN].copy_from_slice(&self.tag);
        p[HEADER_LEN + TAG_LEN..].copy_from_slice(&self.signature);
        p
    }

    /// The 25 header bytes, covered by both the tag and the signature.
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

    fn tag_of(&self, key: &StreamKey, digest: &[u8; 32]) -> [u8; TAG_LEN] {
        self.keyed_mac(key, digest).finalize().into_bytes().into()
    }

    fn keyed_mac(&self, key: &StreamKey, digest: &[u8; 32]) -> Hmac<Sha256> {
        let mut mac = key.mac();
        mac.update(&self.header());
        mac.update(digest);
        mac
    }
}

/// The pieces of a chunk's signed message, in order after [`SIGNATURE_DOMAIN`].
struct SignedParts<'a> {
    stream_key: &'a [u8; 32],
    len: [u8; 2],
    stream: &'a [u8],
    header: [u8; HEADER_LEN],
    digest: &'a [u8; 32],
}

impl SignedParts<'_> {
    fn slices(&self) -> [&[u8]; 6] {
        [
            SIGNATURE_DOMAIN,
            self.stream_key,
            &self.len,
            self.stream,
            &self.header,
            self.digest,
        ]
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

    fn signer(stream: &str, k: u8) -> ChunkSigner {
        ChunkSigner::new(stream, key(k), SigningKey::from_seed([5; 32]))
    }

    fn sample() -> Chunk {
        signer("s", 7).sign(
            ChunkSeq(42),
            FLAG_KEYFRAME,
            123_456,
            1000,
            Bytes::from_static(b"cluster bytes"),
        )
    }

    #[test]
    fn header_layout_matches_the_documented_offsets() {
        let c = sample();
        let enc = c.encode();
        assert_eq!(enc.len(), 121 + 13);
        assert_eq!(&enc[0..8], &42u64.to_be_bytes());
        assert_eq!(enc[8], FLAG_KEYFRAME);
        assert_eq!(&enc[9..17], &123_456u64.to_be_bytes());
        assert_eq!(&enc[17..21], &1000u32.to_be_bytes());
        assert_eq!(&enc[21..25], &13u32.to_be_bytes());
        assert_eq!(&enc[25..57], &c.tag);
        assert_eq!(&enc[57..121], &c.signature);
        assert_eq!(&enc[121..], b"cluster bytes");
    }

    #[test]
    fn tag_is_hmac_of_header_then_payload_digest() {
        let c = sample();
        let enc = c.encode();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(&enc[..25]);
        mac.update(&Sha256::digest(&enc[121..]));
        assert_eq!(&mac.finalize().into_bytes()[..], &c.tag[..]);
    }

    #[test]
    fn signature_is_ed25519_of_the_documented_message() {
        use ed25519_dalek::ed25519::signature::Verifier as _;
        let c = sample();
        let enc = c.encode();
        let mut message = b"ownstream-chunk-v3".to_vec();
        message.extend_from_slice(&[7u8; 32]);
        message.extend_from_slice(&[0, 1, b's']);
        message.extend_from_slice(&enc[..25]);
        message.extend_from_slice(&Sha256::digest(&enc[121..]));
        let public = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let sig = ed25519_dalek::Signature::from_bytes(&c.signature);
        public.verify(&message, &sig).expect("plain Ed25519 agrees");
    }

    #[test]
    fn decode_round_trips_and_verifies() {
        let c = sample();
        let d = Chunk::decode(c.encode()).unwrap();
        assert_eq!(d, c);
        d.verify(&key(7)).unwrap();
        assert_eq!(d.verify(&key(8)), Err(FrameError::BadTag));
        let public = SigningKey::from_seed([5; 32]).verifying_key();
        d.verify_signature(&public, &key(7), "s").unwrap();
    }

    #[test]
    fn a_retagged_alteration_passes_the_tag_but_not_the_signature() {
        let public = SigningKey::from_seed([5; 32]).verifying_key();
        let mut c = sample();
        let mut payload = c.payload.to_vec();
        payload[0] ^= 1;
        c.payload = payload.into();
        c.retag(&key(7));
        c.verify(&key(7)).expect("any key holder can retag");
        assert_eq!(
            c.verify_signature(&public, &key(7), "s"),
            Err(FrameError::BadSignature)
        );
        let mut c = sample();
        c.timestamp_ms += 1;
        assert_eq!(
            c.verify_signature(&public, &key(7), "s"),
            Err(FrameError::BadSignature)
        );
    }

    #[test]
    fn verify_all_says_what_the_two_checks_say() {
        let public = SigningKey::from_seed([5; 32]).verifying_key();
        let c = sample();
        c.verify_all(true, &public, &key(7), "s").unwrap();
        let mut bad_tag = sample();
        bad_tag.tag[0] ^= 1;
        assert_eq!(
            bad_tag.verify_all(true, &public, &key(7), "s"),
            Err(FrameError::BadTag)
        );
        bad_tag
            .verify_all(false, &public, &key(7), "s")
            .expect("an unchecked tag is not looked at");
        let mut altered = sample();
        altered.payload = Bytes::from_static(b"cluster byteS");
        altered.retag(&key(7));
        for tag_too in [true, false] {
            assert_eq!(
                altered.verify_all(tag_too, &public, &key(7), "s"),
                Err(FrameError::BadSignature)
            );
        }
        assert_eq!(
            c.verify_all(false, &public, &key(7), "t"),
            Err(FrameError::BadSignature)
        );
    }

    #[test]
    fn a_signature_binds_the_stream_the_broadcast_and_the_key() {
        let c = sample();
        let public = SigningKey::from_seed([5; 32]).verifying_key();
        let other = SigningKey::from_seed([6; 32]).verifying_key();
        assert_eq!(
            c.verify_signature(&public, &key(7), "t"),
            Err(FrameError::BadSignature),
            "another stream"
        );
        assert_eq!(
            c.verify_signature(&public, &key(8), "s"),
            Err(FrameError::BadSignature),
            "another broadcast of the same name"
        );
        assert_eq!(
            c.verify_signature(&other, &key(7), "s"),
            Err(FrameError::BadSignature),
            "another broadcaster"
        );
    }

    #[test]
    fn verifying_keys_parse_and_refuse_what_is_not_a_key() {
        let public = SigningKey::from_seed([5; 32]).verifying_key();
        assert_eq!(VerifyingKey::from_base64(&public.to_base64()), Ok(public));
        assert!(matches!(
            VerifyingKey::from_base64("!!"),
            Err(FrameError::BadSigningKey(_))
        ));
        assert!(matches!(
            VerifyingKey::from_base64(&StreamKey::new([1; 31 + 1]).to_base64()[..40]),
            Err(FrameError::BadSigningKey(_))
        ));
        // The identity point is a valid encoding but of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerifyingKey::from_bytes(&identity),
            Err(FrameError::BadSigningKey("a weak (small-order) key"))
        );
        let s = SigningKey::from_seed([5; 32]);
        assert_eq!(SigningKey::from_seed(s.seed()).verifying_key(), public);
        assert!(!format!("{s:?}").contains(&format!("{:?}", s.seed())));
    }

    #[test]
    fn decode_rejects_bad_lengths() {
        let enc = sample().encode();
        assert!(matches!(
            Chunk::decode(enc.slice(..120)),
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
        let c = signer("s", 1).sign(ChunkSeq(0), FLAG_INIT | FLAG_END, 0, 0, Bytes::new());
        assert!(c.is_init() && c.is_end() && !c.is_keyframe());
    }
}
