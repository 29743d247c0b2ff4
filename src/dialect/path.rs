//! Request paths of the vendors' APIs.

/// Percent-encodes one path segment, exactly once: unreserved bytes, `:` and `@` stay as they
/// are (as the Anthropic SDKs and Claude Code send Bedrock and Vertex model ids), every other
/// byte becomes `%XX` (the `/` of an inference-profile ARN: `%2F`). Envoy's SigV4 signer
/// encodes the bytes sent once more for the canonical request, as AWS does on its side, so the
/// signature matches (cloud-vendors.md §1.2).
pub fn segment(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(
                HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
            ));
            out.push(char::from(
                HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

/// Decodes the percent-escapes of a path segment; `None` for a bad escape or invalid UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_encoded_once() {
        assert_eq!(
            segment("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        let arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/ab12cd";
        assert_eq!(
            segment(arn),
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile%2Fab12cd"
        );
        assert_eq!(
            segment("claude-sonnet-4-5@20250929"),
            "claude-sonnet-4-5@20250929"
        );
        assert_eq!(segment("a b%?#é"), "a%20b%25%3F%23%C3%A9");
        for s in [arn, "a b%?#é", "x"] {
            assert_eq!(decode(&segment(s)).as_deref(), Some(s));
        }
        assert_eq!(decode("%2"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None);
    }
}
