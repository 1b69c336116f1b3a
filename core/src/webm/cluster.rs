//! Blocks and the splitter that groups one source cluster's blocks into output pieces.
//!
//! A piece is a run of consecutive blocks of one source cluster; the chunker re-serialises it as
//! a Cluster of its own with the source cluster's Timecode, so every block's relative timecode
//! stays valid. The splitter starts a new piece before:
//! * a video keyframe, when the current piece already holds a video block (so that a
//!   keyframe-first piece exists once per GOP even when the muxer cut clusters elsewhere; audio
//!   that precedes the keyframe stays with it);
//! * a block `max_chunk_ms` or more after the piece's first block (bounded latency: a relay
//!   forwards a chunk only once it is whole); in a stream with video only before a video block,
//!   so audio that trails a cluster's last frame stays with it;
//! * any block that would push the piece over `max_chunk_len` bytes (bounded chunk size).
//!
//! Invariant: pieces never mix clusters and never reorder blocks.

use super::ebml::{self, children, read_vint};
use super::head::StreamInfo;
use super::WebmError;
use bytes::{BufMut, Bytes, BytesMut};

/// SimpleBlock flag bit marking a keyframe.
const SIMPLE_BLOCK_KEYFRAME: u8 = 0x80;

/// One SimpleBlock or BlockGroup element, whole, with what the splitter needs to know about it.
#[derive(Clone, Debug)]
pub(super) struct Block {
    /// The element's bytes, ID and size included, copied to the output as-is.
    pub bytes: Bytes,
    /// Source media time in milliseconds (cluster timecode + relative timecode, scaled).
    pub ts_ms: i64,
    /// The block belongs to the video track.
    pub video: bool,
    /// The block is a keyframe.
    pub keyframe: bool,
    /// The block belongs to the timing track (used to estimate a piece's end).
    pub timing: bool,
}

/// Track number, relative timecode and flags of a Block or SimpleBlock body.
fn block_header(body: &[u8]) -> Result<(u64, i16, u8), WebmError> {
    let (track, len, _) = read_vint(body)?.ok_or(WebmError::Malformed("block header cut short"))?;
    let rest = body
        .get(len..len + 3)
        .ok_or(WebmError::Malformed("block header cut short"))?;
    Ok((track, i16::from_be_bytes([rest[0], rest[1]]), rest[2]))
}

/// Parses a whole SimpleBlock or BlockGroup element (`id`, header of `header_len` bytes).
pub(super) fn parse_block(
    id: u32,
    element: Bytes,
    header_len: usize,
    stream: &StreamInfo,
    cluster_tc: u64,
) -> Result<Block, WebmError> {
    let body = element.get(header_len..).ok_or(WebmError::Malformed(
        "block element shorter than its header",
    ))?;
    let (track, rel, keyframe) = if id == ebml::ID_SIMPLE_BLOCK {
        let (track, rel, flags) = block_header(body)?;
        (track, rel, flags & SIMPLE_BLOCK_KEYFRAME != 0)
    } else {
        block_group_header(body)?
    };
    let units = i128::from(cluster_tc) + i128::from(rel);
    // Both factors come from the input: a garbage scale must be an error, not an overflow.
    let ts_ms = units
        .checked_mul(i128::from(stream.timecode_scale))
        .and_then(|ns| i64::try_from(ns / 1_000_000).ok())
        .ok_or(WebmError::TimestampOutOfRange)?;
    Ok(Block {
        bytes: element,
        ts_ms,
        video: Some(track) == stream.video_track,
        keyframe,
        timing: Some(track) == stream.timing_track,
    })
}

/// A BlockGroup is a keyframe when it has no ReferenceBlock.
fn block_group_header(body: &[u8]) -> Result<(u64, i16, bool), WebmError> {
    let mut header = None;
    let mut referenced = false;
    for child in children(body) {
        let (id, value) = child?;
        match id {
            ebml::ID_BLOCK => header = Some(block_header(value)?),
            ebml::ID_REFERENCE_BLOCK => referenced = true,
            _ => {}
        }
    }
    let (track, rel, _) = header.ok_or(WebmError::Malformed("BlockGroup without a Block"))?;
    Ok((track, rel, !referenced))
}

/// Consecutive blocks of one cluster that will become one output cluster.
#[derive(Clone, Debug, Default)]
pub(super) struct Piece {
    blocks: Vec<Bytes>,
    len: usize,
    /// Source time of the first block.
    pub first_ts: i64,
    /// Latest source time of any block.
    pub max_ts: i64,
    /// Source time of the last timing-track block, if any.
    pub last_timing_ts: Option<i64>,
    /// The piece holds a video block.
    pub has_video: bool,
    /// The piece's first video block is a keyframe.
    pub keyframe: bool,
}

impl Piece {
    fn new(first_ts: i64) -> Self {
        Self {
            first_ts,
            max_ts: first_ts,
            ..Self::default()
        }
    }

    fn push(&mut self, block: Block) {
        if block.video && !self.has_video {
            self.has_video = true;
            self.keyframe = block.keyframe;
        }
        if block.timing {
            self.last_timing_ts = Some(block.ts_ms);
        }
        self.max_ts = self.max_ts.max(block.ts_ms);
        self.len += block.bytes.len();
        self.blocks.push(block.bytes);
    }

    /// The piece as a Cluster with an 8-byte size and an 8-byte-wide Timecode `timecode`.
    pub(super) fn serialize(&self, timecode: u64) -> Bytes {
        let body_len = 10 + self.len;
        let mut out = BytesMut::with_capacity(12 + body_len);
        out.put_u32(ebml::ID_CLUSTER);
        out.put_slice(&ebml::size8(body_len as u64));
        // Fixed width, so a later timecode rewrite never changes any size.
        out.put_u8(ebml::ID_TIMECODE as u8);
        out.put_u8(0x88);
        out.put_u64(timecode);
        for b in &self.blocks {
            out.put_slice(b);
        }
        out.freeze()
    }
}

/// Limits that make the splitter cut a piece.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Cut before a block this many ms after the piece's first block.
    pub max_chunk_ms: u32,
    /// Cut before a block that would make the piece larger than this.
    pub max_chunk_len: usize,
    /// The stream has a video track: time cuts happen only before video blocks.
    pub has_video: bool,
}

/// Groups the blocks of the current cluster into pieces.
#[derive(Debug)]
pub(super) struct Splitter {
    limits: Limits,
    piece: Option<Piece>,
}

impl Splitter {
    /// An empty splitter.
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            piece: None,
        }
    }

    /// Adds a block; returns the finished previous piece and the source time it ends at (the new
    /// block's time) when the block starts a new piece.
    pub(super) fn push(&mut self, block: Block) -> Option<(Piece, i64)> {
        let ts = block.ts_ms;
        let done = match &self.piece {
            Some(p) if self.cuts_before(p, &block) => self.piece.take().map(|p| (p, ts)),
            _ => None,
        };
        self.piece.get_or_insert_with(|| Piece::new(ts)).push(block);
        done
    }

    /// Ends the cluster: returns the piece in progress, if any.
    pub(super) fn finish(&mut self) -> Option<Piece> {
        self.piece.take()
    }

    fn cuts_before(&self, piece: &Piece, block: &Block) -> bool {
        let keyframe_cut = block.video && block.keyframe && piece.has_video;
        let time_cut = (block.video || !self.limits.has_video)
            && block.ts_ms.saturating_sub(piece.first_ts) >= i64::from(self.limits.max_chunk_ms);
        let size_cut = piece.len + block.bytes.len() > self.limits.max_chunk_len;
        keyframe_cut || time_cut || size_cut
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn block(ts_ms: i64, video: bool, keyframe: bool) -> Block {
        Block {
            bytes: Bytes::from(vec![0xA3, 0x84, 0x81, 0, 0, 0]),
            ts_ms,
            video,
            keyframe,
            timing: video,
        }
    }

    fn splitter(max_chunk_ms: u32) -> Splitter {
        Splitter::new(Limits {
            max_chunk_ms,
            max_chunk_len: 1 << 20,
            has_video: true,
        })
    }

    #[test]
    fn cuts_at_keyframes_keeping_leading_audio() {
        let mut s = splitter(10_000);
        assert!(s.push(block(0, false, true)).is_none());
        assert!(
            s.push(block(0, true, true)).is_none(),
            "audio stays with the keyframe"
        );
        assert!(s.push(block(33, true, false)).is_none());
        let (p, end) = s.push(block(66, true, true)).unwrap();
        assert!(p.keyframe && p.has_video);
        assert_eq!((p.first_ts, end, p.blocks.len()), (0, 66, 3));
        let rest = s.finish().unwrap();
        assert_eq!(rest.first_ts, 66);
        assert!(s.finish().is_none());
    }

    #[test]
    fn cuts_long_pieces_by_time() {
        let mut s = splitter(99);
        let cuts: Vec<i64> = (0..10)
            .filter_map(|i| s.push(block(i * 33, true, i == 0)))
            .map(|(_, end)| end)
            .collect();
        assert_eq!(cuts, vec![99, 198, 297]);
    }

    #[test]
    fn serialized_piece_is_a_sized_cluster() {
        let mut s = splitter(100);
        s.push(block(0, true, true));
        let bytes = s.finish().unwrap().serialize(7);
        assert_eq!(&bytes[..4], &[0x1F, 0x43, 0xB6, 0x75]);
        let h = ebml::read_header(&bytes).unwrap().unwrap();
        assert_eq!(h.total(), Some(bytes.len() as u64));
        assert_eq!(&bytes[12..22], &[0xE7, 0x88, 0, 0, 0, 0, 0, 0, 0, 7]);
    }
}
