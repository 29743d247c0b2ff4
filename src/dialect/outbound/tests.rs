use super::*;
use crate::config::parse;
use crate::dialect::inbound;
use crate::request::inspect_as;
use serde_json::{Value, json};

/// Plans `body` for the first route of `config` and returns the body sent, path and headers.
fn run(
    config: &str,
    endpoint: Endpoint,
    body: &str,
    betas: Option<&str>,
    inbound: Option<&Inbound>,
) -> (Value, Outbound) {
    let c = parse(config.as_bytes()).unwrap();
    let route = &c.routes.routes[0].1;
    let bytes = body.as_bytes();
    let facts = inspect_as(bytes, true, inbound.and_then(|i| i.model.as_deref())).unwrap();
    let mut facts = facts;
    if let Some(s) = inbound.and_then(|i| i.stream) {
        facts.stream = s;
    }
    let r = Request {
        endpoint,
        body: bytes,
        facts: &facts,
        betas,
        version: None,
        inbound,
    };
    let out = plan(route, c.policies.of(route.dialect), &r, &[]);
    let sent = match out.rebuild(bytes, &out.edits) {
        Some(b) => b,
        None => splice::apply(bytes, &out.edits),
    };
    let v: Value = serde_json::from_slice(&sent)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&sent)));
    (v, out)
}

const BEDROCK: &str = r#"{"routes":[{"name":"b","cluster":"bedrock","dialect":"bedrock",
    "models":{"claude-sonnet-4-5*":"us.anthropic.claude-sonnet-4-5-20250929-v1:0",
              "claude-sonnet-4-5-special":"arn:aws:bedrock:us-east-1:1:application-inference-profile/x"}}]}"#;

#[test]
fn bedrock_invoke_bodies_lose_model_and_stream_and_gain_version_and_betas() {
    let body = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":10,"stream":true,
                   "messages":[{"role":"user","content":"hi"}],"service_tier":"auto"}"#;
    let (v, out) = run(
        BEDROCK,
        Endpoint::Messages,
        body,
        Some(
            "interleaved-thinking-2025-05-14, extended-cache-ttl-2025-04-11,advanced-tool-use-2025-11-20",
        ),
        None,
    );
    assert_eq!(
        v,
        json!({"max_tokens":10,"messages":[{"role":"user","content":"hi"}],
               "anthropic_version":"bedrock-2023-05-31",
               "anthropic_beta":["interleaved-thinking-2025-05-14","tool-search-tool-2025-10-19"]})
    );
    assert_eq!(
        out.path.as_deref(),
        Some("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream")
    );
    assert_eq!(out.headers, [HeaderOp::Remove("anthropic-beta")]);
    assert_eq!(out.dropped_betas, ["extended-cache-ttl-2025-04-11"]);
    assert_eq!(out.dropped_fields, ["service_tier"]);
    // The most specific pattern wins; ARNs keep their `:` and encode their `/`.
    let body = r#"{"model":"claude-sonnet-4-5-special","max_tokens":1,"messages":[]}"#;
    let (v, out) = run(BEDROCK, Endpoint::Messages, body, None, None);
    assert_eq!(
        out.path.as_deref(),
        Some("/model/arn:aws:bedrock:us-east-1:1:application-inference-profile%2Fx/invoke")
    );
    assert!(v.get("anthropic_beta").is_none());
    assert!(out.headers.is_empty());
}

#[test]
fn bedrock_count_tokens_wraps_the_request() {
    use base64::Engine;
    let body = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let (v, out) = run(BEDROCK, Endpoint::CountTokens, body, None, None);
    assert_eq!(
        out.path.as_deref(),
        Some("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/count-tokens")
    );
    let inner = v["input"]["invokeModel"]["body"].as_str().unwrap();
    let inner = base64::engine::general_purpose::STANDARD
        .decode(inner)
        .unwrap();
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    assert_eq!(
        inner,
        json!({"messages":[{"role":"user","content":"hi"}],
               "anthropic_version":"bedrock-2023-05-31","max_tokens":1})
    );
}

#[test]
fn a_bedrock_client_keeps_its_format() {
    let path =
        "/bedrock/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream";
    let i = inbound::classify("POST", path).unwrap();
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["context-1m-2025-08-07","made-up-beta"],
                   "max_tokens":5,"messages":[]}"#;
    let (v, out) = run(BEDROCK, Endpoint::Messages, body, None, Some(&i));
    assert_eq!(
        v,
        json!({"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["context-1m-2025-08-07"],
               "max_tokens":5,"messages":[]})
    );
    assert_eq!(out.dropped_betas, ["made-up-beta"]);
    assert_eq!(
        out.path.as_deref(),
        Some("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream")
    );
    // A wrong version is corrected, not passed on to be refused.
    let body = r#"{"anthropic_version":"2023-06-01","max_tokens":5,"messages":[]}"#;
    let (v, _) = run(BEDROCK, Endpoint::Messages, body, None, Some(&i));
    assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
    // Its own count-tokens call is already wrapped: only the path changes.
    let i = inbound::classify("POST", "/bedrock/model/claude-sonnet-4-5/count-tokens").unwrap();
    let body = r#"{"input":{"invokeModel":{"body":"e30="}}}"#;
    let (v, out) = run(BEDROCK, Endpoint::CountTokens, body, None, Some(&i));
    assert_eq!(v, json!({"input":{"invokeModel":{"body":"e30="}}}));
    assert_eq!(
        out.path.as_deref(),
        Some("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/count-tokens")
    );
}

const VERTEX: &str = r#"{"routes":[{"name":"v","cluster":"vertex","dialect":"vertex","project":"my-proj",
    "region":"us-east5","models":{"claude-sonnet-4-5*":"claude-sonnet-4-5@20250929"}}]}"#;

#[test]
fn vertex_bodies_lose_model_and_gain_version() {
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":1,"stream":true,"messages":[]}"#;
    let (v, out) = run(
        VERTEX,
        Endpoint::Messages,
        body,
        Some("context-1m-2025-08-07,effort-2025-11-24"),
        None,
    );
    assert_eq!(
        v,
        json!({"max_tokens":1,"stream":true,"messages":[],"anthropic_version":"vertex-2023-10-16"})
    );
    assert_eq!(
        out.path.as_deref(),
        Some(
            "/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
        )
    );
    assert_eq!(
        out.headers,
        [HeaderOp::Set(
            "anthropic-beta",
            "context-1m-2025-08-07".into()
        )]
    );
    assert_eq!(out.dropped_betas, ["effort-2025-11-24"]);
    let (v, out) = run(VERTEX, Endpoint::CountTokens, body, None, None);
    assert_eq!(v["model"], "claude-sonnet-4-5@20250929");
    assert!(
        out.path
            .unwrap()
            .ends_with("/models/count-tokens:rawPredict")
    );
    // The global endpoint.
    let global = VERTEX.replace(r#""region":"us-east5","#, "");
    let body = r#"{"model":"m","max_tokens":1,"messages":[]}"#;
    let (_, out) = run(&global, Endpoint::Messages, body, None, None);
    assert_eq!(
        out.path.as_deref(),
        Some("/v1/projects/my-proj/locations/global/publishers/anthropic/models/m:rawPredict")
    );
}

#[test]
fn a_vertex_client_gets_the_routes_project_and_model() {
    let path = "/vertex/v1/projects/theirs/locations/europe-west1/publishers/anthropic/models/claude-sonnet-4-5:streamRawPredict";
    let i = inbound::classify("POST", path).unwrap();
    let body =
        r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":1,"messages":[],"stream":true}"#;
    let (v, out) = run(VERTEX, Endpoint::Messages, body, None, Some(&i));
    assert_eq!(
        v,
        json!({"anthropic_version":"vertex-2023-10-16","max_tokens":1,"messages":[],"stream":true})
    );
    assert!(
        out.path
            .unwrap()
            .starts_with("/v1/projects/my-proj/locations/us-east5/")
    );
}

#[test]
fn foundry_and_bedrock_messages_keep_the_messages_shape() {
    let foundry = r#"{"routes":[{"name":"f","cluster":"foundry","dialect":"foundry",
        "models":{"claude-haiku-*":"my-haiku-deployment"}}]}"#;
    let body = r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[]}"#;
    let (v, out) = run(
        foundry,
        Endpoint::Messages,
        body,
        Some("context-1m-2025-08-07"),
        None,
    );
    assert_eq!(v["model"], "my-haiku-deployment");
    assert_eq!(out.path.as_deref(), Some("/anthropic/v1/messages"));
    assert!(
        out.headers
            .contains(&HeaderOp::Set("anthropic-version", API_VERSION.into()))
    );
    let (_, out) = run(foundry, Endpoint::CountTokens, body, None, None);
    assert_eq!(
        out.path.as_deref(),
        Some("/anthropic/v1/messages/count_tokens")
    );
    let runtime = r#"{"routes":[{"name":"m","cluster":"bedrock","dialect":"bedrock-messages",
        "bedrock_host":"runtime","models":{"claude-opus-4-8":"anthropic.claude-opus-4-8"}}]}"#;
    let body = r#"{"model":"claude-opus-4-8","max_tokens":1,"messages":[],"stream":true}"#;
    let (v, out) = run(runtime, Endpoint::Messages, body, None, None);
    assert_eq!(
        v,
        json!({"model":"anthropic.claude-opus-4-8","max_tokens":1,"messages":[],"stream":true,
               "anthropic_version":"bedrock-2023-05-31"})
    );
    assert_eq!(out.path.as_deref(), Some("/anthropic/v1/messages"));
    let mantle = runtime.replace(r#""bedrock_host":"runtime","#, "");
    let (v, out) = run(&mantle, Endpoint::Messages, body, None, None);
    assert!(v.get("anthropic_version").is_none());
    assert!(
        out.headers
            .contains(&HeaderOp::Set("anthropic-version", API_VERSION.into()))
    );
}

#[test]
fn removals_keep_the_json_valid_wherever_the_members_are() {
    let config = r#"{"routes":[{"name":"b","cluster":"bedrock","dialect":"bedrock"}]}"#;
    for body in [
        r#"{"model":"m"}"#,
        r#"{"model":"m","stream":false}"#,
        r#"{ "stream" : true , "model" : "m" , "x": [1,{"model":2}] }"#,
        r#"{"a":1,"model":"m","b":2,"stream":true,"c":3}"#,
        r#"{"max_tokens":1,"model":"m","stream":true}"#,
        "{\n  \"model\": \"m\",\n  \"messages\": []\n}",
    ] {
        let (v, _) = run(config, Endpoint::Messages, body, None, None);
        assert!(
            v.get("model").is_none() && v.get("stream").is_none(),
            "{body}"
        );
        assert_eq!(v["anthropic_version"], BEDROCK_VERSION, "{body}");
        for kept in ["max_tokens", "messages"] {
            let had = body.contains(&format!("\"{kept}\""));
            assert_eq!(v.get(kept).is_some(), had, "{body}");
        }
    }
}

#[test]
fn members_holding_cache_markers_are_never_removed() {
    let c = parse(
        br#"{"routes":[{"name":"b","cluster":"bedrock","dialect":"bedrock"}],
                       "dialects":{"bedrock":{"fields":["messages"]}}}"#,
    )
    .unwrap();
    let route = &c.routes.routes[0].1;
    let body = br#"{"model":"m","tools":[{"name":"t"}],"messages":[]}"#;
    let facts = crate::request::inspect(body, true).unwrap();
    let (_, tools) = facts.member(body, "tools").unwrap();
    let marker = [Edit::insert(tools.end - 2, b"x".to_vec())];
    let r = Request {
        endpoint: Endpoint::Messages,
        body,
        facts: &facts,
        betas: None,
        version: None,
        inbound: None,
    };
    let out = plan(route, c.policies.of(route.dialect), &r, &marker);
    assert!(out.dropped_fields.is_empty());
    let out = plan(route, c.policies.of(route.dialect), &r, &[]);
    assert_eq!(out.dropped_fields, ["tools"]);
}

#[test]
fn mantle_gets_the_api_version_it_takes() {
    let c = parse(br#"{"routes":[{"name":"m","cluster":"bedrock","dialect":"bedrock-messages"}]}"#)
        .unwrap();
    let route = &c.routes.routes[0].1;
    let body = br#"{"model":"anthropic.claude-opus-4-8","max_tokens":1,"messages":[]}"#;
    let facts = inspect_as(body, true, None).unwrap();
    for (version, set) in [
        (Some("2026-10-21"), true),
        (None, true),
        (Some(API_VERSION), false),
    ] {
        let r = Request {
            endpoint: Endpoint::Messages,
            body,
            facts: &facts,
            betas: None,
            version,
            inbound: None,
        };
        let out = plan(route, c.policies.of(route.dialect), &r, &[]);
        let sets = out
            .headers
            .contains(&HeaderOp::Set("anthropic-version", API_VERSION.into()));
        assert_eq!(sets, set, "{version:?}");
    }
}
