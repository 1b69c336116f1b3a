//! The Cluster level of the [`Chunker`]: reading a cluster's Timecode and blocks, handing the
//! blocks to the splitter, and turning finished pieces into [`MediaChunk`]s with output timing.
//!
//! Invariants: emitted timestamps never decrease; the offset is applied identically to
//! `timestamp_ms` and to the cluster Timecode written into the bytes, so what a player reads and
//! what the header says agree.

use super::cluster::{parse_block, Limits, Piece, Splitter};
use super::ebml::{self, read_header, Header};
use super::{head, ChunkKind, Chunker, ClusterCtx, MediaChunk, State, WebmError};

impl Chunker {
    pub(super) fn open_cluster(&mut self, h: &Header) -> Result<bool, WebmError> {
        self.emit_init_once()?;
        self.advance(h.len as u64);
        let limits = Limits {
            max_chunk_ms: self.config.max_chunk_ms,
            max_chunk_len: self.config.max_chunk_len,
            has_video: self
                .stream
                .as_ref()
                .is_some_and(|s| s.video_track.is_some()),
        };
        self.cluster = Some(ClusterCtx {
            end: h
                .size
                .map(|s| self.pos.saturating_add(s))
                .or(self.segment_end),
            unknown_size: h.size.is_none(),
            timecode: None,
            splitter: Splitter::new(limits),
        });
        self.state = State::Cluster;
        Ok(true)
    }

    pub(super) fn step_cluster(&mut self) -> Result<bool, WebmError> {
        let Some(ctx) = self.cluster.as_ref() else {
            self.state = State::SegmentBody;
            return Ok(true);
        };
        let (end, unknown_size) = (ctx.end, ctx.unknown_size);
        if end.is_some_and(|end| self.pos >= end) {
            return self.close_cluster();
        }
        let Some(h) = read_header(&self.buf)? else {
            return Ok(false);
        };
        if unknown_size && ebml::ends_unknown_cluster(h.id) {
            return self.close_cluster();
        }
        self.check_fits(&h, end)?;
        match h.id {
            ebml::ID_TIMECODE => self.take_timecode(&h),
            ebml::ID_SIMPLE_BLOCK | ebml::ID_BLOCK_GROUP => self.take_block(&h),
            _ => self.skip_element(&h),
        }
    }

    fn take_timecode(&mut self, h: &Header) -> Result<bool, WebmError> {
        let Some(bytes) = self.take_element(h)? else {
            return Ok(false);
        };
        let value = ebml::read_uint(&bytes[h.len..])?;
        if let Some(ctx) = self.cluster.as_mut() {
            ctx.timecode = Some(value);
        }
        Ok(true)
    }

    fn take_block(&mut self, h: &Header) -> Result<bool, WebmError> {
        let Some(bytes) = self.take_element(h)? else {
            return Ok(false);
        };
        let (Some(stream), Some(ctx)) = (self.stream.as_ref(), self.cluster.as_mut()) else {
            return Err(WebmError::Missing("Tracks"));
        };
        let tc = ctx.timecode.ok_or(WebmError::BlockBeforeTimecode)?;
        let block = parse_block(h.id, bytes, h.len, stream, tc)?;
        if block.timing {
            if let Some(last) = self.last_timing_ts.filter(|last| block.ts_ms > *last) {
                self.frame_ms = Some(block.ts_ms.saturating_sub(last));
            }
            self.last_timing_ts = Some(block.ts_ms);
        }
        if let Some((piece, next_ts)) = ctx.splitter.push(block) {
            self.emit_piece(&piece, tc, next_ts)?;
        }
        Ok(true)
    }

    /// Emits the cluster's last piece with an estimated end and returns to the Segment level.
    pub(super) fn close_cluster(&mut self) -> Result<bool, WebmError> {
        self.state = State::SegmentBody;
        let Some(mut ctx) = self.cluster.take() else {
            return Ok(true);
        };
        if let (Some(piece), Some(tc)) = (ctx.splitter.finish(), ctx.timecode) {
            let end = self.estimate_end(&piece);
            self.emit_piece(&piece, tc, end)?;
        }
        Ok(true)
    }

    /// Source time at which a piece that ends a cluster probably ends: one frame after its last
    /// timing-track block.
    fn estimate_end(&self, piece: &Piece) -> i64 {
        let declared = self
            .stream
            .as_ref()
            .and_then(|s| s.default_duration_ns)
            .map(|ns| i64::try_from(ns.saturating_add(500_000) / 1_000_000).unwrap_or(0));
        let frame = declared.or(self.frame_ms).unwrap_or(0);
        let last = piece.last_timing_ts.unwrap_or(piece.max_ts);
        last.saturating_add(frame).max(piece.max_ts)
    }

    fn emit_piece(&mut self, piece: &Piece, tc: u64, end_src: i64) -> Result<(), WebmError> {
        let first = self.out_ms(piece.first_ts)?;
        // Tracks interleave with small jitter; never let stream time go backwards.
        let ts = first.max(self.last_out_ts.unwrap_or(0));
        let end = self.out_ms(end_src)?.max(ts);
        let scale = self
            .stream
            .as_ref()
            .map_or(head::DEFAULT_TIMECODE_SCALE, |s| s.timecode_scale);
        let offset_units =
            i128::from(self.config.timestamp_offset_ms) * 1_000_000 / i128::from(scale);
        let timecode = u64::try_from(i128::from(tc) + offset_units)
            .map_err(|_| WebmError::TimestampOutOfRange)?;
        let no_video = self
            .stream
            .as_ref()
            .is_some_and(|s| s.video_track.is_none());
        self.out.push_back(MediaChunk {
            kind: ChunkKind::Media,
            keyframe: piece.keyframe || no_video,
            timestamp_ms: ts,
            duration_ms: u32::try_from(end - ts).unwrap_or(u32::MAX),
            bytes: piece.serialize(timecode),
        });
        self.last_out_ts = Some(ts);
        self.end_ms = Some(end);
        Ok(())
    }

    /// Source ms to output ms (offset applied).
    fn out_ms(&self, src: i64) -> Result<u64, WebmError> {
        src.checked_add(self.config.timestamp_offset_ms)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or(WebmError::TimestampOutOfRange)
    }
}
