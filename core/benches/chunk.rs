//! Costs on the media path: tagging and verifying a chunk (every relay verifies every chunk), the
//! broadcaster's Ed25519 signature, every node's check of it and of the tag together, and cutting
//! a WebM stream into chunks (the broadcaster's per-byte work).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ownstream_core::frame::{ChunkSigner, SigningKey, StreamKey, FLAG_KEYFRAME};
use ownstream_core::ids::ChunkSeq;
use ownstream_core::webm::{Chunker, ChunkerConfig};
use std::hint::black_box;

// ~150 KB is a one-second chunk at ~1.2 Mbit/s; 1 MB a high-bitrate or long chunk.
const SIZES: [(&str, usize); 2] = [("150KB", 150 * 1024), ("1MB", 1024 * 1024)];

fn signer() -> ChunkSigner {
    ChunkSigner::new("s", StreamKey::new([7; 32]), SigningKey::from_seed([5; 32]))
}

/// The paper's per-chunk cost: compute the HMAC tag, then check it (what the tag alone costs
/// both sides).
fn hmac_tag_verify(c: &mut Criterion) {
    let signer = signer();
    let key = signer.stream_key().clone();
    let mut group = c.benchmark_group("hmac_tag_verify");
    for (name, len) in SIZES {
        let mut chunk = signer.sign(ChunkSeq(1), FLAG_KEYFRAME, 0, 1000, vec![0xA5; len].into());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                chunk.retag(&key);
                black_box(chunk.verify(&key)).expect("own tag verifies");
            })
        });
    }
    group.finish();
}

/// The broadcaster's cost per chunk: tag and Ed25519 signature (`ChunkSigner::sign`).
fn ed25519_sign(c: &mut Criterion) {
    let signer = signer();
    let mut group = c.benchmark_group("ed25519_sign");
    for (name, len) in SIZES {
        let payload = Bytes::from(vec![0xA5; len]);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &payload, |b, payload| {
            b.iter(|| black_box(signer.sign(ChunkSeq(1), FLAG_KEYFRAME, 0, 1000, payload.clone())))
        });
    }
    group.finish();
}

/// Every node's cost per chunk: the signature check (beside the sampled tag check).
fn ed25519_verify(c: &mut Criterion) {
    let signer = signer();
    let public = signer.verifying_key();
    let mut group = c.benchmark_group("ed25519_verify");
    for (name, len) in SIZES {
        let chunk = signer.sign(ChunkSeq(1), FLAG_KEYFRAME, 0, 1000, vec![0xA5; len].into());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                black_box(chunk.verify_signature(&public, signer.stream_key(), "s"))
                    .expect("own signature verifies")
            })
        });
    }
    group.finish();
}

/// Every node's whole check of a chunk from its parent: the tag (checked on every chunk by
/// default, `verify_fraction` 1) and the signature, over one hash of the payload.
fn node_check(c: &mut Criterion) {
    let signer = signer();
    let public = signer.verifying_key();
    let mut group = c.benchmark_group("node_check");
    for (name, len) in SIZES {
        let chunk = signer.sign(ChunkSeq(1), FLAG_KEYFRAME, 0, 1000, vec![0xA5; len].into());
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                black_box(chunk.verify_all(true, &public, signer.stream_key(), "s"))
                    .expect("own chunk verifies")
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

criterion_group!(
    benches,
    hmac_tag_verify,
    ed25519_sign,
    ed25519_verify,
    node_check,
    chunker_throughput
);
criterion_main!(benches);
