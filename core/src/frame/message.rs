//! Data-channel messages: FRAGMENT, HELLO and KEEPALIVE (layouts in the parent module's docs), the fragmenter,
//! and the reassembler.
//!
//! The channel is reliable and ordered, so a parent sends one chunk's fragments back to back and
//! the reassembler holds at most one chunk in progress. Its memory is bounded by
//! [`MAX_CHUNK_LEN`]: it never believes a `total_len` above that limit. After any error the
//! in-progress chunk is dropped; the shell is expected to close the edge, since an ordered channel
//! that delivered a bad fragment cannot be trusted to resynchronise.

use super::{be_u16, be_u32, be_u64, Chunk, FrameError, MAX_CHUNK_LEN};
use crate::ids::ChunkSeq;
use bytes::{BufMut, Bytes, BytesMut};

/// Protocol version carried in every message's first byte.
pub(super) const VERSION: u8 = 3;
/// Message type of a FRAGMENT.
pub(super) const TYPE_FRAGMENT: u8 = 1;
/// Message type of a HELLO.
pub(super) const TYPE_HELLO: u8 = 2;
/// Message type of an ABORT.
pub(super) const TYPE_ABORT: u8 = 4;
/// Bytes before a FRAGMENT's data.
pub const FRAGMENT_HEADER_LEN: usize = 18;
/// Exact length of a HELLO.
pub(super) const HELLO_LEN: usize = 11;
/// Exact length of an ABORT.
pub(super) const ABORT_LEN: usize = 10;
/// Message type of a KEEPALIVE.
pub(super) const TYPE_KEEPALIVE: u8 = 3;
/// Exact length of a KEEPALIVE.
pub(super) const KEEPALIVE_LEN: usize = 2;

/// One piece of an encoded chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Sequence number of the chunk this piece belongs to.
    pub seq: ChunkSeq,
    /// Position of this piece, from 0.
    pub index: u16,
    /// Number of pieces of the chunk.
    pub count: u16,
    /// Length of the whole encoded chunk.
    pub total_len: u32,
    /// This piece's bytes.
    pub bytes: Bytes,
}

impl Fragment {
    /// The first fragment's `flags` and `timestamp_ms`, read from the chunk header it starts
    /// with, so a relay can pass the chunk on before it is whole. Unverified until the chunk is;
    /// `None` for a later fragment or one too short to hold them.
    pub fn chunk_head(&self) -> Option<(u8, u64)> {
        if self.index != 0 || self.bytes.len() < 17 {
            return None;
        }
        Some((self.bytes[8], be_u64(&self.bytes[9..17])))
    }
}

/// A data-channel message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A piece of an encoded chunk (parent to child).
    Fragment(Fragment),
    /// The first message a child sends on a new edge.
    Hello {
        /// The last chunk the child holds, or `None` for a new viewer.
        last: Option<ChunkSeq>,
    },
    /// The parent will send no more of chunk `seq`, whose first fragments it passed on before
    /// the chunk was whole (it failed verification, or the parent lost its own parent mid-chunk).
    Abort {
        /// The chunk to drop.
        seq: ChunkSeq,
    },
    /// "I am alive": sent both ways on an edge whose HELLO was said, so silence means failure.
    Keepalive,
}

impl Message {
    /// Serialises the message.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Fragment(f) => {
                let mut out = BytesMut::with_capacity(FRAGMENT_HEADER_LEN + f.bytes.len());
                put_fragment_header(&mut out, f.seq, f.index, f.count, f.total_len);
                out.put_slice(&f.bytes);
                out.freeze()
            }
            Self::Hello { last } => {
                let mut out = BytesMut::with_capacity(HELLO_LEN);
                out.put_u8(VERSION);
                out.put_u8(TYPE_HELLO);
                out.put_u8(u8::from(last.is_some()));
                out.put_u64(last.map_or(0, |s| s.0));
                out.freeze()
            }
            Self::Abort { seq } => {
                let mut out = BytesMut::with_capacity(ABORT_LEN);
                out.put_u8(VERSION);
                out.put_u8(TYPE_ABORT);
                out.put_u64(seq.0);
                out.freeze()
            }
            Self::Keepalive => Bytes::from_static(&[VERSION, TYPE_KEEPALIVE]),
        }
    }

    /// Parses a message; a fragment's data shares `bytes`' memory.
    pub fn decode(bytes: Bytes) -> Result<Self, FrameError> {
        if bytes.len() < 2 {
            return Err(FrameError::Truncated {
                what: "message",
                need: 2,
                got: bytes.len(),
            });
        }
        if bytes[0] != VERSION {
            return Err(FrameError::UnsupportedVersion(bytes[0]));
        }
        match bytes[1] {
            TYPE_FRAGMENT => decode_fragment(bytes),
            TYPE_HELLO => decode_hello(&bytes),
            TYPE_ABORT if bytes.len() == ABORT_LEN => Ok(Self::Abort {
                seq: ChunkSeq(be_u64(&bytes[2..10])),
            }),
            TYPE_ABORT => Err(FrameError::Truncated {
                what: "ABORT",
                need: ABORT_LEN,
                got: bytes.len(),
            }),
            TYPE_KEEPALIVE if bytes.len() == KEEPALIVE_LEN => Ok(Self::Keepalive),
            TYPE_KEEPALIVE => Err(FrameError::BadKeepalive),
            other => Err(FrameError::UnknownMessageType(other)),
        }
    }
}

fn decode_fragment(bytes: Bytes) -> Result<Message, FrameError> {
    if bytes.len() < FRAGMENT_HEADER_LEN {
        return Err(FrameError::Truncated {
            what: "FRAGMENT",
            need: FRAGMENT_HEADER_LEN,
            got: bytes.len(),
        });
    }
    Ok(Message::Fragment(Fragment {
        seq: ChunkSeq(be_u64(&bytes[2..10])),
        index: be_u16(&bytes[10..12]),
        count: be_u16(&bytes[12..14]),
        total_len: be_u32(&bytes[14..18]),
        bytes: bytes.slice(FRAGMENT_HEADER_LEN..),
    }))
}

fn decode_hello(bytes: &[u8]) -> Result<Message, FrameError> {
    if bytes.len() != HELLO_LEN {
        return Err(FrameError::BadHello("length is not 11 bytes"));
    }
    let seq = be_u64(&bytes[3..11]);
    match bytes[2] {
        0 if seq == 0 => Ok(Message::Hello { last: None }),
        0 => Err(FrameError::BadHello(
            "last_seq must be 0 when has_last is 0",
        )),
        1 => Ok(Message::Hello {
            last: Some(ChunkSeq(seq)),
        }),
        _ => Err(FrameError::BadHello("has_last is neither 0 nor 1")),
    }
}

/// Cuts `chunk`'s encoding into FRAGMENT messages of at most `max_message` bytes each
/// (normally [`super::MAX_MESSAGE`]).
pub fn fragment(chunk: &Chunk, max_message: usize) -> Result<Vec<Bytes>, FrameError> {
    let room = max_message
        .checked_sub(FRAGMENT_HEADER_LEN)
        .filter(|r| *r > 0)
        .ok_or(FrameError::MessageLimitTooSmall(max_message))?;
    if chunk.encoded_len() > MAX_CHUNK_LEN {
        return Err(FrameError::ChunkTooLarge {
            len: chunk.encoded_len(),
            max: MAX_CHUNK_LEN,
        });
    }
    // Each message is written straight from the chunk's parts: the chunk's encoding is never
    // built whole, so a relay copies each payload byte once per chunk, not twice.
    let prefix = chunk.prefix();
    let len = chunk.encoded_len();
    let pieces = len.div_ceil(room);
    let count = u16::try_from(pieces).map_err(|_| FrameError::TooManyFragments(pieces))?;
    // MAX_CHUNK_LEN (16 MiB) fits in u32, checked above.
    let total_len = len as u32;
    let messages = (0..count)
        .map(|index| {
            let start = usize::from(index) * room;
            let end = (start + room).min(len);
            let mut out = BytesMut::with_capacity(FRAGMENT_HEADER_LEN + end - start);
            put_fragment_header(&mut out, chunk.seq, index, count, total_len);
            let p = prefix.len();
            if start < p {
                out.put_slice(&prefix[start..end.min(p)]);
            }
            if end > p {
                out.put_slice(&chunk.payload[start.max(p) - p..end - p]);
            }
            out.freeze()
        })
        .collect();
    Ok(messages)
}

fn put_fragment_header(out: &mut BytesMut, seq: ChunkSeq, index: u16, count: u16, total_len: u32) {
    out.put_u8(VERSION);
    out.put_u8(TYPE_FRAGMENT);
    out.put_u64(seq.0);
    out.put_u16(index);
    out.put_u16(count);
    out.put_u32(total_len);
}

/// The chunk being reassembled.
#[derive(Debug)]
struct InProgress {
    seq: ChunkSeq,
    count: u16,
    total_len: usize,
    next_index: u16,
    buf: BytesMut,
}

/// Rebuilds chunks from in-order fragments; holds at most one chunk in progress.
#[derive(Debug, Default)]
pub struct Reassembler {
    current: Option<InProgress>,
}

impl Reassembler {
    /// An idle reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequence number of the chunk in progress, if any.
    pub fn in_progress(&self) -> Option<ChunkSeq> {
        self.current.as_ref().map(|c| c.seq)
    }

    /// The parent's ABORT: drops chunk `seq` if it is the one in progress; true if it was. An
    /// ABORT for another chunk changes nothing (the parent sends one only after a fragment of
    /// that chunk, so it can only be late or redundant).
    pub fn abort(&mut self, seq: ChunkSeq) -> bool {
        let matches = self.in_progress() == Some(seq);
        if matches {
            self.current = None;
        }
        matches
    }

    /// Takes the next fragment; returns the decoded chunk (tag not yet verified) when its last
    /// fragment arrives. On error the chunk in progress is dropped.
    pub fn handle_fragment(&mut self, frag: Fragment) -> Result<Option<Chunk>, FrameError> {
        let result = self.accept(frag);
        if result.is_err() {
            self.current = None;
        }
        result
    }

    fn accept(&mut self, frag: Fragment) -> Result<Option<Chunk>, FrameError> {
        check_header(&frag)?;
        let mut cur = match self.current.take() {
            None => start(&frag)?,
            Some(cur) => continue_with(cur, &frag)?,
        };
        let received = cur.buf.len() + frag.bytes.len();
        let last = frag.index + 1 == frag.count;
        if received > cur.total_len || (last && received != cur.total_len) {
            return Err(FrameError::LengthMismatch {
                total_len: cur.total_len,
                received,
            });
        }
        cur.buf.extend_from_slice(&frag.bytes);
        if !last {
            cur.next_index = frag.index + 1;
            self.current = Some(cur);
            return Ok(None);
        }
        let chunk = Chunk::decode(cur.buf.freeze())?;
        // The fragments' seq is what the receiver acts on before the chunk is whole; a chunk that
        // says otherwise is malformed framing, not a chunk to keep under either number.
        if chunk.seq != cur.seq {
            return Err(FrameError::ChunkSeqMismatch {
                fragments: cur.seq.0,
                chunk: chunk.seq.0,
            });
        }
        Ok(Some(chunk))
    }
}

/// Checks the parts of a fragment header that do not depend on earlier fragments.
fn check_header(frag: &Fragment) -> Result<(), FrameError> {
    if frag.count == 0 {
        return Err(FrameError::ZeroFragmentCount);
    }
    if frag.index >= frag.count {
        return Err(FrameError::IndexOutOfRange {
            index: frag.index,
            count: frag.count,
        });
    }
    let total = frag.total_len as usize;
    if total > MAX_CHUNK_LEN {
        return Err(FrameError::ChunkTooLarge {
            len: total,
            max: MAX_CHUNK_LEN,
        });
    }
    Ok(())
}

fn start(frag: &Fragment) -> Result<InProgress, FrameError> {
    if frag.index != 0 {
        return Err(FrameError::OutOfOrder {
            expected: 0,
            got: frag.index,
        });
    }
    let total_len = frag.total_len as usize;
    // Reserve what the sender announced, but never more than it could have sent: a lying
    // `total_len` on a single small fragment should not make us allocate 16 MiB.
    let plausible = frag.bytes.len().saturating_mul(usize::from(frag.count));
    Ok(InProgress {
        seq: frag.seq,
        count: frag.count,
        total_len,
        next_index: 0,
        buf: BytesMut::with_capacity(total_len.min(plausible)),
    })
}

fn continue_with(cur: InProgress, frag: &Fragment) -> Result<InProgress, FrameError> {
    if frag.seq != cur.seq {
        return Err(FrameError::SeqMismatch {
            expected: cur.seq.0,
            got: frag.seq.0,
        });
    }
    if frag.count != cur.count || frag.total_len as usize != cur.total_len {
        return Err(FrameError::InconsistentFragment);
    }
    if frag.index != cur.next_index {
        return Err(FrameError::OutOfOrder {
            expected: cur.next_index,
            got: frag.index,
        });
    }
    Ok(cur)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::frame::{ChunkSigner, SigningKey, StreamKey, MAX_MESSAGE};

    fn chunk(len: usize) -> Chunk {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let signer = ChunkSigner::new("s", StreamKey::new([9; 32]), SigningKey::from_seed([5; 32]));
        signer.sign(ChunkSeq(5), 0, 10, 20, payload.into())
    }

    fn frag(index: u16, count: u16, total_len: u32, bytes: &'static [u8]) -> Fragment {
        Fragment {
            seq: ChunkSeq(1),
            index,
            count,
            total_len,
            bytes: Bytes::from_static(bytes),
        }
    }

    fn reassemble(msgs: Vec<Bytes>) -> Chunk {
        let mut r = Reassembler::new();
        let mut out = None;
        for m in msgs {
            let Message::Fragment(f) = Message::decode(m).unwrap() else {
                panic!("not a fragment")
            };
            assert!(out.is_none(), "chunk completed before its last fragment");
            out = r.handle_fragment(f).unwrap();
        }
        out.expect("last fragment completes the chunk")
    }

    #[test]
    fn hello_layout() {
        let m = Message::Hello {
            last: Some(ChunkSeq(258)),
        };
        assert_eq!(&m.encode()[..], &[3, 2, 1, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(Message::decode(m.encode()).unwrap(), m);
        let new = Message::Hello { last: None };
        assert_eq!(&new.encode()[..], &[3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn the_first_fragment_tells_flags_and_timestamp() {
        let c = chunk(2 * MAX_MESSAGE + 7_000);
        let msgs = fragment(&c, MAX_MESSAGE).unwrap();
        let head = |m: &Bytes| match Message::decode(m.clone()).unwrap() {
            Message::Fragment(f) => f.chunk_head(),
            _ => panic!("not a fragment"),
        };
        assert_eq!(head(&msgs[0]), Some((0, 10)));
        assert_eq!(head(&msgs[1]), None);
        assert_eq!(frag(0, 1, 5, b"short").chunk_head(), None);
    }

    #[test]
    fn abort_layout_and_effect() {
        let m = Message::Abort { seq: ChunkSeq(258) };
        assert_eq!(&m.encode()[..], &[3, 4, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(Message::decode(m.encode()).unwrap(), m);
        assert!(Message::decode(m.encode().slice(..9)).is_err());
        let mut r = Reassembler::new();
        r.handle_fragment(frag(0, 3, 6, b"ab")).unwrap();
        assert!(
            !r.abort(ChunkSeq(2)),
            "another chunk's ABORT changes nothing"
        );
        assert_eq!(r.in_progress(), Some(ChunkSeq(1)));
        assert!(r.abort(ChunkSeq(1)));
        assert_eq!(r.in_progress(), None);
        let c = chunk(2 * MAX_MESSAGE + 7_000);
        assert_eq!(
            reassemble(fragment(&c, MAX_MESSAGE).unwrap()),
            c,
            "starts afresh"
        );
    }

    #[test]
    fn fragments_fill_the_limit_and_reassemble() {
        let c = chunk(2 * MAX_MESSAGE + 7_000);
        let msgs = fragment(&c, MAX_MESSAGE).unwrap();
        assert_eq!(msgs.len(), 3);
        assert!(msgs[..2].iter().all(|m| m.len() == MAX_MESSAGE));
        assert_eq!(reassemble(msgs), c);
    }

    #[test]
    fn exactly_one_full_message() {
        let c = chunk(MAX_MESSAGE - FRAGMENT_HEADER_LEN - super::super::PREFIX_LEN);
        let msgs = fragment(&c, MAX_MESSAGE).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].len(), MAX_MESSAGE);
        assert_eq!(reassemble(msgs), c);
    }

    #[test]
    fn tiny_limits_are_rejected() {
        let c = chunk(10);
        assert_eq!(
            fragment(&c, FRAGMENT_HEADER_LEN),
            Err(FrameError::MessageLimitTooSmall(FRAGMENT_HEADER_LEN))
        );
        assert_eq!(
            fragment(&chunk(70_000), FRAGMENT_HEADER_LEN + 1),
            Err(FrameError::TooManyFragments(70_121))
        );
    }

    #[test]
    fn reassembler_rejects_protocol_violations() {
        let mut r = Reassembler::new();
        type Check = fn(&FrameError) -> bool;
        let cases: [(Fragment, Check); 4] = [
            (frag(0, 0, 5, b"x"), |e| *e == FrameError::ZeroFragmentCount),
            (frag(2, 2, 5, b"x"), |e| {
                matches!(e, FrameError::IndexOutOfRange { .. })
            }),
            (frag(1, 2, 5, b"x"), |e| {
                matches!(e, FrameError::OutOfOrder { .. })
            }),
            (frag(0, 1, 1 << 30, b"x"), |e| {
                matches!(e, FrameError::ChunkTooLarge { .. })
            }),
        ];
        for (f, ok) in cases {
            let e = r.handle_fragment(f).unwrap_err();
            assert!(ok(&e), "{e}");
        }
    }

    #[test]
    fn reassembler_rejects_mid_chunk_changes_and_bad_totals() {
        let mut r = Reassembler::new();
        r.handle_fragment(frag(0, 3, 6, b"ab")).unwrap();
        let mut other = frag(1, 3, 6, b"cd");
        other.seq = ChunkSeq(2);
        assert!(matches!(
            r.handle_fragment(other),
            Err(FrameError::SeqMismatch { .. })
        ));
        assert_eq!(r.in_progress(), None, "errors drop the chunk in progress");
        r.handle_fragment(frag(0, 3, 6, b"ab")).unwrap();
        assert_eq!(
            r.handle_fragment(frag(1, 4, 6, b"cd")),
            Err(FrameError::InconsistentFragment)
        );
        r.handle_fragment(frag(0, 2, 6, b"ab")).unwrap();
        assert!(matches!(
            r.handle_fragment(frag(1, 2, 6, b"cd")),
            Err(FrameError::LengthMismatch { .. })
        ));
        assert!(matches!(
            r.handle_fragment(frag(0, 1, 2, b"abc")),
            Err(FrameError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn garbage_messages_are_rejected() {
        for bad in [
            &[][..],
            &[1],
            &[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], // a format-1 HELLO
            &[2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], // a format-2 HELLO
            &[2, 3],                            // a format-2 KEEPALIVE
            &[4, 1],
            &[3, 9],
            &[3, 1, 0],
            &[3, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(
                Message::decode(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
