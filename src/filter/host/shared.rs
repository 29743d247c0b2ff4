//! What VMs share: shared data, shared queues and metrics.

use super::abi::*;
use super::{HostError, HostResult, MetricType, checked, take};
use crate::filter::profile;
use std::ptr::null_mut;

/// Reads a shared-data entry (shared by every VM with this `vm_id` in the process): its value
/// and version, `None` if absent.
pub fn shared_get(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: valid key slice and out-pointers.
    let status = profile::host("get_shared_data", || unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    });
    match status {
        OK => Ok(Some((take(data, size).unwrap_or_default(), cas))),
        NOT_FOUND => Ok(None),
        status => Err(HostError {
            call: "get_shared_data",
            status,
        }),
    }
}

/// Writes a shared-data entry if its version is still `cas` (0: unconditionally). `Ok(false)`
/// when another VM wrote first.
pub fn shared_set(key: &str, value: &[u8], cas: u32) -> HostResult<bool> {
    // SAFETY: valid key and value slices.
    let status = profile::host("set_shared_data", || unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    });
    match status {
        OK => Ok(true),
        CAS_MISMATCH => Ok(false),
        status => Err(HostError {
            call: "set_shared_data",
            status,
        }),
    }
}

pub fn define_metric(kind: MetricType, name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: valid name slice and out-pointer.
    checked("define_metric", || unsafe {
        proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id)
    })?;
    Ok(id)
}

/// Records a histogram value.
pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: plain values.
    checked("record_metric", || unsafe {
        proxy_record_metric(id, value)
    })
}

pub fn increment_metric(id: u32, delta: i64) -> HostResult<()> {
    // SAFETY: plain values.
    checked("increment_metric", || unsafe {
        proxy_increment_metric(id, delta)
    })
}

/// Registers this root context as the reader of the shared queue `name` (created if needed;
/// every VM of the `vm_id` sees the same queue, and the last to register is notified).
pub fn register_queue(name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: valid name slice and out-pointer.
    checked("register_shared_queue", || unsafe {
        proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id)
    })?;
    Ok(id)
}

pub fn enqueue(queue: u32, value: &[u8]) -> HostResult<()> {
    // SAFETY: valid value slice.
    checked("enqueue_shared_queue", || unsafe {
        proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len())
    })
}

/// The next item of a shared queue, `None` when it is empty.
pub fn dequeue(queue: u32) -> HostResult<Option<Vec<u8>>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid out-pointers.
    match profile::host("dequeue_shared_queue", || unsafe {
        proxy_dequeue_shared_queue(queue, &mut data, &mut size)
    }) {
        OK => Ok(Some(take(data, size).unwrap_or_default())),
        EMPTY => Ok(None),
        status => Err(HostError {
            call: "dequeue_shared_queue",
            status,
        }),
    }
}
