//! Limits and budgets across Envoy replicas: two Envoys (separate processes, 2 workers each)
//! on `envoy/examples/replicas.yaml`, the gateway's rate-limit service (`ratelimit/`) and a
//! real `redis-server`, all on 127.0.0.1. What one replica let through counts on the other.

use crate::keys::{POOL_1, POOL_2, Response, assert_refused, body, post};
use crate::support::anthropic::{self, USAGE};
use crate::support::bootstrap::{Bootstrap, Upstream, oidc};
use crate::support::envoy::{self, Gateway, Run};
use crate::support::mock::{Gate, Mock, Recorded, Reply, Step};
use crate::support::replicas::{RateLimitServer, Redis};
use crate::support::vendors::{Kind, VendorMock};
use claude_gateway::keys::sha256_hex;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALICE: &str = "vk-alice-replicas-71c2";
const BOT: &str = "vk-bot-replicas-0d4e";
const INTERN: &str = "vk-intern-replicas-9b3f";
const HEAVY: &str = "vk-heavy-replicas-5a18";
const DEV: &str = "vk-dev-replicas-3e77";
const MODEL: &str = "claude-sonnet-4-5";
/// The interns' daily budget (micro-USD): more than one request costs, less than two.
const INTERNS_DAILY_MICRO_USD: u64 = 200;

fn config() -> serde_json::Value {
    crate::keys::pooled(
        "virtual",
        json!({
            "consumers": [
                {"id": "alice", "key_sha256": [sha256_hex(ALICE)], "cost_center": "platform",
                 "limits": {"output_tokens_per_minute": USAGE.output}},
                {"id": "bot", "key_sha256": [sha256_hex(BOT)], "cost_center": "ci",
                 "limits": {"requests_per_minute": 3}},
                {"id": "intern", "key_sha256": [sha256_hex(INTERN)], "cost_center": "interns"},
                {"id": "heavy", "key_sha256": [sha256_hex(HEAVY)], "cost_center": "ci",
                 "limits": {"input_tokens_per_minute": 10}},
                {"id": "dev", "key_sha256": [sha256_hex(DEV)], "cost_center": "platform"},
            ],
            "budgets": {"interns": {"daily_usd": INTERNS_DAILY_MICRO_USD as f64 / 1e6,
                                     "monthly_usd": 1}},
            "global_limits": {"enabled": true, "cluster": "ratelimit", "probe_seconds": 1},
        }),
    )
}

/// Redis, the service, the upstream mock and two replicas; `deny` makes replica B fail closed.
struct Replicas {
    redis: Redis,
    service: RateLimitServer,
    mock: Mock,
    a: Gateway,
    b: Gateway,
}

fn replica(mock: &Mock, service: &RateLimitServer, fail_closed: bool) -> Gateway {
    let b = envoy::shipped(
        "examples/replicas.yaml",
        &[
            ("anthropic", &[mock.port()]),
            ("ratelimit", &[service.port]),
        ],
    );
    replica_with(b, &config(), fail_closed)
}

fn replica_with(mut b: Bootstrap, config: &serde_json::Value, fail_closed: bool) -> Gateway {
    b.plugin_config(&config.to_string());
    if fail_closed {
        assert_eq!(b.replace_value("failure_mode_deny", "false", "true"), 1);
    }
    let run = Run::default()
        .env("ANTHROPIC_KEY_1", POOL_1)
        .env("ANTHROPIC_KEY_2", POOL_2);
    Gateway::start_with(b, &run)
}

impl Replicas {
    fn start(mock: Mock, b_fails_closed: bool) -> Replicas {
        let redis = Redis::start();
        let service = RateLimitServer::start(&config().to_string(), &redis);
        let a = replica(&mock, &service, false);
        let b = replica(&mock, &service, b_fails_closed);
        Replicas {
            redis,
            service,
            mock,
            a,
            b,
        }
    }
}

fn send(gw: &Gateway, key: &str, stream: bool) -> Response {
    post(gw, &[("x-api-key", key)], &body(MODEL, stream))
}

/// Refused by the rate-limit service (Envoy's filter, not the gateway's), for `reason`.
fn assert_refused_across(r: &Response, reason: &str, message: Option<&str>) {
    assert_refused(r, 429, "rate_limit_error");
    if let Some(m) = message {
        assert_eq!(r.json()["error"]["message"], m, "{}", r.body);
    }
    assert_eq!(r.header("x-claude-gateway-limit"), Some(reason));
    assert_eq!(r.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
}

fn gauge(gw: &Gateway, name: &str) -> u64 {
    gw.counter(&format!("wasmcustom.claude_gateway.{name}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn limits_and_budgets_hold_across_two_replicas() {
    let r = Replicas::start(
        Mock::start("anthropic", anthropic::responder("anthropic")),
        false,
    );
    for gw in [&r.a, &r.b] {
        wait_until("the probe", || gauge(gw, "global_limits_up") == 1);
    }

    // Requests per minute, summed: 3 allowed, 2 through A and 1 through B; then both refuse.
    for gw in [&r.a, &r.b, &r.a] {
        assert_eq!(send(gw, BOT, false).status, 200);
    }
    for gw in [&r.b, &r.a] {
        assert_refused_across(
            &send(gw, BOT, false),
            "requests_per_minute",
            Some("Consumer `bot` is limited to 3 requests per minute."),
        );
    }

    // Output tokens: a stream through A spends alice's minute; B refuses her next request.
    let streamed = send(&r.a, ALICE, true);
    assert_eq!(streamed.status, 200);
    assert!(streamed.body.contains("message_stop"), "{}", streamed.body);
    r.redis
        .wait_counted("consumer=alice/output_tokens", USAGE.output as i64);
    assert_refused_across(
        &send(&r.b, ALICE, false),
        "output_tokens_per_minute",
        Some(&format!(
            "Consumer `alice` is limited to {} output tokens per minute.",
            USAGE.output
        )),
    );

    // A cost center's daily budget: half through A, half through B, then refused on either.
    assert_eq!(send(&r.a, INTERN, false).status, 200);
    let cost = interns_cost(&r.a);
    assert!(
        cost < INTERNS_DAILY_MICRO_USD && 2 * cost >= INTERNS_DAILY_MICRO_USD,
        "a request costs {cost} micro-USD: the test's budget needs other figures"
    );
    r.redis
        .wait_counted("cost_center=interns/usd_day", cost as i64);
    let second = send(&r.b, INTERN, false);
    assert_eq!(second.status, 200, "{}", second.body);
    r.redis
        .wait_counted("cost_center=interns/usd_day", 2 * cost as i64);
    let message = "The daily budget of cost center `interns` ($0.00) is spent; it renews at ";
    for gw in [&r.a, &r.b] {
        let refused = send(gw, INTERN, false);
        assert_refused_across(&refused, "budget_daily", None);
        let text = refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            text.starts_with(message) && text.ends_with("T00:00:00.000Z."),
            "{text}"
        );
    }
    // The monthly counter holds the same spend.
    assert_eq!(
        r.redis.counted("cost_center=interns/usd_month"),
        2 * cost as i64
    );

    // Each replica's own (single-replica) limits saw only its share: the refusals above were
    // the service's, answered by Envoy's filter.
    for gw in [&r.a, &r.b] {
        assert!(gw.counter("cluster.anthropic.ratelimit.over_limit") >= 2);
        gw.assert_healthy();
    }
    assert_eq!(r.mock.requests().len(), 3 + 1 + 2);
}

/// What the interns' request through `gw` cost, from its audit record.
fn interns_cost(gw: &Gateway) -> u64 {
    cost_of(gw, "interns")
}

/// What the first request of `cost_center` through `gw` cost, from its audit record.
fn cost_of(gw: &Gateway, cost_center: &str) -> u64 {
    let mut cost = None;
    wait_until("the interns' audit record", || {
        cost = gw
            .audit_records()
            .iter()
            .find(|r| r["cost_center"] == cost_center)
            .and_then(|r| r["cost_micro_usd"].as_u64());
        cost.is_some()
    });
    cost.unwrap_or_default()
}

/// Starts a streamed request as `key` and drops the connection after the first event.
fn abort_after_first_event(gw: &Gateway, key: &str) {
    let body = body(MODEL, true);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nhost: gateway\r\nx-api-key: {key}\r\n\
         anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("event: message_start") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(chunk.get(..n).unwrap());
    }
}

#[test]
fn an_aborted_stream_is_charged_and_a_restarted_redis_starts_empty() {
    // The upstream holds the stream after its first event until the test opens the gate.
    let held = Gate::new();
    let gate = held.clone();
    let events = anthropic::stream_events(MODEL, &["Hel", "lo"], USAGE);
    let default = anthropic::responder("anthropic");
    let mock = Mock::start(
        "anthropic",
        Arc::new(move |req: &Recorded| {
            if req.json()["stream"] == json!(true) {
                let mut steps = vec![Step::Send(events[0].clone()), Step::Wait(gate.clone())];
                steps.extend(anthropic::steps(events[1..].to_vec()));
                Reply::sse(steps)
            } else {
                default(req)
            }
        }),
    );
    let mut r = Replicas::start(mock, false);
    for gw in [&r.a, &r.b] {
        wait_until("the probe", || gauge(gw, "global_limits_up") == 1);
    }

    // message_start reports 11 input tokens and 3 cache writes: 14 of heavy's 10 a minute,
    // charged although the client went away before the stream ended.
    abort_after_first_event(&r.a, HEAVY);
    let charged = r.redis.wait_counted("consumer=heavy/input_tokens", 14);
    assert_eq!(charged, (USAGE.input + USAGE.cache_creation) as i64);
    held.open();
    assert_refused_across(
        &send(&r.b, HEAVY, false),
        "input_tokens_per_minute",
        Some("Consumer `heavy` is limited to 10 input tokens per minute."),
    );

    // Redis restarted without persistence: every counter starts again from zero (README,
    // "One replica or many"); while it is down, requests pass (fail-open).
    r.redis.stop();
    r.service.wait_log("down (");
    let ok = send(&r.b, BOT, false);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(r.b.counter("cluster.anthropic.ratelimit.failure_mode_allowed") >= 1);
    for gw in [&r.a, &r.b] {
        wait_until("the probe sees it down", || {
            gauge(gw, "global_limits_up") == 0
        });
        assert!(gauge(gw, "global_limits_probe_failures") >= 1);
    }
    assert!(
        r.b.log().contains("rate-limit service"),
        "no log line about the service:\n{}",
        r.b.log()
    );
    r.redis.restart();
    r.service.wait_log("up again");
    assert_eq!(r.redis.counted("consumer=heavy/input_tokens"), 0);
    assert_eq!(send(&r.b, HEAVY, false).status, 200);
    for gw in [&r.a, &r.b] {
        wait_until("the probe sees it up", || {
            gauge(gw, "global_limits_up") == 1
        });
        gw.assert_healthy();
    }
}

#[test]
fn the_service_down_fails_open_or_closed_as_configured() {
    let mut r = Replicas::start(
        Mock::start("anthropic", anthropic::responder("anthropic")),
        true,
    );
    assert_eq!(send(&r.b, BOT, false).status, 200);
    r.service.kill();

    // A (fail-open, the default): served, counted as allowed by failure.
    let started = Instant::now();
    let open = send(&r.a, BOT, false);
    assert_eq!(open.status, 200, "{}", open.body);
    assert!(r.a.counter("cluster.anthropic.ratelimit.failure_mode_allowed") >= 1);
    // B (failure_mode_deny: true): a 503 in the API's envelope, not a hang.
    let closed = send(&r.b, BOT, false);
    assert_refused(&closed, 503, "api_error");
    assert!(
        closed.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate-limit service is unavailable"),
        "{}",
        closed.body
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.mock.requests().len(), 2);
    for gw in [&r.a, &r.b] {
        wait_until("the probe sees it down", || {
            gauge(gw, "global_limits_up") == 0
        });
        gw.assert_healthy();
    }
}

#[test]
fn a_groups_limits_and_budgets_hold_per_member_across_replicas() {
    // Identity jwt: a token's consumer is not in the configuration; the descriptors name its
    // group rule and the member, and the service counts each member by the rule.
    let idp = VendorMock::start(Kind::Idp, &[]);
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let mut config = config();
    config["identity"] = json!("jwt");
    config["jwt"] = json!({"consumer_claim": "email", "groups": [
        {"group": "eng", "cost_center": "platform",
         "limits": {"output_tokens_per_minute": USAGE.output}},
        {"group": "interns", "cost_center": "trainees",
         "budget": {"daily_usd": INTERNS_DAILY_MICRO_USD as f64 / 1e6}}]});
    let redis = Redis::start();
    let service = RateLimitServer::start(&config.to_string(), &redis);
    let gateway = || {
        let mut b = envoy::shipped(
            "examples/replicas.yaml",
            &[
                ("anthropic", &[mock.port()]),
                ("ratelimit", &[service.port]),
            ],
        );
        oidc::add_token_check(&mut b).unwrap();
        b.upstream("idp", &Upstream::parse(&idp.url("")).unwrap())
            .unwrap();
        replica_with(b, &config, false)
    };
    let (a, b) = (gateway(), gateway());
    let token = |email: &str, group: &str| {
        crate::identity::mint(
            &idp,
            json!({"alg": "ES256", "claims": crate::identity::claims(email, &[group])}),
        )
    };
    let ask = |gw: &Gateway, token: &str| {
        post(
            gw,
            &[("authorization", &format!("Bearer {token}"))],
            &body(MODEL, false),
        )
    };
    let dev = token("dev@example.com", "eng");
    let colleague = token("colleague@example.com", "eng");
    assert_eq!(ask(&a, &dev).status, 200);
    redis.wait_counted("group=eng/output_tokens", USAGE.output as i64);
    assert_refused_across(
        &ask(&b, &dev),
        "output_tokens_per_minute",
        Some(&format!(
            "Consumer `dev@example.com` is limited to {} output tokens per minute.",
            USAGE.output
        )),
    );
    // The limit is per member: a colleague in the same group is served on B.
    assert_eq!(ask(&b, &colleague).status, 200);

    // An intern's own daily budget: half through A, half through B, then refused on both.
    let intern = token("intern@example.com", "interns");
    assert_eq!(ask(&a, &intern).status, 200);
    let cost = cost_of(&a, "trainees");
    redis.wait_counted("group=interns/usd_day", cost as i64);
    assert_eq!(ask(&b, &intern).status, 200);
    redis.wait_counted("group=interns/usd_day", 2 * cost as i64);
    for gw in [&a, &b] {
        let refused = ask(gw, &intern);
        assert_refused_across(&refused, "consumer_budget_daily", None);
        assert!(
            refused
                .body
                .contains("daily budget of consumer `intern@example.com`"),
            "{}",
            refused.body
        );
        gw.assert_healthy();
    }
}

/// `GET /v1/gateway/sessions/{id}` on a replica, as `key`.
fn session_of(gw: &Gateway, id: &str, key: &str) -> (u16, serde_json::Value) {
    let resp = crate::support::client()
        .get(gw.url(&format!("/v1/gateway/sessions/{id}")))
        .header("x-api-key", key)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().unwrap()).unwrap_or_default(),
    )
}

#[test]
fn a_sessions_totals_hold_across_replicas() {
    let mut r = Replicas::start(
        Mock::start("anthropic", anthropic::responder("anthropic")),
        false,
    );
    let session = "5f0b7c1e-2d4a-4b8e-9c3f-61a2d7e4b905";
    let turn = |gw: &Gateway, agent: Option<&str>| {
        let mut headers = vec![("x-api-key", DEV), ("x-claude-code-session-id", session)];
        if let Some(a) = agent {
            headers.push(("x-claude-code-agent-id", a));
        }
        assert_eq!(post(gw, &headers, &body(MODEL, true)).status, 200);
    };
    // Two turns of the main agent on A, a subagent's on B.
    turn(&r.a, None);
    turn(&r.a, None);
    turn(&r.b, Some("agent-explore"));
    // Each replica answers with the service's totals, which count all three.
    for gw in [&r.a, &r.b] {
        wait_until("the session store", || {
            let (status, s) = session_of(gw, session, DEV);
            status == 200 && s["usage"]["requests"] == 3
        });
        let (_, s) = session_of(gw, session, DEV);
        assert_eq!(s["scope"], "global", "{s}");
        assert_eq!(s["usage"]["output_tokens"], 3 * USAGE.output);
        assert_eq!(s["usage"]["cache_read_input_tokens"], 3 * USAGE.cache_read);
        let agents = s["agents"].as_array().unwrap();
        let explore = agents
            .iter()
            .find(|a| a["agent_id"] == "agent-explore")
            .unwrap();
        assert_eq!(explore["usage"]["requests"], 1);
        // Another consumer does not see it, on either replica.
        assert_eq!(session_of(gw, session, ALICE).0, 404);
    }
    assert_eq!(gauge(&r.a, "session_sync_failures"), 0);
    // The service down: each replica answers with its own numbers, and says so.
    r.service.kill();
    let (status, s) = session_of(&r.a, session, DEV);
    assert_eq!((status, &s["scope"]), (200, &json!("replica")), "{s}");
    assert_eq!(s["usage"]["requests"], 2);
    turn(&r.b, None);
    wait_until("the failed sync counted", || {
        gauge(&r.b, "session_sync_failures") >= 1
    });
    for gw in [&r.a, &r.b] {
        gw.assert_healthy();
    }
}
