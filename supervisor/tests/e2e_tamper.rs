//! End to end over real WebRTC on loopback: a relay that alters a chunk is caught by its child, and
//! the altered bytes reach no output downstream: whether the relay leaves the HMAC tag stale or,
//! holding the stream key as every viewer does, recomputes it (then only the broadcaster's
//! signature catches it).

mod common;

use common::*;
use ownstream_core::webm::{ChunkKind, Chunker, ChunkerConfig};
use std::time::Duration;

const CORRUPTED_SEQ: usize = 3;

/// The payload of chunk `seq` as the broadcaster cuts it from `clip`.
fn chunk_payload(clip: &std::path::Path, seq: usize) -> Vec<u8> {
    let mut chunker = Chunker::new(ChunkerConfig::default());
    chunker.handle_input(&std::fs::read(clip).unwrap()).unwrap();
    chunker.handle_eof().unwrap();
    let media: Vec<_> = std::iter::from_fn(|| chunker.poll_chunk())
        .filter(|c| c.kind == ChunkKind::Media)
        .collect();
    media[seq - 1].bytes.to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn altered_chunk_is_rejected_by_the_child_and_never_written() {
    chain_with_a_lying_relay("tamper", "--fault-corrupt-relayed-seq");
}

#[test]
fn forged_chunk_with_a_valid_tag_is_rejected_by_the_child_and_never_written() {
    chain_with_a_lying_relay("forge", "--fault-forge-relayed-seq");
}

/// broadcaster -> r0 (alters chunk 3 with `fault` before relaying it) -> r1 -> r2.
fn chain_with_a_lying_relay(name: &str, fault: &str) {
    let sup = Supervisor::start(&["--topology", "chain"]);
    let dir = out_dir(name);
    let source = clip("clip-keyframe-clusters.webm");
    // The broadcaster registers first and holds the media until all three are connected; they join
    // one by one so the chain is broadcaster -> r0 (tampering relay) -> r1 -> r2.
    let mut b = broadcaster(&sup, &source, &["--wait-viewers", "3"]);
    wait_for("the stream to go live", Duration::from_secs(30), || {
        (sup.tree("s").len() == 1).then_some(())
    });
    let seq = CORRUPTED_SEQ.to_string();
    let mut procs = vec![receiver(&sup, &dir, "r0", &[fault, &seq])];
    wait_for("r0 in the chain", Duration::from_secs(30), || {
        (sup.tree("s").len() == 2).then_some(())
    });
    procs.push(receiver(&sup, &dir, "r1", &[]));
    wait_for("r1 in the chain", Duration::from_secs(30), || {
        (sup.tree("s").len() == 3).then_some(())
    });
    procs.push(receiver(&sup, &dir, "r2", &[]));
    for p in procs.iter_mut().chain(std::iter::once(&mut b)) {
        let status = p.wait_exit(Duration::from_secs(90));
        assert!(status.success(), "{} exited with {status}", p.name);
    }

    let original = chunk_payload(&source, CORRUPTED_SEQ);
    let mid = original.len() / 2;
    let mut altered = original.clone();
    altered[mid] ^= 0xff; // what the tampering relay does
    let window = mid - 32..mid + 32;
    let read = |n: &str| std::fs::read(dir.join(format!("{n}.webm"))).unwrap();

    assert_eq!(stats(&dir, "r0")["chunks_rejected"], 0);
    assert!(
        contains(&read("r0"), &original[window.clone()]),
        "r0 keeps the genuine chunk"
    );
    assert_eq!(
        stats(&dir, "r1")["chunks_rejected"],
        1,
        "r1 catches the altered chunk"
    );
    assert_eq!(
        stats(&dir, "r2")["chunks_rejected"],
        0,
        "r1 did not relay it"
    );
    for n in ["r1", "r2"] {
        assert!(
            !contains(&read(n), &altered[window.clone()]),
            "{n} never wrote the altered chunk"
        );
        assert!(
            !contains(&read(n), &original[window.clone()]),
            "{n} skipped chunk {CORRUPTED_SEQ}"
        );
        assert_eq!(
            decode_errors(&dir.join(format!("{n}.webm"))),
            "",
            "{n} decodes"
        );
    }
    let full = video_frames(&source);
    assert_eq!(video_frames(&dir.join("r0.webm")), full);
    let partial = video_frames(&dir.join("r1.webm"));
    assert!(partial < full, "r1 lacks the rejected chunk's frames");
    assert_eq!(video_frames(&dir.join("r2.webm")), partial);
}
