//! Plugin configuration: the JSON document Envoy hands to `on_configure`, deserialized with
//! declared defaults and `deny_unknown_fields`, then validated into the runtime [`Config`].
//! Errors name the JSON path and what is wrong; they never echo values that could be secrets.

use crate::cache::{self, Locations, Skip, Ttl};
use crate::cost::{self, Price, Rates};
use crate::pattern::Pattern;
use serde::Deserialize;
use std::fmt;

/// Name of the request header Envoy's route reads (`cluster_header`) to pick the upstream cluster.
pub const DEFAULT_ROUTING_HEADER: &str = "x-claude-gateway-cluster";
/// The cluster every request goes to unless a later rule says otherwise.
pub const DEFAULT_CLUSTER: &str = "anthropic";

/// Minimum cacheable prompt length per model family (anthropic-wire.md §4.6, Oct 2026). First
/// match wins, so more specific patterns come first; configured entries are checked before these.
pub const DEFAULT_MIN_TOKENS: &[(&str, u64)] = &[
    ("*claude-fable-5-1*", 512),
    ("*claude-mythos-5-1*", 512),
    ("*claude-opus-5-5*", 512),
    ("*claude-sonnet-5-5*", 512),
    ("*claude-haiku-5-5*", 512),
    ("*claude-fable-5*", 512),
    ("*claude-mythos-5*", 512),
    ("*claude-opus-5*", 512),
    ("*claude-sonnet-5*", 1024),
    ("*claude-mythos-preview*", 2048),
    ("*claude-opus-4-7*", 2048),
    ("*claude-3-5-haiku*", 2048),
    ("*claude-3-haiku*", 2048),
    ("*claude-opus-4-6*", 4096),
    ("*claude-opus-4-5*", 4096),
    ("*claude-haiku-4-5*", 4096),
    ("*claude-opus-4*", 1024),
    ("*claude-sonnet-4*", 1024),
];

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    routing_header: String,
    default_cluster: String,
    cache: RawCache,
    usage: RawUsage,
    audit: RawAudit,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            routing_header: DEFAULT_ROUTING_HEADER.to_owned(),
            default_cluster: DEFAULT_CLUSTER.to_owned(),
            cache: RawCache::default(),
            usage: RawUsage::default(),
            audit: RawAudit::default(),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRates {
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: f64,
    cache_read: f64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawLongPrompt {
    above_tokens: u64,
    #[serde(flatten)]
    rates: RawRates,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    name: String,
    model: String,
    #[serde(flatten)]
    rates: RawRates,
    #[serde(default)]
    web_search_per_1k: f64,
    long_prompt: Option<RawLongPrompt>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawUsage {
    enabled: bool,
    builtin_prices: bool,
    prices: Vec<RawPrice>,
    max_json_response_bytes: usize,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            enabled: true,
            builtin_prices: true,
            prices: Vec::new(),
            max_json_response_bytes: 8 << 20,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    enabled: bool,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit { enabled: true }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CacheMode {
    Blocks,
    Automatic,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
enum TtlName {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawLocations {
    tools: bool,
    system: bool,
    last_user: bool,
    previous_user: bool,
}

impl Default for RawLocations {
    fn default() -> Self {
        RawLocations {
            tools: true,
            system: true,
            last_user: true,
            previous_user: true,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawMinTokens {
    model: String,
    tokens: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    enabled: bool,
    mode: CacheMode,
    ttl: TtlName,
    locations: RawLocations,
    extended_ttl_beta: bool,
    bytes_per_token: u64,
    min_tokens: Vec<RawMinTokens>,
    default_min_tokens: u64,
    disabled_models: Vec<String>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: true,
            mode: CacheMode::Blocks,
            ttl: TtlName::FiveMinutes,
            locations: RawLocations::default(),
            extended_ttl_beta: true,
            bytes_per_token: 4,
            min_tokens: Vec::new(),
            default_min_tokens: 1024,
            disabled_models: Vec::new(),
        }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub routing_header: String,
    pub default_cluster: String,
    pub cache: CacheConfig,
    pub usage: UsageConfig,
    /// Write the audit record into filter state for the access log.
    pub audit: bool,
}

/// Usage extraction, cost and usage metrics.
#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub enabled: bool,
    /// Configured prices first, then the built-in list (unless switched off).
    pub prices: Vec<Price>,
    /// Non-streaming responses are copied (bounded) to read their usage at the end.
    pub max_json_response_bytes: usize,
}

/// Prompt-cache injection settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Add the extended-TTL beta to `anthropic-beta` when an injected marker is 1h.
    pub extended_ttl_beta: bool,
    base: cache::Settings,
    /// Configured entries first, then [`DEFAULT_MIN_TOKENS`].
    min_tokens: Vec<(Pattern, u64)>,
    disabled_models: Vec<Pattern>,
}

impl CacheConfig {
    /// The settings for a request to `model`, or why it gets no marker.
    pub fn settings_for(&self, model: &str) -> Result<cache::Settings, Skip> {
        if !self.enabled || self.disabled_models.iter().any(|p| p.matches(model)) {
            return Err(Skip::Disabled);
        }
        let min_tokens = self
            .min_tokens
            .iter()
            .find(|(p, _)| p.matches(model))
            .map_or(self.base.min_tokens, |&(_, t)| t);
        Ok(cache::Settings {
            min_tokens,
            ..self.base
        })
    }
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
        cache: compile_cache(raw.cache)?,
        usage: compile_usage(raw.usage)?,
        audit: raw.audit.enabled,
    })
}

fn compile_rates(path: &str, r: &RawRates) -> Result<Rates, ConfigError> {
    let usd = |field: &str, v: f64| {
        cost::usd_per_mtok(v).ok_or_else(|| {
            error(
                &format!("{path}.{field}"),
                "must be a price in USD per million tokens, 0 or more",
            )
        })
    };
    Ok(Rates {
        input: usd("input", r.input)?,
        output: usd("output", r.output)?,
        cache_write_5m: usd("cache_write_5m", r.cache_write_5m)?,
        cache_write_1h: usd("cache_write_1h", r.cache_write_1h)?,
        cache_read: usd("cache_read", r.cache_read)?,
    })
}

fn compile_usage(raw: RawUsage) -> Result<UsageConfig, ConfigError> {
    let mut prices = Vec::new();
    for (i, p) in raw.prices.iter().enumerate() {
        let path = format!("usage.prices[{i}]");
        if crate::session::valid(&p.name).is_none() {
            return Err(error(
                &format!("{path}.name"),
                "must be a label of letters, digits, '-' or '_'",
            ));
        }
        let long_prompt = match &p.long_prompt {
            Some(l) => Some((
                l.above_tokens,
                compile_rates(&format!("{path}.long_prompt"), &l.rates)?,
            )),
            None => None,
        };
        let web_search = cost::usd_per_mtok(p.web_search_per_1k)
            .map(|micro_per_1k| micro_per_1k / 1000)
            .ok_or_else(|| error(&format!("{path}.web_search_per_1k"), "must be 0 or more"))?;
        prices.push(Price {
            name: p.name.clone(),
            model: pattern(&format!("{path}.model"), &p.model)?,
            rates: compile_rates(&path, &p.rates)?,
            long_prompt,
            web_search,
        });
    }
    if raw.builtin_prices {
        prices.extend(cost::list_prices());
    }
    Ok(UsageConfig {
        enabled: raw.enabled,
        prices,
        max_json_response_bytes: raw.max_json_response_bytes,
    })
}

fn pattern(path: &str, source: &str) -> Result<Pattern, ConfigError> {
    Pattern::new(source).ok_or_else(|| {
        error(
            path,
            "must be a model name or a glob with `*` (printable, no spaces or quotes)",
        )
    })
}

fn compile_cache(raw: RawCache) -> Result<CacheConfig, ConfigError> {
    if raw.bytes_per_token == 0 {
        return Err(error("cache.bytes_per_token", "must be at least 1"));
    }
    let mut min_tokens = Vec::new();
    for (i, m) in raw.min_tokens.iter().enumerate() {
        min_tokens.push((
            pattern(&format!("cache.min_tokens[{i}].model"), &m.model)?,
            m.tokens,
        ));
    }
    for &(p, t) in DEFAULT_MIN_TOKENS {
        min_tokens.push((pattern("cache.min_tokens", p)?, t));
    }
    let disabled_models = raw
        .disabled_models
        .iter()
        .enumerate()
        .map(|(i, p)| pattern(&format!("cache.disabled_models[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let l = raw.locations;
    Ok(CacheConfig {
        enabled: raw.enabled,
        extended_ttl_beta: raw.extended_ttl_beta,
        base: cache::Settings {
            ttl: match raw.ttl {
                TtlName::FiveMinutes => Ttl::FiveMinutes,
                TtlName::OneHour => Ttl::OneHour,
            },
            automatic: raw.mode == CacheMode::Automatic,
            locations: Locations {
                tools: l.tools,
                system: l.system,
                last_user: l.last_user,
                previous_user: l.previous_user,
            },
            min_tokens: raw.default_min_tokens,
            bytes_per_token: raw.bytes_per_token,
        },
        min_tokens,
        disabled_models,
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
            let s = c.cache.settings_for("claude-sonnet-4-5").unwrap();
            assert_eq!(s.ttl, Ttl::FiveMinutes);
            assert!(!s.automatic);
            assert_eq!(s.locations, Locations::ALL);
            assert!(c.cache.extended_ttl_beta);
        }
    }

    #[test]
    fn overrides_apply() {
        let c = parse(br#"{"default_cluster":"eu","routing_header":"x-route"}"#).unwrap();
        assert_eq!(c.default_cluster, "eu");
        assert_eq!(c.routing_header, "x-route");
    }

    #[test]
    fn cache_settings_per_model() {
        let c = parse(
            br#"{"cache":{"ttl":"1h","mode":"automatic","locations":{"tools":false},
                "min_tokens":[{"model":"claude-opus-4-8*","tokens":9}],
                "disabled_models":["claude-3-*"]}}"#,
        )
        .unwrap();
        let s = c.cache.settings_for("claude-opus-4-8").unwrap();
        assert_eq!((s.ttl, s.automatic, s.min_tokens), (Ttl::OneHour, true, 9));
        assert!(!s.locations.tools && s.locations.system);
        assert_eq!(
            c.cache.settings_for("claude-3-7-sonnet"),
            Err(Skip::Disabled)
        );
        let off = parse(br#"{"cache":{"enabled":false}}"#).unwrap();
        assert_eq!(
            off.cache.settings_for("claude-opus-4-8"),
            Err(Skip::Disabled)
        );
    }

    #[test]
    fn default_minimums_follow_the_model_family() {
        let c = parse(b"{}").unwrap();
        let min = |m: &str| c.cache.settings_for(m).unwrap().min_tokens;
        assert_eq!(min("claude-haiku-4-5-20251001"), 4096);
        assert_eq!(min("claude-opus-4-5"), 4096);
        assert_eq!(min("claude-opus-4-6"), 4096);
        assert_eq!(min("claude-opus-4-7"), 2048);
        assert_eq!(min("claude-opus-4-8"), 1024);
        assert_eq!(min("claude-opus-4-20250514"), 1024);
        assert_eq!(min("claude-sonnet-4-5-20250929"), 1024);
        assert_eq!(min("claude-sonnet-5"), 1024);
        assert_eq!(min("claude-sonnet-5-5"), 512);
        assert_eq!(min("claude-opus-5-5"), 512);
        assert_eq!(min("us.anthropic.claude-haiku-4-5-20251001-v1:0"), 4096);
        assert_eq!(min("some-vendor-model"), 1024);
    }

    #[test]
    fn prices_from_the_configuration_come_first() {
        let c = parse(
            br#"{"usage":{"prices":[{"name":"house-model","model":"claude-opus-4-8*","input":1,"output":2,
                "cache_write_5m":1.25,"cache_write_1h":2,"cache_read":0.1,"web_search_per_1k":5}]}}"#,
        )
        .unwrap();
        let p = cost::find(&c.usage.prices, "claude-opus-4-8").unwrap();
        assert_eq!(
            (p.name.as_str(), p.rates.input, p.web_search),
            ("house-model", 1_000_000, 5_000)
        );
        assert_eq!(
            cost::find(&c.usage.prices, "claude-haiku-4-5")
                .unwrap()
                .name,
            "claude-haiku-4-5"
        );
        let c = parse(br#"{"usage":{"builtin_prices":false}}"#).unwrap();
        assert!(cost::find(&c.usage.prices, "claude-haiku-4-5").is_none());
        let e = parse(br#"{"usage":{"prices":[{"name":"x","model":"m","input":-1,"output":2,"cache_write_5m":1,"cache_write_1h":2,"cache_read":0}]}}"#).unwrap_err();
        assert_eq!(e.path, "usage.prices[0].input");
        let e = parse(br#"{"usage":{"prices":[{"name":"x","model":"m","input":1,"output":2,"cache_write_5m":1,"cache_write_1h":2,"cache_read":0,"typo":1}]}}"#).unwrap_err();
        assert!(e.message.contains("unknown field `typo`"), "{e}");
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
        let e = parse(br#"{"cache":{"ttl":"10m"}}"#).unwrap_err();
        assert_eq!(e.path, "cache.ttl");
        let e = parse(br#"{"cache":{"locations":{"tool":true}}}"#).unwrap_err();
        assert_eq!(e.path, "cache.locations.tool");
        let e = parse(br#"{"cache":{"disabled_models":["ok","bad one"]}}"#).unwrap_err();
        assert_eq!(e.path, "cache.disabled_models[1]");
        let e = parse(br#"{"cache":{"bytes_per_token":0}}"#).unwrap_err();
        assert_eq!(e.path, "cache.bytes_per_token");
        assert!(parse(b"{").is_err());
        assert!(parse(b"[]").is_err());
    }
}
