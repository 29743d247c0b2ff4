//! Who may send the request and with which upstream key (virtual keys, limits, budgets), and
//! what the upstream instance needs per attempt.

use super::Http;
use crate::config::Config;
use crate::filter::effects;
use crate::filter::host;
use crate::filter::store::EnvoyStore;
use crate::filter::upstream::{HANDOFF, Handoff, RETRIABLE_STATUSES};
use crate::global_limits;
use crate::keys;
use crate::keys::access::{self, Asks};
use crate::plan::{self, HeaderOp, Reply};
use crate::request::Endpoint;
use crate::routing::Route;
use crate::session;

/// Descriptor inputs for Envoy's global rate-limit filter, set after authentication.
const CONSUMER_HEADER: &str = "x-claude-gateway-consumer";
const COST_CENTER_HEADER: &str = "x-claude-gateway-cost-center";
/// The dynamic-metadata namespace of Envoy's JWT filter.
const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

impl Http {
    /// Virtual keys: authenticates the client, checks its limits and budgets, and swaps its
    /// credential for a pool key. `Err` is the refusal to send.
    pub(super) fn admit(&mut self, config: &Config, route: &Route) -> Result<Vec<HeaderOp>, Reply> {
        let session = self.session();
        let now = effects::now_ms();
        let consumer = self.identify(config, route)?;
        let mut ops = Vec::new();
        let Some(c) = consumer.as_ref().and_then(|c| c.get(&config.consumers)) else {
            // Rate-limit descriptors come from the gateway only, never from a client.
            ops.push(HeaderOp::Remove(CONSUMER_HEADER));
            ops.push(HeaderOp::Remove(COST_CENTER_HEADER));
            return Ok(ops);
        };
        // Known from here on: refusals below are recorded against the consumer.
        self.seen.consumer = consumer.clone();
        let asks = match self.seen.endpoint {
            Some(_) => Asks::Model(self.seen.model.as_deref()),
            None => Asks::Other,
        };
        let key = access::admit(config, route, c, asks, session.as_deref(), &EnvoyStore, now)?;
        if config.global_limits.is_some() {
            // The global rate-limit filter's descriptors (after this filter) read these.
            self.set_state(&global_limits::admission(c, now));
        }
        // A virtual key is the gateway's, never the upstream's.
        ops.push(HeaderOp::Remove("x-api-key"));
        ops.push(HeaderOp::Remove("authorization"));
        // Descriptors for Envoy's global rate-limit filter (stripped before the upstream).
        ops.push(HeaderOp::Set(CONSUMER_HEADER, c.id.clone()));
        ops.push(match &c.cost_center {
            Some(cc) => HeaderOp::Set(COST_CENTER_HEADER, cc.clone()),
            None => HeaderOp::Remove(COST_CENTER_HEADER),
        });
        if let Some((p, k)) = key {
            let secret = p.keys.get(k).map_or("", |key| key.secret.as_str());
            ops.extend(plan::credential(route.auth, secret));
            self.seen.key = config
                .pools
                .iter()
                .position(|x| x.name == p.name)
                .map(|i| (i, k));
        }
        Ok(ops)
    }

    /// The caller as `route` knows it: a verified token's consumer, a virtual key's, or none
    /// (the route takes the client's own credential). `Err` is the refusal.
    pub(super) fn identify(
        &mut self,
        config: &Config,
        route: &Route,
    ) -> Result<Option<keys::Caller>, Reply> {
        let presented = self.presented();
        let presented: Vec<&str> = presented.iter().map(String::as_str).collect();
        let claims = if route.jwt {
            self.verified_claims(config)
        } else {
            None
        };
        access::identify(config, route, &presented, claims.as_ref())
    }

    /// The request's session (the header, else `metadata.user_id`), read once: the body's
    /// `user_id` is known by the time anything asks.
    pub(super) fn session(&mut self) -> Option<String> {
        if let Some(s) = &self.seen.session {
            return s.clone();
        }
        let s = session::session_id(
            self.seen.session_header.as_deref(),
            self.seen.user_id.as_deref(),
        );
        self.seen.session = Some(s.clone());
        s
    }

    /// The credentials the client presented (`x-api-key`, a bearer token).
    pub(super) fn presented(&mut self) -> Vec<String> {
        let x_api_key = self.cached_header("x-api-key");
        let authorization = self.cached_header("authorization");
        keys::presented(x_api_key.as_deref(), authorization.as_deref())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// The payload of the token Envoy's `jwt_authn` verified (`payload_in_metadata`), from the
    /// request's dynamic metadata: never from a header, which a client could write.
    fn verified_claims(&self, config: &Config) -> Option<serde_json::Value> {
        let key = &config.jwt.as_ref()?.metadata_key;
        let bytes = host::property(&["metadata", "filter_metadata", JWT_AUTHN])
            .ok()
            .flatten()?;
        keys::jwt::claims_from_metadata(&bytes, key)
    }

    /// Writes filter state (`wasm.<name>` for Envoy's formatters and matchers).
    pub(super) fn set_state(&self, entries: &[(&str, String)]) {
        for (name, value) in entries {
            if let Err(e) = host::set_property(&[name], value.as_bytes()) {
                log::warn!("#{} {e}", self.id);
            }
        }
    }

    /// Leaves the upstream instance what it needs when it has work per attempt (another key
    /// after a 429, a failover target's dialect), and lets Envoy retry those attempts.
    pub(super) fn hand_off(&mut self, config: &Config, route: &Route) -> Vec<HeaderOp> {
        let pool = self
            .seen
            .key
            .and_then(|(p, k)| Some((config.pools.get(p)?, k)));
        if pool.is_none() && route.failover.is_empty() {
            return Vec::new();
        }
        let session = self.session();
        let h = Handoff {
            route: route.name.clone(),
            pool: pool.map(|(p, k)| (p.name.clone(), k)),
            session,
            path: self.seen.headers.get(":path").cloned().flatten(),
            betas: self.seen.headers.get("anthropic-beta").cloned().flatten(),
            count_tokens: self.seen.endpoint == Some(Endpoint::CountTokens),
        };
        if let Err(e) = host::set_property(&[HANDOFF], &h.to_bytes()) {
            log::warn!("#{} {e}", self.id);
        }
        // A rate-limited key is retried with another (one retry per other key); a failover
        // route's 429, 529, 5xx or failed connection on the next target. Never fewer than the
        // shipped routes' 2 for connection failures (these headers replace the route's).
        let keys = pool.map_or(0, |(p, _)| p.keys.len().saturating_sub(1));
        let retry_on = if route.failover.is_empty() {
            "retriable-status-codes"
        } else {
            "5xx,reset,connect-failure,refused-stream,retriable-status-codes"
        };
        vec![
            HeaderOp::Set("x-envoy-retry-on", retry_on.into()),
            HeaderOp::Set("x-envoy-retriable-status-codes", RETRIABLE_STATUSES.into()),
            HeaderOp::Set(
                "x-envoy-max-retries",
                (keys + route.failover.len()).max(2).to_string(),
            ),
        ]
    }
}
