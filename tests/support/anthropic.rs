//! Responses shaped like the Messages API's (anthropic-wire.md §5-§6): SSE transcripts with the
//! real event sequence, non-streaming messages, error envelopes, and a default responder that
//! answers each endpoint the way api.anthropic.com does.

use super::mock::{Recorded, Reply, Responder, Step};
use serde_json::json;
use std::sync::Arc;

/// Token counts a mock reply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
    pub output: u64,
}

pub const USAGE: Usage = Usage {
    input: 11,
    cache_creation: 3,
    cache_read: 7,
    output: 5,
};

fn event(name: &str, data: serde_json::Value) -> Vec<u8> {
    super::bodies::sse_event(name, &data)
}

/// The events of a streamed text reply, one `Vec` per event, in the API's order.
pub fn stream_events(model: &str, text: &[&str], usage: Usage) -> Vec<Vec<u8>> {
    let mut events = vec![event(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_mock","type":"message","role":"assistant",
            "model":model,"content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":usage.input,"cache_creation_input_tokens":usage.cache_creation,
                "cache_read_input_tokens":usage.cache_read,
                "cache_creation":{"ephemeral_5m_input_tokens":usage.cache_creation,"ephemeral_1h_input_tokens":0},
                "output_tokens":1,"service_tier":"standard"}}}),
    )];
    events.push(event(
        "content_block_start",
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    ));
    // The real API's ping carries a space: never byte-match events.
    events.push(b"event: ping\ndata: {\"type\": \"ping\"}\n\n".to_vec());
    for t in text {
        events.push(event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
            "usage":{"input_tokens":usage.input,"cache_creation_input_tokens":usage.cache_creation,
                "cache_read_input_tokens":usage.cache_read,"output_tokens":usage.output}}),
    ));
    events.push(event("message_stop", json!({"type":"message_stop"})));
    events
}

/// One `Step::Send` per event.
pub fn steps(events: Vec<Vec<u8>>) -> Vec<Step> {
    events.into_iter().map(Step::Send).collect()
}

pub fn message_json(model: &str, text: &str, usage: Usage) -> Vec<u8> {
    json!({"id":"msg_mock","type":"message","role":"assistant","model":model,
        "content":[{"type":"text","text":text}],"stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":usage.input,"cache_creation_input_tokens":usage.cache_creation,
            "cache_read_input_tokens":usage.cache_read,
            "cache_creation":{"ephemeral_5m_input_tokens":usage.cache_creation,"ephemeral_1h_input_tokens":0},
            "output_tokens":usage.output,"service_tier":"standard"}})
    .to_string()
    .into_bytes()
}

/// An error reply with the API's envelope.
pub fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"type":"error","error":{"type":kind,"message":message},"request_id":"req_mock"})
            .to_string(),
    )
    .header("request-id", "req_mock")
}

/// The text a default reply carries, so tests can tell which upstream answered.
pub fn reply_text(id: &str) -> String {
    format!("Hello from {id}")
}

/// Answers like api.anthropic.com: messages (JSON or SSE by the body's `stream`), count_tokens,
/// models, and a 404 envelope for anything else. `id` names the upstream in the reply text.
/// Vendors serve the same API under a path prefix (`/anthropic/v1/messages`): any is accepted.
pub fn responder(id: &str) -> Responder {
    let id = id.to_owned();
    Arc::new(move |r: &Recorded| {
        let path = r.target.split('?').next().unwrap_or_default();
        let path = path.find("/v1/").map_or(path, |i| &path[i..]);
        match (r.method.as_str(), path) {
            ("POST", "/v1/messages") => {
                let body = r.json();
                let model = body["model"].as_str().unwrap_or("unknown").to_owned();
                let text = reply_text(&id);
                if body["stream"] == json!(true) {
                    let (a, b) = text.split_at(5);
                    Reply::sse(steps(stream_events(&model, &[a, b], USAGE)))
                } else {
                    Reply::json(200, message_json(&model, &text, USAGE))
                }
            }
            ("POST", "/v1/messages/count_tokens") => {
                Reply::json(200, json!({"input_tokens": r.body.len() / 4}).to_string())
            }
            ("GET", "/v1/models") => Reply::json(
                200,
                json!({"data":[{"type":"model","id":"claude-sonnet-4-5","display_name":"Claude Sonnet 4.5"}],
                    "has_more":false,"first_id":"claude-sonnet-4-5","last_id":"claude-sonnet-4-5"})
                .to_string(),
            ),
            ("HEAD", _) => Reply::json(200, Vec::new()),
            _ => error(404, "not_found_error", "Not found"),
        }
    })
}
