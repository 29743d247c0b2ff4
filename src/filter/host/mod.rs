//! Every call into Envoy goes through this module and returns a `Result`.
//!
//! The SDK's `hostcalls` panic on any status they do not expect (a panic kills the worker's VM),
//! so the ABI functions are imported here directly and every status is mapped to a `HostError`.
//! Memory the host returns was allocated through the SDK's `proxy_on_memory_allocate`, which
//! hands out exactly-sized global-allocator blocks, so it is taken over as a `Vec<u8>`.

use super::profile;
use crate::header_pairs;
use abi::*;
use std::fmt;
use std::ptr::{null, null_mut};

mod abi;
mod http;
mod shared;

pub use http::*;
pub use shared::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// A host call that did not return `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host call {} returned status {}", self.call, self.status)
    }
}

pub type HostResult<T> = Result<T, HostError>;

fn check(call: &'static str, status: u32) -> HostResult<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { call, status })
    }
}

/// Makes a host call (timed under `--features profile`) and maps its status.
fn checked(call: &'static str, f: impl FnOnce() -> u32) -> HostResult<()> {
    check(call, profile::host(call, f))
}

/// Takes ownership of a host-allocated block (see the module comment).
fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host allocated `size` bytes at `data` via `proxy_on_memory_allocate`, which
    // leaks a `Box<[u8]>` of exactly that size from the global allocator.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn log(level: LogLevel, message: &str) -> HostResult<()> {
    // SAFETY: pointer and length describe a live string.
    checked("log", || unsafe {
        proxy_log(level as u32, message.as_ptr(), message.len())
    })
}

pub fn log_level() -> HostResult<LogLevel> {
    let mut level = 0u32;
    // SAFETY: `level` is a valid out-pointer.
    checked("get_log_level", || unsafe {
        proxy_get_log_level(&mut level)
    })?;
    Ok(match level {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        4 => LogLevel::Error,
        _ => LogLevel::Critical,
    })
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn now_nanos() -> HostResult<u64> {
    let mut t = 0u64;
    // SAFETY: `t` is a valid out-pointer.
    checked("get_current_time_nanoseconds", || unsafe {
        proxy_get_current_time_nanoseconds(&mut t)
    })?;
    Ok(t)
}

/// A property path is its segments joined by NUL bytes.
fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// Reads an Envoy attribute (`request.time`, `upstream.address`...); `None` if absent.
pub fn property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let key = property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid key slice and out-pointers.
    let status = profile::host("get_property", || unsafe {
        proxy_get_property(key.as_ptr(), key.len(), &mut data, &mut size)
    });
    match status {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        status => Err(HostError {
            call: "get_property",
            status,
        }),
    }
}

/// Writes filter state `wasm.<name>`, readable by Envoy's access log formatters.
pub fn set_property(path: &[&str], value: &[u8]) -> HostResult<()> {
    let key = property_path(path);
    // SAFETY: valid key and value slices.
    checked("set_property", || unsafe {
        proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

fn buffer(kind: u32, start: usize, max: usize) -> HostResult<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid out-pointers.
    let status = profile::host("get_buffer_bytes", || unsafe {
        proxy_get_buffer_bytes(kind, start, max, &mut data, &mut size)
    });
    match status {
        OK => Ok(take(data, size).unwrap_or_default()),
        NOT_FOUND => Ok(Vec::new()),
        status => Err(HostError {
            call: "get_buffer",
            status,
        }),
    }
}

/// Answers the request locally; `details` shows as Envoy's response code details.
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HostResult<()> {
    let headers = header_pairs::encode(headers);
    // SAFETY: valid slices; -1 means "not a gRPC reply".
    checked("send_local_response", || unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

pub fn plugin_configuration() -> HostResult<Vec<u8>> {
    buffer(PLUGIN_CONFIGURATION, 0, usize::MAX)
}

/// Asks Envoy to pick the route again after a routing header changed. Envoy 1.40 also clears
/// the cache on any header write from wasm, but that is an implementation detail (envoy#36671).
pub fn clear_route_cache() -> HostResult<()> {
    let name = "clear_route_cache";
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid name slice, no arguments, valid out-pointers.
    let status = profile::host("call_foreign_function", || unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, &mut data, &mut size)
    });
    drop(take(data, size));
    check("clear_route_cache", status)
}

/// Asks Envoy to call the root context's `on_tick` every `millis` milliseconds.
pub fn set_tick_period(millis: u32) -> HostResult<()> {
    // SAFETY: a plain value.
    checked("set_tick_period_milliseconds", || unsafe {
        proxy_set_tick_period_milliseconds(millis)
    })
}

/// The message of a gRPC call's answer.
pub fn grpc_response(len: usize) -> HostResult<Vec<u8>> {
    buffer(GRPC_RECEIVE_BUFFER, 0, len)
}
