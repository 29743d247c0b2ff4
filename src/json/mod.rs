//! A byte-level JSON scanner: it checks the structure of a document and reports the byte spans of
//! keys and values, without building a DOM and without copying. Everything the gateway edits in a
//! request body is located with it, so edits can be spliced into the original bytes.
//!
//! The scanner validates JSON structure (RFC 8259): objects, arrays, numbers, literals, string
//! boundaries, nesting and trailing data. The contents of strings it merely skips (prompt text,
//! most of a body) are not validated, so the skip can be a SIMD search; strings the gateway reads
//! (`model`, keys, block types) are fully checked. Nesting is bounded by [`MAX_DEPTH`] and never
//! recurses, so hostile input cannot exhaust the stack.

mod block;

/// Deepest nesting accepted. Real Messages API bodies stay far below it (tool schemas are the
/// deepest part); deeper documents are reported as [`ErrorKind::TooDeep`].
pub const MAX_DEPTH: usize = 512;

/// A half-open byte range `[start, end)` into the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The bytes of this span, or an empty slice if it lies outside `buf`.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A string token: the span of its contents (between the quotes) and whether it has escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str {
    pub span: Span,
    pub escaped: bool,
}

impl Str {
    /// True if the decoded string equals `want`. Raw bytes are compared unless the token has
    /// escapes, so `"mod\u0065l"` matches `model` exactly as a JSON parser upstream would see it.
    pub fn matches(&self, buf: &[u8], want: &str) -> bool {
        if self.escaped {
            unescape(self.span.of(buf)).is_some_and(|s| s == want)
        } else {
            self.span.of(buf) == want.as_bytes()
        }
    }

    /// The decoded string, or `None` if it is not valid UTF-8 or has a bad escape.
    pub fn decode(&self, buf: &[u8]) -> Option<String> {
        let raw = self.span.of(buf);
        if self.escaped {
            unescape(raw)
        } else {
            std::str::from_utf8(raw).ok().map(str::to_owned)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value.
    Eof,
    /// A byte that cannot start or continue the expected token.
    Unexpected,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes after the top-level value.
    TrailingData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
}

pub type Result<T> = std::result::Result<T, Error>;

/// The state of one object or array being iterated with [`Scanner::next_key`] /
/// [`Scanner::next_item`].
#[derive(Debug)]
pub struct Container {
    first: bool,
}

/// Sees the contents of every string a [`Scanner`] passes (keys and values, read or skipped),
/// each once: the secret detector rides on the scanner's single pass over a body.
pub trait Strings {
    fn string(&mut self, contents: Span);
}

/// A cursor over a JSON document. Methods that read a token skip leading whitespace first.
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    strings: Option<&'a mut dyn Strings>,
    /// Strings starting before this offset were shown already: values read again after a
    /// [`Scanner::seek`] back are not shown twice.
    shown_to: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Scanner {
            buf,
            pos: 0,
            strings: None,
            shown_to: 0,
        }
    }

    /// A scanner that shows `strings` every string it passes.
    pub fn observed(buf: &'a [u8], strings: &'a mut dyn Strings) -> Self {
        Scanner {
            strings: Some(strings),
            ..Scanner::new(buf)
        }
    }

    fn show(&mut self, contents: Span) {
        if let Some(sink) = self.strings.as_deref_mut() {
            if contents.start >= self.shown_to {
                self.shown_to = contents.end;
                sink.string(contents);
            }
        }
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn err<T>(&self, kind: ErrorKind) -> Result<T> {
        Err(Error {
            kind,
            offset: self.pos,
        })
    }

    fn byte(&self) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(ErrorKind::Eof),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, without consuming it.
    pub fn peek(&mut self) -> Result<u8> {
        self.skip_ws();
        self.byte()
    }

    fn expect(&mut self, want: u8) -> Result<()> {
        self.skip_ws();
        if self.byte()? == want {
            self.pos += 1;
            Ok(())
        } else {
            self.err(ErrorKind::Unexpected)
        }
    }

    /// Checks that only whitespace follows the top-level value.
    pub fn finish(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            self.err(ErrorKind::TrailingData)
        }
    }

    /// Consumes `{` and returns the state for [`Scanner::next_key`].
    pub fn enter_object(&mut self) -> Result<Container> {
        self.expect(b'{')?;
        Ok(Container { first: true })
    }

    /// Consumes `[` and returns the state for [`Scanner::next_item`].
    pub fn enter_array(&mut self) -> Result<Container> {
        self.expect(b'[')?;
        Ok(Container { first: true })
    }

    /// Advances to the next member of an object: returns its key and leaves the cursor at the
    /// value, which the caller must consume. Returns `None` after consuming the closing `}`.
    pub fn next_key(&mut self, c: &mut Container) -> Result<Option<Str>> {
        if !self.next_in(c, b'}')? {
            return Ok(None);
        }
        let key = self.string()?;
        self.expect(b':')?;
        self.skip_ws();
        Ok(Some(key))
    }

    /// Advances to the next element of an array, leaving the cursor at it; the caller must
    /// consume it. Returns `false` after consuming the closing `]`.
    pub fn next_item(&mut self, c: &mut Container) -> Result<bool> {
        let more = self.next_in(c, b']')?;
        self.skip_ws();
        Ok(more)
    }

    fn next_in(&mut self, c: &mut Container, close: u8) -> Result<bool> {
        self.skip_ws();
        let b = self.byte()?;
        if b == close {
            self.pos += 1;
            return Ok(false);
        }
        if !c.first {
            if b != b',' {
                return self.err(ErrorKind::Unexpected);
            }
            self.pos += 1;
            self.skip_ws();
            if self.byte()? == close {
                // A trailing comma.
                return self.err(ErrorKind::Unexpected);
            }
        }
        c.first = false;
        Ok(true)
    }

    /// Reads a string token; the cursor may be before whitespace and the opening quote.
    pub fn string(&mut self) -> Result<Str> {
        self.expect(b'"')?;
        let start = self.pos;
        if let Some(end) = self.short_end(start, true) {
            self.pos = end + 1;
            let span = Span { start, end };
            self.show(span);
            return Ok(Str {
                span,
                escaped: false,
            });
        }
        let mut escaped = false;
        loop {
            self.pos = find_string_special(self.buf, self.pos);
            match self.byte()? {
                b'"' => {
                    let span = Span {
                        start,
                        end: self.pos,
                    };
                    self.pos += 1;
                    self.show(span);
                    return Ok(Str { span, escaped });
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    self.escape()?;
                }
                // A raw control character inside a string.
                _ => return self.err(ErrorKind::Unexpected),
            }
        }
    }

    /// Skips a string whose contents the gateway never reads, returning the span of its contents.
    /// Prompt text is most of a body, so this is the hot path. It looks at 64 bytes at a time:
    /// the string ends at the first quote no backslash escapes, and prompt text dense with
    /// escapes (`\n`, `\"`) costs a few bit operations per escape, not a stop. The contents are
    /// not validated (the upstream does that).
    pub fn skip_string(&mut self) -> Result<Span> {
        self.expect(b'"')?;
        let start = self.pos;
        if let Some(end) = self.short_end(start, false) {
            self.pos = end + 1;
            let span = Span { start, end };
            self.show(span);
            return Ok(span);
        }
        let mut at = start;
        let mut carry = false;
        loop {
            let rest = self.buf.get(at..).unwrap_or_default();
            let (quotes, backslashes) = match rest.first_chunk::<{ block::LEN }>() {
                Some(chunk) => block::quotes_and_backslashes(chunk),
                None => block::quotes_and_backslashes(&block::padded(rest)),
            };
            let ends = quotes & !block::escaped(backslashes, &mut carry);
            if ends != 0 {
                let end = at + ends.trailing_zeros() as usize;
                self.pos = end + 1;
                let span = Span { start, end };
                self.show(span);
                return Ok(span);
            }
            if rest.len() <= block::LEN {
                self.pos = self.buf.len();
                return self.err(ErrorKind::Eof);
            }
            at += block::LEN;
        }
    }

    /// Keys and block types end within 16 bytes: where the string starting at `start` ends, if
    /// its quote comes there before any backslash (and, when `validated`, any control byte),
    /// found with one vector compare.
    fn short_end(&self, start: usize, validated: bool) -> Option<usize> {
        let head = self.buf.get(start..)?.first_chunk::<16>()?;
        let (quotes, stops) = if validated {
            block::quotes_and_stops_16(head)
        } else {
            block::quotes_and_backslashes_16(head)
        };
        (quotes != 0 && quotes.trailing_zeros() < stops.trailing_zeros())
            .then(|| start + quotes.trailing_zeros() as usize)
    }

    fn escape(&mut self) -> Result<()> {
        match self.byte()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
            b'u' => {
                self.pos += 1;
                for _ in 0..4 {
                    if !self.byte()?.is_ascii_hexdigit() {
                        return self.err(ErrorKind::Unexpected);
                    }
                    self.pos += 1;
                }
            }
            _ => return self.err(ErrorKind::Unexpected),
        }
        Ok(())
    }

    /// Skips one value of any type and returns its span.
    pub fn value(&mut self) -> Result<Span> {
        self.skip_ws();
        let start = self.pos;
        match self.byte()? {
            b'{' | b'[' => self.container()?,
            _ => self.scalar()?,
        }
        Ok(Span {
            start,
            end: self.pos,
        })
    }

    /// Reads `true` or `false`; anything else is `None` (and is skipped).
    pub fn bool_value(&mut self) -> Result<Option<bool>> {
        let span = self.value()?;
        Ok(match span.of(self.buf) {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        })
    }

    fn scalar(&mut self) -> Result<()> {
        match self.byte()? {
            b'"' => self.skip_string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.err(ErrorKind::Unexpected),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let end = self.pos + word.len();
        match self.buf.get(self.pos..end) {
            Some(got) if got == word => {
                self.pos = end;
                Ok(())
            }
            Some(_) => self.err(ErrorKind::Unexpected),
            None => self.err(ErrorKind::Eof),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.buf.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<()> {
        if self.byte()? == b'-' {
            self.pos += 1;
        }
        match self.byte()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return self.err(ErrorKind::Unexpected),
        }
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return self.err(ErrorKind::Unexpected);
            }
        }
        if let Some(b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.buf.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return self.err(ErrorKind::Unexpected);
            }
        }
        Ok(())
    }

    /// Moves the cursor to `pos`, to read again a value skipped before.
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    /// Skips one value like [`Scanner::value`] and says whether an object inside it has a key
    /// that may be `key`: `key` itself, or any key at least as long with an escape in it (an
    /// escape could spell `key`). Just as fast as skipping: the caller reads the value again
    /// only when it must.
    pub fn value_has_key(&mut self, key: &str) -> Result<bool> {
        self.skip_ws();
        if !matches!(self.byte()?, b'{' | b'[') {
            self.scalar()?;
            return Ok(false);
        }
        let (buf, key) = (self.buf, key.as_bytes());
        let mut found = false;
        self.container_seeing(&mut |span| {
            let raw = span.of(buf);
            found |= raw.len() >= key.len() && (raw == key || raw.contains(&b'\\'));
        })?;
        Ok(found)
    }

    fn container(&mut self) -> Result<()> {
        self.container_seeing(&mut |_| {})
    }

    /// Skips an object or array without recursion or allocation, showing `on_key` the span of
    /// every object key: `levels` records, per open level, whether it is an object (members
    /// need a key) or an array.
    fn container_seeing(&mut self, on_key: &mut impl FnMut(Span)) -> Result<()> {
        let mut levels = Levels::default();
        let mut just_opened;
        // Invariant at the top of the loop: the cursor is at a `{` or `[` to enter.
        'enter: loop {
            if !levels.push(self.byte()? == b'{') {
                return self.err(ErrorKind::TooDeep);
            }
            self.pos += 1;
            just_opened = true;
            loop {
                let Some(is_object) = levels.top() else {
                    return Ok(());
                };
                let close = if is_object { b'}' } else { b']' };
                self.skip_ws();
                let b = self.byte()?;
                if b == close {
                    self.pos += 1;
                    levels.pop();
                    if levels.is_empty() {
                        return Ok(());
                    }
                    just_opened = false;
                    continue;
                }
                if !just_opened {
                    if b != b',' {
                        return self.err(ErrorKind::Unexpected);
                    }
                    self.pos += 1;
                }
                just_opened = false;
                if is_object {
                    on_key(self.skip_string()?);
                    self.expect(b':')?;
                }
                self.skip_ws();
                match self.byte()? {
                    b'{' | b'[' => continue 'enter,
                    _ => self.scalar()?,
                }
            }
        }
    }
}

/// A stack of up to [`MAX_DEPTH`] booleans (object or array), one bit per level.
#[derive(Default)]
struct Levels {
    bits: [u64; MAX_DEPTH / 64],
    depth: usize,
}

impl Levels {
    /// Pushes a level; false when the stack is full.
    fn push(&mut self, object: bool) -> bool {
        let Some(word) = self.bits.get_mut(self.depth / 64) else {
            return false;
        };
        let bit = 1u64 << (self.depth % 64);
        if object {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        self.depth += 1;
        true
    }

    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        let word = self.bits.get(d / 64)?;
        Some(word & (1u64 << (d % 64)) != 0)
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn is_empty(&self) -> bool {
        self.depth == 0
    }
}

/// Validates a whole document.
pub fn validate(buf: &[u8]) -> Result<()> {
    let mut s = Scanner::new(buf);
    s.value()?;
    s.finish()
}

/// Index of the first `"`, `\` or control byte at or after `i` (or `buf.len()`), eight bytes at
/// a time: prompt text is most of a request body, so this loop is the scanner's hot path.
fn find_string_special(buf: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = buf.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let w = u64::from_le_bytes(*chunk);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // Classic SWAR tests: a byte is flagged if it is zero (after the XOR) or below 0x20.
        // Only the lowest flag is exact, which is the one used.
        let flags = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = buf.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    buf.len()
}

/// Decodes the contents of a JSON string (without quotes). `None` on a bad escape, a lone
/// surrogate or invalid UTF-8.
pub fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *raw.get(i)?;
        i += 1;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i..i + 2)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(raw.get(i + 2..i + 6)?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                };
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(simple);
    }
    String::from_utf8(out).ok()
}

fn hex4(h: &[u8]) -> Option<u32> {
    // from_str_radix alone would also take a sign (`\u+041`), which JSON does not.
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let s = std::str::from_utf8(h).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Appends `s` to `out` as a JSON string literal, quotes included.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) {
        assert_eq!(validate(s.as_bytes()), Ok(()), "should accept {s:?}");
        assert!(serde_json::from_str::<serde_json::Value>(s).is_ok());
    }

    fn bad(s: &str) {
        assert!(validate(s.as_bytes()).is_err(), "should reject {s:?}");
    }

    #[test]
    fn accepts_valid_documents() {
        for s in [
            "{}",
            "[]",
            " { } ",
            "0",
            "-0.5e+10",
            "1E5",
            "\"a\\u00e9\\n\"",
            "true",
            "null",
            r#"{"a":[1,2,{"b":null}],"c":"d\"e","f":{}}"#,
            "[[[[]]],[{}]]",
            "\"é😀\"",
            "{\"k\" : [ true , false ] }",
        ] {
            ok(s);
        }
    }

    #[test]
    fn rejects_invalid_documents() {
        for s in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[,1]",
            "{,}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            "\"abc",
            "{} {}",
            "[1 2]",
            "{\"a\" 1}",
            "{1:2}",
            "]",
            "[}",
            "{]",
        ] {
            bad(s);
        }
    }

    #[test]
    fn skipped_strings_are_not_validated_but_read_ones_are() {
        for s in ["\"a\\x\"", "\"a\\u12g4\"", "\"tab\there\""] {
            assert_eq!(validate(s.as_bytes()), Ok(()), "{s:?}");
            assert!(Scanner::new(s.as_bytes()).string().is_err(), "{s:?}");
        }
        // Short-string fast path: a backslash before the quote (with a later byte that would be
        // a false SWAR flag) must not be mistaken for a plain end.
        let mut sc = Scanner::new(br#""a\"b\"c\\" "#);
        sc.skip_string().unwrap();
        assert_eq!(sc.pos(), 11);
        // An escaped quote does not end a skipped string; an escaped backslash does not escape.
        for (doc, end) in [(r#""a\"b" "#, 6), (r#""a\\" "#, 5), (r#""\\\"" "#, 6)] {
            let mut sc = Scanner::new(doc.as_bytes());
            sc.skip_string().unwrap();
            assert_eq!(sc.pos(), end, "{doc}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded_without_recursion() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let err = validate(deep.as_bytes()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::TooDeep);
        let fine = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(validate(fine.as_bytes()), Ok(()));
    }

    #[test]
    fn finds_keys_inside_skipped_values() {
        let has = |doc: &str| {
            let mut s = Scanner::new(doc.as_bytes());
            let found = s.value_has_key("cache_control").unwrap();
            s.finish().unwrap();
            found
        };
        assert!(has(r#"[{"a":[{"b":1,"cache_control":{}}]}]"#));
        assert!(has(r#"{ "cache_control" :null}"#));
        // An escape could spell the key: reported, the caller reads the value properly.
        assert!(has(r#"[{"cache\u005fcontrol":{}}]"#));
        assert!(!has(r#"[{"a\n":{}}]"#), "shorter than the key");
        assert!(!has(r#"[{"text":"\"cache_control\": 1"},"cache_control"]"#));
        assert!(!has(r#"[{"cache_controls":1,"xcache_control":2}]"#));
        assert!(!has(r#""cache_control""#));
        let mut s = Scanner::new(br#"[{"cache_control":1}"#);
        assert!(s.value_has_key("cache_control").is_err(), "unterminated");
    }

    #[test]
    fn iterates_members_and_items_with_spans() {
        let doc = br#"{"a": [1, "x"], "b\u0021": {"c": true}}"#;
        let mut s = Scanner::new(doc);
        let mut obj = s.enter_object().unwrap();
        let k = s.next_key(&mut obj).unwrap().unwrap();
        assert!(k.matches(doc, "a"));
        let mut arr = s.enter_array().unwrap();
        assert!(s.next_item(&mut arr).unwrap());
        assert_eq!(s.value().unwrap().of(doc), b"1");
        assert!(s.next_item(&mut arr).unwrap());
        assert_eq!(s.value().unwrap().of(doc), b"\"x\"");
        assert!(!s.next_item(&mut arr).unwrap());
        let k = s.next_key(&mut obj).unwrap().unwrap();
        assert!(k.escaped && k.matches(doc, "b!"));
        assert_eq!(s.value().unwrap().of(doc), br#"{"c": true}"#);
        assert!(s.next_key(&mut obj).unwrap().is_none());
        assert_eq!(s.finish(), Ok(()));
    }

    #[test]
    fn finds_specials_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x01, 0x1f] {
                    let mut v = vec![b'a'; len];
                    v[at] = special;
                    assert_eq!(find_string_special(&v, 0), at);
                }
            }
            assert_eq!(find_string_special(&vec![0xffu8; len], 0), len);
        }
    }

    #[test]
    fn unescapes_like_serde() {
        for s in [
            r#""plain""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\ud83d\ude00""#,
        ] {
            let raw = &s.as_bytes()[1..s.len() - 1];
            let want: String = serde_json::from_str(s).unwrap();
            assert_eq!(unescape(raw).as_deref(), Some(want.as_str()));
        }
        assert_eq!(unescape(br"\ud83d"), None);
        assert_eq!(unescape(br"\q"), None);
        // The json fuzz target fails on these (spotted in review, seeded in tests/fuzz_smoke.rs).
        assert_eq!(unescape(br"\u+041"), None);
        assert_eq!(unescape(br"\ud83d\u+e00"), None);
        assert_eq!(unescape(br"\u-041"), None);
    }

    #[test]
    fn write_string_round_trips() {
        for s in ["", "a\"b\\c", "line\nfeed\u{1}", "é😀"] {
            let mut out = Vec::new();
            write_string(&mut out, s);
            assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
        }
    }
}
