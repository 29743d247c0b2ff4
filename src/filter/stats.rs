//! Metric ids, defined in Envoy on first use and cached for the life of the VM. Names come from
//! the catalog in `crate::metrics`, whose label values are bounded, so the cache is bounded too.

use super::host::{self, MetricType};
use crate::metrics::{Kind, Metric};
use hashbrown::HashMap;
use std::cell::RefCell;

#[derive(Default)]
pub struct Stats {
    ids: RefCell<HashMap<Metric, u32>>,
}

impl Stats {
    /// Adds `delta` to a counter.
    pub fn add(&self, metric: &Metric, delta: u64) {
        self.adjust(metric, i64::try_from(delta).unwrap_or(i64::MAX));
    }

    /// Records a value in a histogram, or sets a gauge to it.
    pub fn record(&self, metric: &Metric, value: u64) {
        if let Some(id) = self.id(metric) {
            if let Err(e) = host::record_metric(id, value) {
                log::debug!("{}: {e}", metric.name);
            }
        }
    }

    /// Moves a gauge (or a counter, upwards) by `delta`.
    pub fn adjust(&self, metric: &Metric, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.id(metric) {
            if let Err(e) = host::increment_metric(id, delta) {
                log::debug!("{}: {e}", metric.name);
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
