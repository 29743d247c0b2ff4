//! Renders a shipped Envoy bootstrap with local values; `make run` and `make validate` use it.
//!
//! render_envoy <bootstrap.yaml> --wasm <path> [--upstream <url>] [--listen <port>]
//!              [--admin <port>] [--plugin-config <file.json>] [--out <file>]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/bootstrap.rs"]
mod bootstrap;

use bootstrap::{Bootstrap, Upstream};
use std::path::PathBuf;
use std::process::exit;

fn main() {
    if let Err(e) = run() {
        eprintln!("render_envoy: {e}");
        exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut input = None;
    let mut out = None;
    let mut steps: Vec<(String, String)> = Vec::new();
    while let Some(arg) = args.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let value = args.next().ok_or(format!("--{flag} needs a value"))?;
            match flag {
                "out" => out = Some(PathBuf::from(value)),
                "wasm" | "upstream" | "listen" | "admin" | "plugin-config" => {
                    steps.push((flag.to_owned(), value))
                }
                _ => return Err(format!("unknown flag --{flag}")),
            }
        } else {
            input = Some(PathBuf::from(arg));
        }
    }
    let input = input.ok_or("no bootstrap file given")?;
    let mut b = Bootstrap::load(&input)?;
    for (flag, value) in steps {
        match flag.as_str() {
            "wasm" => {
                b.wasm(&value);
            }
            "upstream" => {
                b.upstream("anthropic", &Upstream::parse(&value)?)?;
            }
            "listen" => {
                b.listen("127.0.0.1", port(&value)?);
            }
            "admin" => {
                b.admin("127.0.0.1", port(&value)?);
            }
            "plugin-config" => {
                let json = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                b.plugin_config(json.trim());
            }
            _ => unreachable!(),
        }
    }
    let yaml = b.to_yaml();
    match out {
        Some(path) => std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            print!("{yaml}");
            Ok(())
        }
    }
}

fn port(value: &str) -> Result<u16, String> {
    value.parse().map_err(|_| format!("bad port {value:?}"))
}
