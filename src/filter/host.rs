//! Every call into Envoy goes through this module and returns a `Result`.
//!
//! The SDK's `hostcalls` panic on any status they do not expect (a panic kills the worker's VM),
//! so the ABI functions are imported here directly and every status is mapped to a `HostError`.
//! Memory the host returns was allocated through the SDK's `proxy_on_memory_allocate`, which
//! hands out exactly-sized global-allocator blocks, so it is taken over as a `Vec<u8>`.

use super::profile;
use crate::header_pairs;
use std::fmt;
use std::ptr::{null, null_mut};

// Status codes of the proxy-wasm ABI 0.2.1.
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const EMPTY: u32 = 7;
const CAS_MISMATCH: u32 = 8;

// Map and buffer selectors of the ABI.
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const GRPC_RECEIVE_BUFFER: u32 = 5;
const PLUGIN_CONFIGURATION: u32 = 7;

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

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

fn check(call: &'static str, status: u32) -> HostResult<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { call, status })
    }
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
    check(
        "log",
        profile::host("log", || unsafe {
            proxy_log(level as u32, message.as_ptr(), message.len())
        }),
    )
}

pub fn log_level() -> HostResult<LogLevel> {
    let mut level = 0u32;
    // SAFETY: `level` is a valid out-pointer.
    check(
        "get_log_level",
        profile::host("get_log_level", || unsafe {
            proxy_get_log_level(&mut level)
        }),
    )?;
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
    check(
        "get_current_time",
        profile::host("get_current_time_nanoseconds", || unsafe {
            proxy_get_current_time_nanoseconds(&mut t)
        }),
    )?;
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
    check(
        "set_property",
        profile::host("set_property", || unsafe {
            proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len())
        }),
    )
}

/// Every request header, in one host call (instead of one per name).
pub fn request_headers() -> HostResult<Vec<(String, String)>> {
    headers(REQUEST_HEADERS)
}

/// Every response header, in one host call.
pub fn response_headers() -> HostResult<Vec<(String, String)>> {
    headers(RESPONSE_HEADERS)
}

fn headers(map: u32) -> HostResult<Vec<(String, String)>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid out-pointers.
    let status = profile::host("get_header_map_pairs", || unsafe {
        proxy_get_header_map_pairs(map, &mut data, &mut size)
    });
    check("get_header_map_pairs", status)?;
    Ok(take(data, size).map_or_else(Vec::new, |bytes| header_pairs::decode(&bytes)))
}

fn header(map: u32, name: &str) -> HostResult<Option<String>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid key slice and out-pointers.
    let status = profile::host("get_header_map_value", || unsafe {
        proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size)
    });
    match status {
        OK => Ok(take(data, size).map(|v| String::from_utf8_lossy(&v).into_owned())),
        NOT_FOUND => Ok(None),
        status => Err(HostError {
            call: "get_header",
            status,
        }),
    }
}

fn set_header(map: u32, name: &str, value: &str) -> HostResult<()> {
    // SAFETY: valid key and value slices.
    check(
        "replace_header",
        profile::host("replace_header_map_value", || unsafe {
            proxy_replace_header_map_value(
                map,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        }),
    )
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

pub fn request_header(name: &str) -> HostResult<Option<String>> {
    header(REQUEST_HEADERS, name)
}

pub fn response_header(name: &str) -> HostResult<Option<String>> {
    header(RESPONSE_HEADERS, name)
}

/// Sets a request header, replacing any value the client sent.
pub fn set_request_header(name: &str, value: &str) -> HostResult<()> {
    set_header(REQUEST_HEADERS, name, value)
}

pub fn request_body(start: usize, len: usize) -> HostResult<Vec<u8>> {
    buffer(REQUEST_BODY, start, len)
}

pub fn remove_request_header(name: &str) -> HostResult<()> {
    // SAFETY: valid key slice.
    check(
        "remove_header",
        profile::host("remove_header_map_value", || unsafe {
            proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len())
        }),
    )
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
    check(
        "send_local_response",
        profile::host("send_local_response", || unsafe {
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
        }),
    )
}

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

pub fn set_response_header(name: &str, value: &str) -> HostResult<()> {
    set_header(RESPONSE_HEADERS, name, value)
}

pub fn remove_response_header(name: &str) -> HostResult<()> {
    // SAFETY: valid key slice.
    check(
        "remove_header",
        profile::host("remove_header_map_value", || unsafe {
            proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len())
        }),
    )
}

pub fn response_body(start: usize, len: usize) -> HostResult<Vec<u8>> {
    buffer(RESPONSE_BODY, start, len)
}

/// Replaces `len` bytes at `start` of the buffered request body. Envoy supports replacing a
/// prefix (start 0) or appending, not arbitrary ranges.
pub fn set_request_body(start: usize, len: usize, bytes: &[u8]) -> HostResult<()> {
    // SAFETY: valid data slice.
    check(
        "set_buffer",
        profile::host("set_buffer_bytes", || unsafe {
            proxy_set_buffer_bytes(REQUEST_BODY, start, len, bytes.as_ptr(), bytes.len())
        }),
    )
}

/// Replaces `len` bytes at `start` of the response body chunk being processed (0 and the
/// chunk's size: the whole chunk).
pub fn set_response_body(start: usize, len: usize, bytes: &[u8]) -> HostResult<()> {
    // SAFETY: valid data slice.
    check(
        "set_buffer",
        profile::host("set_buffer_bytes", || unsafe {
            proxy_set_buffer_bytes(RESPONSE_BODY, start, len, bytes.as_ptr(), bytes.len())
        }),
    )
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

pub fn define_metric(kind: MetricType, name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: valid name slice and out-pointer.
    check(
        "define_metric",
        profile::host("define_metric", || unsafe {
            proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id)
        }),
    )?;
    Ok(id)
}

/// Records a histogram value.
pub fn record_metric(id: u32, value: u64) -> HostResult<()> {
    // SAFETY: plain values.
    check(
        "record_metric",
        profile::host("record_metric", || unsafe {
            proxy_record_metric(id, value)
        }),
    )
}

pub fn increment_metric(id: u32, delta: i64) -> HostResult<()> {
    // SAFETY: plain values.
    check(
        "increment_metric",
        profile::host("increment_metric", || unsafe {
            proxy_increment_metric(id, delta)
        }),
    )
}

/// Asks Envoy to call the root context's `on_tick` every `millis` milliseconds.
pub fn set_tick_period(millis: u32) -> HostResult<()> {
    // SAFETY: a plain value.
    check(
        "set_tick_period",
        profile::host("set_tick_period_milliseconds", || unsafe {
            proxy_set_tick_period_milliseconds(millis)
        }),
    )
}

/// Registers this root context as the reader of the shared queue `name` (created if needed;
/// every VM of the `vm_id` sees the same queue, and the last to register is notified).
pub fn register_queue(name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: valid name slice and out-pointer.
    check(
        "register_shared_queue",
        profile::host("register_shared_queue", || unsafe {
            proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id)
        }),
    )?;
    Ok(id)
}

pub fn enqueue(queue: u32, value: &[u8]) -> HostResult<()> {
    // SAFETY: valid value slice.
    check(
        "enqueue_shared_queue",
        profile::host("enqueue_shared_queue", || unsafe {
            proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len())
        }),
    )
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

/// The message of a gRPC call's answer.
pub fn grpc_response(len: usize) -> HostResult<Vec<u8>> {
    buffer(GRPC_RECEIVE_BUFFER, 0, len)
}
