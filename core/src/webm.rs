//! Incremental WebM chunker: cuts a WebM byte stream (a file or a live pipe) into one init
//! segment and self-contained media chunks, without IO, clocks or seeking.
//!
//! Feed bytes with [`Chunker::handle_input`] in pieces of any size, call [`Chunker::handle_eof`]
//! at the end, and drain [`Chunker::poll_chunk`] after every call. Output:
//!
//! * first, one [`ChunkKind::Init`] chunk: the EBML header, a Segment header rewritten to the
//!   unknown size (`01 FF FF FF FF FF FF FF`, a live stream has no end), then Info and Tracks
//!   exactly as received. SeekHead, Cues, Tags, Chapters, Void and the like are dropped.
//! * then [`ChunkKind::Media`] chunks, each one Cluster with a known 8-byte size holding a
//!   Timecode (always 8 bytes wide) and the source cluster's SimpleBlock / BlockGroup elements
//!   unchanged (Position, PrevSize, Void... are dropped). A source cluster is split into several
//!   chunks at video keyframes, after `max_chunk_ms`, and before `max_chunk_len`
//!   (see `cluster.rs`); every piece keeps the source cluster's Timecode, so block relative
//!   timecodes stay valid.
//!
//! `init + any keyframe-first chunk + the chunks after it` is a valid WebM stream for Chrome MSE
//! and for ffmpeg.
//!
//! Invariants: memory is bounded (one element of at most `max_element_len` bytes is buffered, plus
//! the blocks of the piece in progress, itself bounded by `max_chunk_len`; skipped elements are
//! never buffered); malformed or truncated input returns a [`WebmError`], never a panic, and the
//! chunker then refuses further input; media timestamps never decrease.
//!
//! Timing: a chunk's `timestamp_ms` is its first block's time plus
//! [`ChunkerConfig::timestamp_offset_ms`]. Its `duration_ms` runs to the next chunk's first block
//! when the cut is inside a source cluster; a chunk that ends a source cluster is emitted at once
//! (waiting for the next cluster would add a cluster of latency on a live pipe), so its end is
//! estimated as its last video (timing-track) block plus one frame (DefaultDuration, else the
//! last observed frame spacing).

mod cluster;
mod ebml;
mod head;
mod media;

use bytes::{Buf, Bytes, BytesMut};
use cluster::Splitter;
use ebml::{read_header, Header};
use head::StreamInfo;
use std::collections::VecDeque;

/// Tuning of a [`Chunker`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Largest single element buffered whole (a block, Info, Tracks): larger is an error.
    pub max_element_len: usize,
    /// Longest media span of one chunk. The default, 1000 ms, passes one-second GOP clusters
    /// (the common encoder setting) through whole, while bounding the latency each relay hop
    /// adds (a chunk is forwarded only once complete) when clusters are long.
    pub max_chunk_ms: u32,
    /// Largest chunk in bytes; the default 8 MiB stays well below the framing's 16 MiB limit.
    pub max_chunk_len: usize,
    /// Added to every timestamp and cluster Timecode; a looping broadcaster passes the previous
    /// pass's [`Chunker::end_ms`] so that stream time keeps increasing.
    pub timestamp_offset_ms: i64,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            max_element_len: 32 * 1024 * 1024,
            max_chunk_ms: 1000,
            max_chunk_len: 8 * 1024 * 1024,
            timestamp_offset_ms: 0,
        }
    }
}

/// What a [`MediaChunk`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// EBML header, Segment header (unknown size), Info, Tracks.
    Init,
    /// One Cluster.
    Media,
}

/// One output unit of the chunker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaChunk {
    /// Init segment or cluster.
    pub kind: ChunkKind,
    /// The chunk's first video block is a keyframe (always true when there is no video track).
    pub keyframe: bool,
    /// Media time of the first block in ms, offset applied; 0 for the init segment.
    pub timestamp_ms: u64,
    /// Media time until the next chunk's start (estimated at a source cluster's end).
    pub duration_ms: u32,
    /// The WebM bytes.
    pub bytes: Bytes,
}

/// Why the input is not a WebM stream the chunker can cut.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebmError {
    /// The input does not start like a WebM file.
    #[error("not a WebM file: {0}")]
    NotWebm(&'static str),
    /// The EBML DocType is neither "webm" nor "matroska".
    #[error("unsupported EBML DocType {0:?}")]
    UnsupportedDocType(String),
    /// The element after the EBML header is not a Segment.
    #[error("expected a Segment after the EBML header")]
    ExpectedSegment,
    /// Bytes that cannot be an EBML element ID.
    #[error("invalid EBML element ID")]
    InvalidId,
    /// Bytes that cannot be an EBML variable-length integer.
    #[error("invalid EBML variable-length integer")]
    InvalidVint,
    /// An element too large to buffer.
    #[error("{element} too large: {size} bytes, limit {max}")]
    ElementTooLarge {
        /// Element name.
        element: &'static str,
        /// Its declared size.
        size: u64,
        /// `max_element_len`.
        max: usize,
    },
    /// An unknown size on an element other than Segment or Cluster.
    #[error("{0} has an unknown size (only Segment and Cluster may)")]
    UnknownSize(&'static str),
    /// A child that extends past its parent's end.
    #[error("{0} overruns its parent element")]
    Overrun(&'static str),
    /// A Cluster arrived before a required head element.
    #[error("no {0} before the first Cluster")]
    Missing(&'static str),
    /// A block before its cluster's Timecode.
    #[error("block before its Cluster's Timecode")]
    BlockBeforeTimecode,
    /// Structurally invalid content.
    #[error("malformed WebM: {0}")]
    Malformed(&'static str),
    /// A timestamp that does not fit after applying the offset.
    #[error("timestamp out of range (negative or overflowing after the offset)")]
    TimestampOutOfRange,
    /// Valid WebM the chunker does not handle.
    #[error("unsupported WebM: {0}")]
    Unsupported(&'static str),
    /// The input ended inside an element; every complete chunk was emitted before.
    #[error("truncated {0} at EOF")]
    Truncated(&'static str),
    /// Input after [`Chunker::handle_eof`].
    #[error("input after end of stream")]
    AfterEof,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    EbmlHeader,
    SegmentHeader,
    SegmentBody,
    Cluster,
    AfterSegment,
    Ended,
    Failed(WebmError),
}

/// The cluster being read.
#[derive(Debug)]
struct ClusterCtx {
    /// Absolute end offset: the cluster's own, or the Segment's for an unknown-size cluster.
    end: Option<u64>,
    unknown_size: bool,
    timecode: Option<u64>,
    splitter: Splitter,
}

/// The head elements kept for the init segment.
#[derive(Debug, Default)]
struct HeadParts {
    ebml: Bytes,
    info: Option<Bytes>,
    tracks: Option<Bytes>,
}

/// The incremental WebM chunker (sans-IO).
#[derive(Debug)]
pub struct Chunker {
    config: ChunkerConfig,
    buf: BytesMut,
    /// Absolute stream offset of `buf[0]`.
    pos: u64,
    /// Bytes of a skipped element still to discard.
    skip: u64,
    state: State,
    received: bool,
    segment_end: Option<u64>,
    head: HeadParts,
    stream: Option<StreamInfo>,
    cluster: Option<ClusterCtx>,
    out: VecDeque<MediaChunk>,
    last_timing_ts: Option<i64>,
    frame_ms: Option<i64>,
    last_out_ts: Option<u64>,
    end_ms: Option<u64>,
}

impl Chunker {
    /// A chunker waiting for the EBML header.
    pub fn new(config: ChunkerConfig) -> Self {
        Self {
            config,
            buf: BytesMut::new(),
            pos: 0,
            skip: 0,
            state: State::EbmlHeader,
            received: false,
            segment_end: None,
            head: HeadParts::default(),
            stream: None,
            cluster: None,
            out: VecDeque::new(),
            last_timing_ts: None,
            frame_ms: None,
            last_out_ts: None,
            end_ms: None,
        }
    }

    /// Takes the next bytes of the stream; drain [`Chunker::poll_chunk`] afterwards.
    pub fn handle_input(&mut self, mut data: &[u8]) -> Result<(), WebmError> {
        self.usable()?;
        self.received |= !data.is_empty();
        if self.buf.is_empty() && self.skip > 0 {
            // Skipped elements (Cues, Tags...) never enter the buffer.
            let n = data
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            self.skip -= n as u64;
            self.pos += n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
        let result = self.run();
        self.fail_on_error(result)
    }

    /// Ends the stream: flushes the last chunk, or reports truncation after emitting every
    /// complete chunk.
    pub fn handle_eof(&mut self) -> Result<(), WebmError> {
        self.usable()?;
        let result = self.eof();
        if result.is_ok() {
            self.state = State::Ended;
        }
        self.fail_on_error(result)
    }

    /// The next output chunk, in stream order.
    pub fn poll_chunk(&mut self) -> Option<MediaChunk> {
        self.out.pop_front()
    }

    /// End time (ms, offset applied) of the last media chunk emitted: the offset for a next
    /// loop pass.
    pub fn end_ms(&self) -> Option<u64> {
        self.end_ms
    }

    fn usable(&self) -> Result<(), WebmError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Ended => Err(WebmError::AfterEof),
            _ => Ok(()),
        }
    }

    fn fail_on_error(&mut self, result: Result<(), WebmError>) -> Result<(), WebmError> {
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    /// Parses as far as the buffered bytes allow.
    fn run(&mut self) -> Result<(), WebmError> {
        loop {
            let skip_now = self.skip.min(self.buf.len() as u64);
            self.advance(skip_now);
            self.skip -= skip_now;
            if self.skip > 0 {
                return Ok(());
            }
            let progressed = match self.state {
                State::EbmlHeader => self.step_ebml_header()?,
                State::SegmentHeader => self.step_segment_header()?,
                State::SegmentBody => self.step_segment_body()?,
                State::Cluster => self.step_cluster()?,
                State::AfterSegment => {
                    // Whatever follows the Segment (trailing padding) has no media for us.
                    self.advance(self.buf.len() as u64);
                    false
                }
                State::Ended | State::Failed(_) => false,
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn advance(&mut self, n: u64) {
        // `n` never exceeds the buffer: callers pass lengths they checked against it.
        self.buf.advance(n as usize);
        self.pos += n;
    }

    /// Splits off a whole element of known size, or `None` until all of it is buffered.
    fn take_element(&mut self, h: &Header) -> Result<Option<Bytes>, WebmError> {
        let element = ebml::name(h.id);
        let total = h.total().ok_or(WebmError::UnknownSize(element))?;
        if total > self.config.max_element_len as u64 {
            return Err(WebmError::ElementTooLarge {
                element,
                size: total,
                max: self.config.max_element_len,
            });
        }
        if (self.buf.len() as u64) < total {
            return Ok(None);
        }
        self.pos += total;
        Ok(Some(self.buf.split_to(total as usize).freeze()))
    }

    fn skip_element(&mut self, h: &Header) -> Result<bool, WebmError> {
        let name = ebml::name(h.id);
        self.skip = h.total().ok_or(WebmError::UnknownSize(name))?;
        Ok(true)
    }

    /// Errors if a child of known size extends past its parent's end.
    fn check_fits(&self, h: &Header, parent_end: Option<u64>) -> Result<(), WebmError> {
        match (parent_end, h.total()) {
            (Some(end), Some(total)) if self.pos.saturating_add(total) > end => {
                Err(WebmError::Overrun(ebml::name(h.id)))
            }
            _ => Ok(()),
        }
    }

    fn step_ebml_header(&mut self) -> Result<bool, WebmError> {
        let magic = ebml::ID_EBML.to_be_bytes();
        let n = self.buf.len().min(4);
        if self.buf[..n] != magic[..n] {
            return Err(WebmError::NotWebm("EBML header missing"));
        }
        let Some(h) = read_header(&self.buf)? else {
            return Ok(false);
        };
        let Some(bytes) = self.take_element(&h)? else {
            return Ok(false);
        };
        head::check_doc_type(&bytes[h.len..])?;
        self.head.ebml = bytes;
        self.state = State::SegmentHeader;
        Ok(true)
    }

    fn step_segment_header(&mut self) -> Result<bool, WebmError> {
        let Some(h) = read_header(&self.buf)? else {
            return Ok(false);
        };
        if h.id != ebml::ID_SEGMENT {
            return Err(WebmError::ExpectedSegment);
        }
        self.advance(h.len as u64);
        self.segment_end = h.size.map(|s| self.pos.saturating_add(s));
        self.state = State::SegmentBody;
        Ok(true)
    }

    fn step_segment_body(&mut self) -> Result<bool, WebmError> {
        if self.segment_end.is_some_and(|end| self.pos >= end) {
            self.emit_init_once()?;
            self.state = State::AfterSegment;
            return Ok(true);
        }
        let Some(h) = read_header(&self.buf)? else {
            return Ok(false);
        };
        self.check_fits(&h, self.segment_end)?;
        match h.id {
            ebml::ID_CLUSTER => self.open_cluster(&h),
            ebml::ID_INFO => self.take_head_element(&h),
            ebml::ID_TRACKS => self.take_head_element(&h),
            ebml::ID_EBML | ebml::ID_SEGMENT => Err(WebmError::Unsupported(
                "a second EBML header or Segment (chained streams)",
            )),
            _ => self.skip_element(&h),
        }
    }

    fn take_head_element(&mut self, h: &Header) -> Result<bool, WebmError> {
        let Some(bytes) = self.take_element(h)? else {
            return Ok(false);
        };
        let body = &bytes[h.len..];
        if h.id == ebml::ID_INFO {
            head::parse_info(body)?;
            self.head.info = Some(bytes);
        } else {
            // Validated now so a bad Tracks fails where it is, not at the first Cluster.
            head::parse_tracks(body, head::DEFAULT_TIMECODE_SCALE)?;
            self.head.tracks = Some(bytes);
        }
        Ok(true)
    }

    fn emit_init_once(&mut self) -> Result<(), WebmError> {
        if self.stream.is_some() {
            return Ok(());
        }
        let info = self.head.info.as_ref().ok_or(WebmError::Missing("Info"))?;
        let tracks = self
            .head
            .tracks
            .as_ref()
            .ok_or(WebmError::Missing("Tracks"))?;
        let info_len = read_header(info)?.map_or(0, |h| h.len);
        let tracks_len = read_header(tracks)?.map_or(0, |h| h.len);
        let scale = head::parse_info(&info[info_len..])?;
        self.stream = Some(head::parse_tracks(&tracks[tracks_len..], scale)?);
        self.out.push_back(MediaChunk {
            kind: ChunkKind::Init,
            keyframe: false,
            timestamp_ms: 0,
            duration_ms: 0,
            bytes: head::init_segment(&self.head.ebml, info, tracks),
        });
        Ok(())
    }

    fn eof(&mut self) -> Result<(), WebmError> {
        let partial = self.skip > 0 || !self.buf.is_empty();
        match self.state {
            State::EbmlHeader if !self.received => Err(WebmError::NotWebm("empty input")),
            State::EbmlHeader => Err(WebmError::Truncated("EBML header")),
            State::SegmentHeader => Err(WebmError::Truncated("Segment header")),
            State::SegmentBody if partial => Err(WebmError::Truncated(self.partial_name())),
            State::SegmentBody => {
                self.emit_init_once()?;
                match self.segment_end {
                    Some(_) => Err(WebmError::Truncated("Segment")),
                    None => Ok(()),
                }
            }
            State::Cluster => {
                let complete = !partial && self.cluster.as_ref().is_some_and(|c| c.end.is_none());
                self.close_cluster()?;
                if complete {
                    Ok(())
                } else {
                    Err(WebmError::Truncated("Cluster"))
                }
            }
            State::AfterSegment | State::Ended | State::Failed(_) => Ok(()),
        }
    }

    fn partial_name(&self) -> &'static str {
        match read_header(&self.buf) {
            Ok(Some(h)) if self.skip == 0 => ebml::name(h.id),
            _ => "element",
        }
    }
}

#[cfg(test)]
mod test;
