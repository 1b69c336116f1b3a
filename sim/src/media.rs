//! What the simulated broadcaster streams: synthetic chunks of a set bitrate, or the chunks of a
//! real WebM clip cut by the core's chunker, looped with increasing timestamps as the real
//! broadcaster's `--loop` does. Each media chunk is released at its own start time after the first
//! one, like the real broadcaster's pacer.

use bytes::Bytes;
use ownstream_core::webm::{ChunkKind, Chunker, ChunkerConfig, WebmError};

/// One media chunk of the plan (the init chunk aside).
#[derive(Clone, Debug)]
pub struct PlannedChunk {
    /// Media time of its start, ms (first pass).
    pub timestamp_ms: u64,
    /// Media time until the next chunk, ms.
    pub duration_ms: u32,
    /// Starts with a keyframe.
    pub keyframe: bool,
    /// Its bytes.
    pub payload: Bytes,
}

/// The broadcaster's source: an init chunk and media chunks, looped forever.
#[derive(Clone, Debug)]
pub struct MediaPlan {
    /// The init segment's bytes.
    pub init: Bytes,
    /// One pass of media chunks, in order.
    pub chunks: Vec<PlannedChunk>,
}

impl MediaPlan {
    /// Chunks of `chunk_ms` at `bitrate_bps`, each starting with a keyframe every
    /// `keyframe_every` chunks (the paper's clip: ~1.16 Mbit/s, 1 s chunks, all keyframe-first).
    pub fn synthetic(bitrate_bps: u64, chunk_ms: u32, keyframe_every: u32, chunks: u32) -> Self {
        let len = (bitrate_bps * u64::from(chunk_ms) / 8000) as usize;
        let payload = Bytes::from(vec![0u8; len]);
        let chunks = (0..chunks)
            .map(|i| PlannedChunk {
                timestamp_ms: u64::from(i) * u64::from(chunk_ms),
                duration_ms: chunk_ms,
                keyframe: i % keyframe_every.max(1) == 0,
                payload: payload.clone(),
            })
            .collect();
        Self {
            init: Bytes::from_static(b"sim init segment"),
            chunks,
        }
    }

    /// The chunks of a WebM file, as the real broadcaster cuts them.
    pub fn from_webm(bytes: &[u8]) -> Result<Self, WebmError> {
        Self::from_webm_cut(bytes, ChunkerConfig::default().max_chunk_ms)
    }

    /// The chunks of a WebM file cut at most `max_chunk_ms` long (a broadcaster's latency mode).
    pub fn from_webm_cut(bytes: &[u8], max_chunk_ms: u32) -> Result<Self, WebmError> {
        let mut chunker = Chunker::new(ChunkerConfig {
            max_chunk_ms,
            ..ChunkerConfig::default()
        });
        chunker.handle_input(bytes)?;
        chunker.handle_eof()?;
        let mut init = Bytes::new();
        let mut chunks = Vec::new();
        while let Some(c) = chunker.poll_chunk() {
            match c.kind {
                ChunkKind::Init => init = c.bytes,
                ChunkKind::Media => chunks.push(PlannedChunk {
                    timestamp_ms: c.timestamp_ms,
                    duration_ms: c.duration_ms,
                    keyframe: c.keyframe,
                    payload: c.bytes,
                }),
            }
        }
        Ok(Self { init, chunks })
    }

    /// Media time of one pass: where the next pass's timestamps start.
    pub fn pass_ms(&self) -> u64 {
        self.chunks
            .last()
            .map_or(1, |c| c.timestamp_ms + u64::from(c.duration_ms))
    }

    /// Media chunk number `n` (0-based, across passes) with its timestamp in stream time.
    pub(crate) fn nth(&self, n: u64) -> (u64, &PlannedChunk) {
        let per_pass = self.chunks.len().max(1) as u64;
        let chunk = &self.chunks[(n % per_pass) as usize];
        let first = self.chunks.first().map_or(0, |c| c.timestamp_ms);
        let ts = chunk.timestamp_ms - first + (n / per_pass) * self.pass_ms();
        (ts, chunk)
    }
}

impl Default for MediaPlan {
    /// The paper's bitrate (Table I: ~1159 kb/s) in 1 s keyframe-first chunks.
    fn default() -> Self {
        Self::synthetic(1_159_000, 1000, 1, 20)
    }
}
