//! The request's and response's headers and bodies.

use super::abi::*;
use super::{HostError, HostResult, buffer, checked, take};
use crate::filter::profile;
use crate::header_pairs;
use std::ptr::null_mut;

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
    checked("get_header_map_pairs", || unsafe {
        proxy_get_header_map_pairs(map, &mut data, &mut size)
    })?;
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
    checked("replace_header_map_value", || unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
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
    checked("remove_header_map_value", || unsafe {
        proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len())
    })
}

pub fn set_response_header(name: &str, value: &str) -> HostResult<()> {
    set_header(RESPONSE_HEADERS, name, value)
}

pub fn remove_response_header(name: &str) -> HostResult<()> {
    // SAFETY: valid key slice.
    checked("remove_header_map_value", || unsafe {
        proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len())
    })
}

pub fn response_body(start: usize, len: usize) -> HostResult<Vec<u8>> {
    buffer(RESPONSE_BODY, start, len)
}

/// Replaces `len` bytes at `start` of the buffered request body. Envoy supports replacing a
/// prefix (start 0) or appending, not arbitrary ranges.
pub fn set_request_body(start: usize, len: usize, bytes: &[u8]) -> HostResult<()> {
    // SAFETY: valid data slice.
    checked("set_buffer_bytes", || unsafe {
        proxy_set_buffer_bytes(REQUEST_BODY, start, len, bytes.as_ptr(), bytes.len())
    })
}

/// Replaces `len` bytes at `start` of the response body chunk being processed (0 and the
/// chunk's size: the whole chunk).
pub fn set_response_body(start: usize, len: usize, bytes: &[u8]) -> HostResult<()> {
    // SAFETY: valid data slice.
    checked("set_buffer_bytes", || unsafe {
        proxy_set_buffer_bytes(RESPONSE_BODY, start, len, bytes.as_ptr(), bytes.len())
    })
}
