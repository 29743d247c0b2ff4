//! Usage extraction from Messages API responses (anthropic-wire.md §5.3, §6.1): streamed events
//! or a JSON body, never pausing the stream.
//!
//! Streaming usage is `message_start.message.usage`, then each `message_delta.usage` overwrites
//! the fields it carries: the counts are cumulative, so they are never summed, and `null` means
//! absent. Summing start and delta double-counts (a bug several gateways shipped).

use crate::sse::Event;
use serde::Deserialize;

/// The five token buckets a request is billed by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Tokens {
    /// Uncached input (after the last breakpoint).
    pub input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    pub output: u64,
}

impl Tokens {
    /// Adds another request's counts (saturating: the counts come from the upstream).
    pub fn add(&mut self, o: &Tokens) {
        for (slot, n) in [
            (&mut self.input, o.input),
            (&mut self.cache_write_5m, o.cache_write_5m),
            (&mut self.cache_write_1h, o.cache_write_1h),
            (&mut self.cache_read, o.cache_read),
            (&mut self.output, o.output),
        ] {
            *slot = slot.saturating_add(n);
        }
    }

    /// Every prompt token, however it was billed.
    pub fn prompt(&self) -> u64 {
        // Saturating: the counts come from the upstream, which may report anything.
        self.input
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
            .saturating_add(self.cache_read)
    }
}

/// How far extraction got for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Everything the response carries was read (usage, or an error envelope).
    Complete,
    /// The response ended early (client abort, upstream reset, timeout, a mid-stream error):
    /// the last usage seen is recorded.
    Partial,
    /// No usage in the response.
    Missing,
    /// The response could not be parsed.
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Complete,
        Status::Partial,
        Status::Missing,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Partial => "partial",
            Status::Missing => "missing",
            Status::Failed => "failed",
        }
    }
}

#[derive(Deserialize, Default)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ServerToolUse {
    web_search_requests: Option<u64>,
    web_fetch_requests: Option<u64>,
}

#[derive(Deserialize, Default)]
struct UsageJson {
    input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
    server_tool_use: Option<ServerToolUse>,
}

#[derive(Deserialize, Default)]
struct Delta {
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorJson {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Why the API says the prompt cache could not reuse the previous request's prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheMiss {
    /// `model_changed`, `system_changed`, `tools_changed`, `messages_changed`,
    /// `previous_message_not_found`, `unavailable`, or `pending` (not known yet).
    pub reason: String,
    /// The API's estimate of the input tokens after the divergence (`*_changed` only).
    pub missed_tokens: Option<u64>,
}

impl CacheMiss {
    /// From a message's `diagnostics`, read leniently: a shape the gateway does not know is
    /// no diagnosis, never a failed usage read. `cache_miss_reason` is null while the API's
    /// comparison is still pending.
    fn from_value(d: &serde_json::Value) -> Option<CacheMiss> {
        let reason = d.as_object()?.get("cache_miss_reason")?;
        Some(CacheMiss {
            reason: metric_safe(reason.get("type").and_then(|t| t.as_str()))
                .unwrap_or_else(|| "pending".to_owned()),
            missed_tokens: reason
                .get("cache_missed_input_tokens")
                .and_then(|n| n.as_u64()),
        })
    }
}

/// The reasons the API documents (and `pending`); anything else reads `other`, so an upstream
/// cannot add metric series.
const MISS_REASONS: [&str; 6] = [
    "model_changed",
    "system_changed",
    "tools_changed",
    "messages_changed",
    "previous_message_not_found",
    "unavailable",
];

fn metric_safe(reason: Option<&str>) -> Option<String> {
    let r = reason?;
    Some(
        MISS_REASONS
            .iter()
            .find(|k| **k == r)
            .copied()
            .unwrap_or("other")
            .to_owned(),
    )
}

/// Any of: a message (non-streaming body, or `message_start.message`), an error body, or a
/// stream event. Unknown fields are ignored.
#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    model: Option<String>,
    stop_reason: Option<String>,
    usage: Option<UsageJson>,
    message: Option<Box<Envelope>>,
    diagnostics: Option<serde_json::Value>,
    delta: Option<Delta>,
    error: Option<ErrorJson>,
}

/// The usage fields seen so far; each later report overwrites the fields it carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fields {
    input: Option<u64>,
    cache_creation: Option<u64>,
    split_1h: Option<u64>,
    split_5m: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
    web_search: Option<u64>,
    web_fetch: Option<u64>,
}

fn overwrite(slot: &mut Option<u64>, value: Option<u64>) {
    if value.is_some() {
        *slot = value;
    }
}

impl Fields {
    fn merge(&mut self, u: &UsageJson) {
        overwrite(&mut self.input, u.input_tokens);
        overwrite(&mut self.cache_creation, u.cache_creation_input_tokens);
        overwrite(&mut self.cache_read, u.cache_read_input_tokens);
        overwrite(&mut self.output, u.output_tokens);
        if let Some(c) = &u.cache_creation {
            overwrite(&mut self.split_5m, c.ephemeral_5m_input_tokens);
            overwrite(&mut self.split_1h, c.ephemeral_1h_input_tokens);
        }
        if let Some(s) = &u.server_tool_use {
            overwrite(&mut self.web_search, s.web_search_requests);
            overwrite(&mut self.web_fetch, s.web_fetch_requests);
        }
    }
}

/// What has been read from one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    fields: Fields,
    usage_seen: bool,
    /// The served model (`message_start.message.model` / the body's `model`).
    pub model: Option<String>,
    pub message_id: Option<String>,
    pub stop_reason: Option<String>,
    /// The API's cache diagnosis (when the request asked for one).
    pub cache_miss: Option<CacheMiss>,
    /// `error.type` of an error body or a mid-stream `event: error`.
    pub error_type: Option<String>,
    /// The error arrived as an event after a 200.
    pub mid_stream_error: bool,
    /// `message_stop`, or a complete JSON body.
    finished: bool,
    failed: bool,
    content_started: bool,
}

/// Caps a string taken from a response (ids, model names, error types) to a sane length.
fn short(s: Option<String>) -> Option<String> {
    s.map(|s| crate::text::cap(s, 128))
}

impl Extraction {
    pub fn new() -> Extraction {
        Extraction::default()
    }

    fn parse(&mut self, data: &[u8]) -> Option<Envelope> {
        match serde_json::from_slice::<Envelope>(data) {
            Ok(e) => Some(e),
            Err(_) => {
                self.failed = true;
                None
            }
        }
    }

    fn take_usage(&mut self, usage: Option<&UsageJson>) {
        if let Some(u) = usage {
            self.fields.merge(u);
            self.usage_seen = true;
        }
    }

    /// Reads one stream event. Returns true for the first content delta (time to first token).
    pub fn on_event(&mut self, e: Event) -> bool {
        let mut kind = e.name;
        let parsed;
        if kind.is_empty() {
            // Upstreams that send only `data:` lines: the type is in the JSON.
            parsed = self.parse(e.data);
            kind = parsed
                .as_ref()
                .and_then(|p| p.kind.as_deref())
                .unwrap_or_default()
                .as_bytes();
        }
        match kind {
            b"content_block_delta" => {
                let first = !self.content_started;
                self.content_started = true;
                first
            }
            b"message_start" | b"message_delta" | b"error" => {
                if e.truncated {
                    self.failed = true;
                    return false;
                }
                let Some(env) = self.parse(e.data) else {
                    return false;
                };
                match kind {
                    b"message_start" => {
                        let m = env.message.unwrap_or_default();
                        self.take_usage(m.usage.as_ref());
                        self.model = short(m.model).or(self.model.take());
                        self.message_id = short(m.id);
                        self.cache_miss = m.diagnostics.as_ref().and_then(CacheMiss::from_value);
                    }
                    b"message_delta" => {
                        self.take_usage(env.usage.as_ref());
                        if let Some(d) = env.delta.and_then(|d| d.stop_reason) {
                            self.stop_reason = short(Some(d));
                        }
                    }
                    _ => {
                        self.error_type = short(env.error.and_then(|e| e.kind));
                        self.mid_stream_error = true;
                    }
                }
                false
            }
            b"message_stop" => {
                self.finished = true;
                false
            }
            _ => false, // ping, content_block_start/stop, and types added later.
        }
    }

    /// Reads a complete non-streaming body: a message or an error envelope.
    pub fn on_json(&mut self, body: &[u8]) {
        let Some(env) = self.parse(body) else {
            return;
        };
        self.finished = true;
        if env.kind.as_deref() == Some("error") {
            self.error_type = short(env.error.and_then(|e| e.kind));
            return;
        }
        self.take_usage(env.usage.as_ref());
        self.model = short(env.model);
        self.message_id = short(env.id);
        self.stop_reason = short(env.stop_reason);
        self.cache_miss = env.diagnostics.as_ref().and_then(CacheMiss::from_value);
    }

    /// Usage a vendor reported beside the events (Bedrock's `amazon-bedrock-invocationMetrics`):
    /// it fills only the buckets the events left unset, so the API's own (cumulative) counts win.
    pub fn fallback(
        &mut self,
        input: Option<u64>,
        output: Option<u64>,
        cache_read: Option<u64>,
        cache_write: Option<u64>,
    ) {
        let f = &mut self.fields;
        let before = *f;
        for (slot, v) in [
            (&mut f.input, input),
            (&mut f.output, output),
            (&mut f.cache_read, cache_read),
            (&mut f.cache_creation, cache_write),
        ] {
            if slot.is_none() {
                *slot = v;
            }
        }
        self.usage_seen |= *f != before;
    }

    /// The token buckets. Cache writes are split by `cache_creation` when present; without the
    /// split, all writes count as 5-minute ones.
    pub fn tokens(&self) -> Tokens {
        let f = &self.fields;
        let split_total = f
            .split_5m
            .unwrap_or(0)
            .saturating_add(f.split_1h.unwrap_or(0));
        let writes = f.cache_creation.unwrap_or(split_total);
        let write_1h = f.split_1h.unwrap_or(0).min(writes);
        Tokens {
            input: f.input.unwrap_or(0),
            cache_write_5m: writes - write_1h,
            cache_write_1h: write_1h,
            cache_read: f.cache_read.unwrap_or(0),
            output: f.output.unwrap_or(0),
        }
    }

    /// Server tool requests: (web searches, web fetches).
    pub fn server_tools(&self) -> (u64, u64) {
        (
            self.fields.web_search.unwrap_or(0),
            self.fields.web_fetch.unwrap_or(0),
        )
    }

    /// The extraction status once the response is over; `ended` is false when it stopped before
    /// its end (client abort, upstream reset, timeout).
    pub fn status(&self, ended: bool) -> Status {
        if self.failed {
            Status::Failed
        } else if self.finished && ended && !self.mid_stream_error {
            if self.usage_seen || self.error_type.is_some() {
                Status::Complete
            } else {
                Status::Missing
            }
        } else if self.usage_seen {
            Status::Partial
        } else {
            Status::Missing
        }
    }
}

#[cfg(test)]
mod tests;
