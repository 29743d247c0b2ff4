use super::*;
use crate::config::parse;
use std::collections::HashMap;

fn headers(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn apply(body: &str, p: &Plan) -> String {
    String::from_utf8(crate::splice::apply(body.as_bytes(), &p.edits)).unwrap()
}

const VENDORS: &str = r#"{
  "routes": [
    {"name": "haiku", "match": {"model": "claude-haiku-*"}, "cluster": "vendor_b",
     "model_rewrite": "glm-4.6", "auth": "bearer", "path_prefix": "/api/anthropic", "cache": false,
     "count_tokens": false, "drop_betas": ["prompt-caching-scope-2026-01-05"], "reject_system_messages": true},
    {"name": "opus", "match": {"model": "claude-opus-*"}, "cluster": "vendor_a", "auth": "x-api-key",
     "strip_query": true, "drop_anthropic_beta": true}
  ],
  "unknown_model": "reject"
}"#;

#[test]
fn the_default_configuration_routes_everything_to_anthropic() {
    let config = parse(b"").unwrap();
    let mut h = headers(&[]);
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages?beta=true",
        Some(br#"{"model":"m"}"#),
        &mut h,
    );
    assert_eq!(p.route.unwrap().cluster, "anthropic");
    assert_eq!(p.body.unwrap().model, "m");
    assert!(p.headers.is_empty() && p.reply.is_none());
    let p = plan(&config, Endpoint::Messages, "/v1/messages", None, &mut h);
    assert_eq!(p.route.unwrap().cluster, "anthropic");
    assert_eq!(p.body.unwrap_err(), BodyIssue::Empty);
}

#[test]
fn count_tokens_gets_no_markers() {
    let config = parse(b"").unwrap();
    let body = format!(
        r#"{{"model":"m","system":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "x".repeat(10_000)
    );
    let mut h = headers(&[]);
    let p = plan(
        &config,
        Endpoint::CountTokens,
        "/v1/messages/count_tokens",
        Some(body.as_bytes()),
        &mut h,
    );
    assert_eq!(p.cache.skipped, Some(Skip::Endpoint));
    assert!(p.edits.is_empty());
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages",
        Some(body.as_bytes()),
        &mut h,
    );
    assert!(!p.cache.added.is_empty());
}

#[test]
fn a_route_rewrites_model_path_credential_and_betas() {
    let config = parse(VENDORS.as_bytes()).unwrap();
    let body = r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let mut h = headers(&[
        ("authorization", "Bearer sk-client"),
        (
            "anthropic-beta",
            "claude-code-20250219,prompt-caching-scope-2026-01-05",
        ),
    ]);
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages?beta=true",
        Some(body.as_bytes()),
        &mut h,
    );
    assert_eq!(p.route.unwrap().name, "haiku");
    // The requested model stays in the facts (for the audit record); the upstream sees the rewrite.
    assert_eq!(p.body.as_ref().unwrap().model, "claude-haiku-4-5");
    assert_eq!(
        apply(body, &p),
        r#"{"model":"glm-4.6","messages":[{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(p.cache.skipped, Some(Skip::Disabled));
    assert_eq!(
        p.headers,
        [
            HeaderOp::Set(":path", "/api/anthropic/v1/messages?beta=true".into()),
            HeaderOp::Set("authorization", "Bearer sk-client".into()),
            HeaderOp::Remove("x-api-key"),
            HeaderOp::Set("anthropic-beta", "claude-code-20250219".into()),
        ]
    );

    let body = r#"{"model":"claude-opus-4-8","messages":[{"role":"user","content":"hi"}]}"#;
    let mut h = headers(&[
        ("authorization", "Bearer sk-client"),
        ("anthropic-beta", "a,b"),
    ]);
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages?beta=true",
        Some(body.as_bytes()),
        &mut h,
    );
    assert_eq!(
        p.headers,
        [
            HeaderOp::Set(":path", "/v1/messages".into()),
            HeaderOp::Set("x-api-key", "sk-client".into()),
            HeaderOp::Remove("authorization"),
            HeaderOp::Remove("anthropic-beta"),
        ]
    );
}

#[test]
fn local_replies_name_the_reason() {
    let config = parse(VENDORS.as_bytes()).unwrap();
    let mut h = headers(&[]);
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages",
        Some(br#"{"model":"gpt-5"}"#),
        &mut h,
    );
    let r = p.reply.unwrap();
    assert_eq!(
        (r.status, r.error_type, r.details),
        (400, "invalid_request_error", "claude_gateway.unknown_model")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(
        v["error"]["message"],
        "The model `gpt-5` is not available through this gateway."
    );

    let p = plan(
        &config,
        Endpoint::CountTokens,
        "/v1/messages/count_tokens",
        Some(br#"{"model":"claude-haiku-4-5"}"#),
        &mut h,
    );
    assert_eq!(p.reply.unwrap().status, 404);

    let with_system = br#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}"#;
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages",
        Some(with_system),
        &mut h,
    );
    let r = p.reply.unwrap();
    assert_eq!(
        (r.status, r.details),
        (400, "claude_gateway.system_messages")
    );
    // The opus route's vendor takes them: forwarded.
    let opus = br#"{"model":"claude-opus-4-8","messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}"#;
    assert!(
        plan(
            &config,
            Endpoint::Messages,
            "/v1/messages",
            Some(opus),
            &mut h
        )
        .reply
        .is_none()
    );
}

#[test]
fn one_hour_markers_add_the_extended_ttl_beta_once() {
    let config =
        parse(br#"{"cache":{"ttl":"1h","min_tokens":[{"model":"*","tokens":0}]}}"#).unwrap();
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    for (current, want) in [
        (
            None,
            Some(HeaderOp::Set("anthropic-beta", EXTENDED_TTL_BETA.into())),
        ),
        (
            Some("a,b"),
            Some(HeaderOp::Set(
                "anthropic-beta",
                format!("a,b,{EXTENDED_TTL_BETA}"),
            )),
        ),
        (Some(EXTENDED_TTL_BETA), None),
    ] {
        let pairs: Vec<(&str, &str)> = current.map(|c| ("anthropic-beta", c)).into_iter().collect();
        let mut h = headers(&pairs);
        let p = plan(
            &config,
            Endpoint::Messages,
            "/v1/messages",
            Some(body),
            &mut h,
        );
        assert!(p.cache.uses_one_hour());
        assert_eq!(p.headers.last().cloned(), want, "{current:?}");
    }
}

#[test]
fn compressed_or_non_json_bodies_are_not_read_or_edited() {
    let config = parse(VENDORS.as_bytes()).unwrap();
    let body = format!(
        r#"{{"model":"claude-opus-4-8","system":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
        "x".repeat(10_000)
    );
    for (pairs, want) in [
        (
            &[("content-encoding", "gzip")][..],
            BodyIssue::ContentEncoding,
        ),
        (
            &[("content-type", "text/plain")][..],
            BodyIssue::ContentType,
        ),
    ] {
        let mut h = headers(pairs);
        let p = plan(
            &config,
            Endpoint::Messages,
            "/v1/messages",
            Some(body.as_bytes()),
            &mut h,
        );
        assert_eq!(p.body.unwrap_err(), want);
        assert!(p.edits.is_empty() && p.reply.is_none());
        // Unread, the model cannot be judged: the default route, not a model route or a 400.
        assert_eq!(p.route.unwrap().name, config.routes.default.name);
    }
    let mut h = headers(&[("content-type", "application/json")]);
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages",
        Some(body.as_bytes()),
        &mut h,
    );
    assert_eq!(p.route.unwrap().name, "opus");
}

#[test]
fn vendor_dialects_get_cache_markers_but_only_the_betas_they_accept() {
    let config = parse(
        br#"{"cache":{"ttl":"1h","min_tokens":[{"model":"*","tokens":0}]},
             "routes":[{"name":"v","match":{"model":"v-*"},"cluster":"vertex","dialect":"vertex","project":"p"},
                       {"name":"b","cluster":"bedrock","dialect":"bedrock"}]}"#,
    )
    .unwrap();
    let body = br#"{"model":"m","system":"s","messages":[{"role":"user","content":"hi"}]}"#;
    let mut h = headers(&[("anthropic-beta", "context-1m-2025-08-07")]);
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages",
        Some(body),
        &mut h,
    );
    assert!(!p.cache.added.is_empty());
    let sent: serde_json::Value =
        serde_json::from_str(&apply(std::str::from_utf8(body).unwrap(), &p)).unwrap();
    assert_eq!(sent["system"][0]["cache_control"]["ttl"], "1h", "{sent}");
    assert!(sent.get("model").is_none());
    // Bedrock refuses the extended-TTL beta: the gateway does not add what it would drop.
    assert_eq!(
        sent["anthropic_beta"],
        serde_json::json!(["context-1m-2025-08-07"])
    );
    assert!(p.dropped_betas.is_empty());
    assert!(
        p.headers
            .contains(&HeaderOp::Set(":path", "/model/m/invoke".into()))
    );
    assert!(p.headers.contains(&HeaderOp::Remove("x-api-key")));
    let body = br#"{"model":"v-1","system":"s","messages":[{"role":"user","content":"hi"}]}"#;
    let p = plan(
        &config,
        Endpoint::Messages,
        "/v1/messages?beta=true",
        Some(body),
        &mut h,
    );
    let sent: serde_json::Value =
        serde_json::from_str(&apply(std::str::from_utf8(body).unwrap(), &p)).unwrap();
    assert_eq!(sent["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
    assert!(p.headers.contains(&HeaderOp::Set(
        ":path",
        "/v1/projects/p/locations/global/publishers/anthropic/models/v-1:rawPredict".into()
    )));
}

#[test]
fn a_cloud_format_request_must_go_to_a_route_of_its_cloud() {
    let config = parse(
        br#"{"routes":[{"name":"b","match":{"model":"*anthropic.claude-*"},"cluster":"bedrock","dialect":"bedrock"}]}"#,
    )
    .unwrap();
    let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[]}"#;
    let mut h = headers(&[]);
    for (path, refused) in [
        (
            "/bedrock/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
            false,
        ),
        ("/bedrock/model/claude-haiku-4-5/invoke", true),
    ] {
        let inbound = crate::dialect::inbound::classify("POST", path).unwrap();
        let p = plan_call(
            &config,
            Endpoint::Messages,
            path,
            Some(body),
            &mut h,
            Some(&inbound),
        );
        assert_eq!(p.reply.is_some(), refused, "{path}");
        if refused {
            assert_eq!(p.reply.unwrap().details, "claude_gateway.dialect");
        }
    }
}
