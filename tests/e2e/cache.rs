//! Prompt-cache injection through the real Envoy: what the upstream receives.

use crate::support::anthropic;
use crate::support::bodies::{self, markers};
use crate::support::envoy::{self, Gateway};
use crate::support::mock::Mock;
use crate::support::{client, h2_client};
use serde_json::Value;

fn gateway(plugin_config: &str) -> (Mock, Gateway) {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let gw = Gateway::start(envoy::bootstrap(mock.port(), plugin_config));
    (mock, gw)
}

fn send(gw: &Gateway, body: &[u8], beta: Option<&str>) {
    let mut req = client()
        .post(gw.url("/v1/messages?beta=true"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(beta) = beta {
        req = req.header("anthropic-beta", beta);
    }
    assert_eq!(req.send().unwrap().status(), 200);
}

fn paths(found: &[(String, String)]) -> Vec<&str> {
    let mut p: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    p.sort();
    p
}

#[test]
fn markers_are_added_to_a_request_without_any_over_every_client_framing() {
    let (mock, gw) = gateway("{}");
    let body = bodies::sdk_plain("claude-sonnet-4-5", 3);
    let url = gw.url("/v1/messages");
    client().post(&url).body(body.clone()).send().unwrap();
    h2_client().post(&url).body(body.clone()).send().unwrap();
    client()
        .post(&url)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            body.clone(),
        )))
        .send()
        .unwrap();
    let seen = mock.wait_requests(3);
    assert_eq!(seen.len(), 3);
    for r in &seen {
        // The mock reads exactly content-length bytes: a stale length would truncate the JSON.
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let got: Value = serde_json::from_slice(&r.body).expect("valid JSON upstream");
        assert_eq!(
            paths(&markers(&got)),
            [
                ".messages[4].content[0]",
                ".messages[6].content[0]",
                ".system[0]",
                ".tools[1]"
            ]
        );
        // Apart from the markers and the string -> block conversions, nothing changed.
        let mut sent: Value = serde_json::from_slice(&body).unwrap();
        sent["tools"][1]["cache_control"] = serde_json::json!({"type":"ephemeral"});
        for (at, text) in [
            ("system", None),
            ("messages", Some(4)),
            ("messages", Some(6)),
        ] {
            let slot = match text {
                None => &mut sent[at],
                Some(i) => &mut sent[at][i]["content"],
            };
            let s = slot.as_str().unwrap().to_owned();
            *slot =
                serde_json::json!([{"type":"text","text":s,"cache_control":{"type":"ephemeral"}}]);
        }
        assert_eq!(got, sent);
    }
    let added = |location: &str| {
        gw.counter(&format!(
            "wasmcustom.claude_gateway.cache_markers_added.location.{location}.ttl.5m"
        ))
    };
    assert_eq!(
        [
            added("tools"),
            added("system"),
            added("last_user"),
            added("previous_user")
        ],
        [3, 3, 3, 3]
    );
    let prometheus = gw.admin_get("/stats/prometheus").unwrap();
    assert!(
        prometheus.contains(r#"claude_gateway_cache_markers_added{location="tools",ttl="5m"} 3"#),
        "{prometheus}"
    );
    gw.assert_healthy();
}

#[test]
fn a_request_with_four_client_markers_arrives_byte_identical() {
    let (mock, gw) = gateway("{}");
    let mut v: Value =
        serde_json::from_slice(&bodies::claude_code("claude-opus-4-8", true, 30_000)).unwrap();
    // Claude Code's system[1] and system[2] markers, plus two on the conversation.
    let last = v["messages"].as_array().unwrap().len() - 1;
    v["messages"][0]["content"][1]["cache_control"] = serde_json::json!({"type":"ephemeral"});
    v["messages"][last]["content"] = serde_json::json!([{"type":"text","text":"go","cache_control":{"type":"ephemeral","ttl":"5m"}}]);
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(markers(&v).len(), 4);
    send(&gw, &body, None);
    assert_eq!(
        bodies::without_diagnostics(&mock.wait_requests(1)[0].body),
        body
    );
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.cache_skipped.reason.full"),
        1
    );
    gw.assert_healthy();
}

#[test]
fn one_hour_markers_bring_the_extended_ttl_beta() {
    let (mock, gw) = gateway(r#"{"cache":{"ttl":"1h"}}"#);
    let body = bodies::sdk_plain("claude-opus-4-8", 1);
    send(&gw, &body, Some("claude-code-20250219,oauth-2025-04-20"));
    send(&gw, &body, None);
    send(&gw, &body, Some("extended-cache-ttl-2025-04-11"));
    let seen = mock.wait_requests(3);
    let betas: Vec<Option<&str>> = seen.iter().map(|r| r.header("anthropic-beta")).collect();
    assert_eq!(
        betas,
        [
            Some("claude-code-20250219,oauth-2025-04-20,extended-cache-ttl-2025-04-11"),
            Some("extended-cache-ttl-2025-04-11"),
            Some("extended-cache-ttl-2025-04-11"),
        ]
    );
    let got: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert!(markers(&got).iter().all(|(_, ttl)| ttl == "1h"));
    gw.assert_healthy();
}

#[test]
fn injection_can_be_switched_off_globally_and_per_model() {
    let (mock, gw) = gateway(r#"{"cache":{"disabled_models":["claude-haiku-*"]}}"#);
    let haiku = bodies::sdk_plain("claude-haiku-4-5", 2);
    send(&gw, &haiku, None);
    assert_eq!(mock.wait_requests(1)[0].body, haiku);

    let (mock, gw2) = gateway(r#"{"cache":{"enabled":false}}"#);
    let sonnet = bodies::sdk_plain("claude-sonnet-4-5", 2);
    send(&gw2, &sonnet, None);
    assert_eq!(mock.wait_requests(1)[0].body, sonnet);
    for g in [&gw, &gw2] {
        assert_eq!(
            g.counter("wasmcustom.claude_gateway.cache_skipped.reason.disabled"),
            1
        );
        g.assert_healthy();
    }
}

#[test]
fn a_30_turn_agentic_replay_costs_far_less_through_the_gateway() {
    use crate::support::cache_sim::{CacheSim, SimUsage, usage_of};
    let requests = bodies::agentic_replay("claude-sonnet-4-5", 30);
    let replay = |url: &str| {
        let mut total = SimUsage::default();
        for body in &requests {
            let resp = client().post(url).body(body.clone()).send().unwrap();
            assert_eq!(resp.status(), 200);
            total.add(usage_of(
                &serde_json::from_slice(&resp.bytes().unwrap()).unwrap(),
            ));
        }
        total
    };
    // Sonnet 4.5 caches prefixes of 1,024 tokens or more.
    let sim = CacheSim::new(1024);
    let mock = Mock::start("anthropic", sim.responder());
    let gw = Gateway::start(envoy::bootstrap(mock.port(), "{}"));
    let through = replay(&gw.url("/v1/messages"));

    let direct_sim = CacheSim::new(1024);
    let direct_mock = Mock::start("direct", direct_sim.responder());
    let direct = replay(&format!(
        "http://127.0.0.1:{}/v1/messages",
        direct_mock.port()
    ));

    // Same prompt tokens either way; without markers nothing is cached.
    let tokens = |u: &SimUsage| u.input + u.write_5m + u.write_1h + u.read;
    assert_eq!(tokens(&through), tokens(&direct));
    assert_eq!(direct.input, tokens(&direct));
    let saving = 1.0 - through.cost() as f64 / direct.cost() as f64;
    println!(
        "replay: direct {direct:?} cost {}; through the gateway {through:?} cost {}; saving {:.1}%",
        direct.cost(),
        through.cost(),
        saving * 100.0
    );
    assert!(saving >= 0.60, "saving {saving}");
    // Deterministic: the same bodies, markers and simulator give the same figures every run.
    assert_eq!(
        (direct.cost(), through.cost()),
        (49_143_800, 8_311_825),
        "update the figures here and in README.md"
    );
    gw.assert_healthy();
}
