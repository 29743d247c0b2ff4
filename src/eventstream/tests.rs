use super::*;
use crate::sse::Framer;
use serde_json::{Value, json};

/// The usual Bedrock padding: a prefix of this, of varying length.
const PAD: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn chunk(event: &Value, pad: usize) -> Vec<u8> {
    chunk_frame(event.to_string().as_bytes(), &PAD[..pad % PAD.len()])
}

/// A whole answer as Bedrock streams it: usage on message_start, deltas (one with a line break
/// and non-ASCII text), message_delta, and message_stop with the invocation metrics.
fn answer() -> Vec<u8> {
    let mut events = vec![
        json!({"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant",
            "model":"claude-opus-4-8","content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":51000,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    ];
    for text in ["Hello", ", wörld 😀", "\nline \"two\"", "\\ done"] {
        events.push(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}}));
    }
    events.push(json!({"type":"content_block_stop","index":0}));
    events.push(
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
        "usage":{"output_tokens":42}}),
    );
    events.push(
        json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{
        "inputTokenCount":12,"outputTokenCount":42,"invocationLatency":1798,"firstByteLatency":1507,
        "cacheReadInputTokenCount":51000,"cacheWriteInputTokenCount":3}}),
    );
    events
        .iter()
        .enumerate()
        .flat_map(|(i, e)| chunk(e, i * 7))
        .collect()
}

fn run(chunks: &[&[u8]]) -> (Vec<u8>, Transcoder) {
    let mut t = Transcoder::new();
    let mut out = Vec::new();
    for c in chunks {
        t.feed(c, &mut out);
    }
    t.finish(&mut out);
    (out, t)
}

fn once(stream: &[u8]) -> Vec<u8> {
    run(&[stream]).0
}

/// The SSE events of `out`, read back by the gateway's own framer.
fn events(out: &[u8]) -> Vec<(String, Value)> {
    let mut f = Framer::new();
    let mut got = Vec::new();
    f.feed(out, &mut |e| {
        assert!(!e.truncated);
        let name = String::from_utf8(e.name.to_vec()).unwrap();
        let data: Value = serde_json::from_slice(e.data)
            .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(e.data)));
        got.push((name, data));
    });
    assert_eq!(f.carried(), 0, "the output ends mid-event");
    got
}

/// The only event of `out`, which must be an error: (error type, message).
fn only_error(out: &[u8]) -> (String, String) {
    let ev = events(out);
    assert_eq!(ev.len(), 1, "{}", String::from_utf8_lossy(out));
    let (name, data) = &ev[0];
    assert_eq!(name, "error");
    assert_eq!(data["type"], "error");
    (
        data["error"]["type"].as_str().unwrap().to_owned(),
        data["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_real_bedrock_frame_is_reproduced_and_decoded() {
    let frame = chunk_frame(
        br#"{"type":"content_block_stop","index":0}"#,
        "abcdefghijklmnopqrstuvwxyz",
    );
    assert_eq!(
        frame[..12],
        [
            0x00, 0x00, 0x00, 0xbc, 0x00, 0x00, 0x00, 0x4b, 0x51, 0x1b, 0xa2, 0x64
        ]
    );
    let headers = b"\x0b:event-type\x07\x00\x05chunk\x0d:content-type\x07\x00\x10application/json\x0d:message-type\x07\x00\x05event";
    assert_eq!(&frame[12..12 + 75], headers);
    assert_eq!(
        &frame[87..188 - 4],
        br#"{"bytes":"eyJ0eXBlIjoiY29udGVudF9ibG9ja19zdG9wIiwiaW5kZXgiOjB9","p":"abcdefghijklmnopqrstuvwxyz"}"#
    );
    let (out, t) = run(&[&frame]);
    assert_eq!(
        out,
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    );
    assert_eq!(t.failure(), None);
    assert_eq!(t.carried(), 0);
}

#[test]
fn a_whole_answer_becomes_the_anthropic_stream() {
    let (out, t) = run(&[&answer()]);
    let ev = events(&out);
    let names: Vec<&str> = ev.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &ev {
        assert_eq!(data["type"], name.as_str());
    }
    assert!(!String::from_utf8_lossy(&out).contains("invocationMetrics"));
    assert_eq!(ev[8].1, json!({"type":"message_stop"}));
    assert_eq!(
        ev[0].1["message"]["usage"]["cache_read_input_tokens"],
        51000
    );
    assert_eq!(ev[3].1["delta"]["text"], ", wörld 😀");
    assert_eq!(ev[4].1["delta"]["text"], "\nline \"two\"");
    assert_eq!(ev[5].1["delta"]["text"], "\\ done");
    assert_eq!(ev[7].1["usage"]["output_tokens"], 42);
    assert_eq!(
        t.metrics(),
        Some(&InvocationMetrics {
            input_tokens: Some(12),
            output_tokens: Some(42),
            cache_read_input_tokens: Some(51000),
            cache_write_input_tokens: Some(3),
        })
    );
    assert_eq!(t.failure(), None);
}

#[test]
fn every_two_way_split_gives_the_same_output() {
    let stream = answer();
    let whole = once(&stream);
    for i in 0..=stream.len() {
        let mut t = Transcoder::new();
        let mut out = Vec::new();
        t.feed(&stream[..i], &mut out);
        assert!(t.carried() < stream.len());
        t.feed(&stream[i..], &mut out);
        t.finish(&mut out);
        assert_eq!(out, whole, "split at {i}");
        assert_eq!(t.failure(), None);
    }
}

#[test]
fn random_three_way_splits_and_single_bytes_give_the_same_output() {
    let stream = answer();
    let whole = once(&stream);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let a = (rng % (stream.len() as u64 + 1)) as usize;
        let b = ((rng >> 32) % (stream.len() as u64 + 1)) as usize;
        let (a, b) = (a.min(b), a.max(b));
        assert_eq!(
            run(&[&stream[..a], &stream[a..b], &stream[b..]]).0,
            whole,
            "{a} {b}"
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&bytes).0, whole);
}

#[test]
fn carried_bytes_never_exceed_the_frame_being_read() {
    let stream = answer();
    // Frame boundaries, from the length prefixes.
    let mut bounds = vec![0];
    while *bounds.last().unwrap() < stream.len() {
        let at = *bounds.last().unwrap();
        let len = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
        bounds.push(at + len);
    }
    for size in [1, 2, 3, 5, 11, 12, 13, 64, 100, 1000] {
        let mut t = Transcoder::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for c in stream.chunks(size) {
            t.feed(c, &mut out);
            fed += c.len();
            let start = *bounds.iter().rfind(|&&b| b <= fed).unwrap();
            assert_eq!(t.carried(), fed - start, "size {size}, fed {fed}");
        }
        assert_eq!(t.carried(), 0);
    }
}

#[test]
fn metrics_are_removed_wherever_they_are() {
    let m = r#""amazon-bedrock-invocationMetrics":{"inputTokenCount":5,"outputTokenCount":7}"#;
    let cases = [
        (
            format!(r#"{{"type":"message_stop",{m}}}"#),
            r#"{"type":"message_stop"}"#,
        ),
        (
            format!(r#"{{{m},"type":"message_stop"}}"#),
            r#"{"type":"message_stop"}"#,
        ),
        (
            format!(r#"{{"type":"x", {m} ,"a":1}}"#),
            r#"{"type":"x" ,"a":1}"#,
        ),
        (
            format!(r#"{{ {m} , {m},"type":"x",{m},{m}}}"#),
            r#"{ "type":"x"}"#,
        ),
        (
            format!(r#"{{"type":"x","a":[1,{{"b":2}}],{m} }}"#),
            r#"{"type":"x","a":[1,{"b":2}] }"#,
        ),
    ];
    for (doc, want) in &cases {
        let mut t = Transcoder::new();
        let mut out = Vec::new();
        t.feed(&chunk_frame(doc.as_bytes(), "p"), &mut out);
        let text = String::from_utf8(out).unwrap();
        let data = text.split("data: ").nth(1).unwrap().trim_end();
        assert_eq!(data, *want, "{doc}");
        serde_json::from_str::<Value>(data).unwrap();
        assert_eq!(t.metrics().unwrap().input_tokens, Some(5), "{doc}");
        assert_eq!(t.metrics().unwrap().output_tokens, Some(7));
        assert_eq!(t.metrics().unwrap().cache_read_input_tokens, None);
    }
    // Only the metrics and no type: read, and the event is skipped.
    let (out, t) = run(&[&chunk_frame(format!("{{{m}}}").as_bytes(), "")]);
    assert!(out.is_empty());
    assert_eq!(t.metrics().unwrap().input_tokens, Some(5));
    // Metrics that are not an object are still removed, and read as nothing.
    let doc = br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":[1]}"#;
    let (out, t) = run(&[&chunk_frame(doc, "")]);
    assert_eq!(
        events(&out),
        [("message_stop".to_owned(), json!({"type":"message_stop"}))]
    );
    assert_eq!(t.metrics(), None);
}

#[test]
fn raw_line_breaks_become_data_lines() {
    let doc = b"{\"type\":\"message_delta\",\r\n  \"usage\":\n{\"output_tokens\":3}\r}\n";
    let out = once(&chunk_frame(doc, "xyz"));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "event: message_delta\ndata: {\"type\":\"message_delta\",\ndata:   \"usage\":\ndata: {\"output_tokens\":3}\ndata: }\n\n"
    );
    assert_eq!(
        events(&out)[0].1,
        json!({"type":"message_delta","usage":{"output_tokens":3}})
    );
}

#[test]
fn frames_without_bytes_or_type_and_other_events_are_skipped() {
    let ok = chunk(&json!({"type":"ping"}), 3);
    let mut stream = Vec::new();
    let skipped = [
        encode_frame(
            &[(":message-type", "event"), (":event-type", "chunk")],
            br#"{"p":"abc"}"#,
        ),
        encode_frame(
            &[(":message-type", "event"), (":event-type", "chunk")],
            br#"{"bytes":7}"#,
        ),
        chunk_frame(br#"{"index":0}"#, ""),
        chunk_frame(br#"{"type":5}"#, ""),
        chunk_frame(br#"{"type":""}"#, ""),
        chunk_frame(br#"{"type":"a\nb"}"#, ""),
        chunk_frame(br#"[1,2]"#, ""),
        chunk_frame(br#""text""#, ""),
        encode_frame(
            &[(":message-type", "event"), (":event-type", "metadata")],
            b"{}",
        ),
        encode_frame(&[(":message-type", "event")], b"{}"),
        encode_frame(&[], b"anything"),
        encode_frame(&[(":message-type", "future")], b""),
    ];
    for s in &skipped {
        stream.extend_from_slice(s);
        stream.extend_from_slice(&ok);
    }
    let (out, t) = run(&[&stream]);
    let ev = events(&out);
    assert_eq!(ev.len(), skipped.len());
    assert!(
        ev.iter()
            .all(|e| e.0 == "ping" && e.1 == json!({"type":"ping"}))
    );
    assert_eq!(t.failure(), None);
}

#[test]
fn an_escaped_type_is_decoded_and_an_escaped_base64_slash_accepted() {
    let out = once(&chunk_frame(br#"{"type":"p\u0069ng"}"#, ""));
    assert_eq!(out, b"event: ping\ndata: {\"type\":\"p\\u0069ng\"}\n\n");
    // `???` is `Pz8/` when it falls on a 3-byte boundary.
    let mut b64 = Vec::new();
    for pad in 0..3 {
        b64.clear();
        let doc = format!(r#"{{"type":"ping","x":"{}???"}}"#, " ".repeat(pad));
        encode_base64(doc.as_bytes(), &mut b64);
        if b64.contains(&b'/') {
            break;
        }
    }
    assert!(b64.contains(&b'/'));
    let escaped = String::from_utf8(b64).unwrap().replace('/', "\\/");
    let payload = format!(r#"{{"bytes":"{escaped}"}}"#);
    let frame = encode_frame(
        &[(":message-type", "event"), (":event-type", "chunk")],
        payload.as_bytes(),
    );
    let ev = events(&once(&frame));
    assert!(ev[0].1["x"].as_str().unwrap().ends_with("???"));
}

#[test]
fn header_types_of_every_kind_are_read_past() {
    let payload = br#"{"bytes":"eyJ0eXBlIjoicGluZyJ9"}"#;
    let mut h = Vec::new();
    let mut add = |name: &str, kind: u8, value: &[u8]| {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(kind);
        h.extend_from_slice(value);
    };
    add("t", 0, b"");
    add("f", 1, b"");
    add("b", 2, b"\x01");
    add("s", 3, b"\x01\x02");
    add("i", 4, b"\x01\x02\x03\x04");
    add("l", 5, &[7; 8]);
    add("bytes", 6, b"\x00\x03abc");
    add("ts", 8, &[9; 8]);
    add("id", 9, &[1; 16]);
    add(":message-type", 7, b"\x00\x05event");
    add(":event-type", 7, b"\x00\x05chunk");
    // A bytes-typed header is not a string: this does not override the one above.
    add(":event-type", 6, b"\x00\x04junk");
    let frame = raw_frame(&h, payload);
    assert_eq!(once(&frame), b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
}

/// A frame with raw header bytes.
fn raw_frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = 16 + headers.len() + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&(total as u32).to_be_bytes());
    f.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let c = crc32fast::hash(&f);
    f.extend_from_slice(&c.to_be_bytes());
    f.extend_from_slice(headers);
    f.extend_from_slice(payload);
    let c = crc32fast::hash(&f);
    f.extend_from_slice(&c.to_be_bytes());
    f
}

/// A prelude with a valid CRC.
fn prelude(total: u32, headers: u32) -> Vec<u8> {
    let mut p = total.to_be_bytes().to_vec();
    p.extend_from_slice(&headers.to_be_bytes());
    let c = crc32fast::hash(&p);
    p.extend_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn exceptions_become_anthropic_errors_and_end_the_stream() {
    let cases = [
        ("throttlingException", "rate_limit_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("modelStreamErrorException", "api_error"),
        ("internalServerException", "api_error"),
        ("validationException", "invalid_request_error"),
        ("modelTimeoutException", "timeout_error"),
        ("ThrottlingException", "rate_limit_error"),
        ("somethingNewException", "api_error"),
    ];
    let ping = chunk(&json!({"type":"ping"}), 1);
    for (name, kind) in cases {
        let message = "Too many \"requests\"\n, <slow down> \\ ⏳";
        let mut stream = ping.clone();
        stream.extend_from_slice(&exception_frame(name, message));
        stream.extend_from_slice(&ping);
        stream.extend_from_slice(b"\x00\x00garbage after the exception");
        let (out, t) = run(&[&stream]);
        let ev = events(&out);
        assert_eq!(ev.len(), 2, "{name}");
        assert_eq!(ev[0].0, "ping");
        assert_eq!(ev[1].0, "error");
        assert_eq!(
            ev[1].1,
            json!({"type":"error","error":{"type":kind,"message":message}})
        );
        assert_eq!(t.failure(), Some(Failure::Exception));
        assert_eq!(t.failure().unwrap().as_str(), "exception");
        assert_eq!(t.carried(), 0);
    }
    // Without a message the exception's name says what happened.
    let frame = encode_frame(
        &[
            (":message-type", "exception"),
            (":exception-type", "modelTimeoutException"),
        ],
        b"not json",
    );
    assert_eq!(
        only_error(&once(&frame)),
        ("timeout_error".into(), "modelTimeoutException".into())
    );
    let frame = encode_frame(&[(":message-type", "exception")], br#"{"Message":"boom"}"#);
    assert_eq!(
        only_error(&once(&frame)),
        ("api_error".into(), "boom".into())
    );
}

#[test]
fn error_messages_become_api_errors() {
    let frame = encode_frame(
        &[
            (":message-type", "error"),
            (":error-code", "InternalFailure"),
            (":error-message", "An \"internal\" error"),
        ],
        b"",
    );
    let mut stream = frame;
    stream.extend_from_slice(&chunk(&json!({"type":"ping"}), 0));
    let (out, t) = run(&[&stream]);
    assert_eq!(
        only_error(&out),
        ("api_error".into(), "An \"internal\" error".into())
    );
    assert_eq!(t.failure(), Some(Failure::Exception));
    let frame = encode_frame(
        &[
            (":message-type", "error"),
            (":error-code", "InternalFailure"),
        ],
        b"",
    );
    assert_eq!(
        only_error(&once(&frame)),
        ("api_error".into(), "InternalFailure".into())
    );
}

/// Feeds `good` then `bad` then more good frames: one error event after `good`'s events,
/// naming `what`, and the failure label.
fn assert_broken(bad: &[u8], failure: Failure, what: &str) {
    let good = chunk(&json!({"type":"ping"}), 5);
    let mut stream = good.clone();
    stream.extend_from_slice(bad);
    stream.extend_from_slice(&good);
    for split in [0, good.len() + 1, good.len() + 12, stream.len()] {
        let (out, t) = run(&[&stream[..split], &stream[split..], &good]);
        let ev = events(&out);
        assert_eq!(ev.len(), 2, "{what}: {}", String::from_utf8_lossy(&out));
        assert_eq!(ev[0].0, "ping");
        assert_eq!(ev[1].0, "error");
        assert_eq!(ev[1].1["error"]["type"], "api_error");
        let message = ev[1].1["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{message}");
        assert!(message.starts_with("The upstream's event stream"));
        assert_eq!(t.failure(), Some(failure), "{what}");
        assert_eq!(t.carried(), 0);
    }
}

/// `frame` with the byte at `at` changed.
fn flipped(mut frame: Vec<u8>, at: usize) -> Vec<u8> {
    frame[at] ^= 0x20;
    frame
}

#[test]
fn each_framing_problem_is_one_error_event() {
    let good = chunk(&json!({"type":"ping"}), 5);
    let n = good.len();
    assert_broken(&flipped(good.clone(), 9), Failure::Crc, "checksum");
    assert_broken(&flipped(good.clone(), 2), Failure::Crc, "checksum");
    assert_broken(&flipped(good.clone(), 40), Failure::Crc, "checksum");
    assert_broken(&flipped(good.clone(), n - 1), Failure::Crc, "checksum");
    assert_broken(&prelude(15, 0), Failure::Malformed, "frame length");
    assert_broken(&prelude(0, 0), Failure::Malformed, "frame length");
    assert_broken(&prelude(100, 85), Failure::Malformed, "frame length");
    assert_broken(
        &prelude(MAX_FRAME as u32 + 1, 0),
        Failure::TooLarge,
        "larger",
    );
    assert_broken(
        &raw_frame(b"\x01a\x0a", b"{}"),
        Failure::Malformed,
        "headers",
    );
    assert_broken(&raw_frame(b"\x05ab", b"{}"), Failure::Malformed, "headers");
    assert_broken(
        &raw_frame(b"\x01a\x07\x00\x09abc", b"{}"),
        Failure::Malformed,
        "headers",
    );
    assert_broken(
        &raw_frame(b"\x01a\x05\x00", b"{}"),
        Failure::Malformed,
        "headers",
    );
    let chunk_headers = [(":message-type", "event"), (":event-type", "chunk")];
    for payload in [
        &b"{\"bytes\":\"e30=\""[..],
        b"",
        b"{\"bytes\":\"e30=\"} x",
        b"[]",
    ] {
        assert_broken(
            &encode_frame(&chunk_headers, payload),
            Failure::Malformed,
            "not JSON",
        );
    }
    for b64 in [
        "e30==",
        "e",
        "e3!=",
        "eyJ0eXBlIjoicGluZyJ9\u{e9}",
        "e30=e30=",
    ] {
        let payload = format!(r#"{{"bytes":"{b64}"}}"#);
        assert_broken(
            &encode_frame(&chunk_headers, payload.as_bytes()),
            Failure::Malformed,
            "base64",
        );
    }
    for doc in [
        &br#"{"type":"ping""#[..],
        br#"{"type":"ping"} {}"#,
        br#"{"type":"ping","a":01}"#,
        b"",
        b"   ",
    ] {
        assert_broken(&chunk_frame(doc, ""), Failure::Malformed, "valid JSON");
    }
}

#[test]
fn string_contents_pass_as_the_upstream_sent_them() {
    // The structure is the transcoder's to check; what strings hold is the upstream's, as in
    // every other answer the gateway forwards.
    for doc in [
        &br#"{"type":"ping","a":"\x"}"#[..],
        br#"{"type":"ping","a":"\u12g4"}"#,
        b"{\"type\":\"ping\",\"a\":\"tab\tinside\"}",
        b"{\"type\":\"ping\",\"a\":\"line\nbreak\"}",
        b"{\"type\":\"ping\",\"a\":\"\xff\"}",
    ] {
        let mut t = Transcoder::new();
        let mut out = Vec::new();
        t.feed(&chunk_frame(doc, ""), &mut out);
        assert_eq!(t.failure(), None, "{:?}", String::from_utf8_lossy(doc));
        let mut f = Framer::new();
        let mut got = Vec::new();
        f.feed(&out, &mut |e| got.push((e.name.to_vec(), e.data.to_vec())));
        assert_eq!(got, [(b"ping".to_vec(), doc.to_vec())]);
    }
}

#[test]
fn a_corrupt_prelude_fails_as_soon_as_it_is_complete() {
    // A prelude claiming 1 GiB, with a valid CRC: refused with its 12 bytes, not waited for.
    let huge = prelude(1 << 30, 0);
    let mut t = Transcoder::new();
    let mut out = Vec::new();
    t.feed(&huge[..5], &mut out);
    assert!(out.is_empty());
    assert_eq!(t.carried(), 5);
    t.feed(&huge[5..], &mut out);
    assert_eq!(t.failure(), Some(Failure::TooLarge));
    assert_eq!(t.failure().unwrap().as_str(), "too_large");
    assert_eq!(t.carried(), 0);
    assert_eq!(only_error(&out).0, "api_error");
    // Nothing more, ever.
    let before = out.len();
    t.feed(&chunk(&json!({"type":"ping"}), 0), &mut out);
    t.finish(&mut out);
    assert_eq!(out.len(), before);

    // A garbage length with a wrong CRC: a checksum error, also at once.
    let (out, t) = run(&[&b"\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00"[..]]);
    assert_eq!(t.failure(), Some(Failure::Crc));
    assert!(only_error(&out).1.contains("checksum"));
}

#[test]
fn finish_mid_frame_or_mid_prelude_is_a_truncation() {
    let stream = answer();
    let first = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
    let whole = events(&once(&stream));
    for cut in [
        first + 1,
        first + 5,
        first + 11,
        first + 12,
        first + 40,
        stream.len() - 1,
    ] {
        let (out, t) = run(&[&stream[..cut]]);
        let ev = events(&out);
        let (name, data) = ev.last().unwrap();
        assert_eq!(name, "error");
        assert!(
            data["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ended in the middle of a frame")
        );
        assert_eq!(ev[..ev.len() - 1], whole[..ev.len() - 1]);
        assert_eq!(t.failure(), Some(Failure::Truncated));
        assert_eq!(t.failure().unwrap().as_str(), "truncated");
    }
    // At a frame boundary, or with no body at all, finishing adds nothing.
    assert_eq!(events(&once(&stream[..first])).len(), 1);
    let (out, t) = run(&[]);
    assert!(out.is_empty());
    assert_eq!(t.failure(), None);
    assert_eq!(t.metrics(), None);
}

#[test]
fn crc_matches_the_reference_at_every_length_and_split() {
    let data: Vec<u8> = (0..600u32).map(|i| (i * 131 + i / 7) as u8).collect();
    for len in 0..data.len() {
        let d = &data[..len];
        assert_eq!(crc32(0, d), crc32fast::hash(d), "{len}");
        let at = len / 3;
        assert_eq!(crc32(crc32(0, &d[..at]), &d[at..]), crc32fast::hash(d));
    }
    for start in 0..64 {
        let eight: [u8; 8] = data[start..start + 8].try_into().unwrap();
        assert_eq!(crc32_8(eight), crc32fast::hash(&eight));
    }
}

/// Deterministic mutations of `seed`: byte changes, insertions and deletions of JSON syntax.
fn mutations(seed: &[u8], count: usize) -> Vec<Vec<u8>> {
    const SYNTAX: &[u8] = b"{}[]\":,\\ \n0-e.u1a_\x01\xff";
    let mut rng = 0x2545_f491_4f6c_dd1du64 ^ seed.len() as u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    (0..count)
        .map(|_| {
            let mut v = seed.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = next() % (v.len() + 1);
                let b = SYNTAX[next() % SYNTAX.len()];
                match next() % 3 {
                    0 if at < v.len() => v[at] = b,
                    1 if at < v.len() => {
                        v.remove(at);
                    }
                    _ => v.insert(at, b),
                }
            }
            v
        })
        .collect()
}

#[test]
fn the_fast_paths_agree_with_the_general_ones() {
    // Content deltas: recognized only when the walk reads the same event.
    let deltas = [
        &br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"you\"\n"}}"#[..],
        br#"{"type":"content_block_delta","index":12,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
        br#"{"type":"content_block_delta","index":3,"delta":{"type":"thinking_delta","thinking":"\u00e9"}}"#,
    ];
    let mut recognized = 0;
    for seed in deltas {
        assert!(delta_shape(seed).is_some());
        for doc in mutations(seed, 3000).iter().chain([&seed.to_vec()]) {
            if delta_shape(doc).is_none() {
                continue;
            }
            recognized += 1;
            let (mut cuts, mut metrics) = (Vec::new(), None);
            let kind = walk(doc, &mut cuts, &mut metrics);
            let name = match kind {
                Ok(Some(Kind::Raw(span))) => span.of(doc).to_vec(),
                other => panic!("{:?}: {}", other.is_ok(), String::from_utf8_lossy(doc)),
            };
            assert_eq!(name, b"content_block_delta");
            assert!(cuts.is_empty() && metrics.is_none());
        }
    }
    assert!(recognized > 100, "{recognized}");
    // Bedrock's header block reads as a chunk event.
    let h = Headers::parse(CHUNK_HEADERS).unwrap();
    assert_eq!(h.message_type, Some(&b"event"[..]));
    assert_eq!(h.event_type, Some(&b"chunk"[..]));
    // The compact payload: the same base64 the scanner finds.
    let seed = br#"{"bytes":"eyJ0eXBlIjoicGluZyJ9","p":"abcdefghij"}"#;
    assert!(compact_bytes(seed).is_some());
    let mut found = 0;
    for payload in mutations(seed, 3000) {
        if let Some(b64) = compact_bytes(&payload) {
            found += 1;
            let general = bytes_member(&payload)
                .and_then(|b| b)
                .map(|s| s.span.of(&payload));
            assert_eq!(general, Some(b64), "{}", String::from_utf8_lossy(&payload));
        }
    }
    assert!(found > 100, "{found}");
}

#[test]
fn failure_labels_are_distinct() {
    let all = [
        Failure::Crc,
        Failure::TooLarge,
        Failure::Truncated,
        Failure::Malformed,
        Failure::Exception,
    ];
    let mut names: Vec<&str> = all.iter().map(|f| f.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
}

/// Base64 the slow, obvious way.
fn reference_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for &c in s {
        let v = BASE64_ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

#[test]
fn base64_round_trips_at_every_length_and_rejects_strangers() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut dst = Vec::new();
    for len in 0..300 {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let mut enc = Vec::new();
        encode_base64(&data, &mut enc);
        assert!(decode_base64(&enc, &mut dst), "{len}");
        assert_eq!(dst, data);
        assert_eq!(reference_decode(&enc).unwrap(), data);
        // Without padding too.
        let bare = enc
            .strip_suffix(b"==")
            .or_else(|| enc.strip_suffix(b"="))
            .unwrap_or(&enc);
        assert!(decode_base64(bare, &mut dst));
        assert_eq!(dst, data);
        // Every position of the string, with every byte outside the alphabet.
        if len % 37 == 5 {
            for at in 0..enc.len() {
                for bad in 0..=255u8 {
                    if BASE64_ALPHABET.contains(&bad) || (bad == b'=' && at + 2 >= enc.len()) {
                        continue;
                    }
                    let mut e = enc.clone();
                    e[at] = bad;
                    assert!(!decode_base64(&e, &mut dst), "{len} {at} {bad}");
                }
            }
        }
    }
    for bad in [
        &b"A"[..],
        b"AAAAA",
        b"A===",
        b"AA=A",
        b"=",
        b"AB=",
        b"ABC==",
    ] {
        assert!(!decode_base64(bad, &mut dst), "{bad:?}");
    }
    assert!(decode_base64(b"", &mut dst) && dst.is_empty());
}
