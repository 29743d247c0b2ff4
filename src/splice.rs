//! Splice edits: insertions at byte offsets of the original body. The gateway never re-serializes
//! a body; everything it does not own stays byte-identical.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Offset in the original body before which `bytes` are inserted.
    pub at: usize,
    pub bytes: Vec<u8>,
}

/// Applies edits sorted by offset to `body[..end]`, where `end` is the offset of the last edit,
/// and returns `end` with the replacement for that prefix. The rest of the body is unchanged, so
/// the filter only rewrites the head of Envoy's buffer. Offsets past the body are clamped.
pub fn apply_prefix(body: &[u8], edits: &[Edit]) -> (usize, Vec<u8>) {
    let end = edits.last().map_or(0, |e| e.at.min(body.len()));
    let added: usize = edits.iter().map(|e| e.bytes.len()).sum();
    let mut out = Vec::with_capacity(end + added);
    let mut from = 0;
    for e in edits {
        let at = e.at.max(from).min(end);
        out.extend_from_slice(body.get(from..at).unwrap_or_default());
        out.extend_from_slice(&e.bytes);
        from = at;
    }
    (end, out)
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
        Edit {
            at,
            bytes: s.as_bytes().to_vec(),
        }
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
    fn out_of_range_offsets_are_clamped() {
        assert_eq!(apply(b"ab", &[e(9, "z")]), b"abz");
    }
}
