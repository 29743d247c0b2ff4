//! The filter as an upstream HTTP filter of a cluster: Envoy runs it once per upstream attempt,
//! retries included. The downstream instance picks the first attempt's key; when a key answers
//! 429 or 529 this instance cools it down (shared by all workers), and on the retry it sets
//! another key, so the client's request succeeds on key B after key A was rate limited. It
//! also reports the key that served the final response to the downstream instance.

use super::effects::{self, ResponseHeaders};
use super::host;
use super::stats::Stats;
use super::store::EnvoyStore;
use crate::config::Config;
use crate::keys::access;
use crate::plan;
use crate::routing::Auth;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// The filter-state entry the downstream instance leaves for this one.
pub const HANDOFF: &str = "claude_gateway_key";
/// The response header telling the downstream instance which key served the response.
pub const KEY_HEADER: &str = "x-claude-gateway-key";

/// What the downstream instance decided: pool, first key, credential style, session.
pub fn handoff(pool: &str, key: usize, auth: Auth, session: Option<&str>) -> String {
    let auth = if auth == Auth::Bearer {
        "bearer"
    } else {
        "x-api-key"
    };
    format!("{pool}\t{key}\t{auth}\t{}", session.unwrap_or_default())
}

struct Handoff {
    pool: String,
    key: usize,
    auth: Auth,
    session: Option<String>,
}

fn parse(value: &[u8]) -> Option<Handoff> {
    let s = std::str::from_utf8(value).ok()?;
    let mut parts = s.split('\t');
    let pool = parts.next()?.to_owned();
    let key = parts.next()?.parse().ok()?;
    let auth = if parts.next()? == "bearer" {
        Auth::Bearer
    } else {
        Auth::XApiKey
    };
    let session = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    Some(Handoff {
        pool,
        key,
        auth,
        session,
    })
}

pub struct Upstream {
    id: u32,
    config: Option<Rc<Config>>,
    stats: Rc<Stats>,
    /// Pool index and key index of this attempt's key.
    chosen: Option<(usize, usize)>,
}

impl Upstream {
    pub fn new(id: u32, config: Option<Rc<Config>>, stats: Rc<Stats>) -> Upstream {
        Upstream {
            id,
            config,
            stats,
            chosen: None,
        }
    }
}

impl Context for Upstream {}

impl HttpContext for Upstream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Some(h) = host::property(&[HANDOFF])
            .ok()
            .flatten()
            .and_then(|v| parse(&v))
        else {
            return Action::Continue;
        };
        let Some((p, pool)) = config
            .pools
            .iter()
            .enumerate()
            .find(|(_, x)| x.name == h.pool)
        else {
            return Action::Continue;
        };
        let attempt = host::request_header("x-envoy-attempt-count")
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        let _ = host::remove_request_header("x-envoy-attempt-count");
        if attempt <= 1 {
            self.chosen = Some((p, h.key));
            return Action::Continue;
        }
        // A retry: the previous attempt's key has been cooled down; take the next usable one.
        match access::pick_key(pool, h.session.as_deref(), &EnvoyStore, effects::now_ms()) {
            Ok(k) => {
                self.chosen = Some((p, k));
                let secret = pool.keys.get(k).map_or("", |key| key.secret.as_str());
                effects::apply_headers(self.id, &plan::credential(h.auth, secret));
            }
            Err(reply) => {
                effects::reply(self.id, &self.stats, &reply);
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let (Some(config), Some((p, k))) = (self.config.clone(), self.chosen) else {
            return Action::Continue;
        };
        let Some(pool) = config.pools.get(p) else {
            return Action::Continue;
        };
        effects::learn_key(&self.stats, pool, k, &ResponseHeaders::load(self.id));
        if let Some(key) = pool.keys.get(k) {
            if let Err(e) = host::set_response_header(KEY_HEADER, &key.alias) {
                log::warn!("#{} {e}", self.id);
            }
        }
        Action::Continue
    }
}
