//! The service over a real Redis (`redis-server` from Debian's package; `.ci/run` installs it):
//! two service instances share the counters as two replicas would, a Redis that dies is an
//! error status within the timeout, and a restarted one is served again, its counters empty.
//! Every wait is bounded; every process started here is killed by its pid.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use claude_gateway_ratelimit::limits::{Limits, MINUTE_SECONDS};
use claude_gateway_ratelimit::service::{LIMIT_HEADER, Service, system_clock};
use claude_gateway_ratelimit::sessions::Sessions;
use claude_gateway_ratelimit::store::{self, RedisOptions, Store};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Killed, free_port, redis};
use tonic::transport::Channel;

const DOMAIN: &str = "claude-gateway";
const CONFIG: &str = r#"
consumers:
- id: alice
  key_sha256: [270b1d89e5b0deffb2f2e5de4f1466b83d363bb3a99a4563ec2e37fcefc78a4a]
  cost_center: ci
  limits: {requests_per_minute: 3, output_tokens_per_minute: 100}
budgets:
  ci: {daily_usd: 20}
"#;
const TIMEOUT: Duration = Duration::from_millis(250);

/// One service instance, in-process on an ephemeral port (a replica's view of the RLS).
async fn instance(redis_port: u16) -> RateLimitServiceClient<Channel> {
    let config = claude_gateway_ratelimit::config::parse(CONFIG).unwrap();
    let limits = Limits::from_config(&config);
    let store = Arc::new(Store::default());
    tokio::spawn(store::supervise(
        store.clone(),
        RedisOptions {
            url: format!("redis://127.0.0.1:{redis_port}"),
            timeout: TIMEOUT,
            probe_every: Duration::from_millis(200),
        },
        limits.limitador_limits(DOMAIN, MINUTE_SECONDS),
        |line| eprintln!("service: {line}"),
    ));
    let sessions = Sessions::new(store.clone(), Duration::from_secs(3600), TIMEOUT * 2);
    let service = Service::new(DOMAIN, limits, store, system_clock(), TIMEOUT * 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(claude_gateway_ratelimit::serve(
        listener,
        Arc::new(service),
        Arc::new(sessions),
        std::future::pending(),
    ));
    let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        if let Ok(channel) = endpoint.connect().await {
            break RateLimitServiceClient::new(channel);
        }
        assert!(Instant::now() < deadline, "the service did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Ready when the probe (a call with nothing to count) is answered OK: Redis connected.
    while call(&mut client, vec![]).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the service did not connect to Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
}

fn d(entries: &[(&str, &str)], hits: Option<u64>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        hits_addend: hits.map(|value| UInt64Value { value }),
        ..Default::default()
    }
}

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    claude_gateway::time::rfc3339(now.as_nanos() as u64)
        .chars()
        .take(10)
        .collect()
}

async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    descriptors: Vec<RateLimitDescriptor>,
) -> Result<RateLimitResponse, tonic::Status> {
    let request = RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors,
        hits_addend: 0,
    };
    tokio::time::timeout(Duration::from_secs(5), client.should_rate_limit(request))
        .await
        .expect("no answer within 5 s")
        .map(|r| r.into_inner())
}

fn requests() -> RateLimitDescriptor {
    d(&[("consumer", "alice"), ("kind", "requests")], None)
}

fn over(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::OverLimit as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_shared_and_survive_nothing_but_an_outage() {
    let port = free_port();
    let mut redis_server = redis(port);
    let mut a = instance(port).await;
    let mut b = instance(port).await;

    // Requests per minute, across the two instances: 2 on A, 1 on B, then both refuse.
    assert!(!over(&call(&mut a, vec![requests()]).await.unwrap()));
    assert!(!over(&call(&mut a, vec![requests()]).await.unwrap()));
    let r = call(&mut b, vec![requests()]).await.unwrap();
    assert!(!over(&r));
    assert_eq!(r.statuses[0].limit_remaining, 0);
    for client in [&mut a, &mut b] {
        let r = call(client, vec![requests()]).await.unwrap();
        assert!(over(&r));
        let header = r
            .response_headers_to_add
            .iter()
            .find(|h| h.key == LIMIT_HEADER);
        assert_eq!(
            header.map(|h| h.value.as_str()),
            Some("requests_per_minute")
        );
        assert_eq!(r.statuses[0].limit_remaining, 0, "refusals are not counted");
    }

    // A charge on A over the limit; B's admission check refuses.
    let out = |hits| {
        d(
            &[("consumer", "alice"), ("kind", "output_tokens")],
            Some(hits),
        )
    };
    assert!(!over(&call(&mut a, vec![out(150)]).await.unwrap()));
    let r = call(&mut b, vec![out(0)]).await.unwrap();
    assert!(over(&r));
    let body = String::from_utf8(r.raw_body).unwrap();
    assert!(
        body.contains("Consumer `alice` is limited to 100 output tokens per minute."),
        "{body}"
    );

    // A refund (Envoy's is_negative_hits) gives 60 back: B's check passes again.
    let mut refund = out(60);
    refund.is_negative_hits = true;
    call(&mut a, vec![refund]).await.unwrap();
    let r = call(&mut b, vec![out(0)]).await.unwrap();
    assert!(!over(&r));
    assert_eq!(r.statuses[0].limit_remaining, 10);

    // A daily budget, keyed on the window.
    let day = today();
    let usd = |hits| {
        d(
            &[("cost_center", "ci"), ("kind", "usd_day"), ("window", &day)],
            Some(hits),
        )
    };
    call(&mut b, vec![usd(20_000_000)]).await.unwrap();
    let r = call(&mut a, vec![usd(0)]).await.unwrap();
    assert!(over(&r));
    assert!(
        String::from_utf8_lossy(&r.raw_body)
            .contains("The daily budget of cost center `ci` ($20.00) is spent")
    );

    // Redis stalls (SIGSTOP: connections open, no answers): an error status once the
    // service's bound (2 x 250 ms) is over, not a hang; once it resumes, served again with
    // its counters as they were.
    let pid = redis_server.0.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let started = Instant::now();
    let e = call(&mut a, vec![requests()]).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    eprintln!("redis stopped: error status after {took:?} ({e:?})");
    signal("-CONT");
    let resumed = Instant::now();
    let r = loop {
        match call(&mut a, vec![requests()]).await {
            Ok(r) => break r,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable);
                assert!(
                    resumed.elapsed() < Duration::from_secs(10),
                    "not served again: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!("redis resumed: served again after {:?}", resumed.elapsed());
    assert!(over(&r), "the counters were kept: {r:?}");

    // Redis dies: an error status, within the service's bound (2 x 250 ms) and not a hang.
    redis_server.0.kill().unwrap();
    redis_server.0.wait().unwrap();
    let killed = Instant::now();
    let mut first_error = None;
    for _ in 0..3 {
        let started = Instant::now();
        let e = call(&mut a, vec![requests()]).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        first_error.get_or_insert(took);
    }
    eprintln!(
        "redis killed: first error status after {:?}, 3 calls answered in {:?}",
        first_error.unwrap(),
        killed.elapsed()
    );
    // The probe (no descriptor) says so too.
    let e = call(&mut b, vec![]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);

    // Redis back on the same port, empty (no persistence): served again, counters from zero.
    drop(redis_server);
    let _redis_server = redis(port);
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(10);
    for client in [&mut a, &mut b] {
        let r = loop {
            match call(client, vec![requests()]).await {
                Ok(r) => break r,
                Err(e) => {
                    assert_eq!(e.code(), tonic::Code::Unavailable);
                    assert!(Instant::now() < deadline, "not served again: {e:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert!(!over(&r));
        eprintln!("served again {:?} after the restart", restarted.elapsed());
    }
    let r = call(&mut a, vec![requests(), out(0), usd(0)])
        .await
        .unwrap();
    assert!(!over(&r));
    assert_eq!(
        r.statuses[0].limit_remaining, 0,
        "3 of 3: the two above and this one"
    );
}

#[test]
fn the_binary_logs_its_limits_serves_and_stops_on_sigterm() {
    // No Redis on this port: it starts all the same, says so, and stops when told.
    let redis_port = free_port();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_claude-gateway-ratelimit"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/example-config.yaml"),
        ])
        .args(["--listen", &listen])
        .args([
            "--redis",
            &format!("redis://user:hunter2@127.0.0.1:{redis_port}"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let stderr = child.0.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.iter().any(|l: &String| l.contains(": down (")) {
        let left = deadline.saturating_duration_since(Instant::now());
        log.push(seen.recv_timeout(left).expect("no `down` line within 10 s"));
    }
    let start = log
        .iter()
        .find(|l| l.contains("limits loaded"))
        .expect("a start line");
    assert!(
        start.contains("7 limits loaded from 2 consumers and 2 budgets"),
        "{start}"
    );
    assert!(log.iter().all(|l| !l.contains("hunter2")), "{log:?}");
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The child has exited: its stderr is at its end, so this ends too.
    let rest: Vec<String> = seen.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM: stopping")),
        "{rest:?}"
    );
}
