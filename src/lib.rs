//! An Envoy proxy-wasm HTTP filter for Anthropic Messages API traffic.
//!
//! Everything outside `filter/` is plain Rust with no host dependency, tested natively; `filter/`
//! is the only code that talks to Envoy. Callbacks gather input, ask the pure core for a plan,
//! and apply it with a few host calls.

pub mod accounting;
pub mod audit;
pub mod cache;
pub mod config;
pub mod cost;
pub mod dialect;
pub mod eventstream;
pub mod global_limits;
pub mod header_pairs;
pub mod json;
pub mod keys;
pub mod metrics;
pub mod pattern;
pub mod plan;
pub mod proto;
pub mod request;
pub mod routing;
pub mod secrets;
pub mod session;
pub mod sessions;
pub mod splice;
pub mod sse;
pub mod text;
pub mod time;
pub mod tools;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod filter;
