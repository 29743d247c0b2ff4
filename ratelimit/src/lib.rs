//! The gateway's global rate-limit service: Envoy's `envoy.service.ratelimit.v3.RateLimitService`
//! over Kuadrant's limitador (counters in Redis), so per-consumer limits and per-cost-center
//! budgets hold across every Envoy replica. The limits come from the gateway's own plugin
//! configuration; the descriptor contract is in [`descriptor`], the semantics in [`service`],
//! the Redis supervision in [`store`]. On the same listener, [`sessions`]: the filter's
//! per-session totals, kept in the same Redis so they too hold across replicas.

pub mod config;
pub mod descriptor;
pub mod limits;
pub mod service;
pub mod sessions;
pub mod store;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

/// One log line on stderr, timestamped (UTC).
pub fn log(message: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    eprintln!(
        "{} claude-gateway-ratelimit: {message}",
        claude_gateway::time::rfc3339(now)
    );
}

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use std::future::Future;
use std::sync::Arc;

/// Serves `service` and `sessions` on `listener` (gRPC, cleartext HTTP/2) until `shutdown`
/// completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<service::Service>,
    sessions: Arc<sessions::Sessions>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::from_arc(service))
        .add_service(sessions::Server::new(sessions))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}
