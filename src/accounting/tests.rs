use super::*;
use crate::config::parse;
use crate::sse::Framer;

fn extraction(sse: &[u8]) -> Extraction {
    let mut x = Extraction::new();
    Framer::new().feed(sse, &mut |e| {
        x.on_event(e);
    });
    x
}

fn config() -> Config {
    crate::config::parse(b"{}").unwrap()
}

fn counter(up: &Updates, name: &str) -> Option<u64> {
    up.counters
        .iter()
        .find(|(m, _)| m.name == format!("claude_gateway.{name}"))
        .map(|&(_, n)| n)
}

const STREAM: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":20,\"cache_read_input_tokens\":30,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":40}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn finished<'a>(x: &'a Extraction) -> Finished<'a> {
    Finished {
        endpoint: Some(Endpoint::Messages),
        method: "POST",
        path: "/v1/messages?beta=true",
        request_model: Some("claude-sonnet-4-5"),
        stream: Some(true),
        session: Some("s-1"),
        route: Some("anthropic"),
        extraction: Some(x),
        response_ended: true,
        status: Some(200),
        start_ns: 1_000_000_000,
        first_content_ns: Some(1_250_000_000),
        end_ns: 3_000_000_000,
        markers_added: 2,
        ..Finished::default()
    }
}

#[test]
fn a_streamed_request_is_counted_once_per_bucket() {
    let x = extraction(STREAM);
    let (up, r) = account(&config(), &finished(&x));
    let l = "route.anthropic.model.claude-sonnet-4-5";
    let lc = "route.anthropic.model.claude-sonnet-4-5.cost_center.none";
    assert_eq!(counter(&up, &format!("requests.{lc}.status.2xx")), Some(1));
    // Tokens and cost name the consumer and its group too (none here).
    let lc = &format!("{lc}.consumer.none.group.none");
    assert_eq!(counter(&up, &format!("tokens.{lc}.type.input")), Some(10));
    assert_eq!(
        counter(&up, &format!("tokens.{lc}.type.cache_write_5m")),
        Some(20)
    );
    assert_eq!(
        counter(&up, &format!("tokens.{lc}.type.cache_read")),
        Some(30)
    );
    assert_eq!(counter(&up, &format!("tokens.{lc}.type.output")), Some(40));
    assert_eq!(
        counter(&up, &format!("tokens.{lc}.type.cache_write_1h")),
        None,
        "zero: no update"
    );
    // 10*3 + 20*3.75 + 30*0.30 + 40*15 = 30 + 75 + 9 + 600 = 714
    assert_eq!(counter(&up, &format!("cost_micro_usd.{lc}")), Some(714));
    assert_eq!(counter(&up, "usage_extraction.status.complete"), Some(1));
    assert_eq!(
        up.histograms
            .iter()
            .map(|(m, v)| (m.name.as_str(), *v))
            .collect::<Vec<_>>(),
        [
            (format!("claude_gateway.ttft_ms.{l}").as_str(), 250),
            (format!("claude_gateway.duration_ms.{l}").as_str(), 2000)
        ]
    );
    assert_eq!(r.session_id.as_deref(), Some("s-1"));
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        r.response_model.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(r.finish_reasons, ["end_turn"]);
    assert_eq!(
        (
            r.input_tokens,
            r.cache_creation_input_tokens,
            r.cache_read_input_tokens,
            r.output_tokens
        ),
        (10, 20, 30, 40)
    );
    assert_eq!(
        (r.cost_micro_usd, r.price.as_deref()),
        (714, Some("claude-sonnet-4-5"))
    );
    assert_eq!(
        (r.usage_status, r.ttft_ms, r.duration_ms),
        (Some("complete"), Some(250), Some(2000))
    );
    assert_eq!((r.operation, r.cache_markers_added), (Some("chat"), 2));
}

#[test]
fn a_mid_stream_error_is_an_error_of_the_stream_phase() {
    let stop = STREAM
        .windows(19)
        .position(|w| w == b"event: message_stop")
        .unwrap();
    let mut sse = STREAM[..stop].to_vec();
    sse.extend_from_slice(
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n",
    );
    let x = extraction(&sse);
    let (up, r) = account(&config(), &finished(&x));
    let l = "route.anthropic.model.claude-sonnet-4-5";
    assert_eq!(
        counter(
            &up,
            &format!("errors.{l}.type.overloaded_error.phase.stream")
        ),
        Some(1)
    );
    assert_eq!(counter(&up, "usage_extraction.status.partial"), Some(1));
    assert_eq!(
        (r.error_type.as_deref(), r.error_phase),
        (Some("overloaded_error"), Some("stream"))
    );
}

#[test]
fn an_unknown_model_costs_nothing_and_is_counted() {
    let x = extraction(
        &String::from_utf8_lossy(STREAM)
            .replace("claude-sonnet-4-5-20250929", "mystery-1")
            .into_bytes(),
    );
    let mut f = finished(&x);
    f.request_model = Some("mystery-1");
    let (up, r) = account(&config(), &f);
    assert_eq!(counter(&up, "cost_unknown_model.route.anthropic"), Some(1));
    assert_eq!(
        counter(
            &up,
            "cost_micro_usd.route.anthropic.model.other.cost_center.none.consumer.none.group.none"
        ),
        None
    );
    assert_eq!(
        counter(
            &up,
            "tokens.route.anthropic.model.other.cost_center.none.consumer.none.group.none.type.output"
        ),
        Some(40)
    );
    assert_eq!((r.cost_micro_usd, r.price.as_deref()), (0, None));
}

#[test]
fn other_endpoints_are_recorded_but_not_counted() {
    let f = Finished {
        method: "GET",
        path: "/v1/models?limit=1000",
        status: Some(200),
        ..Finished::default()
    };
    let (up, r) = account(&config(), &f);
    assert_eq!(up, Updates::default());
    assert_eq!(
        (r.operation, r.path.as_str(), r.usage_status),
        (None, "/v1/models", None)
    );
}

#[test]
fn an_error_status_is_an_error_of_the_response_phase() {
    let mut x = Extraction::new();
    x.on_json(br#"{"type":"error","error":{"type":"rate_limit_error","message":"m"}}"#);
    let mut f = finished(&x);
    f.status = Some(429);
    f.first_content_ns = None;
    let (up, r) = account(&config(), &f);
    let l = "route.anthropic.model.claude-sonnet-4-5";
    let lc = "route.anthropic.model.claude-sonnet-4-5.cost_center.none";
    assert_eq!(
        counter(
            &up,
            &format!("errors.{l}.type.rate_limit_error.phase.response")
        ),
        Some(1)
    );
    assert_eq!(counter(&up, &format!("requests.{lc}.status.4xx")), Some(1));
    assert_eq!((r.error_phase, r.ttft_ms), (Some("response"), None));
}

#[test]
fn a_vendor_answer_names_the_vendor_its_attempts_and_its_prices() {
    let x = extraction(STREAM);
    let c = parse(
        br#"{"routes":[{"name":"sonnet","cluster":"claude","match":{"model":"claude-sonnet-*"},
            "failover":[{"name":"bedrock","dialect":"bedrock",
              "prices":[{"name":"sonnet-bedrock","model":"claude-sonnet-4-5*","input":3.3,"output":16.5,
                         "cache_write_5m":4.125,"cache_write_1h":6.6,"cache_read":0.33}]}]}]}"#,
    )
    .unwrap();
    let route = &c.routes.routes[0].1;
    let target = route.target("bedrock").unwrap();
    let dropped = vec!["service_tier".to_owned()];
    let f = Finished {
        route: Some("sonnet"),
        dialect: Some(target.dialect),
        target: Some("bedrock"),
        upstream_attempts: Some(";sonnet=529;x;bedrock=200"),
        prices: &target.prices,
        dropped_fields: &dropped,
        ..finished(&x)
    };
    let (_, r) = account(&c, &f);
    let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
    assert_eq!(v["gen_ai.provider.name"], "aws.bedrock");
    assert_eq!(v["upstream_dialect"], "bedrock");
    assert_eq!(v["upstream_target"], "bedrock");
    assert_eq!(
        v["upstream_attempts"],
        serde_json::json!([{"target":"sonnet","status":529},{"target":"x","status":null},
                           {"target":"bedrock","status":200}])
    );
    assert_eq!(v["dropped_fields"], serde_json::json!(["service_tier"]));
    assert_eq!(v["price"], "sonnet-bedrock");
    // 10 input x 3.3 + 20 writes x 4.125 + 30 reads x 0.33 + 40 output x 16.5, per million.
    assert_eq!(
        v["cost_micro_usd"],
        (10.0 * 3.3 + 20.0 * 4.125 + 30.0 * 0.33 + 40.0 * 16.5) as u64
    );
}

#[test]
fn a_tokens_consumer_is_other_in_metrics_and_named_in_the_record() {
    let x = extraction(STREAM);
    let token = crate::keys::Consumer {
        id: "dev@example.com".into(),
        digests: Vec::new(),
        cost_center: Some("platform".into()),
        routes: Vec::new(),
        models: Vec::new(),
        limits: crate::keys::Limits::default(),
        budget: Default::default(),
        group: Some("eng".into()),
    };
    let keyed = crate::keys::Consumer {
        id: "ci-bot".into(),
        group: None,
        ..token.clone()
    };
    let lc = "route.anthropic.model.claude-sonnet-4-5.cost_center.platform";
    for (c, labels) in [
        (&token, "consumer.other.group.eng"),
        (&keyed, "consumer.ci-bot.group.none"),
    ] {
        let f = Finished {
            consumer: Some(c),
            ..finished(&x)
        };
        let (up, r) = account(&config(), &f);
        assert_eq!(
            counter(&up, &format!("tokens.{lc}.{labels}.type.output")),
            Some(40),
            "{labels}"
        );
        assert_eq!(r.virtual_key.as_deref(), Some(c.id.as_str()));
        assert_eq!(r.consumer_group, c.group);
    }
}
