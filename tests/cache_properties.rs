//! Property tests of the cache rewriter on generated request bodies: the output parses, equals
//! the input once the added markers are removed, has at most 4 breakpoints, keeps the TTL order
//! and is a fixed point of the rewriter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use claude_gateway::cache::{self, Locations, Settings, Ttl};
use claude_gateway::request::inspect;
use claude_gateway::splice;
use proptest::prelude::*;
use serde_json::{Value, json};

fn marker() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(json!({"type":"ephemeral"}))),
        1 => Just(Some(json!({"type":"ephemeral","ttl":"5m"}))),
        1 => Just(Some(json!({"type":"ephemeral","ttl":"1h","scope":"global"}))),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" \n".to_owned()),
        "[a-z\"\\\\\n é😀]{1,40}"
    ]
}

fn with_marker(mut block: Value, m: Option<Value>) -> Value {
    if let Some(m) = m {
        block["cache_control"] = m;
    }
    block
}

fn block() -> impl Strategy<Value = Value> {
    let plain = prop_oneof![
        text().prop_map(|t| json!({"type":"text","text":t})),
        Just(
            json!({"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}})
        ),
        Just(
            json!({"type":"tool_use","id":"t1","name":"Bash","input":{"cache_control":"not a marker"}})
        ),
        Just(json!({"type":"thinking","thinking":"hm","signature":"s"})),
        Just(json!({"type":"redacted_thinking","data":"x"})),
        Just(json!({"type":"server_tool_use","id":"s","name":"web_search","input":{}})),
        (text(), marker()).prop_map(|(t, m)| json!({"type":"tool_result","tool_use_id":"t1",
            "content":[with_marker(json!({"type":"text","text":t}), m)]})),
    ];
    (plain, marker()).prop_map(|(b, m)| with_marker(b, m))
}

fn content() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(block(), 0..4).prop_map(Value::Array),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    (
        prop_oneof![3 => Just("user"), 2 => Just("assistant"), 1 => Just("system")],
        content(),
    )
        .prop_map(|(role, content)| json!({"role":role,"content":content}))
}

fn body() -> impl Strategy<Value = Value> {
    let tools = prop::collection::vec(
        ("[a-z]{1,8}", marker())
            .prop_map(|(n, m)| with_marker(json!({"name":n,"input_schema":{"type":"object"}}), m)),
        0..3,
    );
    let system = prop_oneof![
        Just(None),
        text().prop_map(|t| Some(Value::String(t))),
        prop::collection::vec(
            (text(), marker()).prop_map(|(t, m)| with_marker(json!({"type":"text","text":t}), m)),
            0..4
        )
        .prop_map(|v| Some(Value::Array(v))),
    ];
    let top = prop_oneof![8 => Just(None), 1 => marker()];
    (tools, system, prop::collection::vec(message(), 1..7), top).prop_map(
        |(tools, system, messages, top)| {
            let mut b = json!({"model":"claude-sonnet-4-5","max_tokens":100,"messages":messages});
            if !tools.is_empty() {
                b["tools"] = Value::Array(tools);
            }
            if let Some(s) = system {
                b["system"] = s;
            }
            if let Some(t) = top {
                b["cache_control"] = t;
            }
            b
        },
    )
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<[bool; 4]>(),
        0u64..40,
        1u64..5,
    )
        .prop_map(|(h, auto, l, min, bpt)| Settings {
            ttl: if h { Ttl::OneHour } else { Ttl::FiveMinutes },
            automatic: auto,
            locations: Locations {
                tools: l[0],
                system: l[1],
                last_user: l[2],
                previous_user: l[3],
            },
            min_tokens: min,
            bytes_per_token: bpt,
        })
}

fn rewrite(body: &[u8], s: &Settings) -> Vec<u8> {
    let facts = inspect(body, true).unwrap();
    splice::apply(body, &cache::plan(&facts.layout, s).edits)
}

/// TTLs of every breakpoint in the API's processing order (tools, system, messages, top level).
fn breakpoints(v: &Value) -> Vec<bool> {
    let mut out = Vec::new();
    let mut push = |m: &Value| {
        if m.is_object() {
            out.push(m["ttl"] == "1h");
        }
    };
    for t in v["tools"].as_array().into_iter().flatten() {
        push(&t["cache_control"]);
    }
    for b in v["system"].as_array().into_iter().flatten() {
        push(&b["cache_control"]);
    }
    for m in v["messages"].as_array().unwrap() {
        for b in m["content"].as_array().into_iter().flatten() {
            push(&b["cache_control"]);
            for sub in b["content"].as_array().into_iter().flatten() {
                push(&sub["cache_control"]);
            }
        }
    }
    push(&v["cache_control"]);
    out
}

fn ttl_order_ok(ttls: &[bool]) -> bool {
    !ttls.windows(2).any(|w| !w[0] && w[1])
}

/// `out` equals `input` except for added `cache_control` markers and strings turned into a
/// one-text-block array that carries one.
fn same_but_markers(input: &Value, out: &Value) -> bool {
    match (input, out) {
        (Value::Object(a), Value::Object(b)) => {
            let added = !a.contains_key("cache_control") && b.contains_key("cache_control");
            if added
                && !matches!(&b["cache_control"], m if *m == json!({"type":"ephemeral"}) || *m == json!({"type":"ephemeral","ttl":"1h"}))
            {
                return false;
            }
            b.len() == a.len() + usize::from(added)
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_but_markers(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_but_markers(x, y))
        }
        (Value::String(s), Value::Array(b)) if b.len() == 1 => {
            let blk = &b[0];
            blk["type"] == "text"
                && blk["text"] == s.as_str()
                && blk.get("cache_control").is_some()
                && blk.as_object().unwrap().len() == 3
        }
        (a, b) => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rewriting_keeps_every_rule(v in body(), s in settings(), pretty in any::<bool>()) {
        let input = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
        let output = rewrite(&input, &s);
        let out: Value = serde_json::from_slice(&output).expect("output parses");
        prop_assert!(same_but_markers(&v, &out), "changed more than markers:\n{}", String::from_utf8_lossy(&output));

        let before = breakpoints(&v);
        let after = breakpoints(&out);
        if before.len() >= cache::MAX_BREAKPOINTS || !ttl_order_ok(&before) {
            prop_assert_eq!(&output, &input);
        } else {
            prop_assert!(after.len() <= cache::MAX_BREAKPOINTS);
            prop_assert!(ttl_order_ok(&after), "TTL order broken: {:?}", after);
        }
        prop_assert_eq!(rewrite(&output, &s), output, "not a fixed point");
    }
}
