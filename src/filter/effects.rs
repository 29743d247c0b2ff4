//! What the filter does to a request on the pure core's behalf, shared by the downstream and
//! upstream instances: header changes, local replies, and what a response teaches about the
//! pool key that served it. Failures are logged with the request's id; none stops a request.

use super::host;
use super::stats::Stats;
use super::store::EnvoyStore;
use crate::keys::{access, pool};
use crate::metrics;
use crate::plan::{HeaderOp, Reply};
use crate::splice;

/// Milliseconds since the epoch (0 if Envoy cannot say).
pub fn now_ms() -> u64 {
    host::now_nanos().map_or(0, |n| n / 1_000_000)
}

pub fn apply_headers(id: u32, ops: &[HeaderOp]) {
    for op in ops {
        let result = match op {
            HeaderOp::Set(name, value) => host::set_request_header(name, value),
            HeaderOp::Remove(name) => host::remove_request_header(name),
        };
        if let Err(e) = result {
            // The name only: the value can be a key.
            let (HeaderOp::Set(name, _) | HeaderOp::Remove(name)) = op;
            log::warn!("#{id} header {name}: {e}");
        }
    }
}

/// Answers the request locally in the API's error envelope, and counts the refusal.
pub fn reply(id: u32, stats: &Stats, r: &Reply) {
    stats.add(&metrics::refused(r.reason()), 1);
    let retry = r.retry_after_s.map(|s| s.to_string());
    let mut headers = vec![("content-type", "application/json")];
    if let Some(retry) = &retry {
        headers.push(("retry-after", retry));
    }
    if let Err(e) = host::send_local_response(r.status, r.details, &headers, &r.body()) {
        log::warn!("#{id} cannot reply: {e}");
    }
}

/// A response's headers, read from Envoy in one host call (a lookup each would cost one each).
pub struct ResponseHeaders(Vec<(String, String)>);

impl ResponseHeaders {
    pub fn load(id: u32) -> ResponseHeaders {
        ResponseHeaders(host::response_headers().unwrap_or_else(|e| {
            log::debug!("#{id} {e}");
            Vec::new()
        }))
    }

    /// The first value of `name` (lower case, as Envoy keeps names).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn status(&self) -> Option<u16> {
        self.get(":status").and_then(|s| s.parse().ok())
    }
}

/// The response being encoded came from the upstream (not a local reply of Envoy's).
pub fn from_upstream() -> bool {
    host::property(&["response", "code_details"])
        .ok()
        .flatten()
        .is_some_and(|d| d == b"via_upstream")
}

/// Learns from the response's status and rate-limit headers about key `k` of `p` (shared by
/// every worker), counting a cooldown it starts.
pub fn learn_key(stats: &Stats, p: &pool::Pool, k: usize, headers: &ResponseHeaders) {
    let status = headers.status().unwrap_or(0);
    let observed = pool::observe(status, &mut |name| headers.get(name).map(str::to_owned));
    if access::learn(p, k, &observed, &EnvoyStore, now_ms()) {
        if let Some(key) = p.keys.get(k) {
            stats.add(&metrics::key_cooldowns(&p.name, &key.alias), 1);
        }
    }
}

/// Why a body could not be rewritten.
pub enum WriteError {
    /// Nothing was changed yet: the body goes out as it was.
    Untouched,
    /// The buffer was half rewritten: the request must not go out.
    Broken,
}

/// Writes a request body's new bytes into Envoy's buffer: the whole body (`new`, `len` the old
/// length), or the planned splices. Returns the new length; `content-length` is the caller's to
/// set (Envoy does not fix it).
pub fn write_body(
    id: u32,
    body: &[u8],
    edits: &[splice::Edit],
    new: Option<&[u8]>,
) -> Result<usize, WriteError> {
    if let Some(new) = new {
        return match host::set_request_body(0, body.len(), new) {
            Ok(()) => Ok(new.len()),
            Err(e) => {
                log::warn!("#{id} cannot rewrite the body: {e}");
                Err(WriteError::Untouched)
            }
        };
    }
    let (end, pieces) = splice::head_pieces(body, edits);
    // Envoy's buffer takes a prepend after draining from its start (envoy-wasm.md): the head is
    // drained once and its pieces are prepended last to first, so the VM never builds a copy of
    // the body and the tail stays in Envoy's buffer untouched.
    for (i, piece) in pieces.iter().rev().enumerate() {
        // The first call drains the head (even with nothing to put back); empty pieces after
        // it change nothing.
        if i > 0 && piece.is_empty() {
            continue;
        }
        let drain = if i == 0 { end } else { 0 };
        if let Err(e) = host::set_request_body(0, drain, piece) {
            log::warn!("#{id} cannot rewrite the body: {e}");
            return Err(if i == 0 {
                WriteError::Untouched
            } else {
                WriteError::Broken
            });
        }
    }
    let head: usize = pieces.iter().map(|p| p.len()).sum();
    Ok(body.len() - end + head)
}
