//! The WebM chunker on bad input: an element over the size limit, clips cut short, garbage,
//! corrupted and random bytes give a clear error (complete chunks first), never a panic; and any
//! split of a clip into pieces gives the same output.

mod webm_clips;

use ownstream_core::webm::{ChunkerConfig, WebmError};
use proptest::prelude::*;
use webm_clips::*;

#[test]
fn an_element_over_the_limit_is_an_error() {
    let config = ChunkerConfig {
        max_element_len: 16 * 1024,
        ..ChunkerConfig::default()
    };
    let (_, result) = chunk_with(config, &read_clip(&BIG_CLUSTERS), &[1 << 20]);
    assert!(
        matches!(
            result,
            Err(WebmError::ElementTooLarge {
                element: "SimpleBlock",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn truncated_clips_emit_complete_chunks_then_report_truncation() {
    let input = read_clip(&KEYFRAME_CLUSTERS);
    let full = chunk_ok(&input);
    // Cut in the middle of the fourth cluster.
    let cluster_starts: Vec<usize> = input
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == CLUSTER)
        .map(|(i, _)| i)
        .collect();
    let cut = cluster_starts[3] + 5000;
    let (out, result) = chunk_with(ChunkerConfig::default(), &input[..cut], &[4096]);
    assert_eq!(result, Err(WebmError::Truncated("Cluster")));
    assert_eq!(
        &out[..4],
        &full[..4],
        "init and the three complete clusters"
    );
    assert!(
        out.len() == 5 && out[4].bytes.len() < full[4].bytes.len(),
        "then the complete blocks"
    );
}

#[test]
fn garbage_input_is_an_error() {
    let (out, result) = chunk_with(ChunkerConfig::default(), b"\x00\x01garbage, not webm", &[3]);
    assert!(out.is_empty());
    assert_eq!(result, Err(WebmError::NotWebm("EBML header missing")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_piece_sizes_give_identical_output(sizes in prop::collection::vec(1usize..20_000, 1..16)) {
        let input = read_clip(&PIPE);
        let (out, result) = chunk_with(ChunkerConfig::default(), &input, &sizes);
        prop_assert!(result.is_ok());
        prop_assert_eq!(out, chunk_ok(&input));
    }

    #[test]
    fn truncated_sized_clips_are_errors_not_panics(cut in 0usize..223_737, piece in 1usize..9000) {
        let input = read_clip(&KEYFRAME_CLUSTERS);
        let cut = cut % input.len();
        let (_, result) = chunk_with(ChunkerConfig::default(), &input[..cut], &[piece]);
        prop_assert!(result.is_err(), "a clip cut at {} must not look complete", cut);
    }

    #[test]
    fn corrupted_clips_never_panic(edits in prop::collection::vec((0usize..40_000, any::<u8>()), 1..8)) {
        let mut input = read_clip(&OPUS);
        input.truncate(40_000);
        for (at, byte) in edits {
            input[at] = byte;
        }
        let _ = chunk_with(ChunkerConfig::default(), &input, &[777]);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), prefix in any::<bool>()) {
        // With the EBML magic in front the parser gets past the first check.
        let input = if prefix { [&[0x1A, 0x45, 0xDF, 0xA3][..], &bytes].concat() } else { bytes };
        let _ = chunk_with(ChunkerConfig::default(), &input, &[13]);
    }
}
