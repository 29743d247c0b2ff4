//! The gateway next to bare Envoy, in one run: Envoy CPU time per request and client latency
//! (bare Envoy, the filter with everything off, the filter with everything on), streaming time to
//! first byte and per-event delay, throughput at concurrency 16, the VM's memory, and limits
//! across replicas (the rate-limit service and Redis) next to the gateway's own. One Envoy
//! serves all three modes on three listeners in front of the same upstream, and the modes take
//! turns in batches so drift cancels. CPU comes from the process's own accounting
//! (`/proc/<pid>/task/*/schedstat`, nanoseconds). `make bench` runs it and
//! `benches/summary.py` prints the table from `target/bench/gateway.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "gateway/profile.rs"]
mod profile;
#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use support::bodies;
use support::bootstrap::Bootstrap;
use support::envoy::{Gateway, Run, pin_current_thread};
use support::replicas::{RateLimitServer, Redis};

/// An upstream that buffers the request and answers at once with a message and its usage; the
/// message calls a tool, so the default configuration's tool-use audit has a call to read.
const UPSTREAM: &str = r#"
static_resources:
  listeners:
  - name: upstream
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    per_connection_buffer_limit_bytes: 67108864
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response:
                  status: 200
                  body: {inline_string: '{"id":"msg_bench","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"toolu_bench","name":"Bash","input":{"command":"ls -la"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}'}
                response_headers_to_add: [{header: {key: content-type, value: application/json}}]
          http_filters:
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 67108864
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#;

/// The key clients present: a virtual key in the "on" mode.
const CLIENT_KEY: &str = "sk-gw-bench";
const MODES: [&str; 11] = [
    "bare",
    "floor",
    "floor_rw",
    "floor_calls",
    "off",
    "sessionless",
    "default",
    "audited",
    "bedrock",
    "vertex",
    "on",
];

/// Everything on: cache injection, a route with a model rewrite, a virtual key swapped for a
/// pool key, usage accounting and the audit record (all defaults but routing and keys).
fn on_config() -> String {
    let key = Sha256::digest(CLIENT_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    json!({
        "identity": "virtual",
        "key_pools": {"anthropic": {"keys": [
            {"alias": "k1", "env": "ANTHROPIC_KEY_1"}, {"alias": "k2", "env": "ANTHROPIC_KEY_2"}]}},
        "routes": [{"name": "opus", "match": {"model": "claude-opus-*"}, "cluster": "anthropic",
                    "model_rewrite": "claude-opus-4-8-20261101", "key_pool": "anthropic", "auth": "x-api-key"}],
        "default_route": {"name": "anthropic", "cluster": "anthropic", "key_pool": "anthropic", "auth": "x-api-key"},
        "consumers": [{"id": "bench", "key_sha256": [key], "cost_center": "bench"}],
        "secrets": {"enabled": true},
    })
    .to_string()
}

/// Everything off: the filter still runs every callback, but injects, counts and logs nothing.
fn off_config() -> String {
    json!({
        "cache": {"enabled": false}, "usage": {"enabled": false}, "audit": {"enabled": false},
        "sessions": {"enabled": false},
        "default_route": {"name": "plain", "cluster": "plain"},
    })
    .to_string()
}

/// The module that only holds the request and reads its body (`benches/floor`, built by `make
/// bench`): the floor under any body-reading wasm filter.
fn floor_module() -> String {
    let path = support::envoy::repo().join("target/floor/wasm32-wasip1/release/bench_floor.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `make bench`",
        path.display()
    );
    path.display().to_string()
}

/// The defaults: cache injection, usage and audit on, the client's own credential, one route.
fn default_config() -> String {
    json!({"default_route": {"name": "plain", "cluster": "plain"}}).to_string()
}

/// The defaults without sessions: what per-session totals, diagnostics and verdicts cost.
fn sessionless_config() -> String {
    json!({"default_route": {"name": "plain", "cluster": "plain"}, "sessions": {"enabled": false}})
        .to_string()
}

/// The defaults with secrets audited: what the detector costs.
fn audited_config() -> String {
    json!({"default_route": {"name": "plain", "cluster": "plain"}, "secrets": {"enabled": true}})
        .to_string()
}

/// The defaults with the model routed to a cloud's dialect (`bedrock`, `vertex`): the body
/// rewritten to the cloud's shape and the path to its model's.
fn cloud_config(dialect: &str) -> String {
    let mut route = json!({"name": dialect, "match": {"model": "claude-opus-*"}, "cluster": "plain",
                           "dialect": dialect});
    if dialect == "vertex" {
        route["project"] = json!("bench");
        route["region"] = json!("global");
    }
    json!({"routes": [route], "default_route": {"name": "plain", "cluster": "plain"}}).to_string()
}

/// The virtual-keys example (its cluster also runs the filter as an upstream filter) with a
/// listener per mode in front of `upstream`: "on" (the example's own), the gateway's other
/// configurations, the floor module ("floor", "floor_rw" also writing back the body,
/// "floor_calls" also making the default's host calls) and "bare" (no wasm filter); all but
/// "on" go to a cluster without the upstream filter.
fn bootstrap(upstream: u16) -> Bootstrap {
    let mut b =
        support::envoy::shipped("examples/virtual-keys.yaml", &[("anthropic", &[upstream])]);
    b.plugin_config(&on_config())
        .add_cluster("plain", "127.0.0.1", upstream);
    b.add_bare_listener("mode-bare", "plain")
        .and_then(|b| b.add_configured_listener("mode-off", &off_config()))
        .and_then(|b| b.add_configured_listener("mode-sessionless", &sessionless_config()))
        .and_then(|b| b.add_configured_listener("mode-default", &default_config()))
        .and_then(|b| b.add_configured_listener("mode-audited", &audited_config()))
        .and_then(|b| b.add_configured_listener("mode-bedrock", &cloud_config("bedrock")))
        .and_then(|b| b.add_configured_listener("mode-vertex", &cloud_config("vertex")))
        .and_then(|b| b.add_module_listener("mode-floor", &floor_module(), ""))
        .and_then(|b| b.add_module_listener("mode-floor_rw", &floor_module(), "rewrite"))
        .and_then(|b| b.add_module_listener("mode-floor_calls", &floor_module(), "calls"))
        .unwrap();
    b
}

fn run(concurrency: u32, cpus: Vec<usize>) -> Run {
    Run {
        concurrency,
        cpus,
        wasm_log_level: "info",
        ..Run::default()
    }
    .env("ANTHROPIC_KEY_1", "sk-ant-pool-1")
    .env("ANTHROPIC_KEY_2", "sk-ant-pool-2")
}

/// Listener ports by mode, in `MODES` order.
fn ports(gw: &Gateway) -> [u16; MODES.len()] {
    MODES.map(|m| {
        if m == "on" {
            gw.port
        } else {
            gw.listener_port_of(Some(&format!("mode-{m}")))
        }
    })
}

fn request_bytes(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
         anthropic-version: 2023-06-01\r\nx-api-key: {CLIENT_KEY}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A keep-alive HTTP/1.1 connection that sends a fixed request and reads whole responses.
struct Conn {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl Conn {
    fn new(port: u16, body: &[u8]) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn {
            reader: BufReader::new(s),
            request: request_bytes(body),
        }
    }

    /// Sends the request and reads the status line and headers; returns the content length
    /// (`None`: chunked).
    fn send_head(&mut self) -> Option<usize> {
        self.reader.get_mut().write_all(&self.request).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        if !line.starts_with("HTTP/1.1 200") {
            let mut rest = vec![0u8; 2048];
            let n = self.reader.read(&mut rest).unwrap_or(0);
            panic!("{line}{}", String::from_utf8_lossy(&rest[..n]));
        }
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                return length;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = Some(v.trim().parse().unwrap());
            }
        }
    }

    /// Sends the request once and returns the latency until the whole response was read.
    fn send(&mut self) -> Duration {
        let start = Instant::now();
        let length = self.send_head().expect("a content-length");
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        start.elapsed()
    }
}

#[derive(Default, Clone)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// Envoy CPU per request and client latency per mode and body size.
fn cpu(gw: &Gateway) -> Vec<Value> {
    print!("{:>8}", "body");
    for m in MODES {
        print!(" {:>10}", format!("{m} µs"));
    }
    for m in &MODES[1..] {
        print!(" {:>6}", m);
    }
    println!(" {:>15} {:>15}", "bare p50/p99 ms", "on p50/p99 ms");
    let n = MODES.len();
    let mut rows = Vec::new();
    for (size, batch, rounds) in [
        (0, 200, 10),
        (50 << 10, 100, 14),
        (512 << 10, 30, 14),
        (5 << 20, 4, 12),
    ] {
        // Size 0: the smallest Claude Code request (system prompt and tools only).
        let body = bodies::claude_code("claude-opus-4-8", false, size);
        let label = match size {
            0 => format!("{} KiB", body.len() >> 10),
            s if s >= 1 << 20 => format!("{} MiB", s >> 20),
            s => format!("{} KiB", s >> 10),
        };
        let mut conns = ports(gw).map(|p| Conn::new(p, &body));
        for c in &mut conns {
            for _ in 0..batch {
                c.send();
            }
        }
        // CPU µs per request of each mode, one sample per round.
        let mut cpu: Vec<Samples> = vec![Samples::default(); n];
        let mut latency = vec![Samples::default(); n];
        for round in 0..rounds {
            // Rotate which mode goes first so drift and warm-up effects cancel.
            for k in (0..n).map(|i| (i + round) % n) {
                let before = gw.cpu_nanos();
                for _ in 0..batch {
                    latency[k].push(conns[k].send().as_secs_f64() * 1e3);
                }
                cpu[k].push((gw.cpu_nanos() - before) as f64 / batch as f64 / 1e3);
            }
        }
        let requests = (batch * rounds) as f64;
        // Medians over rounds: a round disturbed by something else on the machine does not count.
        let us: Vec<f64> = cpu.iter().map(|c| c.percentile(0.5)).collect();
        let ratio = |k: usize| -> f64 {
            let mut per_round = Samples::default();
            for (m, b) in cpu[k].0.iter().zip(&cpu[0].0) {
                per_round.push(m / b);
            }
            per_round.percentile(0.5)
        };
        let (bare, on) = (&latency[0], &latency[n - 1]);
        print!("{label:>8}");
        us.iter().for_each(|u| print!(" {u:>10.0}"));
        (1..n).for_each(|k| print!(" {:>5.2}x", ratio(k)));
        println!(
            " {:>6.2}/{:<8.2} {:>6.2}/{:<8.2}",
            bare.percentile(0.5),
            bare.percentile(0.99),
            on.percentile(0.5),
            on.percentile(0.99)
        );
        let mut row = json!({"body": label, "bytes": body.len(), "requests_per_mode": requests});
        for (k, mode) in MODES.iter().enumerate() {
            row[format!("{mode}_cpu_us")] = json!(us[k]);
            row[format!("{mode}_p50_ms")] = json!(latency[k].percentile(0.5));
            row[format!("{mode}_p99_ms")] = json!(latency[k].percentile(0.99));
            if k > 0 {
                row[format!("ratio_{mode}")] = json!(ratio(k));
            }
        }
        rows.push(row);
    }
    rows
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// A streaming upstream: answers every request with `events` text deltas `gap` apart, each
/// carrying the time it was written (nanoseconds since `EPOCH`), one chunk per event.
fn sse_upstream(events: usize, gap: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_sse(stream, events, gap));
        }
    });
    port
}

/// Replaced by the send time in each delta.
const STAMP: &str = "@stamp@";

fn serve_sse(stream: TcpStream, events: usize, gap: Duration) {
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream);
    // Built once: each delta is stamped when it is written, after the gap.
    let answer = bodies::sse_answer("claude-opus-4-8", events, |_| STAMP.to_owned());
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let out = reader.get_mut();
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .unwrap();
        for (i, event) in answer.iter().enumerate() {
            let event = match find(event, STAMP.as_bytes()) {
                Some(at) => {
                    if i > 2 {
                        std::thread::sleep(gap);
                    }
                    let mut stamped = event[..at].to_vec();
                    stamped.extend_from_slice(now_ns().to_string().as_bytes());
                    stamped.extend_from_slice(&event[at + STAMP.len()..]);
                    stamped
                }
                None => event.clone(),
            };
            let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
            chunk.extend_from_slice(&event);
            chunk.extend_from_slice(b"\r\n");
            if out.write_all(&chunk).is_err() {
                return;
            }
        }
        if out.write_all(b"0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// One streamed request: time to the response's first byte and each delta's delay (from the
/// upstream writing it to this client reading it), milliseconds.
fn stream_once(conn: &mut Conn) -> (f64, Vec<f64>) {
    let start = Instant::now();
    assert!(conn.send_head().is_none(), "a chunked stream");
    let ttfb = start.elapsed().as_secs_f64() * 1e3;
    let mut delays = Vec::new();
    let mut seen = Vec::new();
    let needle = b"\"text\":\"";
    let mut scanned = 0;
    let mut buf = [0u8; 65536];
    loop {
        let n = conn.reader.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        let at = now_ns();
        seen.extend_from_slice(&buf[..n]);
        // Every complete delta in what arrived so far.
        while let Some(p) = find(&seen[scanned..], needle) {
            let from = scanned + p + needle.len();
            let Some(end) = seen[from..].iter().position(|&b| b == b'"') else {
                break;
            };
            if let Ok(sent) = std::str::from_utf8(&seen[from..from + end])
                .unwrap()
                .parse::<u64>()
            {
                delays.push((at - sent) as f64 / 1e6);
            }
            scanned = from + end;
        }
        if seen.ends_with(b"0\r\n\r\n") && find(&seen, b"message_stop").is_some() {
            return (ttfb, delays);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Added time to first byte and added per-event delay for a 200-event answer, on vs bare.
fn streaming(gw_cpus: Vec<usize>, other: &[usize]) -> Value {
    pin_current_thread(other);
    let upstream = sse_upstream(200, Duration::from_micros(500));
    let gw = Gateway::start_with(bootstrap(upstream), &run(1, gw_cpus));
    let ports = ports(&gw);
    let mut out = json!({"events": 200, "gap_us": 500});
    println!(
        "{:>8} {:>22} {:>22} {:>26}",
        "body", "TTFB bare p50/p99 ms", "TTFB on p50/p99 ms", "event delay on-bare p50/p99/max ms"
    );
    for (label, size, streams) in [("50 KiB", 50 << 10, 30), ("512 KiB", 512 << 10, 30)] {
        let body = bodies::claude_code("claude-opus-4-8", true, size);
        let mut conns = [ports[0], ports[MODES.len() - 1]].map(|p| Conn::new(p, &body));
        let mut ttfb: [Samples; 2] = Default::default();
        let mut delay: [Samples; 2] = Default::default();
        for c in &mut conns {
            stream_once(c);
        }
        for round in 0..streams {
            for k in [round % 2, 1 - round % 2] {
                let (t, d) = stream_once(&mut conns[k]);
                assert_eq!(d.len(), 200, "every delta arrives");
                ttfb[k].push(t);
                d.into_iter().for_each(|x| delay[k].push(x));
            }
        }
        let added = |s: &[Samples; 2], p: f64| s[1].percentile(p) - s[0].percentile(p);
        println!(
            "{label:>8} {:>10.3}/{:<11.3} {:>10.3}/{:<11.3} {:>8.3}/{:.3}/{:.3}",
            ttfb[0].percentile(0.5),
            ttfb[0].percentile(0.99),
            ttfb[1].percentile(0.5),
            ttfb[1].percentile(0.99),
            added(&delay, 0.5),
            added(&delay, 0.99),
            added(&delay, 1.0),
        );
        out[label] = json!({
            "streams_per_mode": streams,
            "ttfb_bare_p50_ms": ttfb[0].percentile(0.5), "ttfb_bare_p99_ms": ttfb[0].percentile(0.99),
            "ttfb_on_p50_ms": ttfb[1].percentile(0.5), "ttfb_on_p99_ms": ttfb[1].percentile(0.99),
            "ttfb_added_p50_ms": added(&ttfb, 0.5),
            "event_delay_bare_p50_ms": delay[0].percentile(0.5), "event_delay_on_p50_ms": delay[1].percentile(0.5),
            "event_delay_added_p50_ms": added(&delay, 0.5), "event_delay_added_p99_ms": added(&delay, 0.99),
            "event_delay_bare_max_ms": delay[0].percentile(1.0), "event_delay_on_max_ms": delay[1].percentile(1.0),
        });
    }
    gw.assert_healthy();
    out
}

/// Requests per second at concurrency 16 against Envoy with 2 workers, every mode, 50 KiB.
fn throughput(upstream: u16) -> Value {
    pin_current_thread(&[]);
    let gw = Gateway::start_with(bootstrap(upstream), &run(2, Vec::new()));
    let ports = ports(&gw);
    let body = bodies::claude_code("claude-opus-4-8", false, 50 << 10);
    let measure = |port: u16, secs: f64| -> f64 {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut c = Conn::new(port, &body);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        c.send();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let n: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        n as f64 / secs
    };
    for p in ports {
        measure(p, 0.5);
    }
    // Every mode twice, the second pass in reverse order, so drift cancels.
    let n = MODES.len();
    let mut rps = [0.0f64; MODES.len()];
    for k in (0..n).chain((0..n).rev()) {
        rps[k] += measure(ports[k], 2.0) / 2.0;
    }
    let ratio = rps[n - 1] / rps[0];
    print!("throughput, c=16, 2 workers, 50 KiB:");
    for (m, r) in MODES.iter().zip(rps) {
        print!(" {m} {r:.0} req/s ({:.2}x)", r / rps[0]);
    }
    println!();
    gw.assert_healthy();
    let mut out = json!({"concurrency": 16, "workers": 2, "body": "50 KiB", "ratio": ratio});
    for (m, r) in MODES.iter().zip(rps) {
        out[format!("{m}_rps")] = json!(r);
    }
    out
}

/// The filter's memory gauges (summed over the VMs), after the next report.
fn memory_gauges(gw: &Gateway) -> [u64; 3] {
    // Reported every second from the root context's tick.
    std::thread::sleep(Duration::from_millis(1100));
    ["vm_memory_bytes", "vm_heap_bytes", "vm_heap_peak_bytes"]
        .map(|g| gw.counter(&format!("wasmcustom.claude_gateway.{g}")))
}

/// VM memory after 100 and after 10,000 requests of mixed sizes, and the heap one 5 MiB
/// request needs at its peak.
fn memory(upstream: u16, cpus: Vec<usize>) -> Value {
    let gw = Gateway::start_with(bootstrap(upstream), &run(1, cpus));
    let sizes = [50 << 10, 512 << 10, 5 << 20];
    let mut conns =
        sizes.map(|s| Conn::new(gw.port, &bodies::claude_code("claude-opus-4-8", false, s)));
    conns[0].send();
    let idle = memory_gauges(&gw);
    conns[2].send();
    let after_5mib = memory_gauges(&gw);
    let per_request_peak = after_5mib[2] - idle[1];
    // Per 100 requests: one 5 MiB, nine 512 KiB, ninety 50 KiB.
    let mut mixed = |n: usize| {
        for i in 0..n {
            let k = match i % 100 {
                0 => 2,
                1..=9 => 1,
                _ => 0,
            };
            conns[k].send();
        }
    };
    mixed(98);
    let at_100 = memory_gauges(&gw);
    mixed(9_900);
    let at_10k = memory_gauges(&gw);
    let ratio = at_10k[0] as f64 / at_100[0] as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "VM memory: after 100 requests {:.1} MiB (heap {:.1}), after 10,000 {:.1} MiB (heap {:.1}): {ratio:.2}x; \
         peak heap for one 5 MiB request {:.1} MiB",
        mib(at_100[0]),
        mib(at_100[1]),
        mib(at_10k[0]),
        mib(at_10k[1]),
        mib(per_request_peak)
    );
    gw.assert_healthy();
    json!({
        "vm_memory_after_100": at_100[0], "vm_memory_after_10000": at_10k[0], "ratio": ratio,
        "heap_after_100": at_100[1], "heap_after_10000": at_10k[1],
        "peak_heap_5mib_request": per_request_peak, "vm_memory_idle": idle[0],
    })
}

/// Limits across replicas: one consumer with every limit and a budget, counted by the gateway
/// alone ("local": virtual-keys.yaml) or by the rate-limit service over Redis ("global":
/// replicas.yaml, a check on the request path and a charge at stream end). Envoy CPU per
/// request, the service's and Redis's, and client latency; the two Envoys take turns in batches.
fn global_limits(upstream: u16, gateway_cpu: Vec<usize>) -> Value {
    let config = |global: bool| {
        let mut c: Value = serde_json::from_str(&on_config()).unwrap();
        c["consumers"][0]["limits"] = json!({"requests_per_minute": 1_000_000_000u64,
            "input_tokens_per_minute": 1_000_000_000u64, "output_tokens_per_minute": 1_000_000_000u64});
        c["budgets"] = json!({"bench": {"daily_usd": 100_000, "monthly_usd": 900_000}});
        if global {
            c["global_limits"] = json!({"enabled": true, "cluster": "ratelimit"});
        }
        c.to_string()
    };
    let redis = Redis::start();
    let service = RateLimitServer::start(&config(true), &redis);
    let mut local =
        support::envoy::shipped("examples/virtual-keys.yaml", &[("anthropic", &[upstream])]);
    local.plugin_config(&config(false));
    let mut global = support::envoy::shipped(
        "examples/replicas.yaml",
        &[("anthropic", &[upstream]), ("ratelimit", &[service.port])],
    );
    global.plugin_config(&config(true));
    let gws = [
        Gateway::start_with(local, &run(1, gateway_cpu.clone())),
        Gateway::start_with(global, &run(1, gateway_cpu)),
    ];
    let body = bodies::claude_code("claude-opus-4-8", false, 0);
    let mut conns = gws.each_ref().map(|g| Conn::new(g.port, &body));
    for c in &mut conns {
        for _ in 0..200 {
            c.send();
        }
    }
    let (batch, rounds) = (200, 10);
    let mut cpu = [Samples::default(), Samples::default()];
    let mut latency = [Samples::default(), Samples::default()];
    let (mut service_ns, mut redis_ns) = (0, 0);
    let redis_pid = redis.pid().unwrap();
    for round in 0..rounds {
        for k in [round % 2, (round + 1) % 2] {
            let before = gws[k].cpu_nanos();
            let others = (
                support::envoy::cpu_nanos(service.pid()),
                support::envoy::cpu_nanos(redis_pid),
            );
            for _ in 0..batch {
                latency[k].push(conns[k].send().as_secs_f64() * 1e3);
            }
            cpu[k].push((gws[k].cpu_nanos() - before) as f64 / batch as f64 / 1e3);
            if k == 1 {
                service_ns += support::envoy::cpu_nanos(service.pid()) - others.0;
                redis_ns += support::envoy::cpu_nanos(redis_pid) - others.1;
            }
        }
    }
    let requests = (batch * rounds) as f64;
    let [l, g] = [0, 1].map(|k| {
        (
            cpu[k].percentile(0.5),
            latency[k].percentile(0.5),
            latency[k].percentile(0.99),
        )
    });
    let (service_us, redis_us) = (
        service_ns as f64 / requests / 1e3,
        redis_ns as f64 / requests / 1e3,
    );
    println!(
        "global limits ({} requests each, {} KiB): Envoy CPU local {:.0} µs, global {:.0} µs; \
         the service {service_us:.0} µs and Redis {redis_us:.0} µs per request; latency p50/p99 \
         local {:.2}/{:.2} ms, global {:.2}/{:.2} ms (added {:+.2}/{:+.2})",
        requests,
        body.len() >> 10,
        l.0,
        g.0,
        l.1,
        l.2,
        g.1,
        g.2,
        g.1 - l.1,
        g.2 - l.2
    );
    for gw in &gws {
        gw.assert_healthy();
    }
    assert!(
        redis.counted("consumer=bench/requests") > 0,
        "the service counted nothing"
    );
    json!({
        "requests_per_mode": requests, "body_bytes": body.len(),
        "local_cpu_us": l.0, "global_cpu_us": g.0, "service_cpu_us": service_us, "redis_cpu_us": redis_us,
        "local_p50_ms": l.1, "local_p99_ms": l.2, "global_p50_ms": g.1, "global_p99_ms": g.2,
        "added_p50_ms": g.1 - l.1, "added_p99_ms": g.2 - l.2,
    })
}

fn main() {
    // The measured Envoy gets CPU 0 to itself (one worker); the upstream and this client share
    // CPU 1, so they never preempt the process being measured.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (gateway_cpu, other_cpu) = if cpus >= 2 {
        (vec![0], vec![1])
    } else {
        (vec![], vec![])
    };
    LazyLock::force(&EPOCH);
    pin_current_thread(&other_cpu);
    let upstream = Gateway::start_with(
        Bootstrap::parse(UPSTREAM).unwrap(),
        &Run {
            concurrency: 1,
            cpus: other_cpu.clone(),
            ..Run::default()
        },
    );
    let gw = Gateway::start_with(bootstrap(upstream.port), &run(1, gateway_cpu.clone()));
    if let Ok(file) = std::env::var("BENCH_PID_FILE") {
        std::fs::write(file, gw.pid().to_string()).unwrap();
    }
    if std::env::var_os("BENCH_PROFILE").is_some() {
        let profile = profile::profile(&gw);
        gw.assert_healthy();
        let name = std::env::var("BENCH_PROFILE_OUT").unwrap_or_else(|_| "profile.json".into());
        let out = support::envoy::repo().join("target/bench").join(name);
        std::fs::write(out, serde_json::to_string_pretty(&profile).unwrap()).unwrap();
        return;
    }
    let cpu = cpu(&gw);
    gw.assert_healthy();
    drop(gw);
    let streaming = streaming(gateway_cpu.clone(), &other_cpu);
    let memory = memory(upstream.port, gateway_cpu.clone());
    let throughput = throughput(upstream.port);
    let global_limits = global_limits(upstream.port, gateway_cpu);
    let out = support::envoy::repo().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let report = json!({"cpu": cpu, "streaming": streaming, "throughput": throughput, "memory": memory,
            "global_limits": global_limits});
    std::fs::write(
        out.join("gateway.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
