//! Model routing through the real Envoy, with the shipped examples: three upstreams that say
//! who they are, a failover pair, and configurations Envoy must refuse.

use crate::support::anthropic;
use crate::support::client;
use crate::support::envoy::{self, Gateway, Started};
use crate::support::mock::Mock;
use serde_json::{Value, json};

struct Vendors {
    anthropic: Mock,
    deepseek: Mock,
    openrouter: Mock,
}

fn vendors() -> Vendors {
    Vendors {
        anthropic: Mock::start("anthropic", anthropic::responder("anthropic")),
        deepseek: Mock::start("deepseek", anthropic::responder("deepseek")),
        openrouter: Mock::start("openrouter", anthropic::responder("openrouter")),
    }
}

fn multi_vendor(v: &Vendors) -> crate::support::bootstrap::Bootstrap {
    envoy::shipped(
        "examples/multi-vendor.yaml",
        &[
            ("anthropic", &[v.anthropic.port()]),
            ("deepseek", &[v.deepseek.port()]),
            ("openrouter", &[v.openrouter.port()]),
        ],
    )
}

/// A short body: below every model's cache minimum, so no marker changes it.
fn body(model: &str) -> Vec<u8> {
    json!({"model":model,"max_tokens":16,"stream":false,"messages":[{"role":"user","content":"hi"}]})
        .to_string()
        .into_bytes()
}

fn post(gw: &Gateway, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = client().post(gw.url(path)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let from = resp
        .headers()
        .get("x-mock-upstream")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), from, resp.text().unwrap())
}

#[test]
fn each_model_lands_on_its_vendor_with_that_vendors_changes() {
    let v = vendors();
    let gw = Gateway::start(multi_vendor(&v));
    let beta = ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20");

    // Opus: Anthropic, untouched, even when the client names another cluster.
    let opus = body("claude-opus-4-8");
    let (status, from, _) = post(
        &gw,
        "/v1/messages?beta=true",
        &opus,
        &[
            ("x-api-key", "sk-ant-client"),
            ("x-claude-gateway-cluster", "deepseek"),
            beta,
        ],
    );
    assert_eq!((status, from.as_str()), (200, "anthropic"));
    let seen = v.anthropic.wait_requests(1);
    assert_eq!(seen[0].body, opus);
    assert_eq!(seen[0].target, "/v1/messages?beta=true");
    assert_eq!(seen[0].header("x-api-key"), Some("sk-ant-client"));
    assert_eq!(seen[0].header("anthropic-beta"), Some(beta.1));

    // Haiku: DeepSeek under /anthropic, model rewritten, the bearer credential as x-api-key,
    // anthropic-beta dropped; the rest of the body byte-identical.
    let haiku = body("claude-haiku-4-5");
    let (status, from, _) = post(
        &gw,
        "/v1/messages?beta=true",
        &haiku,
        &[("authorization", "Bearer sk-deepseek"), beta],
    );
    assert_eq!((status, from.as_str()), (200, "deepseek"));
    let r = &v.deepseek.wait_requests(1)[0];
    assert_eq!(r.target, "/anthropic/v1/messages?beta=true");
    let rewritten = String::from_utf8(haiku.clone())
        .unwrap()
        .replace("claude-haiku-4-5", "deepseek-chat");
    assert_eq!(r.body, rewritten.as_bytes());
    assert_eq!(
        r.header("content-length"),
        Some(rewritten.len().to_string().as_str())
    );
    assert_eq!(
        (r.header("x-api-key"), r.header("authorization")),
        (Some("sk-deepseek"), None)
    );
    assert_eq!(r.header("anthropic-beta"), None);

    // Sonnet: OpenRouter under /api, with the x-api-key credential as a bearer token.
    let (status, from, _) = post(
        &gw,
        "/v1/messages?beta=true",
        &body("claude-sonnet-4-5"),
        &[("x-api-key", "sk-or")],
    );
    assert_eq!((status, from.as_str()), (200, "openrouter"));
    let r = &v.openrouter.wait_requests(1)[0];
    assert_eq!(r.target, "/api/v1/messages?beta=true");
    assert_eq!(
        (r.header("authorization"), r.header("x-api-key")),
        (Some("Bearer sk-or"), None)
    );

    // Claude Code's background requests go to DeepSeek whatever their model.
    let (_, from, _) = post(
        &gw,
        "/v1/messages",
        &body("claude-opus-4-8"),
        &[
            ("x-claude-code-request-class", "auxiliary"),
            ("x-api-key", "k"),
        ],
    );
    assert_eq!(from, "deepseek");

    // Unknown models take the default route in this example.
    let (_, from, _) = post(&gw, "/v1/messages", &body("gpt-5"), &[]);
    assert_eq!(from, "anthropic");

    // count_tokens follows the routes; DeepSeek has none, so the gateway answers 404 itself.
    let (status, from, text) = post(
        &gw,
        "/v1/messages/count_tokens?beta=true",
        &body("claude-haiku-4-5"),
        &[],
    );
    assert_eq!((status, from.as_str()), (404, ""));
    let v404: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v404["type"].as_str(), v404["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error"))
    );
    let (status, from, _) = post(
        &gw,
        "/v1/messages/count_tokens?beta=true",
        &body("claude-sonnet-4-5"),
        &[],
    );
    assert_eq!((status, from.as_str()), (200, "openrouter"));
    assert_eq!(
        v.openrouter.wait_requests(2)[1].target,
        "/api/v1/messages/count_tokens?beta=true"
    );

    // DeepSeek rejects mid-conversation system messages: the gateway says so instead of
    // dropping them or letting the vendor fail obscurely.
    let with_system = json!({"model":"claude-haiku-4-5","max_tokens":16,"messages":[
        {"role":"user","content":"hi"},{"role":"system","content":"be brief"}]});
    let (status, _, text) = post(&gw, "/v1/messages", with_system.to_string().as_bytes(), &[]);
    assert_eq!(status, 400);
    assert!(text.contains("role \\\"system\\\""), "{text}");

    assert_eq!(
        v.deepseek.requests().len(),
        2,
        "the rejected requests reached DeepSeek"
    );
    assert_eq!(v.anthropic.requests().len(), 2);
    let records = gw.wait_audit_records(9);
    let routes: Vec<&str> = records.iter().filter_map(|r| r["route"].as_str()).collect();
    assert!(
        routes.contains(&"haiku-deepseek") && routes.contains(&"sonnet-openrouter"),
        "{routes:?}"
    );
    let haiku_record = records
        .iter()
        .find(|r| r["route"] == "haiku-deepseek" && r["http.response.status_code"] == 200)
        .unwrap();
    assert_eq!(haiku_record["gen_ai.request.model"], "claude-haiku-4-5");
    gw.assert_healthy();
}

#[test]
fn unknown_models_can_be_rejected() {
    let v = vendors();
    let mut b = multi_vendor(&v);
    b.plugin_config(r#"{"routes":[{"name":"claude","match":{"model":"claude-*"},"cluster":"anthropic"}],"unknown_model":"reject"}"#);
    let gw = Gateway::start(b);
    let (status, _, text) = post(&gw, "/v1/messages", &body("gpt-5"), &[]);
    assert_eq!(status, 400);
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("gpt-5"));
    assert!(v.anthropic.requests().is_empty());
    let (status, from, _) = post(&gw, "/v1/messages", &body("claude-opus-4-8"), &[]);
    assert_eq!((status, from.as_str()), (200, "anthropic"));
    let rejected = gw
        .wait_audit_records(2)
        .into_iter()
        .find(|r| r["http.response.status_code"] == 400)
        .unwrap();
    assert_eq!(rejected["error.type"], "invalid_request_error");
    assert_eq!(
        rejected["response_code_details"],
        "claude_gateway.unknown_model"
    );
    gw.assert_healthy();
}

#[test]
fn failover_reaches_the_second_endpoint_without_a_client_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let backup = Mock::start("backup", anthropic::responder("backup"));
    let gw = Gateway::start(envoy::shipped(
        "examples/failover.yaml",
        &[("anthropic", &[dead, backup.port()])],
    ));
    for _ in 0..3 {
        let (status, from, _) = post(&gw, "/v1/messages", &body("claude-opus-4-8"), &[]);
        assert_eq!((status, from.as_str()), (200, "backup"));
    }
    let records = gw.wait_audit_records(3);
    assert!(
        records
            .iter()
            .all(|r| r["http.response.status_code"] == 200)
    );
    assert!(
        records.iter().any(|r| r["attempts"] == 2),
        "no request was retried: {records:?}"
    );
    gw.assert_healthy();
}

#[test]
fn bad_route_configurations_are_refused_with_their_problem() {
    let v = vendors();
    for (config, says) in [
        (
            r#"{"routes":[{"name":"a","cluster":"anthropic","clustr":"x"}]}"#,
            "unknown field `clustr`",
        ),
        (
            r#"{"routes":[{"name":"a","cluster":"anthropic","match":{"model":"claude opus"}}]}"#,
            "routes[0].match.model[0]",
        ),
        (
            r#"{"routes":[{"name":"a","cluster":"anthropic"},{"name":"a","cluster":"deepseek"}]}"#,
            "two routes are named `a`",
        ),
        (
            r#"{"routes":[{"name":"a","cluster":"anthropic","key_pool":"team"}]}"#,
            "no key pool named `team`",
        ),
    ] {
        let mut b = multi_vendor(&v);
        b.plugin_config(config);
        match Gateway::try_start(b) {
            Started::Ready(_) => panic!("envoy accepted {config}"),
            Started::Exited { log, .. } => assert!(log.contains(says), "{config}: {log}"),
        }
    }
}
