//! Usage, cost and audit through the real Envoy: counters, audit records and the warehouse
//! report must equal the mock upstream's numbers exactly, whatever happened to each stream.

use crate::support::client;
use crate::support::envoy::{self, Gateway, repo};
use crate::support::mock::{Gate, Mock, Recorded, Reply, Step};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

const SERVED: &str = "claude-sonnet-4-5-20250929";

/// Token counts one mock response reports: (input, 5m writes, 1h writes, reads, output).
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Counts(u64, u64, u64, u64, u64);

fn event(name: &str, data: Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

fn start(c: Counts, split: bool) -> Vec<u8> {
    let mut usage = json!({"input_tokens":c.0,"cache_creation_input_tokens":c.1 + c.2,
        "cache_read_input_tokens":c.3,"output_tokens":1});
    if split {
        usage["cache_creation"] =
            json!({"ephemeral_5m_input_tokens":c.1,"ephemeral_1h_input_tokens":c.2});
    }
    event(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_e2e","type":"message",
        "role":"assistant","model":SERVED,"content":[],"stop_reason":null,"usage":usage}}),
    )
}

fn delta(text: &str) -> Vec<u8> {
    event(
        "content_block_delta",
        json!({"type":"content_block_delta","index":0,
        "delta":{"type":"text_delta","text":text}}),
    )
}

fn finish(c: Counts) -> Vec<Vec<u8>> {
    vec![
        event(
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},
            "usage":{"input_tokens":c.0,"cache_creation_input_tokens":c.1 + c.2,
                "cache_read_input_tokens":c.3,"output_tokens":c.4}}),
        ),
        event("message_stop", json!({"type":"message_stop"})),
    ]
}

/// The cases: name, what the mock reports, expected status and extraction status.
struct Case {
    name: &'static str,
    counts: Counts,
    usage_status: &'static str,
    http: u32,
}

const CASES: [Case; 7] = [
    Case {
        name: "fragmented",
        counts: Counts(2, 0, 11264, 7276, 347),
        usage_status: "complete",
        http: 200,
    },
    Case {
        name: "json",
        counts: Counts(4, 6, 300, 147_449, 8),
        usage_status: "complete",
        http: 200,
    },
    // The usage a response reported before it broke off is what the request used.
    Case {
        name: "mid_stream_error",
        counts: Counts(4, 306, 0, 147_449, 1),
        usage_status: "partial",
        http: 200,
    },
    Case {
        name: "client_abort",
        counts: Counts(100, 0, 0, 0, 1),
        usage_status: "partial",
        http: 200,
    },
    Case {
        name: "upstream_reset",
        counts: Counts(50, 0, 0, 0, 1),
        usage_status: "partial",
        http: 200,
    },
    Case {
        name: "rate_limited",
        counts: Counts(0, 0, 0, 0, 0),
        usage_status: "complete",
        http: 429,
    },
    Case {
        name: "plain",
        counts: Counts(11, 3, 0, 7, 5),
        usage_status: "complete",
        http: 200,
    },
];

/// `never` is never opened (the aborted stream waits on it); `delivered` is opened by the test
/// once the client has the reset stream's events, so the reset cannot overtake them.
fn responder(never: Gate, delivered: Gate) -> Arc<dyn Fn(&Recorded) -> Reply + Send + Sync> {
    Arc::new(move |r: &Recorded| {
        let case = CASES
            .iter()
            .find(|c| Some(c.name) == r.header("x-claude-code-session-id"))
            .expect("a known case");
        let c = case.counts;
        match case.name {
            "fragmented" => {
                // Every event split into 5-byte pieces, across lines and multi-byte characters.
                let mut all = start(c, true);
                all.extend(delta("Héllo wörld 😀"));
                all.extend(finish(c).concat());
                Reply::sse(all.chunks(5).map(|p| Step::Send(p.to_vec())).collect())
            }
            "json" => Reply::json(200, json!({"id":"msg_e2e","type":"message","role":"assistant",
                "model":SERVED,"content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn",
                "usage":{"input_tokens":c.0,"cache_creation_input_tokens":c.1 + c.2,
                    "cache_read_input_tokens":c.3,"output_tokens":c.4,
                    "cache_creation":{"ephemeral_5m_input_tokens":c.1,"ephemeral_1h_input_tokens":c.2}}}).to_string()),
            "mid_stream_error" => Reply::sse(vec![
                Step::Send(start(c, false)),
                Step::Send(delta("partial")),
                Step::Send(event("error", json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}))),
            ]),
            "client_abort" => Reply::sse(vec![
                Step::Send(start(c, true)),
                Step::Send(delta("the client leaves")),
                Step::Wait(never.clone()),
            ]),
            "upstream_reset" => Reply::sse(vec![
                Step::Send(start(c, true)),
                Step::Send(delta("before the reset")),
                Step::Wait(delivered.clone()),
                Step::Reset,
            ]),
            "rate_limited" => crate::support::anthropic::error(429, "rate_limit_error", "Slow down")
                .header("retry-after", "3"),
            _ => {
                let mut steps = vec![Step::Send(start(c, true)), Step::Send(delta("hi"))];
                steps.extend(finish(c).into_iter().map(Step::Send));
                Reply::sse(steps)
            }
        }
    })
}

fn body(stream: bool) -> Vec<u8> {
    json!({"model":"claude-sonnet-4-5","max_tokens":64,"stream":stream,
        "messages":[{"role":"user","content":"hi"}]})
    .to_string()
    .into_bytes()
}

/// Reads a streamed response until `text` has arrived.
fn read_until(r: &mut impl Read, text: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(text) {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended before {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Sends a streaming request, reads until the first content delta, and hangs up.
fn abort_after_first_delta(port: u16, session: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let b = body(true);
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         x-claude-code-session-id: {session}\r\ncontent-length: {}\r\n\r\n",
        b.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&b).unwrap();
    read_until(&mut s, "the client leaves");
}

#[test]
fn counters_audit_records_and_the_report_equal_the_upstreams_usage() {
    let never = Gate::new();
    let delivered = Gate::new();
    let mock = Mock::start("anthropic", responder(never.clone(), delivered.clone()));
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    for case in &CASES {
        if case.name == "client_abort" {
            abort_after_first_delta(gw.port, case.name);
            continue;
        }
        let mut resp = client()
            .post(gw.url("/v1/messages?beta=true"))
            .header("x-claude-code-session-id", case.name)
            .body(body(case.name != "json" && case.name != "rate_limited"))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16() as u32, case.http, "{}", case.name);
        if case.name == "upstream_reset" {
            read_until(&mut resp, "before the reset");
            delivered.open();
        }
        let mut rest = Vec::new();
        let _ = resp.read_to_end(&mut rest); // A reset stream ends in an error: that is the case.
    }
    let records = gw.wait_audit_records(CASES.len());
    let by_session: HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["session.id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_session.len(), CASES.len(), "{records:#?}");

    let mut total = Counts::default();
    let mut cost = 0u64;
    for case in &CASES {
        let r = by_session[case.name];
        let c = case.counts;
        let got = Counts(
            r["gen_ai.usage.input_tokens"].as_u64().unwrap(),
            r["cache_creation_5m_input_tokens"].as_u64().unwrap(),
            r["cache_creation_1h_input_tokens"].as_u64().unwrap(),
            r["gen_ai.usage.cache_read.input_tokens"].as_u64().unwrap(),
            r["gen_ai.usage.output_tokens"].as_u64().unwrap(),
        );
        // Streams cut short only got as far as message_start: output is its placeholder, 1.
        assert_eq!(got, c, "{}: {r}", case.name);
        assert_eq!(r["usage_status"], case.usage_status, "{}", case.name);
        assert_eq!(r["http.response.status_code"], case.http, "{}", case.name);
        assert_eq!(r["gen_ai.request.model"], "claude-sonnet-4-5");
        assert_eq!(r["route"], "anthropic");
        // Sonnet 4.5 list prices: 3 / 3.75 / 6 / 0.30 / 15 USD per MTok.
        let want = (c.0 * 3_000_000
            + c.1 * 3_750_000
            + c.2 * 6_000_000
            + c.3 * 300_000
            + c.4 * 15_000_000
            + 500_000)
            / 1_000_000;
        assert_eq!(r["cost_micro_usd"], want, "{}", case.name);
        total = Counts(
            total.0 + c.0,
            total.1 + c.1,
            total.2 + c.2,
            total.3 + c.3,
            total.4 + c.4,
        );
        cost += want;
    }
    let x = |name: &str| &by_session[name];
    assert_eq!(x("mid_stream_error")["error.type"], "overloaded_error");
    assert_eq!(x("mid_stream_error")["error_phase"], "stream");
    assert_eq!(x("rate_limited")["error.type"], "rate_limit_error");
    assert_eq!(x("rate_limited")["error_phase"], "response");
    assert!(x("plain")["ttft_ms"].is_u64());
    assert_eq!(x("plain")["gen_ai.response.model"], SERVED);
    assert_eq!(
        x("plain")["gen_ai.response.finish_reasons"],
        json!(["end_turn"])
    );
    assert_eq!(x("json")["stream"], false);
    assert!(x("json")["ttft_ms"].is_null());

    // The counters: exactly the same totals.
    let m = "route.anthropic.model.claude-sonnet-4-5";
    let mc = "route.anthropic.model.claude-sonnet-4-5.cost_center.none.consumer.none.group.none";
    let counter = |name: &str| gw.counter(&format!("wasmcustom.claude_gateway.{name}"));
    assert_eq!(
        Counts(
            counter(&format!("tokens.{mc}.type.input")),
            counter(&format!("tokens.{mc}.type.cache_write_5m")),
            counter(&format!("tokens.{mc}.type.cache_write_1h")),
            counter(&format!("tokens.{mc}.type.cache_read")),
            counter(&format!("tokens.{mc}.type.output")),
        ),
        total
    );
    assert_eq!(counter(&format!("cost_micro_usd.{mc}")), cost);
    let m_cc = "route.anthropic.model.claude-sonnet-4-5.cost_center.none";
    assert_eq!(counter(&format!("requests.{m_cc}.status.2xx")), 6);
    assert_eq!(counter(&format!("requests.{m_cc}.status.4xx")), 1);
    assert_eq!(counter("usage_extraction.status.complete"), 4);
    assert_eq!(counter("usage_extraction.status.partial"), 3);
    assert_eq!(
        counter(&format!("errors.{m}.type.overloaded_error.phase.stream")),
        1
    );
    assert_eq!(
        counter(&format!("errors.{m}.type.rate_limit_error.phase.response")),
        1
    );
    let prometheus = gw.admin_get("/stats/prometheus").unwrap();
    assert!(
        prometheus.contains(&format!(
            "claude_gateway_tokens{{route=\"anthropic\",model=\"claude-sonnet-4-5\",type=\"cache_read\",cost_center=\"none\",consumer=\"none\",group=\"none\"}} {}",
            total.3
        )),
        "{prometheus}"
    );

    // The warehouse report over the same access log.
    let out = envoy::python(
        &[
            repo().join("report/report.py"),
            gw.access_log_path(),
            "--report".into(),
            "usage".into(),
            "--json".into(),
        ],
        &[],
    );
    let rows: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.iter().all(|r| r["report"] == "usage"), "{rows:?}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (row["cost_center"].as_str(), row["model"].as_str()),
        (Some("(none)"), Some("claude-sonnet-4-5"))
    );
    assert_eq!(row["requests"], CASES.len());
    assert_eq!(
        Counts(
            row["input_tokens"].as_u64().unwrap(),
            row["cache_write_5m_tokens"].as_u64().unwrap(),
            row["cache_write_1h_tokens"].as_u64().unwrap(),
            row["cache_read_tokens"].as_u64().unwrap(),
            row["output_tokens"].as_u64().unwrap(),
        ),
        total
    );
    assert_eq!(row["cost_micro_usd"], cost);
    never.open();
    gw.assert_healthy();
}
