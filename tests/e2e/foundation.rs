//! The foundation: Claude Code traffic passes through the gateway untouched, streams are not
//! buffered, large bodies fit, errors and other endpoints pass through.

use crate::support::anthropic::{self, USAGE};
use crate::support::envoy::{self, Gateway, Started, repo};
use crate::support::mock::{Gate, Mock, Reply, Step};
use crate::support::{bodies, client, h2_client};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Plugin configuration with cache injection off: the filter must then change no body byte.
const PASSTHROUGH: &str = r#"{"cache":{"enabled":false}}"#;

/// A gateway with the default plugin configuration in front of one default mock.
fn gateway() -> (Mock, Gateway) {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    (mock, gw)
}

/// Headers Claude Code sends (anthropic-wire.md §2.2) plus an unknown one; all must arrive as sent.
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("anthropic-version", "2023-06-01"),
    (
        "anthropic-beta",
        "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,extended-cache-ttl-2025-04-11",
    ),
    ("x-api-key", "sk-ant-api03-client-key"),
    ("authorization", "Bearer sk-ant-oat01-client-token"),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "0.120.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v24.3.0"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-timeout", "600"),
    (
        "x-claude-code-session-id",
        "57a121ec-f78c-48c3-a745-e3036a3ecc33",
    ),
    ("x-some-unknown-header", "Value; with=odd \"chars\", commas"),
    ("content-type", "application/json"),
    ("accept", "application/json"),
    ("user-agent", "claude-cli/2.1.92 (external, cli)"),
];

#[test]
fn upstream_receives_the_clients_body_headers_path_and_query() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let other = Mock::start("other", anthropic::responder("other"));
    let mut b = envoy::bootstrap(mock.port(), PASSTHROUGH);
    b.add_cluster("other", "127.0.0.1", other.port());
    let gw = Gateway::start(b);
    let body = bodies::claude_code("claude-opus-4-8", false, 20_000);

    for http in [client(), h2_client()] {
        let mut req = http
            .post(gw.url("/v1/messages?beta=true"))
            .body(body.clone())
            // A client trying to pick the cluster itself, and asking for compression.
            .header("x-claude-gateway-cluster", "other")
            .header("accept-encoding", "gzip, deflate, br, zstd");
        for (k, v) in CLIENT_HEADERS {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-mock-upstream"], "anthropic");
    }

    let seen = mock.wait_requests(2);
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("POST", "/v1/messages?beta=true")
        );
        assert_eq!(
            bodies::without_diagnostics(&r.body),
            body,
            "body bytes changed"
        );
        for (k, v) in CLIENT_HEADERS {
            assert_eq!(r.header(k), Some(*v), "header {k}");
        }
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        // The gateway reads responses, so it asks for them uncompressed.
        assert_eq!(r.header("accept-encoding"), Some("identity"));
        // Gateway-internal headers never reach Anthropic.
        assert_eq!(r.header("x-claude-gateway-cluster"), None);
        assert_eq!(r.header("x-envoy-external-address"), None);
    }
    assert!(other.requests().is_empty(), "the client chose the cluster");
    gw.assert_healthy();
}

/// Reads from `r` until `buf` has at least `n` bytes.
pub(crate) fn read_at_least(r: &mut impl Read, buf: &mut Vec<u8>, n: usize) {
    let mut chunk = [0u8; 4096];
    while buf.len() < n {
        let got = r.read(&mut chunk).unwrap();
        assert!(got > 0, "stream ended early");
        buf.extend_from_slice(&chunk[..got]);
    }
}

#[test]
fn streamed_events_reach_the_client_before_the_stream_ends() {
    // The mock holds the rest of the stream until the client has the first event: a proxy
    // that buffers the response never delivers it, and the client's deadline fails the test.
    let events = anthropic::stream_events("claude-sonnet-4-5", &["Hel", "lo"], USAGE);
    let gate = Gate::new();
    let (first, rest) = (events[0].clone(), events[1..].to_vec());
    let g = gate.clone();
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |_| {
            let mut s = vec![Step::Send(first.clone()), Step::Wait(g.clone())];
            s.extend(anthropic::steps(rest.clone()));
            Reply::sse(s)
        }),
    );
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut resp = http
        .post(gw.url("/v1/messages?beta=true"))
        .body(bodies::claude_code("claude-sonnet-4-5", true, 4_000))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut got = Vec::new();
    read_at_least(&mut resp, &mut got, events[0].len());
    assert_eq!(got, events[0], "first event");
    gate.open();
    resp.read_to_end(&mut got).unwrap();
    assert_eq!(got, events.concat(), "the stream arrived changed");
    gw.assert_healthy();
}

#[test]
fn large_bodies_pass_over_http1_chunked_and_http2() {
    let (mock, gw) = gateway();
    let body = bodies::claude_code("claude-opus-4-8", true, 5 << 20);
    assert!(body.len() >= 5 << 20);
    let url = gw.url("/v1/messages?beta=true");
    let sent = [
        client().post(&url).body(body.clone()).send().unwrap(),
        // A reader of unknown length is uploaded with transfer-encoding: chunked.
        client()
            .post(&url)
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(
                body.clone(),
            )))
            .send()
            .unwrap(),
        h2_client().post(&url).body(body.clone()).send().unwrap(),
    ];
    for resp in sent {
        assert_eq!(resp.status(), 200);
        let text = resp.text().unwrap();
        assert!(text.contains("message_stop"), "{text}");
    }
    let seen = mock.wait_requests(3);
    assert_eq!(seen.len(), 3);
    let want = bodies::rewritten(&body);
    assert!(want.len() > body.len(), "no marker added");
    for r in &seen {
        assert!(
            bodies::without_diagnostics(&r.body) == want,
            "a 5 MiB body arrived with other changes than its markers"
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
    }
    gw.assert_healthy();
}

/// Sends `len` bytes of body over a raw HTTP/1.1 connection and returns the response head and
/// body; the gateway may answer before the upload ends, so write errors are expected.
pub(crate) fn raw_upload(port: u16, path: &str, len: usize) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut writer = s.try_clone().unwrap();
    let upload = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..len.div_ceil(chunk.len()) {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                drop(s);
                let _ = upload.join();
                return (head.to_owned(), body.to_owned());
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("no complete response: {text:?}"),
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
}

/// The Messages API's error envelope with the given type.
pub(crate) fn assert_envelope(body: &str, kind: &str) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "error", "{body}");
    assert_eq!(v["error"]["type"], kind, "{body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[test]
fn bodies_over_32_mib_get_413_in_the_api_error_envelope() {
    let (mock, gw) = gateway();
    let (head, body) = raw_upload(gw.port, "/v1/messages?beta=true", 33 << 20);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_envelope(&body, "request_too_large");
    assert!(mock.requests().is_empty());
    // Envoy refused it before the filter saw it; the filter's record still names it.
    let records = gw.wait_audit_records(1);
    assert_eq!(records[0]["http.response.status_code"], 413);
    assert_eq!(records[0]["url.path"], "/v1/messages");
    // And the next request is served.
    let resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .body(bodies::claude_code("claude-opus-4-8", true, 4_000))
        .send()
        .unwrap();
    assert!(resp.text().unwrap().contains("message_stop"));
    gw.assert_healthy();
}

#[test]
fn an_unreachable_upstream_gets_503_in_the_api_error_envelope() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gw = Gateway::start(envoy::bootstrap(port, "{}"));
    let resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .body(bodies::claude_code("claude-opus-4-8", false, 4_000))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_envelope(&resp.text().unwrap(), "api_error");
    gw.assert_healthy();
}

#[test]
fn other_endpoints_pass_through_and_healthz_is_local() {
    let (mock, gw) = gateway();
    let http = client();

    let count = br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
    let r = http
        .post(gw.url("/v1/messages/count_tokens?beta=true"))
        .header("anthropic-beta", "token-counting-2024-11-01")
        .body(count.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("input_tokens"));

    let r = http.get(gw.url("/v1/models?limit=1000")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("claude-sonnet-4-5"));

    let r = http.head(gw.url("/api/hello")).send().unwrap();
    assert_eq!(r.status(), 200);

    let batch = br#"{"requests":[]}"#;
    let r = http
        .post(gw.url("/v1/messages/batches"))
        .body(batch.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the mock has no batches endpoint");

    let r = http.get(gw.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "ok\n");

    let seen = mock.wait_requests(4);
    let targets: Vec<(&str, &str)> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        targets,
        [
            ("POST", "/v1/messages/count_tokens?beta=true"),
            ("GET", "/v1/models?limit=1000"),
            ("HEAD", "/api/hello"),
            ("POST", "/v1/messages/batches"),
        ]
    );
    assert_eq!(seen[0].body, count);
    assert_eq!(seen[0].header("accept-encoding"), Some("identity"));
    assert_eq!(seen[3].body, batch);
    gw.assert_healthy();
}

#[test]
fn upstream_errors_reach_the_client_unchanged() {
    let cases: Vec<Reply> = vec![
        anthropic::error(
            400,
            "invalid_request_error",
            "prompt is too long: 213462 tokens > 200000 maximum",
        ),
        anthropic::error(401, "authentication_error", "invalid x-api-key"),
        anthropic::error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .header("retry-after", "17")
        .header("anthropic-ratelimit-requests-remaining", "0"),
        anthropic::error(500, "api_error", "Internal server error")
            .header("x-should-retry", "true"),
        anthropic::error(529, "overloaded_error", "Overloaded"),
    ];
    for want in cases {
        let want_body = match &want.body {
            crate::support::mock::Body::Full(b) => b.clone(),
            _ => unreachable!(),
        };
        let want_headers = want.headers.clone();
        let status = want.status;
        let reply = std::sync::Mutex::new(Some(want));
        let mock = Mock::start(
            "anthropic",
            Arc::new(move |_| reply.lock().unwrap().take().expect("one request only")),
        );
        let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
        let resp = client()
            .post(gw.url("/v1/messages?beta=true"))
            .body(bodies::claude_code("claude-opus-4-8", true, 4_000))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        for (k, v) in &want_headers {
            assert_eq!(resp.headers()[k.as_str()], v.as_str(), "{status} {k}");
        }
        assert_eq!(resp.bytes().unwrap().to_vec(), want_body, "{status} body");
        assert_eq!(mock.requests().len(), 1, "{status} was retried");
        gw.assert_healthy();
    }
}

#[test]
fn a_mid_stream_error_event_reaches_the_client_unchanged() {
    let mut events = anthropic::stream_events("claude-opus-4-8", &["Hel"], USAGE);
    events.truncate(4);
    events.push(
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
            .to_vec(),
    );
    let e = events.clone();
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |_| Reply::sse(anthropic::steps(e.clone()))),
    );
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    let resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .body(bodies::claude_code("claude-opus-4-8", true, 4_000))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().to_vec(), events.concat());
    gw.assert_healthy();
}

#[test]
fn an_upstream_reset_mid_stream_ends_the_clients_stream_and_the_gateway_keeps_serving() {
    let events = anthropic::stream_events("claude-opus-4-8", &["Hel", "lo"], USAGE);
    let head = events[..3].to_vec();
    // The reset waits until the client has the first events: a reset overtaking unread data
    // would discard it in the kernel, which is not what this test is about.
    let delivered = Gate::new();
    let resets = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (r, d) = (resets.clone(), delivered.clone());
    let full = events.clone();
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |_| {
            if r.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let mut s = anthropic::steps(head.clone());
                s.push(Step::Wait(d.clone()));
                s.push(Step::Reset);
                Reply::sse(s)
            } else {
                Reply::sse(anthropic::steps(full.clone()))
            }
        }),
    );
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    let body = bodies::claude_code("claude-opus-4-8", true, 4_000);
    let mut resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    read_at_least(&mut resp, &mut got, events[..3].concat().len());
    delivered.open();
    let outcome = resp.read_to_end(&mut got);
    assert!(
        outcome.is_err(),
        "the client saw a clean end of a reset stream"
    );
    assert_eq!(got, events[..3].concat());
    assert_eq!(mock.requests().len(), 1, "a started response was retried");

    let resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.bytes().unwrap().to_vec(), events.concat());
    gw.assert_healthy();
}

#[test]
fn the_official_python_sdk_works_through_the_gateway() {
    let (mock, gw) = gateway();
    let out = envoy::python(
        &[repo().join("tests/e2e/sdk_client.py")],
        &[("GATEWAY_URL", &gw.url(""))],
    );
    let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let text = anthropic::reply_text("anthropic");
    assert_eq!(got["text"], text.as_str());
    assert_eq!(got["stream_text"], text.as_str());
    assert_eq!(got["stream_stop_reason"], "end_turn");
    for usage in [&got["usage"], &got["stream_usage"]] {
        assert_eq!(usage["input_tokens"], USAGE.input);
        assert_eq!(usage["output_tokens"], USAGE.output);
        assert_eq!(usage["cache_read_input_tokens"], USAGE.cache_read);
    }
    let seen = mock.wait_requests(2);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].json()["stream"], serde_json::Value::Null);
    assert_eq!(seen[1].json()["stream"], true);
    for r in &seen {
        assert_eq!(r.target, "/v1/messages");
        // SDK 2.x sends the API key as a bearer token; older ones as x-api-key.
        let credential = [r.header("authorization"), r.header("x-api-key")];
        assert!(
            credential.contains(&Some("Bearer sk-ant-api03-sdk-client"))
                || credential.contains(&Some("sk-ant-api03-sdk-client")),
            "{:?}",
            r.headers
        );
        assert_eq!(r.header("x-stainless-lang"), Some("python"));
        assert!(r.header("anthropic-version").is_some());
    }
    gw.assert_healthy();
}

#[test]
fn bodies_the_gateway_cannot_read_are_forwarded_untouched_and_counted() {
    let (mock, gw) = gateway();
    let cases: [(&[u8], &str); 4] = [
        (
            b"{\"model\": \"claude-opus-4-8\", \"messages\": [",
            "invalid_json",
        ),
        (b"not json at all \xff\xfe", "invalid_json"),
        (
            br#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
            "no_model",
        ),
        (b"", "empty"),
    ];
    for (body, _) in &cases {
        let resp = client()
            .post(gw.url("/v1/messages?beta=true"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.headers()["x-mock-upstream"], "anthropic");
    }
    let seen = mock.wait_requests(cases.len());
    assert_eq!(seen.len(), cases.len());
    for (r, (body, _)) in seen.iter().zip(&cases) {
        assert_eq!(r.body, *body);
    }
    let counter = |reason: &str| {
        gw.counter(&format!(
            "wasmcustom.claude_gateway.body_passthrough.reason.{reason}"
        ))
    };
    assert_eq!(counter("invalid_json"), 2);
    assert_eq!(counter("no_model"), 1);
    assert_eq!(counter("empty"), 1);
    gw.assert_healthy();
}

#[test]
fn an_invalid_plugin_configuration_is_refused_with_its_path() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let b = envoy::bootstrap(mock.port(), r#"{"default_clustr":"x"}"#);
    match Gateway::try_start(b) {
        Started::Ready(_) => panic!("envoy accepted an invalid plugin configuration"),
        Started::Exited { log, .. } => {
            assert!(log.contains("unknown field `default_clustr`"), "{log}");
        }
    }
}

#[test]
fn a_plugin_configuration_given_as_a_json_string_still_routes() {
    // The bootstraps carry the plugin configuration as YAML (a google.protobuf.Struct, which
    // Envoy serializes for the filter); JSON text in a google.protobuf.StringValue, as they did
    // before (and as Istio hands over a WasmPlugin's pluginConfig), must work as well.
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let other = Mock::start("other", anthropic::responder("other"));
    let mut b = envoy::bootstrap(mock.port(), "{}");
    b.add_cluster("other", "127.0.0.1", other.port())
        .plugin_config_string(
            r#"{"routes":[{"name":"haiku-other","match":{"model":"claude-haiku-*"},"cluster":"other"}],
                "cache":{"enabled":false}}"#,
        );
    let gw = Gateway::start(b);
    let dump = gw.admin_get("/config_dump").unwrap();
    assert!(
        dump.contains("type.googleapis.com/google.protobuf.StringValue")
            && !dump.contains("type.googleapis.com/google.protobuf.Struct"),
        "the configuration did not reach Envoy as a string"
    );
    for (n, (model, upstream, route)) in [
        ("claude-haiku-4-5", "other", "haiku-other"),
        ("claude-sonnet-4-5", "anthropic", "anthropic"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"model":"{model}","max_tokens":8,"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let resp = client()
            .post(gw.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-client")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(resp.headers()["x-mock-upstream"], upstream, "{model}");
        let record = gw.wait_audit_records(n + 1).swap_remove(n);
        assert_eq!(record["route"], route, "{record}");
        // Cache injection off, from the same string: the body arrives as sent.
        let got = if upstream == "other" { &other } else { &mock };
        assert_eq!(got.requests().last().unwrap().body, body.as_bytes());
    }
    assert_eq!(other.requests().len(), 1);
    assert_eq!(mock.requests().len(), 1);
    gw.assert_healthy();
}
