//! What the gateway needs to know about an inbound request: the endpoint it targets and the few
//! top-level body fields it acts on, read with the byte-level scanner (no DOM, no copy of the body).

use crate::cache::layout::Layout;
use crate::json::{ErrorKind, Scanner, Span, Str};
use crate::secrets::{self, Detector};

/// The Messages API endpoints the gateway acts on. Everything else passes through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Messages,
    CountTokens,
}

impl Endpoint {
    /// The endpoint of a request, if the gateway acts on it. Matches `POST` and the path only:
    /// Claude Code always appends `?beta=true`, and any query is kept as it is.
    pub fn classify(method: &str, path: &str) -> Option<Endpoint> {
        if method != "POST" {
            return None;
        }
        match path.split_once('?').map_or(path, |(p, _)| p) {
            "/v1/messages" => Some(Endpoint::Messages),
            "/v1/messages/count_tokens" => Some(Endpoint::CountTokens),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// The body fields the gateway reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyFacts {
    /// The decoded `model` value.
    pub model: String,
    /// Span of the `model` value in the body, quotes included (`None` when the model came from
    /// the path: a client speaking Bedrock's or Vertex AI's format).
    pub model_span: Option<Span>,
    /// `"stream": true`.
    pub stream: bool,
    /// Where cache markers are and could go (empty unless asked for).
    pub layout: Layout,
    /// `metadata.user_id`, decoded (Claude Code embeds its session id in it).
    pub user_id: Option<String>,
    /// Every top-level member in order: its key and the span of its value (vendor dialects
    /// remove or replace some).
    pub members: Vec<(Str, Span)>,
    /// Secrets in the body's strings (when a detector was given).
    pub secrets: Vec<secrets::Finding>,
}

impl BodyFacts {
    /// The top-level member with this key.
    pub fn member(&self, body: &[u8], key: &str) -> Option<(Str, Span)> {
        self.members
            .iter()
            .copied()
            .find(|(k, _)| k.matches(body, key))
    }
}

/// Why a body is forwarded untouched. Each reason is counted in a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyIssue {
    /// No body at all.
    Empty,
    /// Not valid JSON.
    InvalidJson,
    /// Valid JSON nested deeper than the scanner's bound.
    TooDeep,
    /// Valid JSON, but not an object.
    NotObject,
    /// No `model`, or one that is not a non-empty string.
    NoModel,
    /// `model` appears twice: parsers disagree on which one wins, so the gateway acts on neither.
    DuplicateModel,
    /// Another top-level key the gateway reads or edits (`messages`, `system`, `tools`,
    /// `cache_control`, `stream`, `metadata`) appears twice: same ambiguity.
    DuplicateKey,
    /// A `content-encoding` (gzip...): the bytes are not the JSON the upstream will read.
    ContentEncoding,
    /// A `content-type` that is not JSON: the upstream will not read the body as JSON.
    ContentType,
}

impl BodyIssue {
    pub const ALL: [BodyIssue; 9] = [
        BodyIssue::Empty,
        BodyIssue::InvalidJson,
        BodyIssue::TooDeep,
        BodyIssue::NotObject,
        BodyIssue::NoModel,
        BodyIssue::DuplicateModel,
        BodyIssue::DuplicateKey,
        BodyIssue::ContentEncoding,
        BodyIssue::ContentType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BodyIssue::Empty => "empty",
            BodyIssue::InvalidJson => "invalid_json",
            BodyIssue::TooDeep => "too_deep",
            BodyIssue::NotObject => "not_object",
            BodyIssue::NoModel => "no_model",
            BodyIssue::DuplicateModel => "duplicate_model",
            BodyIssue::DuplicateKey => "duplicate_key",
            BodyIssue::ContentEncoding => "content_encoding",
            BodyIssue::ContentType => "content_type",
        }
    }
}

impl From<crate::json::Error> for BodyIssue {
    fn from(e: crate::json::Error) -> Self {
        match e.kind {
            ErrorKind::TooDeep => BodyIssue::TooDeep,
            _ => BodyIssue::InvalidJson,
        }
    }
}

/// What the request headers say about the body: `Some` when the body is not plain JSON to the
/// upstream (compressed, or another media type), so the gateway must not read or edit it. No
/// `content-type` at all is read as JSON, as the API does.
pub fn declared(content_type: Option<&str>, content_encoding: Option<&str>) -> Option<BodyIssue> {
    let encoding = content_encoding.map(str::trim).unwrap_or_default();
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return Some(BodyIssue::ContentEncoding);
    }
    let media = content_type?.split(';').next().unwrap_or_default().trim();
    let json = media.eq_ignore_ascii_case("application/json")
        || media
            .get(media.len().saturating_sub(5)..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"));
    (!json).then_some(BodyIssue::ContentType)
}

/// The facts of a body as its headers declare it: an empty body has none, a compressed or
/// non-JSON one is not read (see [`declared`]), any other is inspected.
/// `path_model`: the model a cloud-format request names in its path (its body has none).
pub fn read(
    body: &[u8],
    header: &mut dyn FnMut(&str) -> Option<String>,
    layout: bool,
    path_model: Option<&str>,
    secrets: Option<&Detector>,
) -> Result<BodyFacts, BodyIssue> {
    if body.is_empty() {
        return Err(BodyIssue::Empty);
    }
    let content_type = header("content-type");
    let encoding = header("content-encoding");
    match declared(content_type.as_deref(), encoding.as_deref()) {
        Some(issue) => Err(issue),
        None => inspect_with(body, layout, path_model, secrets),
    }
}

/// Top-level keys the gateway reads or edits. Each may appear once: with two, the gateway and
/// the upstream could act on different ones (a JSON parser keeps the last, the scanner sees both).
const READ_KEYS: [&str; 7] = [
    "model",
    "stream",
    "metadata",
    "messages",
    "system",
    "tools",
    "cache_control",
];

/// Reads `model` and `stream` from a request body, validating the whole document on the way;
/// with `layout`, also collects where cache markers are and could go.
pub fn inspect(body: &[u8], layout: bool) -> Result<BodyFacts, BodyIssue> {
    inspect_as(body, layout, None)
}

/// [`inspect`] of a body whose model is `path_model` when given (a body `model` is then
/// ignored: the path decides, as the vendor's own API does).
pub fn inspect_as(
    body: &[u8],
    layout: bool,
    path_model: Option<&str>,
) -> Result<BodyFacts, BodyIssue> {
    inspect_with(body, layout, path_model, None)
}

/// [`inspect_as`] that also shows every string to the secret detector, in the same pass.
pub fn inspect_with(
    body: &[u8],
    layout: bool,
    path_model: Option<&str>,
    secrets: Option<&Detector>,
) -> Result<BodyFacts, BodyIssue> {
    let mut collector = secrets.map(|d| secrets::Collector::new(d, body));
    let mut facts = match collector.as_mut() {
        Some(c) => walk(&mut Scanner::observed(body, c), body, layout, path_model),
        None => walk(&mut Scanner::new(body), body, layout, path_model),
    }?;
    facts.secrets = collector
        .map(secrets::Collector::finish)
        .unwrap_or_default();
    Ok(facts)
}

fn walk(
    s: &mut Scanner,
    body: &[u8],
    layout: bool,
    path_model: Option<&str>,
) -> Result<BodyFacts, BodyIssue> {
    if s.peek()? != b'{' {
        s.value()?;
        s.finish()?;
        return Err(BodyIssue::NotObject);
    }
    let mut model: Option<(Option<String>, Span)> = None;
    // One bit per READ_KEYS entry seen, and the duplicates found.
    let (mut seen, mut twice) = (0u8, 0u8);
    let mut stream = false;
    let mut shape = Layout::default();
    let mut user_id = None;
    let mut members = Vec::new();
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        let value_start = s.pos();
        if let Some(i) = READ_KEYS.iter().position(|k| key.matches(body, k)) {
            let bit = 1u8 << i;
            twice |= seen & bit;
            seen |= bit;
        }
        if key.matches(body, "model") {
            let start = s.pos();
            let value = if s.peek()? == b'"' {
                s.string()?.decode(body)
            } else {
                s.value()?;
                None
            };
            model = Some((
                value,
                Span {
                    start,
                    end: s.pos(),
                },
            ));
        } else if key.matches(body, "stream") {
            stream = s.bool_value()? == Some(true);
        } else if key.matches(body, "metadata") && s.peek()? == b'{' {
            user_id = metadata_user_id(s, body)?;
        } else if !(layout && shape.read_member(s, body, &key)?) {
            s.value()?;
        }
        members.push((
            key,
            Span {
                start: value_start,
                end: s.pos(),
            },
        ));
    }
    shape.root_close = s.pos().saturating_sub(1);
    s.finish()?;
    if twice & 1 != 0 {
        return Err(BodyIssue::DuplicateModel);
    }
    if twice != 0 {
        return Err(BodyIssue::DuplicateKey);
    }
    let (model, model_span) = match (path_model, model) {
        (Some(m), _) => (m.to_owned(), None),
        (None, Some((Some(m), span))) if !m.is_empty() => (m, Some(span)),
        _ => return Err(BodyIssue::NoModel),
    };
    Ok(BodyFacts {
        model,
        model_span,
        stream,
        layout: shape,
        user_id,
        members,
        secrets: Vec::new(),
    })
}

/// Reads `metadata.user_id` (bounded: the API caps it at 512 characters).
fn metadata_user_id(s: &mut Scanner, body: &[u8]) -> crate::json::Result<Option<String>> {
    let mut user_id = None;
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        if key.matches(body, "user_id") && s.peek()? == b'"' {
            let v = s.string()?;
            if v.span.len() <= 4096 {
                user_id = v.decode(body);
            }
        } else {
            s.value()?;
        }
    }
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_on_method_and_path_only() {
        use Endpoint::*;
        assert_eq!(Endpoint::classify("POST", "/v1/messages"), Some(Messages));
        assert_eq!(
            Endpoint::classify("POST", "/v1/messages?beta=true"),
            Some(Messages)
        );
        assert_eq!(
            Endpoint::classify("POST", "/v1/messages/count_tokens?beta=true"),
            Some(CountTokens)
        );
        for (m, p) in [
            ("GET", "/v1/messages"),
            ("POST", "/v1/messages/batches"),
            ("POST", "/v1/messagesx"),
            ("POST", "/v1/models"),
            ("HEAD", "/api/hello"),
            ("POST", "/anthropic/v1/messages"),
        ] {
            assert_eq!(Endpoint::classify(m, p), None, "{m} {p}");
        }
    }

    #[test]
    fn reads_model_and_stream() {
        let body = br#"{"max_tokens":1,"model":"claude-opus-4-8","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let f = inspect(body, true).unwrap();
        assert_eq!(f.model, "claude-opus-4-8");
        assert_eq!(f.model_span.unwrap().of(body), br#""claude-opus-4-8""#);
        assert!(f.stream);
        let f = inspect(br#"{"model":"m","stream":false}"#, true).unwrap();
        assert!(!f.stream);
        let f = inspect(br#" { "model" : "m" } "#, true).unwrap();
        assert!(!f.stream);
    }

    #[test]
    fn headers_declare_bodies_that_are_not_plain_json() {
        for (ct, ce) in [
            (None, None),
            (Some("application/json"), None),
            (Some("Application/JSON; charset=utf-8"), Some("identity")),
            (Some("application/vnd.api+json"), Some(" ")),
        ] {
            assert_eq!(declared(ct, ce), None, "{ct:?} {ce:?}");
        }
        for (ct, ce, want) in [
            (
                Some("application/json"),
                Some("gzip"),
                BodyIssue::ContentEncoding,
            ),
            (None, Some("br"), BodyIssue::ContentEncoding),
            (Some("text/plain"), None, BodyIssue::ContentType),
            (
                Some("application/x-www-form-urlencoded"),
                None,
                BodyIssue::ContentType,
            ),
            (Some(""), None, BodyIssue::ContentType),
            (Some("json"), None, BodyIssue::ContentType),
            (Some("aéjson"), None, BodyIssue::ContentType),
        ] {
            assert_eq!(declared(ct, ce), Some(want), "{ct:?} {ce:?}");
        }
    }

    #[test]
    fn read_takes_the_headers_word_before_the_bytes() {
        let body = br#"{"model":"m"}"#;
        let headers = |gzip: bool| {
            move |name: &str| (gzip && name == "content-encoding").then(|| "gzip".to_owned())
        };
        assert_eq!(
            read(body, &mut headers(false), false, None, None)
                .unwrap()
                .model,
            "m"
        );
        assert_eq!(
            read(body, &mut headers(true), false, None, None),
            Err(BodyIssue::ContentEncoding)
        );
        assert_eq!(
            read(b"", &mut headers(false), false, None, None),
            Err(BodyIssue::Empty)
        );
    }

    #[test]
    fn duplicate_keys_the_gateway_reads_are_ambiguous() {
        for (body, want) in [
            (r#"{"model":"a","model":"a"}"#, BodyIssue::DuplicateModel),
            (
                r#"{"model":"a","mod\u0065l":"b"}"#,
                BodyIssue::DuplicateModel,
            ),
            (
                r#"{"messages":[],"model":"a","messages":[],"model":"b"}"#,
                BodyIssue::DuplicateModel,
            ),
            (
                r#"{"model":"a","messages":[],"messages":[]}"#,
                BodyIssue::DuplicateKey,
            ),
            (
                r#"{"model":"a","system":"x","system":[]}"#,
                BodyIssue::DuplicateKey,
            ),
            (
                r#"{"model":"a","tools":[],"tools":[]}"#,
                BodyIssue::DuplicateKey,
            ),
            (
                r#"{"model":"a","cache_control":{},"cache_control":{}}"#,
                BodyIssue::DuplicateKey,
            ),
            (
                r#"{"model":"a","stream":true,"stream":false}"#,
                BodyIssue::DuplicateKey,
            ),
            (
                r#"{"model":"a","metadata":{},"metadata":{}}"#,
                BodyIssue::DuplicateKey,
            ),
        ] {
            for layout in [true, false] {
                assert_eq!(inspect(body.as_bytes(), layout), Err(want), "{body}");
            }
        }
        // Keys the gateway neither reads nor edits, and nested ones, may repeat.
        let ok = r#"{"model":"a","max_tokens":1,"max_tokens":2,"messages":[{"role":"user","role":"user","content":"x"}]}"#;
        assert_eq!(inspect(ok.as_bytes(), true).unwrap().model, "a");
    }

    #[test]
    fn non_utf8_bytes_in_skipped_strings_keep_the_body_readable() {
        let body =
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\xc3\"}]}";
        assert_eq!(inspect(body, true).unwrap().model, "m");
        // A model the gateway must decode is refused when it is not UTF-8.
        assert_eq!(
            inspect(b"{\"model\":\"m\xff\"}", true),
            Err(BodyIssue::NoModel)
        );
    }

    #[test]
    fn ten_thousand_levels_of_nesting_are_too_deep() {
        let deep = format!(
            "{{\"model\":\"m\",\"messages\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(inspect(deep.as_bytes(), true), Err(BodyIssue::TooDeep));
        let objects = format!(
            "{{\"model\":\"m\",\"x\":{}1{}}}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        );
        assert_eq!(inspect(objects.as_bytes(), false), Err(BodyIssue::TooDeep));
    }

    #[test]
    fn lists_members_and_takes_a_model_from_the_path() {
        let body = br#"{"max_tokens":1, "anthropic_version" : "bedrock-2023-05-31","messages":[]}"#;
        let f = inspect_as(body, true, Some("us.anthropic.claude-haiku-4-5-v1:0")).unwrap();
        assert_eq!(f.model, "us.anthropic.claude-haiku-4-5-v1:0");
        assert_eq!(f.model_span, None);
        let keys: Vec<&[u8]> = f.members.iter().map(|(k, _)| k.span.of(body)).collect();
        assert_eq!(
            keys,
            [&b"max_tokens"[..], b"anthropic_version", b"messages"]
        );
        let (_, v) = f.member(body, "anthropic_version").unwrap();
        assert_eq!(v.of(body), br#""bedrock-2023-05-31""#);
        assert_eq!(inspect(body, true), Err(BodyIssue::NoModel));
    }

    #[test]
    fn reads_metadata_user_id() {
        let body = br#"{"model":"m","metadata":{"user_id":"{\"session_id\":\"abc\"}","other":1}}"#;
        let f = inspect(body, false).unwrap();
        assert_eq!(f.user_id.as_deref(), Some(r#"{"session_id":"abc"}"#));
    }

    #[test]
    fn escaped_keys_and_values_are_decoded() {
        let body = br#"{"mod\u0065l":"claude-\u0068aiku","str\u0065am":true}"#;
        let f = inspect(body, true).unwrap();
        assert_eq!(f.model, "claude-haiku");
        assert!(f.stream);
    }

    #[test]
    fn nested_model_keys_are_not_top_level() {
        let body = br#"{"metadata":{"model":"x"},"messages":[{"model":"y"}]}"#;
        assert_eq!(inspect(body, true), Err(BodyIssue::NoModel));
    }

    #[test]
    fn reports_why_a_body_is_passed_through() {
        for (body, want) in [
            (&b"not json"[..], BodyIssue::InvalidJson),
            (b"{\"model\":\"m\"", BodyIssue::InvalidJson),
            (b"{\"model\":\"m\"} trailing", BodyIssue::InvalidJson),
            (b"", BodyIssue::InvalidJson),
            (b"[1,2]", BodyIssue::NotObject),
            (b"\"str\"", BodyIssue::NotObject),
            (b"{}", BodyIssue::NoModel),
            (b"{\"model\":42}", BodyIssue::NoModel),
            (b"{\"model\":\"\"}", BodyIssue::NoModel),
            (
                b"{\"model\":\"a\",\"model\":\"b\"}",
                BodyIssue::DuplicateModel,
            ),
        ] {
            assert_eq!(
                inspect(body, true),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = format!(
            "{{\"model\":\"m\",\"x\":{}{}}}",
            "[".repeat(600),
            "]".repeat(600)
        );
        assert_eq!(inspect(deep.as_bytes(), true), Err(BodyIssue::TooDeep));
    }
}
