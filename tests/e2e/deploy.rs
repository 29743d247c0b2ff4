//! What the deployment artifacts promise, through the real Envoy: the production example
//! (TLS, CORS, health, audit log file), the filter without held headers (Istio's WasmPlugin,
//! Envoy Gateway), audit records written within a second with the shipped Envoy flags, and the
//! Grafana dashboard naming only metrics the gateway exports.

use crate::support::anthropic;
use crate::support::bootstrap::Bootstrap;
use crate::support::envoy::{self, Gateway, Run, repo};
use crate::support::mock::{Mock, Recorded};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

const MODEL: &str = "claude-sonnet-4-5";

fn body(stream: bool, system: &str) -> Vec<u8> {
    json!({"model": MODEL, "max_tokens": 16, "stream": stream, "system": system,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
    .into_bytes()
}

fn post(gw: &Gateway, key: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = crate::support::client()
        .post(gw.url("/v1/messages"))
        .header("connection", "close")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// envoy/envoy.yaml without `allow_on_headers_stop_iteration`, as Istio's WasmPlugin and
/// Envoy Gateway build the filter, with the plugin configuration of a shipped manifest.
fn without_stop_iteration_flag(mock: &Mock, plugin_config: &str) -> Bootstrap {
    let mut b = envoy::bootstrap(mock.port(), plugin_config);
    assert_eq!(
        b.replace_value("allow_on_headers_stop_iteration", "true", "false"),
        1
    );
    b
}

/// The pluginConfig of deploy/istio/wasmplugin.yaml, as JSON.
fn wasmplugin_config() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/istio/wasmplugin.yaml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(doc["kind"], "WasmPlugin");
    doc["spec"]["pluginConfig"].to_string()
}

#[test]
fn the_wasmplugin_configuration_works_without_the_stop_iteration_flag() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = Gateway::start(without_stop_iteration_flag(&mock, &wasmplugin_config()));
    let system = "x".repeat(20_000);
    for stream in [true, false] {
        let sent = body(stream, &system);
        let (status, text) = post(&gw, Some("sk-ant-client"), &sent);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("msg_mock"), "{text}");
        // Forwarded byte for byte: no markers without held headers.
        let got = mock.requests().last().unwrap().clone();
        assert_eq!(got.body, sent);
        assert_eq!(got.header("x-api-key"), Some("sk-ant-client"));
    }
    let records = gw.wait_audit_records(2);
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        // The model and usage are still read, from the body as it passed.
        assert_eq!(r["gen_ai.request.model"], MODEL);
        assert_eq!(r["gen_ai.usage.output_tokens"], anthropic::USAGE.output);
        assert_eq!(r["usage_status"], "complete");
        assert_eq!(r["cache_markers_added"], 0);
        assert_eq!(r["body_issue"], Value::Null);
    }
    assert_eq!(records[0]["stream"], true);
    assert_eq!(records[1]["stream"], false);
    gw.assert_healthy();
}

#[test]
fn held_headers_without_the_stop_iteration_flag_stall_the_request() {
    // Why the EnvoyFilter carries allow_on_headers_stop_iteration: with the default
    // (holding) configuration and no flag, Envoy never hands the filter the body.
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = Gateway::start(without_stop_iteration_flag(&mock, "{}"));
    let client = reqwest::blocking::Client::builder()
        .http1_only()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = client
        .post(gw.url("/v1/messages"))
        .header("content-type", "application/json")
        .body(body(false, "hi"))
        .send();
    // Stalled, not failed: a reset (a trapped VM, say) would be an error but not a timeout.
    assert!(
        r.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the request did not stall: {r:?}"
    );
    assert!(mock.requests().is_empty());
    gw.assert_healthy();
}

#[test]
fn the_production_example_terminates_tls_answers_cors_and_logs_to_a_file() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let dir = std::env::temp_dir().join(format!("claude-gateway-prod-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tls = dir.join("tls");
    envoy::python(
        &[repo().join("deploy/tools/selfsigned.py"), tls.clone()],
        &[],
    );
    let audit = dir.join("audit.log");
    let text = std::fs::read_to_string(repo().join("envoy/examples/production.yaml"))
        .unwrap()
        .replace("/etc/envoy/tls/", &format!("{}/", tls.display()))
        .replace("/var/log/envoy/audit.log", audit.to_str().unwrap());
    let mut b = Bootstrap::parse(&text).unwrap();
    b.listener_address("stats", "127.0.0.1", 0).unwrap();
    let up =
        crate::support::bootstrap::Upstream::parse(&format!("http://127.0.0.1:{}", mock.port()))
            .unwrap();
    b.upstream("anthropic", &up).unwrap();
    let gw = Gateway::start(b);

    // A browser-like client over TLS, trusting the throw-away certificate.
    let script = r#"
import http.client, json, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def call(method, path, headers, body=None):
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=20)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    out = {"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()}, "body": r.read().decode()}
    c.close()
    return out
sdk = "anthropic-version,x-api-key,anthropic-beta,anthropic-dangerous-direct-browser-access,content-type,authorization"
print(json.dumps({
  "health": call("GET", "/healthz", {}),
  "preflight": call("OPTIONS", "/v1/messages", {"Origin": "https://console.example.com",
      "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": sdk}),
  "preflight_other": call("OPTIONS", "/v1/messages", {"Origin": "https://evil.example",
      "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": sdk}),
  "post": call("POST", "/v1/messages", {"Origin": "https://team-a.tools.example.com",
      "content-type": "application/json", "anthropic-version": "2023-06-01",
      "x-api-key": "sk-ant-browser", "anthropic-dangerous-direct-browser-access": "true"},
      json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "hi"}]})),
}))
"#;
    let port = gw.port.to_string();
    let cert = tls.join("cert.pem");
    let out = envoy::python(
        &[
            "-c".as_ref(),
            script.as_ref(),
            port.as_ref(),
            cert.as_os_str(),
        ],
        &[],
    );
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["health"]["status"], 200);
    let pre = &r["preflight"];
    assert_eq!(pre["status"], 200, "{pre}");
    assert_eq!(
        pre["headers"]["access-control-allow-origin"],
        "https://console.example.com"
    );
    let allowed = pre["headers"]["access-control-allow-headers"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "anthropic-version",
        "x-api-key",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "content-type",
        "authorization",
    ] {
        assert!(allowed.contains(h), "{h} not allowed: {allowed}");
    }
    assert!(
        r["preflight_other"]["headers"]
            .get("access-control-allow-origin")
            .is_none(),
        "{}",
        r["preflight_other"]
    );
    let post = &r["post"];
    assert_eq!(post["status"], 200, "{post}");
    assert!(post["body"].as_str().unwrap().contains("Hello from"));
    assert_eq!(
        post["headers"]["access-control-allow-origin"],
        "https://team-a.tools.example.com"
    );
    // The allowed preflight was answered by Envoy (a refused one goes on without CORS headers,
    // which the browser then blocks); the POST went upstream with the client's own key.
    let seen = mock.requests();
    let posts: Vec<_> = seen.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].header("x-api-key"), Some("sk-ant-browser"));
    assert!(seen.len() <= 2);

    // The audit record went to the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["gen_ai.operation.name"] == "chat");
        if let Some(v) = found {
            break v;
        }
        assert!(Instant::now() < deadline, "no audit record in {text:?}");
        sleep(Duration::from_millis(50));
    };
    assert_eq!(record["gen_ai.request.model"], "claude-sonnet-4-5");
    assert_eq!(record["http.response.status_code"], 200);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one Messages request and waits (up to 3 s) for its audit record in the access log:
/// the record and how long after the response it appeared.
fn audit_record_delay(gw: &Gateway, mock: &Mock) -> (Value, Duration) {
    let r = crate::support::client()
        .post(gw.url("/v1/messages"))
        .header("connection", "close")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-client")
        .body(body(false, "flush"))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let responded = Instant::now();
    assert_eq!(status, 200, "{text}");
    // The request's x-request-id as Envoy sent it upstream (Envoy makes one for a client
    // outside its internal addresses), which the filter records.
    let id = mock
        .requests()
        .last()
        .unwrap()
        .header("x-request-id")
        .unwrap()
        .to_owned();
    let deadline = responded + Duration::from_secs(3);
    loop {
        let found = gw
            .audit_records()
            .into_iter()
            .find(|r| r["request_id"] == id.as_str());
        if let Some(r) = found {
            return (r, responded.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "no audit record for {id} 3 s after the response: {:?}",
            std::fs::read_to_string(gw.access_log_path()).unwrap_or_default()
        );
        sleep(Duration::from_millis(10));
    }
}

/// The flags every shipped way of starting Envoy passes (`make run`, the manifests): the
/// audit record of a request is in the access log within 2 s of its response, where Envoy's
/// default (every 10 s) would keep it in memory, lost if Envoy crashed.
#[test]
fn the_audit_record_reaches_the_access_log_within_a_second_with_the_shipped_flags() {
    let [flag, value] = crate::support::bootstrap::ENVOY_ARGS;
    assert_eq!(flag, "--file-flush-interval-msec");
    let interval_ms: u32 = value.parse().unwrap();
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = Gateway::start_with(
        envoy::bootstrap(mock.port(), "{}"),
        &Run {
            file_flush_interval_ms: interval_ms,
            ..Run::default()
        },
    );
    let info: Value = serde_json::from_str(&gw.admin_get("/server_info").unwrap()).unwrap();
    assert_eq!(
        info["command_line_options"]["file_flush_interval"],
        format!("{}s", f64::from(interval_ms) / 1000.0),
        "{info}"
    );
    // Envoy's flush timer ticks from start-up on; a log's flush thread starts with its first
    // line and writes it at once. Later lines wait for the next tick (or 64 KiB), so the
    // first record proves nothing; the second waits up to one interval (with Envoy's default,
    // until 10 s after start-up: this test would fail).
    let (_, first) = audit_record_delay(&gw, &mock);
    let (record, after) = audit_record_delay(&gw, &mock);
    eprintln!(
        "audit records in the access log {first:?} (the first) and {after:?} (the next) after their responses"
    );
    assert!(
        after < Duration::from_secs(2),
        "the audit record took {after:?}"
    );
    assert_eq!(record["gen_ai.request.model"], MODEL);
    assert_eq!(record["http.response.status_code"], 200);
    gw.assert_healthy();
}

/// Metric names and the label names each carries, from a Prometheus exposition.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let inner = &line[end + 1..line.find('}').unwrap()];
            for pair in inner.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_owned());
                }
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Each PromQL expression's metric names, with the label names its selectors, `by (...)`
/// clauses and `label_values(...)` calls use.
fn references(expr: &str) -> (Vec<String>, BTreeSet<String>) {
    let mut metrics = Vec::new();
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("claude_gateway_") {
        let name = ident_at(&rest[i..]);
        metrics.push(name.to_owned());
        rest = &rest[i + name.len()..];
        if let Some(sel) = rest.strip_prefix('{') {
            for m in sel[..sel.find('}').unwrap()].split(',') {
                labels.insert(ident_at(m.trim()).to_owned());
            }
        } else if let Some(arg) = rest.strip_prefix(", ") {
            labels.insert(ident_at(arg).to_owned()); // label_values(metric, label)
        }
    }
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let inner = &rest[i + 4..];
        let close = inner.find(')').unwrap();
        for l in inner[..close].split(',') {
            labels.insert(l.trim().to_owned());
        }
        rest = &inner[close..];
    }
    labels.remove("le"); // the histogram bucket bound, on every _bucket series
    (metrics, labels)
}

#[test]
fn the_dashboard_names_only_metrics_and_labels_the_gateway_exports() {
    const POOL_1: &str = "sk-ant-api03-dashboard-pool-one";
    const POOL_2: &str = "sk-ant-api03-dashboard-pool-two";
    // Pool key 1 is always rate limited (key cooldowns); a body asking for it gets an error.
    let normal = anthropic::responder("anthropic");
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |r: &Recorded| {
            if r.header("x-api-key") == Some(POOL_1) {
                anthropic::error(429, "rate_limit_error", "Rate limited")
                    .header("retry-after", "30")
            } else if String::from_utf8_lossy(&r.body).contains("please-fail") {
                anthropic::error(400, "invalid_request_error", "max_tokens: too large")
            } else {
                normal(r)
            }
        }),
    );
    let b = envoy::shipped(
        "examples/virtual-keys.yaml",
        &[("anthropic", &[mock.port()])],
    );
    let gw = Gateway::start_with(
        b,
        &Run::default()
            .env("ANTHROPIC_KEY_1", POOL_1)
            .env("ANTHROPIC_KEY_2", POOL_2),
    );
    // The example's consumer key (its digest is in envoy/examples/virtual-keys.yaml).
    let alice = Some("vk-alice-example-key");
    let long = "You are a careful assistant. ".repeat(400);
    for stream in [true, false, true] {
        let (status, text) = post(&gw, alice, &body(stream, &long));
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(post(&gw, alice, &body(false, "please-fail")).0, 400);
    assert_eq!(post(&gw, Some("vk-unknown"), &body(false, "hi")).0, 401);
    assert_eq!(post(&gw, alice, b"{not json").0, 200);

    let path = repo().join("deploy/grafana/claude-gateway.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    assert!(exprs.len() >= 13, "{exprs:?}");

    // Histograms appear after a stats flush (5 s): wait, bounded, for every name.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut missing: Vec<String>;
    loop {
        let exported = exposition(&gw.admin_get("/stats/prometheus").unwrap_or_default());
        missing = Vec::new();
        for expr in &exprs {
            let (metrics, labels) = references(expr);
            assert!(!metrics.is_empty(), "no gateway metric in {expr}");
            let mut known = BTreeSet::new();
            for m in &metrics {
                match exported.get(m) {
                    Some(l) => known.extend(l.iter().cloned()),
                    None => missing.push(format!("metric {m} (in {expr})")),
                }
            }
            for l in labels.difference(&known) {
                if metrics.iter().all(|m| exported.contains_key(m)) {
                    missing.push(format!("label {l} on {metrics:?} (in {expr})"));
                }
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(250));
    }
    assert!(
        missing.is_empty(),
        "the dashboard names what the gateway does not export:\n{}",
        missing.join("\n")
    );
    gw.assert_healthy();
}
