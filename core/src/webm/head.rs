//! The stream's head: the EBML header's DocType, Info's TimestampScale, and the Tracks the chunker
//! needs (which track is video, its frame duration), plus the init segment built from them.
//!
//! Invariant: the init segment keeps the EBML header, Info and Tracks bytes exactly as received;
//! only the Segment header is rewritten, to an unknown size, because a live stream has no end.

use super::ebml::{self, children, read_uint};
use super::WebmError;
use bytes::{BufMut, Bytes, BytesMut};

/// Nanoseconds per timecode unit when Info has no TimestampScale (the Matroska default).
pub(super) const DEFAULT_TIMECODE_SCALE: u64 = 1_000_000;

/// Matroska TrackType of a video track.
const TRACK_TYPE_VIDEO: u64 = 1;

/// What the chunker learned from Info and Tracks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StreamInfo {
    /// Nanoseconds per timecode unit.
    pub timecode_scale: u64,
    /// Track number of the first video track, if any.
    pub video_track: Option<u64>,
    /// The track whose frame spacing estimates a chunk's end: the video track, else the first.
    pub timing_track: Option<u64>,
    /// The timing track's DefaultDuration in nanoseconds, when declared.
    pub default_duration_ns: Option<u64>,
}

/// Checks the EBML header's DocType: "webm" or "matroska" (the default when absent).
pub(super) fn check_doc_type(body: &[u8]) -> Result<(), WebmError> {
    for child in children(body) {
        let (id, value) = child?;
        if id == ebml::ID_DOC_TYPE {
            // DocType is an ASCII string, possibly padded with NULs.
            let text = String::from_utf8_lossy(value);
            let doc = text.trim_end_matches('\0');
            if doc != "webm" && doc != "matroska" {
                return Err(WebmError::UnsupportedDocType(doc.to_string()));
            }
        }
    }
    Ok(())
}

/// Reads TimestampScale from an Info body.
pub(super) fn parse_info(body: &[u8]) -> Result<u64, WebmError> {
    let mut scale = DEFAULT_TIMECODE_SCALE;
    for child in children(body) {
        let (id, value) = child?;
        if id == ebml::ID_TIMECODE_SCALE {
            scale = read_uint(value)?;
        }
    }
    if scale == 0 {
        return Err(WebmError::Malformed("TimestampScale is 0"));
    }
    Ok(scale)
}

/// One TrackEntry's fields the chunker uses.
#[derive(Default)]
struct Track {
    number: u64,
    kind: u64,
    default_duration_ns: Option<u64>,
}

fn parse_track_entry(body: &[u8]) -> Result<Track, WebmError> {
    let mut track = Track::default();
    for child in children(body) {
        let (id, value) = child?;
        match id {
            ebml::ID_TRACK_NUMBER => track.number = read_uint(value)?,
            ebml::ID_TRACK_TYPE => track.kind = read_uint(value)?,
            ebml::ID_DEFAULT_DURATION => track.default_duration_ns = Some(read_uint(value)?),
            _ => {}
        }
    }
    if track.number == 0 {
        return Err(WebmError::Malformed("TrackEntry without a TrackNumber"));
    }
    Ok(track)
}

/// Reads the Tracks body into a [`StreamInfo`] with the given timecode scale.
pub(super) fn parse_tracks(body: &[u8], timecode_scale: u64) -> Result<StreamInfo, WebmError> {
    let mut tracks = Vec::new();
    for child in children(body) {
        let (id, value) = child?;
        if id == ebml::ID_TRACK_ENTRY {
            tracks.push(parse_track_entry(value)?);
        }
    }
    if tracks.is_empty() {
        return Err(WebmError::Malformed("Tracks holds no TrackEntry"));
    }
    let video = tracks.iter().find(|t| t.kind == TRACK_TYPE_VIDEO);
    let timing = video.or(tracks.first());
    Ok(StreamInfo {
        timecode_scale,
        video_track: video.map(|t| t.number),
        timing_track: timing.map(|t| t.number),
        default_duration_ns: timing.and_then(|t| t.default_duration_ns),
    })
}

/// EBML header + unknown-size Segment header + Info + Tracks.
pub(super) fn init_segment(ebml_header: &[u8], info: &[u8], tracks: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(ebml_header.len() + 12 + info.len() + tracks.len());
    out.put_slice(ebml_header);
    out.put_u32(ebml::ID_SEGMENT);
    out.put_slice(&ebml::UNKNOWN_SIZE_8);
    out.put_slice(info);
    out.put_slice(tracks);
    out.freeze()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn doc_type_must_be_webm_or_matroska() {
        assert!(check_doc_type(&[0x42, 0x82, 0x84, b'w', b'e', b'b', b'm']).is_ok());
        assert!(check_doc_type(&[]).is_ok());
        assert_eq!(
            check_doc_type(&[0x42, 0x82, 0x83, b'a', b'v', b'i']),
            Err(WebmError::UnsupportedDocType("avi".into()))
        );
    }

    #[test]
    fn info_scale_defaults_and_rejects_zero() {
        assert_eq!(parse_info(&[]).unwrap(), DEFAULT_TIMECODE_SCALE);
        let body = [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40];
        assert_eq!(parse_info(&body).unwrap(), 1_000_000);
        assert!(parse_info(&[0x2A, 0xD7, 0xB1, 0x80]).is_err());
    }

    #[test]
    fn finds_the_video_track() {
        // Track 1 audio, track 2 video with DefaultDuration 33,333,333 ns.
        let audio = [0xAE, 0x86, 0xD7, 0x81, 0x01, 0x83, 0x81, 0x02];
        let video = [
            0xAE, 0x8E, 0xD7, 0x81, 0x02, 0x83, 0x81, 0x01, 0x23, 0xE3, 0x83, 0x84, 0x01, 0xFC,
            0xA0, 0x55,
        ];
        let body = [&audio[..], &video[..]].concat();
        let info = parse_tracks(&body, 1_000_000).unwrap();
        assert_eq!(info.video_track, Some(2));
        assert_eq!(info.timing_track, Some(2));
        assert_eq!(info.default_duration_ns, Some(33_333_333));
        assert!(parse_tracks(&[], 1).is_err());
    }
}
