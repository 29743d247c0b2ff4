//! Sessions across replicas (src/sessions/wire.rs): with the global rate-limit service
//! configured, each finished turn also goes to the service's session store. A request's
//! context ends right after its access log, which would cancel a call it started, so it puts
//! the turn on a shared queue and a root context (the one registered last; every VM of the
//! `vm_id` shares the queue) sends it.

use super::host;
use super::stats::Stats;
use crate::config::GlobalLimits;
use crate::metrics;
use crate::sessions::wire;
use prost::Message;
use proxy_wasm::traits::Context;
use std::time::Duration;

const QUEUE: &str = "claude_gateway.sessions";
/// Turns sent per notification; the rest wait for the next (Envoy notifies per enqueue).
const BATCH: usize = 256;

#[derive(Default)]
pub struct Sync {
    pub queue: Option<u32>,
    in_flight: hashbrown::HashSet<u32>,
}

impl Sync {
    pub fn register(&mut self) {
        self.queue = host::register_queue(QUEUE)
            .map_err(|e| log::warn!("sessions across replicas off: {e}"))
            .ok();
    }

    /// Sends the queued turns to the service.
    pub fn drain(&mut self, root: &dyn Context, g: &GlobalLimits, stats: &Stats) {
        let Some(queue) = self.queue else {
            return;
        };
        for _ in 0..BATCH {
            let turn = match host::dequeue(queue) {
                Ok(Some(turn)) => turn,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("sessions: {e}");
                    return;
                }
            };
            let timeout = Duration::from_millis(g.timeout_ms);
            match root.dispatch_grpc_call(
                &g.cluster,
                wire::SERVICE,
                wire::ADD,
                Vec::new(),
                Some(&turn),
                timeout,
            ) {
                Ok(token) => {
                    self.in_flight.insert(token);
                }
                Err(_) => stats.add(&metrics::session_sync_failures(), 1),
            }
        }
    }

    /// A call's answer; false if it was not one of these.
    pub fn answered(&mut self, stats: &Stats, token: u32, status: u32) -> bool {
        if !self.in_flight.remove(&token) {
            return false;
        }
        if status != 0 {
            stats.add(&metrics::session_sync_failures(), 1);
        }
        true
    }
}

/// Queues a finished turn for the service (from a request's context).
pub fn send(queue: u32, turn: &wire::Turn) {
    if let Err(e) = host::enqueue(queue, &turn.encode_to_vec()) {
        log::warn!("sessions: {e}");
    }
}
