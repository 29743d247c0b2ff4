//! Mock cloud vendors (Bedrock, Vertex AI, Foundry, the GCP metadata server): the venv's
//! Python runs `tests/mocks/vendors.py` on an ephemeral loopback port. Each mock checks what the
//! vendor checks (SigV4, bearer tokens, API keys, paths, body fields, betas), answers in the
//! vendor's format, and appends every request with its answer to a JSON-lines record file that
//! [`VendorMock::records`] reads. The process is stopped by pid when the mock is dropped.
//!
//! Also here: a SigV4 signer (an implementation independent of botocore, Envoy's path encoding)
//! and an AWS event-stream decoder, so tests can speak to and read from the Bedrock mock.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How long the mock may take to print its port (Python start-up and botocore's import).
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bedrock,
    /// Bedrock's Messages surface (`--service bedrock-mantle` for Mantle).
    BedrockMessages,
    Vertex,
    Foundry,
    GcpMetadata,
    /// An identity provider: a JWKS and the tokens a test asks for.
    Idp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bedrock => "bedrock",
            Kind::BedrockMessages => "bedrock-messages",
            Kind::Vertex => "vertex",
            Kind::Foundry => "foundry",
            Kind::GcpMetadata => "gcp-metadata",
            Kind::Idp => "idp",
        }
    }
}

/// The mock program.
pub fn script() -> PathBuf {
    super::envoy::repo().join("tests/mocks/vendors.py")
}

pub struct VendorMock {
    child: Child,
    dir: PathBuf,
    record: PathBuf,
    pub port: u16,
}

impl VendorMock {
    /// Starts a mock of `kind` with the program's options (`--access-key`, `--token-file`, ...;
    /// `--kind` and `--record` are set here) and waits (bounded) for its port.
    pub fn start(kind: Kind, args: &[&str]) -> VendorMock {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "claude-gateway-vendor-{}-{n}-{}",
            std::process::id(),
            kind.as_str()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let record = dir.join("record.jsonl");
        let mut child = Command::new(super::envoy::python_bin())
            .arg(script())
            .args(["--kind", kind.as_str(), "--record"])
            .arg(&record)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        // The first line is `port N`; the reader keeps draining stdout until the process ends.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines.by_ref() {}
        });
        let mut mock = VendorMock {
            child,
            dir,
            record,
            port: 0,
        };
        let line = rx.recv_timeout(START_TIMEOUT);
        mock.port = line
            .as_deref()
            .ok()
            .and_then(|l| l.strip_prefix("port "))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{} mock did not print its port ({line:?}):\n{}",
                    kind.as_str(),
                    mock.log()
                )
            });
        mock
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The mock's standard error (Python tracebacks, if any).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Every request so far, one JSON object each: `seq`, `time`, `kind`, `method`, `path` (as
    /// received), `headers` ([[name, value], ...] in order), `body_b64`, and what the mock
    /// answered: `status`, `scenario`, `model`, `usage` (what it reported, or null), `check`
    /// (the check that failed, or null), `error` ({type, message} or null), `detail`. Added
    /// here: `body` (the body as text, lossy UTF-8) and `json` (the body parsed, or null).
    pub fn records(&self) -> Vec<Value> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|mut r| {
                let body = base64_decode(r["body_b64"].as_str().unwrap_or("")).unwrap_or_default();
                r["json"] = serde_json::from_slice(&body).unwrap_or(Value::Null);
                r["body"] = Value::String(String::from_utf8_lossy(&body).into_owned());
                r
            })
            .collect()
    }

    /// Waits (bounded) until at least `n` requests were recorded, and returns them all.
    pub fn wait_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.records();
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VendorMock {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- vendor mock ({}) ----\n{}",
                self.dir.display(),
                self.log()
            );
            let records = fs::read_to_string(&self.record).unwrap_or_default();
            let tail: Vec<&str> = records.lines().rev().take(10).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first value of a header in a record, by case-insensitive name.
pub fn header<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["headers"].as_array()?.iter().find_map(|h| {
        let (k, v) = (h.get(0)?.as_str()?, h.get(1)?.as_str()?);
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in group.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= group.len() {
                out.push(BASE64[(acc >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| BASE64.iter().position(|&b| b == c).map(|p| p as u32);
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for group in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(bytes.get(1..group.len())?);
    }
    Some(out)
}

// ---- SigV4 -----------------------------------------------------------------------------------

/// What a SigV4 signature is made of.
pub struct AwsCredentials<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Signs a request the way Envoy's `aws_request_signing` does (payload signed, every given
/// header signed, the path percent-encoded again per segment) and returns the headers to add:
/// `x-amz-date`, `x-amz-content-sha256`, `authorization`. `headers` must include `host` as it
/// will be sent; `path` is the path as sent (no query).
pub fn sigv4_headers(
    creds: &AwsCredentials,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    amz_date: &str,
) -> Vec<(String, String)> {
    let payload = hex(&Sha256::digest(body));
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    all.push(("x-amz-date".into(), amz_date.into()));
    all.push(("x-amz-content-sha256".into(), payload.clone()));
    all.sort();
    let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let uri: Vec<String> = path.split('/').map(encode_segment).collect();
    let canonical = format!(
        "{method}\n{}\n\n{canonical_headers}\n{signed}\n{payload}",
        uri.join("/")
    );
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", creds.region, creds.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [creds.region, creds.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    vec![
        ("x-amz-date".into(), amz_date.into()),
        ("x-amz-content-sha256".into(), payload),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                creds.access_key
            ),
        ),
    ]
}

/// Every byte outside `A-Za-z0-9-._~` as `%XX` (Envoy's encodePathSegment for non-S3).
fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time as SigV4's `x-amz-date` (`YYYYMMDDTHHMMSSZ`, UTC).
pub fn amz_date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (year, month, day) = claude_gateway::time::civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---- AWS event stream ------------------------------------------------------------------------

/// One decoded event-stream message: its string headers and payload.
#[derive(Debug, Clone)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `chunk` frame's Anthropic event (`bytes`, base64-decoded and parsed).
    pub fn event(&self) -> Option<Value> {
        let payload: Value = serde_json::from_slice(&self.payload).ok()?;
        serde_json::from_slice(&base64_decode(payload["bytes"].as_str()?)?).ok()
    }
}

/// Decodes a whole event stream, checking both CRCs. Returns the frames decoded and, if it
/// stopped early, why (`"crc"`, `"truncated"`, `"length"`, `"header"`).
pub fn decode_event_stream(mut data: &[u8]) -> (Vec<Frame>, Option<&'static str>) {
    let mut frames = Vec::new();
    while !data.is_empty() {
        match decode_frame(data) {
            Ok((frame, used)) => {
                frames.push(frame);
                data = data.get(used..).unwrap_or_default();
            }
            Err(why) => return (frames, Some(why)),
        }
    }
    (frames, None)
}

fn decode_frame(data: &[u8]) -> Result<(Frame, usize), &'static str> {
    let be32 = |at: usize| -> Result<usize, &'static str> {
        let b = data.get(at..at + 4).ok_or("truncated")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (total, headers_len) = (be32(0)?, be32(4)?);
    if crc32(data.get(..8).ok_or("truncated")?) as usize != be32(8)? {
        return Err("crc");
    }
    if total < 16 + headers_len || total > 24 * 1024 * 1024 {
        return Err("length");
    }
    let message = data.get(..total).ok_or("truncated")?;
    if crc32(&message[..total - 4]) as usize != be32(total - 4)? {
        return Err("crc");
    }
    let mut raw = &message[12..12 + headers_len];
    let mut headers = Vec::new();
    while let Some((&n, rest)) = raw.split_first() {
        let name = rest.get(..n as usize).ok_or("header")?;
        let rest = &rest[n as usize..];
        // Only string values (type 7) occur in Bedrock's frames.
        if rest.first() != Some(&7) {
            return Err("header");
        }
        let len =
            u16::from_be_bytes([*rest.get(1).ok_or("header")?, *rest.get(2).ok_or("header")?]);
        let value = rest.get(3..3 + len as usize).ok_or("header")?;
        headers.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        raw = &rest[3 + len as usize..];
    }
    let payload = message[12 + headers_len..total - 4].to_vec();
    Ok((Frame { headers, payload }, total))
}

/// CRC-32 (IEEE, as zlib's crc32).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
