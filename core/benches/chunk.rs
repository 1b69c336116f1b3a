//! Costs on the media path: signing and verifying a chunk (every relay verifies every chunk) and
//! cutting a WebM stream into chunks (the broadcaster's per-byte work).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ownstream_core::frame::{Chunk, StreamKey, FLAG_KEYFRAME};
use ownstream_core::ids::ChunkSeq;
use ownstream_core::webm::{Chunker, ChunkerConfig};
use std::hint::black_box;

fn hmac_tag_verify(c: &mut Criterion) {
    let key = StreamKey::new([7; 32]);
    let mut group = c.benchmark_group("hmac_tag_verify");
    // ~150 KB is a one-second chunk at ~1.2 Mbit/s; 1 MB a high-bitrate or long chunk.
    for (name, len) in [("150KB", 150 * 1024), ("1MB", 1024 * 1024)] {
        let payload = Bytes::from(vec![0xA5; len]);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &payload, |b, payload| {
            b.iter(|| {
                let chunk = Chunk::sign(&key, ChunkSeq(1), FLAG_KEYFRAME, 0, 1000, payload.clone());
                black_box(chunk.verify(&key)).expect("own tag verifies");
            })
        });
    }
    group.finish();
}

fn chunker_throughput(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/clip-pipe.webm");
    let clip = std::fs::read(path).expect("testdata/clip-pipe.webm (run testdata/make-clips.sh)");
    let mut group = c.benchmark_group("chunker_throughput");
    group.throughput(Throughput::Bytes(clip.len() as u64));
    // 64 KiB reads, as the broadcaster reads a pipe.
    group.bench_function("clip-pipe", |b| {
        b.iter(|| {
            let mut chunker = Chunker::new(ChunkerConfig::default());
            let mut chunks = 0;
            for piece in clip.chunks(64 * 1024) {
                chunker.handle_input(piece).expect("valid clip");
                while chunker.poll_chunk().is_some() {
                    chunks += 1;
                }
            }
            chunker.handle_eof().expect("complete clip");
            while chunker.poll_chunk().is_some() {
                chunks += 1;
            }
            black_box(chunks)
        })
    });
    group.finish();
}

criterion_group!(benches, hmac_tag_verify, chunker_throughput);
criterion_main!(benches);
