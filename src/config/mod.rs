//! Plugin configuration: the JSON document Envoy hands to `on_configure`, deserialized with
//! declared defaults and `deny_unknown_fields`, then validated into the runtime [`Config`].
//! Errors name the JSON path and what is wrong; they never echo values that could be secrets.

mod cache;
mod dialects;
mod keys;
mod routes;
mod secrets;
mod sessions;
mod tools;
mod usage;

pub use cache::{CacheConfig, DEFAULT_MIN_TOKENS};
pub use keys::Budget;
pub use usage::UsageConfig;

use crate::dialect::{Dialect, Policies};
use crate::keys::Consumer;
use crate::keys::jwt::Jwt;
use crate::keys::pool::Pool;
use crate::pattern::Pattern;
use crate::routing::Routes;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Name of the request header Envoy's route reads (`cluster_header`) to pick the upstream cluster.
pub const DEFAULT_ROUTING_HEADER: &str = "x-claude-gateway-cluster";
/// The cluster (and name) of the default route.
pub const DEFAULT_CLUSTER: &str = "anthropic";

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    enabled: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawGlobalLimits {
    enabled: bool,
    cluster: String,
    domain: String,
    probe_seconds: u64,
    timeout_ms: u64,
}

impl Default for RawGlobalLimits {
    fn default() -> Self {
        RawGlobalLimits {
            enabled: false,
            cluster: "ratelimit".to_owned(),
            domain: "claude-gateway".to_owned(),
            probe_seconds: 10,
            timeout_ms: 1000,
        }
    }
}

/// Envoy's global rate limiting (limits across replicas): the filter names the request's
/// consumer and windows and its usage for the bootstrap's descriptors, and probes the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalLimits {
    /// The rate-limit service's cluster (for the probe) and domain.
    pub cluster: String,
    pub domain: String,
    /// How often the service is probed (0: never), and how long a probe may take.
    pub probe_seconds: u64,
    pub timeout_ms: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    routing_header: String,
    hold_headers: bool,
    routes: Vec<routes::RawRoute>,
    default_route: routes::RawRoute,
    unknown_model: routes::UnknownModelName,
    identity: keys::IdentityName,
    consumers: Vec<keys::RawConsumer>,
    jwt: Option<keys::RawJwt>,
    budgets: BTreeMap<String, keys::RawBudget>,
    key_pools: BTreeMap<String, keys::RawPool>,
    cache: cache::RawCache,
    usage: usage::RawUsage,
    audit: RawAudit,
    dialects: BTreeMap<String, dialects::RawPolicy>,
    global_limits: RawGlobalLimits,
    secrets: secrets::RawSecrets,
    tools: tools::RawTools,
    sessions: sessions::RawSessions,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            routing_header: DEFAULT_ROUTING_HEADER.to_owned(),
            hold_headers: true,
            routes: Vec::new(),
            default_route: routes::RawRoute::default(),
            unknown_model: routes::UnknownModelName::default(),
            identity: keys::IdentityName::default(),
            consumers: Vec::new(),
            jwt: None,
            budgets: BTreeMap::new(),
            key_pools: BTreeMap::new(),
            cache: cache::RawCache::default(),
            usage: usage::RawUsage::default(),
            audit: RawAudit::default(),
            dialects: BTreeMap::new(),
            global_limits: RawGlobalLimits::default(),
            secrets: secrets::RawSecrets::default(),
            tools: tools::RawTools::default(),
            sessions: sessions::RawSessions::default(),
        }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub routing_header: String,
    /// Hold Messages request headers until the body is read (needs the wasm filter's
    /// `allow_on_headers_stop_iteration`). Without it the body is only observed.
    pub hold_headers: bool,
    pub routes: Routes,
    /// Upstream key pools, with their keys (redacted in `Debug`).
    pub pools: Vec<Pool>,
    /// Clients known by their virtual keys' digests.
    pub consumers: Vec<Consumer>,
    /// Consumers from verified tokens' claims (routes with identity `jwt`).
    pub jwt: Option<Jwt>,
    pub budgets: Vec<Budget>,
    pub cache: CacheConfig,
    pub usage: UsageConfig,
    /// Write the audit record into filter state for the access log.
    pub audit: bool,
    /// What each vendor dialect accepts (betas, body fields).
    pub policies: Policies,
    /// Limits across replicas through Envoy's global rate limiting; `None`: per replica only.
    pub global_limits: Option<GlobalLimits>,
    /// The secret detector (`None`: no rule on).
    pub secrets: Option<crate::secrets::Detector>,
    /// Tool-call inspection (audit fields, tool and risk counters).
    pub tools: crate::tools::ToolConfig,
    /// Per-session totals, the session endpoint, cache-miss insight.
    pub sessions: sessions::Sessions,
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

/// An amount of US dollars. Envoy's YAML loader hands non-integer numbers of a Struct
/// configuration over as strings (`3.75` arrives as `"3.75"`), so both are read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Amount(f64);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Amount(n)),
            Raw::Text(s) => s
                .trim()
                .parse()
                .map(Amount)
                .map_err(|_| serde::de::Error::custom("invalid type: expected a number")),
        }
    }
}

/// Parses and validates the plugin configuration, reading upstream keys from the process
/// environment. An empty document means all defaults.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    parse_with_env(bytes, &|name| std::env::var(name).ok())
}

/// [`parse`] with the environment given (tests).
pub fn parse_with_env(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let named = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        let path = if path.is_empty() { "." } else { &path };
        error(path, without_value(&e.into_inner().to_string()))
    };
    // YAML in the bootstrap (`google.protobuf.Struct`, serialized by Envoy) is read as the JSON
    // it stands for: one deserializer for both keeps the module small.
    let from_struct;
    let json = match first {
        None | Some(b'{') => bytes,
        Some(_) => match crate::proto::struct_to_json(bytes) {
            Some(doc) => {
                from_struct = doc.to_string().into_bytes();
                &from_struct
            }
            None => {
                return Err(error(
                    ".",
                    "must be a JSON object (a string) or a google.protobuf.Struct",
                ));
            }
        },
    };
    let raw: RawConfig = if first.is_none() {
        RawConfig::default()
    } else {
        let de = &mut serde_json::Deserializer::from_slice(json);
        serde_path_to_error::deserialize(de).map_err(named)?
    };
    validate_header_name("routing_header", &raw.routing_header)?;
    let pools = keys::compile_pools(&raw.key_pools, env)?;
    let pool_names: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();
    let routes = routes::compile_routes(
        &raw.routes,
        &raw.default_route,
        raw.unknown_model,
        &pool_names,
        routes::CallerIdentity {
            virtual_keys: raw.identity != keys::IdentityName::Passthrough,
            jwt: raw.identity == keys::IdentityName::Jwt,
        },
    )?;
    let route_names: Vec<String> = routes.all().map(|r| r.name.clone()).collect();
    let jwt = match (&raw.jwt, routes.all().any(|r| r.jwt)) {
        (Some(j), true) => Some(keys::compile_jwt(j, &route_names)?),
        (None, true) => {
            return Err(error(
                "jwt",
                "is required when a route's identity is \"jwt\" (which claims name the caller, \
                 and the group rules)",
            ));
        }
        (Some(_), false) => {
            return Err(error("jwt", "no route has identity \"jwt\""));
        }
        (None, false) => None,
    };
    let config = Config {
        routing_header: raw.routing_header,
        hold_headers: raw.hold_headers,
        consumers: keys::compile_consumers(&raw.consumers, &route_names)?,
        jwt,
        budgets: keys::compile_budgets(&raw.budgets)?,
        routes,
        pools,
        cache: cache::compile_cache(raw.cache)?,
        usage: usage::compile_usage(raw.usage)?,
        audit: raw.audit.enabled.unwrap_or(true),
        policies: dialects::compile_policies(&raw.dialects)?,
        global_limits: compile_global(raw.global_limits)?,
        secrets: secrets::compile_secrets(&raw.secrets, env)?,
        tools: tools::compile_tools(raw.tools)?,
        sessions: sessions::compile_sessions(raw.sessions)?,
    };
    check_dialects(&config)?;
    if !config.hold_headers {
        check_needs_no_body(&config)?;
    }
    Ok(config)
}

fn compile_global(raw: RawGlobalLimits) -> Result<Option<GlobalLimits>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    validate_cluster_name("global_limits.cluster", &raw.cluster)?;
    validate_label("global_limits.domain", &raw.domain)?;
    if !(1..=60_000).contains(&raw.timeout_ms) {
        return Err(error("global_limits.timeout_ms", "must be 1 to 60000"));
    }
    Ok(Some(GlobalLimits {
        cluster: raw.cluster,
        domain: raw.domain,
        probe_seconds: raw.probe_seconds,
        timeout_ms: raw.timeout_ms,
    }))
}

/// A vendor that does not take a top-level `cache_control` cannot get automatic caching.
fn check_dialects(c: &Config) -> Result<(), ConfigError> {
    let (routes, default) = (&c.routes.routes, &c.routes.default);
    let all = routes
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (format!("routes[{i}]"), r))
        .chain([("default_route".to_owned(), default)]);
    for (path, route) in all {
        let targets = std::iter::once((path.clone(), route)).chain(
            route
                .failover
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("{path}.failover[{i}]"), t)),
        );
        for (at, r) in targets {
            let automatic = r.cache && route.cache_automatic.unwrap_or(c.cache.automatic());
            let fields = c.policies.of(r.dialect).fields.as_ref();
            if automatic && fields.is_some_and(|f| !f.iter().any(|f| f == "cache_control")) {
                return Err(error(
                    &format!("{at}.cache_mode"),
                    format!(
                        "automatic caching adds a top-level cache_control, which dialect {} \
                         does not accept (dialects.{}.fields): use \"blocks\"",
                        r.dialect.as_str(),
                        r.dialect.as_str()
                    ),
                ));
            }
            if !c.hold_headers && r.dialect != Dialect::Anthropic {
                return Err(error(
                    &format!("{at}.dialect"),
                    "a vendor dialect rewrites the body, which needs hold_headers",
                ));
            }
        }
    }
    Ok(())
}

/// Without held headers the request has gone upstream before its body is read: nothing may
/// depend on the body (the model, the cache markers). Refused rather than silently ignored.
fn check_needs_no_body(c: &Config) -> Result<(), ConfigError> {
    const WHY: &str = "needs the request body before the request is sent, which needs \
                       hold_headers (and allow_on_headers_stop_iteration in Envoy)";
    if c.cache.enabled {
        return Err(error("cache.enabled", format!("cache injection {WHY}")));
    }
    let rules = c.secrets.iter().flat_map(|d| &d.rules);
    if rules
        .into_iter()
        .any(|r| r.action != crate::secrets::Action::Audit)
    {
        return Err(error(
            "secrets.actions",
            format!("blocking or redacting secrets {WHY}"),
        ));
    }
    if c.routes.unknown_model == crate::routing::UnknownModel::Reject {
        return Err(error("unknown_model", format!("\"reject\" {WHY}")));
    }
    for (i, (m, r)) in c.routes.routes.iter().enumerate() {
        if !m.models.is_empty() {
            return Err(error(
                &format!("routes[{i}].match.model"),
                format!("matching on the model {WHY}"),
            ));
        }
        if r.model_rewrite.is_some() || r.reject_system_messages {
            return Err(error(
                &format!("routes[{i}]"),
                format!("model_rewrite and reject_system_messages {WHY}"),
            ));
        }
    }
    let d = &c.routes.default;
    if d.model_rewrite.is_some() || d.reject_system_messages {
        return Err(error(
            "default_route",
            format!("model_rewrite and reject_system_messages {WHY}"),
        ));
    }
    for (i, consumer) in c.consumers.iter().enumerate() {
        if !consumer.models.is_empty() {
            return Err(error(
                &format!("consumers[{i}].models"),
                format!("a model restriction {WHY}"),
            ));
        }
    }
    Ok(())
}

/// serde's message without the offending value: `invalid type: string "sk-ant-…", expected
/// u64` would put a key pasted into the wrong field into Envoy's log. Field names stay (an
/// unknown field is a typo worth naming); the path already says where the value is.
fn without_value(message: &str) -> String {
    for kind in ["invalid type", "invalid value", "unknown variant"] {
        if message.starts_with(kind) {
            // The value comes before the last `, expected` (it may contain that text itself).
            if let Some(i) = message.rfind(", expected ") {
                return format!("{kind}{}", message.get(i..).unwrap_or_default());
            }
            return format!("{kind} (value not shown)");
        }
    }
    message.to_owned()
}

fn pattern(path: &str, source: &str) -> Result<Pattern, ConfigError> {
    Pattern::new(source).ok_or_else(|| {
        error(
            path,
            "must be a model name or a glob with `*` (printable, no spaces or quotes)",
        )
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

/// An environment variable's name. A key pasted here by mistake (keys contain `-`) is refused
/// without being echoed, instead of being named in "variable … is not set".
fn validate_env_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let valid = name.len() <= 128
        && name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(error(
            path,
            "must be the name of an environment variable (letters, digits, '_'), not a key",
        ))
    }
}

/// Names that become metric labels or log fields: letters, digits, `-` and `_`.
fn validate_label(path: &str, name: &str) -> Result<(), ConfigError> {
    if crate::session::valid(name) == Some(name) {
        Ok(())
    } else {
        Err(error(
            path,
            "must be letters, digits, '-' or '_' (at most 128)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Locations, Skip, Ttl};
    use crate::cost;

    #[test]
    fn empty_config_means_defaults() {
        for doc in ["", "  \n", "{}"] {
            let c = parse(doc.as_bytes()).unwrap();
            assert_eq!(c.routes.default.cluster, "anthropic");
            assert_eq!(c.routing_header, "x-claude-gateway-cluster");
            let s = c
                .cache
                .settings_for("claude-sonnet-4-5", &c.routes.default)
                .unwrap();
            assert_eq!(s.ttl, Ttl::FiveMinutes);
            assert!(!s.automatic);
            assert_eq!(s.locations, Locations::ALL);
            assert!(c.cache.extended_ttl_beta);
        }
    }

    /// A Struct as Envoy builds it from YAML: integers are numbers, decimals are strings.
    fn yaml_struct(json: serde_json::Value) -> Vec<u8> {
        use prost::Message;
        use prost_types::value::Kind;
        fn to(v: &serde_json::Value) -> prost_types::Value {
            let kind = match v {
                serde_json::Value::Null => Kind::NullValue(0),
                serde_json::Value::Bool(b) => Kind::BoolValue(*b),
                serde_json::Value::Number(n) if n.is_i64() => {
                    Kind::NumberValue(n.as_f64().unwrap())
                }
                serde_json::Value::Number(n) => Kind::StringValue(n.to_string()),
                serde_json::Value::String(s) => Kind::StringValue(s.clone()),
                serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                    values: a.iter().map(to).collect(),
                }),
                serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
                    fields: o.iter().map(|(k, v)| (k.clone(), to(v))).collect(),
                }),
            };
            prost_types::Value { kind: Some(kind) }
        }
        match to(&json).kind {
            Some(Kind::StructValue(s)) => s.encode_to_vec(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_yaml_struct_configuration_reads_like_json() {
        let doc = serde_json::json!({
            "routes": [{"name": "haiku", "match": {"model": "claude-haiku-*"}, "cluster": "cheap"}],
            "key_pools": {"p": {"keys": [{"alias": "k1", "env": "PATH"}], "cooldown_seconds": 45}},
            "budgets": {"ci": {"daily_usd": 20.5, "monthly_usd": 300}},
            "usage": {"prices": [{"name": "x", "model": "x-*", "input": 3.75, "output": 15,
                                  "cache_write_5m": 4.6875, "cache_write_1h": 7.5, "cache_read": 0.375}]},
        });
        let from_struct = parse(&yaml_struct(doc.clone())).unwrap();
        let from_json = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(format!("{from_struct:?}"), format!("{from_json:?}"));
        assert_eq!(from_struct.budgets[0].daily, Some(20_500_000));
        assert_eq!(from_struct.routes.routes[0].1.cluster, "cheap");
        // Errors name the path in a Struct as in JSON.
        let bad = yaml_struct(serde_json::json!({"cache": {"ttl": "2h"}}));
        assert_eq!(parse(&bad).unwrap_err().path, "cache.ttl");
        let bad = yaml_struct(serde_json::json!({"budgets": {"ci": {"daily_usd": "lots"}}}));
        assert_eq!(parse(&bad).unwrap_err().path, "budgets.ci.daily_usd");
        assert_eq!(parse(b"\xff\x01").unwrap_err().path, ".");
    }

    #[test]
    fn overrides_apply() {
        let c =
            parse(br#"{"default_route":{"name":"eu","cluster":"eu"},"routing_header":"x-route"}"#)
                .unwrap();
        assert_eq!(c.routes.default.cluster, "eu");
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
        let d = &c.routes.default;
        let s = c.cache.settings_for("claude-opus-4-8", d).unwrap();
        assert_eq!((s.ttl, s.automatic, s.min_tokens), (Ttl::OneHour, true, 9));
        assert!(!s.locations.tools && s.locations.system);
        assert_eq!(
            c.cache.settings_for("claude-3-7-sonnet", d),
            Err(Skip::Disabled)
        );
        let off = parse(br#"{"cache":{"enabled":false}}"#).unwrap();
        let d = &off.routes.default;
        assert_eq!(
            off.cache.settings_for("claude-opus-4-8", d),
            Err(Skip::Disabled)
        );
        let route_off =
            parse(br#"{"default_route":{"name":"d","cluster":"c","cache":false}}"#).unwrap();
        let d = &route_off.routes.default;
        assert_eq!(
            route_off.cache.settings_for("claude-opus-4-8", d),
            Err(Skip::Disabled)
        );
        let auto =
            parse(br#"{"default_route":{"name":"d","cluster":"c","cache_mode":"automatic"}}"#)
                .unwrap();
        assert!(
            auto.cache
                .settings_for("claude-opus-4-8", &auto.routes.default)
                .unwrap()
                .automatic
        );
    }

    #[test]
    fn default_minimums_follow_the_model_family() {
        let c = parse(b"{}").unwrap();
        let min = |m: &str| {
            c.cache
                .settings_for(m, &c.routes.default)
                .unwrap()
                .min_tokens
        };
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
    fn without_held_headers_nothing_may_need_the_body() {
        let ok = parse(br#"{"hold_headers":false,"cache":{"enabled":false}}"#).unwrap();
        assert!(!ok.hold_headers);
        assert!(parse(b"{}").unwrap().hold_headers);
        let e = parse(br#"{"hold_headers":false}"#).unwrap_err();
        assert_eq!(e.path, "cache.enabled");
        let off = r#""hold_headers":false,"cache":{"enabled":false}"#;
        for (doc, path) in [
            (r#""unknown_model":"reject""#, "unknown_model"),
            (
                r#""routes":[{"name":"a","cluster":"a","match":{"model":"claude-*"}}]"#,
                "routes[0].match.model",
            ),
            (
                r#""routes":[{"name":"a","cluster":"a","match":{"header":{"name":"x","value":"y"}},"model_rewrite":"m"}]"#,
                "routes[0]",
            ),
            (
                r#""default_route":{"name":"d","cluster":"d","reject_system_messages":true}"#,
                "default_route",
            ),
            (
                r#""consumers":[{"id":"c","key_sha256":["0000000000000000000000000000000000000000000000000000000000000000"],"models":["claude-*"]}]"#,
                "consumers[0].models",
            ),
        ] {
            let e = parse(format!("{{{off},{doc}}}").as_bytes()).unwrap_err();
            assert_eq!(e.path, path, "{doc}: {e}");
        }
        let header_route =
            r#""routes":[{"name":"a","cluster":"a","match":{"header":{"name":"x","value":"y"}}}]"#;
        assert!(parse(format!("{{{off},{header_route}}}").as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_the_path() {
        let e = parse(br#"{"default_clustr":"x"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `default_clustr`"), "{e}");
        let e = parse(br#"{"default_route":{"name":"a","cluster":7}}"#).unwrap_err();
        assert_eq!(e.path, "default_route.cluster");
        let e = parse(br#"{"routing_header":"X Bad"}"#).unwrap_err();
        assert_eq!(e.path, "routing_header");
        let e = parse(br#"{"default_route":{"name":"a","cluster":""}}"#).unwrap_err();
        assert_eq!(e.path, "default_route.cluster");
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
        let e = parse(br#"{"":1}"#).unwrap_err();
        assert_eq!(e.path, ".");
    }

    #[test]
    fn errors_never_echo_a_value() {
        // A key pasted where a number, a name or an enum goes must not reach Envoy's log.
        let key = "sk-ant-api03-pasted-by-mistake";
        for doc in [
            format!(r#"{{"budgets":{{"x":{{"daily_usd":"{key}"}}}}}}"#),
            format!(r#"{{"default_route":{{"name":"d","cluster":"c","auth":"{key}"}}}}"#),
            format!(r#"{{"cache":{{"ttl":"{key}, expected a joke"}}}}"#),
            format!(r#"{{"key_pools":{{"p":{{"keys":[{{"alias":"k","env":"{key}"}}]}}}}}}"#),
            format!(r#"{{"usage":{{"max_json_response_bytes":"{key}"}}}}"#),
            format!(r#"{{"consumers":[{{"id":"a","key_sha256":["{key}"]}}]}}"#),
        ] {
            let e = parse_with_env(doc.as_bytes(), &|_| Some("secret".into())).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("pasted"), "{shown}");
        }
        let e = parse(br#"{"cache":{"ttl":"10m"}}"#).unwrap_err();
        assert!(
            e.message
                .starts_with("unknown variant, expected `5m` or `1h`"),
            "{e}"
        );
        let e = parse(br#"{"usage":{"enabled":"yes"}}"#).unwrap_err();
        assert!(
            e.message.starts_with("invalid type, expected a boolean"),
            "{e}"
        );
    }
}
