//! The receiver's `--out` file: the init segment followed by every accepted cluster, in order, so
//! the file is a playable WebM from the point where the receiver joined.

use crate::node::ChunkSink;
use ownstream_core::frame::Chunk;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes chunk payloads to a file, flushing after each chunk so a crash loses at most one chunk.
pub struct FileSink {
    out: BufWriter<File>,
}

impl FileSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: BufWriter::new(File::create(path)?),
        })
    }
}

impl ChunkSink for FileSink {
    fn chunk(&mut self, chunk: &Chunk) -> std::io::Result<()> {
        self.out.write_all(&chunk.payload)?;
        self.out.flush()
    }
}
