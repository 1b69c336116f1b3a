//! Media sources: read WebM bytes, cut them with the core's chunker, pace and sign the chunks.

use bytes::Bytes;
use ownstream_core::frame::{Chunk, ChunkSigner, FLAG_END, FLAG_INIT, FLAG_KEYFRAME};
use ownstream_core::ids::ChunkSeq;
use ownstream_core::webm::{ChunkKind, Chunker, ChunkerConfig, MediaChunk, WebmError};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Bytes read from the source per read call.
const READ_SIZE: usize = 64 * 1024;

/// Where the WebM comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file; with `looped`, it restarts at its end forever.
    File {
        /// Path of the WebM file.
        path: PathBuf,
        /// Loop seamlessly.
        looped: bool,
    },
    /// Standard input (a live pipe, e.g. from ffmpeg).
    Stdin,
    /// A camera captured by ffmpeg (`--webcam`).
    Webcam(crate::webcam::Webcam),
    /// WebM bytes in memory (the supervisor's bundled demo clip).
    Memory {
        /// The WebM file's bytes.
        data: Bytes,
        /// Loop seamlessly.
        looped: bool,
    },
}

/// Why a source stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be read. (The cause is the error's `source()`, not repeated in its
    /// message, so an `anyhow` chain prints each reason once.)
    #[error("cannot read {what}")]
    Io {
        /// The source's description.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not valid WebM.
    #[error("invalid WebM from {what}")]
    Webm {
        /// The source's description.
        what: String,
        /// What the chunker found.
        source: WebmError,
    },
    /// The camera cannot be captured.
    #[error(transparent)]
    Webcam(crate::webcam::WebcamError),
    /// The source has no media at all.
    #[error("{0} holds no media clusters")]
    Empty(String),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Stdin => "standard input".into(),
            Self::Webcam(cam) => format!("the camera {}", cam.device.display()),
            Self::Memory { .. } => "the bundled clip".into(),
        }
    }

    fn looped(&self) -> bool {
        matches!(
            self,
            Self::File { looped: true, .. } | Self::Memory { looped: true, .. }
        )
    }

    async fn open(&self) -> Result<Box<dyn AsyncRead + Unpin + Send>, SourceError> {
        Ok(match self {
            Self::File { path, .. } => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|source| SourceError::Io {
                        what: self.describe(),
                        source,
                    })?;
                Box::new(file)
            }
            Self::Stdin => Box::new(tokio::io::stdin()),
            Self::Webcam(cam) => Box::new(cam.spawn().map_err(|e| SourceError::Io {
                what: self.describe(),
                source: std::io::Error::other(e),
            })?),
            Self::Memory { data, .. } => Box::new(std::io::Cursor::new(data.clone())),
        })
    }

    /// Checks, before anything is registered, that a file source can be opened and starts as
    /// WebM (its first bytes go through a chunker), and that a camera and ffmpeg are there, so a
    /// wrong path, a file of another format or a missing camera fails at once instead of
    /// announcing a stream that ends without media. Other sources pass.
    pub async fn check(&self) -> Result<(), SourceError> {
        if let Self::Webcam(cam) = self {
            return cam.check().map_err(SourceError::Webcam);
        }
        if !matches!(self, Self::File { .. }) {
            return Ok(());
        }
        let mut reader = self.open().await?;
        let mut buf = vec![0u8; READ_SIZE];
        let n = read_full(&mut reader, &mut buf)
            .await
            .map_err(|source| SourceError::Io {
                what: self.describe(),
                source,
            })?;
        let mut chunker = Chunker::new(ChunkerConfig::default());
        // Only the head is judged: a file cut short later still streams what it holds.
        let head = match n {
            0 => chunker.handle_eof(),
            n => chunker.handle_input(&buf[..n]),
        };
        head.map_err(|source| SourceError::Webm {
            what: self.describe(),
            source,
        })
    }

    /// Streams the source to its end (forever when looped), calling `push` with every signed chunk
    /// at its media time, and finally with the end-of-stream chunk. Stops early, without an end
    /// chunk, when `push` returns false (the node is gone). On a read or format error the end chunk
    /// is still pushed so viewers finish cleanly, and the error is returned.
    pub async fn stream(
        self,
        signer: &ChunkSigner,
        chunk_ms: u32,
        mut push: impl FnMut(Chunk) -> bool,
    ) -> Result<(), SourceError> {
        let mut pacer = Pacer::new(signer.clone());
        let result = self.stream_passes(chunk_ms, &mut pacer, &mut push).await;
        if !pacer.stopped {
            let end = signer.sign(
                ChunkSeq(pacer.seq + 1),
                FLAG_END,
                pacer.end_ms,
                0,
                Bytes::new(),
            );
            push(end);
        }
        result
    }

    async fn stream_passes(
        &self,
        chunk_ms: u32,
        pacer: &mut Pacer,
        push: &mut impl FnMut(Chunk) -> bool,
    ) -> Result<(), SourceError> {
        loop {
            let offset = pacer.end_ms;
            let media_before = pacer.seq;
            self.stream_once(offset, chunk_ms, pacer, push).await?;
            if pacer.stopped {
                return Ok(());
            }
            if pacer.seq == media_before {
                return Err(SourceError::Empty(self.describe()));
            }
            if !self.looped() {
                return Ok(());
            }
        }
    }

    async fn stream_once(
        &self,
        offset_ms: u64,
        chunk_ms: u32,
        pacer: &mut Pacer,
        push: &mut impl FnMut(Chunk) -> bool,
    ) -> Result<(), SourceError> {
        let mut reader = self.open().await?;
        let mut chunker = Chunker::new(ChunkerConfig {
            timestamp_offset_ms: offset_ms as i64,
            max_chunk_ms: chunk_ms,
            ..ChunkerConfig::default()
        });
        let mut buf = vec![0u8; READ_SIZE];
        let webm_err = |source| SourceError::Webm {
            what: self.describe(),
            source,
        };
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|source| SourceError::Io {
                    what: self.describe(),
                    source,
                })?;
            if n == 0 {
                let eof = chunker.handle_eof().map_err(webm_err);
                pacer.drain(&mut chunker, push).await;
                return eof;
            }
            let input = chunker.handle_input(&buf[..n]).map_err(webm_err);
            pacer.drain(&mut chunker, push).await;
            input?;
            if pacer.stopped {
                return Ok(());
            }
        }
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
async fn read_full(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Assigns sequence numbers, signs, and releases chunks at their media time (their end's).
struct Pacer {
    signer: ChunkSigner,
    seq: u64,
    sent_init: bool,
    start: Option<(Instant, u64)>,
    end_ms: u64,
    stopped: bool,
}

impl Pacer {
    fn new(signer: ChunkSigner) -> Self {
        Self {
            signer,
            seq: 0,
            sent_init: false,
            start: None,
            end_ms: 0,
            stopped: false,
        }
    }

    async fn drain(&mut self, chunker: &mut Chunker, push: &mut impl FnMut(Chunk) -> bool) {
        while let Some(media) = chunker.poll_chunk() {
            if self.stopped {
                return;
            }
            if let Some(chunk) = self.next(media).await {
                self.stopped = !push(chunk);
            }
        }
    }

    async fn next(&mut self, media: MediaChunk) -> Option<Chunk> {
        match media.kind {
            ChunkKind::Init if self.sent_init => None, // a looped pass repeats the same tracks
            ChunkKind::Init => {
                self.sent_init = true;
                Some(self.signer.sign(ChunkSeq(0), FLAG_INIT, 0, 0, media.bytes))
            }
            ChunkKind::Media => {
                // A chunk leaves when its last frame is due, as a capture would release it: the
                // first one at once, each later one when its end is as far from the first's end
                // in wall time as in media time. So a file is broadcast on the live schedule whose
                // epoch viewers measure their latency from (`ownstream_core::latency`), and a
                // live pipe, whose chunks arrive when complete, is never held back.
                let end = media.timestamp_ms + u64::from(media.duration_ms);
                let (t0, end0) = *self.start.get_or_insert((Instant::now(), end));
                let due = t0 + Duration::from_millis(end.saturating_sub(end0));
                tokio::time::sleep_until(due).await;
                self.seq += 1;
                self.end_ms = self
                    .end_ms
                    .max(media.timestamp_ms + u64::from(media.duration_ms));
                let flags = if media.keyframe { FLAG_KEYFRAME } else { 0 };
                Some(self.signer.sign(
                    ChunkSeq(self.seq),
                    flags,
                    media.timestamp_ms,
                    media.duration_ms,
                    media.bytes,
                ))
            }
        }
    }
}
