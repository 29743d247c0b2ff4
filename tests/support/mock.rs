//! A mock Anthropic upstream: an HTTP/1.1 server on an ephemeral loopback port that records
//! every request (method, path with query, headers as received, body bytes) and answers with a
//! reply chosen by a responder function. Streamed replies are written chunk by chunk exactly as
//! scripted, can wait on a [`Gate`] the test opens, and can end with a TCP reset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a mock connection waits for the next request or a gate before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path with query, as received.
    pub target: String,
    /// Header names and values as received, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A latch a streamed reply can wait on; the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    /// Waits until opened; false on timeout.
    fn wait(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.0;
        let guard = lock.lock().unwrap();
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |open| !*open)
            .unwrap();
        *guard
    }
}

pub enum Step {
    /// Write these bytes as one HTTP chunk and flush.
    Send(Vec<u8>),
    /// Wait for the gate before the next step (the reply is abandoned if it never opens).
    Wait(Gate),
    /// Reset the connection (RST) instead of finishing the reply.
    Reset,
    /// Write nothing more until the peer closes the connection (bounded), then give up the
    /// reply: a response the downstream client abandoned ends here, never after.
    UntilClosed,
}

pub enum Body {
    /// Sent with `content-length`.
    Full(Vec<u8>),
    /// Sent with `transfer-encoding: chunked`, one chunk per `Step::Send`.
    Chunks(Vec<Step>),
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Steps before the status line: a `Wait` stalls the response head, a `Reset` resets the
    /// connection before any header (`Send` writes raw bytes).
    pub before_head: Vec<Step>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: Body) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            before_head: Vec::new(),
        }
    }

    /// A connection reset before any response byte.
    pub fn reset() -> Reply {
        Reply::json(200, Vec::new()).before(Step::Reset)
    }

    /// Adds a step before the response head.
    pub fn before(mut self, step: Step) -> Reply {
        self.before_head.push(step);
        self
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(status, "application/json", Body::Full(body.into()))
    }

    pub fn sse(steps: Vec<Step>) -> Reply {
        Reply::new(200, "text/event-stream", Body::Chunks(steps))
            .header("cache-control", "no-cache")
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Shared {
    id: String,
    /// Keep each request (off for long runs: only `served` is counted).
    keep: AtomicBool,
    served: std::sync::atomic::AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    responder: Mutex<Responder>,
    stop: AtomicBool,
}

pub struct Mock {
    port: u16,
    shared: Arc<Shared>,
}

impl Mock {
    /// Starts a mock that identifies itself as `id` (response header `x-mock-upstream`) and
    /// answers with `responder`.
    pub fn start(id: &str, responder: Responder) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            id: id.to_owned(),
            keep: AtomicBool::new(true),
            served: std::sync::atomic::AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            responder: Mutex::new(responder),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let s = s.clone();
                    thread::spawn(move || serve(stream, &s));
                }
            }
        });
        Mock { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops keeping requests (long runs); they are still counted by [`Mock::served`].
    pub fn forget_requests(&self) {
        self.shared.keep.store(false, Ordering::SeqCst);
    }

    /// Requests received so far, kept or not.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (bounded), and returns them all.
    pub fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut requests = self.shared.requests.lock().unwrap();
        while requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            requests = self.shared.arrived.wait_timeout(requests, left).unwrap().0;
        }
        requests.clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        shared.served.fetch_add(1, Ordering::SeqCst);
        if shared.keep.load(Ordering::SeqCst) {
            let mut requests = shared.requests.lock().unwrap();
            requests.push(request.clone());
            shared.arrived.notify_all();
        }
        let responder = shared.responder.lock().unwrap().clone();
        let reply = responder(&request);
        let head_only = request.method == "HEAD";
        if write_reply(&mut writer, &shared.id, reply, head_only).is_err() {
            return;
        }
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
    let mut request = Recorded {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t).ok()?;
                    if t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            r.read_exact(&mut request.body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().ok()?;
        request.body.resize(len, 0);
        r.read_exact(&mut request.body).ok()?;
    }
    Some(request)
}

fn write_reply(
    w: &mut TcpStream,
    id: &str,
    mut reply: Reply,
    head_only: bool,
) -> std::io::Result<()> {
    for step in std::mem::take(&mut reply.before_head) {
        write_step(w, step, false)?;
    }
    let mut head = format!(
        "HTTP/1.1 {} Mock\r\nx-mock-upstream: {id}\r\n",
        reply.status
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &reply.body {
        Body::Full(b) => head.push_str(&format!("content-length: {}\r\n\r\n", b.len())),
        Body::Chunks(_) => head.push_str("transfer-encoding: chunked\r\n\r\n"),
    }
    w.write_all(head.as_bytes())?;
    w.flush()?;
    if head_only {
        return Ok(());
    }
    match reply.body {
        Body::Full(b) => w.write_all(&b)?,
        Body::Chunks(steps) => {
            for step in steps {
                write_step(w, step, true)?;
            }
            w.write_all(b"0\r\n\r\n")?;
        }
    }
    w.flush()
}

/// Writes one step; `Send` bytes become an HTTP chunk when `chunked`.
fn write_step(w: &mut TcpStream, step: Step, chunked: bool) -> std::io::Result<()> {
    match step {
        Step::Send(bytes) if bytes.is_empty() => {}
        Step::Send(bytes) => {
            if chunked {
                w.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
            }
            w.write_all(&bytes)?;
            if chunked {
                w.write_all(b"\r\n")?;
            }
            w.flush()?;
        }
        Step::Wait(gate) => {
            if !gate.wait(IO_TIMEOUT) {
                let _ = w.shutdown(Shutdown::Both);
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
        Step::Reset => {
            socket2::SockRef::from(&*w).set_linger(Some(Duration::ZERO))?;
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        Step::UntilClosed => {
            let mut byte = [0u8; 1];
            while let Ok(1..) = w.read(&mut byte) {}
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
    }
    Ok(())
}
