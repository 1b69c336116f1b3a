//! Unit tests of the chunker on small hand-built streams (real clips are in `tests/`).

use super::*;

/// An element with a minimal size field (sizes below 127 only, enough here) or an 8-byte one.
fn el(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = id
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    out.extend_from_slice(&ebml::size8(body.len() as u64));
    out.extend_from_slice(body);
    out
}

fn unknown(id: u32) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&ebml::UNKNOWN_SIZE_8);
    out
}

fn head(scale: u64) -> Vec<u8> {
    let mut s = el(ebml::ID_EBML, &el(ebml::ID_DOC_TYPE, b"webm"));
    s.extend(unknown(ebml::ID_SEGMENT));
    s.extend(el(ebml::ID_SEEK_HEAD, &[0; 5]));
    s.extend(el(
        ebml::ID_INFO,
        &el(ebml::ID_TIMECODE_SCALE, &scale.to_be_bytes()),
    ));
    let video = [
        el(ebml::ID_TRACK_NUMBER, &[1]),
        el(ebml::ID_TRACK_TYPE, &[1]),
    ]
    .concat();
    let audio = [
        el(ebml::ID_TRACK_NUMBER, &[2]),
        el(ebml::ID_TRACK_TYPE, &[2]),
    ]
    .concat();
    let entries = [
        el(ebml::ID_TRACK_ENTRY, &video),
        el(ebml::ID_TRACK_ENTRY, &audio),
    ]
    .concat();
    s.extend(el(ebml::ID_TRACKS, &entries));
    s.extend(el(0xEC, &[0; 3]));
    s
}

fn simple(track: u8, rel: i16, key: bool) -> Vec<u8> {
    let [hi, lo] = rel.to_be_bytes();
    el(
        ebml::ID_SIMPLE_BLOCK,
        &[0x80 | track, hi, lo, if key { 0x80 } else { 0 }, 0xAA],
    )
}

fn cluster(tc: u64, blocks: &[Vec<u8>], sized: bool) -> Vec<u8> {
    let body = [el(ebml::ID_TIMECODE, &tc.to_be_bytes()), blocks.concat()].concat();
    if sized {
        el(ebml::ID_CLUSTER, &body)
    } else {
        [unknown(ebml::ID_CLUSTER), body].concat()
    }
}

fn run(config: ChunkerConfig, input: &[u8]) -> (Vec<MediaChunk>, Result<(), WebmError>) {
    let mut c = Chunker::new(config);
    let mut out = Vec::new();
    let r = c.handle_input(input).and_then(|_| c.handle_eof());
    while let Some(m) = c.poll_chunk() {
        out.push(m);
    }
    (out, r)
}

fn blocks_in(chunk: &MediaChunk) -> usize {
    ebml::children(&chunk.bytes[12..])
        .filter(|c| c.as_ref().unwrap().0 == ebml::ID_SIMPLE_BLOCK)
        .count()
}

#[test]
fn init_segment_keeps_only_info_and_tracks() {
    let input = [head(1_000_000), cluster(0, &[simple(1, 0, true)], true)].concat();
    let (out, r) = run(ChunkerConfig::default(), &input);
    r.unwrap();
    let init = &out[0].bytes;
    assert_eq!(out[0].kind, ChunkKind::Init);
    let ebml_len = el(ebml::ID_EBML, &el(ebml::ID_DOC_TYPE, b"webm")).len();
    assert_eq!(
        &init[ebml_len..ebml_len + 4],
        &ebml::ID_SEGMENT.to_be_bytes()
    );
    assert_eq!(&init[ebml_len + 4..ebml_len + 12], &ebml::UNKNOWN_SIZE_8);
    let ids: Vec<u32> = ebml::children(&init[ebml_len + 12..])
        .map(|c| c.unwrap().0)
        .collect();
    assert_eq!(ids, vec![ebml::ID_INFO, ebml::ID_TRACKS]);
}

#[test]
fn unknown_size_clusters_end_at_the_next_cluster_and_at_cues() {
    let input = [
        head(1_000_000),
        cluster(0, &[simple(1, 0, true), simple(2, 10, true)], false),
        cluster(1000, &[simple(1, 0, true)], false),
        el(ebml::ID_CUES, &[0; 4]),
    ]
    .concat();
    let (out, r) = run(ChunkerConfig::default(), &input);
    r.unwrap();
    let media: Vec<_> = out[1..]
        .iter()
        .map(|m| (m.timestamp_ms, m.keyframe, blocks_in(m)))
        .collect();
    assert_eq!(media, vec![(0, true, 2), (1000, true, 1)]);
}

#[test]
fn clusters_split_at_video_keyframes_with_exact_durations() {
    let blocks = [
        simple(1, 0, false),
        simple(2, 5, true),
        simple(1, 40, false),
        simple(2, 60, true),
        simple(1, 80, true),
        simple(1, 120, false),
    ];
    let input = [head(1_000_000), cluster(500, &blocks, true)].concat();
    let (out, r) = run(ChunkerConfig::default(), &input);
    r.unwrap();
    let media: Vec<_> = out[1..]
        .iter()
        .map(|m| (m.timestamp_ms, m.duration_ms, m.keyframe, blocks_in(m)))
        .collect();
    // The second piece ends one frame (40 ms, the observed spacing) after its last video block.
    assert_eq!(media, vec![(500, 80, false, 4), (580, 80, true, 2)]);
    // Both pieces carry the source cluster's Timecode.
    assert!(out[1..]
        .iter()
        .all(|m| m.bytes[14..22] == 500u64.to_be_bytes()));
}

#[test]
fn block_groups_without_reference_are_keyframes() {
    let group = |reference: bool| {
        let mut body = el(ebml::ID_BLOCK, &[0x81, 0, 0, 0, 0xAA]);
        if reference {
            body.extend(el(ebml::ID_REFERENCE_BLOCK, &[0xFF]));
        }
        el(ebml::ID_BLOCK_GROUP, &body)
    };
    let input = [
        head(1_000_000),
        cluster(0, &[group(false)], true),
        cluster(40, &[group(true)], true),
    ]
    .concat();
    let (out, r) = run(ChunkerConfig::default(), &input);
    r.unwrap();
    assert_eq!(
        out.iter().map(|m| m.keyframe).collect::<Vec<_>>(),
        [false, true, false]
    );
}

#[test]
fn timecode_scale_and_offset_apply() {
    // 100 µs units: timecode 20,000 is 2,000 ms.
    let input = [head(100_000), cluster(20_000, &[simple(1, 10, true)], true)].concat();
    let config = ChunkerConfig {
        timestamp_offset_ms: 3000,
        ..ChunkerConfig::default()
    };
    let (out, r) = run(config, &input);
    r.unwrap();
    assert_eq!(out[1].timestamp_ms, 5001);
    assert_eq!(out[1].bytes[14..22], 50_000u64.to_be_bytes());
}

#[test]
fn malformed_inputs_are_errors() {
    let h = head(1_000_000);
    let mut truncated_cluster = [h.clone(), cluster(0, &[simple(1, 0, true)], true)].concat();
    let cluster_size_at = h.len() + 4;
    truncated_cluster[cluster_size_at..cluster_size_at + 8].copy_from_slice(&ebml::size8(100));
    let cases: Vec<(Vec<u8>, WebmError)> = vec![
        (
            b"RIFF....".to_vec(),
            WebmError::NotWebm("EBML header missing"),
        ),
        (vec![], WebmError::NotWebm("empty input")),
        (
            [h.clone(), el(ebml::ID_CLUSTER, &simple(1, 0, true))].concat(),
            WebmError::BlockBeforeTimecode,
        ),
        (truncated_cluster.clone(), WebmError::Truncated("Cluster")),
        (
            [h.clone(), el(ebml::ID_CLUSTER, &[0xA3, 0x85, 1])].concat(),
            WebmError::Overrun("SimpleBlock"),
        ),
        (
            [h.clone(), unknown(ebml::ID_CUES)].concat(),
            WebmError::UnknownSize("Cues"),
        ),
        (
            [&h[..h.len() - 2]].concat(),
            WebmError::Truncated("element"),
        ),
    ];
    for (input, want) in cases {
        let (_, r) = run(ChunkerConfig::default(), &input);
        assert_eq!(r, Err(want));
    }
}

#[test]
fn oversized_elements_are_refused_before_buffering() {
    let big = [
        head(1_000_000),
        cluster(
            0,
            &[
                el(ebml::ID_SIMPLE_BLOCK, &[0x81, 0, 0, 0x80]),
                vec![0xA3, 0x01, 0, 0, 0, 0, 0, 0x10, 0],
            ],
            false,
        ),
    ]
    .concat();
    let config = ChunkerConfig {
        max_element_len: 1000,
        ..ChunkerConfig::default()
    };
    let mut c = Chunker::new(config);
    let err = c.handle_input(&big).unwrap_err();
    assert!(
        matches!(
            err,
            WebmError::ElementTooLarge {
                element: "SimpleBlock",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        c.handle_input(b"more"),
        Err(err),
        "a failed chunker stays failed"
    );
}

#[test]
fn extreme_timecodes_are_errors_not_overflows() {
    let huge_scale = [
        head(u64::MAX),
        cluster(u64::MAX, &[simple(1, 0, true)], true),
    ]
    .concat();
    let (_, r) = run(ChunkerConfig::default(), &huge_scale);
    assert_eq!(r, Err(WebmError::TimestampOutOfRange));
    let negative = ChunkerConfig {
        timestamp_offset_ms: -10,
        ..ChunkerConfig::default()
    };
    let input = [head(1_000_000), cluster(0, &[simple(1, 0, true)], true)].concat();
    assert_eq!(run(negative, &input).1, Err(WebmError::TimestampOutOfRange));
}
