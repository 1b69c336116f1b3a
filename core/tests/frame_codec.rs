//! Chunk framing as a receiver sees it: signed chunks survive encode / fragment / reassemble /
//! decode unchanged, any altered byte or wrong key fails verification, and malformed messages are
//! errors, never panics.

use bytes::Bytes;
use ownstream_core::frame::{
    fragment, Chunk, ChunkSigner, Fragment, FrameError, Message, Reassembler, SigningKey,
    StreamKey, VerifyingKey, FLAG_KEYFRAME, MAX_CHUNK_LEN, MAX_MESSAGE, PREFIX_LEN,
};
use ownstream_core::ids::ChunkSeq;
use proptest::prelude::*;

const FRAGMENT_HEADER: usize = 18;

fn key() -> StreamKey {
    StreamKey::new(*b"0123456789abcdef0123456789abcdef")
}

const SEED: [u8; 32] = [5; 32];

fn signer() -> ChunkSigner {
    ChunkSigner::new("s", key(), SigningKey::from_seed(SEED))
}

fn public() -> VerifyingKey {
    SigningKey::from_seed(SEED).verifying_key()
}

/// Both checks a receiver applies.
fn check(chunk: &Chunk) -> Result<(), FrameError> {
    chunk.verify(&key())?;
    chunk.verify_signature(&public(), &key(), "s")
}

fn signed(seq: u64, payload_len: usize) -> Chunk {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 % 256) as u8).collect();
    signer().sign(
        ChunkSeq(seq),
        FLAG_KEYFRAME,
        90_000 + seq,
        1000,
        Bytes::from(payload),
    )
}

/// Sends a chunk through the whole path a parent and a child apply.
fn through_the_wire(chunk: &Chunk, max_message: usize) -> Chunk {
    let mut reassembler = Reassembler::new();
    let messages = fragment(chunk, max_message).expect("fragmentable");
    let last = messages.len() - 1;
    for (i, m) in messages.into_iter().enumerate() {
        assert!(m.len() <= max_message);
        let Message::Fragment(f) = Message::decode(m).expect("decodable") else {
            panic!("a fragment decodes as a fragment")
        };
        match reassembler
            .handle_fragment(f)
            .expect("in-order fragments are accepted")
        {
            Some(done) => {
                assert_eq!(i, last, "only the last fragment completes a chunk");
                return done;
            }
            None => assert!(i < last),
        }
    }
    unreachable!("the last fragment returns the chunk")
}

#[test]
fn chunks_of_every_size_class_survive_the_wire() {
    let room = MAX_MESSAGE - FRAGMENT_HEADER;
    let exactly_one_message = room - PREFIX_LEN;
    for len in [
        0,
        1,
        exactly_one_message,
        exactly_one_message + 1,
        150_000,
        2 * 1024 * 1024 + 3,
    ] {
        let chunk = signed(len as u64, len);
        let back = through_the_wire(&chunk, MAX_MESSAGE);
        assert_eq!(back, chunk, "payload of {len} bytes");
        check(&back).expect("tag and signature still verify");
    }
}

#[test]
fn message_count_is_the_ceiling_of_length_over_room() {
    let chunk = signed(1, 100_000);
    let room = MAX_MESSAGE - FRAGMENT_HEADER;
    let messages = fragment(&chunk, MAX_MESSAGE).unwrap();
    assert_eq!(messages.len(), chunk.encoded_len().div_ceil(room));
    assert!(messages[..messages.len() - 1]
        .iter()
        .all(|m| m.len() == MAX_MESSAGE));
}

#[test]
fn decoded_payload_shares_the_received_buffer() {
    let encoded = signed(3, 1000).encode();
    let decoded = Chunk::decode(encoded.clone()).unwrap();
    assert_eq!(decoded.payload.as_ptr(), encoded[PREFIX_LEN..].as_ptr());
}

#[test]
fn flipping_any_byte_of_header_tag_signature_or_payload_fails_verification() {
    let encoded = signed(9, 300).encode().to_vec();
    for i in 0..encoded.len() {
        let mut bad = encoded.clone();
        bad[i] ^= 0x01;
        // Flipping payload_len makes the frame itself inconsistent: rejected before verifying.
        match Chunk::decode(Bytes::from(bad)) {
            Ok(chunk) => {
                // The tag covers all but the signature, the signature all but the tag.
                let tag = chunk.verify(&key());
                let signature = chunk.verify_signature(&public(), &key(), "s");
                assert_eq!(tag.is_ok(), (57..121).contains(&i), "byte {i}: {tag:?}");
                assert_eq!(
                    signature.is_ok(),
                    (25..57).contains(&i),
                    "byte {i}: {signature:?}"
                );
                assert!(check(&chunk).is_err(), "byte {i}");
            }
            Err(e) => assert!((21..25).contains(&i), "byte {i}: {e}"),
        }
    }
}

#[test]
fn a_wrong_key_fails_verification() {
    let chunk = signed(4, 64);
    let other = StreamKey::new([0x55; 32]);
    assert_eq!(chunk.verify(&other), Err(FrameError::BadTag));
    chunk.verify(&key()).unwrap();
}

#[test]
fn hello_announces_what_a_child_holds() {
    for last in [None, Some(ChunkSeq(0)), Some(ChunkSeq(u64::MAX))] {
        let m = Message::Hello { last };
        assert_eq!(m.encode().len(), 11);
        assert_eq!(Message::decode(m.encode()).unwrap(), m);
    }
}

#[test]
fn truncated_and_garbage_messages_are_rejected() {
    let chunk_messages = fragment(&signed(1, 10), MAX_MESSAGE).unwrap();
    let hello = Message::Hello {
        last: Some(ChunkSeq(5)),
    }
    .encode();
    for cut in 0..FRAGMENT_HEADER {
        assert!(
            Message::decode(chunk_messages[0].slice(..cut)).is_err(),
            "fragment cut at {cut}"
        );
    }
    for cut in 0..hello.len() {
        assert!(
            Message::decode(hello.slice(..cut)).is_err(),
            "hello cut at {cut}"
        );
    }
    for version in [1, 2, 4] {
        // 1: a peer of chunk format 1 (no signatures); 2: of format 2 (signatures over the whole
        // payload); 4: a future one.
        let mut other = hello.to_vec();
        other[0] = version;
        assert_eq!(
            Message::decode(Bytes::from(other)),
            Err(FrameError::UnsupportedVersion(version))
        );
    }
}

#[test]
fn a_reassembled_chunk_can_never_exceed_the_limit() {
    let mut r = Reassembler::new();
    let frag = Fragment {
        seq: ChunkSeq(1),
        index: 0,
        count: 2,
        total_len: MAX_CHUNK_LEN as u32 + 1,
        bytes: Bytes::from_static(b"x"),
    };
    assert!(matches!(
        r.handle_fragment(frag),
        Err(FrameError::ChunkTooLarge { .. })
    ));
    let too_big = signed(1, MAX_CHUNK_LEN);
    assert!(matches!(
        fragment(&too_big, MAX_MESSAGE),
        Err(FrameError::ChunkTooLarge { .. })
    ));
}

#[test]
fn the_reassembler_recovers_after_an_error() {
    let mut r = Reassembler::new();
    let first = fragment(&signed(1, 2 * MAX_MESSAGE), MAX_MESSAGE).unwrap();
    let Message::Fragment(f) = Message::decode(first[1].clone()).unwrap() else {
        unreachable!()
    };
    assert!(
        r.handle_fragment(f).is_err(),
        "index 1 first is out of order"
    );
    let chunk = signed(2, 2 * MAX_MESSAGE);
    let mut done = None;
    for m in fragment(&chunk, MAX_MESSAGE).unwrap() {
        let Message::Fragment(f) = Message::decode(m).unwrap() else {
            unreachable!()
        };
        done = r.handle_fragment(f).unwrap();
    }
    assert_eq!(done, Some(chunk));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        let _ = Chunk::decode(Bytes::from(bytes.clone()));
        let mut r = Reassembler::new();
        if let Ok(Message::Fragment(f)) = Message::decode(Bytes::from(bytes)) {
            let _ = r.handle_fragment(f);
        }
    }

    #[test]
    fn random_fragment_sequences_never_panic_the_reassembler(
        frags in prop::collection::vec((0u64..3, 0u16..4, 0u16..4, 0u32..200, 0usize..120), 1..20)
    ) {
        let mut r = Reassembler::new();
        for (seq, index, count, total_len, len) in frags {
            let f = Fragment { seq: ChunkSeq(seq), index, count, total_len, bytes: Bytes::from(vec![0; len]) };
            if let Ok(Some(chunk)) = r.handle_fragment(f) {
                prop_assert_eq!(chunk.encoded_len(), total_len as usize);
            }
        }
    }

    #[test]
    fn encode_fragment_reassemble_decode_is_identity(
        seq in any::<u64>(),
        flags in any::<u8>(),
        timestamp_ms in any::<u64>(),
        duration_ms in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..50_000),
        max_message in 19usize..70_000,
    ) {
        let chunk = signer().sign(ChunkSeq(seq), flags, timestamp_ms, duration_ms, Bytes::from(payload));
        prop_assume!(chunk.encoded_len().div_ceil(max_message - FRAGMENT_HEADER) <= usize::from(u16::MAX));
        let back = through_the_wire(&chunk, max_message);
        prop_assert!(check(&back).is_ok());
        prop_assert_eq!(back, chunk);
    }
}

/// Known answers shared with the browser's implementation: `testdata/frame-vectors.json`, which
/// `receiver-web/tests/frame.test.mjs` checks too, so the two sides cannot drift apart.
#[test]
fn known_answers_shared_with_the_browser() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/frame-vectors.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let unhex = |s: &serde_json::Value| -> Vec<u8> {
        let s = s.as_str().unwrap();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let hex = |b: &[u8]| -> String { b.iter().map(|b| format!("{b:02x}")).collect() };
    let stream_key = StreamKey::from_slice(&unhex(&v["stream_key_hex"])).unwrap();
    let seed: [u8; 32] = unhex(&v["signing_seed_hex"]).try_into().unwrap();
    let signing = SigningKey::from_seed(seed);
    assert_eq!(signing.verifying_key().to_base64(), v["signing_key"]);
    let stream = v["stream"].as_str().unwrap();
    let signer = ChunkSigner::new(stream, stream_key.clone(), signing);
    for case in v["chunks"].as_array().unwrap() {
        let chunk = signer.sign(
            ChunkSeq(case["seq"].as_u64().unwrap()),
            case["flags"].as_u64().unwrap() as u8,
            case["timestamp_ms"].as_u64().unwrap(),
            case["duration_ms"].as_u64().unwrap() as u32,
            Bytes::from(case["payload_utf8"].as_str().unwrap().to_string()),
        );
        assert_eq!(hex(&chunk.encode()), case["encoded_hex"], "{case}");
        let decoded = Chunk::decode(Bytes::from(unhex(&case["encoded_hex"]))).unwrap();
        decoded.verify(&stream_key).unwrap();
        let public = VerifyingKey::from_base64(v["signing_key"].as_str().unwrap()).unwrap();
        decoded
            .verify_signature(&public, &stream_key, stream)
            .unwrap();
    }
    // A relay's forgery: altered payload, tag recomputed with the stream key, signature kept.
    let forged = Chunk::decode(Bytes::from(unhex(&v["forged"]["encoded_hex"]))).unwrap();
    forged.verify(&stream_key).expect("the forged tag passes");
    let public = VerifyingKey::from_base64(v["signing_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        forged.verify_signature(&public, &stream_key, stream),
        Err(FrameError::BadSignature)
    );
    let hello = Message::Hello {
        last: Some(ChunkSeq(258)),
    }
    .encode();
    assert_eq!(hex(&hello), v["hello_258_hex"]);
    assert_eq!(hex(&Message::Keepalive.encode()), v["keepalive_hex"]);
    for bad in ["03", "030300", "0203"] {
        assert!(
            Message::decode(Bytes::from(unhex(&serde_json::Value::from(bad)))).is_err(),
            "{bad}"
        );
    }
}

/// Found by `fuzz/frame`: fragments announcing seq 5 reassembled into a chunk whose own (signed)
/// header says seq 6, and the reassembler handed it over (input: the FRAGMENT messages of an
/// encoded chunk of seq 6 with their header's seq rewritten to 5).
#[test]
fn fragments_of_one_seq_carrying_a_chunk_of_another_are_refused() {
    let chunk = signed(6, 300);
    let mut r = Reassembler::new();
    let mut last = None;
    for m in fragment(&chunk, 100).unwrap() {
        let Message::Fragment(f) = Message::decode(m).unwrap() else {
            panic!("not a fragment")
        };
        last = Some(r.handle_fragment(Fragment {
            seq: ChunkSeq(5),
            ..f
        }));
    }
    assert_eq!(
        last,
        Some(Err(FrameError::ChunkSeqMismatch {
            fragments: 5,
            chunk: 6
        }))
    );
    assert_eq!(r.in_progress(), None);
}
