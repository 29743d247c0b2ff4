//! The per-request context. Requests to the Messages endpoints are held (headers paused, body
//! buffered by Envoy) until the body is complete, then planned and released; everything else
//! passes straight through. Responses are observed chunk by chunk and never paused; the
//! request is accounted for in `on_log`, which also runs for aborted streams.

use super::effects::{self, ResponseHeaders};
use super::host;
use super::stats::Stats;
use super::store::EnvoyStore;
use super::upstream::{HANDOFF, KEY_HEADER, handoff};
use crate::accounting::{self, Finished};
use crate::audit;
use crate::cache;
use crate::config::Config;
use crate::keys;
use crate::keys::access::{self, Asks};
use crate::metrics;
use crate::plan::{self, HeaderOp, Reply};
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};
use crate::routing::Route;
use crate::session;
use crate::splice;
use crate::sse::Framer;
use crate::usage::Extraction;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// How the response body is read.
enum Reader {
    /// Not read (other endpoints, or usage accounting off).
    Off,
    /// Server-sent events, framed as they arrive.
    Events(Framer),
    /// A JSON body, copied (bounded) and parsed at its end.
    Json(Vec<u8>),
}

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
    reader: Reader,
    extraction: Extraction,
    /// The response reached its end.
    response_ended: bool,
    first_content_ns: Option<u64>,
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
            reader: Reader::Off,
            extraction: Extraction::new(),
            response_ended: false,
            first_content_ns: None,
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
            let state = handoff(&p.name, k, route.auth, session.as_deref());
            if let Err(e) = host::set_property(&[HANDOFF], state.as_bytes()) {
                log::warn!("#{} {e}", self.id);
            }
            // Let Envoy retry a rate-limited attempt: the upstream instance sets another key.
            // One retry per other key, never fewer than the shipped routes' 2 for connection
            // failures (this header replaces the route's count).
            ops.push(HeaderOp::Set(
                "x-envoy-retry-on",
                "retriable-status-codes".into(),
            ));
            ops.push(HeaderOp::Set(
                "x-envoy-retriable-status-codes",
                "429,529".into(),
            ));
            ops.push(HeaderOp::Set(
                "x-envoy-max-retries",
                p.keys.len().saturating_sub(1).max(2).to_string(),
            ));
            self.seen.key = config
                .pools
                .iter()
                .position(|x| x.name == p.name)
                .map(|i| (i, k));
        }
        Ok(ops)
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
        let mut header = |name: &str| self.cached_header(name);
        let plan = plan::plan(config, endpoint, &path, body, &mut header);
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
        if let (Some(body), false) = (body, plan.edits.is_empty()) {
            if !self.rewrite_body(body, &plan.edits, &plan.cache) {
                return false;
            }
        }
        self.apply_headers(&plan.headers);
        self.apply_headers(&admitted);
        if let Some(route) = plan.route {
            self.route(config, route);
        }
        true
    }

    /// Splices the planned edits into Envoy's buffer and fixes `content-length`, which Envoy
    /// does not. Returns false when the gateway answered the request itself.
    fn rewrite_body(
        &mut self,
        body: &[u8],
        edits: &[splice::Edit],
        cache: &cache::Outcome,
    ) -> bool {
        let (end, pieces) = splice::head_pieces(body, edits);
        // Envoy's buffer takes a prepend after draining from its start (envoy-wasm.md): the
        // head is drained once and its pieces are prepended last to first, so the VM never
        // builds a copy of the body and the tail stays in Envoy's buffer untouched.
        for (i, piece) in pieces.iter().rev().enumerate() {
            // The first call drains the head (even with nothing to put back); empty pieces
            // after it change nothing.
            if i > 0 && piece.is_empty() {
                continue;
            }
            let drain = if i == 0 { end } else { 0 };
            if let Err(e) = host::set_request_body(0, drain, piece) {
                log::warn!("#{} cannot rewrite the body: {e}", self.id);
                if i == 0 {
                    // Nothing changed yet: the body goes out as the client sent it.
                    return true;
                }
                self.reply(None, &plan::rewrite_failed());
                return false;
            }
        }
        let head: usize = pieces.iter().map(|p| p.len()).sum();
        let length = body.len() - end + head;
        self.set_request_header("content-length", &length.to_string());
        for a in &cache.added {
            self.stats
                .add(&metrics::cache_markers_added(a.location, a.ttl), 1);
        }
        self.seen.markers_added = cache.added.len();
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

    /// Feeds one response chunk to the reader.
    fn read_response(&mut self, chunk: &[u8], max_json: usize) {
        match &mut self.reader {
            Reader::Off => {}
            Reader::Events(framer) => {
                let extraction = &mut self.extraction;
                let mut first_content = false;
                framer.feed(chunk, &mut |e| first_content |= extraction.on_event(e));
                if first_content {
                    self.first_content_ns = host::now_nanos().ok();
                }
            }
            Reader::Json(buf) => {
                if buf.len() + chunk.len() <= max_json {
                    buf.extend_from_slice(chunk);
                } else {
                    // Too large to read: the usage is reported as failed, the body flows on.
                    self.reader = Reader::Off;
                    self.extraction.on_json(b"");
                }
            }
        }
    }

    /// The response is complete: a JSON body can be parsed now.
    fn response_done(&mut self) {
        self.response_ended = true;
        if let Reader::Json(buf) = &self.reader {
            self.extraction.on_json(buf);
            self.reader = Reader::Off;
        }
    }

    /// The pool key that served the response: the upstream instance names it in a header
    /// (removed here) after learning from the response; without an upstream instance, this
    /// instance learns from the final response itself.
    fn note_key(&mut self, headers: &ResponseHeaders) {
        let (Some(config), Some((p, k))) = (self.config.clone(), self.seen.key) else {
            return;
        };
        let Some(pool) = config.pools.get(p) else {
            return;
        };
        match headers.get(KEY_HEADER) {
            Some(alias) => {
                let _ = host::remove_response_header(KEY_HEADER);
                self.seen.key_alias = pool
                    .keys
                    .iter()
                    .find(|key| key.alias == alias)
                    .map(|key| key.alias.clone());
            }
            None => {
                effects::learn_key(&self.stats, pool, k, headers);
                self.seen.key_alias = pool.keys.get(k).map(|key| key.alias.clone());
            }
        }
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
        let Some(endpoint) = Endpoint::classify(&self.seen.method, &self.seen.path) else {
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
        let headers = ResponseHeaders::load(self.id);
        self.status = headers.status().map(u32::from);
        self.note_key(&headers);
        let read = self.seen.endpoint == Some(Endpoint::Messages)
            && self.config.as_ref().is_some_and(|c| c.usage.enabled);
        if !read {
            return Action::Continue;
        }
        let content_type = headers.get("content-type").unwrap_or_default();
        self.reader = if content_type.starts_with("text/event-stream") {
            Reader::Events(Framer::new())
        } else {
            Reader::Json(Vec::new())
        };
        if end_of_stream {
            self.response_done();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Observe only: returning anything but Continue would hold the stream back.
        if !matches!(self.reader, Reader::Off) && body_size > 0 {
            match host::response_body(0, body_size) {
                Ok(chunk) => {
                    let max = self
                        .config
                        .as_ref()
                        .map_or(0, |c| c.usage.max_json_response_bytes);
                    self.read_response(&chunk, max);
                }
                Err(e) => log::debug!("#{} {e}", self.id),
            }
        }
        if end_of_stream {
            self.response_done();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.response_done();
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
        let s = &self.seen;
        let read = !matches!(self.reader, Reader::Off) || self.response_ended;
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
                .then_some(&self.extraction),
            response_ended: self.response_ended,
            status: status.filter(|&c| c != 0),
            start_ns: self
                .start_ns
                .or_else(|| self.property_int(&["request", "time"]))
                .unwrap_or(0),
            first_content_ns: self.first_content_ns,
            end_ns: host::now_nanos().unwrap_or(0),
            request_id,
            upstream_cluster,
            upstream_host,
            attempts,
            code_details,
        };
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
