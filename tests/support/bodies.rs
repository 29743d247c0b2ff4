//! Request bodies shaped like Claude Code's (anthropic-wire.md §3.3): system blocks with the
//! attribution block first, built-in tools, a conversation with text, tool use, tool results
//! and thinking, and `metadata.user_id` in the JSON-in-a-string form.

use serde_json::{Value, json};

/// What the default configuration makes of a Messages body: the cache markers the filter adds,
/// spliced in by the same pure code it runs.
pub fn rewritten(body: &[u8]) -> Vec<u8> {
    use claude_gateway::{config, plan, request::Endpoint, splice};
    let config = config::parse(b"{}").unwrap();
    let p = plan::plan(
        &config,
        Endpoint::Messages,
        "/v1/messages",
        Some(body),
        &mut |_| None,
    );
    splice::apply(body, &p.cache.edits)
}

/// An upstream body without the cache diagnostics the gateway adds on Claude API routes to
/// requests of a known session (`"diagnostics":{"previous_message_id":null},` or `…:"msg_…"},`
/// right after the opening brace), so everything else can still be compared byte for byte.
pub fn without_diagnostics(body: &[u8]) -> Vec<u8> {
    let marker = br#""diagnostics":{"previous_message_id":"#;
    let Some(start) = body.windows(marker.len()).position(|w| w == marker) else {
        return body.to_vec();
    };
    let Some(len) = body[start..].windows(2).position(|w| w == b"},") else {
        return body.to_vec();
    };
    [&body[..start], &body[start + len + 2..]].concat()
}

const SESSION: &str = "f25958b8-e75c-455d-8b40-f006d87cc2a4";

fn tools() -> Value {
    let tool = |name: &str, description: &str| {
        json!({"name": name, "description": description,
            "input_schema": {"type":"object","properties":{"command":{"type":"string","description":"The command"}},
                "required":["command"],"additionalProperties":false,"$schema":"http://json-schema.org/draft-07/schema#"}})
    };
    json!([
        tool(
            "Bash",
            "Executes a bash command.\nUse it for git, tests and builds."
        ),
        tool("Read", "Reads a file from the local filesystem."),
        tool("Edit", "Performs exact string replacements in files."),
    ])
}

fn system() -> Value {
    json!([
        {"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.153.9bd; cc_entrypoint=cli; cch=f03bc;"},
        {"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude.","cache_control":{"type":"ephemeral"}},
        {"type":"text","text":"Instructions: be concise.\n\"Quotes\", tabs\t, unicode é 😀 and \\ backslashes.","cache_control":{"type":"ephemeral"}}
    ])
}

/// One agentic turn: the assistant thinks, calls a tool, and the user returns its output.
fn turn(i: usize, filler: &str) -> [Value; 2] {
    [
        json!({"role":"assistant","content":[
            {"type":"thinking","thinking":format!("Step {i}: run the tests."),"signature":"EqQBCkYIBxgCKkA"},
            {"type":"text","text":format!("Running step {i}.")},
            {"type":"tool_use","id":format!("toolu_{i:04}"),"name":"Bash","input":{"command":"cargo test","description":"run tests"}}]}),
        json!({"role":"user","content":[
            {"type":"tool_result","tool_use_id":format!("toolu_{i:04}"),"content":filler},
            {"type":"text","text":"<system-reminder>keep going</system-reminder>"}]}),
    ]
}

/// A Claude Code request of roughly `target` bytes (at least a few KiB).
pub fn claude_code(model: &str, stream: bool, target: usize) -> Vec<u8> {
    let filler = "test result: ok. 42 passed; 0 failed\n\tat src/lib.rs:10 \"ok\"\n".repeat(40);
    let mut messages = vec![json!({"role":"user","content":[
        {"type":"text","text":"<system-reminder>CLAUDE.md contents</system-reminder>"},
        {"type":"text","text":"fix the failing test"}]})];
    let mut body = json!({
        "model": model, "max_tokens": 32000, "stream": stream,
        "system": system(), "tools": tools(), "messages": [],
        "metadata": {"user_id": json!({"device_id":"67bad5aabb","account_uuid":"","session_id":SESSION}).to_string()},
        "thinking": {"type":"adaptive"}, "output_config": {"effort":"high"},
    });
    // Grows the conversation turn by turn, counting bytes instead of re-serializing.
    let mut size = serde_json::to_vec(&body).unwrap().len();
    let mut i = 0;
    while size < target {
        let turn = turn(i, &filler);
        let more = [
            json!({"role":"assistant","content":[{"type":"text","text":"Done."}]}),
            json!({"role":"user","content":"next step"}),
        ];
        for m in turn.into_iter().chain(more) {
            size += serde_json::to_vec(&m).unwrap().len() + 1;
            messages.push(m);
        }
        i += 1;
    }
    body["messages"] = Value::Array(messages);
    serde_json::to_vec(&body).unwrap()
}

/// A plain SDK request without any marker: long tool definitions, a string `system` and
/// string message contents, so every location has a prefix above the models' minimum.
pub fn sdk_plain(model: &str, turns: usize) -> Vec<u8> {
    let doc = "Runs a shell command and returns its output. ".repeat(120);
    let mut messages = Vec::new();
    for i in 0..turns {
        messages.push(
            json!({"role":"user","content":format!("Question {i}: {}", "why? ".repeat(200))}),
        );
        messages.push(json!({"role":"assistant","content":format!("Answer {i}.")}));
    }
    messages.push(json!({"role":"user","content":"And finally?"}));
    serde_json::to_vec(&json!({
        "model": model, "max_tokens": 1024,
        "tools": [
            {"name":"run","description":doc,"input_schema":{"type":"object","properties":{"cmd":{"type":"string"}}}},
            {"name":"read","description":doc,"input_schema":{"type":"object","properties":{"path":{"type":"string"}}}}
        ],
        "system": "You are a careful engineer. ".repeat(300),
        "messages": messages,
    }))
    .unwrap()
}

/// Every `cache_control` in a request, as (JSON path, ttl).
pub fn markers(v: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, path: String, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if k == "cache_control" {
                        let ttl = child["ttl"].as_str().unwrap_or("5m").to_owned();
                        out.push((path.clone(), ttl));
                    } else {
                        walk(child, format!("{path}.{k}"), out);
                    }
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// The requests of an agentic session from a client that sends no cache markers: each turn
/// the assistant calls a tool and the next request carries the whole conversation plus the
/// tool's output (sizes vary deterministically between 0.8 and 6 KB).
pub fn agentic_replay(model: &str, turns: usize) -> Vec<Vec<u8>> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |lo: usize, hi: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (seed >> 33) as usize % (hi - lo)
    };
    let tool = |name: &str| {
        json!({"name":name,"description":format!("{name}: {}", "Use this tool to inspect or change the repository. ".repeat(40)),
            "input_schema":{"type":"object","properties":{"arg":{"type":"string"}},"required":["arg"]}})
    };
    let tools = json!([tool("bash"), tool("read_file"), tool("edit_file")]);
    let system = "You are an autonomous coding agent working in a Rust repository. ".repeat(120);
    let mut messages = vec![
        json!({"role":"user","content":"The integration tests fail after the refactor; find out why and fix it."}),
    ];
    let mut requests = Vec::with_capacity(turns);
    for turn in 0..turns {
        let body = json!({"model":model,"max_tokens":4096,"system":system,"tools":tools,"messages":messages});
        requests.push(serde_json::to_vec(&body).unwrap());
        let id = format!("toolu_{turn:03}");
        messages.push(json!({"role":"assistant","content":[
            {"type":"text","text":format!("Step {turn}: checking the next file.")},
            {"type":"tool_use","id":id,"name":"bash","input":{"arg":format!("cargo test --test t{turn}")}}]}));
        let output = "error[E0308]: mismatched types in src/lib.rs\n".repeat(next(18, 130));
        messages.push(json!({"role":"user","content":[{"type":"tool_result","tool_use_id":id,"content":output}]}));
    }
    requests
}

/// One Server-Sent Event as the Messages API frames it.
pub fn sse_event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// A streamed answer of `deltas` text deltas, each carrying `text(i)`, with usage at the start
/// and the end, as the Messages API sends it.
pub fn sse_answer(
    model: &str,
    deltas: usize,
    mut text: impl FnMut(usize) -> String,
) -> Vec<Vec<u8>> {
    let mut events = vec![
        sse_event(
            "message_start",
            &json!({"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant",
                "content":[],"model":model,"stop_reason":null,"stop_sequence":null,
                "usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":51000,"output_tokens":1}}}),
        ),
        sse_event(
            "content_block_start",
            &json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
    ];
    for i in 0..deltas {
        events.push(sse_event(
            "content_block_delta",
            &json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text(i)}}),
        ));
    }
    events.push(sse_event(
        "content_block_stop",
        &json!({"type":"content_block_stop","index":0}),
    ));
    events.push(sse_event(
        "message_delta",
        &json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
            "usage":{"output_tokens":deltas}}),
    ));
    events.push(sse_event("message_stop", &json!({"type":"message_stop"})));
    events
}
