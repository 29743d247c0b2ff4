//! The filter as an upstream HTTP filter of a cluster: Envoy runs it once per upstream attempt,
//! retries included. It does what differs per attempt:
//! - key pools: the downstream instance picks the first attempt's key; when a key answers 429
//!   or 529 this instance cools it down (shared by all workers), and on the retry it sets
//!   another key, so the client's request succeeds on key B after key A was rate limited;
//! - failover routes (an aggregate cluster whose endpoints name the route's targets in their
//!   metadata): each attempt is put into its target's dialect (body, path, headers, credential)
//!   and marked for Envoy's per-target credential filters.
//!
//! It reports the key and the target that served the final response to the downstream
//! instance, and appends each attempt to a filter-state list for the audit record.

use super::effects::{self, ResponseHeaders};
use super::host;
use super::stats::Stats;
use super::store::EnvoyStore;
use crate::config::Config;
use crate::keys::access;
use crate::plan::{self, HeaderOp};
use crate::request::Endpoint;
use crate::routing::Route;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// The filter-state entry the downstream instance leaves for this one.
pub const HANDOFF: &str = "claude_gateway_key";
/// The response header telling the downstream instance which key served the response.
pub const KEY_HEADER: &str = "x-claude-gateway-key";
/// The request header naming an attempt's failover target (Envoy's composite filter picks the
/// target's credential filter by it; removed before the vendor), and the response header
/// telling the downstream instance which target answered.
pub const TARGET_HEADER: &str = "x-claude-gateway-target";
/// Filter state: a failover route's attempts, `;target` when one starts and `=status` when its
/// response head arrives (an attempt reset before that has none).
pub const ATTEMPTS: &str = "claude_gateway_attempts";
/// The statuses Envoy retries on another key or target (`x-envoy-retriable-status-codes`).
pub const RETRIABLE_STATUSES: &str = "429,529";
/// Where a failover target is named in its endpoints' metadata.
const METADATA_FILTER: &str = "claude_gateway";
const METADATA_KEY: &str = "target";
/// What an earlier attempt's SigV4 signature left in the request (Envoy retries reuse the
/// request's headers): never sent to the next target.
const SIGNATURE_HEADERS: [&str; 3] = ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// What the downstream instance decided.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Handoff {
    pub route: String,
    /// The first attempt's pool key: pool name and key index.
    pub pool: Option<(String, usize)>,
    pub session: Option<String>,
    /// The request's path and `anthropic-beta` as the downstream instance forwarded them:
    /// each attempt starts from them.
    pub path: Option<String>,
    pub betas: Option<String>,
    pub count_tokens: bool,
}

impl Handoff {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A failover attempt waiting for its body.
struct Attempt {
    target: String,
    route: String,
    count_tokens: bool,
    path: String,
}

pub struct Upstream {
    id: u32,
    config: Option<Rc<Config>>,
    stats: Rc<Stats>,
    /// Pool index and key index of this attempt's key.
    chosen: Option<(usize, usize)>,
    attempt: Option<Attempt>,
    /// A retry: its key is not the one the downstream instance chose.
    retry: bool,
}

impl Upstream {
    pub fn new(id: u32, config: Option<Rc<Config>>, stats: Rc<Stats>) -> Upstream {
        Upstream {
            id,
            config,
            stats,
            chosen: None,
            attempt: None,
            retry: false,
        }
    }

    /// The key of `pool` for this attempt: the downstream instance's choice on the first
    /// attempt, the next usable one after that. `Err` when every key is cooling down.
    fn key(&mut self, config: &Config, pool: &str, h: &Handoff, first: bool) -> Result<(), ()> {
        let Some((p, pool)) = config
            .pools
            .iter()
            .enumerate()
            .find(|(_, x)| x.name == pool)
        else {
            return Ok(());
        };
        let k = match &h.pool {
            Some((name, k)) if first && *name == pool.name => *k,
            _ => match access::pick_key(pool, h.session.as_deref(), &EnvoyStore, effects::now_ms())
            {
                Ok(k) => k,
                Err(reply) => {
                    effects::reply(self.id, &self.stats, &reply);
                    return Err(());
                }
            },
        };
        self.chosen = Some((p, k));
        Ok(())
    }

    /// Starts a failover attempt on the target Envoy picked: the request as the downstream
    /// instance forwarded it, this target's key and mark. The body follows.
    fn start_target(&mut self, config: &Config, route: &Route, h: &Handoff, first: bool) -> bool {
        let name = host::property(&["xds", "upstream_host_metadata"])
            .ok()
            .flatten()
            .and_then(|m| crate::proto::metadata_string(&m, METADATA_FILTER, METADATA_KEY));
        let target = name
            .as_deref()
            .and_then(|n| route.target(n))
            .unwrap_or(route);
        let mut ops: Vec<HeaderOp> = SIGNATURE_HEADERS
            .iter()
            .map(|n| HeaderOp::Remove(n))
            .collect();
        if let Some(path) = &h.path {
            ops.push(HeaderOp::Set(":path", path.clone()));
        }
        ops.push(match &h.betas {
            Some(b) => HeaderOp::Set("anthropic-beta", b.clone()),
            None => HeaderOp::Remove("anthropic-beta"),
        });
        ops.push(HeaderOp::Set(TARGET_HEADER, target.name.clone()));
        self.chosen = None;
        if let Some(pool) = &target.key_pool {
            if self.key(config, pool, h, first).is_err() {
                return false;
            }
            let secret = self
                .chosen
                .and_then(|(p, k)| config.pools.get(p)?.keys.get(k))
                .map_or("", |key| key.secret.as_str());
            ops.extend(plan::credential(target.auth, secret));
        }
        effects::apply_headers(self.id, &ops);
        self.note_attempt(&format!(";{}", target.name));
        self.attempt = Some(Attempt {
            target: target.name.clone(),
            route: route.name.clone(),
            count_tokens: h.count_tokens,
            path: h.path.clone().unwrap_or_default(),
        });
        true
    }

    /// Appends to the request's list of attempts (bounded: a route has few targets, and
    /// Envoy bounds the retries).
    fn note_attempt(&self, part: &str) {
        let mut seen = host::property(&[ATTEMPTS])
            .ok()
            .flatten()
            .unwrap_or_default();
        if seen.len() < 1024 {
            seen.extend_from_slice(part.as_bytes());
            if let Err(e) = host::set_property(&[ATTEMPTS], &seen) {
                log::debug!("#{} {e}", self.id);
            }
        }
    }

    /// The attempt's body is complete: puts it into the target's dialect.
    fn finish_target(&mut self, config: &Config, size: usize) {
        let Some(a) = &self.attempt else {
            return;
        };
        let Some(target) = config
            .routes
            .by_name(&a.route)
            .and_then(|r| r.target(&a.target))
        else {
            return;
        };
        let headers: hashbrown::HashMap<String, String> = host::request_headers()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let body = if size > 0 {
            host::request_body(0, size).unwrap_or_default()
        } else {
            Vec::new()
        };
        let endpoint = if a.count_tokens {
            Endpoint::CountTokens
        } else {
            Endpoint::Messages
        };
        let mut header = |name: &str| headers.get(name).cloned();
        let planned = plan::attempt(config, target, endpoint, &a.path, &body, &mut header);
        let Some((out, new_body, ops)) = planned else {
            // A body the scanner cannot read: the target gets it as it is (and answers).
            effects::apply_headers(self.id, &plan::route_headers(target, &a.path, &mut header));
            return;
        };
        match effects::write_body(self.id, &body, &out.edits, new_body.as_deref()) {
            Ok(len) if len != body.len() || new_body.is_some() => {
                effects::apply_headers(
                    self.id,
                    &[HeaderOp::Set("content-length", len.to_string())],
                );
            }
            Ok(_) => {}
            Err(_) => {
                effects::reply(self.id, &self.stats, &plan::rewrite_failed());
                return;
            }
        }
        effects::apply_headers(self.id, &ops);
    }
}

impl Context for Upstream {}

impl HttpContext for Upstream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let _span = super::profile::span("upstream_request_headers");
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Some(h) = host::property(&[HANDOFF])
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Handoff>(&v).ok())
        else {
            return Action::Continue;
        };
        let attempt = host::request_header("x-envoy-attempt-count")
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        let _ = host::remove_request_header("x-envoy-attempt-count");
        let first = attempt <= 1;
        self.retry = !first;
        if let Some(route) = config
            .routes
            .by_name(&h.route)
            .filter(|r| !r.failover.is_empty())
        {
            if !self.start_target(&config, route, &h, first) {
                return Action::Pause;
            }
            if end_of_stream {
                self.finish_target(&config, 0);
                return Action::Continue;
            }
            // Needs the upstream filter's allow_on_headers_stop_iteration, as downstream.
            return Action::Pause;
        }
        let Some((pool, _)) = &h.pool else {
            return Action::Continue;
        };
        let pool = pool.clone();
        if self.key(&config, &pool, &h, first).is_err() {
            return Action::Pause;
        }
        if !first {
            // A retry: the previous attempt's key has been cooled down; this one is another.
            let route = config.routes.by_name(&h.route);
            let (Some(route), Some((p, k))) = (route, self.chosen) else {
                return Action::Continue;
            };
            let secret = config
                .pools
                .get(p)
                .and_then(|pool| pool.keys.get(k))
                .map_or("", |key| key.secret.as_str());
            effects::apply_headers(self.id, &plan::credential(route.auth, secret));
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let _span = super::profile::span("upstream_request_body");
        if self.attempt.is_none() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(config) = self.config.clone() {
            self.finish_target(&config, body_size);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let _span = super::profile::span("upstream_response_headers");
        // A request without per-attempt work (no pool key, no failover) costs no host call here.
        if self.attempt.is_none() && self.chosen.is_none() {
            return Action::Continue;
        }
        if self.attempt.is_none() && !self.retry && !retried(host::response_header(":status")) {
            // The first attempt's key answered for good (no retry follows): the downstream
            // instance learns from the same response, as without an upstream instance.
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = ResponseHeaders::load(self.id);
        if let Some(a) = &self.attempt {
            let status = headers.status().map_or_else(String::new, |s| s.to_string());
            self.note_attempt(&format!("={status}"));
            if let Err(e) = host::set_response_header(TARGET_HEADER, &a.target) {
                log::warn!("#{} {e}", self.id);
            }
        }
        let Some((p, k)) = self.chosen else {
            return Action::Continue;
        };
        let Some(pool) = config.pools.get(p) else {
            return Action::Continue;
        };
        effects::learn_key(&self.stats, pool, k, &headers);
        if let Some(key) = pool.keys.get(k) {
            if let Err(e) = host::set_response_header(KEY_HEADER, &key.alias) {
                log::warn!("#{} {e}", self.id);
            }
        }
        Action::Continue
    }
}

/// Whether Envoy may retry after this status (or it is unknown): the key that answered must then
/// be learnt here, the downstream instance sees only the last answer.
fn retried(status: host::HostResult<Option<String>>) -> bool {
    match status {
        Ok(Some(s)) => RETRIABLE_STATUSES.split(',').any(|r| r == s),
        _ => true,
    }
}
