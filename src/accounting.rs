//! What a finished request is recorded as: its metric updates and its audit record, computed in
//! pure code from what the filter saw (the request, the plan, the response's usage, timings).

use crate::audit::{Attempt, Record};
use crate::config::Config;
use crate::cost::{self, Price};
use crate::dialect::Dialect;
use crate::keys::Consumer;
use crate::metrics::{self, Labels, Metric};
use crate::request::{BodyIssue, Endpoint};
use crate::sessions;
use crate::usage::{Extraction, Tokens};

/// Everything known about a request when it ends.
#[derive(Debug, Default)]
pub struct Finished<'a> {
    pub endpoint: Option<Endpoint>,
    pub method: &'a str,
    /// Path with query; the record keeps the path only.
    pub path: &'a str,
    pub request_model: Option<&'a str>,
    pub stream: Option<bool>,
    /// The session (`session::session_id` of the header and `metadata.user_id`).
    pub session: Option<&'a str>,
    pub body_issue: Option<BodyIssue>,
    /// The error type of a reply the gateway sent itself.
    pub local_error: Option<&'static str>,
    /// The consumer whose virtual key authenticated the request.
    pub consumer: Option<&'a Consumer>,
    /// The upstream key that served the response.
    pub key_alias: Option<&'a str>,
    pub markers_added: usize,
    pub route: Option<&'a str>,
    /// Usage read from the response (None when the gateway does not read it).
    pub extraction: Option<&'a Extraction>,
    /// The response reached its end (not aborted, reset or timed out).
    pub response_ended: bool,
    pub status: Option<u32>,
    pub start_ns: u64,
    pub first_content_ns: Option<u64>,
    pub end_ns: u64,
    pub request_id: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_host: Option<String>,
    pub attempts: Option<u64>,
    pub code_details: Option<String>,
    /// The dialect of the route (or failover target) that answered.
    pub dialect: Option<Dialect>,
    /// The failover target that answered, when the route has targets.
    pub target: Option<&'a str>,
    /// The upstream instance's list of a failover route's attempts (see `parse_attempts`).
    pub upstream_attempts: Option<&'a str>,
    /// The answering target's own prices, checked first.
    pub prices: &'a [Price],
    pub dropped_betas: &'a [String],
    pub dropped_fields: &'a [String],
    /// Secrets the request carried, by rule.
    pub secrets: &'a [crate::secrets::Found],
    /// The tool calls of the answer, and the tool results of the request.
    pub tool_calls: &'a [crate::tools::ToolCall],
    pub tool_results: &'a [crate::tools::ToolFeed],
    /// Claude Code's agent headers (subagents), validated.
    pub agent_id: Option<&'a str>,
    pub parent_agent_id: Option<&'a str>,
    /// The session's view of this turn (sessions on, a session known).
    pub insight: Option<&'a sessions::Insight>,
}

/// Metric updates: counters to add to, histogram values to record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Updates {
    pub counters: Vec<(Metric, u64)>,
    pub histograms: Vec<(Metric, u64)>,
}

impl Updates {
    /// Adds `n` to a counter. A zero changes nothing, so its name is not even built (names are
    /// formatted strings, and most requests leave several counters at zero).
    fn count(&mut self, n: u64, metric: impl FnOnce() -> Metric) {
        if n > 0 {
            self.counters.push((metric(), n));
        }
    }
}

fn status_class(status: Option<u32>) -> String {
    match status {
        Some(s @ 100..=599) => format!("{}xx", s / 100),
        _ => "none".to_owned(),
    }
}

fn millis(from: u64, to: u64) -> u64 {
    to.saturating_sub(from) / 1_000_000
}

/// The metric updates and audit record of a finished request.
pub fn account(config: &Config, f: &Finished) -> (Updates, Record) {
    let mut up = Updates::default();
    let ex = f.extraction.filter(|_| config.usage.enabled);
    let tokens = ex.map(Extraction::tokens).unwrap_or_default();
    let (web_search, web_fetch) = ex.map(Extraction::server_tools).unwrap_or_default();
    let served = ex.and_then(|x| x.model.as_deref());
    let model_for_price = served.or(f.request_model);
    let price = model_for_price
        .and_then(|m| cost::find(f.prices, m).or_else(|| cost::find(&config.usage.prices, m)));
    let cost = price.map_or(0, |p| cost::micro_usd(p, &tokens, web_search));
    let cost_center = f.consumer.and_then(|c| c.cost_center.as_deref());
    let labels = Labels {
        route: f.route.unwrap_or("none"),
        model: price.map_or("other", |p| p.name.as_str()),
        cost_center: cost_center.unwrap_or("none"),
        consumer: match f.consumer {
            None => "none",
            Some(c) if c.group.is_some() => "other",
            Some(c) => c.id.as_str(),
        },
        group: f
            .consumer
            .and_then(|c| c.group.as_deref())
            .unwrap_or("none"),
    };
    let error_type = ex
        .and_then(|x| x.error_type.clone())
        .or_else(|| f.local_error.map(str::to_owned));
    let error_phase = match (ex, f.status) {
        (Some(x), _) if x.mid_stream_error => Some("stream"),
        (_, Some(s)) if s >= 400 => Some("response"),
        _ => None,
    };
    let usage_status = ex.map(|x| x.status(f.response_ended));
    let ttft = f.first_content_ns.map(|t| millis(f.start_ns, t));
    let duration = millis(f.start_ns, f.end_ns);

    if config.usage.enabled && f.endpoint == Some(Endpoint::Messages) {
        up.count(1, || metrics::requests(labels, &status_class(f.status)));
        for (kind, n) in [
            ("input", tokens.input),
            ("cache_write_5m", tokens.cache_write_5m),
            ("cache_write_1h", tokens.cache_write_1h),
            ("cache_read", tokens.cache_read),
            ("output", tokens.output),
        ] {
            up.count(n, || metrics::tokens(labels, kind));
        }
        up.count(cost, || metrics::cost_micro_usd(labels));
        if price.is_none() && tokens != Tokens::default() {
            up.count(1, || metrics::cost_unknown_model(labels));
        }
        up.count(web_search, || {
            metrics::server_tool_requests(labels, "web_search")
        });
        up.count(web_fetch, || {
            metrics::server_tool_requests(labels, "web_fetch")
        });
        if let Some(phase) = error_phase {
            let kind = error_type.as_deref().unwrap_or("other");
            up.count(1, || metrics::errors(labels, kind, phase));
        }
        if let Some(s) = usage_status {
            up.count(1, || metrics::usage_extraction(s));
        }
        if let Some(ms) = ttft {
            up.histograms.push((metrics::ttft_ms(labels), ms));
        }
        up.histograms.push((metrics::duration_ms(labels), duration));
    }
    for s in f.secrets {
        up.count(s.count, || {
            metrics::secrets_found(&s.rule, s.action.as_str())
        });
    }
    for call in f.tool_calls {
        up.count(1, || metrics::tool_calls(&call.label));
        for risk in &call.risks {
            up.count(1, || metrics::tool_risks(&call.label, risk));
        }
    }

    let miss = ex.and_then(|x| x.cache_miss.as_ref());
    let start_ms = f.start_ns / 1_000_000;
    let previous = f.insight.and_then(|i| i.previous.as_ref());
    let verdict = f
        .insight
        .and_then(|i| sessions::verdict(previous, i.changed, start_ms, &tokens));
    if let Some(m) = miss {
        up.count(1, || metrics::cache_misses(&m.reason));
    }
    if let Some(v) = verdict {
        up.count(1, || metrics::cache_verdicts(v));
    }

    let short = |s: Option<&str>| s.map(|s| s.chars().take(128).collect::<String>());
    let record = Record {
        timestamp: crate::time::rfc3339(f.start_ns),
        request_id: f.request_id.clone(),
        session_id: f.session.map(str::to_owned),
        provider: f.dialect.unwrap_or(Dialect::Anthropic).provider(),
        operation: f.endpoint.map(|e| match e {
            Endpoint::Messages => "chat",
            Endpoint::CountTokens => "count_tokens",
        }),
        method: f.method.chars().take(16).collect(),
        path: f
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect(),
        status: f.status,
        request_model: short(f.request_model),
        response_model: short(served),
        response_id: ex.and_then(|x| x.message_id.clone()),
        finish_reasons: ex.and_then(|x| x.stop_reason.clone()).into_iter().collect(),
        stream: f.stream,
        input_tokens: tokens.input,
        cache_creation_input_tokens: tokens.cache_write_5m.saturating_add(tokens.cache_write_1h),
        cache_creation_5m_input_tokens: tokens.cache_write_5m,
        cache_creation_1h_input_tokens: tokens.cache_write_1h,
        cache_read_input_tokens: tokens.cache_read,
        output_tokens: tokens.output,
        web_search_requests: web_search,
        web_fetch_requests: web_fetch,
        cost_micro_usd: cost,
        cache_savings_micro_usd: price.map_or(0, |p| cost::cache_savings_micro_usd(p, &tokens)),
        price: price.map(|p| p.name.clone()),
        usage_status: usage_status.map(|s| s.as_str()),
        route: f.route.map(str::to_owned),
        upstream_cluster: f.upstream_cluster.clone(),
        upstream_host: f.upstream_host.clone(),
        attempts: f.attempts,
        virtual_key: f.consumer.map(|c| c.id.clone()),
        consumer_group: f.consumer.and_then(|c| c.group.clone()),
        cost_center: cost_center.map(str::to_owned),
        key_alias: f.key_alias.map(str::to_owned),
        error_type,
        error_phase,
        ttft_ms: ttft,
        duration_ms: Some(duration),
        cache_markers_added: f.markers_added,
        body_issue: f.body_issue.map(BodyIssue::as_str),
        response_code_details: f.code_details.clone(),
        upstream_dialect: f.dialect.map(Dialect::as_str),
        upstream_target: f.target.map(str::to_owned),
        upstream_attempts: f.upstream_attempts.map(parse_attempts),
        dropped_betas: f.dropped_betas.to_vec(),
        dropped_fields: f.dropped_fields.to_vec(),
        secrets: f.secrets.to_vec(),
        tool_calls: crate::tools::summary(f.tool_calls),
        tool_results: f.tool_results.to_vec(),
        agent_id: f.agent_id.map(str::to_owned),
        parent_agent_id: f.parent_agent_id.map(str::to_owned),
        cache_miss_reason: miss.map(|m| m.reason.clone()),
        cache_missed_input_tokens: miss.and_then(|m| m.missed_tokens),
        cache_verdict: verdict,
        cache_expected_tokens: previous.map(|p| p.cached),
        idle_ms: previous.map(|p| start_ms.saturating_sub(p.at_ms)),
    };
    (up, record)
}

/// `;anthropic=529;bedrock=200` as the upstream instance writes it (an attempt reset before
/// its response has no status); bounded.
fn parse_attempts(s: &str) -> Vec<Attempt> {
    s.split(';')
        .filter(|a| !a.is_empty())
        .map(|a| {
            let (target, status) = a.split_once('=').unwrap_or((a, ""));
            Attempt {
                target: target.chars().take(128).collect(),
                status: status.parse().ok(),
            }
        })
        .take(16)
        .collect()
}

#[cfg(test)]
mod tests;
