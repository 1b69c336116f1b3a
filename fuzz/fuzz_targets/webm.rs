//! The WebM chunker on arbitrary bytes fed in arbitrary splits.
//!
//! Input: 8 control bytes (limits of the `ChunkerConfig` and the seed of the split sizes), then
//! the stream. Checks: never a panic; after an error every call fails the same way; the first
//! chunk is the init segment and no other is; every media chunk is one Cluster with a known
//! 8-byte size equal to its length, within `max_chunk_len`, and timestamps never decrease; the
//! same bytes in one piece give the same chunks and the same result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ownstream_core::webm::{ChunkKind, Chunker, ChunkerConfig, MediaChunk, WebmError};

const CLUSTER_ID: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];
const EBML_ID: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (control, stream) = data.split_at(8);
    let config = ChunkerConfig {
        // Small limits so the fuzzer reaches them with small inputs.
        max_element_len: 64 + usize::from(u16::from_be_bytes([control[0], control[1]])),
        max_chunk_ms: 1 + u32::from(u16::from_be_bytes([control[2], control[3]])),
        max_chunk_len: 64 + usize::from(u16::from_be_bytes([control[4], control[5]])) * 4,
        timestamp_offset_ms: i64::from(i8::from_be_bytes([control[6]])) * 1000,
    };
    let split_seed = control[7];

    let (split_chunks, split_result) = run(&config, stream, |i| {
        // Piece sizes 1..=64 from a small LCG: every boundary position gets exercised.
        let x = (u32::from(split_seed) + 1)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i as u32 * 40_503);
        1 + (x >> 26) as usize
    });
    check(&config, &split_chunks);
    let (whole_chunks, whole_result) = run(&config, stream, |_| usize::MAX);
    assert_eq!(split_result, whole_result, "the split changed the result");
    assert_eq!(split_chunks, whole_chunks, "the split changed the chunks");
});

fn run(
    config: &ChunkerConfig,
    stream: &[u8],
    piece: impl Fn(usize) -> usize,
) -> (Vec<MediaChunk>, Result<(), WebmError>) {
    let mut chunker = Chunker::new(config.clone());
    let mut out = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    let result = loop {
        if rest.is_empty() {
            break chunker.handle_eof();
        }
        let n = piece(i).min(rest.len());
        i += 1;
        let r = chunker.handle_input(&rest[..n]);
        out.extend(std::iter::from_fn(|| chunker.poll_chunk()));
        rest = &rest[n..];
        if r.is_err() {
            break r;
        }
    };
    out.extend(std::iter::from_fn(|| chunker.poll_chunk()));
    if let Err(e) = &result {
        // Failure is terminal and says the same thing again.
        assert_eq!(chunker.handle_input(b"\x1f").as_ref(), Err(e));
        assert_eq!(chunker.handle_eof().as_ref(), Err(e));
    } else {
        assert_eq!(chunker.handle_input(b"x"), Err(WebmError::AfterEof));
    }
    assert!(chunker.poll_chunk().is_none());
    (out, result)
}

fn check(config: &ChunkerConfig, chunks: &[MediaChunk]) {
    let mut last_ts = None;
    for (i, c) in chunks.iter().enumerate() {
        match c.kind {
            ChunkKind::Init => {
                assert_eq!(i, 0, "init segment after media");
                assert_eq!(c.bytes[..4], EBML_ID);
            }
            ChunkKind::Media => {
                assert!(i > 0, "media before the init segment");
                let b = &c.bytes;
                assert!(
                    b.len() >= 12 && b[..4] == CLUSTER_ID,
                    "not a cluster: {b:02x?}"
                );
                assert_eq!(b[4], 0x01, "cluster size is not 8 bytes wide");
                let mut size = [0u8; 8];
                size[1..].copy_from_slice(&b[5..12]);
                assert_eq!(
                    u64::from_be_bytes(size),
                    (b.len() - 12) as u64,
                    "cluster size"
                );
                assert!(
                    b.len() <= config.max_chunk_len.max(64 + config.max_element_len),
                    "chunk of {} bytes",
                    b.len()
                );
                if let Some(prev) = last_ts {
                    assert!(c.timestamp_ms >= prev, "timestamp went back");
                }
                last_ts = Some(c.timestamp_ms);
            }
        }
    }
}
