//! End-to-end tests: the built .wasm inside a real Envoy (the shipped bootstrap on ephemeral
//! ports) against mock Anthropic upstreams. `make test` builds what they need and runs them;
//! by hand: `make build venv && cargo test --features e2e --test e2e`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// Shared with the benchmarks, which use parts the tests do not.
#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

mod cache;
mod clouds;
mod deploy;
mod faults;
mod foundation;
mod identity;
mod inspection;
mod keys;
mod make_run;
mod replicas;
mod routing;
mod security;
mod sessions;
mod usage;
mod vendor_mocks;
