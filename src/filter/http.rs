//! The per-request context. Requests to the Messages endpoints are held (headers paused, body
//! buffered by Envoy) until the body is complete, then planned and released; everything else
//! passes straight through. Responses are observed chunk by chunk and never paused; the
//! request is accounted for in `on_log`, which also runs for aborted streams.

use super::effects::{self, ResponseHeaders, WriteError};
use super::host;
use super::response::Response;
use super::stats::Stats;
use super::store::EnvoyStore;
use super::upstream::{ATTEMPTS, HANDOFF, Handoff, KEY_HEADER, TARGET_HEADER};
use crate::accounting::{self, Finished};
use crate::audit;
use crate::config::Config;
use crate::dialect::answer;
use crate::dialect::inbound::{self, Inbound};
use crate::keys;
use crate::keys::access::{self, Asks};
use crate::metrics;
use crate::plan::{self, HeaderOp, Plan, Reply};
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};
use crate::routing::Route;
use crate::session;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// What is known about the request for its audit record.
#[derive(Default)]
struct Seen {
    endpoint: Option<Endpoint>,
    method: String,
    path: String,
    session_header: Option<String>,
    model: Option<String>,
    stream: Option<bool>,
    user_id: Option<String>,
    body_issue: Option<BodyIssue>,
    route: Option<String>,
    markers_added: usize,
    /// The error type of a reply the gateway sent itself.
    local_error: Option<&'static str>,
    /// Index of the consumer (virtual key) in the configuration.
    consumer: Option<usize>,
    /// Pool and key indexes of the upstream key of the first attempt.
    key: Option<(usize, usize)>,
    /// Alias of the key that served the final response.
    key_alias: Option<String>,
    /// Request headers as the filter left them: all of them once `all_headers` is set (one host
    /// call), else those read so far (one call each).
    headers: hashbrown::HashMap<String, Option<String>>,
    all_headers: bool,
    /// Headers the request has more than once: a set or removal always goes to Envoy.
    repeated: Vec<String>,
    /// The request is in a cloud's own format (Bedrock, Vertex AI).
    inbound: Option<Inbound>,
    /// Betas and body fields the route's vendor does not take, dropped.
    dropped_betas: Vec<String>,
    dropped_fields: Vec<String>,
    /// The failover target that answered (named by the upstream instance).
    target: Option<String>,
}

/// Descriptor inputs for Envoy's global rate-limit filter, set after authentication.
const CONSUMER_HEADER: &str = "x-claude-gateway-consumer";
const COST_CENTER_HEADER: &str = "x-claude-gateway-cost-center";

pub struct Http {
    id: u32,
    config: Option<Rc<Config>>,
    stats: Rc<Stats>,
    /// Set while the request headers are paused waiting for the end of the body.
    held: Option<Endpoint>,
    /// Bytes Envoy has buffered so far for a held request.
    body_size: usize,
    /// The body of a request that went on without being held (`hold_headers: false`), copied
    /// as it passes so the record still names the model.
    observed: Option<Vec<u8>>,
    seen: Seen,
    status: Option<u32>,
    response: Response,
    /// When this filter first saw the request (a clock read is cheaper than a property).
    start_ns: Option<u64>,
}

impl Http {
    pub fn new(id: u32, config: Option<Rc<Config>>, stats: Rc<Stats>) -> Http {
        Http {
            id,
            config,
            stats,
            held: None,
            body_size: 0,
            observed: None,
            seen: Seen::default(),
            status: None,
            response: Response::default(),
            start_ns: None,
        }
    }

    fn request_header(&self, name: &str) -> Option<String> {
        host::request_header(name).unwrap_or_else(|e| {
            log::warn!("#{} {e}", self.id);
            None
        })
    }

    /// Reads every request header in one host call, so later lookups cost none.
    fn load_headers(&mut self) {
        match host::request_headers() {
            Ok(pairs) => {
                for (name, value) in pairs {
                    // The first value of a repeated header, as a single lookup returns.
                    if self.seen.headers.contains_key(&name) {
                        self.seen.repeated.push(name);
                    } else {
                        self.seen.headers.insert(name, Some(value));
                    }
                }
                self.seen.all_headers = true;
            }
            Err(e) => log::warn!("#{} {e}", self.id),
        }
    }

    /// A request header, read from Envoy at most once per request.
    fn cached_header(&mut self, name: &str) -> Option<String> {
        if let Some(v) = self.seen.headers.get(name) {
            return v.clone();
        }
        let v = if self.seen.all_headers {
            None
        } else {
            self.request_header(name)
        };
        self.seen.headers.insert(name.to_owned(), v.clone());
        v
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        if self.changes(name, Some(value)) {
            if let Err(e) = host::set_request_header(name, value) {
                log::warn!("#{} cannot set {name}: {e}", self.id);
            }
        }
    }

    /// Applies header changes, skipping those that change nothing: each one is a host call.
    fn apply_headers(&mut self, ops: &[HeaderOp]) {
        let needed: Vec<HeaderOp> = ops
            .iter()
            .filter(|op| match op {
                HeaderOp::Set(name, value) => self.changes(name, Some(value)),
                HeaderOp::Remove(name) => self.changes(name, None),
            })
            .cloned()
            .collect();
        effects::apply_headers(self.id, &needed);
    }

    /// Records that `name` is about to become `new` (`None`: removed); false if it already is
    /// (a header the request does not have needs no removal).
    fn changes(&mut self, name: &str, new: Option<&str>) -> bool {
        let unchanged = match self.seen.headers.get(name) {
            _ if self.seen.repeated.iter().any(|r| r == name) => false,
            Some(current) => current.as_deref() == new,
            None => self.seen.all_headers && new.is_none(),
        };
        if !unchanged {
            self.seen
                .headers
                .insert(name.to_owned(), new.map(str::to_owned));
        }
        !unchanged
    }

    /// Points Envoy's route at the route's cluster, overwriting whatever the client sent.
    fn route(&mut self, config: &Config, route: &Route) {
        self.seen.route = Some(route.name.clone());
        self.set_request_header(&config.routing_header, &route.cluster);
        if let Err(e) = host::clear_route_cache() {
            log::debug!("#{} {e}", self.id);
        }
    }

    /// Answers the request itself (on `route`, if one was chosen).
    fn reply(&mut self, route: Option<&Route>, r: &Reply) {
        self.seen.route = route.map(|r| r.name.clone());
        self.seen.local_error = Some(r.error_type);
        effects::reply(self.id, &self.stats, r);
    }

    /// Virtual keys: authenticates the client, checks its limits and budgets, and swaps its
    /// credential for a pool key. `Err` is the refusal to send.
    fn admit(&mut self, config: &Config, route: &Route) -> Result<Vec<HeaderOp>, Reply> {
        let x_api_key = self.cached_header("x-api-key");
        let authorization = self.cached_header("authorization");
        let presented = keys::presented(x_api_key.as_deref(), authorization.as_deref());
        let session = session::session_id(
            self.seen.session_header.as_deref(),
            self.seen.user_id.as_deref(),
        );
        let now = effects::now_ms();
        let consumer = access::identify(config, route, &presented)?;
        let mut ops = Vec::new();
        let Some(c) = consumer else {
            // Rate-limit descriptors come from the gateway only, never from a client.
            ops.push(HeaderOp::Remove(CONSUMER_HEADER));
            ops.push(HeaderOp::Remove(COST_CENTER_HEADER));
            return Ok(ops);
        };
        // Known from here on: refusals below are recorded against the consumer.
        self.seen.consumer = config.consumers.iter().position(|x| x.id == c.id);
        let asks = match self.seen.endpoint {
            Some(_) => Asks::Model(self.seen.model.as_deref()),
            None => Asks::Other,
        };
        let key = access::admit(config, route, c, asks, session.as_deref(), &EnvoyStore, now)?;
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

    /// Leaves the upstream instance what it needs when it has work per attempt (another key
    /// after a 429, a failover target's dialect), and lets Envoy retry those attempts.
    fn hand_off(&mut self, config: &Config, route: &Route) -> Vec<HeaderOp> {
        let pool = self
            .seen
            .key
            .and_then(|(p, k)| Some((config.pools.get(p)?, k)));
        if pool.is_none() && route.failover.is_empty() {
            return Vec::new();
        }
        let session = session::session_id(
            self.seen.session_header.as_deref(),
            self.seen.user_id.as_deref(),
        );
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
            HeaderOp::Set("x-envoy-retriable-status-codes", "429,529".into()),
            HeaderOp::Set(
                "x-envoy-max-retries",
                (keys + route.failover.len()).max(2).to_string(),
            ),
        ]
    }

    /// Plans the request from its complete body (`None`: it has none, or it is read later
    /// when `observe_later`) and applies the plan. Returns false when the gateway answered
    /// the request itself.
    fn release(
        &mut self,
        config: &Config,
        endpoint: Endpoint,
        body: Option<&[u8]>,
        observe_later: bool,
    ) -> bool {
        self.held = None;
        let path = self.seen.path.clone();
        let inbound = self.seen.inbound.clone();
        let mut header = |name: &str| self.cached_header(name);
        let plan = plan::plan_call(config, endpoint, &path, body, &mut header, inbound.as_ref());
        if !observe_later {
            self.note_body(&plan.body);
        }
        if let Some(r) = &plan.reply {
            self.reply(plan.route, r);
            return false;
        }
        let mut admitted = Vec::new();
        if let Some(route) = plan.route {
            match self.admit(config, route) {
                Ok(ops) => admitted = ops,
                Err(r) => {
                    self.reply(Some(route), &r);
                    return false;
                }
            }
        }
        if let Some(reason) = plan.cache.skipped.filter(|_| plan.body.is_ok()) {
            self.stats.add(&metrics::cache_skipped(reason), 1);
        }
        if let Some(body) = body {
            if !self.rewrite_body(body, &plan) {
                return false;
            }
        }
        self.note_dropped(config, &plan);
        self.apply_headers(&plan.headers);
        self.apply_headers(&admitted);
        if let Some(route) = plan.route {
            let retries = self.hand_off(config, route);
            self.apply_headers(&retries);
            self.route(config, route);
        }
        true
    }

    /// Counts and records what the route's vendor did not take.
    fn note_dropped(&mut self, config: &Config, plan: &Plan) {
        let route = plan.route.map_or("none", |r| r.name.as_str());
        for b in &plan.dropped_betas {
            let label = config.policies.beta_label(b);
            self.stats
                .add(&metrics::dialect_dropped(route, "beta", label), 1);
        }
        for f in &plan.dropped_fields {
            let label = metrics::known_field(f);
            self.stats
                .add(&metrics::dialect_dropped(route, "field", label), 1);
        }
        self.seen.dropped_betas.clone_from(&plan.dropped_betas);
        self.seen.dropped_fields.clone_from(&plan.dropped_fields);
    }

    /// Writes the planned body (splices, or a new body) into Envoy's buffer and fixes
    /// `content-length`, which Envoy does not. Returns false when the gateway answered the
    /// request itself.
    fn rewrite_body(&mut self, body: &[u8], plan: &Plan) -> bool {
        if plan.edits.is_empty() && plan.new_body.is_none() {
            return true;
        }
        // A vendor's dialect cannot take the client's body as it is.
        let needed = plan.new_body.is_some() || plan.edits.len() > plan.cache.edits.len();
        match effects::write_body(self.id, body, &plan.edits, plan.new_body.as_deref()) {
            Ok(length) => self.set_request_header("content-length", &length.to_string()),
            Err(WriteError::Untouched) if !needed => return true,
            Err(_) => {
                self.reply(None, &plan::rewrite_failed());
                return false;
            }
        }
        for a in &plan.cache.added {
            self.stats
                .add(&metrics::cache_markers_added(a.location, a.ttl), 1);
        }
        self.seen.markers_added = plan.cache.added.len();
        true
    }

    /// Reads the buffered body and releases the held request; false if answered locally.
    fn release_buffered(&mut self) -> bool {
        let (Some(config), Some(endpoint)) = (self.config.clone(), self.held) else {
            return true;
        };
        match host::request_body(0, self.body_size) {
            Ok(body) => self.release(&config, endpoint, Some(&body), false),
            Err(e) => {
                log::warn!("#{} cannot read the request body: {e}", self.id);
                self.release(&config, endpoint, None, false)
            }
        }
    }

    /// Copies a chunk of a request that was not held; at its end, reads the model, `stream`
    /// and session from the copy for the record (bounded: a larger body is not read).
    fn observe(&mut self, body_size: usize, end_of_stream: bool) {
        const MAX: usize = 32 << 20;
        if let Some(buf) = self.observed.as_mut().filter(|_| body_size > 0) {
            match host::request_body(0, body_size) {
                Ok(chunk) if buf.len() + chunk.len() <= MAX => buf.extend_from_slice(&chunk),
                _ => self.observed = None,
            }
        }
        if !end_of_stream {
            return;
        }
        let Some(body) = self.observed.take() else {
            return;
        };
        let facts = request::read(&body, &mut |name| self.cached_header(name), false, None);
        self.note_body(&facts);
    }

    /// Records what the body says for the audit record, or why it was not read.
    fn note_body(&mut self, facts: &Result<BodyFacts, BodyIssue>) {
        match facts {
            Ok(facts) => {
                self.seen.model = Some(facts.model.clone());
                self.seen.stream = Some(facts.stream);
                self.seen.user_id = facts.user_id.clone();
            }
            Err(issue) => {
                self.seen.body_issue = Some(*issue);
                self.stats.add(&metrics::body_passthrough(*issue), 1);
                log::debug!("#{} body forwarded untouched: {}", self.id, issue.as_str());
            }
        }
    }

    /// The pool key that served the response: the upstream instance names it in a header
    /// (removed here) after learning from the response; without an upstream instance, this
    /// instance learns from the final response itself.
    fn note_key(&mut self, config: &Config, headers: &ResponseHeaders) {
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
        effects::learn_key(&self.stats, pool, k, headers);
        self.seen.key_alias = pool.keys.get(k).map(|key| key.alias.clone());
    }

    /// The route's target that answered: the upstream instance of a failover route names it
    /// in a header (removed here); otherwise the route itself.
    fn answering<'c>(
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

    fn property_string(&self, path: &[&str]) -> Option<String> {
        let bytes = host::property(path).ok().flatten()?;
        let s = String::from_utf8_lossy(&bytes);
        Some(s.chars().take(256).collect())
    }

    /// An integer attribute (Envoy encodes them as 8 little-endian bytes).
    fn property_int(&self, path: &[&str]) -> Option<u64> {
        let bytes = host::property(path).ok().flatten()?;
        Some(u64::from_le_bytes(*bytes.first_chunk::<8>()?))
    }
}

/// Lets a released request go on; one the gateway answered stays stopped.
fn proceed(forwarded: bool) -> Action {
    if forwarded {
        Action::Continue
    } else {
        Action::Pause
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        self.start_ns = host::now_nanos().ok();
        self.load_headers();
        self.seen.method = self.cached_header(":method").unwrap_or_default();
        self.seen.path = self.cached_header(":path").unwrap_or_default();
        self.seen.inbound = inbound::classify(&self.seen.method, &self.seen.path);
        let classified = Endpoint::classify(&self.seen.method, &self.seen.path).or(self
            .seen
            .inbound
            .as_ref()
            .map(|i| i.endpoint));
        let Some(endpoint) = classified else {
            // Other endpoints go to the default route, as that route presents them.
            let route = &config.routes.default;
            let path = self.seen.path.clone();
            let ops = plan::route_headers(route, &path, &mut |name| self.cached_header(name));
            // Virtual keys hold here too: a known key, and a pool key instead of it.
            let admitted = match self.admit(&config, route) {
                Ok(admitted) => admitted,
                Err(r) => {
                    self.reply(Some(route), &r);
                    return Action::Pause;
                }
            };
            self.apply_headers(&ops);
            self.apply_headers(&admitted);
            self.route(&config, route);
            return Action::Continue;
        };
        self.seen.endpoint = Some(endpoint);
        self.seen.session_header = self.cached_header("x-claude-code-session-id");
        // The filter reads these responses, so they must not come back compressed.
        self.set_request_header("accept-encoding", "identity");
        if end_of_stream {
            return proceed(self.release(&config, endpoint, None, false));
        }
        if !config.hold_headers {
            // Envoy would stop the request entirely if the headers were held without
            // allow_on_headers_stop_iteration (Istio WasmPlugin, Envoy Gateway): route and
            // admit on the headers alone, and read the body as it passes.
            let forwarded = self.release(&config, endpoint, None, true);
            if forwarded {
                self.observed = Some(Vec::new());
            }
            return proceed(forwarded);
        }
        // Needs `allow_on_headers_stop_iteration` so Envoy keeps feeding the body (envoy-wasm.md §1).
        self.held = Some(endpoint);
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.observed.is_some() {
            self.observe(body_size, end_of_stream);
            return Action::Continue;
        }
        if self.held.is_none() {
            return Action::Continue;
        }
        self.body_size = body_size;
        if !end_of_stream {
            // Envoy keeps buffering (up to the route's request_body_buffer_limit).
            return Action::Pause;
        }
        proceed(self.release_buffered())
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        // With trailers, the end of the request arrives here instead of in the body callback.
        if self.observed.is_some() {
            self.observe(0, true);
            return Action::Continue;
        }
        proceed(self.release_buffered())
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = ResponseHeaders::load(self.id);
        self.status = headers.status().map(u32::from);
        self.note_key(&config, &headers);
        let Some(endpoint) = self.seen.endpoint else {
            return Action::Continue;
        };
        let dialect = self.answering(&config, &headers).map(|r| r.dialect);
        let content_type = headers.get("content-type").unwrap_or_default();
        let treatment = answer::treatment(
            dialect.unwrap_or(crate::dialect::Dialect::Anthropic),
            self.seen.inbound.as_ref().map(|i| i.dialect),
            endpoint,
            self.status.unwrap_or(0),
            content_type,
        );
        let read = endpoint == Endpoint::Messages && config.usage.enabled;
        self.response
            .start(self.id, &headers, treatment, read, end_of_stream);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Observe (or rewrite) only: anything but Continue would hold the stream back.
        let max = self
            .config
            .as_ref()
            .map_or(0, |c| c.usage.max_json_response_bytes);
        self.response
            .chunk(self.id, &self.stats, body_size, end_of_stream, max);
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.response.done(self.id, Some(&self.stats));
        Action::Continue
    }

    fn on_log(&mut self) {
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
        let upstream_cluster = audited(&["xds", "cluster_name"]);
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
        let s = &self.seen;
        let read = self.response.was_read();
        let finished = Finished {
            endpoint: s.endpoint,
            method: &s.method,
            path: &s.path,
            request_model: s.model.as_deref(),
            stream: s.stream,
            user_id: s.user_id.as_deref(),
            session_header: s.session_header.as_deref(),
            body_issue: s.body_issue,
            local_error: s.local_error,
            consumer: s.consumer.and_then(|i| config.consumers.get(i)),
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
        };
        if let (Some(r), Some(t)) = (route, s.target.as_deref()) {
            if r.name != t {
                self.stats.add(&metrics::failovers(&r.name, t), 1);
            }
        }
        let (updates, record) = accounting::account(&config, &finished);
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
        }
        for (metric, n) in &updates.counters {
            self.stats.add(metric, *n);
        }
        for (metric, v) in &updates.histograms {
            self.stats.record(metric, *v);
        }
        if config.audit {
            if let Err(e) = host::set_property(&[audit::PROPERTY], &record.to_json()) {
                log::warn!("#{} cannot write the audit record: {e}", self.id);
            }
        }
    }
}

/// A route by the name the request was routed with.
fn s_route<'c>(config: &'c Config, name: Option<&str>) -> Option<&'c Route> {
    config.routes.by_name(name?)
}
