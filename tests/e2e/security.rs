//! Security through the real Envoy with the shipped bootstraps: a client cannot choose the
//! cluster, the upstream key or another consumer's identity; keys never show in logs, stats,
//! access logs, errors or config dumps; client-controlled text cannot forge metric series or
//! log lines; a request that fails authentication never reaches the upstream. The threat model
//! these tests back is in README.md, "Threat model".

use crate::keys::body;
use crate::support::anthropic;
use crate::support::bodies;
use crate::support::envoy::{self, Gateway, Run};
use crate::support::mock::{Mock, Recorded, Responder};
use crate::support::{client, h2_client};
use claude_gateway::keys::sha256_hex;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

const POOL_1: &str = "sk-ant-api03-sec-pool-one-4b1e8f";
const POOL_2: &str = "sk-ant-api03-sec-pool-two-92c7d0";
const ALICE: &str = "vk-sec-alice-7d1c93";
const BOT: &str = "vk-sec-bot-e80a42";
const MODEL: &str = "claude-sonnet-4-5";

/// Virtual keys with a two-key pool: alice (cost center `platform`) may use every model, bot
/// (cost center `ci`) only Haiku.
fn virtual_keys_config() -> String {
    crate::keys::pooled(
        "virtual",
        json!({
            "consumers": [
                {"id": "alice", "key_sha256": [sha256_hex(ALICE)], "cost_center": "platform"},
                {"id": "bot", "key_sha256": [sha256_hex(BOT)], "cost_center": "ci",
                 "models": ["claude-haiku-*"]},
            ],
        }),
    )
    .to_string()
}

fn virtual_keys_gateway(mock: &Mock) -> Gateway {
    let mut b = envoy::shipped(
        "examples/virtual-keys.yaml",
        &[("anthropic", &[mock.port()])],
    );
    b.plugin_config(&virtual_keys_config());
    let run = Run::default()
        .env("ANTHROPIC_KEY_1", POOL_1)
        .env("ANTHROPIC_KEY_2", POOL_2);
    Gateway::start_with(b, &run)
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

/// Sends a request on a fresh connection (so requests spread over both workers).
fn send(
    c: &reqwest::blocking::Client,
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut req = c
        .request(method.parse().unwrap(), gw.url(path))
        .header("anthropic-version", "2023-06-01")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    Response {
        status: resp.status().as_u16(),
        headers: format!("{:?}", resp.headers()),
        body: resp.text().unwrap(),
    }
}

fn post(gw: &Gateway, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut h = vec![("connection", "close")];
    h.extend_from_slice(headers);
    send(&client(), gw, "POST", "/v1/messages", &h, body)
}

/// Headers the gateway uses internally, or Envoy's, seen by an upstream. Envoy's own
/// `x-envoy-attempt-count` (the shipped routes ask for it) must carry Envoy's value.
fn internal_headers(r: &Recorded) -> Vec<String> {
    assert!(
        matches!(r.header("x-envoy-attempt-count"), None | Some("1")),
        "{:?}",
        r.headers
    );
    r.headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k.starts_with("x-claude-gateway") || k.starts_with("x-envoy"))
        .filter(|k| k != "x-envoy-attempt-count")
        .collect()
}

/// Answers like the API, except 500 to every request with `x-test-fail`.
fn failing_on_demand(id: &str) -> Responder {
    let normal = anthropic::responder(id);
    Arc::new(move |r: &Recorded| {
        if r.header("x-test-fail").is_some() {
            anthropic::error(500, "api_error", "Internal server error")
        } else {
            normal(r)
        }
    })
}

#[test]
fn the_client_cannot_choose_the_cluster() {
    let anthropic = Mock::start("anthropic", failing_on_demand("anthropic"));
    let deepseek = Mock::start("deepseek", anthropic::responder("deepseek"));
    let openrouter = Mock::start("openrouter", anthropic::responder("openrouter"));
    let gw = Gateway::start(envoy::shipped(
        "examples/multi-vendor.yaml",
        &[
            ("anthropic", &[anthropic.port()]),
            ("deepseek", &[deepseek.port()]),
            ("openrouter", &[openrouter.port()]),
        ],
    ));
    // Opus goes to Anthropic whatever the client says about clusters, hosts or Envoy's routing.
    let forged: &[&[(&str, &str)]] = &[
        &[("x-claude-gateway-cluster", "deepseek")],
        &[("X-Claude-Gateway-Cluster", "openrouter")],
        &[
            ("x-claude-gateway-cluster", "deepseek"),
            ("x-claude-gateway-cluster", "openrouter"),
        ],
        &[("host", "deepseek"), ("x-forwarded-host", "deepseek")],
        &[("x-envoy-original-path", "/anthropic/v1/messages")],
        &[
            ("x-envoy-upstream-alt-stat-name", "deepseek"),
            ("x-envoy-attempt-count", "7"),
        ],
        &[("x-claude-code-request-class", "main")],
    ];
    let opus = body("claude-opus-4-8", false);
    let mut sent = 0;
    for headers in forged {
        let r = post(&gw, headers, &opus);
        assert_eq!(r.status, 200, "{headers:?}: {}", r.body);
        sent += 1;
    }
    // Bodies the filter cannot read, other paths and methods, HTTP/2: the default route.
    let h2 = h2_client();
    let cluster = [("x-claude-gateway-cluster", "deepseek")];
    for (c, method, path, b) in [
        (&client(), "POST", "/v1/messages", b"{not json".to_vec()),
        (&client(), "POST", "/v1/messages", Vec::new()),
        (&client(), "POST", "/v1/messages?beta=true", opus.clone()),
        (&client(), "POST", "/v1//messages", opus.clone()),
        (&client(), "POST", "/v1/messages/", opus.clone()),
        (&client(), "POST", "/v1/messages/batches", opus.clone()),
        (&client(), "GET", "/v1/models", Vec::new()),
        (&client(), "GET", "/v1/messages", Vec::new()),
        (&h2, "POST", "/v1/messages", opus.clone()),
        (&h2, "GET", "/v1/models", Vec::new()),
    ] {
        let r = send(c, &gw, method, path, &cluster, &b);
        assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.body);
        sent += 1;
    }
    let seen = anthropic.wait_requests(sent);
    assert_eq!(seen.len(), sent);
    assert!(deepseek.requests().is_empty(), "a client chose deepseek");
    assert!(
        openrouter.requests().is_empty(),
        "a client chose openrouter"
    );
    for r in &seen {
        assert_eq!(internal_headers(r), Vec::<String>::new(), "{r:?}");
    }

    // Envoy's own control headers from a client change nothing: no retries of a 500, no
    // timeout of its choosing.
    let r = post(
        &gw,
        &[
            ("x-test-fail", "1"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-max-retries", "5"),
            ("x-envoy-upstream-rq-timeout-ms", "1"),
        ],
        &opus,
    );
    assert_eq!(r.status, 500, "{}", r.body);
    // The client has Envoy's final answer, so any retry would already have reached the mock.
    assert_eq!(
        anthropic.requests().len(),
        sent + 1,
        "the client's x-envoy-retry-on was honoured"
    );
    gw.assert_healthy();
}

#[test]
fn the_client_cannot_choose_the_upstream_key_or_another_consumers_identity() {
    let mock = Mock::start("anthropic", failing_on_demand("anthropic"));
    let gw = virtual_keys_gateway(&mock);
    let own = "sk-ant-api03-the-clients-own-key";
    let user_id = json!({"device_id":"d","account_uuid":"","session_id":"s-1","virtual_key":"bot",
        "cost_center":"ci"})
    .to_string();
    let mut with_metadata: Value = serde_json::from_slice(&body(MODEL, true)).unwrap();
    with_metadata["metadata"] = json!({"user_id": user_id, "virtual_key": "bot"});
    let with_metadata = with_metadata.to_string().into_bytes();
    let bearer_alice = format!("Bearer {ALICE}");
    let bearer_own = format!("Bearer {own}");
    let (plain, streamed) = (body(MODEL, false), body(MODEL, true));
    type Attempt<'a> = (Vec<(&'a str, &'a str)>, &'a [u8]);
    let attempts: Vec<Attempt> = vec![
        // Alice's virtual key plus her own Anthropic key in the other credential header.
        (
            vec![("x-api-key", ALICE), ("authorization", &bearer_own)],
            &plain,
        ),
        (
            vec![("x-api-key", own), ("authorization", &bearer_alice)],
            &streamed,
        ),
        // Someone else's consumer and cost center, in headers and in the body.
        (
            vec![
                ("x-api-key", ALICE),
                ("x-claude-gateway-consumer", "bot"),
                ("x-claude-gateway-cost-center", "ci"),
                ("x-claude-gateway-key", "team-key-1"),
                ("x-envoy-attempt-count", "3"),
            ],
            &with_metadata,
        ),
    ];
    for (headers, b) in &attempts {
        let r = post(&gw, headers, b);
        assert_eq!(r.status, 200, "{headers:?}: {}", r.body);
    }
    // Bot may not use Sonnet; claiming to be alice in every other way does not help.
    let r = post(
        &gw,
        &[
            ("x-api-key", BOT),
            ("x-claude-gateway-consumer", "alice"),
            ("x-claude-gateway-cost-center", "platform"),
        ],
        &body(MODEL, false),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // Client retry headers cannot multiply a pool key's attempts beyond the gateway's policy.
    let r = post(
        &gw,
        &[
            ("x-api-key", ALICE),
            ("x-test-fail", "1"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-retriable-status-codes", "500"),
            ("x-envoy-max-retries", "9"),
        ],
        &body(MODEL, false),
    );
    assert_eq!(r.status, 500, "{}", r.body);

    // The client has Envoy's final answer, so any retry would already have reached the mock.
    let seen = mock.requests();
    assert_eq!(seen.len(), 4, "a refused or failing request was sent again");
    for r in &seen {
        assert!(
            matches!(r.header("x-api-key"), Some(POOL_1 | POOL_2)),
            "{:?}",
            r.headers
        );
        assert_eq!(r.header("authorization"), None);
        let all = format!("{:?}", r.headers);
        assert!(!all.contains(own) && !all.contains(ALICE), "{all}");
        assert_eq!(internal_headers(r), Vec::<String>::new());
    }
    // The body reaches the upstream as sent: the gateway reads identity from keys only.
    assert_eq!(bodies::without_diagnostics(&seen[2].body), with_metadata);

    let records = gw.wait_audit_records(5);
    assert_eq!(records.len(), 5);
    for r in &records {
        let forbidden = r["http.response.status_code"] == 403;
        let (who, cc) = if forbidden {
            ("bot", "ci")
        } else {
            ("alice", "platform")
        };
        assert_eq!(
            (r["virtual_key"].as_str(), r["cost_center"].as_str()),
            (Some(who), Some(cc))
        );
    }
    // Spend is labelled with the authenticated consumer's cost center only.
    let prom = gw.admin_get("/stats/prometheus").unwrap();
    assert!(prom.contains("cost_center=\"platform\""), "{prom}");
    for line in prom.lines().filter(|l| l.contains("cost_center=\"ci\"")) {
        assert!(
            line.contains("claude_gateway_requests"),
            "ci was charged: {line}"
        );
    }
    gw.assert_healthy();
}

#[test]
fn a_request_that_fails_authentication_never_reaches_the_upstream() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = virtual_keys_gateway(&mock);
    let digest = sha256_hex(ALICE);
    let bearer_pool = format!("Bearer {POOL_2}");
    let bearer_digest = format!("Bearer {digest}");
    let lower_bearer = format!("bearer {ALICE}");
    let upper = ALICE.to_ascii_uppercase();
    let credentials: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("x-api-key", "")],
        vec![("authorization", "Bearer ")],
        vec![("x-api-key", "vk-not-issued")],
        // The upstream keys and the digest from the config dump are not gateway keys.
        vec![("x-api-key", POOL_1)],
        vec![("authorization", &bearer_pool)],
        vec![("x-api-key", &digest)],
        vec![("authorization", &bearer_digest)],
        // Near misses of a real key.
        vec![("x-api-key", &upper)],
        vec![("x-api-key", &ALICE[..ALICE.len() - 1])],
        vec![("authorization", &lower_bearer)],
        vec![("authorization", ALICE)],
        vec![("x-claude-gateway-consumer", "alice")],
    ];
    let big = {
        let mut v: Value = serde_json::from_slice(&body(MODEL, false)).unwrap();
        v["messages"][0]["content"] = Value::String("x".repeat(2 << 20));
        v.to_string().into_bytes()
    };
    let h2 = h2_client();
    let mut refused = 0;
    for creds in &credentials {
        for (c, method, path, b) in [
            (&client(), "POST", "/v1/messages", body(MODEL, false)),
            (&client(), "POST", "/v1/messages", body(MODEL, true)),
            (
                &client(),
                "POST",
                "/v1/messages/count_tokens",
                body(MODEL, false),
            ),
            (&client(), "POST", "/v1/messages", b"{broken".to_vec()),
            (&client(), "GET", "/v1/models", Vec::new()),
            (
                &client(),
                "POST",
                "/v1/messages/batches",
                body(MODEL, false),
            ),
            (&h2, "POST", "/v1/messages", body(MODEL, true)),
        ] {
            let r = send(c, &gw, method, path, creds, &b);
            assert_eq!(r.status, 401, "{method} {path} {creds:?}: {}", r.body);
            let e: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(e["error"]["type"], "authentication_error");
            refused += 1;
        }
    }
    // A 2 MiB body is read and refused as well.
    assert_eq!(post(&gw, &[("x-api-key", "vk-nope")], &big).status, 401);
    refused += 1;
    assert!(mock.requests().is_empty(), "{:?}", mock.requests()[0]);
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.refused.reason.unauthenticated"),
        refused
    );
    // The same gateway serves a valid key, so the refusals were about the keys.
    assert_eq!(
        post(&gw, &[("x-api-key", ALICE)], &body(MODEL, false)).status,
        200
    );
    assert_eq!(mock.wait_requests(1).len(), 1);
    gw.assert_healthy();
}

#[test]
fn keys_never_appear_in_logs_stats_access_logs_errors_or_config_dumps() {
    let mock = Mock::start("anthropic", failing_on_demand("anthropic"));
    let gw = virtual_keys_gateway(&mock);
    let mut responses = Vec::new();
    for (headers, b) in [
        (vec![("x-api-key", ALICE)], body(MODEL, true)),
        (
            vec![("authorization", "Bearer vk-sec-bot-e80a42")],
            body(MODEL, false),
        ),
        (vec![("x-api-key", BOT)], body(MODEL, false)),
        (vec![("x-api-key", POOL_1)], body(MODEL, false)),
        (
            vec![("x-api-key", ALICE), ("x-test-fail", "1")],
            body(MODEL, false),
        ),
        (vec![("x-api-key", POOL_2)], b"{broken".to_vec()),
    ] {
        responses.push(post(&gw, &headers, &b));
    }
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 403, 403, 401, 500, 401]);
    assert_eq!(gw.wait_audit_records(6).len(), 6);

    let mut places = gw.readable_text();
    for (i, r) in responses.iter().enumerate() {
        places.push((
            format!("response {i}"),
            format!("{}\n{}", r.headers, r.body),
        ));
    }
    // The pool keys are named, never shown: the config dump lists the variables that hold them.
    let dump = &places.iter().find(|p| p.0 == "/config_dump").unwrap().1;
    assert!(
        dump.contains("ANTHROPIC_KEY_1"),
        "host_env_keys not in the dump"
    );
    for (place, text) in &places {
        for secret in [POOL_1, POOL_2, ALICE, BOT] {
            assert!(!text.contains(secret), "{secret} appears in {place}");
        }
    }
    gw.assert_healthy();
}

/// Checks a Prometheus text exposition line by line (names, label syntax and escaping,
/// values) and returns the gateway's series as (name, labels).
fn prometheus_series(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut series = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_ok(name), "bad metric name: {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') || line.starts_with("# HELP "),
            "{line:?}"
        );
        if line.starts_with('#') {
            continue;
        }
        let (name, mut rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {line:?}"),
        };
        assert!(name_ok(name), "bad metric name: {line:?}");
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                let (start, c) = chars.next().expect("unterminated labels");
                if c == '}' {
                    break start + 1;
                }
                let c = if c == ',' {
                    chars.next().unwrap()
                } else {
                    (start, c)
                };
                if c.1 == '}' {
                    break c.0 + 1;
                }
                let mut label = String::from(c.1);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    label.push(c);
                }
                assert!(name_ok(&label), "bad label name {label:?}: {line:?}");
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated value").1 {
                        '"' => break,
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c}: {line:?}"),
                        },
                        c => value.push(c),
                    }
                }
                labels.push((label, value));
            };
            rest = &body[end..];
        }
        let value = rest.trim();
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value {value:?}: {line:?}"
        );
        if name.starts_with("claude_gateway_") {
            series.push((name.to_owned(), labels));
        }
    }
    series
}

#[test]
fn client_text_cannot_forge_metric_series_or_log_lines() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = virtual_keys_gateway(&mock);
    let forged = [
        "claude-sonnet-4-5\nclaude_gateway_requests{route=\"forged\"} 999",
        "claude-opus-4-8.route.forged.status.2xx",
        "model=\"forged\",cost_center=\"forged\"",
        "{{forged}}",
        "forged\r\n[critical][main] forged log line",
        "claude-haiku-4-5\u{0}forged",
        "forged-\u{202e}-bidi-and-ünïcödé",
    ];
    let sessions = [
        "forged.session",
        "forged\"session",
        "forged{session}",
        "a=forged",
    ];
    for (i, model) in forged.iter().enumerate() {
        let mut b: Value = serde_json::from_slice(&body(model, i % 2 == 0)).unwrap();
        b["metadata"] = json!({"user_id": format!("user_x_account__session_forged\n{i}")});
        let r = post(
            &gw,
            &[
                ("x-api-key", ALICE),
                ("x-claude-code-session-id", sessions[i % sessions.len()]),
                ("x-claude-gateway-cost-center", "forged\",x=\"y"),
            ],
            b.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{model:?}: {}", r.body);
    }
    let records = gw.wait_audit_records(forged.len());
    assert_eq!(records.len(), forged.len());

    // Prometheus: parseable, and every label value one the gateway chose.
    let prom = gw.admin_get("/stats/prometheus").unwrap();
    let series = prometheus_series(&prom);
    assert!(
        series.iter().any(|(n, _)| n == "claude_gateway_requests"),
        "{prom}"
    );
    let mut models = BTreeSet::new();
    for (name, labels) in &series {
        for (label, value) in labels {
            assert!(!value.contains("forged"), "{name} {label}={value:?}");
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)),
                "{name} {label}={value:?}"
            );
            if label == "model" {
                models.insert(value.clone());
            }
        }
    }
    let priced: BTreeSet<String> = [
        "claude-sonnet-4-5",
        "claude-opus-4-8",
        "claude-haiku-4-5",
        "other",
    ]
    .map(String::from)
    .into();
    assert!(models.is_subset(&priced), "{models:?}");
    // /stats: one `name: value` per line, names without spaces or quotes.
    for line in gw.admin_get("/stats").unwrap().lines() {
        let (name, _) = line.split_once(": ").unwrap_or((line, ""));
        assert!(!name.contains(['"', ' ', '{', '\r']), "{line:?}");
        assert!(!name.contains("forged"), "{line:?}");
    }

    // Access log: one JSON object per line, holding the client's text as data, escaped.
    let log = std::fs::read_to_string(gw.access_log_path()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), forged.len(), "{log}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object());
    }
    let mut sent: Vec<&str> = forged.to_vec();
    let mut logged: Vec<String> = records
        .iter()
        .map(|r| r["gen_ai.request.model"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    logged.sort();
    assert_eq!(logged, sent);
    for r in &records {
        // Invalid session ids are dropped, never recorded.
        assert!(r["session.id"].is_null(), "{r}");
        assert_eq!(r["cost_center"], "platform");
    }
    // Envoy's own log: no line the client wrote.
    let envoy_log = gw.log();
    assert!(
        !envoy_log.lines().any(|l| l.contains("forged")),
        "{envoy_log}"
    );
    gw.assert_healthy();
}
