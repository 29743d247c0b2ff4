//! The metric catalog. Envoy exports wasm metrics as `wasmcustom.<name>`; labels are encoded in
//! the name as `.<tag>.<value>` pairs and turned back into Prometheus labels by the `stats_tags`
//! regexes shipped in `envoy/`. Tag values come only from bounded sets (configuration, enums),
//! and are sanitized so a value can never add a tag or a name segment.

use crate::cache::{Location, Skip, Ttl};
use crate::request::BodyIssue;
use crate::usage::Status;

/// Prefix of every metric name.
pub const PREFIX: &str = "claude_gateway";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric of the catalog with its label values filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Metric {
    pub kind: Kind,
    pub name: String,
}

impl Metric {
    fn new(kind: Kind, base: &str, tags: &[(&str, &str)]) -> Metric {
        // Sized once: a name grown push by push would be reallocated several times.
        let len = tags.iter().map(|(t, v)| t.len() + v.len().clamp(1, 64) + 2);
        let mut name = String::with_capacity(PREFIX.len() + 1 + base.len() + len.sum::<usize>());
        name.push_str(PREFIX);
        name.push('.');
        name.push_str(base);
        for (tag, value) in tags {
            name.push('.');
            name.push_str(tag);
            name.push('.');
            push_label(&mut name, value);
        }
        Metric { kind, name }
    }
}

/// Appends a label value, mapping every byte outside `[A-Za-z0-9_-]` to `_` (dots would split
/// the name, and quotes or newlines have no business in an exposition format) and bounding its
/// length.
fn push_label(out: &mut String, value: &str) {
    const MAX: usize = 64;
    if value.is_empty() {
        out.push('_');
    }
    for b in value.bytes().take(MAX) {
        let ok = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        out.push(if ok { char::from(b) } else { '_' });
    }
}

/// Requests whose body was forwarded untouched, by reason.
pub fn body_passthrough(reason: BodyIssue) -> Metric {
    Metric::new(
        Kind::Counter,
        "body_passthrough",
        &[("reason", reason.as_str())],
    )
}

/// Secrets found in request bodies, by rule and the rule's action.
pub fn secrets_found(rule: &str, action: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "secrets_found",
        &[("rule", rule), ("action", action)],
    )
}

/// Tool calls in answers, by tool (a configured label, `mcp` or `other`).
pub fn tool_calls(tool: &str) -> Metric {
    Metric::new(Kind::Counter, "tool_calls", &[("tool", tool)])
}

/// Tool calls whose input a risk rule tagged, by tool and tag.
pub fn tool_risks(tool: &str, risk: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "tool_risks",
        &[("tool", tool), ("risk", risk)],
    )
}

/// Anthropic's cache diagnoses, by reason (`pending` while the API had not finished).
pub fn cache_misses(reason: &str) -> Metric {
    Metric::new(Kind::Counter, "cache_misses", &[("reason", reason)])
}

/// The gateway's own cache verdicts on a session's turns, by verdict.
pub fn cache_verdicts(verdict: &str) -> Metric {
    Metric::new(Kind::Counter, "cache_verdicts", &[("reason", verdict)])
}

/// Finished turns the rate-limit service's session store did not take (service down, timeout).
pub fn session_sync_failures() -> Metric {
    Metric::new(Kind::Counter, "session_sync_failures", &[])
}

/// Cache markers the gateway added, by location and TTL.
pub fn cache_markers_added(location: Location, ttl: Ttl) -> Metric {
    Metric::new(
        Kind::Counter,
        "cache_markers_added",
        &[("location", location.as_str()), ("ttl", ttl.as_str())],
    )
}

/// Messages requests that got no cache marker, by reason.
pub fn cache_skipped(reason: Skip) -> Metric {
    Metric::new(
        Kind::Counter,
        "cache_skipped",
        &[("reason", reason.as_str())],
    )
}

/// The labels every request metric carries: the route, the model (a price-table name or
/// `other`, so a client cannot create series) and, for usage and spend, the cost center of the
/// consumer (a configured one, or `none`), and on tokens and cost the consumer (a configured
/// one; a token's consumer is `other`: ids from tokens would be unbounded) and its group rule
/// (`none` for a virtual key's).
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub route: &'a str,
    pub model: &'a str,
    pub cost_center: &'a str,
    pub consumer: &'a str,
    pub group: &'a str,
}

/// Requests by route, model, cost center and status class (`2xx`... or `none` when no response
/// was sent).
pub fn requests(l: Labels, status_class: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "requests",
        &[
            ("route", l.route),
            ("model", l.model),
            ("cost_center", l.cost_center),
            ("status", status_class),
        ],
    )
}

/// Tokens by type: `input`, `cache_write_5m`, `cache_write_1h`, `cache_read`, `output`.
pub fn tokens(l: Labels, kind: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "tokens",
        &[
            ("route", l.route),
            ("model", l.model),
            ("cost_center", l.cost_center),
            ("consumer", l.consumer),
            ("group", l.group),
            ("type", kind),
        ],
    )
}

pub fn cost_micro_usd(l: Labels) -> Metric {
    Metric::new(
        Kind::Counter,
        "cost_micro_usd",
        &[
            ("route", l.route),
            ("model", l.model),
            ("cost_center", l.cost_center),
            ("consumer", l.consumer),
            ("group", l.group),
        ],
    )
}

/// Requests whose model has no price (their cost is 0).
pub fn cost_unknown_model(l: Labels) -> Metric {
    Metric::new(Kind::Counter, "cost_unknown_model", &[("route", l.route)])
}

/// Server tool requests by type (`web_search`, `web_fetch`).
pub fn server_tool_requests(l: Labels, kind: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "server_tool_requests",
        &[("route", l.route), ("model", l.model), ("type", kind)],
    )
}

/// The Messages API's error types; anything else is counted as `other`.
pub const ERROR_TYPES: [&str; 11] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
    "other",
];

/// Errors by type and phase (`response`: an error status; `stream`: an event after a 200).
pub fn errors(l: Labels, error_type: &str, phase: &str) -> Metric {
    let kind = ERROR_TYPES
        .iter()
        .find(|&&t| t == error_type)
        .copied()
        .unwrap_or("other");
    Metric::new(
        Kind::Counter,
        "errors",
        &[
            ("route", l.route),
            ("model", l.model),
            ("type", kind),
            ("phase", phase),
        ],
    )
}

/// Messages requests by usage extraction status.
pub fn usage_extraction(status: Status) -> Metric {
    Metric::new(
        Kind::Counter,
        "usage_extraction",
        &[("status", status.as_str())],
    )
}

/// Requests the gateway refused itself, by reason (`unauthenticated`, `forbidden`,
/// `requests_per_minute`, `input_tokens_per_minute`, `output_tokens_per_minute`,
/// `budget_daily`, `budget_monthly`, `no_key`, `unknown_model`, ...).
pub fn refused(reason: &str) -> Metric {
    Metric::new(Kind::Counter, "refused", &[("reason", reason)])
}

/// Times an upstream key went into cooldown (a 429 or 529).
pub fn key_cooldowns(pool: &str, key: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "key_cooldowns",
        &[("pool", pool), ("key", key)],
    )
}

/// Betas (`kind` `beta`) and body fields (`field`) a route's vendor does not accept, dropped
/// from requests. `name` is bounded by the caller (a known name, else `other`).
pub fn dialect_dropped(route: &str, kind: &str, name: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "dialect_dropped",
        &[("route", route), ("kind", kind), ("name", name)],
    )
}

/// Body fields of the Messages API (and the clouds' own): a dropped field outside this list is
/// labelled `other`, so a client's invented field cannot add series.
const KNOWN_FIELDS: [&str; 27] = [
    "anthropic_beta",
    "anthropic_version",
    "cache_control",
    "container",
    "context_management",
    "inference_geo",
    "max_tokens",
    "mcp_servers",
    "messages",
    "metadata",
    "model",
    "output_config",
    "output_format",
    "service_tier",
    "speed",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
    "diagnostics",
    "betas",
    "citations",
];

/// A dropped field's label: its name when it is a known field, else `other`.
pub fn known_field(name: &str) -> &str {
    if KNOWN_FIELDS.contains(&name) {
        name
    } else {
        "other"
    }
}

/// Requests a failover target answered after the route's first target failed.
pub fn failovers(route: &str, target: &str) -> Metric {
    Metric::new(
        Kind::Counter,
        "failovers",
        &[("route", route), ("target", target)],
    )
}

/// Bedrock event streams that ended in an error event the gateway wrote: a corrupt or
/// truncated frame, or an exception from Bedrock (`reason`).
pub fn transcode_failures(reason: &str) -> Metric {
    Metric::new(Kind::Counter, "transcode_failures", &[("reason", reason)])
}

/// 1 while the global rate-limit service answers the gateway's probe, 0 while it does not
/// (each worker's VM probes and sets it; they agree).
pub fn global_limits_up() -> Metric {
    Metric::new(Kind::Gauge, "global_limits_up", &[])
}

/// Probes of the global rate-limit service that failed (no answer, an error status), of every
/// worker's VM (one probe each per `probe_seconds`).
pub fn global_limits_probe_failures() -> Metric {
    Metric::new(Kind::Counter, "global_limits_probe_failures", &[])
}

/// Time to first content delta, milliseconds.
pub fn ttft_ms(l: Labels) -> Metric {
    Metric::new(
        Kind::Histogram,
        "ttft_ms",
        &[("route", l.route), ("model", l.model)],
    )
}

/// Request duration (start to end of the response), milliseconds.
pub fn duration_ms(l: Labels) -> Metric {
    Metric::new(
        Kind::Histogram,
        "duration_ms",
        &[("route", l.route), ("model", l.model)],
    )
}

/// The wasm VMs' linear memory, summed over workers (it only grows: the high-water mark).
pub fn vm_memory_bytes() -> Metric {
    Metric::new(Kind::Gauge, "vm_memory_bytes", &[])
}

/// Heap in use inside the VMs, summed over workers, at the last report (every second).
pub fn vm_heap_bytes() -> Metric {
    Metric::new(Kind::Gauge, "vm_heap_bytes", &[])
}

/// The highest heap in use since each VM started, summed over workers.
pub fn vm_heap_peak_bytes() -> Metric {
    Metric::new(Kind::Gauge, "vm_heap_peak_bytes", &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_tags() {
        let m = body_passthrough(BodyIssue::InvalidJson);
        assert_eq!(
            m.name,
            "claude_gateway.body_passthrough.reason.invalid_json"
        );
        assert_eq!(m.kind, Kind::Counter);
        let m = vm_memory_bytes();
        assert_eq!(
            (m.name.as_str(), m.kind),
            ("claude_gateway.vm_memory_bytes", Kind::Gauge)
        );
    }

    #[test]
    fn dropped_fields_are_bounded() {
        assert_eq!(known_field("service_tier"), "service_tier");
        assert_eq!(known_field("whatever"), "other");
    }

    #[test]
    fn label_values_cannot_inject() {
        let m = Metric::new(Kind::Counter, "x", &[("model", "a.b\n{c=\"d\"}")]);
        assert_eq!(m.name, "claude_gateway.x.model.a_b__c__d__");
        let m = Metric::new(Kind::Counter, "x", &[("model", "")]);
        assert_eq!(m.name, "claude_gateway.x.model._");
        let long = "m".repeat(500);
        let m = Metric::new(Kind::Counter, "x", &[("model", &long)]);
        assert_eq!(m.name.len(), "claude_gateway.x.model.".len() + 64);
    }
}
