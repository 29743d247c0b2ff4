//! Sessions (src/sessions.rs) in the request's life: on the way in, the agent's previous turn
//! is looked up, the prompt prefix compared with it and, on routes to the Claude API, the
//! previous response id sent for Anthropic's cache diagnostics; at the end, the turn is added
//! to the session's totals. `GET /v1/gateway/sessions/{id}` is answered here too.

use super::Http;
use crate::cache::layout::Ttl;
use crate::config::Config;
use crate::filter::host;
use crate::filter::store::EnvoyStore;
use crate::filter::sync;
use crate::keys::{self, access};
use crate::plan::{self, Plan};
use crate::routing::Route;
use crate::session;
use crate::sessions::{Caller, Insight, Outcome, Turn, prefix, table, wire};
use crate::splice::Edit;
use crate::usage::Tokens;
use proxy_wasm::traits::Context;
use std::time::Duration;

/// The session endpoint's path prefix.
const SESSIONS_PATH: &str = "/v1/gateway/sessions/";

impl Http {
    /// Who owns the sessions this request makes: its consumer, else a digest of the
    /// credential it presented (the same credential reads them back).
    fn owner(&mut self, config: &Config) -> String {
        if let Some(c) = self
            .seen
            .consumer
            .as_ref()
            .and_then(|c| c.get(&config.consumers))
        {
            return format!("c:{}", c.id);
        }
        let x_api_key = self.cached_header("x-api-key");
        let authorization = self.cached_header("authorization");
        let presented = keys::presented(x_api_key.as_deref(), authorization.as_deref());
        match presented.first() {
            Some(k) => format!("k:{}", keys::sha256_hex(k).get(..32).unwrap_or_default()),
            None => "anonymous".to_owned(),
        }
    }

    /// The session and agent of a Messages request, once it is admitted.
    fn session_caller(&mut self, config: &Config) -> Option<Caller> {
        let id = session::session_id(
            self.seen.session_header.as_deref(),
            self.seen.user_id.as_deref(),
        )?;
        let agent = self.cached_header("x-claude-code-agent-id");
        let parent = self.cached_header("x-claude-code-parent-agent-id");
        self.seen.agent = agent.as_deref().and_then(session::valid).map(str::to_owned);
        self.seen.parent_agent = parent
            .as_deref()
            .and_then(session::valid)
            .map(str::to_owned);
        Some(Caller {
            session: id,
            owner: self.owner(config),
            agent: self.seen.agent.clone(),
            parent: self.seen.parent_agent.clone(),
        })
    }

    /// Looks up the agent's previous turn, compares this one's prefix with it, and adds
    /// `diagnostics.previous_message_id` on routes that ask the Claude API for a diagnosis.
    pub(super) fn begin_turn(
        &mut self,
        config: &Config,
        route: &Route,
        body: &[u8],
        plan: &mut Plan,
    ) {
        let Ok(facts) = &plan.body else {
            return;
        };
        if !config.sessions.enabled {
            return;
        }
        let Some(caller) = self.session_caller(config) else {
            return;
        };
        let max = config.sessions.max_sessions;
        let record = table::load(&EnvoyStore, &caller.owner, &caller.session, max);
        let previous = record
            .as_ref()
            .and_then(|r| r.agent(caller.agent.as_deref()))
            .and_then(|a| a.turn(&facts.model))
            .cloned();
        let (print, changed) = match config.sessions.prefix_check {
            true => {
                let (print, changed) =
                    prefix::compare(body, facts, previous.as_ref().map(|t| &t.print));
                (Some(print), changed)
            }
            false => (None, None),
        };
        let mut ttls = (facts.layout.markers.iter().map(|(_, t)| *t))
            .chain(plan.cache.added.iter().map(|a| a.ttl));
        let ttl_s = if ttls.any(|t| t == Ttl::OneHour) {
            3600
        } else {
            300
        };
        // The client's own `diagnostics` is left alone; a body built anew has no place for it.
        let ask = route.cache_diagnostics
            && plan.new_body.is_none()
            && facts.member(body, "diagnostics").is_none();
        if ask {
            let id = previous.as_ref().and_then(|t| t.message_id.as_deref());
            plan.edits
                .push(diagnostics_edit(facts.layout.root_close, id));
            plan.edits.sort_by_key(|e| e.at);
        }
        self.seen.turn = Some((
            caller,
            Insight {
                previous,
                changed,
                print,
                ttl_s,
            },
        ));
    }

    /// Adds the finished turn to its session.
    pub(super) fn end_turn(
        &self,
        config: &Config,
        record: &crate::audit::Record,
        tokens: Tokens,
        end_ms: u64,
    ) {
        let Some((caller, insight)) = &self.seen.turn else {
            return;
        };
        let turn = insight.print.map(|print| Turn {
            model: self.seen.model.clone().unwrap_or_default(),
            at_ms: end_ms,
            message_id: record
                .response_id
                .clone()
                .filter(|id| session::valid(id).is_some()),
            print,
            cached: tokens
                .cache_read
                .saturating_add(tokens.cache_write_5m)
                .saturating_add(tokens.cache_write_1h),
            ttl_s: insight.ttl_s,
        });
        let outcome = Outcome {
            model: record.price.as_deref().or(record.response_model.as_deref()),
            tokens,
            cost_micro_usd: record.cost_micro_usd,
            now_ms: end_ms,
            miss_reason: record.cache_miss_reason.as_deref(),
            // A failed turn cached nothing new: the next one compares with the last good one.
            turn: turn.filter(|_| record.status == Some(200)),
        };
        if !table::record(&EnvoyStore, caller, &outcome, config.sessions.max_sessions) {
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
        let x_api_key = self.cached_header("x-api-key");
        let authorization = self.cached_header("authorization");
        let presented = keys::presented(x_api_key.as_deref(), authorization.as_deref());
        let route = &config.routes.default;
        let claims = if route.jwt {
            self.verified_claims(config)
        } else {
            None
        };
        match access::identify(config, route, &presented, claims.as_ref()) {
            Ok(c) => self.seen.consumer = c,
            Err(r) => {
                self.reply(Some(route), &r);
                return true;
            }
        }
        self.seen.route = Some(route.name.clone());
        let Some(id) = session::valid(&id).map(str::to_owned) else {
            self.reply(Some(route), &plan::session_not_found());
            return true;
        };
        // Across replicas, the rate-limit service's store answers; this replica's table if not.
        if let (Some(g), Some(_)) = (&config.global_limits, self.sessions_queue) {
            let key = wire::Key {
                owner: self.owner(config),
                session: id.clone(),
            };
            let sent = self.dispatch_grpc_call(
                &g.cluster,
                wire::SERVICE,
                wire::GET,
                Vec::new(),
                Some(&wire::encode(&key)),
                Duration::from_millis(g.timeout_ms),
            );
            if let Ok(token) = sent {
                self.session_lookup = Some((token, id));
                return true;
            }
        }
        self.answer_from_table(config, &id);
        true
    }

    /// This replica's record of the session, or 404.
    fn answer_from_table(&mut self, config: &Config, id: &str) {
        let owner = self.owner(config);
        match table::load(&EnvoyStore, &owner, id, config.sessions.max_sessions) {
            Some(s) => self.send_session(s.to_json("replica").to_string().as_bytes()),
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

    /// The session store's answer to a lookup: the session across replicas, none (404), or
    /// no answer (this replica's own numbers).
    pub(super) fn session_found(&mut self, token: u32, status: u32, size: usize) {
        let (Some(config), Some((sent, id))) = (self.config.clone(), self.session_lookup.take())
        else {
            return;
        };
        if sent != token {
            return;
        }
        let found = (status == 0)
            .then(|| host::grpc_response(size).ok())
            .flatten()
            .and_then(|bytes| <wire::Found as prost::Message>::decode(bytes.as_slice()).ok());
        match found {
            Some(f) if f.json.is_empty() => {
                self.reply(Some(&config.routes.default), &plan::session_not_found());
            }
            Some(f) => self.send_session(&f.json),
            None => {
                log::warn!(
                    "#{} session store did not answer (gRPC status {status})",
                    self.id
                );
                self.answer_from_table(&config, &id);
            }
        }
    }
}

/// `,"diagnostics":{"previous_message_id":…}` before the body's closing brace: the previous
/// response id of the same agent, or `null` on its first turn (which opts in).
fn diagnostics_edit(root_close: usize, previous: Option<&str>) -> Edit {
    let mut bytes = br#","diagnostics":{"previous_message_id":"#.to_vec();
    match previous {
        Some(id) => crate::json::write_string(&mut bytes, id),
        None => bytes.extend_from_slice(b"null"),
    }
    bytes.push(b'}');
    Edit::insert(root_close, bytes)
}
