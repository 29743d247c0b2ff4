//! Splice edits: replacements of byte ranges of the original body (most are pure insertions).
//! The gateway never re-serializes a body; everything it does not own stays byte-identical.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Offset in the original body where `remove` bytes are replaced by `bytes`.
    pub at: usize,
    pub remove: usize,
    pub bytes: Vec<u8>,
}

impl Edit {
    pub fn insert(at: usize, bytes: Vec<u8>) -> Edit {
        Edit {
            at,
            remove: 0,
            bytes,
        }
    }
}

/// The head of `body` that non-overlapping edits sorted by offset touch, as the pieces of its
/// replacement in order (original bytes and edit bytes, none copied), and that head's length in
/// the original. The rest of the body is unchanged, so the filter only rewrites the head of
/// Envoy's buffer. Offsets past the body are clamped.
pub fn head_pieces<'a>(body: &'a [u8], edits: &'a [Edit]) -> (usize, Vec<&'a [u8]>) {
    let end = edits
        .last()
        .map_or(0, |e| e.at.saturating_add(e.remove).min(body.len()));
    let mut pieces = Vec::with_capacity(2 * edits.len());
    let mut from = 0;
    for e in edits {
        let at = e.at.max(from).min(end);
        pieces.push(body.get(from..at).unwrap_or_default());
        pieces.push(e.bytes.as_slice());
        from = at.saturating_add(e.remove).min(end);
    }
    (end, pieces)
}

/// The head of `body` the edits touch (see [`head_pieces`]) with the edits applied, and its
/// length in the original.
pub fn apply_prefix(body: &[u8], edits: &[Edit]) -> (usize, Vec<u8>) {
    let (end, pieces) = head_pieces(body, edits);
    (end, pieces.concat())
}

/// Applies edits sorted by offset to the whole body.
pub fn apply(body: &[u8], edits: &[Edit]) -> Vec<u8> {
    let (end, mut out) = apply_prefix(body, edits);
    out.extend_from_slice(body.get(end..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(at: usize, s: &str) -> Edit {
        Edit::insert(at, s.as_bytes().to_vec())
    }

    #[test]
    fn inserts_at_offsets() {
        let body = b"0123456789";
        assert_eq!(apply(body, &[]), body);
        assert_eq!(
            apply(body, &[e(0, "a"), e(5, "b"), e(10, "c")]),
            b"a01234b56789c"
        );
        assert_eq!(apply(body, &[e(3, "x"), e(3, "y")]), b"012xy3456789");
        let (end, head) = apply_prefix(body, &[e(2, "-"), e(4, "+")]);
        assert_eq!((end, head.as_slice()), (4, &b"01-23+"[..]));
    }

    #[test]
    fn replaces_ranges() {
        let r = |at, remove, s: &str| Edit {
            at,
            remove,
            bytes: s.as_bytes().to_vec(),
        };
        let body = br#"{"model":"a","x":1}"#;
        let edits = [r(9, 3, r#""bbb""#), e(18, ",y")];
        assert_eq!(apply(body, &edits), br#"{"model":"bbb","x":1,y}"#);
        let (end, head) = apply_prefix(body, &[r(9, 3, r#""b""#)]);
        assert_eq!((end, head.as_slice()), (12, &br#"{"model":"b""#[..]));
    }

    #[test]
    fn out_of_range_offsets_are_clamped() {
        assert_eq!(apply(b"ab", &[e(9, "z")]), b"abz");
    }
}
