use super::*;
use crate::sse::Framer;

fn run(chunks: &[&[u8]]) -> (Extraction, usize) {
    let mut framer = Framer::new();
    let mut x = Extraction::new();
    let mut firsts = 0;
    for c in chunks {
        framer.feed(c, &mut |e| firsts += usize::from(x.on_event(e)));
    }
    (x, firsts)
}

fn transcript(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/sse/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Want {
    file: &'static str,
    tokens: Tokens,
    model: &'static str,
    stop: Option<&'static str>,
    error: Option<&'static str>,
    status: Status,
    web_search: u64,
}

fn cases() -> Vec<Want> {
    vec![
        Want {
            file: "text.sse",
            tokens: Tokens {
                input: 25,
                output: 15,
                ..Tokens::default()
            },
            model: "claude-opus-5-5",
            stop: Some("end_turn"),
            error: None,
            status: Status::Complete,
            web_search: 0,
        },
        Want {
            file: "tool_use_crlf.sse",
            tokens: Tokens {
                input: 472,
                output: 89,
                ..Tokens::default()
            },
            model: "claude-opus-5",
            stop: Some("tool_use"),
            error: None,
            status: Status::Complete,
            web_search: 0,
        },
        // The delta repeats the input counts: last writer wins, nothing is added twice.
        Want {
            file: "thinking.sse",
            tokens: Tokens {
                input: 2,
                cache_write_5m: 0,
                cache_write_1h: 11264,
                cache_read: 7276,
                output: 347,
            },
            model: "claude-opus-4-6",
            stop: Some("end_turn"),
            error: None,
            status: Status::Complete,
            web_search: 0,
        },
        // Server tools: the delta's input is larger than the start's; null keeps the old value.
        Want {
            file: "server_tool.sse",
            tokens: Tokens {
                input: 10682,
                output: 510,
                ..Tokens::default()
            },
            model: "claude-opus-5-5",
            stop: Some("end_turn"),
            error: None,
            status: Status::Complete,
            web_search: 1,
        },
        // No cache_creation split: all writes count as 5m.
        Want {
            file: "mid_stream_error.sse",
            tokens: Tokens {
                input: 4,
                cache_write_5m: 306,
                cache_read: 147449,
                output: 1,
                ..Tokens::default()
            },
            model: "claude-sonnet-4-5-20250929",
            stop: None,
            error: Some("overloaded_error"),
            status: Status::Partial,
            web_search: 0,
        },
    ]
}

fn check(want: &Want, x: &Extraction, firsts: usize, at: &str) {
    assert_eq!(x.tokens(), want.tokens, "{} {at}", want.file);
    assert_eq!(x.model.as_deref(), Some(want.model), "{} {at}", want.file);
    assert_eq!(x.stop_reason.as_deref(), want.stop, "{} {at}", want.file);
    assert_eq!(x.error_type.as_deref(), want.error, "{} {at}", want.file);
    assert_eq!(x.status(true), want.status, "{} {at}", want.file);
    assert_eq!(x.server_tools().0, want.web_search, "{} {at}", want.file);
    assert_eq!(
        firsts, 1,
        "{} {at}: exactly one first content delta",
        want.file
    );
}

#[test]
fn transcripts_split_at_every_byte_give_the_same_usage() {
    for want in cases() {
        let t = transcript(want.file);
        let (x, firsts) = run(&[&t]);
        check(&want, &x, firsts, "whole");
        for i in 0..=t.len() {
            let (x, firsts) = run(&[&t[..i], &t[i..]]);
            check(&want, &x, firsts, &format!("split at {i}"));
        }
    }
}

#[test]
fn transcripts_split_at_random_points_give_the_same_usage() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for want in cases() {
        let t = transcript(want.file);
        for _ in 0..300 {
            let mut cuts: Vec<usize> = (0..8)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % (t.len() as u64 + 1)) as usize
                })
                .collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts {
                chunks.push(&t[from..c]);
                from = c;
            }
            chunks.push(&t[from..]);
            let (x, firsts) = run(&chunks);
            check(
                &want,
                &x,
                firsts,
                &format!("cuts {chunks:?}", chunks = chunks.len()),
            );
        }
    }
}

#[test]
fn a_stream_cut_short_is_partial_and_an_empty_one_missing() {
    let t = transcript("text.sse");
    // Cut inside the first content delta, after message_start.
    let cut = t
        .windows(20)
        .position(|w| w == b"event: content_block")
        .unwrap()
        + 10;
    let (x, _) = run(&[&t[..cut]]);
    assert_eq!(x.status(false), Status::Partial);
    assert_eq!(x.tokens().input, 25);
    let (x, _) = run(&[b": nothing yet\n\n"]);
    assert_eq!(x.status(false), Status::Missing);
    // A finished stream that the filter saw end early (trailers missing, reset) is partial.
    let (x, _) = run(&[&t]);
    assert_eq!(x.status(false), Status::Partial);
}

#[test]
fn garbage_in_a_usage_event_is_failed() {
    let (x, _) = run(&[b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":\"ten\"}}}\n\n"]);
    assert_eq!(x.status(true), Status::Failed);
}

#[test]
fn data_only_streams_are_typed_from_the_json() {
    let (x, firsts) = run(&[
        b"data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n",
        b"data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\ndata: {\"type\":\"message_stop\"}\n\n",
    ]);
    assert_eq!(
        x.tokens(),
        Tokens {
            input: 3,
            output: 9,
            ..Tokens::default()
        }
    );
    assert_eq!((firsts, x.status(true)), (1, Status::Complete));
}

#[test]
fn non_streaming_bodies_and_error_envelopes() {
    let mut x = Extraction::new();
    x.on_json(br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":4,"cache_creation_input_tokens":306,"cache_read_input_tokens":147449,"cache_creation":{"ephemeral_5m_input_tokens":6,"ephemeral_1h_input_tokens":300},"output_tokens":8,"service_tier":"standard"}}"#);
    assert_eq!(
        x.tokens(),
        Tokens {
            input: 4,
            cache_write_5m: 6,
            cache_write_1h: 300,
            cache_read: 147449,
            output: 8
        }
    );
    assert_eq!(x.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(x.status(true), Status::Complete);

    let mut x = Extraction::new();
    x.on_json(br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"}"#);
    assert_eq!(
        (x.error_type.as_deref(), x.status(true)),
        (Some("rate_limit_error"), Status::Complete)
    );
    assert!(!x.mid_stream_error);

    let mut x = Extraction::new();
    x.on_json(b"<html>502 Bad Gateway</html>");
    assert_eq!(x.status(true), Status::Failed);
}

#[test]
fn arbitrary_bytes_never_panic_and_memory_stays_bounded() {
    let mut seed: u64 = 42;
    let mut framer = Framer::new();
    let mut x = Extraction::new();
    for _ in 0..2000 {
        let chunk: Vec<u8> = (0..97)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                // Mostly printable with line ends and SSE syntax sprinkled in.
                match (seed >> 59) as u8 {
                    0 => b'\n',
                    1 => b'\r',
                    2 => b':',
                    _ => (seed >> 33) as u8,
                }
            })
            .collect();
        framer.feed(&chunk, &mut |e| {
            x.on_event(e);
        });
        assert!(framer.carried() <= 3 * crate::sse::MAX_FIELD);
    }
    let _ = x.status(true);
}

#[test]
fn absurd_counts_saturate_instead_of_overflowing() {
    // An upstream can report any number; the usage fuzz target failed on this (seeded in
    // tests/fuzz_smoke.rs).
    let mut x = Extraction::new();
    x.on_json(
        br#"{"type":"message","usage":{"input_tokens":18446744073709551615,
        "cache_read_input_tokens":18446744073709551615,
        "cache_creation":{"ephemeral_5m_input_tokens":18446744073709551615,
            "ephemeral_1h_input_tokens":1}}}"#,
    );
    let t = x.tokens();
    assert_eq!(t.cache_write_5m + t.cache_write_1h, u64::MAX);
    assert_eq!(t.prompt(), u64::MAX);
    let prices = crate::cost::list_prices();
    let p = crate::cost::find(&prices, "claude-opus-4-8").unwrap();
    assert_eq!(crate::cost::micro_usd(p, &t, u64::MAX), u64::MAX);
    let _ = crate::cost::cache_savings_micro_usd(p, &t);
}

#[test]
fn vendor_metrics_fill_only_what_the_events_left_unset() {
    let mut x = Extraction::new();
    x.fallback(Some(10), Some(15), None, Some(4));
    let t = x.tokens();
    assert_eq!(
        (t.input, t.output, t.cache_read, t.cache_write_5m),
        (10, 15, 0, 4)
    );
    assert_eq!(x.status(false), Status::Partial);
    let mut x = Extraction::new();
    x.on_event(Event {
        name: b"message_start",
        data:
            br#"{"type":"message_start","message":{"usage":{"input_tokens":7,"output_tokens":1}}}"#,
        truncated: false,
    });
    x.fallback(Some(10), Some(15), Some(3), None);
    let t = x.tokens();
    assert_eq!((t.input, t.output, t.cache_read), (7, 1, 3));
    let mut x = Extraction::new();
    x.fallback(None, None, None, None);
    assert_eq!(x.status(true), Status::Missing);
}

#[test]
fn reads_the_cache_diagnosis_of_a_stream_and_a_body() {
    let start = |diagnostics: &str| {
        format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"usage\":{{\"input_tokens\":3}},\"diagnostics\":{diagnostics}}}}}\n\n"
        )
    };
    let missed = start(
        r#"{"cache_miss_reason":{"type":"system_changed","cache_missed_input_tokens":4100}}"#,
    );
    let (x, _) = run(&[missed.as_bytes()]);
    let miss = x.cache_miss.unwrap();
    assert_eq!(
        (miss.reason.as_str(), miss.missed_tokens),
        ("system_changed", Some(4100))
    );
    let (x, _) = run(&[start(r#"{"cache_miss_reason":null}"#).as_bytes()]);
    assert_eq!(x.cache_miss.unwrap().reason, "pending");
    for odd in ["Weird Thing", "made_up_reason"] {
        let d = format!(r#"{{"cache_miss_reason":{{"type":"{odd}"}}}}"#);
        let (x, _) = run(&[start(&d).as_bytes()]);
        assert_eq!(x.cache_miss.unwrap().reason, "other", "{odd}");
    }
    // A shape the gateway does not know is no diagnosis, and the usage still counts.
    let (x, _) = run(&[start(r#""surprise""#).as_bytes()]);
    assert_eq!((x.cache_miss.clone(), x.tokens().input), (None, 3));
    let (x, _) = run(&[start("null").as_bytes()]);
    assert_eq!(x.cache_miss, None);
    let mut x = Extraction::new();
    x.on_json(br#"{"type":"message","id":"msg_2","usage":{"input_tokens":1},"diagnostics":{"cache_miss_reason":{"type":"previous_message_not_found"}}}"#);
    let miss = x.cache_miss.unwrap();
    assert_eq!(
        (miss.reason.as_str(), miss.missed_tokens),
        ("previous_message_not_found", None)
    );
}
