//! Claude on every cloud, through the real Envoy with the shipped examples, against mocks that
//! behave like the vendors (tests/mocks/vendors.py): Bedrock checks Envoy's SigV4 signature
//! with botocore and answers in real event-stream frames cut anywhere, Vertex AI checks the
//! access token Envoy fetched from a mock metadata server, Foundry the key Envoy injected from a
//! secret file. Clients are the Anthropic Python SDK in each of Claude Code's modes.

use crate::support::anthropic::{self, Usage};
use crate::support::envoy::{self, Gateway, Run, python};
use crate::support::mock::{Mock, Reply};
use crate::support::vendors::{Kind, VendorMock, header};
use crate::support::{client, h2_client};
use serde_json::{Value, json};
use std::path::PathBuf;

const AWS_KEY_ID: &str = "AKIDGATEWAYTESTKEY01";
const AWS_SECRET: &str = "gateway-test-aws-secret-key-0123456789";
const SONNET_ID: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn bedrock_mock() -> VendorMock {
    VendorMock::start(
        Kind::Bedrock,
        &["--access-key", AWS_KEY_ID, "--secret-key", AWS_SECRET],
    )
}

/// Envoy with the AWS credentials in its environment (its signer's first source).
fn aws_run() -> Run {
    Run::default()
        .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
}

fn script() -> PathBuf {
    envoy::repo().join("tests/e2e/cloud_clients.py")
}

/// The SDK in `mode` (anthropic, bedrock, vertex) against the gateway: what it got.
fn sdk(gw: &Gateway, mode: &str, model: &str) -> Value {
    let out = python(
        &[script().into_os_string(), mode.into(), model.into()],
        &[("GATEWAY_URL", &gw.url(""))],
    );
    serde_json::from_slice(&out).unwrap()
}

fn messages_body(model: &str, stream: bool) -> Vec<u8> {
    json!({"model": model, "max_tokens": 32, "stream": stream,
           "messages": [{"role": "user", "content": "Hello, Bedrock."}]})
    .to_string()
    .into_bytes()
}

fn post(gw: &Gateway, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = client().post(gw.url(path)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let hs = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, hs, r.bytes().unwrap().to_vec())
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// SSE events of a body: (name, data as JSON).
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

/// The signer sets the host it signs; here it is the mock's (the endpoint's hostname).
fn signed_for_mock(b: &mut crate::support::bootstrap::Bootstrap) {
    let n = b.replace_value("host_rewrite", "bedrock-runtime.us-east-1.amazonaws.com", "127.0.0.1");
    assert!(n > 0, "no signer to point at the mock");
}

fn bedrock_gateway(anthropic_port: u16, bedrock: &VendorMock) -> Gateway {
    let mut b = envoy::shipped(
        "examples/bedrock.yaml",
        &[("anthropic", &[anthropic_port]), ("bedrock", &[bedrock.port])],
    );
    signed_for_mock(&mut b);
    Gateway::start_with(b, &aws_run())
}

#[test]
fn bedrock_serves_the_messages_api_signed_by_envoy_and_streamed_back_as_sse() {
    let anthropic = Mock::start("anthropic", anthropic::responder("anthropic"));
    let bedrock = bedrock_mock();
    let gw = bedrock_gateway(anthropic.port(), &bedrock);

    // The SDK, non-streaming and streaming: served by Bedrock, read as Anthropic's answers.
    let got = sdk(&gw, "anthropic", "claude-sonnet-4-5");
    assert!(got["text"].as_str().unwrap().len() > 0, "{got}");
    assert_eq!(got["stream_stop_reason"], "end_turn", "{got}");
    let records = bedrock.wait_records(3);
    assert_eq!(records.len(), 3, "{records:?}");
    for (r, op) in records.iter().zip(["invoke", "invoke-with-response-stream", "count-tokens"]) {
        assert_eq!(r["check"], Value::Null, "{r}");
        assert_eq!(r["path"], format!("/model/{SONNET_ID}/{op}"));
        if op == "count-tokens" {
            // The token count wraps the request; its answer comes back in the API's shape.
            assert!(r["json"]["input"]["invokeModel"]["body"].is_string(), "{r}");
            assert_eq!(got["count"], r["usage"]["input_tokens"], "{got} {r}");
            continue;
        }
        let body = &r["json"];
        assert!(body.get("model").is_none() && body.get("stream").is_none(), "{body}");
        assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(header(r, "x-api-key"), None, "the client's key never reaches AWS");
        assert!(header(r, "authorization").unwrap().starts_with("AWS4-HMAC-SHA256 "));
    }
    // Usage as the mock reported it, in the SDK's view and in the audit records.
    assert_eq!(got["usage"]["input_tokens"], records[0]["usage"]["input_tokens"]);
    assert_eq!(got["stream_usage"]["output_tokens"], records[1]["usage"]["output_tokens"]);
    let audit = gw.wait_audit_records(3);
    for (a, r) in audit.iter().zip(&records).take(2) {
        assert_eq!(a["gen_ai.provider.name"], "aws.bedrock", "{a}");
        assert_eq!(a["upstream_dialect"], "bedrock");
        assert_eq!(a["route"], "sonnet-bedrock");
        assert_eq!(a["usage_status"], "complete", "{a}");
        assert_eq!(a["gen_ai.usage.input_tokens"], r["usage"]["input_tokens"]);
        assert_eq!(a["gen_ai.usage.output_tokens"], r["usage"]["output_tokens"]);
        assert!(a["cost_micro_usd"].as_u64().unwrap() > 0, "{a}");
    }
    assert_eq!(anthropic.served(), 0);
    gw.assert_healthy();
}
