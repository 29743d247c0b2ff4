//! Sessions (src/sessions.rs) in the request's life: on the way in, the agent's previous turn
//! on the model is looked up, the prompt prefix compared with it and, on routes to the Claude
//! API, the previous response id sent for Anthropic's cache diagnostics; at the end, the turn
//! is added to the session's totals (and, across replicas, sent to the rate-limit service's
//! store). `GET /v1/gateway/sessions/{id}` is answered here too.

use super::Http;
use crate::config::Config;
use crate::filter::host;
use crate::filter::profile;
use crate::filter::store::EnvoyStore;
use crate::filter::sync;
use crate::keys::{self, Caller as Consumer};
use crate::plan::{self, Plan};
use crate::routing::Route;
use crate::session;
use crate::sessions::{self, Caller, Outcome, table, wire};
use crate::usage::Tokens;
use prost::Message;
use proxy_wasm::traits::Context;
use std::time::Duration;

/// The session endpoint's path prefix.
const SESSIONS_PATH: &str = "/v1/gateway/sessions/";

impl Http {
    /// Who owns the sessions this request makes: its consumer (a virtual key's `c:`, a verified
    /// token's `j:`), else a digest of the credential it presented, which reads them back. A
    /// request with no credential at all has no sessions: they would be everyone's.
    fn owner(&mut self, config: &Config) -> Option<String> {
        let consumer = self.seen.consumer.as_ref();
        if let Some(c) = consumer.and_then(|c| c.get(&config.consumers)) {
            let kind = match consumer {
                Some(Consumer::Token(_)) => "j",
                _ => "c",
            };
            return Some(format!("{kind}:{}", c.id));
        }
        let key = self.presented().into_iter().next()?;
        Some(format!("k:{}", keys::sha256_hex(&key).get(..32)?))
    }

    /// The session and agent of a Messages request, once it is admitted.
    fn session_caller(&mut self, config: &Config) -> Option<Caller> {
        let id = self.session()?;
        let valid = |v: Option<String>| v.as_deref().and_then(session::valid).map(str::to_owned);
        self.seen.agent = valid(self.cached_header("x-claude-code-agent-id"));
        self.seen.parent_agent = valid(self.cached_header("x-claude-code-parent-agent-id"));
        Some(Caller {
            session: id,
            owner: self.owner(config)?,
            agent: self.seen.agent.clone(),
            parent: self.seen.parent_agent.clone(),
        })
    }

    /// Starts the session turn of an admitted Messages request: its insight for the record,
    /// and the diagnostics insertion on routes that ask the Claude API.
    pub(super) fn begin_turn(
        &mut self,
        config: &Config,
        route: &Route,
        body: &[u8],
        plan: &mut Plan,
    ) {
        if !config.sessions.enabled {
            return;
        }
        let caller_span = profile::span("turn_caller");
        let Some(caller) = self.session_caller(config) else {
            return;
        };
        drop(caller_span);
        let Ok(facts) = &plan.body else {
            return;
        };
        let s = &config.sessions;
        let load_span = profile::span("turn_load");
        let record = table::load(&EnvoyStore, &caller.owner, &caller.session, s.max_sessions);
        drop(load_span);
        // A body built anew (a vendor's wrapper) has no place for the field.
        let ask = route.cache_diagnostics && plan.new_body.is_none();
        let (insight, edit) = sessions::begin(
            record.as_ref().map(|l| &l.session),
            caller.agent.as_deref(),
            body,
            facts,
            &mut plan.cache.added.iter().map(|a| a.ttl),
            s.prefix_check,
            ask,
        );
        if let Some(edit) = edit {
            plan.edits.push(edit);
            plan.edits.sort_by_key(|e| e.at);
        }
        self.seen.turn = Some((caller, insight));
        self.seen.loaded = record;
    }

    /// Adds the finished turn to its session.
    pub(super) fn end_turn(
        &self,
        config: &Config,
        record: &crate::audit::Record,
        tokens: Tokens,
        end_ms: u64,
        loaded: Option<table::Loaded>,
    ) {
        let Some((caller, insight)) = &self.seen.turn else {
            return;
        };
        let outcome = Outcome {
            model: record.price.as_deref().or(record.response_model.as_deref()),
            tokens,
            cost_micro_usd: record.cost_micro_usd,
            now_ms: end_ms,
            miss_reason: record.cache_miss_reason.as_deref(),
            // A failed turn cached nothing new: the next one compares with the last good one.
            turn: (record.status == Some(200))
                .then(|| insight.turn(record.response_id.as_deref(), &tokens, end_ms)),
        };
        let _span = profile::span("turn_store");
        let max = config.sessions.max_sessions;
        if !table::record(&EnvoyStore, caller, &outcome, max, loaded) {
            log::warn!("#{} cannot update session {}", self.id, caller.session);
        }
        if let Some(queue) = self.sessions_queue {
            sync::send(queue, &wire::Turn::new(caller, &outcome));
        }
    }

    /// Answers `GET /v1/gateway/sessions/{id}` (true) if this is one.
    pub(super) fn answer_session(&mut self, config: &Config) -> bool {
        let Some(id) = self.seen.path.strip_prefix(SESSIONS_PATH) else {
            return false;
        };
        if !config.sessions.enabled || self.seen.method != "GET" {
            return false;
        }
        let id = id.split('?').next().unwrap_or_default().to_owned();
        // The caller as the default route knows it (virtual keys, tokens): refused as a
        // Messages request would be.
        let route = &config.routes.default;
        self.seen.route = Some(route.name.clone());
        match self.identify(config, route) {
            Ok(c) => self.seen.consumer = c,
            Err(r) => {
                self.reply(Some(route), &r);
                return true;
            }
        }
        let (Some(id), Some(owner)) = (session::valid(&id), self.owner(config)) else {
            self.reply(Some(route), &plan::session_not_found());
            return true;
        };
        let key = wire::Key {
            owner,
            session: id.to_owned(),
        };
        // Across replicas, the rate-limit service's store answers; this replica's table if not.
        if let (Some(g), Some(_)) = (&config.global_limits, self.sessions_queue) {
            let sent = self.dispatch_grpc_call(
                &g.cluster,
                wire::SERVICE,
                wire::GET,
                Vec::new(),
                Some(&key.encode_to_vec()),
                Duration::from_millis(g.timeout_ms),
            );
            if let Ok(token) = sent {
                self.session_lookup = Some((token, key));
                return true;
            }
        }
        self.answer_from_table(config, &key);
        true
    }

    /// This replica's record of the session, or 404.
    fn answer_from_table(&mut self, config: &Config, key: &wire::Key) {
        let max = config.sessions.max_sessions;
        match table::load(&EnvoyStore, &key.owner, &key.session, max) {
            Some(l) => self.send_session(l.session.to_json("replica").to_string().as_bytes()),
            None => self.reply(Some(&config.routes.default), &plan::session_not_found()),
        }
    }

    fn send_session(&mut self, json: &[u8]) {
        let headers = [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
        ];
        if let Err(e) = host::send_local_response(200, "claude_gateway.session", &headers, json) {
            log::warn!("#{} cannot answer: {e}", self.id);
        }
    }

    /// The session store's answer to a lookup: the session across replicas, or, when the store
    /// has none (a turn it never took) or does not answer, this replica's own numbers.
    pub(super) fn session_found(&mut self, token: u32, status: u32, size: usize) {
        let Some(config) = self.config.clone() else {
            return;
        };
        if self.session_lookup.as_ref().map(|(t, _)| *t) != Some(token) {
            return;
        }
        let Some((_, key)) = self.session_lookup.take() else {
            return;
        };
        let found = (status == 0)
            .then(|| host::grpc_response(size).ok())
            .flatten()
            .and_then(|bytes| wire::Found::decode(bytes.as_slice()).ok());
        match found {
            Some(f) if !f.json.is_empty() => self.send_session(&f.json),
            Some(_) => self.answer_from_table(&config, &key),
            None => {
                log::warn!(
                    "#{} session store did not answer (gRPC status {status})",
                    self.id
                );
                self.answer_from_table(&config, &key);
            }
        }
    }
}
