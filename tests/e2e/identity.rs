//! Company identity: `envoy/examples/oidc.yaml` with real signed tokens (RS256 and ES256, keys
//! made by the mock identity provider with `cryptography`, its JWKS served over HTTP and
//! fetched by Envoy's jwt_authn), group rules, per-developer budgets and key rotation.

use crate::keys::{POOL_1, POOL_2, Response, assert_refused, body, post};
use crate::support::anthropic::{self, USAGE};
use crate::support::envoy::{self, Gateway, Run, repo};
use crate::support::mock::Mock;
use crate::support::vendors::{Kind, VendorMock};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "claude-gateway";
const CI_KEY: &str = "vk-ci-example-key";
const SONNET: &str = "claude-sonnet-4-5";
const OPUS: &str = "claude-opus-4-8";

struct World {
    idp: VendorMock,
    mock: Mock,
    gw: Gateway,
}

/// The oidc example against the mock identity provider and a mock Anthropic; `config` (JSON)
/// replaces the example's plugin configuration, `jwks_cache` its JWKS cache duration.
fn world(config: Option<Value>, jwks_cache: &str) -> World {
    let idp = VendorMock::start(Kind::Idp, &[]);
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let mut b = envoy::shipped(
        "examples/oidc.yaml",
        &[("anthropic", &[mock.port()]), ("idp", &[idp.port()])],
    );
    if let Some(c) = config {
        b.plugin_config(&c.to_string());
    }
    assert_eq!(b.replace_value("cache_duration", "300s", jwks_cache), 1);
    let run = Run::default()
        .env("ANTHROPIC_KEY_1", POOL_1)
        .env("ANTHROPIC_KEY_2", POOL_2);
    let gw = Gateway::start_with(b, &run);
    World { idp, mock, gw }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn claims(email: &str, groups: &[&str]) -> Value {
    let now = now_s();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{email}"), "email": email,
           "groups": groups, "iat": now, "exp": now + 300})
}

/// A token from the identity provider: `spec` has the claims, `alg`, `kid`, `tamper`.
pub(crate) fn mint(idp: &VendorMock, spec: Value) -> String {
    let resp = crate::support::client()
        .post(idp.url("/token"))
        .body(spec.to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

impl World {
    fn token(&self, spec: Value) -> String {
        mint(&self.idp, spec)
    }

    fn signed(&self, alg: &str, claims: Value) -> String {
        self.token(json!({"alg": alg, "claims": claims}))
    }

    fn ask(&self, token: &str, model: &str, extra: &[(&str, &str)]) -> Response {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("authorization", bearer.as_str())];
        headers.extend_from_slice(extra);
        post(&self.gw, &headers, &body(model, false))
    }

    fn rotate(&self, keep: bool) -> Vec<String> {
        let resp = crate::support::client()
            .post(self.idp.url("/rotate"))
            .body(json!({"keep": keep}).to_string())
            .send()
            .unwrap();
        let v: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
        v["kids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    }
}

fn audit_of<'a>(records: &'a [Value], consumer: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["virtual_key"] == consumer)
        .unwrap_or_else(|| panic!("no audit record of {consumer}: {records:?}"))
}

#[test]
fn tokens_of_the_identity_provider_admit_developers_by_group() {
    let w = world(None, "300s");
    // RS256, engineering: Sonnet through a pool key; the token never goes upstream.
    let dev = w.signed("RS256", claims("dev@example.com", &["engineering"]));
    let r = w.ask(&dev, SONNET, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = w.mock.wait_requests(1);
    assert!(
        [POOL_1, POOL_2].contains(&seen[0].header("x-api-key").unwrap_or_default()),
        "{:?}",
        seen[0].header("x-api-key")
    );
    assert_eq!(seen[0].header("authorization"), None);
    // Engineering may not use Opus: 403, nothing upstream.
    assert_refused(&w.ask(&dev, OPUS, &[]), 403, "permission_error");
    // ES256, ml-research: Opus.
    let researcher = w.signed("ES256", claims("ml@example.com", &["ml-research", "x"]));
    assert_eq!(w.ask(&researcher, OPUS, &[]).status, 200);
    // The catch-all group: Haiku only.
    let pm = w.signed("RS256", claims("pm@example.com", &["sales"]));
    assert_eq!(w.ask(&pm, "claude-haiku-4-5", &[]).status, 200);
    assert_refused(&w.ask(&pm, SONNET, &[]), 403, "permission_error");
    // No token: a virtual key in x-api-key, on the same listener.
    let bot = post(&w.gw, &[("x-api-key", CI_KEY)], &body(SONNET, false));
    assert_eq!(bot.status, 200, "{}", bot.body);
    assert_eq!(w.mock.requests().len(), 4);

    // The model picker's list: what each caller may use, of what the upstream lists.
    let models = |headers: &[(&str, &str)]| -> Vec<String> {
        let mut req = crate::support::client().get(w.gw.url("/v1/models"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status(), 200);
        let list: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        models(&[("authorization", &bearer(&dev))]),
        ["claude-sonnet-4-5"]
    );
    assert!(models(&[("authorization", &bearer(&pm))]).is_empty());
    assert_eq!(models(&[("x-api-key", CI_KEY)]), ["claude-sonnet-4-5"]);

    let records = w.gw.wait_audit_records(9);
    let d = audit_of(&records, "dev@example.com");
    assert_eq!(
        (&d["consumer_group"], &d["cost_center"]),
        (&json!("engineering"), &json!("platform"))
    );
    let m = audit_of(&records, "ml@example.com");
    assert_eq!(m["consumer_group"], "ml-research");
    assert_eq!(
        audit_of(&records, "pm@example.com")["cost_center"],
        "general"
    );
    assert_eq!(audit_of(&records, "ci-bot")["consumer_group"], Value::Null);
    // Metrics name the group; a token's consumer is `other` (ids from tokens are unbounded),
    // a virtual key's by its id.
    let prom = w.gw.admin_get("/stats/prometheus").unwrap();
    let tokens = |l: &str| l.starts_with("claude_gateway_tokens{");
    assert!(
        prom.lines()
            .any(|l| tokens(l) && l.contains("consumer=\"other\",group=\"engineering\"")),
        "{prom}"
    );
    assert!(
        prom.lines()
            .any(|l| tokens(l) && l.contains("consumer=\"ci-bot\",group=\"none\""))
    );
    assert!(!prom.contains("dev@example.com"));
    // Nothing an operator can read holds a token or a pool key.
    for (place, text) in w.gw.readable_text() {
        for secret in [dev.as_str(), researcher.as_str(), POOL_1, POOL_2] {
            assert!(!text.contains(secret), "a secret in {place}");
        }
    }
    w.gw.assert_healthy();
}

#[test]
fn bad_and_forged_tokens_are_refused_before_the_upstream() {
    let w = world(None, "300s");
    let good = claims("dev@example.com", &["engineering"]);
    let mut expired = good.clone();
    expired["exp"] = json!(now_s() - 3600);
    expired["iat"] = json!(now_s() - 7200);
    let mut issuer = good.clone();
    issuer["iss"] = json!("https://evil.example.com");
    let mut audience = good.clone();
    audience["aud"] = json!("another-app");
    let cases = [
        ("expired", w.signed("RS256", expired)),
        ("wrong issuer", w.signed("ES256", issuer)),
        ("wrong audience", w.signed("RS256", audience)),
        (
            "bad signature",
            w.token(json!({"alg": "RS256", "claims": good, "tamper": true})),
        ),
        (
            "alg none",
            w.token(json!({"alg": "none", "claims": claims("ceo@example.com", &["ml-research"])})),
        ),
        ("not a token", "not.a.jwt".to_owned()),
    ];
    for (what, token) in &cases {
        let r = w.ask(token, SONNET, &[]);
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(
            r.json()["error"]["type"],
            "authentication_error",
            "{what}: {}",
            r.body
        );
    }
    // Neither a token nor a key: the gateway's own 401, forged claim headers or not.
    let forged = json!({"email": "ceo@example.com", "groups": ["ml-research"]}).to_string();
    for headers in [
        vec![],
        vec![
            ("x-jwt-payload", forged.as_str()),
            ("jwt_payload", forged.as_str()),
            ("x-claude-gateway-consumer", "ceo@example.com"),
        ],
    ] {
        assert_refused(
            &post(&w.gw, &headers, &body(SONNET, false)),
            401,
            "authentication_error",
        );
    }
    assert!(
        w.mock.requests().is_empty(),
        "a refused request went upstream"
    );

    // A client cannot claim what its token does not say: headers that look like claims or
    // descriptors change nothing (engineering still may not use Opus).
    let dev = w.signed("RS256", claims("dev@example.com", &["engineering"]));
    let r = w.ask(
        &dev,
        OPUS,
        &[
            ("x-jwt-payload", forged.as_str()),
            ("jwt_payload", forged.as_str()),
            ("x-claude-gateway-consumer", "ceo@example.com"),
        ],
    );
    assert_refused(&r, 403, "permission_error");
    assert!(r.body.contains("dev@example.com"), "{}", r.body);
    w.gw.assert_healthy();
}

#[test]
fn a_developers_budget_runs_out_and_the_provider_rotates_its_keys() {
    let config = crate::keys::pooled(
        "jwt",
        json!({
            "jwt": {"consumer_claim": "email", "groups": [
                {"group": "engineering", "cost_center": "platform", "budget": {"daily_usd": 0.0001}},
                {"group": "ops", "cost_center": "platform"}]},
        }),
    );
    let w = world(Some(config), "1s");
    let dev = w.signed("RS256", claims("dev@example.com", &["engineering"]));
    let other = w.signed("ES256", claims("other@example.com", &["engineering"]));
    // One request spends more than the day's $0.0001: the next is refused, naming the budget.
    assert_eq!(w.ask(&dev, SONNET, &[]).status, 200);
    let record = &w.gw.wait_audit_records(1)[0];
    assert!(
        record["cost_micro_usd"].as_u64().unwrap() >= 100,
        "{record}"
    );
    let r = w.ask(&dev, SONNET, &[]);
    assert_refused(&r, 429, "rate_limit_error");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("The daily budget of consumer `dev@example.com` ($0.00) is spent"),
        "{message}"
    );
    assert!(r.header("retry-after").is_some());
    // A colleague in the same group has a budget of their own.
    assert_eq!(w.ask(&other, SONNET, &[]).status, 200);

    // Rotation: the provider publishes new keys next to the old, then signs with them; Envoy
    // refetches the JWKS (cache 1 s here) and tokens of both are accepted, none refused on
    // the way. Then the old keys are withdrawn: their tokens are refused.
    let fresh_user = claims("fresh@example.com", &["ops"]);
    let old_token = w.signed("RS256", fresh_user.clone());
    let kids = w.rotate(true);
    assert_eq!(kids, ["ec-1", "ec-2", "rsa-1", "rsa-2"]);
    let new_token = w.token(json!({"alg": "RS256", "kid": "rsa-2", "claims": fresh_user}));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // Requests with the old key's token keep being served all along.
        let old = w.ask(&old_token, "claude-haiku-4-5", &[]);
        assert_eq!(old.status, 200, "during the rotation: {}", old.body);
        let status = w.ask(&new_token, "claude-haiku-4-5", &[]).status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 401, "only a refusal while the JWKS is refetched");
        assert!(Instant::now() < deadline, "the new key was never accepted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let count = w.idp.records().len();
    assert!(count >= 2, "the JWKS was fetched {count} times");
    // The old key's tokens still pass while it is published.
    let r = w.ask(&old_token, "claude-haiku-4-5", &[]);
    assert_ne!(r.status, 401, "{}", r.body);
    w.rotate(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    while w.ask(&old_token, "claude-haiku-4-5", &[]).status != 401 {
        assert!(
            Instant::now() < deadline,
            "the withdrawn key is still accepted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    w.gw.assert_healthy();
}

#[test]
fn the_anthropic_sdk_sends_a_helper_token() {
    // What apiKeyHelper does for Claude Code: the token in both x-api-key and Authorization.
    let w = world(None, "300s");
    let token = w.signed("ES256", claims("sdk@example.com", &["engineering"]));
    let out = envoy::python(
        &[repo().join("tests/e2e/sdk_client.py")],
        &[("GATEWAY_URL", &w.gw.url("")), ("HELPER_TOKEN", &token)],
    );
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(got["usage"]["output_tokens"], USAGE.output);
    assert_eq!(got["stream_stop_reason"], "end_turn");
    for r in w.mock.wait_requests(2) {
        assert!(
            [POOL_1, POOL_2].contains(&r.header("x-api-key").unwrap_or_default()),
            "the helper's token went upstream"
        );
        assert_eq!(r.header("authorization"), None);
    }
    let records = w.gw.wait_audit_records(2);
    assert!(
        records
            .iter()
            .all(|r| r["virtual_key"] == "sdk@example.com")
    );
}
