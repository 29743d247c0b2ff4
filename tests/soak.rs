//! The soak (`make soak`, minutes; not part of `make test`): SOAK_REQUESTS (default 20,000)
//! mixed Messages requests at concurrency 32 against Envoy with 2 workers: streamed and not,
//! bodies from 2 KiB to 3 MiB, upstream 429/500/529, resets before the head (retried) and
//! mid-stream, clients leaving mid-stream and mid-upload. Then it reconciles: every token the
//! mock reported appears exactly once in the Prometheus counters and in the audit log, every
//! request has exactly one audit record, the VMs' memory levelled off, no VM failed. It prints
//! the table and fails on any mismatch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::envoy::{self, Gateway, Run};
use support::mock::{Gate, Mock, Recorded, Reply, Step};

const MODEL: &str = "claude-sonnet-4-5";
const CONCURRENCY: usize = 32;
/// Requests after which the VMs' memory is read the first time (or a tenth of a short run).
const WARM_UP: usize = 2_000;
/// The whole run must end within this, whatever happens.
const DEADLINE: Duration = Duration::from_secs(20 * 60);
const BUCKETS: [&str; 5] = [
    "input",
    "cache_creation_5m",
    "cache_creation_1h",
    "cache_read",
    "output",
];

/// What request `n` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Case {
    Stream,
    Json,
    Upstream429,
    Upstream500,
    Upstream529,
    /// Reset before the response head on the first attempt; Envoy retries.
    ResetOnce,
    /// Reset after the first events.
    ResetMidStream,
    ClientAbortMidStream,
    ClientAbortMidUpload,
}

fn case(n: usize) -> Case {
    match (n * 37) % 100 {
        0..=44 => Case::Stream,
        45..=79 => Case::Json,
        80..=83 => Case::Upstream429,
        84..=86 => Case::Upstream500,
        87..=88 => Case::Upstream529,
        89..=91 => Case::ResetOnce,
        92..=94 => Case::ResetMidStream,
        95..=97 => Case::ClientAbortMidStream,
        _ => Case::ClientAbortMidUpload,
    }
}

/// Body size class of request `n`: mostly small, 5% 128 KiB, 5% 512 KiB, 0.1% 3 MiB.
fn size(n: usize) -> usize {
    match (n % 1000, n % 20) {
        (7, _) => 3 << 20,
        (_, 3) => 512 << 10,
        (_, 13) => 128 << 10,
        (_, k) => [2 << 10, 8 << 10, 32 << 10][k % 3],
    }
}

/// The token counts the mock reports for request `n`, in [`BUCKETS`] order.
fn usage(n: usize) -> [u64; 5] {
    let n = n as u64;
    [
        1 + n % 97,
        if n % 5 == 0 { 1_000 + n % 300 } else { 0 },
        if n % 7 == 0 { 2_000 + n % 500 } else { 0 },
        if n % 3 != 0 { 5_000 + n % 10_000 } else { 0 },
        2 + n % 400,
    ]
}

fn event(name: &str, data: Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

fn usage_json(u: [u64; 5], output: u64) -> Value {
    json!({"input_tokens":u[0],"cache_creation_input_tokens":u[1] + u[2],
        "cache_read_input_tokens":u[3],"output_tokens":output,
        "cache_creation":{"ephemeral_5m_input_tokens":u[1],"ephemeral_1h_input_tokens":u[2]}})
}

/// message_start (output is its placeholder, 1) and a first delta.
fn stream_head(u: [u64; 5]) -> Vec<Step> {
    vec![
        Step::Send(event(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_soak","type":"message",
                "role":"assistant","model":MODEL,"content":[],"stop_reason":null,
                "usage":usage_json(u, 1)}}),
        )),
        Step::Send(event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,
                "delta":{"type":"text_delta","text":"soak-delta"}}),
        )),
    ]
}

fn stream_rest(u: [u64; 5]) -> Vec<Step> {
    let mut delta_usage = usage_json(u, u[4]);
    delta_usage
        .as_object_mut()
        .unwrap()
        .remove("cache_creation");
    [
        event(
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":delta_usage}),
        ),
        event("message_stop", json!({"type":"message_stop"})),
    ]
    .into_iter()
    .map(Step::Send)
    .collect()
}

fn error(status: u16, kind: &str) -> Reply {
    Reply::json(
        status,
        json!({"type":"error","error":{"type":kind,"message":"soak"}}).to_string(),
    )
}

/// The mock's side: what it reported, and gates the clients open.
#[derive(Default)]
struct Ledger {
    /// Tokens reported in usage that reached the gateway (the last usage of each response).
    tokens: Mutex<[u64; 5]>,
    /// Requests that already had their first (reset) attempt.
    reset_once: Mutex<HashSet<usize>>,
    gates: Mutex<HashMap<usize, Gate>>,
}

impl Ledger {
    fn report(&self, u: [u64; 5]) {
        let mut t = self.tokens.lock().unwrap();
        for (t, u) in t.iter_mut().zip(u) {
            *t += u;
        }
    }

    fn gate(&self, n: usize) -> Gate {
        self.gates.lock().unwrap().entry(n).or_default().clone()
    }

    fn reply(&self, r: &Recorded) -> Reply {
        let n: usize = r
            .header("x-claude-code-session-id")
            .and_then(|s| s.strip_prefix("soak-"))
            .and_then(|s| s.parse().ok())
            .expect("a soak request");
        let u = usage(n);
        let stream = r.json()["stream"] == true;
        match case(n) {
            Case::Upstream429 if n % 2 == 0 => {
                error(429, "rate_limit_error").header("retry-after", "1")
            }
            Case::Upstream429 => error(429, "rate_limit_error"),
            Case::Upstream500 => error(500, "api_error"),
            Case::Upstream529 => error(529, "overloaded_error"),
            Case::ResetOnce if self.reset_once.lock().unwrap().insert(n) => Reply::reset(),
            Case::ResetMidStream => {
                // message_start reached the gateway; the reset waits until the client has
                // the delta, so it cannot overtake the events in a socket buffer.
                self.report([u[0], u[1], u[2], u[3], 1]);
                let mut steps = stream_head(u);
                steps.push(Step::Wait(self.gate(n)));
                steps.push(Step::Reset);
                Reply::sse(steps)
            }
            Case::ClientAbortMidStream => {
                self.report([u[0], u[1], u[2], u[3], 1]);
                let mut steps = stream_head(u);
                steps.push(Step::UntilClosed);
                Reply::sse(steps)
            }
            _ if stream => {
                self.report(u);
                let mut steps = stream_head(u);
                steps.extend(stream_rest(u));
                Reply::sse(steps)
            }
            _ => {
                self.report(u);
                Reply::json(
                    200,
                    json!({"id":"msg_soak","type":"message","role":"assistant","model":MODEL,
                        "content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn",
                        "usage":usage_json(u, u[4])})
                    .to_string(),
                )
            }
        }
    }
}

/// Request bodies by (size, stream), built once.
struct Bodies(HashMap<(usize, bool), Vec<u8>>);

impl Bodies {
    fn new() -> Bodies {
        let mut map = HashMap::new();
        for s in [2 << 10, 8 << 10, 32 << 10, 128 << 10, 512 << 10, 3 << 20] {
            for stream in [true, false] {
                map.insert((s, stream), support::bodies::claude_code(MODEL, stream, s));
            }
        }
        Bodies(map)
    }

    fn get(&self, n: usize) -> &[u8] {
        let stream = !matches!(case(n), Case::Json);
        &self.0[&(size(n), stream)]
    }
}

/// Reads from `r` until `text` arrived; false if the stream ended first.
fn read_until(r: &mut impl Read, text: &[u8]) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(text.len()).any(|w| w == text) {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    true
}

fn raw_head(n: usize, len: usize) -> String {
    format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         x-claude-code-session-id: soak-{n}\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// Sends request `n` and checks its outcome; `Err` describes an unexpected one.
fn send(
    gw_port: u16,
    http: &reqwest::blocking::Client,
    ledger: &Ledger,
    n: usize,
    body: &[u8],
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{gw_port}/v1/messages?beta=true");
    let c = case(n);
    let fail = |what: &str| Err(format!("request {n} ({c:?}): {what}"));
    match c {
        Case::ClientAbortMidUpload | Case::ClientAbortMidStream => {
            let mut s = TcpStream::connect(("127.0.0.1", gw_port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            s.write_all(raw_head(n, body.len()).as_bytes()).unwrap();
            if c == Case::ClientAbortMidUpload {
                s.write_all(&body[..body.len() / 2]).unwrap();
                return Ok(());
            }
            s.write_all(body).unwrap();
            if !read_until(&mut s, b"soak-delta") {
                return fail("no first delta before the abort");
            }
            Ok(())
        }
        _ => {
            let mut resp = http
                .post(&url)
                .header("x-claude-code-session-id", format!("soak-{n}"))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .map_err(|e| format!("request {n} ({c:?}): {e}"))?;
            let status = resp.status().as_u16();
            let want = match c {
                Case::Upstream429 => 429,
                Case::Upstream500 => 500,
                Case::Upstream529 => 529,
                _ => 200,
            };
            if status != want {
                return fail(&format!("status {status}"));
            }
            if c == Case::ResetMidStream {
                if !read_until(&mut resp, b"soak-delta") {
                    return fail("no first delta before the reset");
                }
                ledger.gate(n).open();
                let mut rest = Vec::new();
                return match resp.read_to_end(&mut rest) {
                    Err(_) => Ok(()),
                    Ok(_) => fail("a clean end after a reset"),
                };
            }
            let text = resp.bytes().map_err(|e| e.to_string())?;
            let done = if status == 200 {
                &b"end_turn"[..]
            } else {
                b"\"error\""
            };
            if !text.windows(done.len()).any(|w| w == done) {
                return fail("incomplete response");
            }
            Ok(())
        }
    }
}

/// Sums of the filter's Prometheus counters: tokens by type, and requests.
fn prometheus(gw: &Gateway) -> ([u64; 5], u64) {
    let text = gw.admin_get("/stats/prometheus").unwrap();
    let types = [
        "input",
        "cache_write_5m",
        "cache_write_1h",
        "cache_read",
        "output",
    ];
    let mut tokens = [0u64; 5];
    let mut requests = 0;
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        if series.starts_with("claude_gateway_tokens{") {
            for (i, t) in types.iter().enumerate() {
                if series.contains(&format!("type=\"{t}\"")) {
                    tokens[i] += value;
                }
            }
        } else if series.starts_with("claude_gateway_requests{") {
            requests += value;
        }
    }
    (tokens, requests)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "minutes long: run with `make soak`"]
fn soak_reconciles_every_token_and_request() {
    let total: usize = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let began = Instant::now();
    let ledger = Arc::new(Ledger::default());
    let l = ledger.clone();
    let mock = Mock::start("anthropic", Arc::new(move |r: &Recorded| l.reply(r)));
    mock.forget_requests();
    let gw = Gateway::start_with(
        envoy::bootstrap(mock.port(), "{}"),
        &Run {
            concurrency: 2,
            ..Run::default()
        },
    );
    let vms_at_start = gw.vms_created();
    let bodies = Arc::new(Bodies::new());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let http = reqwest::blocking::Client::builder()
        .http1_only()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let port = gw.port;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (ledger, bodies, next, done, failures, http) = (
                ledger.clone(),
                bodies.clone(),
                next.clone(),
                done.clone(),
                failures.clone(),
                http.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= total || began.elapsed() > DEADLINE {
                        return;
                    }
                    if let Err(e) = send(port, &http, &ledger, n, bodies.get(n)) {
                        failures.lock().unwrap().push(e);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Memory after the warm-up (every body size, the 3 MiB one included, has been through).
    let warm_up = WARM_UP.min(total / 10);
    let mut warm = None;
    while workers.iter().any(|w| !w.is_finished()) {
        if warm.is_none() && done.load(Ordering::SeqCst) >= warm_up {
            warm = Some((
                gw.counter("wasmcustom.claude_gateway.vm_memory_bytes"),
                rss_kib(gw.pid()),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in workers {
        w.join().unwrap();
    }
    let sent = done.load(Ordering::SeqCst);
    let load_time = began.elapsed();

    // Every request's record, then the counters (written in the same callback).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = gw.audit_records();
    while records.len() < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        records = gw.audit_records();
    }
    let log_lines = std::fs::read_to_string(gw.access_log_path())
        .unwrap()
        .lines()
        .count();
    let (metric_tokens, metric_requests) = prometheus(&gw);
    let mock_tokens = *ledger.tokens.lock().unwrap();
    let mut audit_tokens = [0u64; 5];
    let keys = [
        "gen_ai.usage.input_tokens",
        "cache_creation_5m_input_tokens",
        "cache_creation_1h_input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.output_tokens",
    ];
    for r in &records {
        for (t, k) in audit_tokens.iter_mut().zip(keys) {
            *t += r[k].as_u64().unwrap_or(0);
        }
    }
    let sessions: HashSet<&str> = records
        .iter()
        .filter_map(|r| r["session.id"].as_str())
        .collect();
    let request_ids: HashSet<&str> = records
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let mut by_case: HashMap<Case, usize> = HashMap::new();
    for n in 0..sent {
        *by_case.entry(case(n)).or_default() += 1;
    }
    // The filter reports its memory gauges once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let end_memory = gw.counter("wasmcustom.claude_gateway.vm_memory_bytes");
    let end_rss = rss_kib(gw.pid());
    let (warm_memory, warm_rss) = warm.unwrap_or((0, 0));

    println!(
        "\nsoak: {sent} requests at concurrency {CONCURRENCY}, 2 Envoy workers, load {load_time:.1?}, total {:.1?}",
        began.elapsed()
    );
    let mut cases: Vec<_> = by_case.iter().collect();
    cases.sort_by_key(|(c, _)| format!("{c:?}"));
    for (c, k) in cases {
        println!("  {c:?}: {k}");
    }
    println!(
        "\n{:<18} {:>14} {:>14} {:>14}  ok",
        "bucket", "mock", "metrics", "audit log"
    );
    let mut mismatches = Vec::new();
    for (i, b) in BUCKETS.iter().enumerate() {
        let (m, p, a) = (mock_tokens[i], metric_tokens[i], audit_tokens[i]);
        let ok = m == p && m == a;
        println!(
            "{b:<18} {m:>14} {p:>14} {a:>14}  {}",
            if ok { "yes" } else { "NO" }
        );
        if !ok {
            mismatches.push(format!("{b}: mock {m}, metrics {p}, audit {a}"));
        }
    }
    let ok = sent == metric_requests as usize && sent == records.len();
    println!(
        "{:<18} {:>14} {:>14} {:>14}  {}",
        "requests (sent)",
        sent,
        metric_requests,
        records.len(),
        if ok { "yes" } else { "NO" }
    );
    if !ok {
        mismatches.push(format!(
            "requests: sent {sent}, metrics {metric_requests}, audit {}",
            records.len()
        ));
    }
    let retried = by_case.get(&Case::ResetOnce).copied().unwrap_or(0);
    let uploads = by_case
        .get(&Case::ClientAbortMidUpload)
        .copied()
        .unwrap_or(0);
    let upstream_want = sent + retried - uploads;
    println!(
        "upstream requests: {} (want {upstream_want}: sent + {retried} retried - {uploads} never uploaded)",
        mock.served()
    );
    println!(
        "distinct sessions in the audit log {}, distinct request ids {}, access log lines {log_lines}",
        sessions.len(),
        request_ids.len()
    );
    println!(
        "VM memory (all workers): {} KiB after warm-up ({warm_up} requests), {} KiB at the end; Envoy RSS {warm_rss} KiB -> {end_rss} KiB",
        warm_memory / 1024,
        end_memory / 1024
    );
    if mock.served() != upstream_want {
        mismatches.push(format!(
            "upstream requests {} != {upstream_want}",
            mock.served()
        ));
    }
    if sessions.len() != sent || request_ids.len() != sent || log_lines != sent {
        mismatches.push("a request has no record, or more than one".into());
    }
    if end_memory == 0 || end_memory > warm_memory.saturating_mul(3) / 2 {
        mismatches.push(format!(
            "VM memory grew after the warm-up: {warm_memory} -> {end_memory}"
        ));
    }
    if gw.vms_created() != vms_at_start {
        mismatches.push("a VM was replaced".into());
    }
    let failures = failures.lock().unwrap();
    for f in failures.iter().take(20) {
        println!("unexpected outcome: {f}");
    }
    if !failures.is_empty() {
        mismatches.push(format!("{} unexpected outcomes", failures.len()));
    }
    if sent != total {
        mismatches.push(format!(
            "only {sent} of {total} requests within the deadline"
        ));
    }
    gw.assert_healthy();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    println!("reconciled: every token and request exactly once");
}
