//! Chunk framing: `Message::decode`, the `Reassembler` fed an arbitrary sequence of messages, and
//! `Chunk::decode`, with the round trips that must hold.
//!
//! Input: records `op: u8 | len: u16 BE | len bytes`, so seeds can hold real encoded messages:
//! op % 3 == 0 feeds the bytes as one data-channel message to the reassembler, op % 3 == 1 decodes
//! them as an encoded chunk, op % 3 == 2 builds a real chunk from them (fields read with
//! `arbitrary`), fragments it at an arbitrary message size and feeds every fragment.
#![no_main]

use arbitrary::Unstructured;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ownstream_core::frame::{
    fragment, Chunk, ChunkSigner, Message, Reassembler, SigningKey, StreamKey, MAX_CHUNK_LEN,
};
use ownstream_core::ids::ChunkSeq;

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut reassembler = Reassembler::new();
    while rest.len() >= 3 {
        let op = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let record = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match op % 3 {
            0 => feed_message(&mut reassembler, record),
            1 => decode_chunk(record),
            _ => feed_real_chunk(&mut reassembler, record),
        }
    }
});

/// One message: whatever decodes re-encodes to the same bytes; the reassembler never yields a
/// chunk over the limit, and holds nothing after an error.
fn feed_message(reassembler: &mut Reassembler, record: &[u8]) {
    let Ok(msg) = Message::decode(Bytes::copy_from_slice(record)) else {
        return;
    };
    assert_eq!(msg.encode(), record, "decode then encode changed {msg:?}");
    let Message::Fragment(frag) = msg else {
        return;
    };
    let seq = frag.seq;
    match reassembler.handle_fragment(frag) {
        Ok(Some(chunk)) => {
            assert_eq!(chunk.seq, seq);
            assert!(chunk.encoded_len() <= MAX_CHUNK_LEN);
            assert_eq!(reassembler.in_progress(), None);
            let again = Chunk::decode(chunk.encode()).expect("a reassembled chunk re-decodes");
            assert_eq!(again, chunk);
        }
        Ok(None) => assert_eq!(reassembler.in_progress(), Some(seq)),
        Err(_) => assert_eq!(reassembler.in_progress(), None),
    }
}

/// Whatever decodes as a chunk re-encodes to the same bytes.
fn decode_chunk(record: &[u8]) {
    if let Ok(chunk) = Chunk::decode(Bytes::copy_from_slice(record)) {
        assert_eq!(chunk.encode(), record);
        assert_eq!(chunk.encoded_len(), record.len());
    }
}

/// A real chunk, cut at an arbitrary message size: an idle reassembler gives it back whole, at the
/// last fragment and not before, and its tag verifies.
fn feed_real_chunk(reassembler: &mut Reassembler, record: &[u8]) {
    let mut u = Unstructured::new(record);
    let (Ok(seq), Ok(flags), Ok(timestamp_ms), Ok(duration_ms), Ok(max_message)) = (
        u.arbitrary::<u64>(),
        u.arbitrary::<u8>(),
        u.arbitrary::<u64>(),
        u.arbitrary::<u32>(),
        u.int_in_range::<usize>(0..=20_000),
    ) else {
        return;
    };
    let payload = Bytes::copy_from_slice(u.take_rest());
    let signer = ChunkSigner::new("fuzz", StreamKey::new(KEY), SigningKey::from_seed([7; 32]));
    let chunk = signer.sign(ChunkSeq(seq), flags, timestamp_ms, duration_ms, payload);
    let Ok(pieces) = fragment(&chunk, max_message) else {
        return;
    };
    let idle = reassembler.in_progress().is_none();
    let last = pieces.len() - 1;
    for (i, piece) in pieces.into_iter().enumerate() {
        assert!(piece.len() <= max_message);
        let Ok(Message::Fragment(frag)) = Message::decode(piece) else {
            panic!("fragment() made a message that does not decode");
        };
        let got = reassembler.handle_fragment(frag);
        if !idle {
            // A chunk in progress before: this one may be refused, which resets the reassembler.
            continue;
        }
        match got {
            Ok(Some(whole)) if i == last => {
                assert_eq!(whole, chunk);
                whole.verify(signer.stream_key()).expect("the tag verifies");
                whole
                    .verify_signature(
                        &signer.verifying_key(),
                        signer.stream_key(),
                        signer.stream(),
                    )
                    .expect("the signature verifies");
            }
            Ok(None) if i < last => {}
            other => panic!("fragment {i} of {}: {other:?}", last + 1),
        }
    }
}
