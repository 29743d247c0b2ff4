//! The end of a request: what answered it, its metric updates and audit record (computed by
//! `accounting`), and its charge against the consumer's limits and budgets.

use super::Http;
use crate::accounting::{self, Finished};
use crate::audit;
use crate::config::Config;
use crate::filter::effects::{self, ResponseHeaders};
use crate::filter::host;
use crate::filter::profile;
use crate::filter::store::EnvoyStore;
use crate::filter::upstream::{ATTEMPTS, KEY_HEADER, TARGET_HEADER};
use crate::global_limits;
use crate::keys::access;
use crate::metrics;
use crate::request::Endpoint;
use crate::routing::Route;

impl Http {
    /// The pool key that served the response: the upstream instance names it in a header
    /// (removed here) after learning from the response; without an upstream instance, this
    /// instance learns from the final response itself.
    pub(super) fn note_key(&mut self, config: &Config, headers: &ResponseHeaders) {
        if let Some(alias) = headers.get(KEY_HEADER) {
            let _ = host::remove_response_header(KEY_HEADER);
            self.seen.key_alias = config
                .pools
                .iter()
                .flat_map(|p| &p.keys)
                .find(|key| key.alias == alias)
                .map(|key| key.alias.clone());
            return;
        }
        let Some((pool, k)) = self
            .seen
            .key
            .and_then(|(p, k)| Some((config.pools.get(p)?, k)))
        else {
            return;
        };
        // A 429 Envoy answered itself (its global rate-limit filter, after this one) says
        // nothing about the key.
        if effects::from_upstream() {
            effects::learn_key(&self.stats, pool, k, headers);
        }
        self.seen.key_alias = pool.keys.get(k).map(|key| key.alias.clone());
    }

    /// The route's target that answered: the upstream instance of a failover route names it
    /// in a header (removed here); otherwise the route itself.
    pub(super) fn answering<'c>(
        &mut self,
        config: &'c Config,
        headers: &ResponseHeaders,
    ) -> Option<&'c Route> {
        let route = config.routes.by_name(self.seen.route.as_deref()?)?;
        if let Some(name) = headers.get(TARGET_HEADER) {
            let _ = host::remove_response_header(TARGET_HEADER);
            if let Some(t) = route.target(name) {
                self.seen.target = Some(t.name.clone());
                return Some(t);
            }
        }
        Some(route)
    }

    pub(super) fn property_string(&self, path: &[&str]) -> Option<String> {
        let bytes = host::property(path).ok().flatten()?;
        let s = String::from_utf8_lossy(&bytes);
        Some(s.chars().take(256).collect())
    }

    /// An integer attribute (Envoy encodes them as 8 little-endian bytes).
    pub(super) fn property_int(&self, path: &[&str]) -> Option<u64> {
        let bytes = host::property(path).ok().flatten()?;
        Some(u64::from_le_bytes(*bytes.first_chunk::<8>()?))
    }

    /// Accounts for the finished request (Envoy's `on_log`, which also runs for aborted streams).
    pub(super) fn record(&mut self) {
        let Some(config) = self.config.clone() else {
            return;
        };
        if self.seen.method.is_empty() {
            // Envoy ended the request before this filter saw its headers (the buffer filter in
            // front refused the body, or the client left mid-upload): name it in the record.
            self.load_headers();
            self.seen.method = self.cached_header(":method").unwrap_or_default();
            self.seen.path = self.cached_header(":path").unwrap_or_default();
            self.seen.endpoint = Endpoint::classify(&self.seen.method, &self.seen.path);
            if self.seen.endpoint.is_some() {
                self.seen.session_header = self.cached_header("x-claude-code-session-id");
            }
        }
        let status = self.status.or_else(|| {
            self.property_int(&["response", "code"])
                .and_then(|c| u32::try_from(c).ok())
        });
        // What only the audit record shows is asked of Envoy only when there is one (each
        // property is a host call); the request id is the header Envoy set before this filter.
        let request_id = match config.audit {
            true if self.seen.all_headers => self.cached_header("x-request-id"),
            true => self.property_string(&["request", "id"]),
            false => None,
        };
        let audited = |path: &[&str]| config.audit.then(|| self.property_string(path)).flatten();
        let upstream_host = audited(&["upstream", "address"]);
        let code_details = audited(&["response", "code_details"]);
        let attempts = config
            .audit
            .then(|| self.property_int(&["upstream", "request_attempt_count"]))
            .flatten();
        let attempts_seen = self
            .seen
            .target
            .is_some()
            .then(|| self.property_string(&[ATTEMPTS]))
            .flatten();
        let route = s_route(&config, self.seen.route.as_deref());
        let target = route.and_then(|r| r.target(self.seen.target.as_deref().unwrap_or(&r.name)));
        // The cluster the filter routed to (its routing header picks it): no host call. A
        // reply the gateway sent itself went to none.
        let upstream_cluster = target
            .filter(|_| config.audit && self.seen.local_error.is_none())
            .map(|t| t.cluster.clone());
        let session = self.session();
        let loaded = self.seen.loaded.take();
        let s = &self.seen;
        let read = self.response.was_read();
        let finished = Finished {
            endpoint: s.endpoint,
            method: &s.method,
            path: &s.path,
            request_model: s.model.as_deref(),
            stream: s.stream,
            session: session.as_deref(),
            body_issue: s.body_issue,
            local_error: s.local_error,
            consumer: s.consumer.as_ref().and_then(|c| c.get(&config.consumers)),
            key_alias: s.key_alias.as_deref(),
            markers_added: s.markers_added,
            route: s.route.as_deref(),
            extraction: (s.endpoint == Some(Endpoint::Messages) && read)
                .then_some(&self.response.extraction),
            response_ended: self.response.ended,
            status: status.filter(|&c| c != 0),
            start_ns: self
                .start_ns
                .or_else(|| self.property_int(&["request", "time"]))
                .unwrap_or(0),
            first_content_ns: self.response.first_content_ns,
            end_ns: host::now_nanos().unwrap_or(0),
            request_id,
            upstream_cluster,
            upstream_host,
            attempts,
            code_details,
            dialect: target.map(|t| t.dialect),
            target: s.target.as_deref(),
            upstream_attempts: attempts_seen.as_deref(),
            prices: target.map_or(&[], |t| t.prices.as_slice()),
            dropped_betas: &s.dropped_betas,
            dropped_fields: &s.dropped_fields,
            secrets: &s.secrets,
            tool_calls: self.response.tools.calls(),
            tool_results: &s.tool_results,
            agent_id: s.agent.as_deref(),
            parent_agent_id: s.parent_agent.as_deref(),
            insight: s.turn.as_ref().map(|(_, i)| i),
        };
        if let (Some(r), Some(t)) = (route, s.target.as_deref()) {
            if r.name != t {
                self.stats.add(&metrics::failovers(&r.name, t), 1);
            }
        }
        let end_ms = finished.end_ns / 1_000_000;
        let account_span = profile::span("account");
        let (updates, record) = accounting::account(&config, &finished);
        drop(account_span);
        let tokens = finished
            .extraction
            .filter(|_| config.usage.enabled)
            .map(|x| x.tokens())
            .unwrap_or_default();
        let turn_span = profile::span("end_turn");
        self.end_turn(&config, &record, tokens, end_ms, loaded);
        drop(turn_span);
        if let Some(c) = finished.consumer {
            let now = effects::now_ms();
            let input = record
                .input_tokens
                .saturating_add(record.cache_creation_input_tokens);
            let output = record.output_tokens;
            access::settle(
                &config,
                c,
                input,
                output,
                record.cost_micro_usd,
                &EnvoyStore,
                now,
            );
            if config.global_limits.is_some() {
                // Charged by the global rate-limit filter when the stream is destroyed, which
                // Envoy does after the access log (so after this), aborted streams included.
                self.set_state(&global_limits::charges(
                    input,
                    output,
                    record.cost_micro_usd,
                ));
            }
        }
        let _span = profile::span("metrics_and_record");
        for (metric, n) in &updates.counters {
            self.stats.add(metric, *n);
        }
        for (metric, v) in &updates.histograms {
            self.stats.record(metric, *v);
        }
        if config.audit {
            let json_span = profile::span("record_json");
            let json = record.to_json();
            drop(json_span);
            if let Err(e) = host::set_property(&[audit::PROPERTY], &json) {
                log::warn!("#{} cannot write the audit record: {e}", self.id);
            }
        }
    }
}

/// A route by the name the request was routed with.
fn s_route<'c>(config: &'c Config, name: Option<&str>) -> Option<&'c Route> {
    config.routes.by_name(name?)
}
