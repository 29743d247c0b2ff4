//! A mock of Envoy's global rate-limit service (`envoy.service.ratelimit.v3.RateLimitService`,
//! gRPC over cleartext HTTP/2): records the domain and descriptors of every call and answers
//! OVER_LIMIT when the test's predicate says so. The two messages involved have a handful of
//! fields, so their protobuf is read and written by hand.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// One descriptor: its entries as (key, value), and its own `hits_addend` when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<(String, String)>,
    pub hits: Option<u64>,
}

impl Descriptor {
    /// The value of an entry.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
}

type OverLimit = Arc<dyn Fn(&Call) -> bool + Send + Sync>;

pub struct RateLimitService {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    // Dropping the runtime stops the server and closes its connections.
    _runtime: tokio::runtime::Runtime,
}

impl RateLimitService {
    pub fn start(over_limit: impl Fn(&Call) -> bool + Send + Sync + 'static) -> RateLimitService {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_io()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_listener.local_addr().unwrap().port();
        std_listener.set_nonblocking(true).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let over_limit: OverLimit = Arc::new(over_limit);
        let recorded = calls.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, recorded.clone(), over_limit.clone()));
            }
        });
        RateLimitService {
            port,
            calls,
            _runtime: runtime,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

async fn serve(socket: tokio::net::TcpStream, calls: Arc<Mutex<Vec<Call>>>, over_limit: OverLimit) {
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let calls = calls.clone();
        let over_limit = over_limit.clone();
        tokio::spawn(async move {
            let mut body = request.into_body();
            let mut message = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                message.extend_from_slice(&chunk);
            }
            // gRPC framing: compressed flag (1 byte), length (4 bytes), message.
            let call = decode_request(message.get(5..).unwrap_or_default());
            let code: u8 = if over_limit(&call) { 2 } else { 1 }; // OVER_LIMIT / OK
            calls.lock().unwrap().push(call);
            let head = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(head, false) else {
                return;
            };
            // RateLimitResponse { overall_code (1): code }
            let frame = vec![0, 0, 0, 0, 2, 0x08, code];
            let _ = send.send_data(Bytes::from(frame), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = send.send_trailers(trailers);
        });
    }
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The length-delimited fields of a protobuf message, as (field number, bytes); other wire
/// types are skipped.
fn fields(mut b: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while let Some(tag) = varint(&mut b) {
        let skip = match tag & 7 {
            0 => varint(&mut b).map(|_| 0),
            1 => Some(8),
            2 => {
                let Some(len) = varint(&mut b).map(|l| l as usize) else {
                    break;
                };
                let Some(value) = b.get(..len) else { break };
                out.push((tag >> 3, value));
                Some(len)
            }
            5 => Some(4),
            _ => None,
        };
        match skip.and_then(|n| b.get(n..)) {
            Some(rest) => b = rest,
            None => break,
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// RateLimitRequest { domain (1), descriptors (2): RateLimitDescriptor { entries (1):
/// Entry { key (1), value (2) }, hits_addend (3): UInt64Value { value (1) } } }
fn decode_request(message: &[u8]) -> Call {
    let mut call = Call {
        domain: String::new(),
        descriptors: Vec::new(),
    };
    for (field, value) in fields(message) {
        match field {
            1 => call.domain = text(value),
            2 => {
                let mut d = Descriptor {
                    entries: Vec::new(),
                    hits: None,
                };
                for (f, v) in fields(value) {
                    match f {
                        1 => {
                            let mut kv = (String::new(), String::new());
                            for (f, v) in fields(v) {
                                match f {
                                    1 => kv.0 = text(v),
                                    2 => kv.1 = text(v),
                                    _ => {}
                                }
                            }
                            d.entries.push(kv);
                        }
                        // An absent value field is 0.
                        3 => d.hits = Some(varint_field(v, 1).unwrap_or(0)),
                        _ => {}
                    }
                }
                call.descriptors.push(d);
            }
            _ => {}
        }
    }
    call
}

/// The varint field `number` of a message.
fn varint_field(mut b: &[u8], number: u64) -> Option<u64> {
    while let Some(tag) = varint(&mut b) {
        let v = varint(&mut b)?;
        if tag == (number << 3) {
            return Some(v);
        }
    }
    None
}
