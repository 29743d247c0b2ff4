//! What the gateway needs to know about an inbound request: the endpoint it targets and the few
//! top-level body fields it acts on, read with the byte-level scanner (no DOM, no copy of the body).

use crate::cache::layout::Layout;
use crate::json::{ErrorKind, Scanner, Span};

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
    /// Span of the `model` value in the body, quotes included.
    pub model_span: Span,
    /// `"stream": true`.
    pub stream: bool,
    /// Where cache markers are and could go (empty unless asked for).
    pub layout: Layout,
    /// `metadata.user_id`, decoded (Claude Code embeds its session id in it).
    pub user_id: Option<String>,
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
}

impl BodyIssue {
    pub const ALL: [BodyIssue; 6] = [
        BodyIssue::Empty,
        BodyIssue::InvalidJson,
        BodyIssue::TooDeep,
        BodyIssue::NotObject,
        BodyIssue::NoModel,
        BodyIssue::DuplicateModel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BodyIssue::Empty => "empty",
            BodyIssue::InvalidJson => "invalid_json",
            BodyIssue::TooDeep => "too_deep",
            BodyIssue::NotObject => "not_object",
            BodyIssue::NoModel => "no_model",
            BodyIssue::DuplicateModel => "duplicate_model",
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

/// Reads `model` and `stream` from a request body, validating the whole document on the way;
/// with `layout`, also collects where cache markers are and could go.
pub fn inspect(body: &[u8], layout: bool) -> Result<BodyFacts, BodyIssue> {
    let mut s = Scanner::new(body);
    if s.peek()? != b'{' {
        s.value()?;
        s.finish()?;
        return Err(BodyIssue::NotObject);
    }
    let mut model: Option<(Option<String>, Span)> = None;
    let mut duplicate = false;
    let mut stream = false;
    let mut shape = Layout::default();
    let mut user_id = None;
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        if key.matches(body, "model") {
            duplicate |= model.is_some();
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
            user_id = metadata_user_id(&mut s, body)?;
        } else if !(layout && shape.read_member(&mut s, body, &key)?) {
            s.value()?;
        }
    }
    shape.root_close = s.pos().saturating_sub(1);
    s.finish()?;
    if duplicate {
        return Err(BodyIssue::DuplicateModel);
    }
    match model {
        Some((Some(model), model_span)) if !model.is_empty() => Ok(BodyFacts {
            model,
            model_span,
            stream,
            layout: shape,
            user_id,
        }),
        _ => Err(BodyIssue::NoModel),
    }
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
        assert_eq!(f.model_span.of(body), br#""claude-opus-4-8""#);
        assert!(f.stream);
        let f = inspect(br#"{"model":"m","stream":false}"#, true).unwrap();
        assert!(!f.stream);
        let f = inspect(br#" { "model" : "m" } "#, true).unwrap();
        assert!(!f.stream);
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
