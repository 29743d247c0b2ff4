//! The bodies of the fuzz targets, as plain functions over bytes. cargo-fuzz drives them on
//! nightly (`fuzz_targets/*.rs`, `make fuzz`); `tests/fuzz_smoke.rs` in the main crate drives the
//! same functions on stable over the seed corpora and mutations of them (`make test`), so the
//! targets keep compiling and running on a machine that has no nightly toolchain.
//!
//! Each function panics (an assertion) when a property of the gateway's pure core fails.

use claude_gateway::cache::{self, Locations, Settings, Ttl};
use claude_gateway::config;
use claude_gateway::cost;
use claude_gateway::eventstream::{self, MAX_FRAME, Transcoder};
use claude_gateway::json::{self, Scanner, Span};
use claude_gateway::request::{self, BodyIssue};
use claude_gateway::secrets::{self, Action, Collector, Detector, Finding, Rule, Window};
use claude_gateway::sessions::prefix;
use claude_gateway::sse::{Framer, MAX_FIELD};
use claude_gateway::tools::{self, ToolCall, ToolConfig, ToolWatch};
use claude_gateway::usage::Extraction;
use claude_gateway::{splice, sse};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The built-in price list, built once (it compiles patterns).
static PRICES: LazyLock<Vec<cost::Price>> = LazyLock::new(cost::list_prices);

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: [(&str, Target); 8] = [
    ("json", json),
    ("rewrite", rewrite),
    ("sse", sse),
    ("usage", usage),
    ("config", config),
    ("eventstream", eventstream),
    ("tools", tools),
    ("secrets", secrets),
];

/// Deeper than serde_json's own recursion limit (128), far below the scanner's (512).
const WALK_DEPTH: usize = 160;

/// Reads one value with the scanner's typed API into a `serde_json::Value`; `None` wherever a
/// JSON parser must fail (bad structure, bad string, invalid UTF-8, a number out of range).
fn walk(s: &mut Scanner, buf: &[u8], depth: usize) -> Option<Value> {
    if depth > WALK_DEPTH {
        return None;
    }
    match s.peek().ok()? {
        b'{' => {
            let mut c = s.enter_object().ok()?;
            let mut map = Map::new();
            while let Some(key) = s.next_key(&mut c).ok()? {
                let name = key.decode(buf)?;
                assert!(
                    key.matches(buf, &name),
                    "Str::matches disagrees with decode"
                );
                let v = walk(s, buf, depth + 1)?;
                // Like serde_json: a repeated key keeps its last value.
                map.insert(name, v);
            }
            Some(Value::Object(map))
        }
        b'[' => {
            let mut c = s.enter_array().ok()?;
            let mut items = Vec::new();
            while s.next_item(&mut c).ok()? {
                items.push(walk(s, buf, depth + 1)?);
            }
            Some(Value::Array(items))
        }
        b'"' => {
            let text = s.string().ok()?;
            Some(Value::String(text.decode(buf)?))
        }
        _ => {
            let span = s.value().ok()?;
            serde_json::from_slice(span.of(buf)).ok()
        }
    }
}

/// The JSON scanner against serde_json: `validate` accepts every document serde_json accepts;
/// a walk with the typed API (strings fully checked) succeeds exactly when serde_json does and
/// reads the same value; `unescape` decodes string contents as serde_json does; `inspect`
/// reads the same `model`.
pub fn json(data: &[u8]) {
    let parsed = serde_json::from_slice::<Value>(data).ok();
    let valid = json::validate(data);
    if parsed.is_some() {
        assert!(valid.is_ok(), "validate rejected valid JSON: {valid:?}");
    }
    let mut s = Scanner::new(data);
    let walked = walk(&mut s, data, 0).filter(|_| s.finish().is_ok());
    if walked.is_some() {
        assert!(
            valid.is_ok(),
            "the typed API read a document validate rejects"
        );
    }
    assert_eq!(
        walked, parsed,
        "the scanner and serde_json read different values"
    );

    // The input as the contents of a string literal.
    let mut quoted = Vec::with_capacity(data.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(data);
    quoted.push(b'"');
    let serde_string = serde_json::from_slice::<String>(&quoted).ok();
    if serde_string.is_some() || !data.iter().any(|&b| b == b'"' || b < 0x20) {
        assert_eq!(json::unescape(data), serde_string, "unescape disagrees");
    }
    let mut s = Scanner::new(&quoted);
    if let Ok(token) = s.string() {
        if s.finish().is_ok() {
            assert_eq!(token.decode(&quoted), serde_string, "Str::decode disagrees");
        }
    }

    // The request inspector reads the `model` a JSON parser reads.
    if let Some(Value::Object(body)) = &parsed {
        let model = body.get("model").and_then(Value::as_str);
        match request::inspect(data, true) {
            Ok(facts) => {
                assert_eq!(Some(facts.model.as_str()), model);
                let span = facts.model_span.map(|s| s.of(data)).unwrap_or_default();
                assert_eq!(
                    serde_json::from_slice::<String>(span).ok().as_deref(),
                    model
                );
            }
            Err(BodyIssue::DuplicateModel | BodyIssue::DuplicateKey) => {}
            Err(BodyIssue::NoModel) => assert!(model.is_none_or(str::is_empty)),
            Err(other) => panic!("inspect: {other:?} for a valid object"),
        }
    }
}

/// A marker the rewriter adds: `{"type":"ephemeral"}`, maybe with a `ttl`.
fn is_marker(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("ephemeral")
        && v.as_object()
            .is_some_and(|m| m.keys().all(|k| k == "type" || k == "ttl"))
}

/// Compares the rewriter's output with its input and counts the markers it added: objects gain
/// a `cache_control` marker, a string becomes a one-block text array with a marker; nothing
/// else may differ. `None` if anything else differs.
fn markers_added(input: &Value, output: &Value) -> Option<usize> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            let mut n = 0;
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) => n += markers_added(av, bv)?,
                    None if k == "cache_control" && is_marker(bv) => n += 1,
                    None => return None,
                }
            }
            (a.len() <= b.len() && a.keys().all(|k| b.contains_key(k))).then_some(n)
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).map(|(x, y)| markers_added(x, y)).sum()
        }
        (Value::String(text), Value::Array(blocks)) => match blocks.as_slice() {
            [Value::Object(block)] => {
                let ok = block.len() == 3
                    && block.get("type").and_then(Value::as_str) == Some("text")
                    && block.get("text").and_then(Value::as_str) == Some(text.as_str())
                    && block.get("cache_control").is_some_and(is_marker);
                ok.then_some(1)
            }
            _ => None,
        },
        _ => (input == output).then_some(0),
    }
}

/// The cache rewriter: no panic on any body; valid JSON in gives valid JSON out, equal to the
/// input apart from the added markers (compared as parsed values), and removing the inserted
/// bytes gives back the input byte for byte.
pub fn rewrite(data: &[u8]) {
    // The first byte picks the settings; the rest is the body.
    let Some((&knobs, body)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        ttl: if knobs & 1 == 0 {
            Ttl::FiveMinutes
        } else {
            Ttl::OneHour
        },
        automatic: knobs & 2 != 0,
        locations: Locations {
            tools: knobs & 4 == 0,
            system: knobs & 8 == 0,
            last_user: knobs & 16 == 0,
            previous_user: knobs & 32 == 0,
        },
        min_tokens: u64::from(knobs >> 6),
        bytes_per_token: 1,
    };
    let Ok(facts) = request::inspect(body, true) else {
        return;
    };
    let plan = cache::plan(&facts.layout, &settings);
    assert!(plan.added.len() <= cache::MAX_BREAKPOINTS);
    assert!(
        plan.edits.windows(2).all(|w| w[0].at <= w[1].at),
        "edits unsorted"
    );
    assert!(
        plan.edits
            .iter()
            .all(|e| e.remove == 0 && e.at <= body.len())
    );
    let out = splice::apply(body, &plan.edits);

    // Byte level: removing the inserted bytes gives back the input.
    let mut back = Vec::with_capacity(body.len());
    let mut from = 0;
    let mut pos = 0;
    for e in &plan.edits {
        let kept = e.at - from;
        back.extend_from_slice(&out[pos..pos + kept]);
        pos += kept + e.bytes.len();
        from = e.at;
    }
    back.extend_from_slice(&out[pos..]);
    assert_eq!(back, body, "the output is not the input plus insertions");
    let (end, head) = splice::apply_prefix(body, &plan.edits);
    assert_eq!([head.as_slice(), &body[end..]].concat(), out);

    // A session turn compared with its own fingerprint: nothing changed.
    let (print, _) = prefix::compare(body, &facts, None);
    assert_eq!(prefix::compare(body, &facts, Some(&print)), (print, None));

    // As values: valid JSON in, valid JSON out, the same apart from the markers.
    if let Ok(input) = serde_json::from_slice::<Value>(body) {
        let output = serde_json::from_slice::<Value>(&out)
            .unwrap_or_else(|e| panic!("valid JSON in, invalid JSON out ({e})"));
        let added = markers_added(&input, &output);
        assert_eq!(
            added,
            Some(plan.added.len()),
            "the output differs beyond the markers"
        );
        // The output is still a request with the same model.
        let again = request::inspect(&out, true).map(|f| f.model);
        assert_eq!(again.as_ref(), Ok(&facts.model));
    }
}

/// Events of `stream` fed to a framer in chunks of `size` (0: all at once).
fn frame(stream: &[u8], size: usize) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let mut framer = Framer::new();
    let mut events = Vec::new();
    let mut on_event = |e: sse::Event| events.push((e.name.to_vec(), e.data.to_vec(), e.truncated));
    if size == 0 {
        framer.feed(stream, &mut on_event);
    } else {
        for chunk in stream.chunks(size) {
            framer.feed(chunk, &mut on_event);
            assert!(
                framer.carried() <= 3 * MAX_FIELD,
                "the framer carries too much"
            );
        }
    }
    events
}

/// The SSE framer: no panic, bounded memory between chunks, and the same events whatever the
/// chunk boundaries (one byte at a time, a size the input picks, all at once).
pub fn sse(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let whole = frame(stream, 0);
    for e in &whole {
        assert!(
            e.0.len() <= MAX_FIELD && e.1.len() <= MAX_FIELD,
            "an unbounded event"
        );
    }
    assert_eq!(
        frame(stream, usize::from(size).max(1)),
        whole,
        "chunking changed the events"
    );
    if stream.len() <= 4096 {
        assert_eq!(
            frame(stream, 1),
            whole,
            "byte-by-byte framing changed the events"
        );
    }
}

/// The usage extractor on arbitrary events and bodies: no panic (no overflow either), token
/// buckets consistent, and every price computable.
pub fn usage(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let mut framer = Framer::new();
    let mut events = Extraction::new();
    for chunk in stream.chunks(usize::from(size).max(1)) {
        framer.feed(chunk, &mut |e| {
            events.on_event(e);
        });
    }
    let mut body = Extraction::new();
    body.on_json(stream);
    for x in [&events, &body] {
        let t = x.tokens();
        let _ = (
            x.status(true),
            x.status(false),
            x.server_tools(),
            t.prompt(),
        );
        for field in [&x.model, &x.message_id, &x.stop_reason, &x.error_type] {
            assert!(
                field.as_ref().is_none_or(|s| s.len() <= 128),
                "an unbounded field"
            );
        }
        let (searches, _) = x.server_tools();
        for p in PRICES
            .iter()
            .take(3)
            .chain(x.model.as_deref().and_then(|m| cost::find(&PRICES, m)))
        {
            let _ = cost::micro_usd(p, &t, searches);
            let _ = cost::cache_savings_micro_usd(p, &t);
        }
    }
}

/// The value every environment variable has for the configuration target.
pub const SECRET: &str = "sk-ant-fuzz-secret-0123456789";

/// The configuration parser: never panics (errors are values), and the secret it reads from
/// the environment never shows in an error or in the parsed configuration's `Debug`.
pub fn config(data: &[u8]) {
    let env = |name: &str| (!name.starts_with("UNSET")).then(|| SECRET.to_owned());
    match config::parse_with_env(data, &env) {
        Ok(c) => {
            let shown = format!("{c:?}");
            assert!(
                !shown.contains(SECRET),
                "a key in the configuration's Debug"
            );
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(SECRET), "a key in a configuration error");
            assert!(!e.path.is_empty() && !e.message.is_empty(), "{e:?}");
        }
    }
}

/// Separates the pieces of an `eventstream` input that the target frames itself.
pub const PIECE_END: &[u8] = b"\n--\n";

/// The event-stream bytes an `eventstream` input stands for. The first byte picks how the rest
/// is read: raw bytes (mode 0), or pieces separated by [`PIECE_END`] that the target frames with
/// valid checksums so the fuzzer reaches past them: Anthropic event JSON in chunk frames
/// (mode 1), chunk payloads (mode 2), exception payloads named by their first line (mode 3).
pub fn eventstream_input(data: &[u8]) -> Vec<u8> {
    let Some((&mode, body)) = data.split_first() else {
        return Vec::new();
    };
    let pieces = || {
        let mut rest = body;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let piece = match rest.windows(PIECE_END.len()).position(|w| w == PIECE_END) {
                Some(i) => {
                    let (piece, tail) = rest.split_at(i);
                    rest = &tail[PIECE_END.len()..];
                    piece
                }
                None => std::mem::take(&mut rest),
            };
            Some(piece)
        })
    };
    let chunk = [(":event-type", "chunk"), (":message-type", "event")];
    match mode % 4 {
        0 => body.to_vec(),
        1 => pieces()
            .enumerate()
            .flat_map(|(i, p)| eventstream::chunk_frame(p, &"abcdefghij"[..i % 10]))
            .collect(),
        2 => pieces()
            .flat_map(|p| eventstream::encode_frame(&chunk, p))
            .collect(),
        _ => pieces()
            .flat_map(|p| {
                let (name, payload) = p.split_at(p.iter().position(|&b| b == b'\n').unwrap_or(0));
                let name = String::from_utf8_lossy(name);
                eventstream::encode_frame(
                    &[(":exception-type", &name), (":message-type", "exception")],
                    payload,
                )
            })
            .collect(),
    }
}

/// Transcodes `stream` fed in the given pieces, checking the carried bytes after each.
fn transcode(pieces: &[&[u8]]) -> (Vec<u8>, Option<eventstream::Failure>) {
    let mut t = Transcoder::new();
    let mut out = Vec::new();
    for p in pieces {
        t.feed(p, &mut out);
        assert!(t.carried() <= MAX_FRAME + 12, "carries more than a frame");
    }
    t.finish(&mut out);
    assert_eq!(t.carried(), 0, "bytes left after finish");
    (out, t.failure())
}

/// The Bedrock event-stream transcoder: no panic; the output is whole SSE events whose data
/// are JSON in structure (strings pass as the upstream sent them), named after their `type` (an `error` event only last, when and only when
/// the stream failed); the same output whatever the chunking (two pieces split where the input
/// says, three, and byte by byte for short inputs); never more than a frame carried.
pub fn eventstream(data: &[u8]) {
    let stream = eventstream_input(data);
    let (whole, failure) = transcode(&[&stream]);

    let mut framer = Framer::new();
    let mut events = Vec::new();
    framer.feed(&whole, &mut |e| {
        events.push((e.name.to_vec(), e.data.to_vec(), e.truncated));
    });
    assert_eq!(framer.carried(), 0, "the output ends inside an event");
    assert!(whole.is_empty() || whole.ends_with(b"\n\n"));
    for (name, data, truncated) in &events {
        if *truncated {
            continue; // Longer than the framer keeps: nothing to parse.
        }
        // The structure is checked; string contents pass as the upstream sent them.
        json::validate(data).unwrap_or_else(|e| {
            panic!(
                "event data is not JSON ({e:?}): {:?}",
                String::from_utf8_lossy(data)
            )
        });
        if let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(data) {
            if let Some(kind) = event.get("type").and_then(Value::as_str) {
                assert_eq!(
                    kind.as_bytes(),
                    name.as_slice(),
                    "the event name is not its type"
                );
            }
            assert!(
                !event.contains_key("amazon-bedrock-invocationMetrics"),
                "the metrics were left in"
            );
        }
    }
    let last_is_error = events
        .last()
        .is_some_and(|(_, data, _)| data.starts_with(br#"{"type":"error","error":"#));
    if failure.is_some() {
        assert!(last_is_error, "a failure without an error event");
    }

    // The same output whatever the chunking.
    let hash = data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let at = hash as usize % (stream.len() + 1);
    let (a, b) = stream.split_at(at);
    assert_eq!(
        transcode(&[a, b]).0,
        whole,
        "a split at {at} changed the output"
    );
    let at2 = at + (hash >> 16) as usize % (b.len() + 1);
    let (b1, b2) = stream[at..].split_at(at2 - at);
    assert_eq!(
        transcode(&[a, b1, b2]).0,
        whole,
        "splits at {at}, {at2} changed the output"
    );
    if stream.len() <= 2048 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            transcode(&bytes).0,
            whole,
            "byte-by-byte feeding changed the output"
        );
    }
}

/// The default tool configuration, and one with a tiny input bound (truncation everywhere).
static TOOL_CONFIGS: LazyLock<[ToolConfig; 2]> = LazyLock::new(|| {
    [
        ToolConfig::default(),
        ToolConfig {
            max_input_bytes: 16,
            ..ToolConfig::default()
        },
    ]
});

fn check_call(cfg: &ToolConfig, c: &ToolCall) {
    assert!(c.name.len() <= tools::MAX_NAME, "an unbounded tool name");
    assert!(
        cfg.labels.contains(&c.label) || c.label == "mcp" || c.label == "other",
        "an unbounded label"
    );
    assert!(
        c.program
            .as_ref()
            .is_none_or(|p| p.len() <= tools::MAX_PROGRAM
                && !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))),
        "a program name that is not one: {:?}",
        c.program
    );
    assert!(
        c.risks
            .iter()
            .all(|t| cfg.risks.iter().any(|r| &r.tag == t)),
        "a tag no rule has"
    );
}

/// Tool-call inspection on arbitrary streams and bodies: no panic; the assembly buffers stay
/// within their bound; the same calls whatever the chunking; names, labels, program names,
/// tags and the audit summary within their caps; request-side feeds bounded, their bytes no
/// more than the body's.
pub fn tools(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    for cfg in TOOL_CONFIGS.iter() {
        let watch = |chunk: usize| {
            let mut framer = Framer::new();
            let mut w = ToolWatch::new();
            for part in stream.chunks(chunk.max(1)) {
                framer.feed(part, &mut |e| w.on_event(cfg, &e));
                assert!(
                    w.carried() <= tools::MAX_OPEN * cfg.max_input_bytes,
                    "a tool input buffer past its bound"
                );
            }
            w.finish(cfg).to_vec()
        };
        let calls = watch(usize::from(size));
        assert_eq!(watch(stream.len()), calls, "chunking changed the calls");
        let mut w = ToolWatch::new();
        w.on_json(cfg, stream);
        let from_json = w.finish(cfg).to_vec();
        for c in calls.iter().chain(&from_json) {
            check_call(cfg, c);
        }
        for s in [tools::summary(&calls), tools::summary(&from_json)].concat() {
            assert!(s.tool.len() <= tools::MAX_NAME && s.count > 0);
            assert!(s.programs.len() <= tools::MAX_PROGRAMS);
            assert!(s.programs.iter().all(|p| p.len() <= tools::MAX_PROGRAM));
            assert!(s.risks.iter().all(|t| t.tag.len() <= tools::MAX_TAG));
        }
    }
    // Request side: the last turn the layout finds, else every offset's first bytes as one.
    let turn = claude_gateway::request::inspect_as(stream, true, Some("m"))
        .ok()
        .and_then(|f| f.layout.last_turn)
        .unwrap_or((0, vec![0, stream.len() / 2]));
    let feeds = tools::tool_results(stream, turn.0, &turn.1);
    assert!(feeds.len() <= tools::MAX_FEEDS + 1, "unbounded feeds");
    assert!(
        feeds
            .iter()
            .all(|f| f.tool.len() <= tools::MAX_NAME && f.count > 0)
    );
    let bytes: u64 = feeds.iter().map(|f| f.bytes).sum();
    assert!(
        bytes <= stream.len() as u64,
        "more result bytes than the body has"
    );
}

/// The redaction key of the `secrets` target's detectors (a fixed one: placeholders reproduce).
pub const REDACTION_KEY: &[u8] = b"fuzz-redaction-key-0123456789";

/// The shipped rules, all redacting; and the same rules with the three actions in turn.
static DETECTORS: LazyLock<[Detector; 2]> = LazyLock::new(|| {
    let build = |action: &dyn Fn(usize) -> Action| {
        let rules = secrets::shipped()
            .iter()
            .enumerate()
            .map(|(i, spec)| Rule::new(spec, action(i)).expect("a shipped rule compiles"))
            .collect();
        Detector::new(rules, REDACTION_KEY.to_vec())
    };
    [
        build(&|_| Action::Redact),
        build(&|i| Action::ALL[i % Action::ALL.len()]),
    ]
});

/// Passes every string of `body` to `strings`, as far as the scanner gets.
fn observe(body: &[u8], strings: &mut dyn json::Strings) {
    let mut s = Scanner::observed(body, strings);
    if s.value().is_ok() {
        let _ = s.finish();
    }
}

/// The string spans the scanner shows an observer.
struct Spans(Vec<Span>);

impl json::Strings for Spans {
    fn string(&mut self, contents: Span) {
        self.0.push(contents);
    }
}

/// The findings of `body` as the filter collects them (batched), before `assess`.
fn collect(d: &Detector, body: &[u8]) -> Vec<Finding> {
    let mut c = Collector::new(d, body);
    observe(body, &mut c);
    c.finish()
}

/// The decoded text of a finding.
fn decoded(body: &[u8], f: &Finding) -> String {
    let mut w = Window::default();
    w.fill(body, f.secret.start, f.secret.end, usize::MAX);
    String::from_utf8_lossy(&w.text).into_owned()
}

/// A JSON value's shape as parsed, members in document order (duplicate keys kept).
#[derive(Debug, PartialEq)]
enum Shape {
    /// null, a boolean or a number, as serde_json read it.
    Scalar(String),
    Str(String),
    Array(Vec<Shape>),
    Object(Vec<(String, Shape)>),
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Scalar("null".into()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Shape, E> {
                Ok(Shape::Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Shape, E> {
                Ok(Shape::Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Shape, E> {
                Ok(Shape::Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Shape, E> {
                Ok(Shape::Scalar(format!("f{:x}", v.to_bits())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Shape, E> {
                Ok(Shape::Str(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Shape, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = a.next_element()? {
                    items.push(x);
                }
                Ok(Shape::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Shape, A::Error> {
                let mut members = Vec::new();
                while let Some(m) = a.next_entry::<String, Shape>()? {
                    members.push(m);
                }
                Ok(Shape::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether `after` is `before` with redactions: the same structure, scalars and member order;
/// a string or key that differs now holds a placeholder.
fn same_but_redacted(before: &Shape, after: &Shape) -> bool {
    let text = |a: &String, b: &String| a == b || b.contains("[REDACTED:");
    match (before, after) {
        (Shape::Scalar(a), Shape::Scalar(b)) => a == b,
        (Shape::Str(a), Shape::Str(b)) => text(a, b),
        (Shape::Array(a), Shape::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_but_redacted(x, y))
        }
        (Shape::Object(a), Shape::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| text(ka, kb) && same_but_redacted(va, vb))
        }
        _ => false,
    }
}

/// Every property of one detector on one body; returns the assessed findings.
fn check_secrets(d: &Detector, body: &[u8]) -> Vec<Finding> {
    let mut found = collect(d, body);
    let raw = found.clone();
    let inspection = d.assess(body, &mut found);

    // Determinism: the same body, the same findings and assessment.
    let mut again = collect(d, body);
    assert_eq!(again, raw, "a second scan found something else");
    assert_eq!(d.assess(body, &mut again), inspection);
    assert_eq!(again, found);

    // Batching changes nothing: each string searched alone finds the same secrets.
    let mut spans = Spans(Vec::new());
    observe(body, &mut spans);
    let mut alone = Vec::new();
    for s in &spans.0 {
        d.scan(body, *s, &mut alone);
    }
    d.assess(body, &mut alone);
    assert_eq!(alone, found, "batched and string-by-string scans disagree");

    // Findings: inside the body, sorted, disjoint, each inside a string the scanner showed.
    for f in &found {
        assert!(f.secret.start < f.secret.end && f.secret.end <= body.len());
        assert!(f.rule < d.rules.len());
        assert!(
            spans
                .0
                .iter()
                .any(|s| s.start <= f.secret.start && f.secret.end <= s.end),
            "a finding outside every string"
        );
    }
    assert!(
        found
            .windows(2)
            .all(|w| w[0].secret.end <= w[1].secret.start)
    );

    // Edits: in the body, sorted, disjoint; one per redacting finding, its placeholder.
    let e = &inspection.edits;
    assert!(
        e.iter()
            .all(|e| e.remove > 0 && e.at + e.remove <= body.len())
    );
    assert!(
        e.windows(2).all(|w| w[0].at + w[0].remove <= w[1].at),
        "edits unsorted or overlapping"
    );
    let redacted: Vec<&Finding> = found
        .iter()
        .filter(|f| d.rules[f.rule].action == Action::Redact)
        .collect();
    assert_eq!(e.len(), redacted.len());
    let mut placeholders: HashMap<(usize, String), String> = HashMap::new();
    for (edit, f) in e.iter().zip(&redacted) {
        assert_eq!((edit.at, edit.remove), (f.secret.start, f.secret.len()));
        let p = d.placeholder(body, f);
        assert_eq!(edit.bytes, p.as_bytes());
        let name = &d.rules[f.rule].name;
        let tag = p
            .strip_prefix(&format!("[REDACTED:{name}:"))
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or_default();
        assert!(
            tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
            "a malformed placeholder {p}"
        );
    }
    // The same decoded secret, the same placeholder.
    for f in &found {
        let p = d.placeholder(body, f);
        let known = placeholders
            .entry((f.rule, decoded(body, f)))
            .or_insert_with(|| p.clone());
        assert_eq!(*known, p, "one secret, two placeholders");
    }

    // Counts and locations: one count per finding; no location shows a secret. Locations name
    // only short lowercase keys (others are `*`) and indices: a secret that such a path could
    // spell by chance (a lowercase password `messages`) is not looked for.
    let counted: u64 = inspection.found.iter().map(|x| x.count).sum();
    assert_eq!(counted, found.len() as u64);
    let locations: Vec<&str> = inspection
        .found
        .iter()
        .flat_map(|x| x.locations.iter().map(String::as_str))
        .chain(
            inspection
                .blocked
                .as_deref()
                .and_then(|b| b.split_once(" at ").map(|(_, l)| l)),
        )
        .collect();
    for f in &found {
        let secret = decoded(body, f);
        let path_like = secret
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]*".contains(&b));
        if secret.len() < 8 || path_like {
            continue;
        }
        for l in &locations {
            assert!(
                !l.contains(&secret),
                "the location {l:?} shows a secret ({})",
                d.rules[f.rule].name
            );
        }
    }

    // Valid JSON stays valid, with the same structure, once redacted.
    if let Ok(before) = serde_json::from_slice::<Shape>(body) {
        let out = splice::apply(body, &inspection.edits);
        let after = serde_json::from_slice::<Shape>(&out)
            .unwrap_or_else(|e| panic!("valid JSON in, invalid JSON out after redaction ({e})"));
        assert!(
            same_but_redacted(&before, &after),
            "redaction changed more than strings"
        );
    }
    found
}

/// (rule, decoded secret) of each finding.
fn named(body: &[u8], found: &[Finding]) -> Vec<(usize, String)> {
    found.iter().map(|f| (f.rule, decoded(body, f))).collect()
}

/// Where the `secrets` target puts its string in a Messages body (`{}`: the JSON string).
const PLACES: [&str; 5] = [
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":[{"type":"text","text":{}}]}]}"#,
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":{}}]}"#,
    r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"run it"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"cat .env"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":{}}]}]}"#,
    r#"{"model":"claude-sonnet-4-5","system":[{"type":"text","text":{},"cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}"#,
    r#"{"model":"claude-sonnet-4-5","tools":[{"name":"t","input_schema":{"type":"object","properties":{{}:{"type":"string"}}}}],"messages":[{"role":"user","content":"hi"}]}"#,
];

/// Secrets in request bodies: no panic on any body; findings and redaction edits inside the
/// body, sorted and disjoint; valid JSON redacted is valid JSON of the same structure; no
/// location shows a secret; the same findings on a second scan and string by string as in
/// batches; the same placeholder for the same secret; actions change no finding. The whole
/// input is one body; the input after its first byte is also a string (escaped as serde_json
/// does, and every character as `\uXXXX`) in a Messages body at the place that byte picks, read
/// by the request inspector too; both escapings of ASCII text find the same secrets.
pub fn secrets(data: &[u8]) {
    let [redact, mixed] = &*DETECTORS;
    let found = check_secrets(redact, data);
    assert_eq!(
        check_secrets(mixed, data),
        found,
        "actions changed the findings"
    );

    let Some((&place, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let plain = serde_json::to_string(&*text).unwrap_or_default();
    let mut escaped = String::from("\"");
    for c in text.chars() {
        for u in c.encode_utf16(&mut [0; 2]) {
            escaped.push_str(&format!("\\u{u:04x}"));
        }
    }
    escaped.push('"');
    let template = PLACES[usize::from(place) % PLACES.len()];
    let mut seen = Vec::new();
    for string in [plain, escaped] {
        let body = template.replacen("{}", &string, 1).into_bytes();
        let found = check_secrets(redact, &body);
        // The request inspector shows the detector the same strings.
        match request::inspect_with(&body, true, None, Some(redact)) {
            Ok(facts) => {
                let mut via = facts.secrets;
                redact.assess(&body, &mut via);
                assert_eq!(via, found, "the request inspector found other secrets");
            }
            Err(other) => panic!("inspect: {other:?} for a Messages body"),
        }
        seen.push(named(&body, &found));
    }
    if text.is_ascii() {
        assert_eq!(
            seen[0], seen[1],
            "escaping every character changed the findings"
        );
    }
}
