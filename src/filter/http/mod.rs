//! The per-request context. Requests to the Messages endpoints are held (headers paused, body
//! buffered by Envoy) until the body is complete, then planned and released; everything else
//! passes straight through. Responses are observed chunk by chunk and never paused; the
//! request is accounted for in `on_log`, which also runs for aborted streams.

mod admit;
mod headers;
mod insight;
mod record;

use super::effects::{self, ResponseHeaders, WriteError};
use super::host;
use super::profile;
use super::response::Response;
use super::stats::Stats;
use crate::config::Config;
use crate::dialect::answer::{self, Treatment};
use crate::dialect::inbound::{self, Inbound};
use crate::keys;
use crate::metrics;
use crate::plan::{self, Plan, Reply};
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};
use crate::routing::Route;
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
    /// The consumer the request was admitted as.
    consumer: Option<keys::Caller>,
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
    /// Secrets the body carried, by rule.
    secrets: Vec<crate::secrets::Found>,
    /// The tool results the request carried, by tool.
    tool_results: Vec<crate::tools::ToolFeed>,
    /// Claude Code's agent headers, validated.
    agent: Option<String>,
    parent_agent: Option<String>,
    /// The session id, once read (`Http::session`).
    session: Option<Option<String>>,
    /// The session turn this request is (sessions on, a session known).
    turn: Option<(crate::sessions::Caller, crate::sessions::Insight)>,
    /// The session's record as this request found it, written back at its end.
    loaded: Option<crate::sessions::table::Loaded>,
}

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
    /// The shared queue of turns for the rate-limit service's session store (global limits).
    sessions_queue: Option<u32>,
    /// A session lookup sent to that store: its call token, and the session it asks for.
    session_lookup: Option<(u32, crate::sessions::wire::Key)>,
}

impl Http {
    pub fn new(
        id: u32,
        config: Option<Rc<Config>>,
        stats: Rc<Stats>,
        sessions_queue: Option<u32>,
    ) -> Http {
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
            sessions_queue,
            session_lookup: None,
        }
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
        let plan_span = profile::span("plan");
        let mut plan =
            plan::plan_call(config, endpoint, &path, body, &mut header, inbound.as_ref());
        drop(plan_span);
        #[cfg(feature = "profile")]
        {
            // The same plan again, right away: what it costs with its code and data in cache.
            let _span = profile::span("plan_again");
            let mut header = |name: &str| self.cached_header(name);
            std::hint::black_box(plan::plan_call(
                config,
                endpoint,
                &path,
                body,
                &mut header,
                inbound.as_ref(),
            ));
        }
        if !observe_later {
            self.note_body(&plan.body);
        }
        self.seen.secrets.clone_from(&plan.secrets.found);
        self.seen.tool_results.clone_from(&plan.tool_results);
        if let Some(r) = &plan.reply {
            self.reply(plan.route, r);
            return false;
        }
        let mut admitted = Vec::new();
        if let Some(route) = plan.route {
            let _span = profile::span("admit");
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
        if let (Some(route), Some(bytes), Endpoint::Messages) = (plan.route, body, endpoint) {
            let _span = profile::span("begin_turn");
            self.begin_turn(config, route, bytes, &mut plan);
        }
        if let Some(body) = body {
            let _span = profile::span("rewrite_body");
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
        // Markers and the diagnostics field are optional: without them the request still goes.
        let optional = plan.cache.edits.len()
            + usize::from(self.seen.turn.as_ref().is_some_and(|(_, i)| i.asked));
        let needed = plan.new_body.is_some() || plan.edits.len() > optional;
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
        let config = self.config.clone();
        let detector = config.as_ref().and_then(|c| c.secrets.as_ref());
        let mut header = |name: &str| self.cached_header(name);
        let mut facts = request::read(&body, &mut header, false, None, detector);
        if let (Ok(f), Some(d)) = (&mut facts, detector) {
            self.seen.secrets = d.assess(&body, &mut f.secrets).found;
        }
        self.note_body(&facts);
    }

    /// Records what the body says for the audit record, or why it was not read.
    fn note_body(&mut self, facts: &Result<BodyFacts, BodyIssue>) {
        match facts {
            Ok(facts) => {
                self.seen.model = Some(facts.model.clone());
                self.seen.stream = Some(facts.stream);
                self.seen.user_id = facts.user_id.clone();
                // The session may be in it (a body read after the headers went on).
                self.seen.session = None;
            }
            Err(issue) => {
                self.seen.body_issue = Some(*issue);
                self.stats.add(&metrics::body_passthrough(*issue), 1);
                log::debug!("#{} body forwarded untouched: {}", self.id, issue.as_str());
            }
        }
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

impl Context for Http {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let _span = profile::span("grpc_response");
        self.session_found(token_id, status_code, response_size);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let _span = profile::span("request_headers");
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        self.start_ns = host::now_nanos().ok();
        let load_span = profile::span("load_headers");
        self.load_headers();
        drop(load_span);
        self.seen.method = self.cached_header(":method").unwrap_or_default();
        self.seen.path = self.cached_header(":path").unwrap_or_default();
        self.seen.inbound = inbound::classify(&self.seen.method, &self.seen.path);
        let classified = Endpoint::classify(&self.seen.method, &self.seen.path).or(self
            .seen
            .inbound
            .as_ref()
            .map(|i| i.endpoint));
        if self.answer_session(&config) {
            return Action::Pause;
        }
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
        let _span = profile::span("request_body");
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
        let _span = profile::span("request_trailers");
        // With trailers, the end of the request arrives here instead of in the body callback.
        if self.observed.is_some() {
            self.observe(0, true);
            return Action::Continue;
        }
        proceed(self.release_buffered())
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let _span = profile::span("response_headers");
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = ResponseHeaders::load(self.id);
        self.status = headers.status().map(u32::from);
        self.note_key(&config, &headers);
        let Some(endpoint) = self.seen.endpoint else {
            // The models list, as a consumer limited to some models may see it.
            let limited = self
                .seen
                .consumer
                .as_ref()
                .and_then(|c| c.get(&config.consumers));
            if let Some(c) = limited.filter(|c| !c.models.is_empty()) {
                if self.status == Some(200)
                    && keys::models::is_list(&self.seen.method, &self.seen.path)
                {
                    self.response.models = c.models.clone();
                    self.response
                        .start(self.id, &headers, Treatment::Models, None, end_of_stream);
                }
            }
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
        let read = endpoint == Endpoint::Messages && (config.usage.enabled || config.tools.enabled);
        let read = read.then_some(config);
        self.response
            .start(self.id, &headers, treatment, read, end_of_stream);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let _span = profile::span("response_body");
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
        let _span = profile::span("response_trailers");
        self.response.done(self.id, Some(&self.stats));
        Action::Continue
    }

    fn on_log(&mut self) {
        {
            let _span = profile::span("log");
            self.record();
        }
        profile::request_done();
    }
}
