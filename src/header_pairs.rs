//! The proxy-wasm ABI's serialized header map: a count, then each name's and value's length
//! (u32 little-endian), then the names and values, each followed by a NUL. Envoy hands over a
//! request's headers this way in one host call, and takes a local reply's headers this way.

/// Serializes header pairs for the host (a local reply's headers).
pub fn encode(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = |n: usize| u32::try_from(n).unwrap_or(0).to_le_bytes();
    out.extend_from_slice(&len(headers.len()));
    for (k, v) in headers {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes a serialized header map; malformed input decodes to the pairs before the damage.
pub fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    pairs(bytes)
        .0
        .into_iter()
        .map(|(k, v)| (lossy(k), lossy(v)))
        .collect()
}

/// Names and values, as the bytes they are.
pub type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The pairs of a map in this format that is exactly `bytes` (nothing missing, nothing after);
/// `None` otherwise. Envoy serializes a map or list value of a property this way too (a list:
/// its items as names, with empty values).
pub fn decode_exact(bytes: &[u8]) -> Option<Pairs<'_>> {
    let count = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)? as usize;
    let (found, end) = pairs(bytes);
    (found.len() == count && end == bytes.len()).then_some(found)
}

/// The pairs before any damage, and where the last one ended.
fn pairs(bytes: &[u8]) -> (Pairs<'_>, usize) {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let count = u32_at(0).unwrap_or(0);
    let mut pairs = Vec::with_capacity(count.min(256));
    let mut data = count.saturating_mul(8).saturating_add(4);
    for i in 0..count {
        let Some(pair) = (|| {
            let (k, v) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
            let key = bytes.get(data..data.checked_add(k)?)?;
            let value_at = data.checked_add(k)?.checked_add(1)?;
            let value = bytes.get(value_at..value_at.checked_add(v)?)?;
            data = value_at.checked_add(v)?.checked_add(1)?;
            Some((key, value))
        })() else {
            break;
        };
        pairs.push(pair);
    }
    (pairs, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let pairs = [
            (":path", "/v1/messages"),
            ("x-api-key", ""),
            ("a", "b\u{e9}"),
        ];
        let got = decode(&encode(&pairs));
        let want: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert!(decode(&[]).is_empty());
        let bytes = encode(&pairs);
        assert_eq!(decode_exact(&bytes).map(|p| p.len()), Some(3));
        assert_eq!(decode_exact(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_exact(&[bytes.as_slice(), b"x"].concat()), None);
        assert_eq!(decode_exact(&encode(&[])), Some(Vec::new()));
        assert_eq!(decode_exact(b"dev@example.com"), None);
    }

    #[test]
    fn damaged_input_keeps_what_came_before() {
        let full = encode(&[("a", "1"), ("bb", "22")]);
        for cut in 0..full.len() {
            let got = decode(&full[..cut]);
            assert!(got.len() <= 2);
            if cut < full.len() - 6 {
                assert!(got.len() < 2, "cut {cut}");
            }
        }
        // A count far beyond the data.
        let mut huge = full.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).len() <= 2);
    }
}
