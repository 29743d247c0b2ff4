//! `ShouldRateLimit`: the semantics of each descriptor, on limitador's counters.
//!
//! | kind | hits 0 (request path) | hits N > 0 | `is_negative_hits` with N |
//! |---|---|---|---|
//! | `requests` | check: OVER_LIMIT when count >= limit | count N unless count + N > limit (then OVER_LIMIT, not counted) | refund: N subtracted |
//! | `input_tokens`, `output_tokens`, `usd_day`, `usd_month` | check: OVER_LIMIT when count >= limit | charge: N always added (may pass the limit), OK | refund: N subtracted |
//!
//! Requests are only counted when no check of the same call is over (a refused request is not
//! counted); charges and refunds are applied whatever else the call holds. A refund can take a
//! counter below zero (credit in that window), e.g. when the window it was charged in is over.

use crate::descriptor::{self, Parsed};
use crate::limits::{self, Kind, Limits};
use crate::store::Store;
use claude_gateway::keys::refusals::retry_after_seconds;
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use futures_util::future::try_join_all;
use limitador::AsyncRateLimiter;
use limitador::counter::Counter;
use limitador::limit::Namespace;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The header naming the limit that refused, as the filter's `claude_gateway_refused{reason}`.
pub const LIMIT_HEADER: &str = "x-claude-gateway-limit";

/// Milliseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

pub struct Service {
    domain: String,
    limits: Limits,
    store: Arc<Store>,
    clock: Clock,
    /// Bound on the storage work of one call.
    timeout: Duration,
    minute_seconds: u64,
    warned_domain: AtomicBool,
}

/// What one descriptor asks for.
enum Action {
    /// Not a limit of ours: OK, nothing counted.
    Nothing,
    Check,
    Count(i64),
    Charge(i64),
    Refund(i64),
}

struct Item {
    parsed: Option<(Parsed, u64)>,
    action: Action,
}

/// The outcome of one descriptor.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    over: bool,
    remaining: Option<u64>,
    /// Until the window renews.
    reset_ms: Option<u64>,
}

impl Service {
    pub fn new(
        domain: &str,
        limits: Limits,
        store: Arc<Store>,
        clock: Clock,
        timeout: Duration,
    ) -> Service {
        Service {
            domain: domain.to_owned(),
            limits,
            store,
            clock,
            timeout,
            minute_seconds: limits::MINUTE_SECONDS,
            warned_domain: AtomicBool::new(false),
        }
    }

    /// Per-minute windows of another length (the tests' short windows); must match the
    /// limits the store was given.
    pub fn with_minute_seconds(mut self, seconds: u64) -> Service {
        self.minute_seconds = seconds;
        self
    }

    fn classify(&self, request: &RateLimitRequest) -> Vec<Item> {
        request
            .descriptors
            .iter()
            .map(|d| {
                let hits = descriptor::hits(d, request.hits_addend);
                let Some(parsed) = descriptor::parse(d) else {
                    return Item {
                        parsed: None,
                        action: Action::Nothing,
                    };
                };
                let Some(limit) = self.limits.get(&parsed.subject, parsed.kind) else {
                    return Item {
                        parsed: None,
                        action: Action::Nothing,
                    };
                };
                // Envoy sends at most 1e9 per descriptor.
                let n = i64::try_from(hits).unwrap_or(i64::MAX);
                let action = match (d.is_negative_hits, n) {
                    (_, 0) => Action::Check,
                    (true, n) => Action::Refund(n),
                    (false, n) if parsed.kind.counts_requests() => Action::Count(n),
                    (false, n) => Action::Charge(n),
                };
                Item {
                    parsed: Some((parsed, limit)),
                    action,
                }
            })
            .collect()
    }

    /// Answers one call; `Err` is a gRPC status (UNAVAILABLE while the storage is).
    pub async fn decide(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        if request.domain != self.domain {
            if !self.warned_domain.swap(true, Ordering::Relaxed) {
                crate::log(&format!(
                    "calls for domain `{}` are answered OK without counting (this service is \
                     domain `{}`); logged once",
                    request.domain.chars().take(64).collect::<String>(),
                    self.domain
                ));
            }
            return Ok(ok_response(request.descriptors.len()));
        }
        // Even a call with nothing to count (the filter's probe) says whether the storage is up.
        let Some(backend) = self.store.backend() else {
            return Err(Status::unavailable(
                "the rate-limit counters (Redis) are unavailable",
            ));
        };
        let items = self.classify(request);
        let work = async {
            if items.iter().all(|i| matches!(i.action, Action::Nothing)) {
                backend
                    .alive(self.timeout)
                    .await
                    .map(|()| vec![Outcome::default(); items.len()])
            } else {
                self.run(&backend.limiter, &items).await
            }
        };
        let outcomes = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(failure)) => {
                self.store.suspect();
                return Err(Status::unavailable(format!(
                    "the rate-limit counters (Redis) failed: {failure}"
                )));
            }
            Err(_) => {
                self.store.suspect();
                return Err(Status::unavailable(format!(
                    "the rate-limit counters (Redis) did not answer within {:?}",
                    self.timeout
                )));
            }
        };
        Ok(self.respond(&items, &outcomes))
    }

    /// Charges and refunds, then checks, then (when no check is over) counts; within each step
    /// every counter is asked at once (one Redis round trip's wait, not one per descriptor).
    async fn run(
        &self,
        limiter: &AsyncRateLimiter,
        items: &[Item],
    ) -> Result<Vec<Outcome>, String> {
        let now = (self.clock)();
        let mut outcomes = vec![Outcome::default(); items.len()];
        let storage = |e: limitador::errors::LimitadorError| e.to_string();
        let charges = items.iter().enumerate().filter_map(|(i, item)| {
            let (p, _) = item.parsed.as_ref()?;
            let delta = match item.action {
                Action::Charge(n) => n,
                Action::Refund(n) => -n,
                _ => return None,
            };
            let (ns, values) = self.counter(p);
            Some(async move {
                limiter.update_counters(&ns, &values, delta).await?;
                Ok((i, p.window.as_ref().map(|w| w.1.saturating_sub(now))))
            })
        });
        for (i, reset_ms) in try_join_all(charges).await.map_err(storage)? {
            if let Some(out) = outcomes.get_mut(i) {
                out.reset_ms = reset_ms;
            }
        }
        let checks = items.iter().enumerate().filter_map(|(i, item)| {
            let (p, _) = item.parsed.as_ref()?;
            matches!(item.action, Action::Check).then(|| async move {
                Ok::<_, limitador::errors::LimitadorError>((
                    i,
                    self.ask(limiter, p, 1, false, now).await?,
                ))
            })
        });
        let mut refused = false;
        for (i, out) in try_join_all(checks).await.map_err(storage)? {
            refused |= out.over;
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = out;
            }
        }
        let counts = items.iter().enumerate().filter_map(|(i, item)| {
            let (p, _) = item.parsed.as_ref()?;
            let Action::Count(n) = item.action else {
                return None;
            };
            Some(async move {
                // The call is refused anyway: where this counter stands, nothing counted.
                let out = self.ask(limiter, p, n, !refused, now).await?;
                Ok::<_, limitador::errors::LimitadorError>((i, out))
            })
        });
        for (i, out) in try_join_all(counts).await.map_err(storage)? {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = out;
            }
        }
        Ok(outcomes)
    }

    /// Whether `n` more would pass the limit, counting them when `count` (not when that would
    /// pass it) or nothing at all: limitador's check-and-update with a delta of `n`, or of 0,
    /// which reads the counter (value and TTL) and adds nothing.
    async fn ask(
        &self,
        limiter: &AsyncRateLimiter,
        p: &Parsed,
        n: i64,
        count: bool,
        now: u64,
    ) -> Result<Outcome, limitador::errors::LimitadorError> {
        let (ns, values) = self.counter(p);
        let delta = if count { n } else { 0 };
        let r = limiter
            .check_rate_limited_and_update(&ns, &values, delta, true)
            .await?;
        let counter = r.counters.first();
        // limitador reports what would remain after the delta; refused, nothing was taken.
        let left = counter.and_then(Counter::remaining).unwrap_or(i64::MAX);
        let (over, remaining) = match (count, r.limited) {
            (true, true) => (true, left.saturating_add(n)),
            (true, false) => (false, left),
            (false, _) => (left < n, left),
        };
        Ok(self.outcome(p, over, remaining, counter, now))
    }

    fn counter(&self, p: &Parsed) -> (Namespace, HashMap<String, String>) {
        let ns = Namespace::from(limits::namespace(&self.domain, &p.subject, p.kind));
        let mut values = HashMap::new();
        if let Some((window, _)) = &p.window {
            values.insert(limits::WINDOW_VARIABLE.to_owned(), window.clone());
        }
        if let Some(member) = &p.member {
            values.insert(limits::MEMBER_VARIABLE.to_owned(), member.clone());
        }
        (ns, values)
    }

    fn outcome(
        &self,
        p: &Parsed,
        over: bool,
        remaining: i64,
        counter: Option<&Counter>,
        now: u64,
    ) -> Outcome {
        let reset_ms = match &p.window {
            // Budgets renew with their calendar window, whatever their counter's TTL.
            Some((_, ends)) => ends.saturating_sub(now),
            None => counter
                .and_then(Counter::expires_in)
                .map_or(self.minute_seconds * 1000, |d| d.as_millis() as u64),
        };
        Outcome {
            over,
            remaining: counter.map(|_| u64::try_from(remaining).unwrap_or(0)),
            reset_ms: Some(reset_ms),
        }
    }

    fn respond(&self, items: &[Item], outcomes: &[Outcome]) -> RateLimitResponse {
        let mut response = ok_response(0);
        let mut first_refusal: Option<(&Parsed, u64)> = None;
        let mut wait_ms = 0;
        for (item, out) in items.iter().zip(outcomes) {
            let Some((p, limit)) = &item.parsed else {
                response.statuses.push(status(Code::Ok));
                continue;
            };
            let mut s = status(if out.over { Code::OverLimit } else { Code::Ok });
            let refusal = p.subject.refusal(p.member.as_deref(), p.kind, *limit, 0);
            s.current_limit = Some(RateLimit {
                name: refusal.reason().to_owned(),
                requests_per_unit: u32::try_from(*limit).unwrap_or(u32::MAX),
                unit: match p.kind {
                    Kind::UsdDay => Unit::Day,
                    Kind::UsdMonth => Unit::Month,
                    _ => Unit::Minute,
                } as i32,
            });
            if let Some(remaining) = out.remaining {
                s.limit_remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
            }
            s.duration_until_reset = out.reset_ms.map(|ms| ProtoDuration {
                seconds: (ms / 1000) as i64,
                nanos: ((ms % 1000) * 1_000_000) as i32,
            });
            if out.over {
                first_refusal.get_or_insert((p, *limit));
                wait_ms = wait_ms.max(out.reset_ms.unwrap_or(0));
            }
            response.statuses.push(s);
        }
        if let Some((p, limit)) = first_refusal {
            let renews_at = p.window.as_ref().map_or(0, |w| w.1);
            let refusal = p
                .subject
                .refusal(p.member.as_deref(), p.kind, limit, renews_at);
            let retry_after = retry_after_seconds(wait_ms);
            response.overall_code = Code::OverLimit as i32;
            // The message alone: the bootstrap's local-reply mapper puts it in the API's error
            // envelope (as JSON), as it does for any refusal Envoy's filter answers.
            response.raw_body = refusal.message().into_bytes();
            response.response_headers_to_add = vec![
                header("retry-after", &retry_after.to_string()),
                header(LIMIT_HEADER, refusal.reason()),
            ];
        }
        response
    }
}

fn status(code: Code) -> DescriptorStatus {
    DescriptorStatus {
        code: code as i32,
        ..Default::default()
    }
}

fn ok_response(descriptors: usize) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: Code::Ok as i32,
        statuses: vec![status(Code::Ok); descriptors],
        ..Default::default()
    }
}

fn header(key: &str, value: &str) -> HeaderValue {
    HeaderValue {
        key: key.to_owned(),
        value: value.to_owned(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.decide(request.get_ref()).await.map(Response::new)
    }
}
