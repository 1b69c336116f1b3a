//! EBML primitives: element IDs, variable-length integers, element headers, and a child iterator
//! over a complete element's body.
//!
//! Invariants: every reader checks lengths before indexing and reports malformed bytes as a
//! [`WebmError`]; "need more bytes" is `Ok(None)`, never an error, so the incremental chunker can
//! wait for the rest of a header that straddles two inputs.

use super::WebmError;

/// EBML header (level 0).
pub(super) const ID_EBML: u32 = 0x1A45_DFA3;
/// DocType, inside the EBML header.
pub(super) const ID_DOC_TYPE: u32 = 0x4282;
/// Segment (level 0).
pub(super) const ID_SEGMENT: u32 = 0x1853_8067;
/// SeekHead (level 1).
pub(super) const ID_SEEK_HEAD: u32 = 0x114D_9B74;
/// Info (level 1).
pub(super) const ID_INFO: u32 = 0x1549_A966;
/// TimestampScale, inside Info.
pub(super) const ID_TIMECODE_SCALE: u32 = 0x2A_D7B1;
/// Tracks (level 1).
pub(super) const ID_TRACKS: u32 = 0x1654_AE6B;
/// TrackEntry, inside Tracks.
pub(super) const ID_TRACK_ENTRY: u32 = 0xAE;
/// TrackNumber, inside TrackEntry.
pub(super) const ID_TRACK_NUMBER: u32 = 0xD7;
/// TrackType, inside TrackEntry (1 = video, 2 = audio).
pub(super) const ID_TRACK_TYPE: u32 = 0x83;
/// DefaultDuration in nanoseconds, inside TrackEntry.
pub(super) const ID_DEFAULT_DURATION: u32 = 0x23_E383;
/// Cluster (level 1).
pub(super) const ID_CLUSTER: u32 = 0x1F43_B675;
/// Cluster Timestamp (called Timecode in older specs).
pub(super) const ID_TIMECODE: u32 = 0xE7;
/// SimpleBlock, inside Cluster.
pub(super) const ID_SIMPLE_BLOCK: u32 = 0xA3;
/// BlockGroup, inside Cluster.
pub(super) const ID_BLOCK_GROUP: u32 = 0xA0;
/// Block, inside BlockGroup.
pub(super) const ID_BLOCK: u32 = 0xA1;
/// ReferenceBlock, inside BlockGroup: its presence means "not a keyframe".
pub(super) const ID_REFERENCE_BLOCK: u32 = 0xFB;
/// Cues (level 1).
pub(super) const ID_CUES: u32 = 0x1C53_BB6B;
/// Tags (level 1).
pub(super) const ID_TAGS: u32 = 0x1254_C367;
/// Chapters (level 1).
pub(super) const ID_CHAPTERS: u32 = 0x1043_A770;
/// Attachments (level 1).
pub(super) const ID_ATTACHMENTS: u32 = 0x1941_A469;

/// Size marker meaning "unknown size", as an 8-byte vint.
pub(super) const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// A human name for error messages.
pub(super) fn name(id: u32) -> &'static str {
    match id {
        ID_EBML => "EBML header",
        ID_SEGMENT => "Segment",
        ID_SEEK_HEAD => "SeekHead",
        ID_INFO => "Info",
        ID_TRACKS => "Tracks",
        ID_CLUSTER => "Cluster",
        ID_TIMECODE => "Cluster Timecode",
        ID_SIMPLE_BLOCK => "SimpleBlock",
        ID_BLOCK_GROUP => "BlockGroup",
        ID_CUES => "Cues",
        ID_TAGS => "Tags",
        ID_CHAPTERS => "Chapters",
        ID_ATTACHMENTS => "Attachments",
        _ => "element",
    }
}

/// Whether `id` is an element that may only appear at the top level or directly in a Segment:
/// seeing one ends an unknown-size Cluster.
pub(super) fn ends_unknown_cluster(id: u32) -> bool {
    matches!(
        id,
        ID_EBML
            | ID_SEGMENT
            | ID_SEEK_HEAD
            | ID_INFO
            | ID_TRACKS
            | ID_CLUSTER
            | ID_CUES
            | ID_TAGS
            | ID_CHAPTERS
            | ID_ATTACHMENTS
    )
}

/// An element's ID and size, and how many bytes they took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    /// Element ID, marker bits included (as IDs are conventionally written).
    pub id: u32,
    /// Body length; `None` for the "unknown size" marker.
    pub size: Option<u64>,
    /// Bytes of ID plus size field.
    pub len: usize,
}

impl Header {
    /// Whole element length (header and body), when the size is known.
    pub(super) fn total(&self) -> Option<u64> {
        self.size.map(|s| s + self.len as u64)
    }
}

/// Length of a vint from its first byte (1..=8), or `None` for 0x00 (invalid).
fn vint_len(first: u8) -> Option<usize> {
    (first != 0).then(|| first.leading_zeros() as usize + 1)
}

/// Reads a vint with its marker bit removed; `Ok(None)` when `buf` is too short.
/// Returns (value, length, all value bits set).
pub(super) fn read_vint(buf: &[u8]) -> Result<Option<(u64, usize, bool)>, WebmError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let len = vint_len(first).ok_or(WebmError::InvalidVint)?;
    if buf.len() < len {
        return Ok(None);
    }
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let mut value = u64::from(first & mask);
    for b in &buf[1..len] {
        value = (value << 8) | u64::from(*b);
    }
    let all_ones = value == (1u64 << (7 * len)) - 1;
    Ok(Some((value, len, all_ones)))
}

/// Reads an element header; `Ok(None)` when more bytes are needed.
pub(super) fn read_header(buf: &[u8]) -> Result<Option<Header>, WebmError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let id_len = match vint_len(first) {
        Some(l) if l <= 4 => l,
        _ => return Err(WebmError::InvalidId),
    };
    if buf.len() < id_len {
        return Ok(None);
    }
    let id = buf[..id_len]
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    let Some((size, size_len, unknown)) = read_vint(&buf[id_len..])? else {
        return Ok(None);
    };
    Ok(Some(Header {
        id,
        size: (!unknown).then_some(size),
        len: id_len + size_len,
    }))
}

/// Reads an unsigned integer element body (0 to 8 bytes).
pub(super) fn read_uint(body: &[u8]) -> Result<u64, WebmError> {
    if body.len() > 8 {
        return Err(WebmError::Malformed("unsigned integer longer than 8 bytes"));
    }
    Ok(body.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Writes `size` as an 8-byte vint, so sizes can be patched without moving bytes.
pub(super) fn size8(size: u64) -> [u8; 8] {
    let mut out = size.to_be_bytes();
    out[0] = 0x01;
    out
}

/// Iterates over the children of a complete element body; unknown sizes and overruns are errors.
pub(super) struct Children<'a> {
    rest: &'a [u8],
}

/// The children of `body`.
pub(super) fn children(body: &[u8]) -> Children<'_> {
    Children { rest: body }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<(u32, &'a [u8]), WebmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_child();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl<'a> Children<'a> {
    fn next_child(&mut self) -> Result<(u32, &'a [u8]), WebmError> {
        let h = read_header(self.rest)?.ok_or(WebmError::Malformed("child header cut short"))?;
        let size = h.size.ok_or(WebmError::Malformed(
            "unknown-size child of a sized element",
        ))?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(h.len))
            .filter(|end| *end <= self.rest.len())
            .ok_or(WebmError::Malformed("child element overruns its parent"))?;
        let body = &self.rest[h.len..end];
        self.rest = &self.rest[end..];
        Ok((h.id, body))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reads_vints_of_every_length() {
        assert_eq!(read_vint(&[0x81]).unwrap(), Some((1, 1, false)));
        assert_eq!(read_vint(&[0x40, 0x02]).unwrap(), Some((2, 2, false)));
        assert_eq!(read_vint(&[0xFF]).unwrap(), Some((127, 1, true)));
        assert!(read_vint(&UNKNOWN_SIZE_8).unwrap().unwrap().2);
        assert_eq!(read_vint(&size8(300)).unwrap(), Some((300, 8, false)));
        assert_eq!(read_vint(&[0x40]).unwrap(), None);
        assert_eq!(read_vint(&[0x00]), Err(WebmError::InvalidVint));
    }

    #[test]
    fn reads_headers_incrementally() {
        let bytes = [
            0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        for cut in 0..bytes.len() {
            assert_eq!(read_header(&bytes[..cut]).unwrap(), None);
        }
        let h = read_header(&bytes).unwrap().unwrap();
        assert_eq!((h.id, h.size, h.len), (ID_CLUSTER, None, 12));
        assert_eq!(read_header(&[0x08]), Err(WebmError::InvalidId));
    }

    #[test]
    fn children_reject_overruns() {
        let body = [0xD7, 0x81, 0x01, 0x83, 0x85, 0x01];
        let kids: Vec<_> = children(&body).collect();
        assert_eq!(kids[0], Ok((ID_TRACK_NUMBER, &[1u8][..])));
        assert!(kids[1].is_err());
        assert_eq!(kids.len(), 2);
    }
}
