//! `BENCH_PROFILE=all cargo bench --bench gateway` (`make profile`; or a list of modes): where
//! Envoy's CPU goes in each mode at 1 KiB, sampled by Linux `perf` (`perf record -p`, then `perf
//! report --sort dso`). The filter's own code is V8's compiled wasm, which has no file behind it
//! (`[unknown]` / `//anon` to perf); the Envoy binary holds Envoy itself, V8's runtime and the
//! host side of every proxy-wasm call; the kernel is the sockets. Each mode's share of its own
//! CPU per request, in microseconds. With a filter built with `--features profile`
//! (`GATEWAY_WASM`), the filter's own `profile:` lines are read from Envoy's log and printed too:
//! its spans, host calls by callback and allocations. Modes run one after the other here (not
//! interleaved as in the CPU table), so compare modes in that table, and shares here.

use super::{Conn, MODES, ports};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::envoy::Gateway;

use crate::support;

/// Requests sampled per mode, after `WARM`: multiples of the filter's profile line (2000).
const REQUESTS: usize = 4000;
const WARM: usize = 2000;
/// The first requests of each mode, timed apart.
const FIRST: usize = 20;

fn record(pid: u32, out: &std::path::Path) -> Child {
    Command::new("perf")
        .args(["record", "-q", "-F", "4999", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf (Debian: linux-perf)")
}

/// Ends `perf record` with SIGINT (it writes its file then) and waits, bounded.
fn stop(mut perf: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if perf.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = perf.kill();
    let _ = perf.wait();
}

/// Shares of samples by where the code lives: `wasm` (V8's compiled code), `envoy`, `kernel`,
/// `libc` and the rest.
fn shares(data: &std::path::Path) -> BTreeMap<&'static str, f64> {
    let out = Command::new("perf")
        .args(["report", "-q", "--stdio", "--sort", "dso", "-i"])
        .arg(data)
        .output()
        .expect("perf report");
    let mut shares = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.split_whitespace();
        let (Some(pct), Some(dso)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        let group = match dso {
            "[unknown]" | "//anon" | "[anon]" => "wasm",
            d if d.starts_with("[JIT]") || d.starts_with("perf-") => "wasm",
            "envoy" => "envoy",
            "[kernel.kallsyms]" | "[vdso]" => "kernel",
            d if d.starts_with("libc") || d.starts_with("ld-linux") || d.starts_with("libm") => {
                "libc"
            }
            _ => "other",
        };
        *shares.entry(group).or_insert(0.0) += pct / 100.0;
    }
    shares
}

/// The filter's own `profile:` lines (a build with `--features profile`) that Envoy logged
/// after byte `from` of its log: each covers `EVERY` requests of one VM, averaged here.
fn spans(gw: &Gateway, from: usize) -> Option<Value> {
    let log = gw.log();
    let lines: Vec<Value> = log
        .get(from..)?
        .lines()
        .filter_map(|l| serde_json::from_str(l.split_once("profile: ")?.1).ok())
        .collect();
    let first = lines.first()?.clone();
    if lines.len() == 1 {
        return Some(first);
    }
    // Average the per-request figures of every line.
    let mut sum = first;
    for line in &lines[1..] {
        for part in ["spans", "host_calls", "allocations"] {
            for (k, v) in line[part].as_object()? {
                let acc = &mut sum[part][k];
                *acc = match (acc.take(), v) {
                    (Value::Array(a), Value::Array(b)) => json!([
                        a[0].as_f64()? + b[0].as_f64()?,
                        a[1].as_f64()? + b[1].as_f64()?
                    ]),
                    (Value::Null, v) => v.clone(),
                    (a, b) => json!(a.as_f64()? + b.as_f64()?),
                };
            }
        }
    }
    let n = lines.len() as f64;
    for part in ["spans", "host_calls", "allocations"] {
        for v in sum[part].as_object_mut()?.values_mut() {
            *v = match v.take() {
                Value::Array(a) => json!([a[0].as_f64()? / n, a[1].as_f64()? / n]),
                x => json!(x.as_f64()? / n),
            };
        }
    }
    Some(sum)
}

/// Prints a profile line's spans, host calls by callback and allocations.
fn print_spans(s: &Value) {
    let fmt = |v: &Value| {
        format!(
            "{:.2}x {:.1} µs",
            v[0].as_f64().unwrap_or(0.0),
            v[1].as_f64().unwrap_or(0.0)
        )
    };
    println!(
        "    clock read {} ns (about two per span and timed call)",
        s["clock_ns"]
    );
    for (k, v) in s["spans"].as_object().into_iter().flatten() {
        println!("    span {k:<28} {}", fmt(v));
    }
    for (k, v) in s["host_calls"].as_object().into_iter().flatten() {
        println!("    host {k:<40} {}", fmt(v));
    }
    for (k, v) in s["allocations"].as_object().into_iter().flatten() {
        println!("    allocations {k:<22} {:.1}", v.as_f64().unwrap_or(0.0));
    }
}

pub fn profile(gw: &Gateway) -> Value {
    let body = support::bodies::claude_code("claude-opus-4-8", false, 0);
    let dir = support::envoy::repo().join("target/bench/perf");
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = json!({"body_bytes": body.len(), "requests": REQUESTS});
    println!(
        "profile, {} B body, {REQUESTS} requests per mode (µs per request):",
        body.len()
    );
    // `BENCH_PROFILE=default,on`: only those modes.
    let only = std::env::var("BENCH_PROFILE").unwrap_or_default();
    let wanted = |m: &str| only.split(',').any(|o| o == m || o == "1" || o == "all");
    for (mode, port) in MODES.iter().zip(ports(gw)).filter(|(m, _)| wanted(m)) {
        let mut conn = Conn::new(port, &body);
        // The first requests of a mode: V8 compiles a function when it first runs, and the
        // modes share one VM, so the first gateway mode pays for most of the compiling.
        let before = gw.cpu_nanos();
        for _ in 0..FIRST {
            conn.send();
        }
        let first_us = (gw.cpu_nanos() - before) as f64 / FIRST as f64 / 1e3;
        // As many as one profile line holds, so the measured requests start a new line.
        for _ in FIRST..WARM {
            conn.send();
        }
        let from = gw.log().len();
        let data = dir.join(format!("{mode}.data"));
        let perf = record(gw.pid(), &data);
        // perf attaches within a few milliseconds; requests sent before it did are not sampled
        // but counted, so give it time first (bounded).
        std::thread::sleep(Duration::from_millis(300));
        let before = gw.cpu_nanos();
        for _ in 0..REQUESTS {
            conn.send();
        }
        let us = (gw.cpu_nanos() - before) as f64 / REQUESTS as f64 / 1e3;
        stop(perf);
        let shares = shares(&data);
        print!("{mode:>12} {us:>6.0} µs (first {FIRST}: {first_us:.0} µs):");
        let mut row = json!({"cpu_us": us, "first_cpu_us": first_us});
        for (group, share) in &shares {
            print!(" {group} {:.0}", share * us);
            row[format!("{group}_us")] = json!(share * us);
        }
        println!();
        if let Some(s) = spans(gw, from) {
            print_spans(&s);
            row["filter"] = s;
        }
        if *mode == "floor_calls" {
            println!(
                "    floor.requests {}",
                gw.counter("wasmcustom.floor.requests")
            );
        }
        out[*mode] = row;
    }
    out
}
