//! Virtual keys and pooled upstream keys through the real Envoy (two workers), with the shipped
//! `examples/virtual-keys.yaml`: the downstream filter authenticates and picks a key, the
//! cluster's upstream filter swaps keys between attempts, and shared data carries cooldowns,
//! limits and spend across workers.

use crate::support::anthropic;
use crate::support::bodies;
use crate::support::envoy::{self, Gateway, Run};
use crate::support::mock::{Mock, Recorded, Responder};
use crate::support::ratelimit::{Call, RateLimitService};
use claude_gateway::keys::{pool::session_slot, sha256_hex};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub(crate) const POOL_1: &str = "sk-ant-api03-pool-secret-one-7f3a9c";
pub(crate) const POOL_2: &str = "sk-ant-api03-pool-secret-two-1d8e4b";
const ALICE: &str = "vk-alice-secret-5e2f";
const BOT: &str = "vk-bot-secret-9a1c";
const HEAVY: &str = "vk-heavy-secret-3b7d";
const INTERN: &str = "vk-intern-secret-c4e0";
const MODEL: &str = "claude-sonnet-4-5";

/// The pool keys each answer 429 while listed here.
#[derive(Clone, Default)]
struct Limited(Arc<Mutex<HashSet<&'static str>>>);

impl Limited {
    fn set(&self, keys: &[&'static str]) {
        *self.0.lock().unwrap() = keys.iter().copied().collect();
    }

    /// Answers like the API; a listed key gets Anthropic's 429 with `retry-after: 20`.
    fn responder(&self) -> Responder {
        let limited = self.0.clone();
        let normal = anthropic::responder("anthropic");
        Arc::new(move |r: &Recorded| {
            let key = r.header("x-api-key").unwrap_or_default();
            if limited.lock().unwrap().contains(key) {
                anthropic::error(
                    429,
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                )
                .header("retry-after", "20")
                .header("anthropic-ratelimit-requests-remaining", "0")
            } else {
                normal(r)
            }
        })
    }
}

/// The tests' virtual-keys configuration: two pool keys in Envoy's environment and a default
/// route that swaps the caller's credential for one; `rest` adds consumers, budgets, `jwt`...
pub(crate) fn pooled(identity: &str, rest: Value) -> Value {
    let mut config = json!({
        "identity": identity,
        "key_pools": {"anthropic": {"keys": [
            {"alias": "team-key-1", "env": "ANTHROPIC_KEY_1"},
            {"alias": "team-key-2", "env": "ANTHROPIC_KEY_2"}]}},
        "default_route": {"name": "anthropic", "cluster": "anthropic", "key_pool": "anthropic",
                          "auth": "x-api-key"},
    });
    if let (Some(c), Value::Object(rest)) = (config.as_object_mut(), rest) {
        c.extend(rest);
    }
    config
}

fn test_config() -> String {
    crate::keys::pooled(
    "virtual",
    json!({
        "consumers": [
            {"id": "alice", "key_sha256": [sha256_hex(ALICE)], "cost_center": "platform"},
            {"id": "bot", "key_sha256": [sha256_hex(BOT)], "cost_center": "ci",
             "models": ["claude-haiku-*", "claude-sonnet-*"], "limits": {"requests_per_minute": 3}},
            {"id": "heavy", "key_sha256": [sha256_hex(HEAVY)], "cost_center": "ci",
             "limits": {"input_tokens_per_minute": 10}},
            {"id": "intern", "key_sha256": [sha256_hex(INTERN)], "cost_center": "interns"},
        ],
        "budgets": {"interns": {"daily_usd": 0.0001}},
    }))
    .to_string()
}

/// The virtual-keys example on a mock, with the pool keys in Envoy's environment and the given
/// plugin configuration (`None`: the example's own).
fn gateway(mock: &Mock, plugin_config: Option<&str>) -> Gateway {
    let mut b = envoy::shipped(
        "examples/virtual-keys.yaml",
        &[("anthropic", &[mock.port()])],
    );
    if let Some(c) = plugin_config {
        b.plugin_config(c);
    }
    Gateway::start_with(b, &pool_env())
}

/// The pool keys, in Envoy's environment.
fn pool_env() -> Run {
    Run::default()
        .env("ANTHROPIC_KEY_1", POOL_1)
        .env("ANTHROPIC_KEY_2", POOL_2)
}

/// A minimal Messages request body.
pub(crate) fn body(model: &str, stream: bool) -> Vec<u8> {
    json!({"model":model,"max_tokens":16,"stream":stream,"messages":[{"role":"user","content":"hi"}]})
        .to_string()
        .into_bytes()
}

pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Posts a message on a fresh connection (so requests spread over both workers).
pub(crate) fn post(gw: &Gateway, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut req = crate::support::client()
        .post(gw.url("/v1/messages"))
        .header("connection", "close")
        .header("anthropic-version", "2023-06-01")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: resp.text().unwrap(),
    }
}

fn as_consumer(gw: &Gateway, key: &str, session: Option<&str>) -> Response {
    let mut headers = vec![("x-api-key", key)];
    if let Some(s) = session {
        headers.push(("x-claude-code-session-id", s));
    }
    post(gw, &headers, &body(MODEL, false))
}

/// A session id whose home key (of two) is `slot`.
fn session_on(slot: usize, n: usize) -> String {
    (0..)
        .map(|i| format!("session-{slot}-{n}-{i}"))
        .find(|s| session_slot(s, 2) == slot)
        .unwrap()
}

fn keys_seen(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| r.header("x-api-key").unwrap_or_default().to_owned())
        .collect()
}

pub(crate) fn assert_refused(r: &Response, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["type"], "error", "{}", r.body);
    assert_eq!(r.json()["error"]["type"], kind, "{}", r.body);
}

/// Requests the gateway refused for `reason`.
fn refused(gw: &Gateway, reason: &str) -> u64 {
    gw.counter(&format!(
        "wasmcustom.claude_gateway.refused.reason.{reason}"
    ))
}

/// Whole seconds in `retry-after`.
fn retry_after(r: &Response) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no whole-second retry-after: {:?}", r.headers))
}

#[test]
fn a_missing_or_unknown_key_gets_401_and_never_reaches_the_upstream() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = gateway(&mock, Some(&test_config()));
    let b = body(MODEL, false);
    for headers in [
        vec![],
        vec![("x-api-key", "vk-not-issued")],
        vec![("authorization", "Bearer vk-not-issued")],
        vec![("x-api-key", POOL_1)],
    ] {
        let r = post(&gw, &headers, &b);
        assert_refused(&r, 401, "authentication_error");
    }
    // Other endpoints too.
    let models = crate::support::client()
        .get(gw.url("/v1/models"))
        .send()
        .unwrap();
    assert_eq!(models.status(), 401);
    // A known consumer asking for a model it may not use: 403, also never upstream.
    let r = post(&gw, &[("x-api-key", BOT)], &body("claude-opus-4-5", false));
    assert_refused(&r, 403, "permission_error");
    assert!(mock.requests().is_empty());
    assert_eq!(refused(&gw, "unauthenticated"), 5);
    assert_eq!(refused(&gw, "forbidden"), 1);

    // The same gateway lets a known key through.
    assert_eq!(as_consumer(&gw, ALICE, None).status, 200);
    assert_eq!(mock.wait_requests(1).len(), 1);
    gw.assert_healthy();
}

#[test]
fn the_upstream_sees_a_pool_key_and_nothing_of_the_client_credential() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    // The example exactly as shipped: its plugin configuration and example client keys.
    let gw = gateway(&mock, None);
    let sent = body(MODEL, true);
    let r = post(
        &gw,
        &[
            ("x-api-key", "vk-alice-example-key"),
            ("authorization", "Bearer vk-alice-example-key"),
            ("x-claude-code-session-id", &session_on(1, 0)),
            ("x-claude-gateway-consumer", "someone-else"),
        ],
        &sent,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("message_stop"));
    assert_eq!(r.header("x-claude-gateway-key"), None);

    let seen = &mock.wait_requests(1)[0];
    assert_eq!(seen.header("x-api-key"), Some(POOL_2));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(bodies::without_diagnostics(&seen.body), sent);
    for (name, _) in &seen.headers {
        let name = name.to_ascii_lowercase();
        assert!(
            !name.starts_with("x-claude-gateway") && !name.starts_with("x-envoy-retr"),
            "{name} reached the upstream: {:?}",
            seen.headers
        );
    }
    // Other endpoints get the pool key as well.
    let models = crate::support::client()
        .get(gw.url("/v1/models"))
        .header("authorization", "Bearer vk-alice-example-key")
        .send()
        .unwrap();
    assert_eq!(models.status(), 200);
    let seen = &mock.wait_requests(2)[1];
    assert_eq!(seen.target, "/v1/models");
    assert!(matches!(seen.header("x-api-key"), Some(POOL_1 | POOL_2)));
    assert_eq!(seen.header("authorization"), None);

    let audit = &gw.wait_audit_records(1)[0];
    assert_eq!(audit["virtual_key"], "alice");
    assert_eq!(audit["cost_center"], "platform");
    assert_eq!(audit["key_alias"], "team-key-2");
    gw.assert_healthy();
}

#[test]
fn a_429_on_one_key_is_retried_on_the_other_within_the_request() {
    let limited = Limited::default();
    let mock = Mock::start("anthropic", limited.responder());
    let gw = gateway(&mock, Some(&test_config()));
    let session = session_on(0, 0);
    limited.set(&[POOL_1]);

    let sent = body(MODEL, true);
    let r = post(
        &gw,
        &[("x-api-key", ALICE), ("x-claude-code-session-id", &session)],
        &sent,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&anthropic::reply_text("anthropic")[5..]));
    let seen = mock.wait_requests(2);
    assert_eq!(keys_seen(&mock), [POOL_1, POOL_2]);
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(bodies::without_diagnostics(&seen[1].body), sent);
    assert_eq!(seen[1].header("x-envoy-attempt-count"), None);
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.key_cooldowns.pool.anthropic.key.team-key-1"),
        1
    );
    let audit = &gw.wait_audit_records(1)[0];
    assert_eq!(
        (audit["key_alias"].as_str(), audit["attempts"].as_u64()),
        (Some("team-key-2"), Some(2))
    );
    assert_eq!(audit["gen_ai.usage.output_tokens"], anthropic::USAGE.output);

    // The session's own key cools down for every worker: its next requests go to the other
    // key at once, without another 429.
    for _ in 0..4 {
        let r = as_consumer(&gw, ALICE, Some(&session));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(keys_seen(&mock)[2..], [POOL_2; 4]);
    gw.assert_healthy();
}

#[test]
fn with_every_key_cooling_down_the_gateway_answers_429_itself() {
    let limited = Limited::default();
    let mock = Mock::start("anthropic", limited.responder());
    let gw = gateway(&mock, Some(&test_config()));
    limited.set(&[POOL_1, POOL_2]);

    // Both keys answer 429: the request tries each once, then its last retry finds no usable
    // key and the upstream instance answers with the gateway's own 429.
    let r = as_consumer(&gw, ALICE, Some(&session_on(0, 0)));
    assert_refused(&r, 429, "rate_limit_error");
    assert!(r.body.contains("cooling down"), "{}", r.body);
    assert_eq!(keys_seen(&mock), [POOL_1, POOL_2]);

    // Now every key is cooling down: a local 429 with whole seconds to wait, nothing upstream.
    for session in [Some(session_on(0, 1)), Some(session_on(1, 1)), None] {
        let r = as_consumer(&gw, ALICE, session.as_deref());
        assert_refused(&r, 429, "rate_limit_error");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cooling down")
        );
        let wait = retry_after(&r);
        assert!((1..=20).contains(&wait), "retry-after {wait}");
    }
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(refused(&gw, "no_key"), 4);
    gw.assert_healthy();
}

#[test]
fn sessions_keep_their_key_and_requests_without_one_spread_evenly() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = gateway(&mock, Some(&test_config()));
    let sessions = [
        session_on(0, 0),
        session_on(1, 0),
        session_on(0, 1),
        session_on(1, 1),
    ];
    for round in 0..3 {
        for (i, s) in sessions.iter().enumerate() {
            let r = as_consumer(&gw, ALICE, Some(s));
            assert_eq!(r.status, 200, "round {round} session {i}: {}", r.body);
        }
    }
    let seen = mock.wait_requests(12);
    for (i, s) in sessions.iter().enumerate() {
        let want = [POOL_1, POOL_2][i % 2];
        let used: Vec<_> = seen
            .iter()
            .filter(|r| r.header("x-claude-code-session-id") == Some(s.as_str()))
            .map(|r| r.header("x-api-key").unwrap())
            .collect();
        assert_eq!(used, [want; 3], "session {s}");
    }

    for _ in 0..10 {
        assert_eq!(as_consumer(&gw, ALICE, None).status, 200);
    }
    let keys = keys_seen(&mock);
    let unsessioned = &keys[12..];
    assert_eq!(unsessioned.len(), 10);
    let on_first = unsessioned.iter().filter(|k| *k == POOL_1).count();
    assert_eq!(on_first, 5, "{unsessioned:?}");
    gw.assert_healthy();
}

#[test]
fn consumer_limits_hold_across_workers() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = gateway(&mock, Some(&test_config()));

    // Requests per minute: the fourth in the minute is refused locally.
    for _ in 0..3 {
        assert_eq!(as_consumer(&gw, BOT, None).status, 200);
    }
    let r = as_consumer(&gw, BOT, None);
    assert_refused(&r, 429, "rate_limit_error");
    assert!(r.body.contains("3 requests per minute"), "{}", r.body);
    assert!((1..=60).contains(&retry_after(&r)));
    assert_eq!(mock.requests().len(), 3);
    // Another consumer is not affected.
    assert_eq!(as_consumer(&gw, ALICE, None).status, 200);

    // Input tokens per minute, charged from the usage of the response (11 uncached + 3 cache
    // writes > 10): the next request is refused before it reaches the upstream.
    assert_eq!(as_consumer(&gw, HEAVY, None).status, 200);
    gw.wait_audit_records(5);
    let r = as_consumer(&gw, HEAVY, None);
    assert_refused(&r, 429, "rate_limit_error");
    assert!(r.body.contains("10 input tokens per minute"), "{}", r.body);
    assert_eq!(mock.requests().len(), 5);
    assert_eq!(refused(&gw, "requests_per_minute"), 1);
    assert_eq!(refused(&gw, "input_tokens_per_minute"), 1);
    gw.assert_healthy();
}

#[test]
fn a_budget_spent_by_earlier_requests_refuses_the_next_and_names_the_budget() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = gateway(&mock, Some(&test_config()));
    assert_eq!(as_consumer(&gw, INTERN, None).status, 200);
    let audit = &gw.wait_audit_records(1)[0];
    let cost = audit["cost_micro_usd"].as_u64().unwrap();
    assert!(
        cost > 100,
        "the first request costs {cost} µUSD, more than the $0.0001 budget"
    );

    let r = as_consumer(&gw, INTERN, None);
    assert_refused(&r, 429, "rate_limit_error");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("daily budget of cost center `interns`"),
        "{message}"
    );
    assert!(
        !message.contains(INTERN) && !message.contains("team-key"),
        "{message}"
    );
    assert!(retry_after(&r) <= 86_400);
    assert_eq!(mock.requests().len(), 1);
    // Other cost centers still spend.
    assert_eq!(as_consumer(&gw, ALICE, None).status, 200);
    assert_eq!(refused(&gw, "budget_daily"), 1);
    // Spend per cost center, as Prometheus labels.
    let prom = gw.admin_get("/stats/prometheus").unwrap();
    let line = format!(
        "claude_gateway_cost_micro_usd{{route=\"anthropic\",model=\"{MODEL}\",cost_center=\"interns\",consumer=\"intern\",group=\"none\"}} {cost}"
    );
    assert!(prom.contains(&line), "{line} not in:\n{prom}");
    gw.assert_healthy();
}

#[test]
fn no_key_appears_in_logs_stats_access_log_config_dump_or_responses() {
    let limited = Limited::default();
    let mock = Mock::start("anthropic", limited.responder());
    let gw = gateway(&mock, Some(&test_config()));
    let mut responses = Vec::new();
    limited.set(&[POOL_1]);
    responses.push(as_consumer(&gw, ALICE, Some(&session_on(0, 0))));
    responses.push(post(
        &gw,
        &[("authorization", &format!("Bearer {BOT}"))],
        &body(MODEL, true),
    ));
    responses.push(post(&gw, &[("x-api-key", POOL_2)], &body(MODEL, false)));
    limited.set(&[POOL_1, POOL_2]);
    responses.push(as_consumer(&gw, ALICE, None));
    responses.push(as_consumer(&gw, ALICE, None));
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 401, 429, 429]
    );
    gw.wait_audit_records(4);

    let mut places = gw.readable_text();
    for (i, r) in responses.iter().enumerate() {
        places.push((
            format!("response {i}"),
            format!("{:?}\n{}", r.headers, r.body),
        ));
    }
    assert!(
        places[1].1.contains("\"key_alias\":\"team-key-2\""),
        "the access log names keys by alias"
    );
    for (place, text) in &places {
        for secret in [POOL_1, POOL_2, ALICE, BOT] {
            assert!(!text.contains(secret), "{secret} appears in {place}");
        }
    }
    gw.assert_healthy();
}

#[test]
fn the_global_rate_limit_service_is_asked_on_admission_and_charged_at_the_end() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    // The service refuses the bot's requests.
    let rls = RateLimitService::start(|call| {
        call.descriptors
            .iter()
            .any(|d| d.get("consumer") == Some("bot") && d.get("kind") == Some("requests"))
    });
    let mut b = envoy::shipped(
        "examples/replicas.yaml",
        &[("anthropic", &[mock.port()]), ("ratelimit", &[rls.port()])],
    );
    let mut config: serde_json::Value = serde_json::from_str(&test_config()).unwrap();
    config["global_limits"] = json!({"enabled": true, "cluster": "ratelimit"});
    b.plugin_config(&config.to_string());
    let gw = Gateway::start_with(b, &pool_env());

    // A client cannot choose its own descriptors.
    let r = post(
        &gw,
        &[("x-api-key", ALICE), ("x-claude-gateway-consumer", "bot")],
        &body(MODEL, true),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = as_consumer(&gw, BOT, None);
    assert_refused(&r, 429, "rate_limit_error");
    // An unknown key is refused by the gateway before the rate-limit service is asked.
    assert_refused(
        &as_consumer(&gw, "vk-unknown", None),
        401,
        "authentication_error",
    );
    assert_eq!(mock.requests().len(), 1);

    // Alice's request: checked on admission (the request counted, every limit with 0), then,
    // once the stream ended, charged with what the upstream reported.
    let day = &gw.wait_audit_records(1)[0]["timestamp"].as_str().unwrap()[..10].to_owned();
    let month = &day[..7];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let calls = loop {
        let calls: Vec<Call> = rls
            .calls()
            .into_iter()
            .filter(|c| {
                c.descriptors.iter().any(|d| {
                    d.get("consumer") == Some("alice") || d.get("cost_center") == Some("platform")
                })
            })
            .collect();
        if calls.len() >= 2 || std::time::Instant::now() > deadline {
            break calls;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(calls.len(), 2, "{calls:?}");
    let summary = |c: &Call| -> Vec<(String, Option<u64>)> {
        c.descriptors
            .iter()
            .map(|d| {
                let who = d.get("consumer").or(d.get("cost_center")).unwrap_or("?");
                let window = d.get("window").map(|w| format!(" {w}")).unwrap_or_default();
                (
                    format!("{who} {}{window}", d.get("kind").unwrap_or("?")),
                    d.hits,
                )
            })
            .collect()
    };
    let admission = summary(&calls[0]);
    assert_eq!(
        admission,
        [
            ("alice requests".to_owned(), None),
            ("alice input_tokens".to_owned(), Some(0)),
            ("alice output_tokens".to_owned(), Some(0)),
            (format!("platform usd_day {day}"), Some(0)),
            (format!("platform usd_month {month}"), Some(0)),
            (format!("alice usd_day {day}"), Some(0)),
            (format!("alice usd_month {month}"), Some(0)),
        ]
    );
    assert_eq!(calls[0].domain, "claude-gateway");
    let record = &gw.audit_records()[0];
    let input = record["gen_ai.usage.input_tokens"].as_u64().unwrap()
        + record["gen_ai.usage.cache_creation.input_tokens"]
            .as_u64()
            .unwrap();
    let output = record["gen_ai.usage.output_tokens"].as_u64().unwrap();
    let cost = record["cost_micro_usd"].as_u64().unwrap();
    assert!(input > 0 && output > 0 && cost > 0, "{record}");
    assert_eq!(
        summary(&calls[1]),
        [
            ("alice input_tokens".to_owned(), Some(input)),
            ("alice output_tokens".to_owned(), Some(output)),
            (format!("platform usd_day {day}"), Some(cost)),
            (format!("platform usd_month {month}"), Some(cost)),
            (format!("alice usd_day {day}"), Some(cost)),
            (format!("alice usd_month {month}"), Some(cost)),
        ]
    );
    gw.assert_healthy();
}
