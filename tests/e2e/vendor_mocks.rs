//! The mock cloud vendors (tests/mocks/vendors.py through `support::vendors`) check and answer
//! as the services do. First the program's own self-test (botocore signs and decodes), then
//! each kind once over HTTP: refused without credentials, served with them, each answer in the
//! vendor's format and in the record, and the process gone after the mock is dropped.

use crate::support::client;
use crate::support::envoy::python;
use crate::support::vendors::{
    AwsCredentials, Kind, VendorMock, amz_date_now, base64_encode, decode_event_stream, header,
    script, sigv4_headers,
};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::Path;

const CREDS: AwsCredentials = AwsCredentials {
    access_key: "AKIDVENDORMOCKTEST",
    secret_key: "vendor-mock-test-secret",
    region: "us-east-1",
    service: "bedrock",
};
const MODEL_ID: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const ARN: &str = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile%2Fabc123";

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn invoke_body(extra: Value) -> Vec<u8> {
    let mut body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello to the vendor mock."}],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::to_vec(&body).unwrap()
}

fn bedrock() -> VendorMock {
    VendorMock::start(
        Kind::Bedrock,
        &[
            "--access-key",
            CREDS.access_key,
            "--secret-key",
            CREDS.secret_key,
        ],
    )
}

/// POSTs `body` to `path` signed with `creds` over `signed_body` (the same body unless a test
/// tampers with it), with `extra` headers signed too.
fn post_signed(
    mock: &VendorMock,
    creds: &AwsCredentials,
    path: &str,
    signed_body: &[u8],
    body: &[u8],
    extra: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let host = format!("127.0.0.1:{}", mock.port);
    let mut headers = vec![
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let auth = sigv4_headers(creds, "POST", path, &headers, signed_body, &amz_date_now());
    let mut request = client().post(mock.url(path)).body(body.to_vec());
    for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
        request = request.header(*k, *v);
    }
    for (k, v) in &auth {
        request = request.header(k, v);
    }
    request.send().unwrap()
}

fn post(
    mock: &VendorMock,
    path: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> reqwest::blocking::Response {
    post_signed(mock, &CREDS, path, body, body, extra)
}

fn json_of(response: reqwest::blocking::Response) -> Value {
    serde_json::from_slice(&response.bytes().unwrap()).unwrap()
}

fn error_type(response: &reqwest::blocking::Response) -> String {
    let value = response.headers()["x-amzn-errortype"].to_str().unwrap();
    value.split(':').next().unwrap().to_owned()
}

#[test]
fn vendor_mock_self_test_passes() {
    let out = python(
        &[script().into_os_string(), OsString::from("--self-test")],
        &[],
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("checks ok"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn bedrock_mock_checks_the_signature_and_the_body() {
    let mock = bedrock();
    let pid = mock.pid();
    let path = format!("/model/{MODEL_ID}/invoke");
    let body = invoke_body(json!({}));

    // No credentials at all, then a wrong secret: refused as AWS refuses.
    let r = client()
        .post(mock.url(&path))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_type(&r), "MissingAuthenticationTokenException");
    assert_eq!(json_of(r)["message"], "Missing Authentication Token");
    let wrong = AwsCredentials {
        secret_key: "not-the-secret",
        ..CREDS
    };
    let r = post_signed(&mock, &wrong, &path, &body, &body, &[]);
    assert_eq!(r.status(), 403);
    assert_eq!(error_type(&r), "InvalidSignatureException");
    let message = json_of(r)["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );

    // Signed: the Anthropic message, its usage as recorded, Bedrock's token headers.
    let r = post(&mock, &path, &body, &[("x-mock-cache-read", "7")]);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-amzn-bedrock-cache-read-input-token-count"],
        "7"
    );
    let answer = json_of(r);
    assert!(answer["id"].as_str().unwrap().starts_with("msg_bdrk_"));
    assert_eq!(answer["model"], "claude-sonnet-4-5-20250929");
    let record = mock.wait_records(3)[2].clone();
    assert_eq!(record["status"], 200);
    assert_eq!(record["check"], Value::Null);
    assert_eq!(record["path"], path);
    assert_eq!(record["json"]["max_tokens"], 64);
    assert_eq!(header(&record, "x-mock-cache-read"), Some("7"));
    for bucket in ["input_tokens", "output_tokens", "cache_read_input_tokens"] {
        assert_eq!(record["usage"][bucket], answer["usage"][bucket], "{bucket}");
    }
    assert_eq!(record["usage"]["cache_read_input_tokens"], 7);

    // A body changed after signing, an id encoded twice, Bedrock's body rules.
    let tampered = invoke_body(json!({"max_tokens": 65}));
    let r = post_signed(&mock, &CREDS, &path, &body, &tampered, &[]);
    assert_eq!(r.status(), 403);
    assert_eq!(error_type(&r), "InvalidSignatureException");
    let twice = format!("/model/{}/invoke", MODEL_ID.replace(':', "%253A"));
    let r = post(&mock, &twice, &body, &[]);
    assert_eq!(r.status(), 400);
    assert_eq!(
        json_of(r)["message"],
        "The provided model identifier is invalid."
    );
    let once = format!("/model/{}/invoke", MODEL_ID.replace(':', "%3A"));
    assert_eq!(post(&mock, &once, &body, &[]).status(), 200);
    let r = post(&mock, &path, &invoke_body(json!({"model": "claude"})), &[]);
    assert_eq!(r.status(), 400);
    assert_eq!(error_type(&r), "ValidationException");
    let message = json_of(r)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("extraneous key [model] is not permitted"),
        "{message}"
    );
    let betas = invoke_body(json!({"anthropic_beta": ["prompt-caching-2024-07-31"]}));
    let r = post(&mock, &path, &betas, &[]);
    assert_eq!(r.status(), 400);
    assert_eq!(json_of(r)["message"], "invalid beta flag");
    let r = post(&mock, &format!("/model/{MODEL_ID}/converse"), &body, &[]);
    assert_eq!(
        (r.status().as_u16(), error_type(&r)),
        (404, "UnknownOperationException".into())
    );

    // count-tokens wraps an invoke body.
    let inner = base64_encode(&body);
    let count = serde_json::to_vec(&json!({"input": {"invokeModel": {"body": inner}}})).unwrap();
    let r = post(
        &mock,
        &format!("/model/{MODEL_ID}/count-tokens"),
        &count,
        &[],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r)["inputTokens"], record["usage"]["input_tokens"]);

    let checks: Vec<Value> = mock.records().iter().map(|r| r["check"].clone()).collect();
    assert_eq!(
        checks,
        [
            json!("sigv4:missing"),
            json!("sigv4:signature"),
            Value::Null,
            json!("sigv4:content-sha256"),
            json!("path:model-id"),
            Value::Null,
            json!("body:extraneous-key"),
            json!("body:anthropic_beta"),
            json!("path:operation"),
            Value::Null,
        ]
    );
    drop(mock);
    assert!(gone(pid), "the bedrock mock (pid {pid}) outlived its drop");
}

#[test]
fn bedrock_mock_streams_real_event_stream_frames() {
    let mock = bedrock();
    let path = format!("/model/{ARN}/invoke-with-response-stream");
    let body = invoke_body(json!({"anthropic_beta": ["interleaved-thinking-2025-05-14"]}));
    let stream = |scenario: &str| {
        let r = post(
            &mock,
            &path,
            &body,
            &[("x-mock-scenario", scenario), ("x-mock-deltas", "6")],
        );
        assert_eq!(r.status(), 200, "{scenario}");
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
        assert_eq!(
            r.headers()["x-amzn-bedrock-content-type"],
            "application/json"
        );
        decode_event_stream(&r.bytes().unwrap())
    };

    let (frames, stopped) = stream("ok");
    assert_eq!(stopped, None);
    let events: Vec<Value> = frames.iter().map(|f| f.event().unwrap()).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "content_block_delta")
            .count(),
        6
    );
    assert_eq!(types.last(), Some(&"message_stop"));
    let usage = mock.wait_records(1)[0]["usage"].clone();
    let metrics = &events.last().unwrap()["amazon-bedrock-invocationMetrics"];
    assert_eq!(metrics["inputTokenCount"], usage["input_tokens"]);
    assert_eq!(metrics["outputTokenCount"], usage["output_tokens"]);
    assert_eq!(usage["output_tokens"], 18);
    assert_eq!(
        events[events.len() - 2]["usage"]["output_tokens"],
        usage["output_tokens"]
    );

    let (frames, stopped) = stream("exception:throttlingException");
    assert_eq!(stopped, None);
    let last = frames.last().unwrap();
    assert_eq!(last.header(":message-type"), Some("exception"));
    assert_eq!(last.header(":exception-type"), Some("throttlingException"));
    assert_eq!(stream("crc").1, Some("crc"));
    assert_eq!(stream("truncate").1, Some("truncated"));
    assert_eq!(stream("oversize").1, Some("length"));
    let records = mock.wait_records(5);
    assert_eq!(records[1]["usage"]["complete"], false);
    assert_eq!(records[3]["scenario"], "truncate");

    let r = post(
        &mock,
        &path,
        &body,
        &[("x-mock-scenario", "error:ThrottlingException:429")],
    );
    assert_eq!(
        (r.status().as_u16(), error_type(&r)),
        (429, "ThrottlingException".into())
    );
    let r = post(&mock, &path, &body, &[("x-mock-scenario", "status:529")]);
    assert_eq!(r.status(), 529);
    assert_eq!(json_of(r)["error"]["type"], "overloaded_error");
}

#[test]
fn vertex_mock_checks_token_project_and_betas() {
    let dir = std::env::temp_dir().join(format!("vertex-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "ya29.first\n").unwrap();
    let mock = VendorMock::start(
        Kind::Vertex,
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--project",
            "proj-1",
            "--region",
            "us-east5",
        ],
    );
    let pid = mock.pid();
    let models = "/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models";
    let raw = format!("{models}/claude-sonnet-4-5@20250929:rawPredict");
    let body = json!({
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let send = |path: &str, token: &str, body: &Value, beta: Option<&str>| {
        let mut r = client()
            .post(mock.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(serde_json::to_vec(body).unwrap());
        if let Some(beta) = beta {
            r = r.header("anthropic-beta", beta);
        }
        r.send().unwrap()
    };

    let r = client()
        .post(mock.url(&raw))
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(json_of(r)["error"]["status"], "UNAUTHENTICATED");
    let r = send(&raw, "ya29.first", &body, None);
    assert_eq!(r.status(), 200);
    assert!(json_of(r)["id"].as_str().unwrap().starts_with("msg_vrtx_"));
    // The token file is re-read: after a rotation only the new token works.
    std::fs::write(&token_file, "ya29.second\n").unwrap();
    assert_eq!(send(&raw, "ya29.first", &body, None).status(), 401);
    assert_eq!(send(&raw, "ya29.second", &body, None).status(), 200);

    let other = raw.replace("proj-1", "proj-2");
    assert_eq!(send(&other, "ya29.second", &body, None).status(), 404);
    let mut with_model = body.clone();
    with_model["model"] = json!("claude-sonnet-4-5@20250929");
    assert_eq!(send(&raw, "ya29.second", &with_model, None).status(), 400);
    let r = send(&raw, "ya29.second", &body, Some("effort-2025-11-24"));
    assert_eq!(r.status(), 400);
    let message = json_of(r)["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message
            .starts_with("Unexpected value(s) `effort-2025-11-24` for the `anthropic-beta` header"),
        "{message}"
    );
    assert_eq!(
        send(
            &raw,
            "ya29.second",
            &body,
            Some("interleaved-thinking-2025-05-14")
        )
        .status(),
        200
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let sse = raw.replace(":rawPredict", ":streamRawPredict");
    let r = send(&sse, "ya29.second", &streamed, None);
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().unwrap();
    assert!(
        text.contains("event: message_start")
            && text.ends_with("data: {\"type\":\"message_stop\"}\n\n")
    );
    // streamRawPredict without `stream: true` is refused.
    assert_eq!(send(&sse, "ya29.second", &body, None).status(), 400);

    let count = format!("{models}/count-tokens:rawPredict");
    let r = send(&count, "ya29.second", &with_model, None);
    assert_eq!(r.status(), 200);
    let counted = json_of(r)["input_tokens"].clone();
    assert_eq!(
        mock.records().last().unwrap()["usage"]["input_tokens"],
        counted
    );
    assert_eq!(send(&count, "ya29.second", &body, None).status(), 400);

    drop(mock);
    assert!(gone(pid), "the vertex mock (pid {pid}) outlived its drop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn foundry_mock_checks_key_version_and_deployment() {
    let mock = VendorMock::start(
        Kind::Foundry,
        &[
            "--api-key",
            "foundry-test-key",
            "--deployments",
            "claude-haiku-4-5,claude-opus-4-6",
        ],
    );
    let pid = mock.pid();
    let send = |key: Option<&str>, body: &Value, path: &str| {
        let mut r = client()
            .post(mock.url(path))
            .header("anthropic-version", "2023-06-01")
            .body(serde_json::to_vec(body).unwrap());
        if let Some(key) = key {
            r = r.header("x-api-key", key);
        }
        r.send().unwrap()
    };
    let messages = "/anthropic/v1/messages?beta=true";
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
    });

    let r = send(None, &body, messages);
    assert_eq!(r.status(), 401);
    assert_eq!(json_of(r)["error"]["type"], "authentication_error");
    let mut unknown = body.clone();
    unknown["model"] = json!("claude-sonnet-4-5");
    let r = send(Some("foundry-test-key"), &unknown, messages);
    assert_eq!(r.status(), 404);
    assert_eq!(json_of(r)["error"]["type"], "not_found_error");
    let r = send(Some("foundry-test-key"), &body, messages);
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r)["model"], "claude-haiku-4-5");
    let no_version = client()
        .post(mock.url(messages))
        .header("x-api-key", "foundry-test-key")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .unwrap();
    assert_eq!(no_version.status(), 400);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = send(Some("foundry-test-key"), &streamed, messages);
    assert!(r.text().unwrap().contains("event: message_delta"));
    let r = send(
        Some("foundry-test-key"),
        &body,
        "/anthropic/v1/messages/count_tokens",
    );
    assert_eq!(r.status(), 200);
    assert!(json_of(r)["input_tokens"].as_u64().unwrap() > 0);

    let statuses: Vec<Value> = mock.records().iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, [401, 404, 200, 400, 200, 200].map(|s| json!(s)));
    drop(mock);
    assert!(gone(pid), "the foundry mock (pid {pid}) outlived its drop");
}

#[test]
fn gcp_metadata_mock_serves_the_access_token() {
    let dir = std::env::temp_dir().join(format!("gcp-metadata-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "ya29.metadata-token\n").unwrap();
    let mock = VendorMock::start(
        Kind::GcpMetadata,
        &["--token-file", token_file.to_str().unwrap()],
    );
    let pid = mock.pid();
    let path = "/computeMetadata/v1/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/cloud-platform";

    assert_eq!(client().get(mock.url(path)).send().unwrap().status(), 403);
    let r = client()
        .get(mock.url(path))
        .header("Metadata-Flavor", "Google")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r),
        json!({"access_token": "ya29.metadata-token", "expires_in": 3599, "token_type": "Bearer"})
    );
    let identity = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=x";
    let r = client()
        .get(mock.url(identity))
        .header("Metadata-Flavor", "Google")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(mock.wait_records(3).len(), 3);
    drop(mock);
    assert!(gone(pid), "the metadata mock (pid {pid}) outlived its drop");
    let _ = std::fs::remove_dir_all(&dir);
}
