//! `make run` as a developer runs it: two gateways on one machine (other LISTEN_PORT and
//! ADMIN_PORT) both start, each with its own bootstrap and its own base id, and both stop
//! with their process group, freeing their ports.

use crate::support::anthropic;
use crate::support::envoy::repo;
use crate::support::mock::Mock;
use serde_json::json;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The Makefile's WASM.
const WASM: &str = "target/wasm32-wasip1/release/claude_gateway.wasm";

/// A free port on 127.0.0.1 (the kernel's pick, released at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `make run` in a process group of its own (make, its shell, cargo, Envoy), stopped as a
/// group when dropped: SIGTERM, then SIGKILL if it is still there after 10 s.
struct MakeRun {
    child: Child,
    log: PathBuf,
    listen: u16,
    admin: u16,
    stopped: bool,
}

impl MakeRun {
    fn start(listen: u16, admin: u16, upstream: &str) -> MakeRun {
        let log = std::env::temp_dir().join(format!(
            "claude-gateway-make-run-{}-{listen}.log",
            std::process::id()
        ));
        let out = fs::File::create(&log).unwrap();
        // The .wasm and the venv as `make e2e` built them (-o: not remade even if older than
        // their sources): two runs must not rebuild them at once, nor under other tests.
        let child = Command::new("make")
            .current_dir(repo())
            .args([
                "--no-print-directory",
                "-o",
                WASM,
                "-o",
                ".venv/.installed",
                "run",
            ])
            .arg(format!("LISTEN_PORT={listen}"))
            .arg(format!("ADMIN_PORT={admin}"))
            .arg(format!("UPSTREAM={upstream}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        MakeRun {
            child,
            log,
            listen,
            admin,
            stopped: false,
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pgid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Some process of the group is still there.
    fn group_alive(&self) -> bool {
        // SAFETY: signal 0 to our own child's process group only checks that it exists.
        unsafe { libc::kill(-self.pgid(), 0) == 0 }
    }

    fn admin_ready(&self) -> bool {
        crate::support::client()
            .get(format!("http://127.0.0.1:{}/ready", self.admin))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.text().ok())
            .is_some_and(|t| t.trim() == "LIVE")
    }

    /// The base id Envoy took, once the recipe printed it.
    fn base_id(&self) -> Option<u64> {
        self.output()
            .lines()
            .find_map(|l| l.strip_prefix("base id: "))
            .and_then(|id| id.trim().parse().ok())
    }

    /// Stops the whole group and waits (bounded) until none of it is left; once only, so a
    /// group id the system has since given to others is never signalled.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        for (signal, wait) in [(libc::SIGTERM, 10), (libc::SIGKILL, 5)] {
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-self.pgid(), signal) };
            let deadline = Instant::now() + Duration::from_secs(wait);
            while Instant::now() < deadline {
                let _ = self.child.try_wait();
                if !self.group_alive() {
                    let _ = self.child.wait();
                    return;
                }
                sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- make run (LISTEN_PORT={}) ----\n{}",
                self.listen,
                self.output()
            );
        }
        let _ = fs::remove_file(&self.log);
    }
}

#[test]
fn make_run_twice_runs_two_gateways_with_their_own_base_ids() {
    let mock = Mock::start("anthropic", anthropic::responder("anthropic"));
    let upstream = format!("http://127.0.0.1:{}", mock.port());
    let started = Instant::now();
    let mut runs = [
        MakeRun::start(free_port(), free_port(), &upstream),
        MakeRun::start(free_port(), free_port(), &upstream),
    ];

    let deadline = Instant::now() + Duration::from_secs(120);
    for run in &mut runs {
        while !(run.admin_ready() && run.base_id().is_some()) {
            if let Some(status) = run.child.try_wait().unwrap() {
                panic!(
                    "make run (LISTEN_PORT={}) ended ({status}) before it was ready:\n{}",
                    run.listen,
                    run.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "make run (LISTEN_PORT={}) not ready in 120 s",
                run.listen
            );
            sleep(Duration::from_millis(100));
        }
    }
    eprintln!("both gateways ready {:?} after make run", started.elapsed());
    let ids: Vec<u64> = runs.iter().map(|r| r.base_id().unwrap()).collect();
    assert_ne!(ids[0], ids[1], "both took base id {}", ids[0]);
    for run in &runs {
        // Each its own bootstrap, and a request through each reaches the upstream.
        let rendered = repo().join(format!("target/envoy-run-{}.yaml", run.listen));
        let text = fs::read_to_string(&rendered).unwrap();
        assert!(
            text.contains(&format!("port_value: {}", run.admin)),
            "{}",
            rendered.display()
        );
        let r = crate::support::client()
            .post(format!("http://127.0.0.1:{}/v1/messages", run.listen))
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-client")
            .body(
                json!({"model": "claude-sonnet-4-5", "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            )
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", run.output());
    }
    assert_eq!(mock.requests().len(), 2);

    for run in &mut runs {
        run.stop();
        assert!(!run.group_alive(), "make run's processes are still there");
        for port in [run.listen, run.admin] {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "something still listens on {port}"
            );
            TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("port {port} not freed: {e}"));
        }
    }
    eprintln!(
        "base ids {ids:?}; both stopped {:?} after make run",
        started.elapsed()
    );
}
