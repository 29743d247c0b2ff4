//! The root context: loads the plugin configuration and creates one HTTP context per request.

use super::effects;
use super::http::Http;
use super::probe::Probe;
use super::stats::Stats;
use super::sync::Sync;
use super::upstream::Upstream;
use super::{host, memory, refresh_log_level};
use crate::config::{self, Config};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    stats: Rc<Stats>,
    /// Loaded as an upstream filter of a cluster (`root_id` ending in `upstream`).
    upstream: bool,
    /// This root reports the VM's memory gauges on its tick (one per process), and probes the
    /// global rate-limit service.
    reports_memory: bool,
    probe: Probe,
    /// Sends finished turns to the rate-limit service's session store.
    sync: Sync,
}

/// How often the memory gauges are refreshed.
const MEMORY_REPORT_MS: u32 = 1000;

impl Context for Root {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _response_size: usize) {
        if self.sync.answered(&self.stats, token_id, status_code) {
            return;
        }
        self.probe
            .answered(&self.stats, token_id, status_code, effects::now_ms());
    }
}

impl Root {
    /// Sends the queued session turns (global limits only).
    fn drain_sessions(&mut self) {
        let Some(g) = self.config.as_ref().and_then(|c| c.global_limits.clone()) else {
            return;
        };
        if self.sync.queue.is_some() {
            // `drain` calls back into this root's context; the sync state steps aside meanwhile.
            let mut sync = std::mem::take(&mut self.sync);
            sync.drain(self, &g, &self.stats);
            self.sync = sync;
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        refresh_log_level();
        let bytes = match host::plugin_configuration() {
            Ok(bytes) => bytes,
            Err(e) => {
                log::error!("cannot read the plugin configuration: {e}");
                return false;
            }
        };
        if memory::claim_reporting() {
            self.reports_memory = true;
            if let Err(e) = host::set_tick_period(MEMORY_REPORT_MS) {
                log::warn!("memory gauges off: {e}");
            }
        }
        self.upstream = host::property(&["plugin_root_id"])
            .ok()
            .flatten()
            .is_some_and(|id| id.ends_with(b"upstream"));
        // Returning false makes Envoy refuse the configuration; the error names the path
        // and the problem, never a value.
        match config::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "claude_gateway {} configured{}: {} routes, default route {} (cluster {}), {} key pools",
                    env!("CARGO_PKG_VERSION"),
                    if self.upstream {
                        " as an upstream filter"
                    } else {
                        ""
                    },
                    config.routes.routes.len(),
                    config.routes.default.name,
                    config.routes.default.cluster,
                    config.pools.len(),
                );
                let global = config.global_limits.is_some() && config.sessions.enabled;
                if global && !self.upstream {
                    self.sync.register();
                    // Envoy notifies only the root that registered last; every root also
                    // drains on its tick, so turns still go when that one's VM is gone.
                    if !self.reports_memory {
                        if let Err(e) = host::set_tick_period(MEMORY_REPORT_MS) {
                            log::warn!("sessions: {e}");
                        }
                    }
                }
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn on_queue_ready(&mut self, _queue_id: u32) {
        self.drain_sessions();
    }

    fn on_tick(&mut self) {
        self.drain_sessions();
        if !self.reports_memory {
            return;
        }
        memory::report(&self.stats);
        if let Some(g) = self.config.as_ref().and_then(|c| c.global_limits.clone()) {
            let mut probe = std::mem::take(&mut self.probe);
            probe.tick(self, &g, effects::now_ms());
            self.probe = probe;
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let _span = super::profile::span("create_context");
        let (config, stats) = (self.config.clone(), self.stats.clone());
        if self.upstream {
            Some(Box::new(Upstream::new(context_id, config, stats)))
        } else {
            Some(Box::new(Http::new(
                context_id,
                config,
                stats,
                self.sync.queue,
            )))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
