//! Sessions through the real Envoy: per-session totals and the subagent tree at
//! `GET /v1/gateway/sessions/{id}` (only for the credential that made them), the status-line
//! script against the running gateway, and why the cache missed: Anthropic's cache diagnostics
//! (a mock that fingerprints requests like the API) and the gateway's own verdict.

use crate::support::bodies::sse_event;
use crate::support::cache_sim::CacheSim;
use crate::support::client;
use crate::support::envoy::{self, Gateway, repo};
use crate::support::mock::{Mock, Recorded, Reply, Responder, Step};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SESSION: &str = "0d9c3a52-5b7e-4f7e-9a51-7c0e8d4b2f11";
const KEY: &str = "sk-ant-api03-developer-one";
const OTHER_KEY: &str = "sk-ant-api03-developer-two";

/// What the API fingerprints of a request for its diagnosis: the parts in cache order.
fn parts(body: &Value) -> [String; 4] {
    let strip = |v: &Value| {
        v.to_string()
            .replace(r#","cache_control":{"type":"ephemeral"}"#, "")
    };
    [
        body["model"].to_string(),
        strip(&body["system"]),
        strip(&body["tools"]),
        strip(&body["messages"]),
    ]
}

/// The Messages API as the gateway sees it: caches like the real one (CacheSim), streams, gives
/// every response its own id and, for requests that carry `diagnostics`, compares with the
/// request `previous_message_id` names and reports the first part that changed.
fn diagnosing_api() -> Responder {
    let sim = CacheSim::new(1024);
    let prints: Arc<Mutex<HashMap<String, [String; 4]>>> = Arc::default();
    let n = Arc::new(AtomicU64::new(0));
    Arc::new(move |r: &Recorded| {
        let body = r.json();
        let u = sim.process(&body);
        let id = format!("msg_sim{}", n.fetch_add(1, Ordering::SeqCst));
        let mut message = json!({"id":id,"type":"message","role":"assistant","model":body["model"],
            "content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":u.input,"cache_creation_input_tokens":u.write_5m + u.write_1h,
                "cache_read_input_tokens":u.read,
                "cache_creation":{"ephemeral_5m_input_tokens":u.write_5m,"ephemeral_1h_input_tokens":u.write_1h},
                "output_tokens":1}});
        if let Some(d) = body.get("diagnostics") {
            let mine = parts(&body);
            let mut prints = prints.lock().unwrap();
            let reason = match d["previous_message_id"].as_str() {
                None => None,
                Some(prev) => match prints.get(prev) {
                    None => Some(json!({"type":"previous_message_not_found"})),
                    Some(before) => [
                        "model_changed",
                        "system_changed",
                        "tools_changed",
                        "messages_changed",
                    ]
                    .iter()
                    .zip(before.iter().zip(&mine))
                    // Messages grow turn by turn: only a changed history counts.
                    .find(|(k, (b, m))| {
                        if **k == "messages_changed" {
                            !m.starts_with(b.trim_end_matches(']'))
                        } else {
                            b != m
                        }
                    })
                    .map(
                        |(k, _)| json!({"type":k,"cache_missed_input_tokens":u.input + u.write_5m}),
                    ),
                },
            };
            message["diagnostics"] = match reason {
                Some(r) => json!({"cache_miss_reason": r}),
                None => Value::Null,
            };
            prints.insert(id.clone(), mine);
        }
        let mut events = vec![sse_event(
            "message_start",
            &json!({"type":"message_start","message":message}),
        )];
        events.push(sse_event(
            "content_block_start",
            &json!({"type":"content_block_start","index":0,
            "content_block":{"type":"text","text":""}}),
        ));
        events.push(sse_event(
            "content_block_delta",
            &json!({"type":"content_block_delta","index":0,
            "delta":{"type":"text_delta","text":"ok"}}),
        ));
        events.push(sse_event(
            "content_block_stop",
            &json!({"type":"content_block_stop","index":0}),
        ));
        events.push(sse_event(
            "message_delta",
            &json!({"type":"message_delta",
            "delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}),
        ));
        events.push(sse_event("message_stop", &json!({"type":"message_stop"})));
        Reply::sse(events.into_iter().map(Step::Send).collect())
    })
}

/// A Claude Code turn: a system prompt and tools long enough to cache, `turns` exchanges.
fn turn(model: &str, system: &str, turns: usize) -> Value {
    let mut messages = Vec::new();
    for i in 0..turns {
        messages.push(json!({"role":"user","content":[{"type":"text","text":format!("question {i} {}", "x".repeat(400))}]}));
        if i + 1 < turns {
            messages.push(json!({"role":"assistant","content":[{"type":"text","text":format!("answer {i}")}]}));
        }
    }
    json!({"model":model,"max_tokens":1024,"stream":true,
        "system":[{"type":"text","text":format!("{system} {}", "You are a coding agent. ".repeat(400))}],
        "tools":[{"name":"Bash","description":"Run a command","input_schema":{"type":"object"}}],
        "messages":messages})
}

fn send(gw: &Gateway, body: &Value, key: &str, agent: Option<(&str, Option<&str>)>) -> u16 {
    let mut req = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("x-claude-code-session-id", SESSION)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some((id, parent)) = agent {
        req = req.header("x-claude-code-agent-id", id);
        if let Some(p) = parent {
            req = req.header("x-claude-code-parent-agent-id", p);
        }
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    resp.bytes().unwrap();
    status
}

fn session(gw: &Gateway, id: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(gw.url(&format!("/v1/gateway/sessions/{id}")));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().unwrap()).unwrap(),
    )
}

#[test]
fn sessions_count_per_agent_and_say_why_the_cache_missed() {
    let mock = Mock::start("anthropic", diagnosing_api());
    let config = r#"{"routes":[{"name":"quiet","match":{"model":"claude-haiku-*"},
        "cluster":"anthropic","cache_diagnostics":false}]}"#;
    let gw = Gateway::start(envoy::bootstrap(mock.port(), config));
    let sonnet = "claude-sonnet-4-5";
    // The main agent: two turns, a subagent with one of its own and a nested one, then the main
    // agent again with a timestamp in its system prompt (a classic cache breaker).
    assert_eq!(send(&gw, &turn(sonnet, "v1", 1), KEY, None), 200);
    assert_eq!(send(&gw, &turn(sonnet, "v1", 2), KEY, None), 200);
    assert_eq!(
        send(
            &gw,
            &turn(sonnet, "explore", 1),
            KEY,
            Some(("agent-a1", None))
        ),
        200
    );
    assert_eq!(
        send(
            &gw,
            &turn(sonnet, "deep", 1),
            KEY,
            Some(("agent-a2", Some("agent-a1")))
        ),
        200
    );
    // A side request on a small model in the same session (Claude Code's titles): its own chain.
    assert_eq!(
        send(&gw, &turn("claude-haiku-4-5", "title", 1), KEY, None),
        200
    );
    assert_eq!(send(&gw, &turn(sonnet, "v1 at 10:02", 3), KEY, None), 200);
    // The client's own diagnostics are left as they are; a route that opts out gets none.
    let mut own = turn(sonnet, "v1", 1);
    own["diagnostics"] = json!({"previous_message_id":"msg_client_own"});
    assert_eq!(send(&gw, &own, OTHER_KEY, None), 200);
    assert_eq!(
        send(
            &gw,
            &turn("claude-haiku-4-5", "v1", 1),
            OTHER_KEY,
            Some(("agent-h", None))
        ),
        200
    );

    let upstream = mock.wait_requests(8);
    let sent: Vec<Value> = upstream.iter().map(Recorded::json).collect();
    let previous = |i: usize| sent[i]["diagnostics"]["previous_message_id"].clone();
    assert_eq!(previous(0), Value::Null, "the first turn opts in");
    assert!(sent[0]["diagnostics"].is_object());
    assert_eq!(
        previous(1),
        "msg_sim0",
        "the same agent's previous response"
    );
    assert_eq!(previous(2), Value::Null, "a subagent's first turn");
    assert_eq!(previous(3), Value::Null);
    assert!(
        sent[4].get("diagnostics").is_none(),
        "cache_diagnostics: false"
    );
    assert_eq!(
        previous(5),
        "msg_sim1",
        "the main agent's previous turn on its model, not the subagents' nor the side request"
    );
    assert_eq!(previous(6), "msg_client_own");
    assert_eq!(
        String::from_utf8_lossy(&upstream[6].body)
            .matches("\"diagnostics\"")
            .count(),
        1
    );
    assert!(sent[7].get("diagnostics").is_none());

    // Totals, per model and the agent tree, for the credential that made them.
    let (status, s) = session(&gw, SESSION, Some(KEY));
    assert_eq!(status, 200, "{s}");
    let records = gw.wait_audit_records(8);
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["session.id"] == SESSION && r["http.request.method"] == "POST")
        .take(6)
        .collect();
    let sum = |k: &str| mine.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    let usage = &s["usage"];
    assert_eq!(usage["requests"], 6);
    assert_eq!(
        usage["cost_micro_usd"].as_u64().unwrap(),
        sum("cost_micro_usd")
    );
    assert!(usage["cost_micro_usd"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["cache_read_input_tokens"].as_u64().unwrap(),
        sum("gen_ai.usage.cache_read.input_tokens")
    );
    assert_eq!(
        usage["input_tokens"].as_u64().unwrap(),
        sum("gen_ai.usage.input_tokens")
    );
    assert_eq!(s["scope"], "replica");
    assert_eq!(s["models"][0]["usage"]["requests"], 5);
    assert_eq!(s["models"][1]["model"], "claude-haiku-4-5");
    let top = s["agents"].as_array().unwrap();
    assert_eq!(top.len(), 2, "the main agent and agent-a1: {s}");
    let main = top.iter().find(|a| a["agent_id"].is_null()).unwrap();
    assert_eq!(main["usage"]["requests"], 4);
    let a1 = top.iter().find(|a| a["agent_id"] == "agent-a1").unwrap();
    assert_eq!(a1["agents"][0]["agent_id"], "agent-a2");
    assert_eq!(a1["agents"][0]["parent_agent_id"], "agent-a1");
    assert_eq!(s["cache_miss_reasons"]["system_changed"], 1);

    // Another credential's requests with the same session id are its own session.
    let (status, theirs) = session(&gw, SESSION, Some(OTHER_KEY));
    assert_eq!((status, &theirs["usage"]["requests"]), (200, &json!(2)));
    // Nobody else sees either: a third credential, none, an unknown id, a malformed one.
    let stranger = "sk-ant-api03-stranger";
    for (id, key) in [
        (SESSION, Some(stranger)),
        (SESSION, None),
        ("nope", Some(KEY)),
        ("a%20b", Some(KEY)),
    ] {
        let (status, body) = session(&gw, id, key);
        assert_eq!(status, 404, "{id} {key:?}");
        assert_eq!(body["error"]["type"], "not_found_error");
    }

    // The audit records: agents, Anthropic's reason, the gateway's own verdict.
    assert_eq!(mine[0]["cache_verdict"], Value::Null, "a first turn");
    assert_eq!(mine[1]["cache_verdict"], "hit", "{}", mine[1]);
    assert!(mine[1]["idle_ms"].as_u64().is_some());
    assert!(mine[1]["cache_expected_tokens"].as_u64().unwrap() > 1024);
    assert_eq!(mine[1]["cache_miss_reason"], Value::Null, "no divergence");
    assert_eq!(mine[2]["agent_id"], "agent-a1");
    assert_eq!(mine[3]["parent_agent_id"], "agent-a1");
    assert_eq!(
        mine[4]["cache_verdict"],
        Value::Null,
        "a first turn on its model"
    );
    assert_eq!(mine[5]["cache_miss_reason"], "system_changed");
    assert!(mine[5]["cache_missed_input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(mine[5]["cache_verdict"], "system_changed");
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.cache_misses.reason.system_changed"),
        1
    );
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.cache_verdicts.reason.system_changed"),
        1
    );
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.cache_verdicts.reason.hit"),
        1
    );

    // The status-line script Claude Code would run, against this gateway.
    let line = statusline(&gw, KEY);
    let cost = usage["cost_micro_usd"].as_u64().unwrap() as f64 / 1e6;
    let ratio = usage["cache_hit_ratio"].as_f64().unwrap();
    let want = format!("${cost:.2} - cache {:.0}% - 6 requests", ratio * 100.0);
    assert_eq!(line, want);
    assert!(ratio > 0.0);
    assert_eq!(statusline(&gw, stranger), "gateway: new session");
    // The HTML report of this gateway's own records, opened in headless Chromium: every chart
    // (spend, buckets, hit ratio, misses by reason, top sessions, the agent tree) has data.
    let html = gw.access_log_path().with_file_name("report.html");
    envoy::python(
        &[
            repo().join("report/report.py").as_os_str(),
            gw.access_log_path().as_os_str(),
            "--html".as_ref(),
            html.as_os_str(),
            "--session".as_ref(),
            SESSION.as_ref(),
        ],
        &[],
    );
    let chromium = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .unwrap();
    let check = Command::new("node")
        .arg(repo().join("report/check.mjs"))
        .arg(&html)
        .env(
            "CHROMIUM",
            String::from_utf8(chromium.stdout).unwrap().trim(),
        )
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "report check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    for secret in [KEY, OTHER_KEY] {
        assert!(!gw.log().contains(secret));
        assert!(!s.to_string().contains(secret));
    }
    gw.assert_healthy();
}

/// Runs docs/statusline.py as Claude Code does: the session on standard input.
fn statusline(gw: &Gateway, key: &str) -> String {
    let mut child = Command::new(envoy::python_bin())
        .arg(repo().join("docs/statusline.py"))
        .env("ANTHROPIC_BASE_URL", gw.url(""))
        .env("ANTHROPIC_API_KEY", key)
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"session_id":SESSION,"model":{"id":"claude-sonnet-4-5","display_name":"Sonnet"},
        "workspace":{"current_dir":"/tmp"}});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
