//! Faults end to end: each one ends with a clear outcome for the client (a status, and the API's
//! error envelope where the gateway or Envoy answers), an audit record and counters that match
//! what happened, and a worker that keeps serving. Envoy runs one worker here, so the request
//! that follows a fault is served by the worker that saw it.
//!
//! Faults covered elsewhere: a reset mid-stream (`foundation::an_upstream_reset_mid_stream_...`
//! and the `upstream_reset` case of `usage::counters_audit_records_...`), a client abort
//! mid-stream and an error event mid-stream (`usage::counters_...`), bodies over 32 MiB
//! (`foundation::bodies_over_32_mib_...`), unreadable JSON (`foundation::bodies_the_gateway_
//! cannot_read_...`, extended here with the audit record).

use crate::foundation::{assert_envelope, read_at_least};
use crate::support::anthropic::{self, USAGE};
use crate::support::bootstrap::{Bootstrap, ecds_resource};
use crate::support::envoy::{self, Gateway, Run, wasm_path};
use crate::support::mock::{Gate, Mock, Recorded, Reply, Step};
use crate::support::{bodies, client};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MODEL: &str = "claude-sonnet-4-5";
const SESSION: &str = "x-claude-code-session-id";

/// One worker: the request after a fault meets the same VM.
fn start(b: Bootstrap) -> Gateway {
    Gateway::start_with(
        b,
        &Run {
            concurrency: 1,
            ..Run::default()
        },
    )
}

/// The session a request was tagged with (each case sends its own).
fn session(r: &Recorded) -> &str {
    r.header(SESSION).unwrap_or_default()
}

/// Waits (bounded) for the audit record of the request sent with session `id`.
fn record(gw: &Gateway, id: &str) -> Value {
    access_line(gw, |v| v["session.id"] == id)
}

/// The lines of the access log (the filter's records and Envoy's own for requests the filter
/// never saw), waiting (bounded) until one satisfies `want`.
fn access_line(gw: &Gateway, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(gw.access_log_path()).unwrap_or_default();
        let hit = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| want(v));
        match hit {
            Some(v) => return v,
            None if Instant::now() > deadline => panic!("no such access log line:\n{text}"),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn tokens(r: &Value) -> [u64; 5] {
    [
        "gen_ai.usage.input_tokens",
        "cache_creation_5m_input_tokens",
        "cache_creation_1h_input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.output_tokens",
    ]
    .map(|k| r[k].as_u64().unwrap())
}

/// What the default mock reply reports, in the order of [`tokens`].
const FULL: [u64; 5] = [
    USAGE.input,
    USAGE.cache_creation,
    0,
    USAGE.cache_read,
    USAGE.output,
];

fn counter(gw: &Gateway, name: &str) -> u64 {
    gw.counter(&format!("wasmcustom.claude_gateway.{name}"))
}

/// Labels of the request metrics for the default route and `model`.
fn labels(model: &str) -> String {
    format!("route.anthropic.model.{model}.cost_center.none")
}

/// A Claude Code request through the gateway gets its markers and the whole stream: the
/// worker is still serving after a fault.
fn serves_normally(gw: &Gateway, mock: &Mock, id: &str) {
    let body = bodies::claude_code(MODEL, true, 8_000);
    let resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .header(SESSION, id)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{id}");
    assert!(resp.text().unwrap().contains("message_stop"), "{id}");
    let seen = mock.requests();
    let r = seen.iter().rev().find(|r| session(r) == id).unwrap();
    assert!(
        bodies::without_diagnostics(&r.body) == bodies::rewritten(&body),
        "{id}: markers not added"
    );
    assert_eq!(tokens(&record(gw, id)), FULL, "{id}");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn messages_body(model: &str, stream: bool) -> Vec<u8> {
    json!({"model":model,"max_tokens":64,"stream":stream,
        "messages":[{"role":"user","content":"hi"}]})
    .to_string()
    .into_bytes()
}

#[test]
fn a_refused_upstream_connection_gets_503_after_the_retries_and_is_accounted() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let config =
        r#"{"routes":[{"name":"dead","match":{"model":"claude-dead-*"},"cluster":"dead"}]}"#;
    let mut b = envoy::bootstrap(mock.port(), config);
    b.add_cluster("dead", "127.0.0.1", closed_port());
    let gw = start(b);
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "refused")
        .body(messages_body("claude-dead-1", true))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_envelope(&resp.text().unwrap(), "api_error");
    let r = record(&gw, "refused");
    assert_eq!(r["http.response.status_code"], 503);
    assert_eq!(r["route"], "dead");
    // The route retries connection failures twice.
    assert_eq!(r["attempts"], 3, "{r}");
    assert_eq!(tokens(&r), [0; 5]);
    assert_eq!(
        counter(
            &gw,
            "requests.route.dead.model.other.cost_center.none.status.5xx"
        ),
        1
    );
    assert!(mock.requests().is_empty());
    serves_normally(&gw, &mock, "after");
    gw.assert_healthy();
}

#[test]
fn upstream_resets_before_and_after_the_response_head() {
    // `once`: reset on the first attempt only (Envoy retries it); `always`: on every attempt;
    // `after_head`: the head is sent, then the connection is reset once the client has it.
    let head_seen = Gate::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (g, n) = (head_seen.clone(), attempts.clone());
    let default = anthropic::responder("anthropic");
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |r: &Recorded| match session(r) {
            "once" if n.fetch_add(1, Ordering::SeqCst) == 0 => Reply::reset(),
            "always" => Reply::reset(),
            "after_head" => Reply::sse(vec![Step::Wait(g.clone()), Step::Reset]),
            _ => default(r),
        }),
    );
    let gw = start(envoy::bootstrap(mock.port(), "{}"));
    let send = |id: &str| {
        client()
            .post(gw.url("/v1/messages"))
            .header(SESSION, id)
            .body(messages_body(MODEL, true))
            .send()
            .unwrap()
    };

    // A reset before any response byte is retried: the client never sees the failed attempt,
    // and the tokens of the answer are counted once.
    let resp = send("once");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().unwrap().contains("message_stop"));
    let r = record(&gw, "once");
    assert_eq!((r["attempts"].as_u64(), tokens(&r)), (Some(2), FULL), "{r}");
    assert_eq!(r["usage_status"], "complete");

    // Every attempt reset: 503 in the envelope once the retries are spent.
    let resp = send("always");
    assert_eq!(resp.status(), 503);
    assert_envelope(&resp.text().unwrap(), "api_error");
    let r = record(&gw, "always");
    assert_eq!(r["http.response.status_code"], 503);
    assert_eq!(
        (r["attempts"].as_u64(), tokens(&r)),
        (Some(3), [0; 5]),
        "{r}"
    );

    // Reset after the head: the client has a 200 whose body breaks off; not retried.
    let mut resp = send("after_head");
    assert_eq!(resp.status(), 200);
    head_seen.open();
    let mut rest = Vec::new();
    assert!(resp.read_to_end(&mut rest).is_err(), "a clean end");
    let r = record(&gw, "after_head");
    assert_eq!(r["http.response.status_code"], 200);
    assert_eq!(r["usage_status"], "missing", "{r}");
    assert_eq!(
        (r["attempts"].as_u64(), tokens(&r)),
        (Some(1), [0; 5]),
        "{r}"
    );

    let seen = mock.requests();
    let count = |id: &str| seen.iter().filter(|r| session(r) == id).count();
    assert_eq!(
        (count("once"), count("always"), count("after_head")),
        (2, 3, 1)
    );
    let m = labels(MODEL);
    assert_eq!(counter(&gw, &format!("requests.{m}.status.2xx")), 2);
    assert_eq!(counter(&gw, &format!("requests.{m}.status.5xx")), 1);
    assert_eq!(
        counter(
            &gw,
            &format!("tokens.{m}.consumer.none.group.none.type.output")
        ),
        USAGE.output
    );
    serves_normally(&gw, &mock, "after");
    gw.assert_healthy();
}

#[test]
fn upstream_error_statuses_pass_through_with_or_without_retry_after() {
    const CASES: [(&str, u16, &str, Option<&str>); 6] = [
        ("500", 500, "api_error", None),
        ("500-retry-after", 500, "api_error", Some("2")),
        ("529", 529, "overloaded_error", None),
        ("529-retry-after", 529, "overloaded_error", Some("5")),
        ("429", 429, "rate_limit_error", None),
        ("429-retry-after", 429, "rate_limit_error", Some("17")),
    ];
    let default = anthropic::responder("anthropic");
    let mock = Mock::start(
        "anthropic",
        Arc::new(
            move |r: &Recorded| match CASES.iter().find(|c| c.0 == session(r)) {
                Some(&(_, status, kind, retry_after)) => {
                    let reply = anthropic::error(status, kind, "upstream says no");
                    match retry_after {
                        Some(s) => reply.header("retry-after", s),
                        None => reply,
                    }
                }
                None => default(r),
            },
        ),
    );
    let gw = start(envoy::bootstrap(mock.port(), "{}"));
    for (id, status, kind, retry_after) in CASES {
        let resp = client()
            .post(gw.url("/v1/messages?beta=true"))
            .header(SESSION, id)
            .body(messages_body(MODEL, true))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{id}");
        let header = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap());
        assert_eq!(header, retry_after, "{id}");
        // The upstream's own body, byte for byte (Claude Code matches on its wording).
        let body: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
        assert_eq!(body["error"]["message"], "upstream says no", "{id}");
        assert_eq!(body["request_id"], "req_mock", "{id}");
        let r = record(&gw, id);
        assert_eq!(r["http.response.status_code"], status, "{id}");
        assert_eq!(r["error.type"], kind, "{id}");
        assert_eq!(r["error_phase"], "response", "{id}");
        assert_eq!(tokens(&r), [0; 5], "{id}");
    }
    // Not retried by Envoy: the client (or the key pool) decides.
    let seen = mock.requests();
    for (id, ..) in CASES {
        assert_eq!(seen.iter().filter(|r| session(r) == id).count(), 1, "{id}");
    }
    let m = format!("route.anthropic.model.{MODEL}");
    for kind in ["api_error", "overloaded_error", "rate_limit_error"] {
        let name = format!("errors.{m}.type.{kind}.phase.response");
        assert_eq!(counter(&gw, &name), 2, "{name}");
    }
    let mc = labels(MODEL);
    assert_eq!(counter(&gw, &format!("requests.{mc}.status.5xx")), 4);
    assert_eq!(counter(&gw, &format!("requests.{mc}.status.4xx")), 2);
    serves_normally(&gw, &mock, "after");
    gw.assert_healthy();
}

#[test]
fn an_upstream_that_stalls_longer_than_the_idle_timeout_is_cut_off() {
    let never = Gate::new();
    let n = never.clone();
    let default = anthropic::responder("anthropic");
    let events = anthropic::stream_events(MODEL, &["Hel", "lo"], USAGE);
    let head = events[..4].to_vec();
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |r: &Recorded| match session(r) {
            "stall_head" => default(r).before(Step::Wait(n.clone())),
            "stall_stream" => {
                let mut steps = anthropic::steps(head.clone());
                steps.push(Step::Wait(n.clone()));
                Reply::sse(steps)
            }
            _ => default(r),
        }),
    );
    // The shipped 600 s idle timeouts (route and stream), shortened so the test stays fast.
    let mut b = envoy::bootstrap(mock.port(), "{}");
    assert!(b.replace_value("idle_timeout", "600s", "1s") >= 3);
    assert_eq!(b.replace_value("stream_idle_timeout", "600s", "1s"), 1);
    let gw = start(b);

    // No response head within the timeout: Envoy answers, in the envelope.
    let began = Instant::now();
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "stall_head")
        .body(messages_body(MODEL, false))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 504, "{:?}", resp.text());
    assert_envelope(&resp.text().unwrap(), "timeout_error");
    assert!(began.elapsed() < Duration::from_secs(10));
    let r = record(&gw, "stall_head");
    assert_eq!(r["http.response.status_code"], 504);
    assert_eq!(tokens(&r), [0; 5]);

    // Silent mid-stream: the stream is cut off after what arrived; that usage is recorded.
    let mut resp = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "stall_stream")
        .body(messages_body(MODEL, true))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    assert!(resp.read_to_end(&mut got).is_err(), "a clean end");
    assert_eq!(got, events[..4].concat());
    let r = record(&gw, "stall_stream");
    assert_eq!(r["usage_status"], "partial", "{r}");
    // Only message_start arrived: its input counts and the output placeholder, 1.
    assert_eq!(
        tokens(&r),
        [USAGE.input, USAGE.cache_creation, 0, USAGE.cache_read, 1]
    );
    serves_normally(&gw, &mock, "after");
    never.open();
    gw.assert_healthy();
}

#[test]
fn a_client_that_aborts_mid_upload_leaves_a_record_and_no_upstream_request() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = start(envoy::bootstrap(mock.port(), "{}"));
    let body = bodies::claude_code(MODEL, true, 256 << 10);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         {SESSION}: mid_upload\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    // The buffer filter in front held the body: the filter records the request from its
    // headers when Envoy ends it.
    let r = record(&gw, "mid_upload");
    assert_eq!(r["http.request.method"], "POST");
    assert_eq!(r["url.path"], "/v1/messages");
    assert!(r["http.response.status_code"].is_null(), "{r}");
    assert!(r["gen_ai.request.model"].is_null(), "{r}");
    assert_eq!(tokens(&r), [0; 5]);
    assert!(
        r["response_code_details"]
            .as_str()
            .is_some_and(|d| d.contains("downstream")),
        "{r}"
    );
    let m = "route.none.model.other.cost_center.none";
    assert_eq!(counter(&gw, &format!("requests.{m}.status.none")), 1);
    serves_normally(&gw, &mock, "after");
    assert_eq!(
        mock.requests().len(),
        1,
        "the aborted upload reached the upstream"
    );
    gw.assert_healthy();
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks: real gzip framing
/// without a compression library.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend((!crc).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

#[test]
fn the_gzip_framing_is_valid() {
    // The check value of the CRC-32 used by gzip, and stored blocks split at 64 KiB.
    let z = gzip(b"123456789");
    assert_eq!(&z[z.len() - 8..z.len() - 4], &0xCBF4_3926u32.to_le_bytes());
    assert_eq!(gzip(&[0; 70_000]).len(), 10 + 2 * 5 + 70_000 + 8);
}

/// (case, body, content-type, content-encoding, passthrough reason)
type BodyCase = (
    &'static str,
    Vec<u8>,
    &'static str,
    Option<&'static str>,
    &'static str,
);

#[test]
fn bodies_the_gateway_must_not_read_are_forwarded_byte_identical_and_recorded() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = start(envoy::bootstrap(mock.port(), "{}"));
    let valid = bodies::claude_code(MODEL, false, 8_000);
    let text = String::from_utf8(valid.clone()).unwrap();
    let deep = format!(
        r#"{{"model":"{MODEL}","max_tokens":5,"messages":[{{"role":"user","content":{}"x"{}}}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut bad_model = br#"{"model":"claude-sonnet-4-5"#.to_vec();
    bad_model.extend(b"\xff\xfe\",\"max_tokens\":5,\"messages\":[]}");
    let cases: Vec<BodyCase> = vec![
        (
            "malformed",
            format!(r#"{{"model":"{MODEL}","messages":[],}}"#).into_bytes(),
            "application/json",
            None,
            "invalid_json",
        ),
        (
            "truncated",
            valid[..valid.len() / 2].to_vec(),
            "application/json",
            None,
            "invalid_json",
        ),
        (
            "duplicate_model",
            text.replacen('{', r#"{"model":"claude-opus-4-8","#, 1)
                .into_bytes(),
            "application/json",
            None,
            "duplicate_model",
        ),
        (
            "duplicate_messages",
            text.replacen('{', r#"{"messages":[],"#, 1).into_bytes(),
            "application/json",
            None,
            "duplicate_key",
        ),
        (
            "deep",
            deep.into_bytes(),
            "application/json",
            None,
            "too_deep",
        ),
        (
            "non_utf8_model",
            bad_model,
            "application/json",
            None,
            "no_model",
        ),
        (
            "text_plain",
            valid.clone(),
            "text/plain",
            None,
            "content_type",
        ),
        (
            "gzip",
            gzip(&valid),
            "application/json",
            Some("gzip"),
            "content_encoding",
        ),
    ];
    for (id, body, content_type, encoding, _) in &cases {
        let mut req = client()
            .post(gw.url("/v1/messages?beta=true"))
            .header(SESSION, *id)
            .header("content-type", *content_type)
            .body(body.clone());
        if let Some(e) = encoding {
            req = req.header("content-encoding", *e);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status(), 200, "{id}");
        assert_eq!(resp.headers()["x-mock-upstream"], "anthropic", "{id}");
        assert!(resp.text().unwrap().contains("end_turn"), "{id}");
    }
    let seen = mock.wait_requests(cases.len());
    for (id, body, content_type, encoding, reason) in &cases {
        let r = seen.iter().find(|r| session(r) == *id).unwrap();
        assert!(r.body == *body, "{id}: the body changed");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(r.header("content-type"), Some(*content_type), "{id}");
        assert_eq!(r.header("content-encoding"), *encoding, "{id}");
        let rec = record(&gw, id);
        assert_eq!(rec["body_issue"], *reason, "{id}: {rec}");
        assert_eq!(rec["cache_markers_added"], 0, "{id}");
        // Unread, the body routes nowhere special: the default route.
        assert_eq!(rec["route"], "anthropic", "{id}");
        assert!(rec["gen_ai.request.model"].is_null(), "{id}");
        // The answer's usage is still the request's usage.
        assert_eq!(tokens(&rec), FULL, "{id}: {rec}");
    }
    for (reason, n) in [
        ("invalid_json", 2),
        ("duplicate_model", 1),
        ("duplicate_key", 1),
        ("too_deep", 1),
        ("no_model", 1),
        ("content_type", 1),
        ("content_encoding", 1),
    ] {
        let name = format!("body_passthrough.reason.{reason}");
        assert_eq!(counter(&gw, &name), n, "{name}");
    }

    // Invalid UTF-8 inside prompt text: the structure is sound, so the markers are added
    // around the bytes, which arrive as they were sent.
    let mut raw = valid.clone();
    let at = text.find("fix the failing test").unwrap();
    raw.splice(at..at + 3, *b"\xff\xfe\xc3");
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "non_utf8_text")
        .body(raw.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().unwrap().contains("end_turn"));
    let seen = mock.requests();
    let r = seen.iter().find(|r| session(r) == "non_utf8_text").unwrap();
    assert!(
        bodies::without_diagnostics(&r.body) == bodies::rewritten(&raw),
        "markers only"
    );
    assert!(r.body.len() > raw.len());
    let rec = record(&gw, "non_utf8_text");
    assert!(rec["body_issue"].is_null() && rec["cache_markers_added"].as_u64() > Some(0));

    serves_normally(&gw, &mock, "after");
    gw.assert_healthy();
}

#[test]
fn huge_request_headers_get_431_and_the_worker_keeps_serving() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = start(envoy::bootstrap(mock.port(), "{}"));
    // One header over Envoy's 60 KiB limit, then more headers than its 100-header limit.
    let big = "x".repeat(100 << 10);
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-huge", big.as_str())
        .header(SESSION, "huge")
        .body(messages_body(MODEL, false))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert_envelope(&resp.text().unwrap(), "invalid_request_error");
    let mut req = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "many");
    for i in 0..200 {
        req = req.header(format!("x-h-{i}"), "v");
    }
    let resp = req.body(messages_body(MODEL, false)).send().unwrap();
    assert_eq!(resp.status(), 431);
    assert_envelope(&resp.text().unwrap(), "invalid_request_error");
    // Envoy refused both before any header reached the filter; its record still accounts
    // for each, with Envoy's reason.
    for details in ["http1.headers_too_large", "http1.too_many_headers"] {
        let line = access_line(&gw, |v| v["response_code_details"] == details);
        assert_eq!(line["http.response.status_code"], 431, "{line}");
        assert_eq!(tokens(&line), [0; 5]);
    }
    assert!(mock.requests().is_empty());
    serves_normally(&gw, &mock, "after");
    gw.assert_healthy();
}

#[test]
fn streams_in_flight_finish_while_the_plugin_configuration_is_reloaded() {
    let held = Gate::new();
    let g = held.clone();
    let default = anthropic::responder("anthropic");
    let events = anthropic::stream_events(MODEL, &["Hel", "lo"], USAGE);
    let e = events.clone();
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |r: &Recorded| match session(r) {
            // A stream that has begun, and a response whose head has not.
            "in_flight_stream" => {
                let mut steps = vec![Step::Send(e[0].clone()), Step::Wait(g.clone())];
                steps.extend(anthropic::steps(e[1..].to_vec()));
                Reply::sse(steps)
            }
            "in_flight_json" => default(r).before(Step::Wait(g.clone())),
            _ => default(r),
        }),
    );
    let dir = std::env::temp_dir().join(format!("claude-gateway-ecds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("claude_gateway.yaml");
    let mut b = envoy::bootstrap(mock.port(), "{}");
    b.wasm(wasm_path().to_str().unwrap());
    let filter = b.wasm_filter_from_file(&path);
    let write = |config: &str, version: u32| {
        // Envoy watches for the file being moved into place.
        let tmp = dir.join("next.yaml");
        std::fs::write(&tmp, ecds_resource(&filter, config, version).unwrap()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write("{}", 1);
    let gw = start(b);
    let reloads =
        || gw.counter("extension_config_discovery.http_filter.claude_gateway.config_reload");
    assert_eq!(reloads(), 1);

    let body = bodies::claude_code(MODEL, true, 8_000);
    let json_body = bodies::claude_code(MODEL, false, 8_000);
    let mut stream = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "in_flight_stream")
        .body(body.clone())
        .send()
        .unwrap();
    let mut got = Vec::new();
    read_at_least(&mut stream, &mut got, events[0].len());
    let url = gw.url("/v1/messages");
    let json_body2 = json_body.clone();
    let pending = std::thread::spawn(move || {
        let resp = client()
            .post(url)
            .header(SESSION, "in_flight_json")
            .body(json_body2)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
    });
    mock.wait_requests(2);

    // Cache injection off from now on.
    write(r#"{"cache":{"enabled":false}}"#, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads() < 2 {
        assert!(
            Instant::now() < deadline,
            "the new configuration was not loaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header(SESSION, "new")
        .body(body.clone())
        .send()
        .unwrap();
    assert!(resp.text().unwrap().contains("message_stop"));

    held.open();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(got, events.concat(), "the in-flight stream changed");
    let (status, reply) = pending.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        anthropic::message_json(MODEL, &anthropic::reply_text("anthropic"), USAGE)
    );

    let seen = mock.requests();
    let upstream = |id: &str| {
        let r = seen.iter().find(|r| session(r) == id).unwrap();
        bodies::without_diagnostics(&r.body)
    };
    // Requests planned under the old configuration kept it; the new one has no markers.
    assert!(upstream("in_flight_stream") == bodies::rewritten(&body));
    assert!(upstream("in_flight_json") == bodies::rewritten(&json_body));
    assert!(
        upstream("new") == body,
        "the new configuration was not applied"
    );
    for id in ["in_flight_stream", "in_flight_json", "new"] {
        let r = record(&gw, id);
        assert_eq!(tokens(&r), FULL, "{id}");
        assert_eq!(r["usage_status"], "complete", "{id}");
    }
    assert_eq!(record(&gw, "new")["cache_markers_added"], 0);
    gw.assert_healthy();
    let _ = std::fs::remove_dir_all(&dir);
}
