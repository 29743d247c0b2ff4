//! Clients that already speak a cloud's format: Claude Code with `CLAUDE_CODE_USE_BEDROCK=1`
//! and `ANTHROPIC_BEDROCK_BASE_URL=<gateway>/bedrock`, or with `CLAUDE_CODE_USE_VERTEX=1` and
//! `ANTHROPIC_VERTEX_BASE_URL=<gateway>/vertex/v1`. Their requests carry the model (and for
//! Bedrock, streaming) in the path; the body is Anthropic's without `model`.

use super::Dialect;
use super::path::decode;
use crate::request::Endpoint;

/// A request in a cloud's own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub dialect: Dialect,
    pub endpoint: Endpoint,
    /// The model from the path (`None` for Vertex's count-tokens, whose body has it).
    pub model: Option<String>,
    /// Streaming, when the path says (Bedrock's operation, Vertex's `streamRawPredict`).
    pub stream: Option<bool>,
}

/// The request, if its method and path are a cloud's Messages call (any query is ignored).
pub fn classify(method: &str, path: &str) -> Option<Inbound> {
    if method != "POST" {
        return None;
    }
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    bedrock(path).or_else(|| vertex(path))
}

/// `[/bedrock]/model/{id}/invoke`, `/invoke-with-response-stream`, `/count-tokens`.
fn bedrock(path: &str) -> Option<Inbound> {
    let rest = path.strip_prefix("/bedrock").unwrap_or(path);
    let (id, op) = rest.strip_prefix("/model/")?.split_once('/')?;
    let (endpoint, stream) = match op {
        "invoke" => (Endpoint::Messages, false),
        "invoke-with-response-stream" => (Endpoint::Messages, true),
        "count-tokens" => (Endpoint::CountTokens, false),
        _ => return None,
    };
    let model = decode(id).filter(|m| !m.is_empty() && m.len() <= 2048)?;
    Some(Inbound {
        dialect: Dialect::Bedrock,
        endpoint,
        model: Some(model),
        stream: Some(stream),
    })
}

/// `[/vertex][/v1]/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict`
/// (or `:streamRawPredict`, or `models/count-tokens:rawPredict`).
fn vertex(path: &str) -> Option<Inbound> {
    let rest = path.strip_prefix("/vertex").unwrap_or(path);
    let rest = rest.strip_prefix("/v1").unwrap_or(rest);
    let mut parts = rest.strip_prefix("/projects/")?.split('/');
    let _project = parts.next().filter(|p| !p.is_empty())?;
    (parts.next()? == "locations").then_some(())?;
    let _region = parts.next().filter(|r| !r.is_empty())?;
    let tail: Vec<&str> = parts.collect();
    let ["publishers", "anthropic", "models", call] = tail.as_slice() else {
        return None;
    };
    let (model, op) = call.rsplit_once(':')?;
    let (endpoint, model, stream) = match (model, op) {
        ("count-tokens", "rawPredict") => (Endpoint::CountTokens, None, None),
        (m, "rawPredict") => (Endpoint::Messages, Some(m), None),
        (m, "streamRawPredict") => (Endpoint::Messages, Some(m), Some(true)),
        _ => return None,
    };
    let model = match model {
        Some(m) => Some(decode(m).filter(|m| !m.is_empty() && m.len() <= 256)?),
        None => None,
    };
    Some(Inbound {
        dialect: Dialect::Vertex,
        endpoint,
        model,
        stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bedrock_paths() {
        let i = classify(
            "POST",
            "/bedrock/model/arn:aws:bedrock:eu-west-1:1:application-inference-profile%2Fab/invoke-with-response-stream",
        )
        .unwrap();
        assert_eq!(i.dialect, Dialect::Bedrock);
        assert_eq!(i.endpoint, Endpoint::Messages);
        assert_eq!(
            i.model.as_deref(),
            Some("arn:aws:bedrock:eu-west-1:1:application-inference-profile/ab")
        );
        assert_eq!(i.stream, Some(true));
        let i = classify(
            "POST",
            "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
        )
        .unwrap();
        assert_eq!(i.stream, Some(false));
        let i = classify("POST", "/bedrock/model/x/count-tokens").unwrap();
        assert_eq!(i.endpoint, Endpoint::CountTokens);
        for (m, p) in [
            ("GET", "/bedrock/model/x/invoke"),
            ("POST", "/bedrock/model/x/converse"),
            ("POST", "/bedrock/model//invoke"),
            ("POST", "/bedrock/model/x"),
            ("POST", "/bedrock/model/%zz/invoke"),
            ("POST", "/v1/messages"),
        ] {
            assert_eq!(classify(m, p), None, "{m} {p}");
        }
    }

    #[test]
    fn reads_vertex_paths() {
        let base = "/vertex/v1/projects/p/locations/us-east5/publishers/anthropic/models";
        let i = classify(
            "POST",
            &format!("{base}/claude-sonnet-4-5@20250929:streamRawPredict"),
        )
        .unwrap();
        assert_eq!(i.dialect, Dialect::Vertex);
        assert_eq!(i.model.as_deref(), Some("claude-sonnet-4-5@20250929"));
        assert_eq!(i.stream, Some(true));
        let i = classify("POST", &format!("{base}/claude-haiku-4-5:rawPredict?x=1")).unwrap();
        assert_eq!(i.stream, None);
        let i = classify("POST", &format!("{base}/count-tokens:rawPredict")).unwrap();
        assert_eq!((i.endpoint, i.model), (Endpoint::CountTokens, None));
        // Without the /vertex prefix or /v1, as a base URL may give it.
        assert!(
            classify(
                "POST",
                "/projects/p/locations/global/publishers/anthropic/models/m:rawPredict"
            )
            .is_some()
        );
        for p in [
            format!("{base}/m:predict"),
            format!("{base}/m"),
            "/v1/projects/p/locations/r/publishers/google/models/m:rawPredict".to_owned(),
            "/v1/projects//locations/r/publishers/anthropic/models/m:rawPredict".to_owned(),
        ] {
            assert_eq!(classify("POST", &p), None, "{p}");
        }
    }
}
