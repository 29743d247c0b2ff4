//! What limits across replicas run on: a real `redis-server` (Debian's package; `.ci/run`
//! installs it) and the gateway's rate-limit service (`ratelimit/`, its binary as `make` builds
//! it). Both are child processes, killed by their pid when dropped; every wait is bounded.

use super::envoy::repo;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A child process, killed (by its pid) when dropped.
pub struct Killed(pub Child);

impl Killed {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` on 127.0.0.1:`port`, without persistence (a restart starts empty).
pub struct Redis {
    pub port: u16,
    process: Option<Killed>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            process: None,
        };
        r.restart();
        r
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.0.id())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Stops it (when running) and starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let found = Command::new("redis-server").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "redis-server is not on PATH: `apt-get install redis-server` (.ci/run does)"
        );
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.process = Some(Killed(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            sleep(Duration::from_millis(20));
        }
    }

    /// One command; its answer's first line (`None` when Redis does not answer).
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(request.as_bytes()).ok()?;
        s.shutdown(std::net::Shutdown::Write).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer.trim_end().to_owned())
    }

    /// The sum of the counters whose key contains `part` (limitador's keys name the descriptor:
    /// `…{claude-gateway/consumer=alice/output_tokens}…`).
    pub fn counted(&self, part: &str) -> i64 {
        let keys = self.command(&["KEYS", &format!("*{part}*")]).unwrap();
        // `*N`, then `$len` and the key, for each key.
        let keys: Vec<&str> = keys.lines().skip(1).skip(1).step_by(2).collect();
        keys.iter()
            .filter_map(|k| self.command(&["GET", k]))
            .filter_map(|answer| answer.lines().nth(1).and_then(|v| v.parse::<i64>().ok()))
            .sum()
    }

    /// Waits until the counters matching `part` reach `at_least` (charges arrive when a stream
    /// has ended, after its response reached the client).
    pub fn wait_counted(&self, part: &str, at_least: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.counted(part);
            if n >= at_least {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{part}: {n} counted, expected {at_least}"
            );
            sleep(Duration::from_millis(20));
        }
    }
}

/// The rate-limit service's binary: `RATELIMIT_BIN` (`make bench`: the release build), else
/// the debug build (`make e2e` builds it).
pub fn ratelimit_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RATELIMIT_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let bin = target.join("debug/claude-gateway-ratelimit");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p claude_gateway_ratelimit` (make e2e does)",
        bin.display()
    );
    bin
}

/// The gateway's rate-limit service on an ephemeral port, reading `config` (the plugin
/// configuration) and counting in `redis`.
pub struct RateLimitServer {
    pub port: u16,
    dir: PathBuf,
    process: Killed,
}

impl RateLimitServer {
    pub fn start(config: &str, redis: &Redis) -> RateLimitServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "claude-gateway-ratelimit-{}-{port}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), config).unwrap();
        let child = Command::new(ratelimit_bin())
            .arg("--config")
            .arg(dir.join("config.json"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis", &redis.url()])
            .stderr(fs::File::create(dir.join("service.log")).unwrap())
            .spawn()
            .unwrap();
        let server = RateLimitServer {
            port,
            dir,
            process: Killed(child),
        };
        server.wait_log(": up");
        server
    }

    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("service.log")).unwrap_or_default()
    }

    /// Waits until the service has logged a line containing `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the service did not log {text:?}:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }
}

impl Drop for RateLimitServer {
    fn drop(&mut self) {
        self.process.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
