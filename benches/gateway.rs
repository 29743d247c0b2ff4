//! Envoy CPU time per request with the filter versus without any wasm filter: one Envoy with two
//! listeners (the shipped bootstrap's, and a copy without the wasm filter) in front of the same
//! upstream (a second Envoy that buffers the body and answers at once), in the same run, with
//! interleaved batches so drift cancels. CPU comes from the process's own accounting
//! (`/proc/<pid>/task/*/schedstat`, nanoseconds). `make bench` runs it; the table is also
//! written to `target/bench/gateway.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::bodies;
use support::bootstrap::Bootstrap;
use support::envoy::{self, Gateway, Run, pin_current_thread};

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
                  body: {inline_string: '{"id":"msg_bench","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}'}
                response_headers_to_add: [{header: {key: content-type, value: application/json}}]
          http_filters:
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 67108864
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#;

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
        let mut request = format!(
            "POST /v1/messages?beta=true HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
             anthropic-version: 2023-06-01\r\nx-api-key: sk-bench\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Conn {
            reader: BufReader::new(s),
            request,
        }
    }

    /// Sends the request once and returns the latency until the whole response was read.
    fn send(&mut self) -> Duration {
        let start = Instant::now();
        self.reader.get_mut().write_all(&self.request).unwrap();
        let mut length = 0usize;
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        if !line.starts_with("HTTP/1.1 200") {
            let mut rest = vec![0u8; 2048];
            let n = self.reader.read(&mut rest).unwrap_or(0);
            panic!("{line}{}", String::from_utf8_lossy(&rest[..n]));
        }
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        start.elapsed()
    }
}

#[derive(Default)]
struct Mode {
    cpu_ns: u64,
    requests: u64,
    latencies: Vec<Duration>,
}

impl Mode {
    fn cpu_us(&self) -> f64 {
        self.cpu_ns as f64 / self.requests as f64 / 1e3
    }

    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1e3
    }
}

fn main() {
    // The gateway gets CPU 0 to itself (one worker); the upstream and this client share CPU 1,
    // so they never preempt the process being measured.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (gateway_cpu, other_cpu) = if cpus >= 2 {
        (vec![0], vec![1])
    } else {
        (vec![], vec![])
    };
    pin_current_thread(&other_cpu);
    let upstream = Gateway::start_with(
        Bootstrap::parse(UPSTREAM).unwrap(),
        &Run {
            concurrency: 1,
            cpus: other_cpu.clone(),
            ..Run::default()
        },
    );
    let config = std::env::var("BENCH_PLUGIN_CONFIG").unwrap_or_else(|_| "{}".into());
    let mut b = envoy::bootstrap(upstream.port, &config);
    b.add_bare_listener("bare", "anthropic");
    let gw = Gateway::start_with(
        b,
        &Run {
            concurrency: 1,
            cpus: gateway_cpu,
            ..Run::default()
        },
    );
    let ports = [gw.listener_port_of(Some("bare")), gw.port];
    if let Ok(file) = std::env::var("BENCH_PID_FILE") {
        std::fs::write(file, gw.pid().to_string()).unwrap();
    }

    println!(
        "{:>8} {:>14} {:>14} {:>7} {:>17} {:>17}",
        "body", "bare CPU µs", "filter CPU µs", "ratio", "bare p50/p99 ms", "filter p50/p99 ms"
    );
    let mut rows = Vec::new();
    for (label, size, batch, rounds) in [
        ("50 KiB", 50 << 10, 100, 12),
        ("512 KiB", 512 << 10, 30, 12),
        ("5 MiB", 5 << 20, 4, 10),
    ] {
        let body = bodies::claude_code("claude-opus-4-8", false, size);
        let mut conns = ports.map(|p| Conn::new(p, &body));
        for c in &mut conns {
            for _ in 0..batch {
                c.send();
            }
        }
        let mut modes = [Mode::default(), Mode::default()];
        for round in 0..rounds {
            // Alternate which mode goes first so drift and warm-up effects cancel.
            for k in [round % 2, 1 - round % 2] {
                let before = gw.cpu_nanos();
                for _ in 0..batch {
                    let latency = conns[k].send();
                    modes[k].latencies.push(latency);
                }
                modes[k].cpu_ns += gw.cpu_nanos() - before;
                modes[k].requests += batch as u64;
            }
        }
        let [mut bare, mut filter] = modes;
        let ratio = filter.cpu_us() / bare.cpu_us();
        let (bp50, bp99, fp50, fp99) = (
            bare.percentile(0.5),
            bare.percentile(0.99),
            filter.percentile(0.5),
            filter.percentile(0.99),
        );
        println!(
            "{label:>8} {:>14.0} {:>14.0} {ratio:>6.2}x {:>8.2}/{:<8.2} {:>8.2}/{:<8.2}",
            bare.cpu_us(),
            filter.cpu_us(),
            bp50,
            bp99,
            fp50,
            fp99
        );
        rows.push(serde_json::json!({
            "body": label, "bytes": body.len(), "requests_per_mode": bare.requests,
            "bare_cpu_us": bare.cpu_us(), "filter_cpu_us": filter.cpu_us(), "ratio": ratio,
            "bare_p50_ms": bp50, "bare_p99_ms": bp99, "filter_p50_ms": fp50, "filter_p99_ms": fp99,
        }));
    }
    let out = envoy::repo().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let json = serde_json::to_string_pretty(&serde_json::json!({"gateway": rows})).unwrap();
    std::fs::write(out.join("gateway.json"), json).unwrap();
    gw.assert_healthy();
}
