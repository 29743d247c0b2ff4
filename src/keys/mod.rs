//! Virtual keys, upstream key pools, per-consumer limits and budgets. Pure code over a
//! [`SharedStore`] (Envoy's shared data in the filter, an in-memory map in tests) and an
//! injected clock, so the state every Envoy worker shares is tested natively.

pub mod access;
pub mod jwt;
pub mod limits;
pub mod models;
pub mod pool;
pub mod refusals;

use crate::pattern::Pattern;
use sha2::{Digest, Sha256};
use std::fmt;

/// A key-value store with compare-and-swap, shared by the Envoy workers of one process.
pub trait SharedStore {
    /// The value and its version (`cas`), or `None` if absent.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes if the version is still `cas` (0 writes unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Write;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// Someone else wrote first: read again and retry.
    Conflict,
    Failed,
}

/// Computes a new value (`None`: leave it) and a result from the current value.
pub type Modify<'a, T> = dyn FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T) + 'a;

/// Read-modify-write with compare-and-swap, retried a bounded number of times. `f` returns the
/// new value and a result; `None` if the store keeps failing.
pub fn update<T>(store: &dyn SharedStore, key: &str, f: &mut Modify<'_, T>) -> Option<T> {
    for _ in 0..16 {
        let current = store.get(key);
        let cas = current.as_ref().map_or(0, |c| c.1);
        let (new, out) = f(current.as_ref().map(|c| c.0.as_slice()));
        let Some(new) = new else {
            return Some(out);
        };
        match store.set(key, &new, cas) {
            Write::Done => return Some(out),
            Write::Conflict => continue,
            Write::Failed => return None,
        }
    }
    None
}

/// Lowercase hex SHA-256 of a client key, the form consumers' keys are configured in.
pub fn sha256_hex(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Lower-case hex, written into one string (a `format!` per byte would allocate 32 times).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

/// Per-consumer limits (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: u64,
    /// Uncached input plus cache writes (Anthropic's own rule: cache reads do not count).
    pub input_tokens_per_minute: u64,
    pub output_tokens_per_minute: u64,
}

/// A client of the gateway, known by the SHA-256 digests of its virtual keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Consumer {
    pub id: String,
    pub digests: Vec<String>,
    pub cost_center: Option<String>,
    /// Route names it may use (empty: all).
    pub routes: Vec<String>,
    /// Models it may ask for (empty: all).
    pub models: Vec<Pattern>,
    pub limits: Limits,
    /// The consumer's own spend budget (per developer), on top of its cost center's.
    pub budget: ConsumerBudget,
    /// The group rule a token's consumer was admitted by (`None` for a virtual key's).
    pub group: Option<String>,
}

/// A consumer's own spend budget in micro-USD per UTC day and calendar month (`None`: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerBudget {
    pub daily: Option<u64>,
    pub monthly: Option<u64>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Digests are not secrets, but nothing about keys belongs in a log line.
        f.debug_struct("Consumer")
            .field("id", &self.id)
            .field("cost_center", &self.cost_center)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Whether the consumer may send `model` through `route`.
    pub fn allowed(&self, route: &str, model: Option<&str>) -> bool {
        let model_ok = self.models.is_empty()
            || model.is_some_and(|m| self.models.iter().any(|p| p.matches(m)));
        self.allowed_route(route) && model_ok
    }

    /// Whether the consumer may use `route` at all.
    pub fn allowed_route(&self, route: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == route)
    }
}

/// The credential a client presented: `x-api-key`, then `authorization: Bearer` (Claude Code
/// sends the latter through gateways; helpers send both).
pub fn presented<'a>(x_api_key: Option<&'a str>, authorization: Option<&'a str>) -> Vec<&'a str> {
    let bearer = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    x_api_key
        .map(str::trim)
        .into_iter()
        .chain(bearer)
        .filter(|k| !k.is_empty())
        .collect()
}

/// The consumer one of the presented keys belongs to (its index in `consumers`).
pub fn authenticate(consumers: &[Consumer], keys: &[&str]) -> Option<usize> {
    keys.iter().find_map(|k| {
        let digest = sha256_hex(k);
        consumers.iter().position(|c| c.digests.contains(&digest))
    })
}

/// Who a request's consumer is: one of the configuration's (a virtual key's, by index), or
/// one a verified token's claims made. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Configured(usize),
    Token(std::rc::Rc<Consumer>),
}

impl Caller {
    pub fn get<'a>(&'a self, consumers: &'a [Consumer]) -> Option<&'a Consumer> {
        match self {
            Caller::Configured(i) => consumers.get(*i),
            Caller::Token(c) => Some(c),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
