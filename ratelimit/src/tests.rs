//! The service's semantics over limitador's in-memory counters (the same async limiter and
//! code path as with Redis; tests/redis.rs runs them against a real Redis).

use crate::limits::{self, Kind, Limits, Subject};
use crate::memory::{Broken, Memory};
use crate::service::{Clock, LIMIT_HEADER, Service};
use crate::store::Store;
use claude_gateway::keys::{SharedStore, Write, access};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use limitador::AsyncRateLimiter;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOMAIN: &str = "claude-gateway";
/// 2026-11-21T10:00:00.000Z
const NOW: u64 = 1_795_255_200_000;

const CONFIG: &str = r#"
identity: virtual
key_pools:
  anthropic:
    keys: [{alias: key-1, env: ANTHROPIC_KEY_1}]
default_route: {name: anthropic, cluster: anthropic, key_pool: anthropic, auth: x-api-key}
consumers:
- id: alice
  key_sha256: [270b1d89e5b0deffb2f2e5de4f1466b83d363bb3a99a4563ec2e37fcefc78a4a]
  cost_center: ci
  limits: {requests_per_minute: 5, input_tokens_per_minute: 1000, output_tokens_per_minute: 100}
- id: bob
  key_sha256: [b8a5e1be87a3883087a7f928791f144cc4b640989aa9763d6b2c23348ce71c0a]
  cost_center: eng
budgets:
  ci: {daily_usd: 20}
  eng: {daily_usd: 1.5, monthly_usd: 3}
"#;

fn fixed(ms: u64) -> Clock {
    Arc::new(move || ms)
}

fn limiter_for(limits: &Limits, minute_seconds: u64) -> AsyncRateLimiter {
    let limits = limits.limitador_limits(DOMAIN, minute_seconds);
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(Memory::new(&limits)));
    for l in limits {
        limiter.add_limit(l);
    }
    limiter
}

fn service_with(config: &str, minute_seconds: u64) -> Service {
    let config = crate::config::parse(config).unwrap();
    let limits = Limits::from_config(&config);
    let store = Arc::new(Store::with(limiter_for(&limits, minute_seconds)));
    Service::new(
        DOMAIN,
        limits,
        store,
        fixed(NOW),
        Duration::from_millis(500),
    )
    .with_minute_seconds(minute_seconds)
}

fn service() -> Service {
    service_with(CONFIG, limits::MINUTE_SECONDS)
}

fn d(entries: &[(&str, &str)], hits: Option<u64>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        hits_addend: hits.map(|value| UInt64Value { value }),
        ..Default::default()
    }
}

fn requests(consumer: &str) -> RateLimitDescriptor {
    d(&[("consumer", consumer), ("kind", "requests")], None)
}

fn tokens(consumer: &str, kind: &str, hits: u64) -> RateLimitDescriptor {
    d(&[("consumer", consumer), ("kind", kind)], Some(hits))
}

fn usd(cc: &str, kind: &str, window: &str, hits: u64) -> RateLimitDescriptor {
    d(
        &[("cost_center", cc), ("kind", kind), ("window", window)],
        Some(hits),
    )
}

async fn call_hits(
    s: &Service,
    descriptors: Vec<RateLimitDescriptor>,
    hits: u32,
) -> RateLimitResponse {
    let request = RateLimitRequest {
        domain: DOMAIN.to_owned(),
        descriptors,
        hits_addend: hits,
    };
    s.decide(&request).await.unwrap()
}

async fn call(s: &Service, descriptors: Vec<RateLimitDescriptor>) -> RateLimitResponse {
    call_hits(s, descriptors, 0).await
}

fn over(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::OverLimit as i32
}

fn codes(r: &RateLimitResponse) -> Vec<i32> {
    r.statuses.iter().map(|s| s.code).collect()
}

fn header<'a>(r: &'a RateLimitResponse, key: &str) -> Option<&'a str> {
    r.response_headers_to_add
        .iter()
        .find(|h| h.key == key)
        .map(|h| h.value.as_str())
}

fn message(r: &RateLimitResponse) -> String {
    // The message alone: Envoy's local-reply mapper wraps it in the envelope.
    String::from_utf8(r.raw_body.clone()).unwrap()
}

const OK: i32 = Code::Ok as i32;
const OVER: i32 = Code::OverLimit as i32;

#[tokio::test]
async fn requests_are_counted_up_to_the_limit_and_refusals_are_not() {
    let s = service();
    for _ in 0..5 {
        let r = call(&s, vec![requests("alice")]).await;
        assert!(!over(&r), "{r:?}");
        assert!(r.raw_body.is_empty() && r.response_headers_to_add.is_empty());
    }
    let r = call(&s, vec![requests("alice")]).await;
    assert!(over(&r));
    assert_eq!(codes(&r), [OVER]);
    assert_eq!(
        message(&r),
        "Consumer `alice` is limited to 5 requests per minute."
    );
    assert_eq!(header(&r, LIMIT_HEADER), Some("requests_per_minute"));
    assert_eq!(header(&r, "content-type"), None);
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let status = &r.statuses[0];
    assert_eq!(status.limit_remaining, 0);
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit),
        ("requests_per_minute", 5)
    );
    // Another consumer's count is its own.
    assert!(!over(&call(&s, vec![requests("bob")]).await));
}

#[tokio::test]
async fn a_refused_request_is_not_counted() {
    let s = service();
    // 3 of 5: a request of 3 hits would make 6, so it is refused, and the count stays 3.
    let r = call_hits(&s, vec![requests("alice")], 3).await;
    assert_eq!(r.statuses[0].limit_remaining, 2);
    let r = call_hits(&s, vec![requests("alice")], 3).await;
    assert!(over(&r));
    assert_eq!(r.statuses[0].limit_remaining, 2);
    // A check (hits 0) counts nothing either.
    let r = call(
        &s,
        vec![d(&[("consumer", "alice"), ("kind", "requests")], Some(0))],
    )
    .await;
    assert_eq!((codes(&r), r.statuses[0].limit_remaining), (vec![OK], 2));
    // Refused by a budget in the same call: the request is not counted.
    let spent = call(&s, vec![usd("ci", "usd_day", "2026-11-21", 20_000_000)]).await;
    assert!(!over(&spent), "a charge is never refused");
    let r = call(
        &s,
        vec![requests("alice"), usd("ci", "usd_day", "2026-11-21", 0)],
    )
    .await;
    assert!(over(&r));
    assert_eq!(codes(&r), [OK, OVER]);
    assert_eq!(header(&r, LIMIT_HEADER), Some("budget_daily"));
    let r = call(&s, vec![requests("alice")]).await;
    assert_eq!(r.statuses[0].limit_remaining, 1, "counted once, now");
}

#[tokio::test]
async fn token_limits_are_checked_with_0_and_charged_always() {
    let s = service();
    let check = || tokens("alice", "output_tokens", 0);
    assert!(!over(&call(&s, vec![check()]).await));
    // The stream-end charge: 150 of 100 is added whole, never refused.
    let r = call(&s, vec![tokens("alice", "output_tokens", 150)]).await;
    assert!(!over(&r) && r.statuses[0].code == OK);
    let r = call(&s, vec![check()]).await;
    assert!(over(&r));
    assert_eq!(
        message(&r),
        "Consumer `alice` is limited to 100 output tokens per minute."
    );
    assert_eq!(header(&r, LIMIT_HEADER), Some("output_tokens_per_minute"));
    // Charges go on being added while over (a request admitted before is still charged).
    assert!(!over(
        &call(&s, vec![tokens("alice", "output_tokens", 10)]).await
    ));
    // Input is its own counter: at 999 of 1000 the check passes, at 1000 it refuses.
    assert!(!over(
        &call(&s, vec![tokens("alice", "input_tokens", 999)]).await
    ));
    assert!(!over(
        &call(&s, vec![tokens("alice", "input_tokens", 0)]).await
    ));
    call(&s, vec![tokens("alice", "input_tokens", 1)]).await;
    let r = call(&s, vec![tokens("alice", "input_tokens", 0)]).await;
    assert_eq!(
        message(&r),
        "Consumer `alice` is limited to 1000 input tokens per minute."
    );
    assert_eq!(header(&r, LIMIT_HEADER), Some("input_tokens_per_minute"));
}

#[tokio::test]
async fn budgets_are_per_utc_window_and_renew_at_its_end() {
    let s = service();
    let day = |hits| usd("ci", "usd_day", "2026-11-21", hits);
    call(&s, vec![day(19_999_999)]).await;
    assert!(!over(&call(&s, vec![day(0)]).await));
    call(&s, vec![day(1)]).await;
    let r = call(&s, vec![day(0)]).await;
    assert!(over(&r));
    assert_eq!(
        message(&r),
        "The daily budget of cost center `ci` ($20.00) is spent; it renews at \
         2026-11-22T00:00:00.000Z."
    );
    // 10:00 -> midnight: 14 hours.
    assert_eq!(header(&r, "retry-after"), Some("50400"));
    let reset = r.statuses[0].duration_until_reset.as_ref().unwrap();
    assert_eq!((reset.seconds, reset.nanos), (50_400, 0));
    let limit = r.statuses[0].current_limit.as_ref().unwrap();
    assert_eq!(limit.requests_per_unit, 20_000_000);
    // The next day names another window: another counter, empty.
    assert!(!over(
        &call(&s, vec![usd("ci", "usd_day", "2026-11-22", 0)]).await
    ));

    // A month: $3 for eng, renewing on the first of the next month.
    let month = |hits| usd("eng", "usd_month", "2026-11", hits);
    call(&s, vec![month(3_000_000)]).await;
    let r = call(&s, vec![month(0), usd("eng", "usd_day", "2026-11-21", 0)]).await;
    assert_eq!(codes(&r), [OVER, OK]);
    assert_eq!(
        message(&r),
        "The monthly budget of cost center `eng` ($3.00) is spent; it renews at \
         2026-12-01T00:00:00.000Z."
    );
    assert_eq!(header(&r, LIMIT_HEADER), Some("budget_monthly"));
    assert!(!over(
        &call(&s, vec![usd("eng", "usd_month", "2026-12", 0)]).await
    ));
}

#[tokio::test]
async fn per_minute_windows_renew() {
    // limitador's windows start at a counter's first hit; 1 s here instead of 60.
    let s = service_with(CONFIG, 1);
    for _ in 0..5 {
        call(&s, vec![requests("alice")]).await;
    }
    let r = call(&s, vec![requests("alice")]).await;
    assert!(over(&r));
    assert_eq!(header(&r, "retry-after"), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!over(&call(&s, vec![requests("alice")]).await));
}

#[test]
fn windows_of_the_limits() {
    let config = crate::config::parse(CONFIG).unwrap();
    let limits = Limits::from_config(&config);
    let mut seconds: Vec<(String, u64, i64)> = limits
        .limitador_limits(DOMAIN, limits::MINUTE_SECONDS)
        .iter()
        .map(|l| {
            (
                l.namespace().as_ref().to_owned(),
                l.seconds(),
                l.max_value(),
            )
        })
        .collect();
    seconds.sort();
    assert_eq!(
        seconds,
        [
            (
                "claude-gateway/consumer=alice/input_tokens".into(),
                60,
                1000
            ),
            (
                "claude-gateway/consumer=alice/output_tokens".into(),
                60,
                100
            ),
            ("claude-gateway/consumer=alice/requests".into(), 60, 5),
            (
                "claude-gateway/cost_center=ci/usd_day".into(),
                2 * 86_400,
                20_000_000
            ),
            (
                "claude-gateway/cost_center=eng/usd_day".into(),
                2 * 86_400,
                1_500_000
            ),
            (
                "claude-gateway/cost_center=eng/usd_month".into(),
                32 * 86_400,
                3_000_000
            ),
        ]
    );
    assert_eq!(
        limits.get(&Subject::Consumer("alice".into()), Kind::Requests),
        Some(5)
    );
    // bob has no limits of his own (0 = none), ci no monthly budget.
    assert_eq!(
        limits.get(&Subject::Consumer("bob".into()), Kind::Requests),
        None
    );
    assert_eq!(
        limits.get(&Subject::CostCenter("ci".into()), Kind::UsdMonth),
        None
    );
}

#[tokio::test]
async fn what_has_no_configured_limit_is_ok_and_counts_nothing() {
    let s = service();
    let strangers = vec![
        requests("mallory"),
        requests("bob"),
        d(&[("cost_center", "ci"), ("kind", "requests")], Some(1)),
        // No consumer budgets in the configuration (yet): never over.
        d(
            &[
                ("consumer", "alice"),
                ("kind", "usd_day"),
                ("window", "2026-11-21"),
            ],
            Some(1_000_000_000),
        ),
        usd("nobody", "usd_day", "2026-11-21", 5),
        usd("ci", "usd_month", "2026-11", 1_000_000_000),
        // Not of the contract: order, extra or missing entries, unknown kinds, bad windows.
        d(&[("kind", "requests"), ("consumer", "alice")], None),
        d(
            &[("consumer", "alice"), ("kind", "requests"), ("x", "y")],
            None,
        ),
        d(&[("consumer", "alice")], None),
        d(&[("consumer", ""), ("kind", "requests")], None),
        d(&[("consumer", "alice"), ("kind", "tokens")], None),
        d(&[("cost_center", "ci"), ("kind", "usd_day")], Some(1)),
        usd("ci", "usd_day", "2026-02-30", 1),
        usd("ci", "usd_day", "2026-11", 1),
        usd("ci", "usd_month", "2026-13", 1),
        usd("ci", "usd_day", "21-11-2026", 1),
    ];
    for _ in 0..3 {
        let r = call(&s, strangers.clone()).await;
        assert!(!over(&r));
        assert_eq!(codes(&r), vec![OK; strangers.len()]);
        assert!(r.statuses.iter().all(|s| s.current_limit.is_none()));
    }
    // A call for another domain counts nothing, whatever it holds.
    let other = RateLimitRequest {
        domain: "someone-else".into(),
        descriptors: vec![requests("alice"); 10],
        hits_addend: 1,
    };
    let r = s.decide(&other).await.unwrap();
    assert_eq!(codes(&r), vec![OK; 10]);
    let r = call(&s, vec![requests("alice")]).await;
    assert_eq!(r.statuses[0].limit_remaining, 4, "only this one counted");
    // The filter's probe: a domain and no descriptor.
    let r = call(&s, vec![]).await;
    assert!(!over(&r) && r.statuses.is_empty());
}

#[tokio::test]
async fn hits_come_from_the_descriptor_else_the_request_at_least_1() {
    let s = service();
    // Request-level 0 (Envoy's "unset") counts 1.
    let r = call_hits(&s, vec![requests("alice")], 0).await;
    assert_eq!(r.statuses[0].limit_remaining, 4);
    // Request-level 2.
    let r = call_hits(&s, vec![requests("alice")], 2).await;
    assert_eq!(r.statuses[0].limit_remaining, 2);
    // The descriptor's own 1 wins over the request's 2.
    let own = d(&[("consumer", "alice"), ("kind", "requests")], Some(1));
    let r = call_hits(&s, vec![own], 2).await;
    assert_eq!(r.statuses[0].limit_remaining, 1);
    // The descriptor's own 0 is a check, whatever the request says.
    let check = d(&[("consumer", "alice"), ("kind", "requests")], Some(0));
    let r = call_hits(&s, vec![check], 7).await;
    assert_eq!((codes(&r), r.statuses[0].limit_remaining), (vec![OK], 1));
    // A token descriptor without its own hits is charged the request's (at least 1).
    let bare = d(&[("consumer", "alice"), ("kind", "output_tokens")], None);
    call_hits(&s, vec![bare.clone()], 0).await;
    call_hits(&s, vec![bare], 98).await;
    let r = call(&s, vec![tokens("alice", "output_tokens", 0)]).await;
    assert_eq!((codes(&r), r.statuses[0].limit_remaining), (vec![OK], 1));
}

#[tokio::test]
async fn refunds_subtract() {
    let s = service();
    call(&s, vec![tokens("alice", "output_tokens", 100)]).await;
    let check = || tokens("alice", "output_tokens", 0);
    assert!(over(&call(&s, vec![check()]).await));
    let mut refund = tokens("alice", "output_tokens", 40);
    refund.is_negative_hits = true;
    let r = call(&s, vec![refund.clone()]).await;
    assert_eq!(codes(&r), [OK]);
    let r = call(&s, vec![check()]).await;
    assert_eq!((codes(&r), r.statuses[0].limit_remaining), (vec![OK], 40));
    // A refund of 0 is a check; one on a request gives the request back.
    refund.hits_addend = Some(UInt64Value { value: 0 });
    assert_eq!(call(&s, vec![refund]).await.statuses[0].limit_remaining, 40);
    for _ in 0..5 {
        call(&s, vec![requests("alice")]).await;
    }
    let mut back = requests("alice");
    (back.is_negative_hits, back.hits_addend) = (true, Some(UInt64Value { value: 1 }));
    call(&s, vec![back]).await;
    assert!(!over(&call(&s, vec![requests("alice")]).await));
    assert!(over(&call(&s, vec![requests("alice")]).await));
}

#[tokio::test]
async fn several_refusals_answer_the_first_and_wait_for_the_last() {
    let s = service();
    call(&s, vec![tokens("alice", "output_tokens", 100)]).await;
    call(&s, vec![usd("ci", "usd_day", "2026-11-21", 20_000_000)]).await;
    let r = call(
        &s,
        vec![
            requests("alice"),
            tokens("alice", "input_tokens", 0),
            tokens("alice", "output_tokens", 0),
            usd("ci", "usd_day", "2026-11-21", 0),
        ],
    )
    .await;
    assert_eq!(codes(&r), [OK, OK, OVER, OVER]);
    assert_eq!(
        message(&r),
        "Consumer `alice` is limited to 100 output tokens per minute."
    );
    assert_eq!(header(&r, "retry-after"), Some("50400"));
    assert_eq!(r.statuses[0].limit_remaining, 5, "refused: not counted");
}

/// The filter's shared store, in memory.
#[derive(Default)]
struct MapStore(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for MapStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Write {
        let mut map = self.0.borrow_mut();
        let version = map.get(key).map_or(0, |v| v.1);
        if cas != 0 && cas != version {
            return Write::Conflict;
        }
        map.insert(key.to_owned(), (value.to_vec(), version + 1));
        Write::Done
    }
}

#[tokio::test]
async fn refusals_read_as_the_filters_own() {
    let config = crate::config::parse(CONFIG).unwrap();
    let route = config.routes.all().next().unwrap();
    let store = MapStore::default();
    let find = |id: &str| config.consumers.iter().find(|c| c.id == id).unwrap();
    let admit = |id: &str| {
        access::admit(
            &config,
            route,
            find(id),
            access::Asks::Other,
            None,
            &store,
            NOW,
        )
    };
    let s = service();
    // Requests per minute.
    for _ in 0..5 {
        assert!(admit("alice").is_ok());
        call(&s, vec![requests("alice")]).await;
    }
    let filter = admit("alice").unwrap_err();
    let service = call(&s, vec![requests("alice")]).await;
    assert_eq!(service.raw_body, filter.message.as_bytes());
    assert_eq!(header(&service, LIMIT_HEADER), Some(filter.reason()));
    // Output tokens, then a daily budget (bob's cost center has no per-minute limits).
    let store = MapStore::default();
    let s = service_with(CONFIG, 60);
    access::settle(&config, find("alice"), 0, 100, 0, &store, NOW);
    call(&s, vec![tokens("alice", "output_tokens", 100)]).await;
    let filter = access::admit(
        &config,
        route,
        find("alice"),
        access::Asks::Other,
        None,
        &store,
        NOW,
    )
    .unwrap_err();
    let service = call(&s, vec![tokens("alice", "output_tokens", 0)]).await;
    assert_eq!(service.raw_body, filter.message.as_bytes());
    assert_eq!(header(&service, LIMIT_HEADER), Some(filter.reason()));
    access::settle(&config, find("bob"), 0, 0, 1_500_000, &store, NOW);
    call(&s, vec![usd("eng", "usd_day", "2026-11-21", 1_500_000)]).await;
    let filter = access::admit(
        &config,
        route,
        find("bob"),
        access::Asks::Other,
        None,
        &store,
        NOW,
    )
    .unwrap_err();
    let service = call(&s, vec![usd("eng", "usd_day", "2026-11-21", 0)]).await;
    assert_eq!(service.raw_body, filter.message.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&filter.body()),
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"The daily budget of cost center `eng` ($1.50) is spent; it renews at 2026-11-22T00:00:00.000Z."}}"#
    );
    assert_eq!(header(&service, LIMIT_HEADER), Some("budget_daily"));
    assert_eq!(
        header(&service, "retry-after").map(str::to_owned),
        filter.retry_after_s.map(|s| s.to_string())
    );
}

#[tokio::test]
async fn storage_down_is_unavailable_promptly() {
    let config = crate::config::parse(CONFIG).unwrap();
    let limits = Limits::from_config(&config);
    let timeout = Duration::from_millis(200);
    let request = RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors: vec![requests("alice")],
        hits_addend: 0,
    };
    // No storage at all (Redis down when the service started, or since the last probe);
    // also for the probe, which has nothing to count.
    let none = Service::new(
        DOMAIN,
        limits.clone(),
        Arc::new(Store::default()),
        fixed(NOW),
        timeout,
    );
    let e = none.decide(&request).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let probe = RateLimitRequest {
        domain: DOMAIN.into(),
        ..Default::default()
    };
    assert_eq!(
        none.decide(&probe).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    for hang in [false, true] {
        let limiter = AsyncRateLimiter::new_with_storage(Box::new(Broken { hang }));
        for l in limits.limitador_limits(DOMAIN, 60) {
            limiter.add_limit(l);
        }
        let s = Service::new(
            DOMAIN,
            limits.clone(),
            Arc::new(Store::with(limiter)),
            fixed(NOW),
            timeout,
        );
        let started = Instant::now();
        let e = s.decide(&request).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(started.elapsed() < timeout + Duration::from_millis(300));
        if hang {
            assert!(started.elapsed() >= timeout);
            assert!(e.message().contains("did not answer"), "{e:?}");
        }
    }
}

#[test]
fn the_configuration_is_read_as_yaml_or_json_without_keys() {
    let yaml = crate::config::parse(CONFIG).unwrap();
    let json: serde_json::Value = serde_yaml_ng::from_str(CONFIG).unwrap();
    let json = crate::config::parse(&json.to_string()).unwrap();
    assert_eq!(
        Limits::from_config(&yaml).summary(),
        Limits::from_config(&json).summary()
    );
    // The pool keys are placeholders: the service never reads a key from its environment.
    assert_eq!(yaml.pools[0].keys[0].secret, crate::config::PLACEHOLDER_KEY);
    // Empty is the defaults: no limits.
    assert!(Limits::from_config(&crate::config::parse("").unwrap()).is_empty());
    assert!(Limits::from_config(&crate::config::parse("{}").unwrap()).is_empty());
    let e = crate::config::parse("budgets: {ci: {daily_usd: -1}}").unwrap_err();
    assert!(e.contains("budgets.ci.daily_usd"), "{e}");
    let example =
        crate::config::load(concat!(env!("CARGO_MANIFEST_DIR"), "/example-config.yaml")).unwrap();
    assert_eq!(Limits::from_config(&example).len(), 7);
}

#[test]
fn windows_end_at_midnight_utc() {
    use crate::descriptor::{day_end, month_end};
    let at = |ms: u64| claude_gateway::time::rfc3339(ms * 1_000_000);
    assert_eq!(
        day_end("2026-11-21").map(at).as_deref(),
        Some("2026-11-22T00:00:00.000Z")
    );
    assert_eq!(
        day_end("2024-02-29").map(at).as_deref(),
        Some("2024-03-01T00:00:00.000Z")
    );
    assert_eq!(
        day_end("2026-12-31").map(at).as_deref(),
        Some("2027-01-01T00:00:00.000Z")
    );
    assert_eq!(
        month_end("2026-12").map(at).as_deref(),
        Some("2027-01-01T00:00:00.000Z")
    );
    assert_eq!(
        month_end("2026-02").map(at).as_deref(),
        Some("2026-03-01T00:00:00.000Z")
    );
    for bad in [
        "2026-02-29",
        "2026-00-01",
        "2026-1-01",
        "2026-11-21 ",
        "+026-11-21",
        "2026-11-00",
    ] {
        assert_eq!(day_end(bad), None, "{bad}");
    }
    for bad in ["2026-13", "2026", "2026-11-01", "0x26-11"] {
        assert_eq!(month_end(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn a_consumers_own_budget_is_counted_apart_from_its_cost_center() {
    let config = CONFIG.replace(
        "  cost_center: eng\n",
        "  cost_center: eng\n  budget: {daily_usd: 0.5}\n",
    );
    let s = service_with(&config, 60);
    let bob = |hits| {
        d(
            &[
                ("consumer", "bob"),
                ("kind", "usd_day"),
                ("window", "2026-11-21"),
            ],
            Some(hits),
        )
    };
    call(&s, vec![bob(500_000)]).await;
    let r = call(&s, vec![usd("eng", "usd_day", "2026-11-21", 0), bob(0)]).await;
    assert_eq!(codes(&r), [OK, OVER]);
    assert_eq!(header(&r, LIMIT_HEADER), Some("consumer_budget_daily"));
    assert!(
        message(&r).starts_with("The daily budget of consumer `bob` ($0.50) is spent"),
        "{}",
        message(&r)
    );
}

#[tokio::test]
async fn a_group_rule_counts_each_member_on_its_own() {
    let config = format!(
        "{CONFIG}jwt:\n  groups:\n  - {{group: eng, limits: {{requests_per_minute: 1}}}}\n"
    )
    .replace("identity: virtual", "identity: jwt");
    let s = service_with(&config, 60);
    let member = |id: &str| {
        d(
            &[("group", "eng"), ("member", id), ("kind", "requests")],
            None,
        )
    };
    assert!(!over(&call(&s, vec![member("dev@example.com")]).await));
    let r = call(&s, vec![member("dev@example.com")]).await;
    assert!(over(&r));
    assert_eq!(
        message(&r),
        "Consumer `dev@example.com` is limited to 1 requests per minute."
    );
    assert!(!over(&call(&s, vec![member("other@example.com")]).await));
    // A group without a rule, or without its member, is no limit of ours.
    let stranger = d(
        &[
            ("group", "sales"),
            ("member", "x@example.com"),
            ("kind", "requests"),
        ],
        None,
    );
    for _ in 0..3 {
        assert!(!over(&call(&s, vec![stranger.clone()]).await));
    }
    let no_member = d(&[("group", "eng"), ("kind", "requests")], None);
    assert_eq!(codes(&call(&s, vec![no_member]).await), [OK]);
}
