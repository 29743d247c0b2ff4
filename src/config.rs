//! Plugin configuration: the JSON document Envoy hands to `on_configure`, deserialized with
//! declared defaults and `deny_unknown_fields`, then validated into the runtime [`Config`].
//! Errors name the JSON path and what is wrong; they never echo values that could be secrets.

use serde::Deserialize;
use std::fmt;

/// Name of the request header Envoy's route reads (`cluster_header`) to pick the upstream cluster.
pub const DEFAULT_ROUTING_HEADER: &str = "x-claude-gateway-cluster";
/// The cluster every request goes to unless a later rule says otherwise.
pub const DEFAULT_CLUSTER: &str = "anthropic";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    routing_header: String,
    default_cluster: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            routing_header: DEFAULT_ROUTING_HEADER.to_owned(),
            default_cluster: DEFAULT_CLUSTER.to_owned(),
        }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub routing_header: String,
    pub default_cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending field, `.` for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration at `{}`: {}",
            self.path, self.message
        )
    }
}

fn error(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Parses and validates the plugin configuration. An empty document means all defaults.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let raw: RawConfig = if first.is_none() {
        RawConfig::default()
    } else if first != Some(&b'{') {
        return Err(error(".", "must be a JSON object"));
    } else {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // serde_json's message names the field and the expectation, never the value.
            error(&path, e.into_inner().to_string())
        })?
    };
    validate_header_name("routing_header", &raw.routing_header)?;
    validate_cluster_name("default_cluster", &raw.default_cluster)?;
    Ok(Config {
        routing_header: raw.routing_header,
        default_cluster: raw.default_cluster,
    })
}

fn validate_header_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(error(
            path,
            "must be a lowercase HTTP header name (a-z, 0-9, '-', '_')",
        ))
    }
}

fn validate_cluster_name(path: &str, name: &str) -> Result<(), ConfigError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(error(
            path,
            "must be a non-empty Envoy cluster name without spaces",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_defaults() {
        for doc in ["", "  \n", "{}"] {
            let c = parse(doc.as_bytes()).unwrap();
            assert_eq!(c.default_cluster, "anthropic");
            assert_eq!(c.routing_header, "x-claude-gateway-cluster");
        }
    }

    #[test]
    fn overrides_apply() {
        let c = parse(br#"{"default_cluster":"eu","routing_header":"x-route"}"#).unwrap();
        assert_eq!(c.default_cluster, "eu");
        assert_eq!(c.routing_header, "x-route");
    }

    #[test]
    fn errors_name_the_path() {
        let e = parse(br#"{"default_clustr":"x"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `default_clustr`"), "{e}");
        let e = parse(br#"{"default_cluster":7}"#).unwrap_err();
        assert_eq!(e.path, "default_cluster");
        let e = parse(br#"{"routing_header":"X Bad"}"#).unwrap_err();
        assert_eq!(e.path, "routing_header");
        let e = parse(br#"{"default_cluster":""}"#).unwrap_err();
        assert_eq!(e.path, "default_cluster");
        assert!(parse(b"{").is_err());
        assert!(parse(b"[]").is_err());
    }
}
