//! The per-request context. Requests to the Messages endpoints are held (headers paused, body
//! buffered by Envoy) until the body is complete, then planned and released; everything else
//! passes straight through. Responses are never paused.

use super::host;
use super::stats::Stats;
use crate::cache::{self, EXTENDED_TTL_BETA};
use crate::config::Config;
use crate::metrics;
use crate::plan;
use crate::request::Endpoint;
use crate::splice;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct Http {
    id: u32,
    config: Option<Rc<Config>>,
    stats: Rc<Stats>,
    /// Set while the request headers are paused waiting for the end of the body.
    held: Option<Endpoint>,
    /// Bytes Envoy has buffered so far for a held request.
    body_size: usize,
    /// Cache markers added to this request's body.
    markers_added: usize,
}

impl Http {
    pub fn new(id: u32, config: Option<Rc<Config>>, stats: Rc<Stats>) -> Http {
        Http {
            id,
            config,
            stats,
            held: None,
            body_size: 0,
            markers_added: 0,
        }
    }

    fn request_header(&self, name: &str) -> String {
        match host::request_header(name) {
            Ok(value) => value.unwrap_or_default(),
            Err(e) => {
                log::warn!("#{} {e}", self.id);
                String::new()
            }
        }
    }

    fn set_request_header(&self, name: &str, value: &str) {
        if let Err(e) = host::set_request_header(name, value) {
            log::warn!("#{} cannot set {name}: {e}", self.id);
        }
    }

    /// Points Envoy's route at `cluster`, overwriting whatever the client sent.
    fn route(&self, config: &Config, cluster: &str) {
        self.set_request_header(&config.routing_header, cluster);
        if let Err(e) = host::clear_route_cache() {
            log::debug!("#{} {e}", self.id);
        }
    }

    /// Plans the request from its complete body (`None`: it has none) and applies the plan.
    fn release(&mut self, config: &Config, endpoint: Endpoint, body: Option<&[u8]>) {
        self.held = None;
        let plan = plan::plan(config, endpoint, body);
        match (&plan.body, body) {
            (Ok(_), Some(body)) => self.add_markers(&plan.cache, body, plan.extended_ttl_beta),
            (Err(issue), _) => {
                self.stats.add(&metrics::body_passthrough(*issue), 1);
                log::debug!("#{} body forwarded untouched: {}", self.id, issue.as_str());
            }
            (Ok(_), None) => {}
        }
        self.route(config, plan.cluster);
    }

    /// Splices the planned cache markers into Envoy's buffer (only the head up to the last
    /// insertion is rewritten) and fixes `content-length`, which Envoy does not.
    fn add_markers(&mut self, outcome: &cache::Outcome, body: &[u8], beta: bool) {
        if let Some(reason) = outcome.skipped {
            self.stats.add(&metrics::cache_skipped(reason), 1);
            return;
        }
        let (end, head) = splice::apply_prefix(body, &outcome.edits);
        if let Err(e) = host::set_request_body(0, end, &head) {
            log::warn!("#{} cannot rewrite the body: {e}", self.id);
            return;
        }
        let length = body.len() - end + head.len();
        self.set_request_header("content-length", &length.to_string());
        if beta {
            let current = host::request_header("anthropic-beta").unwrap_or_default();
            if let Some(value) = cache::add_beta(current.as_deref(), EXTENDED_TTL_BETA) {
                self.set_request_header("anthropic-beta", &value);
            }
        }
        for a in &outcome.added {
            self.stats
                .add(&metrics::cache_markers_added(a.location, a.ttl), 1);
        }
        self.markers_added = outcome.added.len();
    }

    /// Reads the buffered body and releases the held request.
    fn release_buffered(&mut self) {
        let (Some(config), Some(endpoint)) = (self.config.clone(), self.held) else {
            return;
        };
        match host::request_body(0, self.body_size) {
            Ok(body) => self.release(&config, endpoint, Some(&body)),
            Err(e) => {
                log::warn!("#{} cannot read the request body: {e}", self.id);
                self.release(&config, endpoint, None);
            }
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let method = self.request_header(":method");
        let path = self.request_header(":path");
        let Some(endpoint) = Endpoint::classify(&method, &path) else {
            self.route(&config, &config.default_cluster);
            return Action::Continue;
        };
        // The filter reads these responses, so they must not come back compressed.
        self.set_request_header("accept-encoding", "identity");
        if end_of_stream {
            self.release(&config, endpoint, None);
            return Action::Continue;
        }
        // Needs `allow_on_headers_stop_iteration` so Envoy keeps feeding the body (envoy-wasm.md §1).
        self.held = Some(endpoint);
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.held.is_none() {
            return Action::Continue;
        }
        self.body_size = body_size;
        if !end_of_stream {
            // Envoy keeps buffering (up to the route's request_body_buffer_limit).
            return Action::Pause;
        }
        self.release_buffered();
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        // With trailers, the end of the request arrives here instead of in the body callback.
        self.release_buffered();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        // Observe only: returning anything but Continue would hold the stream back.
        Action::Continue
    }
}
