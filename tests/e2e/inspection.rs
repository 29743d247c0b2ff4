//! Egress inspection through the real Envoy: secrets in a Claude Code session's tool results
//! (audited, blocked, redacted), and the tool calls of answers, streamed or not.

use crate::support::anthropic::{self, USAGE};
use crate::support::bodies::{self, sse_event};
use crate::support::cache_sim::{CacheSim, SimUsage, usage_of};
use crate::support::client;
use crate::support::envoy::{self, Gateway, Run};
use crate::support::fakes::fake;
use crate::support::mock::{Mock, Reply, Step};
use serde_json::{Value, json};
use std::sync::Arc;

const KEY_ENV: &str = "CLAUDE_GATEWAY_REDACTION_KEY";
const REDACTION_KEY: &str = "e2e-redaction-key-0123456789abcdef";

struct Dotenv {
    text: String,
    /// The secret values, as a grep must never find them.
    secrets: Vec<String>,
}

/// A `.env` file as Claude Code's Read tool returns it: an AWS key pair, a database URL with
/// a password, a Stripe key.
fn dotenv() -> Dotenv {
    let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let key_id = format!("AKIA{}", fake(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 7));
    let secret = fake(&[alnum.as_slice(), b"+/"].concat(), 40, 8);
    let password = fake(alnum, 18, 9);
    let stripe = format!("sk_live_{}", fake(alnum, 28, 10));
    let text = format!(
        "     1\tNODE_ENV=production\n     2\tAWS_ACCESS_KEY_ID={key_id}\n     3\tAWS_SECRET_ACCESS_KEY={secret}\n     4\tDATABASE_URL=postgres://app:{password}@db.internal:5432/app\n     5\tSTRIPE_KEY={stripe}\n"
    );
    Dotenv {
        text,
        secrets: vec![key_id, secret, password, stripe],
    }
}

/// A Claude Code turn after the model read `.env`: the assistant's Read call and its result.
fn session_body(env: &Dotenv) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&bodies::claude_code("claude-sonnet-4-5", false, 20 << 10)).unwrap();
    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(json!({"role":"assistant","content":[
        {"type":"text","text":"Let me check the environment file."},
        {"type":"tool_use","id":"toolu_env","name":"Read","input":{"file_path":"/repo/.env"}}]}));
    messages.push(json!({"role":"user","content":[
        {"type":"tool_result","tool_use_id":"toolu_env","content":env.text}]}));
    serde_json::to_vec(&body).unwrap()
}

fn gateway(plugin_config: &str) -> (Mock, Gateway) {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = redacting_gateway(mock.port(), plugin_config);
    (mock, gw)
}

fn redacting_gateway(port: u16, plugin_config: &str) -> Gateway {
    let mut b = envoy::bootstrap(port, plugin_config);
    b.host_env_keys(&[KEY_ENV]);
    Gateway::start_with(b, &Run::default().env(KEY_ENV, REDACTION_KEY))
}

fn post(gw: &Gateway, body: &[u8]) -> (u16, String) {
    let resp = client()
        .post(gw.url("/v1/messages?beta=true"))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(body.to_vec())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers());
    (status, format!("{headers}\n{}", resp.text().unwrap()))
}

/// The rows of one of `make report`'s reports over the gateway's access log.
fn report(gw: &Gateway, name: &str) -> Vec<Value> {
    let log = gw.access_log_path();
    let script = envoy::repo().join("report/report.py");
    let out = envoy::python(
        &[
            script.as_os_str(),
            log.as_os_str(),
            "--report".as_ref(),
            name.as_ref(),
            "--json".as_ref(),
        ],
        &[],
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// No secret (nor the redaction key) in anything an operator or client can read.
fn assert_never_shown(gw: &Gateway, secrets: &[String], responses: &[String]) {
    let mut places = gw.readable_text();
    places.extend(
        responses
            .iter()
            .map(|r| ("a response".to_owned(), r.clone())),
    );
    for (place, text) in &places {
        for s in secrets.iter().map(String::as_str).chain([REDACTION_KEY]) {
            assert!(!text.contains(s), "a secret appears in {place}");
        }
    }
}

#[test]
fn a_dotenv_in_a_tool_result_is_audited_blocked_or_redacted() {
    let env = dotenv();
    let body = session_body(&env);
    let last = serde_json::from_slice::<Value>(&body).unwrap()["messages"]
        .as_array()
        .unwrap()
        .len()
        - 1;
    let location = format!("messages[{last}].content[0].content");
    let rules = [
        "aws-access-key-id",
        "aws-secret-access-key",
        "database-url",
        "stripe-key",
    ];

    // Audit: the request goes up as it came, the record says what it held.
    let (mock, gw) = gateway(r#"{"secrets":{"enabled":true}}"#);
    let (status, audit_reply) = post(&gw, &body);
    assert_eq!(status, 200);
    let up = mock.wait_requests(1);
    for s in &env.secrets {
        assert!(String::from_utf8_lossy(&up[0].body).contains(s.as_str()));
    }
    let record = &gw.wait_audit_records(1)[0];
    let found: Vec<(&str, &str, u64, Vec<&str>)> = record["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let locations = s["locations"].as_array().unwrap();
            (
                s["rule"].as_str().unwrap(),
                s["action"].as_str().unwrap(),
                s["count"].as_u64().unwrap(),
                locations.iter().map(|l| l.as_str().unwrap()).collect(),
            )
        })
        .collect();
    let want: Vec<(&str, &str, u64, Vec<&str>)> = rules
        .iter()
        .map(|r| (*r, "audit", 1, vec![location.as_str()]))
        .collect();
    assert_eq!(found, want);
    for r in rules {
        let metric = format!("wasmcustom.claude_gateway.secrets_found.rule.{r}.action.audit");
        assert_eq!(gw.counter(&metric), 1, "{metric}");
    }
    // The tool result is attributed to the Read call that produced it.
    assert_eq!(record["tool_results"][0]["tool"], "Read");
    assert_eq!(record["tool_results"][0]["count"], 1);
    assert!(record["tool_results"][0]["bytes"].as_u64().unwrap() > env.text.len() as u64);
    assert_never_shown(&gw, &env.secrets, &[audit_reply]);
    let found: Vec<(String, u64)> = report(&gw, "secrets")
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_owned(),
                r["found"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, rules.map(|r| (r.to_owned(), 1)));
    let feeds = report(&gw, "tool_results");
    assert_eq!(
        (&feeds[0]["tool"], &feeds[0]["results"]),
        (&json!("Read"), &json!(1))
    );
    gw.assert_healthy();
    drop(gw);

    // Block: a 400 naming the rule and where, nothing upstream.
    let (mock, gw) = gateway(r#"{"secrets":{"actions":{"aws-access-key-id":"block"}}}"#);
    let (status, blocked) = post(&gw, &body);
    assert_eq!(status, 400);
    let envelope: Value = serde_json::from_str(blocked.lines().last().unwrap()).unwrap();
    assert_eq!(envelope["type"], "error");
    assert_eq!(envelope["error"]["type"], "invalid_request_error");
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("aws-access-key-id at {location}")),
        "{message}"
    );
    assert_eq!(mock.served(), 0);
    let record = &gw.wait_audit_records(1)[0];
    assert_eq!(record["http.response.status_code"], 400);
    assert_eq!(record["secrets"][0]["action"], "block");
    assert_never_shown(&gw, &env.secrets, &[blocked]);
    drop(gw);

    // Redact: placeholders in place of the secrets, the body otherwise the same.
    let (mock, gw) = gateway(r#"{"secrets":{"action":"redact"}}"#);
    let (status, redacted_reply) = post(&gw, &body);
    assert_eq!(status, 200);
    let up = mock.wait_requests(1);
    let sent: Value = serde_json::from_slice(&bodies::without_diagnostics(&up[0].body))
        .expect("valid JSON upstream");
    let text = sent["messages"][last]["content"][0]["content"]
        .as_str()
        .unwrap();
    let mut expected = env.text.clone();
    for (s, rule) in env.secrets.iter().zip(rules) {
        let at = text.find(&format!("[REDACTED:{rule}:")).unwrap();
        let placeholder = &text[at..at + text[at..].find(']').unwrap() + 1];
        expected = expected.replace(s.as_str(), placeholder);
    }
    assert_eq!(text, expected);
    let mut original: Value = serde_json::from_slice(&body).unwrap();
    original["messages"][last]["content"][0]["content"] = json!(expected);
    // Apart from the placeholders (and the cache markers the gateway adds), nothing changed.
    let marked = bodies::rewritten(&serde_json::to_vec(&original).unwrap());
    assert_eq!(sent, serde_json::from_slice::<Value>(&marked).unwrap());
    for s in &env.secrets {
        assert!(!String::from_utf8_lossy(&up[0].body).contains(s.as_str()));
    }
    let record = &gw.wait_audit_records(1)[0];
    assert_eq!(record["secrets"].as_array().unwrap().len(), 4);
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.secrets_found.rule.stripe-key.action.redact"),
        1
    );
    assert_never_shown(&gw, &env.secrets, &[redacted_reply]);
    gw.assert_healthy();
}

#[test]
fn a_redacted_session_reads_the_cache_like_an_unredacted_one() {
    let env = dotenv();
    // Ten turns; the `.env` result arrives in the second and stays in the history.
    let requests: Vec<Vec<u8>> = bodies::agentic_replay("claude-sonnet-4-5", 10)
        .into_iter()
        .map(|b| {
            let mut v: Value = serde_json::from_slice(&b).unwrap();
            if let Some(result) = v["messages"].get_mut(2) {
                result["content"][0]["content"] = json!(env.text);
            }
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    let replay = |plugin_config: &str| {
        let sim = CacheSim::new(1024);
        let mock = Mock::start("anthropic", sim.responder());
        let gw = redacting_gateway(mock.port(), plugin_config);
        let mut turns = Vec::new();
        for body in &requests {
            let resp = client()
                .post(gw.url("/v1/messages"))
                .body(body.clone())
                .send()
                .unwrap();
            assert_eq!(resp.status(), 200);
            turns.push(usage_of(
                &serde_json::from_slice(&resp.bytes().unwrap()).unwrap(),
            ));
        }
        let sent: Vec<Vec<u8>> = mock.wait_requests(10).into_iter().map(|r| r.body).collect();
        gw.assert_healthy();
        (turns, sent)
    };
    let (plain, _) = replay(r#"{"secrets":{"enabled":false}}"#);
    let (redacted, sent) = replay(r#"{"secrets":{"action":"redact"}}"#);
    // The placeholder text of turn 2 is byte-identical in every later turn.
    let placeholders = |body: &[u8]| {
        let text = String::from_utf8_lossy(body).into_owned();
        text.match_indices("[REDACTED:")
            .map(|(at, _)| text[at..at + text[at..].find(']').unwrap() + 1].to_owned())
            .collect::<Vec<_>>()
    };
    assert!(placeholders(&sent[0]).is_empty());
    let first = placeholders(&sent[1]);
    assert_eq!(first.len(), 4);
    for body in &sent[2..] {
        assert_eq!(placeholders(body), first);
        for s in &env.secrets {
            assert!(!String::from_utf8_lossy(body).contains(s.as_str()));
        }
    }
    // Every turn reads what the previous one wrote, as much as without redaction (token
    // estimates differ only by the placeholders' length).
    let total = |t: &[SimUsage]| {
        let mut sum = SimUsage::default();
        t.iter().for_each(|u| sum.add(*u));
        sum
    };
    println!("plain {:?}\nredacted {:?}", total(&plain), total(&redacted));
    for (i, (p, r)) in plain.iter().zip(&redacted).enumerate().skip(1) {
        assert!(r.read > 0, "turn {i} read nothing: {r:?}");
        let diff = p.read.abs_diff(r.read);
        assert!(diff * 100 <= p.read, "turn {i}: plain {p:?} redacted {r:?}");
    }
    let (p, r) = (total(&plain).cost(), total(&redacted).cost());
    assert!(p.abs_diff(r) * 100 <= p, "cost plain {p} redacted {r}");
}

/// An answer calling three tools: a force push and a `.env` read are risky, `cargo test` not.
fn tool_blocks() -> Vec<(String, Value)> {
    vec![
        (
            "toolu_a".into(),
            json!({"command":"git push --force origin main","description":"push"}),
        ),
        (
            "toolu_b".into(),
            json!({"command":"cargo test --workspace"}),
        ),
        ("toolu_c".into(), json!({"file_path":"/repo/.env"})),
    ]
}

fn tool_name(i: usize) -> &'static str {
    ["Bash", "Bash", "Read"][i]
}

/// The answer as SSE events, each tool input sent in fragments of `fragment` bytes.
fn streamed(fragment: usize) -> Vec<Vec<u8>> {
    let mut events = vec![sse_event(
        "message_start",
        &json!({"type":"message_start","message":{"id":"msg_tools","type":"message","role":"assistant",
            "model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":USAGE.input,"output_tokens":1}}}),
    )];
    events.push(sse_event(
        "content_block_start",
        &json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    ));
    events.push(sse_event(
        "content_block_delta",
        &json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Pushing."}}),
    ));
    events.push(sse_event(
        "content_block_stop",
        &json!({"type":"content_block_stop","index":0}),
    ));
    for (i, (id, input)) in tool_blocks().iter().enumerate() {
        let index = i + 1;
        events.push(sse_event(
            "content_block_start",
            &json!({"type":"content_block_start","index":index,
                "content_block":{"type":"tool_use","id":id,"name":tool_name(i),"input":{}}}),
        ));
        let text = input.to_string();
        let bytes = text.as_bytes();
        // Fragments split anywhere, even inside a UTF-8 sequence or an escape.
        let mut at = 0;
        while at < bytes.len() {
            let mut end = (at + fragment).min(bytes.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            events.push(sse_event(
                "content_block_delta",
                &json!({"type":"content_block_delta","index":index,
                    "delta":{"type":"input_json_delta","partial_json":&text[at..end]}}),
            ));
            at = end;
        }
        events.push(sse_event(
            "content_block_stop",
            &json!({"type":"content_block_stop","index":index}),
        ));
    }
    events.push(sse_event(
        "message_delta",
        &json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
            "usage":{"output_tokens":USAGE.output}}),
    ));
    events.push(sse_event("message_stop", &json!({"type":"message_stop"})));
    events
}

fn as_json() -> Vec<u8> {
    let mut content = vec![json!({"type":"text","text":"Pushing."})];
    for (i, (id, input)) in tool_blocks().into_iter().enumerate() {
        content.push(json!({"type":"tool_use","id":id,"name":tool_name(i),"input":input}));
    }
    json!({"id":"msg_tools","type":"message","role":"assistant","model":"claude-sonnet-4-5",
        "content":content,"stop_reason":"tool_use","stop_sequence":null,
        "usage":{"input_tokens":USAGE.input,"output_tokens":USAGE.output}})
    .to_string()
    .into_bytes()
}

#[test]
fn tool_calls_are_recorded_alike_streamed_in_one_byte_fragments_whole_or_as_json() {
    // Per request the mock answers: whole fragments, 1-byte fragments (each event also its own
    // HTTP chunk split in two), or JSON.
    let responder = Arc::new(|r: &crate::support::mock::Recorded| {
        let body = r.json();
        match body["metadata"]["user_id"].as_str() {
            Some("whole") => Reply::sse(streamed(1 << 20).into_iter().map(Step::Send).collect()),
            Some("bytes") => Reply::sse(
                streamed(1)
                    .into_iter()
                    .flat_map(|e| {
                        let (a, b) = e.split_at(e.len() / 2);
                        [Step::Send(a.to_vec()), Step::Send(b.to_vec())]
                    })
                    .collect(),
            ),
            _ => Reply::json(200, as_json()),
        }
    });
    let mock = Mock::start("anthropic", responder);
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    let mut answers = Vec::new();
    for (who, stream) in [("whole", true), ("bytes", true), ("json", false)] {
        let body = json!({"model":"claude-sonnet-4-5","max_tokens":100,"stream":stream,
            "metadata":{"user_id":who},"messages":[{"role":"user","content":"push it"}]});
        let resp = client()
            .post(gw.url("/v1/messages"))
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        answers.push(resp.bytes().unwrap().to_vec());
    }
    // The stream reaches the client byte for byte.
    assert_eq!(answers[1], streamed(1).concat());
    let records = gw.wait_audit_records(3);
    let want = json!([
        {"tool":"Bash","count":2,"programs":["git","cargo"],"risks":[{"tag":"git-force-push","count":1}],"truncated":0,"incomplete":0},
        {"tool":"Read","count":1,"programs":[],"risks":[{"tag":"dotenv","count":1}],"truncated":0,"incomplete":0}
    ]);
    for r in &records {
        assert_eq!(r["tool_calls"], want, "{}", r["session.id"]);
    }
    let counter = |name: &str| gw.counter(&format!("wasmcustom.claude_gateway.{name}"));
    assert_eq!(counter("tool_calls.tool.Bash"), 6);
    assert_eq!(counter("tool_calls.tool.Read"), 3);
    assert_eq!(counter("tool_risks.tool.Bash.risk.git-force-push"), 3);
    assert_eq!(counter("tool_risks.tool.Read.risk.dotenv"), 3);
    let prometheus = gw.admin_get("/stats/prometheus").unwrap();
    assert!(
        prometheus.contains("claude_gateway_tool_risks{tool=\"Bash\",risk=\"git-force-push\"} 3"),
        "{prometheus}"
    );
    // The report counts them per tool and tag.
    let rows = report(&gw, "tools");
    let calls: Vec<(&str, &str, u64)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap();
            (s("tool"), s("risk"), r["calls"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("Bash", "(any)", 6),
            ("Bash", "git-force-push", 3),
            ("Read", "(any)", 3),
            ("Read", "dotenv", 3)
        ]
    );
    assert!(rows.iter().all(|r| r["consumer"] == "(none)"));
    // The tags and program names are on the record, never the commands.
    for text in ["push --force", "origin main", "--workspace", "/repo/.env"] {
        for (place, seen) in gw.readable_text() {
            if place != "/config_dump" {
                assert!(!seen.contains(text), "{text} appears in {place}");
            }
        }
    }
    gw.assert_healthy();
}
