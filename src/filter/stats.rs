//! Metric ids, defined in Envoy on first use and cached for the life of the VM. Names come from
//! the catalog in `crate::metrics`, whose label values are bounded, so the cache is bounded too.

use super::host::{self, MetricType};
use crate::metrics::{Kind, Metric};
use hashbrown::HashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of this VM's memory already added to the `vm_memory_bytes` gauge. One per VM (not per
/// root context), so a VM that also runs the upstream filter is counted once.
static MEMORY_REPORTED: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
pub struct Stats {
    ids: RefCell<HashMap<Metric, u32>>,
}

impl Stats {
    /// Adds `delta` to a counter.
    pub fn add(&self, metric: &Metric, delta: u64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.id(metric) {
            let delta = i64::try_from(delta).unwrap_or(i64::MAX);
            if let Err(e) = host::increment_metric(id, delta) {
                log::debug!("{}: {e}", metric.name);
            }
        }
    }

    /// Records a value in a histogram.
    pub fn record(&self, metric: &Metric, value: u64) {
        if let Some(id) = self.id(metric) {
            if let Err(e) = host::record_metric(id, value) {
                log::debug!("{}: {e}", metric.name);
            }
        }
    }

    /// Adds this VM's memory growth since the last report to the shared gauge (a host call
    /// only when the memory grew, which is rare once warm).
    pub fn report_memory(&self) {
        let now = core::arch::wasm32::memory_size::<0>().saturating_mul(65_536);
        let before = MEMORY_REPORTED.swap(now, Ordering::Relaxed);
        if now <= before {
            return;
        }
        let grown = i64::try_from(now - before).unwrap_or(i64::MAX);
        if let Some(id) = self.id(&crate::metrics::vm_memory_bytes()) {
            if let Err(e) = host::increment_metric(id, grown) {
                log::debug!("vm_memory_bytes: {e}");
            }
        }
    }

    fn id(&self, metric: &Metric) -> Option<u32> {
        if let Some(&id) = self.ids.borrow().get(metric) {
            return Some(id);
        }
        let kind = match metric.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        };
        match host::define_metric(kind, &metric.name) {
            Ok(id) => {
                self.ids.borrow_mut().insert(metric.clone(), id);
                Some(id)
            }
            Err(e) => {
                log::warn!("cannot define metric {}: {e}", metric.name);
                None
            }
        }
    }
}
