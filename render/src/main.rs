//! The gateway's Envoy bootstrap renderer.
//!
//! render bootstrap <file.yaml> --wasm <path> [--upstream <url>] [--listen <port>]
//!                  [--admin <port>] [--plugin-config <file.json|file.yaml>] [--out <file>]
//!     a shipped bootstrap with local values (`make run`, `make validate`, `make manifests`)
//! render examples [--check]
//!     writes every envoy/examples/*.yaml, and deploy/kubernetes/replicas.yaml, from
//!     envoy/envoy.yaml (`make examples`); with
//!     --check, writes nothing and fails naming the stale ones (`make lint`)
//! render envoy-args
//!     the command-line flags Envoy is started with next to the bootstrap (`make run`): the
//!     access-log flush interval, which Envoy has no bootstrap field for

use claude_gateway_render::{Bootstrap, ENVOY_ARGS, Upstream, examples};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: render bootstrap <file.yaml> --wasm <path> [--upstream <url>] \
                     [--listen <port>] [--admin <port>] [--plugin-config <file.json|file.yaml>] \
                     [--out <file>]\n       render examples [--check]\n       render envoy-args";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((command, rest)) if command == "bootstrap" => bootstrap(rest),
        Some((command, rest)) if command == "examples" => examples(rest),
        Some((command, [])) if command == "envoy-args" => {
            println!("{}", ENVOY_ARGS.join(" "));
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("render: {e}");
            ExitCode::from(2)
        }
    }
}

fn bootstrap(args: &[String]) -> Result<ExitCode, String> {
    let mut input = None;
    let mut out = None;
    let mut wasm = None;
    let mut steps: Vec<(&str, &str)> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let value = args.next().ok_or(format!("--{flag} needs a value"))?;
            match flag {
                "out" => out = Some(PathBuf::from(value)),
                "wasm" => wasm = Some(value.as_str()),
                "upstream" | "listen" | "admin" | "plugin-config" => steps.push((flag, value)),
                _ => return Err(format!("unknown flag --{flag}\n{USAGE}")),
            }
        } else if input.is_none() {
            input = Some(PathBuf::from(arg));
        } else {
            return Err(format!(
                "one bootstrap file only, not also {arg:?}\n{USAGE}"
            ));
        }
    }
    let input = input.ok_or(format!("no bootstrap file given\n{USAGE}"))?;
    let wasm = wasm.ok_or(format!("--wasm <path> is required\n{USAGE}"))?;
    let mut b = Bootstrap::load(&input)?;
    b.wasm(wasm);
    for (flag, value) in steps {
        match flag {
            "upstream" => {
                b.upstream("anthropic", &Upstream::parse(value)?)?;
            }
            "listen" => {
                b.listen("127.0.0.1", port(value)?)?;
            }
            "admin" => {
                b.admin("127.0.0.1", port(value)?);
            }
            _ => plugin_config(&mut b, Path::new(value))?,
        }
    }
    let yaml = b.to_yaml()?;
    match out {
        Some(path) => {
            std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A plugin configuration file, JSON or YAML: a mapping, written as a Struct.
fn plugin_config(b: &mut Bootstrap, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    b.plugin_config_yaml(&text)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn port(value: &str) -> Result<u16, String> {
    value.parse().map_err(|_| format!("bad port {value:?}"))
}

/// The repository: the renderer's crate is `render/` in it.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn examples(args: &[String]) -> Result<ExitCode, String> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err(USAGE.to_owned()),
    };
    let base_path = repo().join("envoy/envoy.yaml");
    let base =
        std::fs::read_to_string(&base_path).map_err(|e| format!("{}: {e}", base_path.display()))?;
    let mut stale = Vec::new();
    for (name, text) in examples::all(&base)? {
        let path = repo().join(&name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        } else {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if stale.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("out of date: {} (run `make examples`)", stale.join(", "));
    Ok(ExitCode::FAILURE)
}
