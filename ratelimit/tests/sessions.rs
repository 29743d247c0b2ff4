//! The session store over a real Redis (`redis-server`, as tests/redis.rs): two service
//! binaries (two replicas' view of it) take turns of the same session at once and lose none;
//! owners do not see each other's sessions; the key expires; a dead Redis is UNAVAILABLE within
//! the bound. Every wait is bounded; every process started here is killed by its pid.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use claude_gateway::sessions::wire::{ADD, Added, Found, GET, Key, SERVICE, Turn};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Killed, free_port, redis};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

const OWNER: &str = "c:alice";
const SESSION: &str = "57a121ec-f78c-48c3-a745-e3036a3ecc33";
const TTL_HOURS: u64 = 2;
const TURNS: u64 = 50;

/// The binary on a free port, its log lines collected.
fn service(redis_port: u16, log: &Arc<Mutex<Vec<String>>>) -> (Killed, u16) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_claude-gateway-ratelimit"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/example-config.yaml"),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
        .args(["--session-ttl-hours", &TTL_HOURS.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("service {port}: {line}");
            log.lock().unwrap().push(line);
        }
    });
    (Killed(child), port)
}

async fn call<M, R>(channel: &Channel, method: &str, message: M) -> Result<R, tonic::Status>
where
    M: Send + Sync + 'static,
    R: Send + Sync + 'static,
    ProstCodec<M, R>: tonic::codec::Codec<Encode = M, Decode = R>,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let path = PathAndQuery::try_from(format!("/{SERVICE}/{method}")).unwrap();
    let answer = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unknown(e.to_string()))?;
        grpc.unary(tonic::Request::new(message), path, ProstCodec::default())
            .await
    };
    tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("no answer within 5 s")
        .map(tonic::Response::into_inner)
}

async fn add(channel: &Channel, turn: Turn) -> Result<Added, tonic::Status> {
    call(channel, ADD, turn).await
}

async fn get(channel: &Channel, owner: &str, session: &str) -> Result<Found, tonic::Status> {
    let key = Key {
        owner: owner.into(),
        session: session.into(),
    };
    call(channel, GET, key).await
}

/// A channel to the service, once it answers `Get` (Redis connected).
async fn connect(port: u16) -> Channel {
    let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = loop {
        if let Ok(channel) = endpoint.connect().await {
            break channel;
        }
        assert!(Instant::now() < deadline, "the service did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while let Err(e) = get(&channel, OWNER, "probe").await {
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            Instant::now() < deadline,
            "the service did not connect to Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    channel
}

/// Turn `i` of task `task`: the main agent, a subagent, and the subagent's own subagent.
fn turn(task: u64, i: u64) -> Turn {
    let (agent, parent) = match i % 3 {
        0 => ("", ""),
        1 => ("explore-1", ""),
        _ => ("grep-2", "explore-1"),
    };
    Turn {
        owner: OWNER.into(),
        session: SESSION.into(),
        agent: agent.into(),
        parent: parent.into(),
        model: if i.is_multiple_of(2) {
            "claude-sonnet-4-5"
        } else {
            "claude-haiku-4-5"
        }
        .into(),
        input_tokens: 1 + i,
        cache_read_input_tokens: 100 * task,
        output_tokens: 2 * i + task,
        cost_micro_usd: 1_000 + i * 7 + task,
        at_ms: 1_760_000_000_000 + i * 1_000,
        miss_reason: if i.is_multiple_of(10) {
            "system_changed"
        } else {
            ""
        }
        .into(),
        ..Turn::default()
    }
}

/// The session key's TTL (s) and the record's size (bytes), as Redis has them.
fn stored(redis_port: u16) -> (i64, i64) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).unwrap();
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let key = format!("claude_gateway:session:{OWNER}:{SESSION}");
    let ttl = redis::cmd("TTL").arg(&key).query(&mut con).unwrap();
    let size = redis::cmd("HSTRLEN")
        .arg(&key)
        .arg("j")
        .query(&mut con)
        .unwrap();
    (ttl, size)
}

fn agent<'a>(agents: &'a Value, id: Option<&str>) -> &'a Value {
    agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"].as_str() == id)
        .unwrap_or_else(|| panic!("no agent {id:?} in {agents}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_two_replicas_add_up_and_redis_bounds_them() {
    let redis_port = free_port();
    let mut redis_server = redis(redis_port);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (_a, a_port) = service(redis_port, &log);
    let (_b, b_port) = service(redis_port, &log);
    let a = connect(a_port).await;
    let b = connect(b_port).await;

    // 2 replicas x 50 turns of one session, at once: every one counted.
    let started = Instant::now();
    let tasks: Vec<_> = [(0, a.clone()), (1, b.clone())]
        .into_iter()
        .map(|(task, channel)| {
            tokio::spawn(async move {
                for i in 0..TURNS {
                    add(&channel, turn(task, i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "{} turns from 2 replicas at once in {:?}",
        2 * TURNS,
        started.elapsed()
    );
    let all: Vec<Turn> = (0..2)
        .flat_map(|task| (0..TURNS).map(move |i| turn(task, i)))
        .collect();
    let sum = |f: fn(&Turn) -> u64| all.iter().map(f).sum::<u64>();

    for channel in [&a, &b] {
        let found = get(channel, OWNER, SESSION).await.unwrap();
        let s: Value = serde_json::from_slice(&found.json).unwrap();
        assert_eq!(s["id"], SESSION);
        assert_eq!(s["scope"], "global");
        let usage = &s["usage"];
        assert_eq!(usage["requests"], 2 * TURNS, "{s}");
        assert_eq!(usage["input_tokens"], sum(|t| t.input_tokens));
        assert_eq!(
            usage["cache_read_input_tokens"],
            sum(|t| t.cache_read_input_tokens)
        );
        assert_eq!(usage["output_tokens"], sum(|t| t.output_tokens));
        assert_eq!(usage["cost_micro_usd"], sum(|t| t.cost_micro_usd));
        assert_eq!(s["first_seen"], "2025-10-09T08:53:20.000Z");
        assert_eq!(s["last_seen"], "2025-10-09T08:54:09.000Z");
        let models = s["models"].as_array().unwrap();
        assert_eq!(models.len(), 2);
        let per_model: u64 = models
            .iter()
            .map(|m| m["usage"]["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(per_model, 2 * TURNS);
        assert_eq!(s["cache_miss_reasons"]["system_changed"], 10);
        // The agent tree: main and explore-1 at the top, grep-2 under explore-1.
        let top = &s["agents"];
        assert_eq!(top.as_array().unwrap().len(), 2, "{top}");
        assert_eq!(agent(top, None)["usage"]["requests"], 34);
        let explore = agent(top, Some("explore-1"));
        assert_eq!(explore["usage"]["requests"], 34);
        let grep = agent(&explore["agents"], Some("grep-2"));
        assert_eq!(grep["parent_agent_id"], "explore-1");
        assert_eq!(grep["usage"]["requests"], 32);
    }

    // Another owner's session of the same id, or an unknown session: not found, not an error.
    let hex = "0123456789abcdef0123456789abcdef";
    for (owner, session) in [
        ("c:bob", SESSION),
        (&format!("k:{hex}") as &str, SESSION),
        ("j:alice", SESSION),
        (OWNER, "another-session"),
    ] {
        let found = get(&a, owner, session).await.unwrap();
        assert!(found.json.is_empty(), "{owner} {session}");
    }
    // Bad input.
    let e = get(&a, "alice", SESSION).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut bad = turn(0, 0);
    bad.agent = "../etc".into();
    let e = add(&a, bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = call::<Key, Found>(&a, "Delete", Key::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);

    // Each turn refreshed the key's expiry to the session TTL.
    let (ttl, size) = stored(redis_port);
    assert!(ttl > 0 && ttl <= (TTL_HOURS * 3600) as i64, "TTL {ttl}");
    eprintln!("the record: {size} bytes, TTL {ttl} s");

    // Redis stalls (SIGSTOP: connections open, no answers): UNAVAILABLE once the service's
    // bound (2 x 250 ms) is over, not a hang; served again once it resumes.
    let pid = redis_server.0.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let started = Instant::now();
    let e = add(&a, turn(0, 0)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    eprintln!("redis stopped: Add UNAVAILABLE after {took:?} ({e:?})");
    signal("-CONT");
    let resumed = Instant::now();
    while let Err(e) = get(&a, OWNER, SESSION).await {
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(resumed.elapsed() < Duration::from_secs(10), "{e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("redis resumed: served again after {:?}", resumed.elapsed());

    // Redis dies: UNAVAILABLE within the service's bound (2 x 250 ms), for both calls.
    redis_server.0.kill().unwrap();
    redis_server.0.wait().unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let e = add(&a, turn(0, 0)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        let e2 = get(&b, OWNER, SESSION).await.unwrap_err();
        assert_eq!(e2.code(), tonic::Code::Unavailable, "{e2:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        eprintln!("redis killed: Add and Get UNAVAILABLE in {took:?} ({e:?})");
    }
    drop(redis_server);

    let log = log.lock().unwrap();
    let start = log.iter().find(|l| l.contains("limits loaded")).unwrap();
    assert!(
        start.contains(&format!("sessions kept {TTL_HOURS} h")),
        "{start}"
    );
    assert!(
        log.iter()
            .all(|l| !l.contains("alice") && !l.contains(SESSION)),
        "{log:?}"
    );
}
