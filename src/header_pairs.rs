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
            Some((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })() else {
            break;
        };
        pairs.push(pair);
    }
    pairs
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
