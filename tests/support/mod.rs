//! Shared pieces of the end-to-end tests.

pub mod anthropic;
pub mod bodies;
/// The bootstrap renderer (`render/`): `Bootstrap`, `Upstream`, `ecds_resource`.
pub use claude_gateway_render as bootstrap;
pub mod cache_sim;
pub mod envoy;
pub mod fakes;
pub mod mock;
pub mod ratelimit;
pub mod replicas;
pub mod vendors;

use std::time::Duration;

/// An HTTP/1.1 client with a bounded timeout and no automatic decompression.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// An HTTP/2 client speaking cleartext HTTP/2 with prior knowledge (h2c).
pub fn h2_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}
