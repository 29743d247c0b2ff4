//! Reads the gateway's plugin configuration file (JSON, or YAML as in the bootstraps) with the
//! filter's own parser, so the limits are the ones the filter enforces locally.

use claude_gateway::config::Config;

/// What the service puts in the place of every environment variable the configuration names
/// (the pool keys): it never uses a key, and never reads one from its environment.
pub const PLACEHOLDER_KEY: &str = "unused-by-the-rate-limit-service";

/// Parses a plugin configuration document: JSON when it starts with `{`, else YAML (an empty
/// document is the defaults: no limits).
pub fn parse(text: &str) -> Result<Config, String> {
    let json = if text.trim_start().starts_with('{') || text.trim().is_empty() {
        text.as_bytes().to_vec()
    } else {
        let value: serde_json::Value =
            serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        if value.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&value).map_err(|e| e.to_string())?
        }
    };
    claude_gateway::config::parse_with_env(&json, &|_| Some(PLACEHOLDER_KEY.to_owned()))
        .map_err(|e| e.to_string())
}

/// Reads and parses the file at `path`.
pub fn load(path: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    parse(&text).map_err(|e| format!("{path}: {e}"))
}
