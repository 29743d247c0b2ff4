//! A bounded piece of a JSON string, decoded, with the body offset of every decoded byte: rules
//! match what the upstream will read (`\n` inside a PEM block, `\u002d` for `-`), and what they
//! match maps back to the exact raw bytes to report or replace. Only this window is decoded,
//! never the body.

/// What a byte that no rule can match decodes to: anything that is not ASCII (secrets are), a
/// bad escape. One byte for one character keeps every offset mappable.
pub const OTHER: u8 = 0x01;

#[derive(Debug, Default)]
pub struct Window {
    /// The decoded bytes, all ASCII.
    pub text: Vec<u8>,
    /// `raw[i]`: body offset where decoded byte `i` starts; one more entry for the end.
    pub raw: Vec<usize>,
}

impl Window {
    /// Decodes the string contents `body[from..end]` (`from` at a character, not inside an
    /// escape) into at most `max` bytes.
    pub fn fill(&mut self, body: &[u8], from: usize, end: usize, max: usize) {
        self.text.clear();
        self.raw.clear();
        let end = end.min(body.len());
        let mut i = from;
        while i < end && self.text.len() < max {
            let (byte, len) = decode_at(body, i, end);
            self.text.push(byte);
            self.raw.push(i);
            i += len;
        }
        self.raw.push(i);
    }

    /// The window as text (always valid: every byte is ASCII).
    pub fn str(&self) -> &str {
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// The body span of decoded bytes `start..end`.
    pub fn span(&self, start: usize, end: usize) -> crate::json::Span {
        let at = |i: usize| self.raw.get(i).or(self.raw.last()).copied().unwrap_or(0);
        crate::json::Span {
            start: at(start),
            end: at(end),
        }
    }
}

/// The byte the character at `body[i]` decodes to, and its raw length.
pub fn decode_at(body: &[u8], i: usize, end: usize) -> (u8, usize) {
    let Some(&b) = body.get(i) else {
        return (OTHER, 1);
    };
    if b != b'\\' {
        return (if b.is_ascii() { b } else { OTHER }, 1);
    }
    let simple = match body.get(i + 1) {
        Some(b'n') => b'\n',
        Some(b't') => b'\t',
        Some(b'r') => b'\r',
        Some(b'b') => 0x08,
        Some(b'f') => 0x0c,
        Some(b'"') => b'"',
        Some(b'\\') => b'\\',
        Some(b'/') => b'/',
        Some(b'u') => return unicode(body, i, end),
        _ => return (OTHER, 1),
    };
    (simple, 2)
}

/// A `\uXXXX` escape (a surrogate pair is one character, 12 bytes).
fn unicode(body: &[u8], i: usize, end: usize) -> (u8, usize) {
    let Some(c) = hex4(body, i + 2, end) else {
        return (OTHER, 1);
    };
    if (0xD800..0xDC00).contains(&c)
        && body.get(i + 6) == Some(&b'\\')
        && body.get(i + 7) == Some(&b'u')
        && hex4(body, i + 8, end).is_some_and(|low| (0xDC00..0xE000).contains(&low))
    {
        return (OTHER, 12);
    }
    match u8::try_from(c) {
        Ok(b) if b.is_ascii() => (b, 6),
        _ => (OTHER, 6),
    }
}

fn hex4(body: &[u8], at: usize, end: usize) -> Option<u32> {
    if at + 4 > end {
        return None;
    }
    let digits = body.get(at..at + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Whether `body[j]` is a character of its own, not the byte after an escaping backslash: the
/// backslashes right before it (back to `start`) are even in number.
pub fn starts_char(body: &[u8], start: usize, j: usize) -> bool {
    let run = body
        .get(start..j)
        .unwrap_or_default()
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    run % 2 == 0
}
