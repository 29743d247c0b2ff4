//! The rate-limit service's health, as the gateway sees it: Envoy's global rate-limit filter
//! lets requests through when the service does not answer (fail-open, the default) or answers
//! 503 (fail-closed), without a word in the log. One root context per VM (each worker's)
//! probes the service every `probe_seconds` with a `ShouldRateLimit` that counts nothing,
//! sets a gauge (`claude_gateway_global_limits_up`), counts failed probes, and logs while it
//! is down, at most once a minute.

use super::stats::Stats;
use crate::config::GlobalLimits;
use crate::global_limits;
use crate::metrics;
use proxy_wasm::traits::Context;
use std::time::Duration;

const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
const METHOD: &str = "ShouldRateLimit";
/// While the service is down, one log line per this long.
const LOG_EVERY_MS: u64 = 60_000;

#[derive(Default)]
pub struct Probe {
    next_ms: u64,
    in_flight: Option<u32>,
    /// The last answer: up or not (unknown before the first).
    up: Option<bool>,
    last_log_ms: u64,
}

impl Probe {
    /// Sends the next probe when it is due (called on the root's tick).
    pub fn tick(&mut self, root: &dyn Context, g: &GlobalLimits, now_ms: u64) {
        if g.probe_seconds == 0 || self.in_flight.is_some() || now_ms < self.next_ms {
            return;
        }
        self.next_ms = now_ms + g.probe_seconds * 1000;
        let message = global_limits::probe_request(&g.domain);
        let timeout = Duration::from_millis(g.timeout_ms);
        match root.dispatch_grpc_call(
            &g.cluster,
            SERVICE,
            METHOD,
            Vec::new(),
            Some(&message),
            timeout,
        ) {
            Ok(token) => self.in_flight = Some(token),
            // An unknown cluster: the configuration is wrong, which the log must say.
            Err(status) => {
                log::warn!(
                    "global limits: cannot call the rate-limit service on cluster `{}` ({status:?})",
                    g.cluster
                );
            }
        }
    }

    /// The probe's answer (`status`: its gRPC status, 0 for OK).
    pub fn answered(&mut self, stats: &Stats, token: u32, status: u32, now_ms: u64) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let up = status == 0;
        let was = self.up.replace(up);
        // Set, not moved: every worker's VM probes, and they agree on one value.
        stats.record(&metrics::global_limits_up(), u64::from(up));
        if up {
            if was == Some(false) {
                log::info!("global limits: the rate-limit service answers again");
            }
            return;
        }
        stats.add(&metrics::global_limits_probe_failures(), 1);
        if was != Some(false) || now_ms.saturating_sub(self.last_log_ms) >= LOG_EVERY_MS {
            self.last_log_ms = now_ms;
            log::warn!(
                "global limits: the rate-limit service does not answer (gRPC status {status}); \
                 Envoy's rate-limit filter lets requests through (failure_mode_deny: false) or \
                 refuses them (true), and stream-end charges are lost until it is back"
            );
        }
    }
}
