//! The audit record: one flat JSON object per request, written into Envoy's filter state when
//! the request ends and printed as the access log line, so a warehouse can ingest it as is.
//! Keys follow the OpenTelemetry GenAI / HTTP semantic conventions where one exists. It holds
//! identifiers and counts only: never prompt or completion text, never a key.

use serde::Serialize;

/// The filter-state key (`%FILTER_STATE(wasm.claude_gateway:PLAIN)%` in Envoy's access log).
pub const PROPERTY: &str = "claude_gateway";

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Request start, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Envoy's `x-request-id`.
    pub request_id: Option<String>,
    #[serde(rename = "session.id")]
    pub session_id: Option<String>,
    #[serde(rename = "gen_ai.provider.name")]
    pub provider: &'static str,
    /// `chat` for Messages, `count_tokens`, or null for other endpoints.
    #[serde(rename = "gen_ai.operation.name")]
    pub operation: Option<&'static str>,
    #[serde(rename = "http.request.method")]
    pub method: String,
    /// The path without its query.
    #[serde(rename = "url.path")]
    pub path: String,
    #[serde(rename = "http.response.status_code")]
    pub status: Option<u32>,
    #[serde(rename = "gen_ai.request.model")]
    pub request_model: Option<String>,
    #[serde(rename = "gen_ai.response.model")]
    pub response_model: Option<String>,
    #[serde(rename = "gen_ai.response.id")]
    pub response_id: Option<String>,
    #[serde(rename = "gen_ai.response.finish_reasons")]
    pub finish_reasons: Vec<String>,
    pub stream: Option<bool>,
    /// Uncached input tokens (Anthropic's `input_tokens`).
    #[serde(rename = "gen_ai.usage.input_tokens")]
    pub input_tokens: u64,
    /// All cache writes (5m + 1h).
    #[serde(rename = "gen_ai.usage.cache_creation.input_tokens")]
    pub cache_creation_input_tokens: u64,
    pub cache_creation_5m_input_tokens: u64,
    pub cache_creation_1h_input_tokens: u64,
    #[serde(rename = "gen_ai.usage.cache_read.input_tokens")]
    pub cache_read_input_tokens: u64,
    #[serde(rename = "gen_ai.usage.output_tokens")]
    pub output_tokens: u64,
    pub web_search_requests: u64,
    pub web_fetch_requests: u64,
    pub cost_micro_usd: u64,
    /// The cache reads and writes priced as plain input, minus their cost (negative when the
    /// request only wrote to the cache).
    pub cache_savings_micro_usd: i64,
    /// The price-table entry used, or null for an unknown model (cost 0).
    pub price: Option<String>,
    /// complete / partial / missing / failed; null where no usage is expected.
    pub usage_status: Option<&'static str>,
    pub route: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_host: Option<String>,
    pub attempts: Option<u64>,
    pub virtual_key: Option<String>,
    /// The group rule a token's consumer was admitted by (identity `jwt`).
    pub consumer_group: Option<String>,
    pub cost_center: Option<String>,
    pub key_alias: Option<String>,
    #[serde(rename = "error.type")]
    pub error_type: Option<String>,
    /// `response` (an error status) or `stream` (an error event after a 200).
    pub error_phase: Option<&'static str>,
    pub ttft_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub cache_markers_added: usize,
    /// Why the body was forwarded untouched, if it was.
    pub body_issue: Option<&'static str>,
    pub response_code_details: Option<String>,
    /// The wire format of the upstream that answered (`anthropic`, `bedrock`, ...).
    pub upstream_dialect: Option<&'static str>,
    /// The failover target that answered (routes with failover targets only).
    pub upstream_target: Option<String>,
    /// A failover route's attempts in order: the target and the status it answered.
    pub upstream_attempts: Option<Vec<Attempt>>,
    /// Betas and body fields the route's vendor does not accept, dropped from the request.
    pub dropped_betas: Vec<String>,
    pub dropped_fields: Vec<String>,
    /// Secrets the request carried: per rule, the action, count and JSON locations (never a
    /// value).
    pub secrets: Vec<crate::secrets::Found>,
    /// The tool calls the model asked for, by tool: how many, shell programs, risk tags (never
    /// an input).
    pub tool_calls: Vec<crate::tools::ToolSummary>,
    /// The tool results of this turn (the last user message), by tool, with their bytes.
    pub tool_results: Vec<crate::tools::ToolFeed>,
    /// Claude Code's subagent (`x-claude-code-agent-id`) and the agent that spawned it.
    pub agent_id: Option<String>,
    pub parent_agent_id: Option<String>,
    /// Anthropic's cache diagnosis: why the prefix of the previous turn was not reused.
    pub cache_miss_reason: Option<String>,
    pub cache_missed_input_tokens: Option<u64>,
    /// The gateway's own reading: `hit`, `<part>_changed`, `ttl_expired`, `partial`,
    /// `unexplained` (null on a session's first turn or with nothing cached before).
    pub cache_verdict: Option<&'static str>,
    /// What the previous turn of the same agent left in the cache (read + written tokens).
    pub cache_expected_tokens: Option<u64>,
    /// Time since the previous turn of the same agent ended.
    pub idle_ms: Option<u64>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Attempt {
    pub target: String,
    pub status: Option<u32>,
}

impl Record {
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and options cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_flat_keys_and_escapes_values() {
        let r = Record {
            provider: "anthropic",
            request_model: Some("evil\"\n{model}".into()),
            finish_reasons: vec!["end_turn".into()],
            ..Record::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["gen_ai.request.model"], "evil\"\n{model}");
        assert_eq!(v["gen_ai.response.finish_reasons"][0], "end_turn");
        assert_eq!(v["gen_ai.usage.input_tokens"], 0);
        assert!(v["session.id"].is_null());
        let text = String::from_utf8(r.to_json()).unwrap();
        assert!(!text.contains('\n'), "one line per record");
    }
}
