//! Claude on every cloud, through the real Envoy with the shipped examples, against mocks that
//! behave like the vendors (tests/mocks/vendors.py): Bedrock checks Envoy's SigV4 signature
//! with botocore and answers in real event-stream frames cut anywhere, Vertex AI checks the
//! access token Envoy fetched from a mock metadata server, Foundry the key Envoy injected from a
//! secret file. Clients are the Anthropic Python SDK in each of Claude Code's modes.

use crate::support::anthropic;
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

fn post(
    gw: &Gateway,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
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
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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
    let n = b.replace_value(
        "host_rewrite",
        "bedrock-runtime.us-east-1.amazonaws.com",
        "127.0.0.1",
    );
    assert!(n > 0, "no signer to point at the mock");
}

fn bedrock_gateway(anthropic_port: u16, bedrock: &VendorMock) -> Gateway {
    let mut b = envoy::shipped(
        "examples/bedrock.yaml",
        &[
            ("anthropic", &[anthropic_port]),
            ("bedrock", &[bedrock.port]),
        ],
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
    assert!(!got["text"].as_str().unwrap().is_empty(), "{got}");
    assert_eq!(got["stream_stop_reason"], "end_turn", "{got}");
    let records = bedrock.wait_records(3);
    assert_eq!(records.len(), 3, "{records:?}");
    for (r, op) in records
        .iter()
        .zip(["invoke", "invoke-with-response-stream", "count-tokens"])
    {
        assert_eq!(r["check"], Value::Null, "{r}");
        assert_eq!(r["path"], format!("/model/{SONNET_ID}/{op}"));
        if op == "count-tokens" {
            // The token count wraps the request; its answer comes back in the API's shape.
            assert!(r["json"]["input"]["invokeModel"]["body"].is_string(), "{r}");
            assert_eq!(got["count"], r["usage"]["input_tokens"], "{got} {r}");
            continue;
        }
        let body = &r["json"];
        assert!(
            body.get("model").is_none() && body.get("stream").is_none(),
            "{body}"
        );
        assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(
            header(r, "x-api-key"),
            None,
            "the client's key never reaches AWS"
        );
        assert!(
            header(r, "authorization")
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 ")
        );
    }
    // Usage as the mock reported it, in the SDK's view and in the audit records.
    assert_eq!(
        got["usage"]["input_tokens"],
        records[0]["usage"]["input_tokens"]
    );
    assert_eq!(
        got["stream_usage"]["output_tokens"],
        records[1]["usage"]["output_tokens"]
    );
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
    // Usage in the metrics too, labelled by route and the price-table model.
    let prom = gw.admin_get("/stats/prometheus").unwrap();
    let output: u64 = records
        .iter()
        .take(2)
        .map(|r| r["usage"]["output_tokens"].as_u64().unwrap())
        .sum();
    let line = format!(
        "claude_gateway_tokens{{route=\"sonnet-bedrock\",model=\"claude-sonnet-4-5\",type=\"output\",cost_center=\"none\",consumer=\"none\",group=\"none\"}} {output}"
    );
    assert!(prom.contains(&line), "{line} not in\n{prom}");
    assert_secret_free(&gw, &[AWS_SECRET]);
    gw.assert_healthy();
}

#[test]
fn bedrock_errors_and_broken_streams_reach_the_client_in_the_apis_shape() {
    let anthropic = Mock::start("anthropic", anthropic::responder("anthropic"));
    let bedrock = bedrock_mock();
    let gw = bedrock_gateway(anthropic.port(), &bedrock);
    let stream = messages_body("claude-sonnet-4-5", true);

    // An AWS error before the stream: the API's envelope and a status the SDKs retry on.
    for (scenario, status, kind) in [
        ("error:ThrottlingException:429", 429, "rate_limit_error"),
        (
            "error:ServiceUnavailableException:503",
            529,
            "overloaded_error",
        ),
        (
            "error:ValidationException:400",
            400,
            "invalid_request_error",
        ),
    ] {
        let (s, hs, body) = post(
            &gw,
            "/v1/messages",
            &stream,
            &[("x-mock-scenario", scenario)],
        );
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (s, v["type"].as_str()),
            (status, Some("error")),
            "{scenario}: {v}"
        );
        assert_eq!(v["error"]["type"], kind, "{scenario}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 3, "{v}");
        assert_eq!(get(&hs, "content-type"), Some("application/json"));
    }

    // Mid-stream: an exception frame, and each way a frame can be broken, become one
    // `event: error` after what arrived intact, and the stream ends.
    for (scenario, kind) in [
        ("exception:throttlingException", "rate_limit_error"),
        ("exception:modelStreamErrorException", "api_error"),
        ("truncate", "api_error"),
        ("crc", "api_error"),
        ("oversize", "api_error"),
        ("garbage", "api_error"),
    ] {
        let (s, hs, body) = post(
            &gw,
            "/v1/messages",
            &stream,
            &[("x-mock-scenario", scenario)],
        );
        assert_eq!(s, 200, "{scenario}");
        assert_eq!(
            get(&hs, "content-type"),
            Some("text/event-stream"),
            "{scenario}"
        );
        let evs = events(&body);
        assert_eq!(
            evs.first().map(|e| e.0.as_str()),
            Some("message_start"),
            "{scenario}"
        );
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "error", "{scenario}: {evs:?}");
        assert_eq!(data["error"]["type"], kind, "{scenario}: {data}");
        assert_eq!(
            evs.iter().filter(|e| e.0 == "error").count(),
            1,
            "{scenario}"
        );
        for (n, d) in &evs {
            assert_eq!(
                d["type"].as_str(),
                Some(n.as_str()),
                "{scenario}: every event is whole"
            );
        }
    }
    // The garbage after a complete stream comes after message_stop: nothing lost before it.
    let records = gw.wait_audit_records(9);
    let streamed: Vec<&Value> = records.iter().skip(3).collect();
    for r in &streamed {
        assert_eq!(r["error_phase"], "stream", "{r}");
    }
    assert!(gw.counter("wasmcustom.claude_gateway.transcode_failures.reason.crc") >= 1);
    gw.assert_healthy();
    // The VM survived: a good request right after.
    let (s, _, body) = post(&gw, "/v1/messages", &stream, &[]);
    assert_eq!(s, 200);
    assert_eq!(events(&body).last().unwrap().0, "message_stop");
}

#[test]
fn claude_code_in_bedrock_mode_gets_bedrocks_own_answers_through_the_gateway() {
    let anthropic = Mock::start("anthropic", anthropic::responder("anthropic"));
    let bedrock = bedrock_mock();
    let gw = bedrock_gateway(anthropic.port(), &bedrock);
    // AnthropicBedrock with a base URL and a bearer instead of SigV4: what Claude Code sends
    // with ANTHROPIC_BEDROCK_BASE_URL=<gateway>/bedrock and CLAUDE_CODE_SKIP_BEDROCK_AUTH=1.
    let got = sdk(&gw, "bedrock", SONNET_ID);
    assert_eq!(got["stream_stop_reason"], "end_turn", "{got}");
    let records = bedrock.wait_records(2);
    for (r, op) in records
        .iter()
        .zip(["invoke", "invoke-with-response-stream"])
    {
        assert_eq!(r["check"], Value::Null, "{r}");
        assert_eq!(r["path"], format!("/model/{SONNET_ID}/{op}"));
        assert_eq!(r["json"]["anthropic_version"], "bedrock-2023-05-31");
        assert!(
            header(r, "authorization")
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256")
        );
    }
    assert_eq!(
        got["usage"]["input_tokens"],
        records[0]["usage"]["input_tokens"]
    );
    let audit = gw.wait_audit_records(2);
    for (a, r) in audit.iter().zip(&records) {
        assert_eq!(a["route"], "bedrock-clients", "{a}");
        assert_eq!(a["gen_ai.request.model"], SONNET_ID);
        assert_eq!(a["usage_status"], "complete", "{a}");
        assert_eq!(a["gen_ai.usage.output_tokens"], r["usage"]["output_tokens"]);
    }
    // A Bedrock-format request for a model no Bedrock route serves: refused, not mangled.
    let body = json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":[]});
    let (s, _, body) = post(
        &gw,
        "/bedrock/model/claude-haiku-4-5/invoke",
        body.to_string().as_bytes(),
        &[],
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (400, Some("invalid_request_error")),
        "{v}"
    );
    assert_eq!(bedrock.records().len(), 2);
    gw.assert_healthy();
}

#[test]
fn betas_and_fields_bedrock_refuses_are_dropped_counted_and_named() {
    let anthropic = Mock::start("anthropic", anthropic::responder("anthropic"));
    let bedrock = bedrock_mock();
    let gw = bedrock_gateway(anthropic.port(), &bedrock);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 8, "service_tier": "auto",
                      "messages": [{"role": "user", "content": "hi"}]});
    let betas = "interleaved-thinking-2025-05-14,extended-cache-ttl-2025-04-11,made-up-beta";
    let (s, _, _) = h2_post(
        &gw,
        body.to_string().as_bytes(),
        &[("anthropic-beta", betas)],
    );
    assert_eq!(s, 200);
    let r = &bedrock.wait_records(1)[0];
    assert_eq!(r["check"], Value::Null, "{r}");
    assert_eq!(
        r["json"]["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14"])
    );
    assert!(r["json"].get("service_tier").is_none());
    assert_eq!(header(r, "anthropic-beta"), None);
    let a = &gw.wait_audit_records(1)[0];
    assert_eq!(
        a["dropped_betas"],
        json!(["extended-cache-ttl-2025-04-11", "made-up-beta"])
    );
    assert_eq!(a["dropped_fields"], json!(["service_tier"]));
    let m = "wasmcustom.claude_gateway.dialect_dropped.route.sonnet-bedrock";
    assert_eq!(
        gw.counter(&format!("{m}.kind.beta.name.extended-cache-ttl-2025-04-11")),
        1
    );
    assert_eq!(gw.counter(&format!("{m}.kind.beta.name.other")), 1);
    assert_eq!(gw.counter(&format!("{m}.kind.field.name.service_tier")), 1);
    gw.assert_healthy();
}

/// An HTTP/2 client's POST to /v1/messages.
fn h2_post(gw: &Gateway, body: &[u8], headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut req = h2_client().post(gw.url("/v1/messages")).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.bytes().unwrap().to_vec())
}

const GCP_TOKEN: &str = "ya29.gateway-test-access-token-from-the-metadata-server";

struct Vertex {
    anthropic: Mock,
    metadata: VendorMock,
    vertex: VendorMock,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("claude-gateway-{name}-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vertex_upstreams() -> Vertex {
    let dir = TempDir::new("vertex");
    let token = dir.0.join("token");
    std::fs::write(&token, GCP_TOKEN).unwrap();
    let token = token.to_str().unwrap();
    Vertex {
        anthropic: Mock::start("anthropic", anthropic::responder("anthropic")),
        metadata: VendorMock::start(Kind::GcpMetadata, &["--token-file", token]),
        vertex: VendorMock::start(
            Kind::Vertex,
            &[
                "--token-file",
                token,
                "--project",
                "my-gcp-project",
                "--region",
                "global",
            ],
        ),
        _dir: dir,
    }
}

fn vertex_gateway(v: &Vertex) -> Gateway {
    let b = envoy::shipped(
        "examples/vertex.yaml",
        &[
            ("anthropic", &[v.anthropic.port()]),
            ("vertex", &[v.vertex.port]),
            ("gcp_metadata", &[v.metadata.port]),
        ],
    );
    Gateway::start(b)
}

#[test]
fn vertex_ai_serves_the_messages_api_with_the_token_envoy_fetched() {
    let v = vertex_upstreams();
    let gw = vertex_gateway(&v);
    let got = sdk(&gw, "anthropic", "claude-sonnet-4-5");
    assert_eq!(got["stream_stop_reason"], "end_turn", "{got}");
    let records = v.vertex.wait_records(3);
    let base = "/v1/projects/my-gcp-project/locations/global/publishers/anthropic/models";
    for (r, call) in records.iter().zip([
        "claude-sonnet-4-5@20250929:rawPredict",
        "claude-sonnet-4-5@20250929:streamRawPredict",
        "count-tokens:rawPredict",
    ]) {
        assert_eq!(r["check"], Value::Null, "{r}");
        assert_eq!(r["path"], format!("{base}/{call}"));
        assert_eq!(
            header(r, "authorization"),
            Some(format!("Bearer {GCP_TOKEN}").as_str())
        );
        assert_eq!(
            header(r, "x-api-key"),
            None,
            "the client's key stays at the gateway"
        );
        assert_eq!(r["json"]["anthropic_version"], "vertex-2023-10-16");
    }
    assert!(records[0]["json"].get("model").is_none());
    assert_eq!(records[2]["json"]["model"], "claude-sonnet-4-5@20250929");
    assert_eq!(got["count"], records[2]["usage"]["input_tokens"], "{got}");
    assert_eq!(
        got["usage"]["input_tokens"],
        records[0]["usage"]["input_tokens"]
    );
    assert!(
        v.metadata
            .records()
            .iter()
            .all(|r| header(r, "metadata-flavor") == Some("Google"))
    );
    let audit = gw.wait_audit_records(3);
    for (a, r) in audit.iter().zip(&records).take(2) {
        assert_eq!(a["gen_ai.provider.name"], "gcp.vertex_ai", "{a}");
        assert_eq!(a["usage_status"], "complete", "{a}");
        assert_eq!(a["gen_ai.usage.output_tokens"], r["usage"]["output_tokens"]);
    }
    // Unknown betas are dropped before Vertex refuses the request for them.
    let body = messages_body("claude-sonnet-4-5", false);
    let (s, _, _) = post(
        &gw,
        "/v1/messages",
        &body,
        &[("anthropic-beta", "context-1m-2025-08-07,effort-2025-11-24")],
    );
    assert_eq!(s, 200);
    let r = v.vertex.wait_records(4).pop().unwrap();
    assert_eq!(header(&r, "anthropic-beta"), Some("context-1m-2025-08-07"));
    // Vertex's own errors are already the API's envelope: forwarded as they are.
    let (s, _, body) = post(
        &gw,
        "/v1/messages",
        &body,
        &[("x-mock-scenario", "status:503")],
    );
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((s, e["type"].as_str()), (503, Some("error")), "{e}");
    let sent = v.vertex.wait_records(5).pop().unwrap();
    assert_eq!(sent["error"]["type"], e["error"]["type"]);
    assert_eq!(anthropic_served(&v), 0);
    assert_secret_free(&gw, &[GCP_TOKEN]);
    gw.assert_healthy();
}

fn anthropic_served(v: &Vertex) -> usize {
    v.anthropic.served()
}

#[test]
fn claude_code_in_vertex_mode_reaches_the_routes_project() {
    let v = vertex_upstreams();
    let gw = vertex_gateway(&v);
    // AnthropicVertex with its own (client-side) project and region: the gateway's route
    // decides where the request goes.
    let got = sdk(&gw, "vertex", "claude-sonnet-4-5@20250929");
    assert_eq!(got["stream_stop_reason"], "end_turn", "{got}");
    let records = v.vertex.wait_records(3);
    let base = "/v1/projects/my-gcp-project/locations/global/publishers/anthropic/models";
    assert_eq!(
        records[0]["path"],
        format!("{base}/claude-sonnet-4-5@20250929:rawPredict")
    );
    assert_eq!(
        records[1]["path"],
        format!("{base}/claude-sonnet-4-5@20250929:streamRawPredict")
    );
    assert_eq!(
        records[2]["path"],
        format!("{base}/count-tokens:rawPredict")
    );
    for r in &records {
        assert_eq!(r["check"], Value::Null, "{r}");
        assert_eq!(
            header(r, "authorization"),
            Some(format!("Bearer {GCP_TOKEN}").as_str())
        );
    }
    let audit = gw.wait_audit_records(2);
    assert_eq!(audit[0]["route"], "sonnet-vertex");
    assert_eq!(audit[1]["usage_status"], "complete");
    gw.assert_healthy();
}

const FOUNDRY_KEY: &str = "foundry-gateway-test-key-0123456789abcdef";
const FOUNDRY_KEY_2: &str = "foundry-gateway-test-key-rotated-fedcba98";

/// An SDS file holding a generic secret, replaced atomically (as a secret volume is).
fn write_secret(path: &std::path::Path, name: &str, value: &str) {
    let text = format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: {name}\n  generic_secret: {{secret: {{inline_string: {value}}}}}\n"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn foundry_gets_the_key_envoy_injects_and_a_rotated_key_at_once() {
    let dir = TempDir::new("foundry");
    let secret = dir.0.join("foundry-api-key.yaml");
    write_secret(&secret, "foundry-api-key", FOUNDRY_KEY);
    let anthropic = Mock::start("anthropic", anthropic::responder("anthropic"));
    let foundry = VendorMock::start(
        Kind::Foundry,
        &[
            "--api-key",
            FOUNDRY_KEY,
            "--deployments",
            "claude-haiku-4-5",
        ],
    );
    let mut b = envoy::shipped(
        "examples/foundry.yaml",
        &[
            ("anthropic", &[anthropic.port()]),
            ("foundry", &[foundry.port]),
        ],
    );
    let n = b.replace_value(
        "path",
        "/etc/envoy/secrets/foundry-api-key.yaml",
        secret.to_str().unwrap(),
    );
    assert_eq!(n, 1);
    let gw = Gateway::start(b);
    let got = sdk(&gw, "anthropic", "claude-haiku-4-5-20251001");
    assert_eq!(got["stream_stop_reason"], "end_turn", "{got}");
    let records = foundry.wait_records(3);
    for (r, path) in records.iter().zip([
        "/anthropic/v1/messages",
        "/anthropic/v1/messages",
        "/anthropic/v1/messages/count_tokens",
    ]) {
        assert_eq!(r["check"], Value::Null, "{r}");
        assert_eq!(r["path"], path);
        assert_eq!(r["json"]["model"], "claude-haiku-4-5");
        assert_eq!(header(r, "x-api-key"), Some(FOUNDRY_KEY));
    }
    let audit = gw.wait_audit_records(2);
    assert_eq!(audit[0]["gen_ai.provider.name"], "azure.ai.inference");
    assert_eq!(
        audit[1]["gen_ai.usage.output_tokens"],
        records[1]["usage"]["output_tokens"]
    );

    // The key rotated in the secret file: Envoy reloads it, the filter never held it.
    write_secret(&secret, "foundry-api-key", FOUNDRY_KEY_2);
    let body = messages_body("claude-haiku-4-5", false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        post(&gw, "/v1/messages", &body, &[]);
        let last = foundry.records().pop().unwrap();
        if header(&last, "x-api-key") == Some(FOUNDRY_KEY_2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_secret_free(&gw, &[FOUNDRY_KEY, FOUNDRY_KEY_2]);
    gw.assert_healthy();
}

/// Anthropic answering like the API, but failing as asked by `x-test-anthropic` (`529`,
/// `500`, `429`, `reset`).
fn failing_anthropic() -> Mock {
    let normal = anthropic::responder("anthropic");
    Mock::start(
        "anthropic",
        std::sync::Arc::new(move |r: &crate::support::mock::Recorded| {
            match r.header("x-test-anthropic") {
                Some("reset") => Reply::reset(),
                Some(code) => {
                    let status: u16 = code.parse().unwrap();
                    let kind = if status == 429 {
                        "rate_limit_error"
                    } else {
                        "overloaded_error"
                    };
                    anthropic::error(status, kind, "Overloaded")
                }
                None => normal(r),
            }
        }),
    )
}

#[test]
fn a_failing_anthropic_is_retried_on_bedrock_within_the_same_request() {
    let anthropic = failing_anthropic();
    let bedrock = bedrock_mock();
    let mut b = envoy::shipped(
        "examples/clouds-failover.yaml",
        &[
            ("anthropic", &[anthropic.port()]),
            ("bedrock", &[bedrock.port]),
        ],
    );
    signed_for_mock(&mut b);
    let gw = Gateway::start_with(b, &aws_run());
    let key = ("x-api-key", "sk-ant-client-own-key");

    // Healthy: Anthropic serves, untouched, and Bedrock sees nothing.
    let plain = messages_body("claude-sonnet-4-5", false);
    let (s, _, body) = post(&gw, "/v1/messages?beta=true", &plain, &[key]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let seen = anthropic.wait_requests(1);
    assert_eq!(seen[0].body, plain);
    assert_eq!(seen[0].target, "/v1/messages?beta=true");
    assert_eq!(seen[0].header("x-api-key"), Some(key.1));
    assert_eq!(seen[0].header("x-claude-gateway-target"), None);
    assert_eq!(bedrock.records().len(), 0);

    // A 529, a 500, a 429 and a reset from Anthropic: the same request is answered by Bedrock,
    // streamed or not, with no error for the client.
    for (i, (fail, stream)) in [
        ("529", true),
        ("500", false),
        ("429", true),
        ("reset", false),
    ]
    .into_iter()
    .enumerate()
    {
        let body = messages_body("claude-sonnet-4-5", stream);
        let (s, hs, out) = post(
            &gw,
            "/v1/messages?beta=true",
            &body,
            &[
                key,
                ("x-test-anthropic", fail),
                ("anthropic-beta", "context-1m-2025-08-07"),
            ],
        );
        assert_eq!(s, 200, "{fail}: {}", String::from_utf8_lossy(&out));
        if stream {
            assert_eq!(get(&hs, "content-type"), Some("text/event-stream"));
            assert_eq!(events(&out).last().unwrap().0, "message_stop", "{fail}");
        } else {
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert!(v["id"].as_str().unwrap().starts_with("msg_bdrk_"), "{v}");
        }
        let r = bedrock.wait_records(i + 1).pop().unwrap();
        assert_eq!(r["check"], Value::Null, "{fail}: {r}");
        let op = if stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        assert_eq!(r["path"], format!("/model/{SONNET_ID}/{op}"));
        assert_eq!(
            r["json"]["anthropic_beta"],
            json!(["context-1m-2025-08-07"])
        );
        assert_eq!(
            header(&r, "x-api-key"),
            None,
            "{fail}: the client's key stays off AWS"
        );
        assert_eq!(header(&r, "x-claude-gateway-target"), None);
        assert_eq!(header(&r, "anthropic-beta"), None);
    }
    // The Anthropic attempts got the client's request as it sent it, every time.
    for r in anthropic.requests().iter().skip(1) {
        assert_eq!(r.target, "/v1/messages?beta=true");
        assert_eq!(r.header("x-api-key"), Some(key.1));
        assert_eq!(
            r.header("authorization"),
            None,
            "no AWS signature towards Anthropic"
        );
        assert_eq!(r.header("x-amz-date"), None);
        assert!(r.json().get("model").is_some());
    }
    let audit = gw.wait_audit_records(5);
    assert_eq!(audit[0]["upstream_target"], "sonnet", "{}", audit[0]);
    assert_eq!(
        audit[0]["upstream_attempts"],
        json!([{"target":"sonnet","status":200}])
    );
    assert_eq!(audit[0]["gen_ai.provider.name"], "anthropic");
    for a in &audit[1..] {
        assert_eq!(a["http.response.status_code"], 200, "{a}");
        assert_eq!(a["upstream_target"], "sonnet-bedrock", "{a}");
        assert_eq!(a["gen_ai.provider.name"], "aws.bedrock", "{a}");
        assert_eq!(a["attempts"], 2, "{a}");
        assert_eq!(a["usage_status"], "complete", "{a}");
        let attempts = a["upstream_attempts"].as_array().unwrap();
        assert_eq!(
            attempts.last().unwrap(),
            &json!({"target":"sonnet-bedrock","status":200}),
            "{a}"
        );
    }
    assert_eq!(
        audit[1]["upstream_attempts"][0],
        json!({"target":"sonnet","status":529})
    );
    // A reset before any response: the attempt is listed without a status.
    assert_eq!(
        audit[4]["upstream_attempts"][0],
        json!({"target":"sonnet","status":null})
    );
    assert_eq!(
        gw.counter("wasmcustom.claude_gateway.failovers.route.sonnet.target.sonnet-bedrock"),
        4
    );
    assert_secret_free(&gw, &[AWS_SECRET]);
    gw.assert_healthy();
}

#[test]
fn bedrocks_messages_surface_on_mantle_and_on_bedrock_runtime() {
    for (service, host) in [("bedrock-mantle", "mantle"), ("bedrock", "runtime")] {
        let anthropic = Mock::start("anthropic", anthropic::responder("anthropic"));
        let mock = VendorMock::start(
            Kind::BedrockMessages,
            &[
                "--access-key",
                AWS_KEY_ID,
                "--secret-key",
                AWS_SECRET,
                "--service",
                service,
            ],
        );
        // bedrock.yaml with the route on Bedrock's Messages surface and the signer's service
        // name for that host.
        let mut b = envoy::shipped(
            "examples/bedrock.yaml",
            &[
                ("anthropic", &[anthropic.port()]),
                ("bedrock", &[mock.port]),
            ],
        );
        signed_for_mock(&mut b);
        assert_eq!(b.replace_value("service_name", "bedrock", service), 1);
        let config = json!({"routes": [{"name": "opus-bedrock", "match": {"model": "claude-opus-*"},
            "cluster": "bedrock", "dialect": "bedrock-messages", "bedrock_host": host,
            "models": {"claude-opus-4-8*": "anthropic.claude-opus-4-8"}}]});
        b.plugin_config(&config.to_string());
        let gw = Gateway::start_with(b, &aws_run());
        let got = sdk(&gw, "anthropic", "claude-opus-4-8");
        assert_eq!(got["stream_stop_reason"], "end_turn", "{host}: {got}");
        let records = mock.wait_records(3);
        for (r, path) in records.iter().zip([
            "/anthropic/v1/messages",
            "/anthropic/v1/messages",
            "/anthropic/v1/messages/count_tokens",
        ]) {
            assert_eq!(r["check"], Value::Null, "{host}: {r}");
            assert_eq!(r["path"], path);
            assert_eq!(r["json"]["model"], "anthropic.claude-opus-4-8");
        }
        assert_eq!(got["count"], records[2]["usage"]["input_tokens"]);
        let audit = gw.wait_audit_records(2);
        assert_eq!(audit[1]["usage_status"], "complete", "{}", audit[1]);
        assert_eq!(
            audit[1]["gen_ai.usage.output_tokens"],
            records[1]["usage"]["output_tokens"]
        );
        gw.assert_healthy();
    }
}

/// No secret appears in anything an operator or a client can read from this Envoy.
fn assert_secret_free(gw: &Gateway, secrets: &[&str]) {
    for (place, text) in gw.readable_text() {
        for s in secrets {
            assert!(
                !text.contains(s),
                "a secret ({} bytes) appears in {place}",
                s.len()
            );
        }
    }
}
