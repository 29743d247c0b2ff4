//! Native throughput of the pure core on Claude-Code-shaped input: the JSON scanner alone
//! (validation), inspection with the cache layout, the full rewrite (inspect, plan, splice),
//! the SSE framer with usage extraction on a 200-event answer, and the Bedrock event-stream
//! transcoder on the same answer as Bedrock streams it. `cargo bench --bench core`
//! (or `make bench`, which also runs it under V8); prints MB/s and a `JSON ` line for the summary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/support/bodies.rs"]
#[allow(dead_code)]
mod bodies;

use claude_gateway::keys::{SharedStore, Write};
use claude_gateway::sessions::{self, Caller, Outcome, table};
use claude_gateway::{config, eventstream, json, plan, request, splice, sse, usage};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `f` repeatedly for about `budget` and returns the best MB/s over 5 rounds.
fn throughput(bytes: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget / 5 {
            f();
            n += 1;
        }
        let mbs = (bytes as f64 * n as f64) / start.elapsed().as_secs_f64() / 1e6;
        best = best.max(mbs);
    }
    best
}

fn main() {
    // The rewrite without and with the secret detector (in audit mode).
    let config = config::parse(b"{}").unwrap();
    let audited = config::parse(br#"{"secrets":{"enabled":true}}"#).unwrap();
    let detector = audited.secrets.as_ref().unwrap();
    let budget = Duration::from_millis(1000);
    println!(
        "{:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "body", "scan MB/s", "inspect MB/s", "+secrets MB/s", "rewrite MB/s", "+secrets MB/s"
    );
    let mut rows = Vec::new();
    for (label, size) in [
        ("50 KiB", 50 << 10),
        ("512 KiB", 512 << 10),
        ("5 MiB", 5 << 20),
    ] {
        let body = bodies::claude_code("claude-opus-4-8", true, size);
        let scan = throughput(body.len(), budget, || {
            black_box(json::validate(black_box(&body))).unwrap();
        });
        let inspect = throughput(body.len(), budget, || {
            black_box(request::inspect(black_box(&body), true)).unwrap();
        });
        let secrets = throughput(body.len(), budget, || {
            let f = request::inspect_with(black_box(&body), true, None, Some(detector)).unwrap();
            assert!(f.secrets.is_empty());
            black_box(f);
        });
        let plain = throughput(body.len(), budget, || rewrite(&config, &body));
        let audit = throughput(body.len(), budget, || rewrite(&audited, &body));
        println!(
            "{label:>10} {scan:>14.0} {inspect:>14.0} {secrets:>14.0} {plain:>14.0} {audit:>14.0}"
        );
        rows.push(format!(
            r#"{{"body":"{label}","scan_mbs":{scan:.0},"inspect_mbs":{inspect:.0},"secrets_mbs":{secrets:.0},"rewrite_mbs":{plain:.0},"audit_rewrite_mbs":{audit:.0}}}"#
        ));
    }
    // The detector alone, over the strings of the 512 KiB body as the scanner shows them (in one
    // batch; the filter's are 64 KiB).
    let body = bodies::claude_code("claude-opus-4-8", true, 512 << 10);
    let mut strings = Strings(Vec::new());
    let mut s = json::Scanner::observed(&body, &mut strings);
    s.value().unwrap();
    let spans = strings.0;
    let detect = throughput(body.len(), budget, || {
        let mut found = Vec::new();
        detector.scan_strings(black_box(&body), &spans, &mut found);
        assert!(found.is_empty());
    });
    println!(
        "{:>10} {detect:>14.0} MB/s  secret detector alone, {} strings",
        "512 KiB",
        spans.len()
    );
    // The framer sees the stream in the pieces Envoy hands over (16 KiB reads here).
    let stream = bodies::sse_answer("claude-opus-4-8", 200, |i| format!("token {i} ")).concat();
    let sse = throughput(stream.len(), budget, || {
        let (mut framer, mut extraction) = (sse::Framer::new(), usage::Extraction::new());
        for chunk in black_box(&stream).chunks(16 << 10) {
            framer.feed(chunk, &mut |e| {
                extraction.on_event(e);
            });
        }
        black_box(extraction.tokens());
    });
    println!(
        "{:>10} {sse:>14.0} MB/s  SSE framer + usage, 200 events",
        format!("{} KiB", stream.len() >> 10)
    );
    // The same answer from Bedrock: each event's JSON, members in the API's own order (`type`
    // first; `sse_answer` sorts them), in a chunk frame with the usual padding (a prefix of the
    // alphabet, of varying length), the invocation metrics on message_stop. MB/s of
    // event-stream input.
    const PAD: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut answer = vec![
        r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","content":[],"model":"claude-opus-4-8","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":51000,"output_tokens":1}}}"#.to_owned(),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_owned(),
    ];
    for i in 0..200 {
        answer.push(format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"token {i} "}}}}"#
        ));
    }
    answer.extend([
        r#"{"type":"content_block_stop","index":0}"#.to_owned(),
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":200}}"#.to_owned(),
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":200,"invocationLatency":1798,"firstByteLatency":507}}"#.to_owned(),
    ]);
    let frames: Vec<u8> = answer
        .iter()
        .enumerate()
        .flat_map(|(i, e)| eventstream::chunk_frame(e.as_bytes(), &PAD[..(i * 17) % PAD.len()]))
        .collect();
    let es = throughput(frames.len(), budget, || transcode(&frames));
    println!(
        "{:>10} {es:>14.0} MB/s  Bedrock event stream -> SSE, {} frames",
        format!("{} KiB", frames.len() >> 10),
        answer.len()
    );
    // One session turn as the filter runs it (the store in memory here, Envoy's shared data
    // there): the record looked up, the prefix compared, the diagnostics edit, the turn added.
    let mut turns = Vec::new();
    for (label, size) in [("1 KiB", 0), ("512 KiB", 512 << 10)] {
        let body = bodies::claude_code("claude-opus-4-8", false, size);
        let us = session_turn_us(&body);
        println!("{label:>10} {us:>14.1} µs  session turn (lookup, fingerprint, update)");
        turns.push(format!(r#"{{"body":"{label}","session_turn_us":{us:.2}}}"#));
    }
    // The summary (`benches/summary.py`) reads this line; `wasm32-wasip1` has no file system here.
    println!(
        r#"JSON {{"requests":[{}],"sse_mbs":{sse:.0},"sse_bytes":{},"eventstream_mbs":{es:.0},"eventstream_bytes":{},"detector_mbs":{detect:.0},"session_turns":[{}]}}"#,
        rows.join(","),
        stream.len(),
        frames.len(),
        turns.join(",")
    );
}

struct Strings(Vec<json::Span>);

impl json::Strings for Strings {
    fn string(&mut self, contents: json::Span) {
        self.0.push(contents);
    }
}

/// Plans a request (inspection, cache markers, secrets as configured) and splices its edits.
#[inline(never)]
fn rewrite(config: &config::Config, body: &[u8]) {
    let p = plan::plan(
        config,
        request::Endpoint::Messages,
        "/v1/messages",
        Some(black_box(body)),
        &mut |_| None,
    );
    black_box(splice::apply_prefix(body, &p.edits));
}

/// One Bedrock answer through a transcoder, in 16 KiB reads, each read's SSE in a new buffer as
/// the filter does. Not inlined into `main`, which runs once: V8 optimizes a wasm function on a
/// later call, as the filter's callbacks are.
#[inline(never)]
fn transcode(frames: &[u8]) {
    let mut t = eventstream::Transcoder::new();
    for chunk in black_box(frames).chunks(16 << 10) {
        let mut out = Vec::new();
        t.feed(chunk, &mut out);
        black_box(&out);
    }
    let mut out = Vec::new();
    t.finish(&mut out);
    assert!(t.failure().is_none() && t.metrics().is_some());
    black_box(out);
}

/// Shared data in memory, with Envoy's compare-and-swap.
#[derive(Default)]
struct Memory(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for Memory {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Write {
        let mut map = self.0.borrow_mut();
        let version = map.get(key).map_or(0, |e| e.1);
        if cas != 0 && cas != version {
            return Write::Conflict;
        }
        map.insert(key.to_owned(), (value.to_vec(), version + 1));
        Write::Done
    }
}

/// µs per session turn over `body` (best of 5 rounds).
#[inline(never)]
fn session_turn_us(body: &[u8]) -> f64 {
    let facts = request::inspect(body, true).unwrap();
    let store = Memory::default();
    let caller = Caller {
        session: "f25958b8-e75c-455d-8b40-f006d87cc2a4".into(),
        owner: "k:0123456789abcdef0123456789abcdef".into(),
        agent: None,
        parent: None,
    };
    let mut i = 0u64;
    // `throughput` with 1,000,000 "bytes" per call: its MB/s are turns per second.
    let per_second = throughput(1_000_000, Duration::from_millis(500), || {
        i += 1;
        let record = table::load(&store, &caller.owner, &caller.session, 2048);
        let (insight, edit) = sessions::begin(
            record.as_ref().map(|l| &l.session),
            None,
            body,
            &facts,
            &mut std::iter::empty(),
            true,
            true,
        );
        black_box(edit);
        let tokens = usage::Tokens {
            input: 10,
            cache_read: 5000,
            ..usage::Tokens::default()
        };
        let o = Outcome {
            model: Some("claude-opus-4-8"),
            tokens,
            cost_micro_usd: 100,
            now_ms: i,
            miss_reason: None,
            turn: Some(insight.turn(Some("msg_01XyZ"), &tokens, i)),
        };
        table::record(&store, &caller, &o, 2048, record);
    });
    1e6 / per_second
}
