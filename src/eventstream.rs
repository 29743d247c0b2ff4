//! Bedrock's streaming answer (`application/vnd.amazon.eventstream`, InvokeModelWithResponseStream)
//! turned into Anthropic SSE as it arrives. Body chunks split frames anywhere (mid-prelude too)
//! or carry several; each call writes the SSE of the frames the chunk completes, and only the
//! unfinished frame is carried (at most one frame, [`MAX_FRAME`] bytes).
//!
//! A frame (big-endian): `total_length u32 | headers_length u32 | prelude_crc u32 | headers |
//! payload | message_crc u32`, both CRCs CRC-32/IEEE (the prelude's over bytes 0..8, the
//! message's over everything before it). A `chunk` event's payload is
//! `{"bytes":"<base64 of one Anthropic event's JSON>","p":"<padding>"}`; it becomes
//! `event: <type>\ndata: <json>\n\n`, with Bedrock's `amazon-bedrock-invocationMetrics` member
//! read into [`Transcoder::metrics`] and removed. Exceptions, upstream errors and any framing
//! problem become one Anthropic `error` event, and the stream ends there.
//!
//! No CRC or base64 crate, as measured (x64 instructions in V8's optimizing tier, the engine
//! Envoy embeds): wasm has no carry-less multiply, so `crc32fast` runs slice-by-16 tables there
//! too, and [`crc32`] here takes about 1,600 instructions for a 239-byte frame against its 2,000
//! (natively they are even); base64 is decoded 16 characters per step with wasm SIMD, about 925
//! instructions for a 120-character chunk against 1,530 with the `base64` crate (natively, with
//! a table, about even again), and leniently (padding optional) on every target alike.

use crate::json::{self, Scanner};

/// Largest frame accepted. Bedrock's biggest chunk carries 1,000,000 bytes, 1,333,336 once in
/// base64, plus the padding, the JSON around them and the headers (well under 1 KiB in practice,
/// 128 KiB by botocore's limit): 2 MiB holds that with room, and is what a broken or hostile
/// upstream can make one stream hold.
pub const MAX_FRAME: usize = 2 << 20;

// The error event says so.
const _: () = assert!(MAX_FRAME == 2 << 20);

/// The largest buffer kept between frames: typical frames are a few hundred bytes, and a stream
/// that once carried a large one does not hold its memory to the end.
const KEPT: usize = 64 << 10;

/// Length, headers length and their CRC.
const PRELUDE: usize = 12;
/// The prelude and the message CRC.
const OVERHEAD: usize = PRELUDE + 4;

/// The member Bedrock adds to the last event, which no Anthropic client expects.
const METRICS_KEY: &str = "amazon-bedrock-invocationMetrics";

/// Why a stream was cut short, for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A prelude or message checksum did not match.
    Crc,
    /// A frame claimed more than [`MAX_FRAME`] bytes.
    TooLarge,
    /// The body ended inside a frame.
    Truncated,
    /// Bad lengths or headers, or a payload that is not the expected JSON and base64.
    Malformed,
    /// The upstream sent an exception or error frame.
    Exception,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Crc => "crc",
            Failure::TooLarge => "too_large",
            Failure::Truncated => "truncated",
            Failure::Malformed => "malformed",
            Failure::Exception => "exception",
        }
    }
}

/// Usage Bedrock reported in `amazon-bedrock-invocationMetrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationMetrics {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_write_input_tokens: Option<u64>,
}

/// A framing problem: what the error event says (never upstream bytes) and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Broken {
    failure: Failure,
    message: &'static str,
}

const CRC_MISMATCH: Broken = Broken {
    failure: Failure::Crc,
    message: "The upstream's event stream is corrupt (checksum mismatch); the response ends here.",
};
const TOO_LARGE: Broken = Broken {
    failure: Failure::TooLarge,
    message: "The upstream's event stream has a frame larger than the gateway accepts (2 MiB); the response ends here.",
};
const TRUNCATED: Broken = Broken {
    failure: Failure::Truncated,
    message: "The upstream's event stream ended in the middle of a frame; the response ends here.",
};
const BAD_LENGTH: Broken = malformed(
    "The upstream's event stream is malformed (impossible frame length); the response ends here.",
);
const BAD_HEADERS: Broken = malformed(
    "The upstream's event stream is malformed (bad frame headers); the response ends here.",
);
const BAD_PAYLOAD: Broken = malformed(
    "The upstream's event stream is malformed (a chunk payload is not JSON); the response ends here.",
);
const BAD_BASE64: Broken = malformed(
    "The upstream's event stream is malformed (a chunk is not base64); the response ends here.",
);
const BAD_EVENT: Broken = malformed(
    "The upstream's event stream is malformed (an event is not valid JSON); the response ends here.",
);

const fn malformed(message: &'static str) -> Broken {
    Broken {
        failure: Failure::Malformed,
        message,
    }
}

/// The incremental transcoder of one response body.
#[derive(Debug, Default)]
pub struct Transcoder {
    /// The unfinished frame carried from earlier chunks (its prelude included).
    carry: Vec<u8>,
    /// The carried frame's length once its prelude has been checked; 0 before.
    need: usize,
    failure: Option<Failure>,
    metrics: Option<InvocationMetrics>,
    /// The decoded event JSON, reused from frame to frame.
    decoded: Vec<u8>,
    /// Byte ranges of `decoded` to remove, reused.
    cuts: Vec<(usize, usize)>,
}

impl Transcoder {
    pub fn new() -> Transcoder {
        Transcoder::default()
    }

    /// Decodes the frames `chunk` completes, appending their SSE form to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        if self.failure.is_some() || chunk.is_empty() {
            return;
        }
        // The SSE of a frame is never much longer than the frame.
        out.reserve(chunk.len() + 256);
        if !self.carry.is_empty() {
            if self.need == 0 {
                let take = (PRELUDE - self.carry.len().min(PRELUDE)).min(chunk.len());
                let (head, rest) = chunk.split_at(take);
                self.carry.extend_from_slice(head);
                chunk = rest;
                let Some(prelude) = self.carry.first_chunk::<PRELUDE>() else {
                    return;
                };
                match check_prelude(prelude) {
                    Ok(total) => {
                        self.need = total;
                        self.carry.reserve_exact(total - PRELUDE);
                    }
                    Err(b) => return self.fail(b, out),
                }
            }
            let take = (self.need - self.carry.len()).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            self.carry.extend_from_slice(head);
            chunk = rest;
            if self.carry.len() < self.need {
                return;
            }
            let mut frame = std::mem::take(&mut self.carry);
            self.frame(&frame, out);
            self.need = 0;
            // The allocation is kept for the next carried frame, unless it is a large one's.
            if self.failure.is_none() && frame.capacity() <= KEPT {
                frame.clear();
                self.carry = frame;
            }
        }
        while self.failure.is_none() {
            let Some(prelude) = chunk.first_chunk::<PRELUDE>() else {
                self.carry.extend_from_slice(chunk);
                return;
            };
            let total = match check_prelude(prelude) {
                Ok(total) => total,
                Err(b) => return self.fail(b, out),
            };
            let Some((frame, rest)) = chunk.split_at_checked(total) else {
                self.need = total;
                self.carry.reserve_exact(total);
                self.carry.extend_from_slice(chunk);
                return;
            };
            self.frame(frame, out);
            chunk = rest;
        }
    }

    /// The upstream body ended: a partial frame left over becomes an error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.failure.is_none() && !self.carry.is_empty() {
            self.fail(TRUNCATED, out);
        }
    }

    /// Usage Bedrock reported in `amazon-bedrock-invocationMetrics` (usually on message_stop);
    /// the last report wins.
    pub fn metrics(&self) -> Option<&InvocationMetrics> {
        self.metrics.as_ref()
    }

    /// Why the stream was cut short, if it was.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Bytes carried between chunks (at most one frame).
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    fn fail(&mut self, b: Broken, out: &mut Vec<u8>) {
        write_error(out, "api_error", b.message);
        self.failure = Some(b.failure);
        self.carry = Vec::new();
        self.need = 0;
    }

    /// One whole frame, its prelude already checked.
    fn frame(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        if let Err(b) = self.try_frame(frame, out) {
            self.fail(b, out);
        }
    }

    fn try_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), Broken> {
        let (body, crc) = frame.split_last_chunk::<4>().ok_or(BAD_LENGTH)?;
        let (prelude, rest) = body.split_first_chunk::<PRELUDE>().ok_or(BAD_LENGTH)?;
        let [_, _, _, _, h0, h1, h2, h3, c0, c1, c2, c3] = *prelude;
        // The prelude's CRC is the running CRC after its first 8 bytes; the message CRC
        // covers the prelude CRC too.
        let running = u32::from_be_bytes([c0, c1, c2, c3]);
        if crc32(running, body.get(8..).unwrap_or_default()) != u32::from_be_bytes(*crc) {
            return Err(CRC_MISMATCH);
        }
        let headers_len = u32::from_be_bytes([h0, h1, h2, h3]) as usize;
        let (headers, payload) = rest.split_at_checked(headers_len).ok_or(BAD_LENGTH)?;
        if strip(headers, CHUNK_HEADERS).is_some_and(<[u8]>::is_empty) {
            return self.chunk(payload, out);
        }
        let h = Headers::parse(headers).ok_or(BAD_HEADERS)?;
        match h.message_type {
            Some(b"event") if h.event_type == Some(b"chunk") => self.chunk(payload, out),
            Some(b"exception") => {
                let name = h.exception_type.and_then(|n| std::str::from_utf8(n).ok());
                let message = exception_message(payload);
                let fallback = name.unwrap_or("The upstream reported an exception.");
                write_error(
                    out,
                    error_type(name.unwrap_or_default()),
                    message.as_deref().unwrap_or(fallback),
                );
                self.stop();
                Ok(())
            }
            Some(b"error") => {
                let message = [h.error_message, h.error_code]
                    .into_iter()
                    .flatten()
                    .find_map(|v| std::str::from_utf8(v).ok().filter(|m| !m.is_empty()))
                    .unwrap_or("The upstream reported an error.");
                write_error(out, "api_error", message);
                self.stop();
                Ok(())
            }
            // Other events (none are documented for this operation) and message types.
            _ => Ok(()),
        }
    }

    /// An exception or error event was written: nothing after it counts.
    fn stop(&mut self) {
        self.failure = Some(Failure::Exception);
        self.carry = Vec::new();
        self.need = 0;
    }

    fn chunk(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Broken> {
        let decoded = if let Some(raw) = compact_bytes(payload) {
            decode_base64(raw, &mut self.decoded)
        } else {
            let Some(b64) = bytes_member(payload).ok_or(BAD_PAYLOAD)? else {
                return Ok(());
            };
            let raw = b64.span.of(payload);
            if b64.escaped {
                // A JSON encoder may write `/` as `\/`.
                let text = json::unescape(raw).ok_or(BAD_PAYLOAD)?;
                decode_base64(text.as_bytes(), &mut self.decoded)
            } else {
                decode_base64(raw, &mut self.decoded)
            }
        };
        if !decoded {
            return Err(BAD_BASE64);
        }
        let done = emit_event(&mut self.decoded, &mut self.cuts, &mut self.metrics, out);
        if self.decoded.capacity() > KEPT {
            self.decoded = Vec::new();
        }
        done
    }
}

/// Checks a prelude: its CRC first, so a corrupt length is reported at once instead of
/// waiting for bytes that never come. Returns the frame's total length.
fn check_prelude(p: &[u8; PRELUDE]) -> Result<usize, Broken> {
    let [t0, t1, t2, t3, h0, h1, h2, h3, c0, c1, c2, c3] = *p;
    let lengths = [t0, t1, t2, t3, h0, h1, h2, h3];
    if crc32_8(lengths) != u32::from_be_bytes([c0, c1, c2, c3]) {
        return Err(CRC_MISMATCH);
    }
    let total = u32::from_be_bytes([t0, t1, t2, t3]) as usize;
    let headers = u32::from_be_bytes([h0, h1, h2, h3]) as usize;
    if total > MAX_FRAME {
        return Err(TOO_LARGE);
    }
    if total < OVERHEAD || headers > total - OVERHEAD {
        return Err(BAD_LENGTH);
    }
    Ok(total)
}

/// The headers of every chunk frame Bedrock sends, in its order: recognized whole before
/// anything is parsed.
const CHUNK_HEADERS: &[u8] = b"\x0b:event-type\x07\x00\x05chunk\x0d:content-type\x07\x00\x10application/json\x0d:message-type\x07\x00\x05event";

/// The headers this transcoder reads (string-typed; last one wins).
#[derive(Default)]
struct Headers<'a> {
    message_type: Option<&'a [u8]>,
    event_type: Option<&'a [u8]>,
    exception_type: Option<&'a [u8]>,
    error_code: Option<&'a [u8]>,
    error_message: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    /// `name_len u8 | name | type u8 | value`, repeated; `None` if a header overruns or has an
    /// unknown type.
    fn parse(mut h: &'a [u8]) -> Option<Headers<'a>> {
        let mut out = Headers::default();
        while let Some((&n, rest)) = h.split_first() {
            let (name, rest) = rest.split_at_checked(usize::from(n))?;
            let (&kind, rest) = rest.split_first()?;
            let fixed = match kind {
                0 | 1 => 0, // true, false
                2 => 1,
                3 => 2,
                4 => 4,
                5 | 8 => 8, // long, timestamp
                9 => 16,    // uuid
                6 | 7 => {
                    let (len, rest) = rest.split_first_chunk::<2>()?;
                    let (value, rest) =
                        rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
                    h = rest;
                    if kind == 7 {
                        out.set(name, value);
                    }
                    continue;
                }
                _ => return None,
            };
            h = rest.get(fixed..)?;
        }
        Some(out)
    }

    fn set(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name {
            b":message-type" => &mut self.message_type,
            b":event-type" => &mut self.event_type,
            b":exception-type" => &mut self.exception_type,
            b":error-code" => &mut self.error_code,
            b":error-message" => &mut self.error_message,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// The Anthropic error type for a Bedrock stream exception (its member name in the service
/// model; the HTTP error header spells it capitalized).
fn error_type(exception: &str) -> &'static str {
    const MAP: [(&str, &str); 6] = [
        ("throttlingException", "rate_limit_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("modelStreamErrorException", "api_error"),
        ("internalServerException", "api_error"),
        ("validationException", "invalid_request_error"),
        ("modelTimeoutException", "timeout_error"),
    ];
    MAP.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(exception))
        .map_or("api_error", |(_, t)| t)
}

/// The `message` of an exception's `{"message":"…"}` payload.
fn exception_message(payload: &[u8]) -> Option<String> {
    let mut s = Scanner::new(payload);
    let mut obj = s.enter_object().ok()?;
    let mut found = None;
    while let Some(key) = s.next_key(&mut obj).ok()? {
        if (key.matches(payload, "message") || key.matches(payload, "Message"))
            && s.peek().ok()? == b'"'
        {
            found = s.string().ok()?.decode(payload);
        } else {
            s.value().ok()?;
        }
    }
    found.filter(|m| !m.is_empty())
}

/// Appends an Anthropic `error` event.
fn write_error(out: &mut Vec<u8>, kind: &str, message: &str) {
    out.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":");
    json::write_string(out, kind);
    out.extend_from_slice(b",\"message\":");
    json::write_string(out, message);
    out.extend_from_slice(b"}}\n\n");
}

/// The base64 of a payload in Bedrock's own compact shape, `{"bytes":"…","p":"…"}` (or without
/// the padding), found without the scanner; `None` for anything else, which the scanner reads.
fn compact_bytes(payload: &[u8]) -> Option<&[u8]> {
    let rest = payload.strip_prefix(b"{\"bytes\":\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    let (b64, after) = rest.split_at(end);
    let after = after.strip_prefix(b"\"")?;
    if after == b"}" {
        return Some(b64);
    }
    let padding = after.strip_prefix(b",\"p\":\"")?.strip_suffix(b"\"}")?;
    memchr::memchr2(b'"', b'\\', padding)
        .is_none()
        .then_some(b64)
}

/// The `bytes` member of a chunk payload: `Ok(None)` if it has none (or it is not a string),
/// `None` if the payload is not a JSON object.
fn bytes_member(payload: &[u8]) -> Option<Option<json::Str>> {
    let mut s = Scanner::new(payload);
    let mut obj = s.enter_object().ok()?;
    let mut found = None;
    while let Some(key) = s.next_key(&mut obj).ok()? {
        if key.matches(payload, "bytes") && s.peek().ok()? == b'"' {
            // Base64 has no quote or backslash: the fast skip finds its end, and a backslash
            // in it (an escaped `/`) sends it to the slow path.
            let span = s.skip_string().ok()?;
            let escaped = memchr::memchr(b'\\', span.of(payload)).is_some();
            found = Some(json::Str { span, escaped });
        } else {
            s.value().ok()?;
        }
    }
    s.finish().ok()?;
    Some(found)
}

/// Writes the SSE event of one decoded Anthropic event JSON (`doc`), reading and removing the
/// invocation metrics. An event without a usable `type` is skipped.
fn emit_event(
    doc: &mut Vec<u8>,
    cuts: &mut Vec<(usize, usize)>,
    metrics: &mut Option<InvocationMetrics>,
    out: &mut Vec<u8>,
) -> Result<(), Broken> {
    let kind = match delta_shape(doc) {
        Some(()) => {
            cuts.clear();
            Kind::Delta
        }
        None => match walk(doc, cuts, metrics)? {
            Some(kind) => kind,
            None => return Ok(()),
        },
    };
    // The structure was checked (walk, or the delta's fixed shape); string contents are passed
    // on as the upstream sent them, as every other answer is.
    let line_breaks = memchr::memchr2(b'\r', b'\n', doc).is_some();
    match kind {
        Kind::Delta => out.extend_from_slice(b"event: content_block_delta\ndata: "),
        Kind::Raw(span) => {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(span.of(doc));
            out.extend_from_slice(b"\ndata: ");
        }
        Kind::Decoded(name) => {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\ndata: ");
        }
    }
    // Later cuts first, so the earlier offsets stay right.
    for &(start, end) in cuts.iter().rev() {
        if start <= end && end <= doc.len() {
            doc.drain(start..end);
        }
    }
    let json = doc.trim_ascii();
    if line_breaks {
        // Raw line breaks are whitespace between tokens: one `data:` line each, which the
        // client joins with `\n`.
        let mut rest = json;
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            let (line, tail) = rest.split_at(i);
            out.extend_from_slice(line);
            out.extend_from_slice(b"\ndata: ");
            let skip = if tail.starts_with(b"\r\n") { 2 } else { 1 };
            rest = tail.get(skip..).unwrap_or_default();
        }
        out.extend_from_slice(rest);
    } else {
        out.extend_from_slice(json);
    }
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// Most events of an answer are content deltas, serialized compactly with their members in one
/// order. Such a document is recognized here by its fixed bytes, its index and a one-string
/// delta (the string read by the scanner), at a fraction of the cost of walking it member by
/// member; the result is the walk's (valid JSON, that type, nothing to remove). `None` sends
/// any other document to [`walk`].
fn delta_shape(doc: &[u8]) -> Option<()> {
    const HEAD: &[u8] = br#"{"type":"content_block_delta","index":"#;
    let rest = strip(doc, HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && rest.first() == Some(&b'0')) {
        return None;
    }
    let rest = strip(rest.get(digits..)?, br#","delta":{"type":""#)?;
    // `<name>","<key>":` with plain names; text, the most common, in one compare.
    let rest = match strip(rest, br#"text_delta","text":"#) {
        Some(rest) => rest,
        None => {
            let name = |r: &[u8]| {
                r.iter()
                    .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                    .count()
            };
            let n = name(rest);
            let rest = strip(rest.get(n..)?, br#"",""#)?;
            let k = name(rest);
            if n == 0 || k == 0 {
                return None;
            }
            strip(rest.get(k..)?, br#"":"#)?
        }
    };
    if rest.first() != Some(&b'"') {
        return None;
    }
    let mut s = Scanner::new(rest);
    s.string().ok()?;
    (rest.get(s.pos()..)? == b"}}").then_some(())
}

/// `bytes` without the prefix `head`, compared eight bytes at a time (short constant compares
/// are a library call per compare on wasm otherwise).
fn strip<'a>(bytes: &'a [u8], head: &[u8]) -> Option<&'a [u8]> {
    let (mut a, rest) = bytes.split_at_checked(head.len())?;
    let mut b = head;
    while let (Some((x, ra)), Some((y, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            return None;
        }
        (a, b) = (ra, rb);
    }
    a.iter().zip(b).all(|(x, y)| x == y).then_some(rest)
}

/// The event name: `content_block_delta`, the raw bytes of the `type` string when it has no
/// escapes, or the decoded string.
enum Kind {
    Delta,
    Raw(json::Span),
    Decoded(String),
}

/// Walks the top level of an event, checking its structure: returns its `type` (the last one,
/// as JSON parsers read it), reads the metrics and records in `cuts` the byte ranges that
/// remove them with their comma. `Ok(None)` if there is no usable type.
fn walk(
    doc: &[u8],
    cuts: &mut Vec<(usize, usize)>,
    metrics: &mut Option<InvocationMetrics>,
) -> Result<Option<Kind>, Broken> {
    let mut s = Scanner::new(doc);
    cuts.clear();
    if s.peek().map_err(|_| BAD_EVENT)? != b'{' {
        s.value().and_then(|_| s.finish()).map_err(|_| BAD_EVENT)?;
        return Ok(None);
    }
    let mut obj = s.enter_object().map_err(|_| BAD_EVENT)?;
    let mut kind = None;
    // Where the previous member's value ends, whether a member is kept before this one, and
    // where the run of removed members at the start begins.
    let mut prev_end = s.pos();
    let mut kept = false;
    let mut leading = None;
    while let Some(key) = s.next_key(&mut obj).map_err(|_| BAD_EVENT)? {
        let key_start = key.span.start.saturating_sub(1);
        if key.matches(doc, METRICS_KEY) {
            let value = s.value().map_err(|_| BAD_EVENT)?;
            if let Some(m) = read_metrics(value.of(doc)) {
                *metrics = Some(m);
            }
            if kept {
                // `,"amazon-…":{…}` after a kept member.
                cuts.push((prev_end, value.end));
            } else {
                leading.get_or_insert(key_start);
            }
            prev_end = value.end;
            continue;
        }
        if let Some(start) = leading.take() {
            // `"amazon-…":{…},` before the first kept member.
            cuts.push((start, key_start));
        }
        kept = true;
        if key.matches(doc, "type") {
            kind = None;
            if s.peek().map_err(|_| BAD_EVENT)? == b'"' {
                let name = s.string().map_err(|_| BAD_EVENT)?;
                kind = if name.escaped {
                    // An SSE field ends at a line break: such a name is not usable.
                    name.decode(doc)
                        .filter(|n| !n.contains(['\r', '\n']))
                        .map(Kind::Decoded)
                } else {
                    Some(Kind::Raw(name.span))
                };
            } else {
                s.value().map_err(|_| BAD_EVENT)?;
            }
        } else {
            s.value().map_err(|_| BAD_EVENT)?;
        }
        prev_end = s.pos();
    }
    if let Some(start) = leading {
        // Only removed members: `{}` is left.
        cuts.push((start, prev_end));
    }
    s.finish().map_err(|_| BAD_EVENT)?;
    Ok(kind.filter(|k| match k {
        Kind::Delta => true,
        Kind::Raw(span) => !span.is_empty(),
        Kind::Decoded(name) => !name.is_empty(),
    }))
}

/// The metrics object; `None` if it is not an object.
fn read_metrics(raw: &[u8]) -> Option<InvocationMetrics> {
    let m: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw).ok()?;
    let count = |k: &str| m.get(k).and_then(serde_json::Value::as_u64);
    Some(InvocationMetrics {
        input_tokens: count("inputTokenCount"),
        output_tokens: count("outputTokenCount"),
        cache_read_input_tokens: count("cacheReadInputTokenCount"),
        cache_write_input_tokens: count("cacheWriteInputTokenCount"),
    })
}

/// CRC-32/IEEE (reflected, polynomial 0xedb88320) tables for slicing by 16: `CRC_TABLES[k][b]`
/// is what byte `b` adds to the register when `k` more bytes follow it in the block.
static CRC_TABLES: [[u32; 256]; 16] = crc_tables();

#[allow(clippy::indexing_slicing)] // Const evaluation: an index out of range fails the build.
const fn crc_tables() -> [[u32; 256]; 16] {
    let mut t = [[0u32; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Table `k`'s entry for the low byte of `x`.
#[inline(always)]
fn crc_t(k: usize, x: u32) -> u32 {
    CRC_TABLES
        .get(k)
        .and_then(|t| t.get((x & 0xff) as usize))
        .copied()
        .unwrap_or(0)
}

/// The CRC-32 of `data` continued from `crc` (the CRC of what came before; 0 to start), 16
/// bytes per step.
fn crc32(crc: u32, mut data: &[u8]) -> u32 {
    let mut r = !crc;
    while let Some((b, rest)) = data.split_first_chunk::<16>() {
        let w = r ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        r = crc_t(15, w)
            ^ crc_t(14, w >> 8)
            ^ crc_t(13, w >> 16)
            ^ crc_t(12, w >> 24)
            ^ crc_t(11, b[4].into())
            ^ crc_t(10, b[5].into())
            ^ crc_t(9, b[6].into())
            ^ crc_t(8, b[7].into())
            ^ crc_t(7, b[8].into())
            ^ crc_t(6, b[9].into())
            ^ crc_t(5, b[10].into())
            ^ crc_t(4, b[11].into())
            ^ crc_t(3, b[12].into())
            ^ crc_t(2, b[13].into())
            ^ crc_t(1, b[14].into())
            ^ crc_t(0, b[15].into());
        data = rest;
    }
    if let Some((&eight, rest)) = data.split_first_chunk::<8>() {
        r = !crc32_8_from(!r, eight);
        data = rest;
    }
    for &b in data {
        r = crc_t(0, r ^ u32::from(b)) ^ (r >> 8);
    }
    !r
}

/// The CRC-32 of 8 bytes (a prelude's lengths) in one step.
fn crc32_8(bytes: [u8; 8]) -> u32 {
    crc32_8_from(0, bytes)
}

fn crc32_8_from(crc: u32, [b0, b1, b2, b3, b4, b5, b6, b7]: [u8; 8]) -> u32 {
    let w = !crc ^ u32::from_le_bytes([b0, b1, b2, b3]);
    !(crc_t(7, w)
        ^ crc_t(6, w >> 8)
        ^ crc_t(5, w >> 16)
        ^ crc_t(4, w >> 24)
        ^ crc_t(3, u32::from(b4))
        ^ crc_t(2, u32::from(b5))
        ^ crc_t(1, u32::from(b6))
        ^ crc_t(0, u32::from(b7)))
}

/// Base64 value of each byte; 0xff for bytes outside the standard alphabet.
static BASE64_VALUES: [u8; 256] = base64_values();

#[allow(clippy::indexing_slicing)] // Const evaluation: an index out of range fails the build.
const fn base64_values() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 64 {
        t[BASE64_ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes standard base64 (padding optional, trailing bits ignored) into `dst`, replacing its
/// contents; false if `src` is not base64.
fn decode_base64(src: &[u8], dst: &mut Vec<u8>) -> bool {
    let unpadded = src
        .strip_suffix(b"==")
        .or_else(|| src.strip_suffix(b"="))
        .unwrap_or(src);
    let n = unpadded.len();
    if (n != src.len() && src.len() % 4 != 0) || n % 4 == 1 {
        return false;
    }
    let len = n / 4 * 3 + (n % 4).saturating_sub(1);
    // Room for the last 12-byte store of the vector code (8-byte ones of the table's); only
    // bytes beyond the previous length are zeroed.
    dst.resize(len + 12, 0);
    let Some(done) = decode_blocks(unpadded, dst.as_mut_slice()) else {
        return false;
    };
    let (i, mut o) = (done, done / 4 * 3);
    // The rest with a table whose entries outside the alphabet have the top bits set, checked
    // once at the end: eight characters to six bytes per step (an 8-byte store, the slack
    // taking the last two), then the last group of two to four.
    let value = |c: u8| u64::from(BASE64_VALUES.get(usize::from(c)).copied().unwrap_or(0xff));
    let mut bad = 0;
    let mut rest = unpadded.get(i..).unwrap_or_default();
    while let Some((group, tail)) = rest.split_first_chunk::<8>() {
        let v = group.map(value);
        bad |= v.iter().fold(0, |acc, x| acc | x);
        let bits = v.iter().fold(0u64, |acc, x| acc << 6 | x) << 16;
        match dst.get_mut(o..).and_then(<[u8]>::first_chunk_mut::<8>) {
            Some(to) => *to = bits.to_be_bytes(),
            None => return false,
        }
        o += 6;
        rest = tail;
    }
    for quad in rest.chunks(4) {
        let [a, b, c, d] = match *quad {
            [a, b, c, d] => [value(a), value(b), value(c), value(d)],
            [a, b, c] => [value(a), value(b), value(c), 0],
            [a, b] => [value(a), value(b), 0, 0],
            _ => return false,
        };
        bad |= a | b | c | d;
        match dst.get_mut(o..).and_then(<[u8]>::first_chunk_mut::<4>) {
            Some(to) => {
                *to = ((a << 26 | b << 20 | c << 14 | d << 8) as u32).to_be_bytes();
            }
            None => return false,
        }
        o += quad.len() - 1;
    }
    if bad & 0xc0 != 0 {
        return false;
    }
    dst.truncate(len);
    true
}

/// Decodes `src` into `dst` (which has 12 bytes of room past the decoded length) with wasm SIMD,
/// 16 characters at a time, after Muła and Lemire ("Faster Base64 Encoding and Decoding Using
/// AVX2 Instructions", 2018): the nibbles of each character index two tables whose AND is
/// non-zero outside the alphabet, and a third gives the offset from character to value. The
/// last partial block is padded with `A` (zero bits; the bytes past the end are cut later).
/// Returns how many characters it decoded (all of them; 0 without SIMD), `None` if one is
/// outside the alphabet (checked once, after the loop).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn decode_blocks(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    use core::arch::wasm32::{u8x16_splat, v128_any_true, v128_or};
    let mut bad = u8x16_splat(0);
    let mut blocks = src.chunks_exact(16);
    let mut out = dst.chunks_exact_mut(12);
    for (block, to) in (&mut blocks).zip(&mut out) {
        if let (Ok(block), Ok(to)) = (<&[u8; 16]>::try_from(block), <&mut [u8; 12]>::try_from(to)) {
            bad = v128_or(bad, decode_16(block, to));
        }
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut block = [b'A'; 16];
        if let Some(head) = block.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        let at = src.len() / 16 * 12;
        if let Some(to) = dst.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<12>) {
            bad = v128_or(bad, decode_16(&block, to));
        }
    }
    (!v128_any_true(bad)).then_some(src.len())
}

/// One block of [`decode_blocks`]; returns non-zero lanes for characters outside the alphabet.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn decode_16(block: &[u8; 16], to: &mut [u8; 12]) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::{
        i8x16, i8x16_shuffle, i16x8_shl, i32x4_dot_i16x8, u8x16, u8x16_add, u8x16_eq, u8x16_splat,
        u8x16_swizzle, u16x8_shr, u16x8_splat, u32x4_extract_lane, u32x4_splat, u64x2_extract_lane,
        v128, v128_and, v128_load, v128_or,
    };
    let lut_lo = u8x16(
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b,
        0x1a,
    );
    let lut_hi = u8x16(
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10,
    );
    // Offsets by high nibble; `/` (0x2f) shares its nibble with `+` and takes the one before.
    let lut_roll = i8x16(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    // SAFETY: `block` is 16 readable bytes; v128_load accepts unaligned addresses.
    let v = unsafe { v128_load(block.as_ptr().cast::<v128>()) };
    // A 16-bit shift and a mask: V8 has no byte shift and emulates one with five instructions.
    let hi = v128_and(u16x8_shr(v, 4), u8x16_splat(0x0f));
    let lo = v128_and(v, u8x16_splat(0x0f));
    let bad = v128_and(u8x16_swizzle(lut_lo, lo), u8x16_swizzle(lut_hi, hi));
    let slash = u8x16_eq(v, u8x16_splat(b'/'));
    let values = u8x16_add(v, u8x16_swizzle(lut_roll, u8x16_add(hi, slash)));
    // Pairs of 6-bit values into 12 bits, pairs of those into 24, then the bytes in order.
    let pairs = v128_or(
        v128_and(i16x8_shl(values, 6), u16x8_splat(0x0fc0)),
        u16x8_shr(values, 8),
    );
    let words = i32x4_dot_i16x8(pairs, u32x4_splat(0x0001_1000));
    let bytes = i8x16_shuffle::<2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, 3, 7, 11, 15>(words, words);
    let (head, tail) = to.split_at_mut(8);
    head.copy_from_slice(&u64x2_extract_lane::<0>(bytes).to_le_bytes());
    tail.copy_from_slice(&u32x4_extract_lane::<2>(bytes).to_le_bytes());
    bad
}

/// No vector code on this target: everything is left to the table.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn decode_blocks(_: &[u8], _: &mut [u8]) -> Option<usize> {
    Some(0)
}

/// Standard base64 with padding.
fn encode_base64(src: &[u8], out: &mut Vec<u8>) {
    let sym = |v: u32| {
        BASE64_ALPHABET
            .get((v & 63) as usize)
            .copied()
            .unwrap_or(b'=')
    };
    for chunk in src.chunks(3) {
        let mut b = [0u8; 3];
        if let Some(dst) = b.get_mut(..chunk.len()) {
            dst.copy_from_slice(chunk);
        }
        let [b0, b1, b2] = b;
        let v = u32::from_be_bytes([0, b0, b1, b2]);
        out.push(sym(v >> 18));
        out.push(sym(v >> 12));
        out.push(if chunk.len() > 1 { sym(v >> 6) } else { b'=' });
        out.push(if chunk.len() > 2 { sym(v) } else { b'=' });
    }
}

/// Encodes one frame with string headers (tests, fuzz seeds, benchmarks and the mocks use it).
/// Names longer than 255 bytes and values longer than 65,535 are cut to fit.
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        let name = name.as_bytes().get(..255).unwrap_or(name.as_bytes());
        let value = value.as_bytes().get(..65535).unwrap_or(value.as_bytes());
        h.push(name.len() as u8);
        h.extend_from_slice(name);
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value);
    }
    let total = OVERHEAD + h.len() + payload.len();
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    f.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(0, &f);
    f.extend_from_slice(&prelude_crc.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    let crc = crc32(0, &f);
    f.extend_from_slice(&crc.to_be_bytes());
    f
}

/// A Bedrock `chunk` event frame carrying one Anthropic event's JSON, with Bedrock's header
/// order and `p` padding.
pub fn chunk_frame(event_json: &[u8], padding: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(event_json.len() * 4 / 3 + padding.len() + 24);
    payload.extend_from_slice(b"{\"bytes\":\"");
    encode_base64(event_json, &mut payload);
    payload.extend_from_slice(b"\",\"p\":");
    json::write_string(&mut payload, padding);
    payload.push(b'}');
    encode_frame(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        &payload,
    )
}

/// A Bedrock exception frame (`name` as in the service model, e.g. `throttlingException`).
pub fn exception_frame(name: &str, message: &str) -> Vec<u8> {
    let mut payload = b"{\"message\":".to_vec();
    json::write_string(&mut payload, message);
    payload.push(b'}');
    encode_frame(
        &[
            (":exception-type", name),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        &payload,
    )
}

#[cfg(test)]
mod tests;
