//! Vendors' answers in the Messages API's shape: what the filter does to a response, and the
//! error envelope for errors that are not Anthropic's (AWS's `x-amzn-errortype` with
//! `{"message"}`, Google's `{"error":{"code","message","status"}}`, Azure's
//! `{"error":{"code","message"}}`). Anthropic envelopes pass unchanged: Claude Code matches on
//! their wording.

use super::Dialect;
use crate::request::Endpoint;
use serde::Deserialize;

/// What the filter does to a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Forwarded as it is (and read for usage as an Anthropic response).
    Pass,
    /// A Bedrock event stream, turned into SSE for an Anthropic client.
    Transcode,
    /// A Bedrock event stream for a Bedrock client: forwarded as it is, decoded for usage.
    Observe,
    /// A vendor's error body, rewritten into the API's error envelope.
    Error,
    /// Bedrock's `{"inputTokens":N}`, rewritten into `{"input_tokens":N}`.
    CountTokens,
    /// `GET /v1/models` for a consumer limited to some models: only those listed.
    Models,
}

/// Largest vendor error or count answer read to be rewritten (they are a few hundred bytes).
pub const MAX_REWRITTEN: usize = 64 * 1024;

/// How to treat the answer of `dialect` to a request on `endpoint` from a client speaking
/// `client` (`None`: the Messages API).
pub fn treatment(
    dialect: Dialect,
    client: Option<Dialect>,
    endpoint: Endpoint,
    status: u32,
    content_type: &str,
) -> Treatment {
    let eventstream = content_type.starts_with("application/vnd.amazon.eventstream");
    match (client, dialect) {
        (Some(_), _) if eventstream => Treatment::Observe,
        // A cloud-format client reads its cloud's own errors and answers.
        (Some(_), _) | (None, Dialect::Anthropic) => Treatment::Pass,
        (None, _) if status >= 400 => Treatment::Error,
        (None, Dialect::Bedrock) if eventstream => Treatment::Transcode,
        (None, Dialect::Bedrock) if endpoint == Endpoint::CountTokens => Treatment::CountTokens,
        (None, _) => Treatment::Pass,
    }
}

#[derive(Deserialize, Default)]
struct Nested {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize, Default)]
struct VendorError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
    #[serde(rename = "__type")]
    aws_type: Option<String>,
    error: Option<ErrorField>,
}

/// `error` is an object in Anthropic's, Google's and Azure's errors; anything else is ignored.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(Nested),
    Other(serde::de::IgnoredAny),
}

/// The status and the API's error envelope for a vendor's error response, or `None` when the
/// body already is an Anthropic error envelope (forwarded unchanged). `aws_type` is the
/// `x-amzn-errortype` header.
pub fn error(status: u32, aws_type: Option<&str>, body: &[u8]) -> Option<(u32, Vec<u8>)> {
    let parsed: VendorError = serde_json::from_slice(body).unwrap_or_default();
    let nested = match parsed.error {
        Some(ErrorField::Object(n)) => n,
        _ => Nested::default(),
    };
    if parsed.kind.as_deref() == Some("error") && nested.kind.is_some() {
        return None;
    }
    // AWS: `ThrottlingException:http://internal.amazon.com/...`; the body may say `__type`.
    let exception = aws_type
        .or(parsed.aws_type.as_deref())
        .map(|t| t.split(':').next().unwrap_or(t))
        .map(|t| t.rsplit('#').next().unwrap_or(t));
    let (status, kind) = exception
        .and_then(by_exception)
        .or_else(|| nested.status.as_deref().and_then(by_google_status))
        .unwrap_or_else(|| by_status(status));
    let message = parsed
        .message
        .or(parsed.message_upper)
        .or(nested.message)
        .or_else(|| exception.map(str::to_owned))
        .unwrap_or_else(|| format!("The upstream answered HTTP {status}."));
    let message: String = message.chars().take(2048).collect();
    Some((status, envelope(kind, &message)))
}

/// `{"type":"error","error":{"type":…,"message":…}}`.
pub fn envelope(kind: &str, message: &str) -> Vec<u8> {
    let mut out = br#"{"type":"error","error":{"type":"#.to_vec();
    crate::json::write_string(&mut out, kind);
    out.extend_from_slice(br#","message":"#);
    crate::json::write_string(&mut out, message);
    out.extend_from_slice(b"}}");
    out
}

/// Bedrock's exceptions (service-2.json's status codes), as the API would say them. A
/// service that is unavailable is `overloaded_error` (529), which the SDKs retry.
fn by_exception(name: &str) -> Option<(u32, &'static str)> {
    Some(match name {
        "ThrottlingException" | "ModelNotReadyException" | "ServiceQuotaExceededException" => {
            (429, "rate_limit_error")
        }
        "ServiceUnavailableException" => (529, "overloaded_error"),
        "ValidationException" => (400, "invalid_request_error"),
        "ResourceNotFoundException" => (404, "not_found_error"),
        "AccessDeniedException" => (403, "permission_error"),
        "ModelTimeoutException" => (504, "timeout_error"),
        "InternalServerException" | "ModelStreamErrorException" | "ModelErrorException" => {
            (500, "api_error")
        }
        // The gateway's own cloud credentials were refused: not the client's to fix.
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "IncompleteSignatureException" => (500, "api_error"),
        _ => return None,
    })
}

/// Google's canonical error codes.
fn by_google_status(status: &str) -> Option<(u32, &'static str)> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            (400, "invalid_request_error")
        }
        // The gateway's own token was refused.
        "UNAUTHENTICATED" => (500, "api_error"),
        "PERMISSION_DENIED" => (403, "permission_error"),
        "NOT_FOUND" => (404, "not_found_error"),
        "RESOURCE_EXHAUSTED" => (429, "rate_limit_error"),
        "UNAVAILABLE" => (529, "overloaded_error"),
        "DEADLINE_EXCEEDED" => (504, "timeout_error"),
        "INTERNAL" | "UNKNOWN" => (500, "api_error"),
        _ => return None,
    })
}

fn by_status(status: u32) -> (u32, &'static str) {
    match status {
        400 => (400, "invalid_request_error"),
        401 => (401, "authentication_error"),
        403 => (403, "permission_error"),
        404 => (404, "not_found_error"),
        408 | 504 => (504, "timeout_error"),
        413 => (413, "request_too_large"),
        429 => (429, "rate_limit_error"),
        503 | 529 => (529, "overloaded_error"),
        s if (400..500).contains(&s) => (s, "invalid_request_error"),
        _ => (500, "api_error"),
    }
}

/// Bedrock CountTokens' `{"inputTokens":N}` as the API's `{"input_tokens":N}`.
pub fn count_tokens(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Counted {
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
    }
    let c: Counted = serde_json::from_slice(body).ok()?;
    Some(format!(r#"{{"input_tokens":{}}}"#, c.input_tokens).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn mapped(status: u32, aws: Option<&str>, body: &str) -> (u32, Value) {
        let (s, b) = error(status, aws, body.as_bytes()).unwrap();
        (s, serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn aws_errors_become_envelopes() {
        let (s, v) = mapped(
            429,
            Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            r#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        assert_eq!(s, 429);
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"rate_limit_error",
                   "message":"Too many requests, please wait before trying again."}})
        );
        let (s, v) = mapped(
            503,
            Some("ServiceUnavailableException"),
            r#"{"Message":"busy"}"#,
        );
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (529, Some("overloaded_error"))
        );
        let (s, v) = mapped(
            400,
            None,
            r#"{"__type":"ValidationException","message":"bad"}"#,
        );
        assert_eq!((s, v["error"]["message"].as_str()), (400, Some("bad")));
        let (s, v) = mapped(403, Some("InvalidSignatureException"), "{}");
        assert_eq!(
            (s, v["error"]["message"].as_str()),
            (500, Some("InvalidSignatureException"))
        );
    }

    #[test]
    fn google_azure_and_unknown_errors_become_envelopes() {
        let (s, v) = mapped(
            429,
            None,
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (429, Some("rate_limit_error"))
        );
        assert_eq!(v["error"]["message"], "Quota exceeded");
        let (s, v) = mapped(
            401,
            None,
            r#"{"error":{"code":"401","message":"Access denied"}}"#,
        );
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (401, Some("authentication_error"))
        );
        let (s, v) = mapped(502, None, "<html>bad gateway</html>");
        assert_eq!((s, v["error"]["type"].as_str()), (500, Some("api_error")));
        assert_eq!(v["error"]["message"], "The upstream answered HTTP 500.");
    }

    #[test]
    fn anthropic_envelopes_pass_unchanged() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error(529, None, body), None);
    }

    #[test]
    fn treatments() {
        use Dialect::*;
        let t = |d, c, e, s, ct| treatment(d, c, e, s, ct);
        let es = "application/vnd.amazon.eventstream";
        assert_eq!(
            t(Bedrock, None, Endpoint::Messages, 200, es),
            Treatment::Transcode
        );
        assert_eq!(
            t(Bedrock, Some(Bedrock), Endpoint::Messages, 200, es),
            Treatment::Observe
        );
        assert_eq!(
            t(Bedrock, None, Endpoint::Messages, 200, "application/json"),
            Treatment::Pass
        );
        assert_eq!(
            t(Bedrock, None, Endpoint::Messages, 429, "application/json"),
            Treatment::Error
        );
        assert_eq!(
            t(
                Bedrock,
                None,
                Endpoint::CountTokens,
                200,
                "application/json"
            ),
            Treatment::CountTokens
        );
        assert_eq!(
            t(Anthropic, None, Endpoint::Messages, 529, "application/json"),
            Treatment::Pass
        );
        assert_eq!(
            t(
                Vertex,
                Some(Vertex),
                Endpoint::Messages,
                400,
                "application/json"
            ),
            Treatment::Pass
        );
        assert_eq!(
            t(Vertex, None, Endpoint::Messages, 401, "application/json"),
            Treatment::Error
        );
    }

    #[test]
    fn counts_are_renamed() {
        assert_eq!(
            count_tokens(br#"{"inputTokens":42}"#).unwrap(),
            br#"{"input_tokens":42}"#
        );
        assert_eq!(count_tokens(b"{}"), None);
    }
}
