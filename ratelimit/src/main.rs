//! `claude-gateway-ratelimit`: the gateway's global rate-limit service (see the crate docs).

use claude_gateway_ratelimit::limits::{Limits, MINUTE_SECONDS};
use claude_gateway_ratelimit::service::{Service, system_clock};
use claude_gateway_ratelimit::sessions::Sessions;
use claude_gateway_ratelimit::store::{self, RedisOptions, Store};
use claude_gateway_ratelimit::{config, log, serve};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: claude-gateway-ratelimit --config <plugin configuration, JSON or YAML>
        [--listen 127.0.0.1:8081] [--redis redis://127.0.0.1:6379] [--domain claude-gateway]
        [--redis-timeout-ms 250] [--session-ttl-hours 168]

Envoy's global rate-limit service (envoy.service.ratelimit.v3.RateLimitService, gRPC over
cleartext HTTP/2) for the gateway's per-consumer limits and per-cost-center budgets, counted in
Redis so they hold across Envoy replicas. On the same listener, the gateway's session store
(claude_gateway.sessions.v1.Sessions): per-session totals in the same Redis, each session kept
--session-ttl-hours (1 to 8760; 168 = 7 days) after its last turn, which bounds Redis's memory.
Exits on SIGTERM or SIGINT.";

struct Args {
    config: String,
    listen: String,
    redis: String,
    domain: String,
    timeout: Duration,
    session_ttl: Duration,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        config: String::new(),
        listen: "127.0.0.1:8081".to_owned(),
        redis: "redis://127.0.0.1:6379".to_owned(),
        domain: "claude-gateway".to_owned(),
        timeout: Duration::from_millis(250),
        session_ttl: Duration::from_secs(168 * 3600),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" => out.config = value,
            "--listen" => out.listen = value,
            "--redis" => out.redis = value,
            "--domain" => out.domain = value,
            "--redis-timeout-ms" => {
                let ms: u64 = value
                    .parse()
                    .ok()
                    .filter(|ms| (1..=60_000).contains(ms))
                    .ok_or("--redis-timeout-ms must be 1 to 60000")?;
                out.timeout = Duration::from_millis(ms);
            }
            "--session-ttl-hours" => {
                let hours: u64 = value
                    .parse()
                    .ok()
                    .filter(|h| (1..=8760).contains(h))
                    .ok_or("--session-ttl-hours must be 1 to 8760")?;
                out.session_ttl = Duration::from_secs(hours * 3600);
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if out.config.is_empty() {
        return Err("--config is required".to_owned());
    }
    if out.domain.is_empty() {
        return Err("--domain must not be empty".to_owned());
    }
    Ok(out)
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed here, before anything is logged,
/// so a signal sent as soon as the service says it started is not a default (abrupt) death.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let handler = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
    let mut term = handler(SignalKind::terminate())?;
    let mut int = handler(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => log("SIGTERM: stopping"),
            _ = int.recv() => log("SIGINT: stopping"),
        }
    })
}

async fn run(args: Args) -> Result<(), String> {
    let shutdown = shutdown_signal()?;
    let config = config::load(&args.config)?;
    store::check_url(&args.redis)?;
    let limits = Limits::from_config(&config);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    log(&format!(
        "serving domain `{}` on {} (gRPC), counters in {}; {} limits loaded from {} consumers \
         and {} budgets ({}); sessions kept {} h after their last turn",
        args.domain,
        args.listen,
        store::redacted(&args.redis),
        limits.len(),
        config.consumers.len(),
        config.budgets.len(),
        limits.summary(),
        args.session_ttl.as_secs() / 3600
    ));
    let store = Arc::new(Store::default());
    tokio::spawn(store::supervise(
        store.clone(),
        RedisOptions {
            url: args.redis,
            timeout: args.timeout,
            probe_every: Duration::from_secs(1),
        },
        limits.limitador_limits(&args.domain, MINUTE_SECONDS),
        log,
    ));
    let sessions = Sessions::new(store.clone(), args.session_ttl, args.timeout * 2);
    let service = Service::new(
        &args.domain,
        limits,
        store,
        system_clock(),
        args.timeout * 2,
    );
    serve(listener, Arc::new(service), Arc::new(sessions), shutdown).await
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("claude-gateway-ratelimit: {e}\n");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(&e);
            ExitCode::FAILURE
        }
    }
}
