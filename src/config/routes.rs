//! `routes`, `default_route`, `unknown_model`: model routing.

use super::usage::{RawPrice, compile_prices};
use super::{
    ConfigError, error, pattern, validate_cluster_name, validate_header_name, validate_label,
};
use crate::dialect::Dialect;
use crate::routing::{Auth, BedrockHost, Match, Route, Routes, UnknownModel};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum AuthName {
    Passthrough,
    XApiKey,
    Bearer,
    None,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum DialectName {
    Anthropic,
    Bedrock,
    BedrockMessages,
    Vertex,
    Foundry,
}

impl DialectName {
    fn dialect(self) -> Dialect {
        match self {
            DialectName::Anthropic => Dialect::Anthropic,
            DialectName::Bedrock => Dialect::Bedrock,
            DialectName::BedrockMessages => Dialect::BedrockMessages,
            DialectName::Vertex => Dialect::Vertex,
            DialectName::Foundry => Dialect::Foundry,
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum BedrockHostName {
    Mantle,
    Runtime,
}

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum UnknownModelName {
    #[default]
    Default,
    Reject,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IdentityOverride {
    Passthrough,
    Virtual,
    Jwt,
}

/// Who a route's callers are, when the route does not say: the configuration's `identity`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CallerIdentity {
    /// The gateway knows the caller (virtual key or token); the upstream key is the pool's.
    pub virtual_keys: bool,
    /// Verified tokens are accepted (virtual keys too).
    pub jwt: bool,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CacheModeName {
    Blocks,
    Automatic,
}

/// One pattern or a list of them.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Models {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    name: String,
    value: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    model: Option<Models>,
    header: Option<RawHeaderMatch>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    name: String,
    #[serde(rename = "match")]
    matches: Option<RawMatch>,
    /// Required, but for failover targets (which use their route's).
    cluster: Option<String>,
    model_rewrite: Option<String>,
    auth: Option<AuthName>,
    identity: Option<IdentityOverride>,
    key_pool: Option<String>,
    path_prefix: Option<String>,
    #[serde(default = "yes")]
    cache: bool,
    cache_mode: Option<CacheModeName>,
    #[serde(default = "yes")]
    count_tokens: bool,
    #[serde(default)]
    drop_anthropic_beta: bool,
    #[serde(default)]
    drop_betas: Vec<String>,
    #[serde(default)]
    reject_system_messages: bool,
    /// Anthropic's cache diagnostics on this route (default: on for the `anthropic` dialect
    /// with cache injection on).
    cache_diagnostics: Option<bool>,
    #[serde(default)]
    strip_query: bool,
    dialect: Option<DialectName>,
    #[serde(default)]
    models: BTreeMap<String, String>,
    project: Option<String>,
    region: Option<String>,
    bedrock_host: Option<BedrockHostName>,
    #[serde(default)]
    prices: Vec<RawPrice>,
    #[serde(default)]
    failover: Vec<RawRoute>,
}

impl Default for RawRoute {
    fn default() -> Self {
        RawRoute {
            name: super::DEFAULT_CLUSTER.to_owned(),
            matches: None,
            cluster: Some(super::DEFAULT_CLUSTER.to_owned()),
            model_rewrite: None,
            auth: None,
            identity: None,
            key_pool: None,
            path_prefix: None,
            cache: true,
            cache_mode: None,
            count_tokens: true,
            drop_anthropic_beta: false,
            drop_betas: Vec::new(),
            reject_system_messages: false,
            cache_diagnostics: None,
            strip_query: false,
            dialect: None,
            models: BTreeMap::new(),
            project: None,
            region: None,
            bedrock_host: None,
            prices: Vec::new(),
            failover: Vec::new(),
        }
    }
}

fn compile_match(path: &str, raw: &RawMatch) -> Result<Match, ConfigError> {
    let sources = match &raw.model {
        None => Vec::new(),
        Some(Models::One(p)) => vec![p.clone()],
        Some(Models::Many(ps)) => ps.clone(),
    };
    let models = sources
        .iter()
        .enumerate()
        .map(|(i, p)| pattern(&format!("{path}.model[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let header = match &raw.header {
        None => None,
        Some(h) => {
            validate_header_name(&format!("{path}.header.name"), &h.name)?;
            Some((
                h.name.clone(),
                pattern(&format!("{path}.header.value"), &h.value)?,
            ))
        }
    };
    Ok(Match { models, header })
}

/// Printable ASCII without spaces, quotes or backslashes, bounded.
fn token(path: &str, value: &str, what: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(error(path, format!("must be {what}")))
    }
}

/// What a target inherits from its route: the cluster and whose credential it is.
struct Parent<'a> {
    cluster: &'a str,
    identity: CallerIdentity,
}

fn compile_route(
    path: &str,
    raw: &RawRoute,
    pools: &[String],
    by_default: CallerIdentity,
    parent: Option<&Parent>,
) -> Result<Route, ConfigError> {
    if let Some(pool) = &raw.key_pool {
        if !pools.contains(pool) {
            return Err(error(
                &format!("{path}.key_pool"),
                format!("no key pool named `{pool}` in key_pools"),
            ));
        }
    }
    let dialect = raw.dialect.map_or(Dialect::Anthropic, DialectName::dialect);
    // Clouds get Envoy's credential, never the client's, unless the route says otherwise.
    let auth = match raw.auth {
        Some(AuthName::Passthrough) => Auth::Passthrough,
        Some(AuthName::XApiKey) => Auth::XApiKey,
        Some(AuthName::Bearer) => Auth::Bearer,
        Some(AuthName::None) => Auth::None,
        None if dialect.envoy_credentials() && raw.key_pool.is_none() => Auth::None,
        None => Auth::Passthrough,
    };
    let cluster = match (parent, &raw.cluster) {
        (Some(_), Some(_)) => {
            return Err(error(
                &format!("{path}.cluster"),
                "a failover target uses its route's cluster (Envoy picks the target's endpoints)",
            ));
        }
        (Some(p), None) => p.cluster.to_owned(),
        (None, Some(c)) => c.clone(),
        (None, None) => return Err(error(&format!("{path}.cluster"), "is required")),
    };
    if parent.is_some() {
        for (set, field) in [
            (raw.matches.is_some(), "match"),
            (raw.identity.is_some(), "identity"),
            (!raw.failover.is_empty(), "failover"),
        ] {
            if set {
                return Err(error(
                    &format!("{path}.{field}"),
                    "is the route's, not a failover target's",
                ));
            }
        }
    }
    let identity = match (parent, raw.identity) {
        (Some(p), _) => p.identity,
        (None, None) => by_default,
        (None, Some(IdentityOverride::Passthrough)) => CallerIdentity::default(),
        (None, Some(IdentityOverride::Virtual)) => CallerIdentity {
            virtual_keys: true,
            jwt: false,
        },
        (None, Some(IdentityOverride::Jwt)) => CallerIdentity {
            virtual_keys: true,
            jwt: true,
        },
    };
    let virtual_keys = identity.virtual_keys;
    // A pool's keys must never be handed to unauthenticated clients, and a virtual key is
    // never forwarded, so one needs the other (or Envoy supplies the credential).
    match (virtual_keys, &raw.key_pool) {
        (true, None) if auth != Auth::None => {
            return Err(error(
                &format!("{path}.key_pool"),
                "a route with virtual identity needs a key pool (the client's key is not \
                 forwarded), or auth \"none\" when Envoy adds the vendor's credential",
            ));
        }
        (false, Some(_)) => {
            return Err(error(
                &format!("{path}.identity"),
                "a route with a key pool needs virtual identity (set identity to \"virtual\")",
            ));
        }
        _ => {}
    }
    if raw.key_pool.is_some() && matches!(auth, Auth::Passthrough | Auth::None) {
        return Err(error(
            &format!("{path}.auth"),
            "a key pool's keys need a credential style: \"x-api-key\" or \"bearer\"",
        ));
    }
    validate_label(&format!("{path}.name"), &raw.name)?;
    validate_cluster_name(&format!("{path}.cluster"), &cluster)?;
    if let Some(m) = &raw.model_rewrite {
        token(&format!("{path}.model_rewrite"), m, "a model id")?;
        if !raw.models.is_empty() {
            return Err(error(
                &format!("{path}.model_rewrite"),
                "use either model_rewrite (one model) or models (a map), not both",
            ));
        }
    }
    let mut models = Vec::new();
    for (from, to) in &raw.models {
        let at = format!("{path}.models.{from}");
        token(&at, to, "a model id")?;
        models.push((pattern(&at, from)?, to.clone()));
    }
    if let Some(p) = &raw.path_prefix {
        token(&format!("{path}.path_prefix"), p, "a path")?;
        if !p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#']) {
            return Err(error(
                &format!("{path}.path_prefix"),
                "must start with '/', not end with '/', and have no query",
            ));
        }
    }
    for (i, b) in raw.drop_betas.iter().enumerate() {
        token(&format!("{path}.drop_betas[{i}]"), b, "a beta name")?;
        if b.contains(',') {
            return Err(error(
                &format!("{path}.drop_betas[{i}]"),
                "must be one beta name",
            ));
        }
    }
    match (dialect, &raw.project) {
        (Dialect::Vertex, None) => {
            return Err(error(
                &format!("{path}.project"),
                "a vertex route needs its Google Cloud project",
            ));
        }
        (Dialect::Vertex, Some(_)) => {}
        (_, Some(_)) => {
            return Err(error(
                &format!("{path}.project"),
                "only for dialect \"vertex\"",
            ));
        }
        (_, None) => {}
    }
    if raw.region.is_some() && dialect != Dialect::Vertex {
        return Err(error(
            &format!("{path}.region"),
            "only for dialect \"vertex\"",
        ));
    }
    for (field, value) in [("project", &raw.project), ("region", &raw.region)] {
        if let Some(v) = value {
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(error(
                    &format!("{path}.{field}"),
                    "must be letters, digits, '-' or '_'",
                ));
            }
        }
    }
    if raw.bedrock_host.is_some() && dialect != Dialect::BedrockMessages {
        return Err(error(
            &format!("{path}.bedrock_host"),
            "only for dialect \"bedrock-messages\"",
        ));
    }
    // The field is the Claude API's: a cloud's dialect does not take it, and a failover
    // route's targets each present the request their own way.
    let diagnostics_ok =
        dialect == Dialect::Anthropic && raw.failover.is_empty() && parent.is_none();
    if raw.cache_diagnostics == Some(true) && !diagnostics_ok {
        return Err(error(
            &format!("{path}.cache_diagnostics"),
            "only for dialect \"anthropic\" routes without failover targets",
        ));
    }
    let mut route = Route {
        name: raw.name.clone(),
        cluster,
        model_rewrite: raw.model_rewrite.clone(),
        auth,
        virtual_keys,
        jwt: identity.jwt,
        key_pool: raw.key_pool.clone(),
        path_prefix: raw.path_prefix.clone(),
        cache: raw.cache,
        cache_automatic: raw.cache_mode.map(|m| m == CacheModeName::Automatic),
        count_tokens: raw.count_tokens,
        drop_anthropic_beta: raw.drop_anthropic_beta,
        drop_betas: raw.drop_betas.clone(),
        reject_system_messages: raw.reject_system_messages,
        // By default where markers go too: a vendor that takes neither turns the cache off.
        cache_diagnostics: raw.cache_diagnostics.unwrap_or(diagnostics_ok && raw.cache),
        strip_query: raw.strip_query,
        dialect,
        models,
        project: raw.project.clone(),
        region: raw.region.clone(),
        bedrock_host: match raw.bedrock_host {
            Some(BedrockHostName::Runtime) => BedrockHost::Runtime,
            _ => BedrockHost::Mantle,
        },
        prices: compile_prices(&format!("{path}.prices"), &raw.prices)?,
        failover: Vec::new(),
    };
    let me = Parent {
        cluster: &route.cluster,
        identity,
    };
    let mut failover = Vec::with_capacity(raw.failover.len());
    for (i, t) in raw.failover.iter().enumerate() {
        failover.push(compile_route(
            &format!("{path}.failover[{i}]"),
            t,
            pools,
            by_default,
            Some(&me),
        )?);
    }
    // Envoy retries reuse the request's headers: once a target without the client's credential
    // (a cloud's, from Envoy) has run, the client's is gone for the targets after it.
    let mut client_key_gone = route.auth == Auth::None;
    for (i, t) in failover.iter().enumerate() {
        let client_key = t.key_pool.is_none() && t.auth != Auth::None;
        if client_key && client_key_gone {
            return Err(error(
                &format!("{path}.failover[{i}].auth"),
                "after a target whose credential comes from Envoy, a target needs a key pool \
                 or auth \"none\" (the client's own credential is no longer in the request)",
            ));
        }
        client_key_gone |= t.auth == Auth::None;
    }
    route.failover = failover;
    Ok(route)
}

pub(super) fn compile_routes(
    routes: &[RawRoute],
    default: &RawRoute,
    unknown: UnknownModelName,
    pools: &[String],
    by_default: CallerIdentity,
) -> Result<Routes, ConfigError> {
    let mut compiled = Vec::with_capacity(routes.len());
    for (i, raw) in routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let m = compile_match(
            &format!("{path}.match"),
            raw.matches.as_ref().unwrap_or(&RawMatch::default()),
        )?;
        compiled.push((m, compile_route(&path, raw, pools, by_default, None)?));
    }
    if default.matches.is_some() {
        return Err(error(
            "default_route.match",
            "the default route matches everything else",
        ));
    }
    let default = compile_route("default_route", default, pools, by_default, None)?;
    // Names label metrics and records and name failover targets in Envoy's metadata: unique.
    let mut names: Vec<&str> = Vec::new();
    for r in compiled.iter().map(|(_, r)| r).chain([&default]) {
        names.push(&r.name);
        names.extend(r.failover.iter().map(|t| t.name.as_str()));
    }
    for (i, name) in names.iter().enumerate() {
        if names.iter().skip(i + 1).any(|n| n == name) {
            return Err(error("routes", format!("two routes are named `{name}`")));
        }
    }
    Ok(Routes {
        routes: compiled,
        default,
        unknown_model: match unknown {
            UnknownModelName::Default => UnknownModel::Default,
            UnknownModelName::Reject => UnknownModel::Reject,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use crate::routing::{Auth, Selection, UnknownModel};

    #[test]
    fn routes_compile_with_their_defaults() {
        let c = parse(
            br#"{"routes":[{"name":"haiku","match":{"model":["claude-haiku-*","claude-3-5-haiku*"],
                 "header":{"name":"x-claude-code-request-class","value":"auxiliary"}},
                 "cluster":"vendor_b","model_rewrite":"glm-4.6","auth":"bearer","path_prefix":"/api/anthropic",
                 "cache":false,"count_tokens":false,"drop_betas":["prompt-caching-scope-2026-01-05"],
                 "reject_system_messages":true,"strip_query":true}],
                 "unknown_model":"reject"}"#,
        )
        .unwrap();
        let (m, r) = &c.routes.routes[0];
        assert_eq!(m.models.len(), 2);
        assert_eq!(r.auth, Auth::Bearer);
        assert_eq!(r.path_prefix.as_deref(), Some("/api/anthropic"));
        assert!(!r.cache && !r.count_tokens && r.reject_system_messages && r.strip_query);
        assert_eq!(c.routes.unknown_model, UnknownModel::Reject);
        assert_eq!(c.routes.default.name, "anthropic");
        assert_eq!(c.routes.default.cluster, "anthropic");
        let mut class = |_: &str| Some("auxiliary".to_owned());
        assert!(
            matches!(c.routes.select(Some("claude-haiku-4-5"), &mut class), Selection::Route(r) if r.name == "haiku")
        );
    }

    #[test]
    fn route_errors_name_the_problem() {
        for (doc, path, says) in [
            (
                r#"{"routes":[{"name":"a","cluster":"c","clustr":"x"}]}"#,
                "routes[0].clustr",
                "unknown field `clustr`",
            ),
            (
                r#"{"routes":[{"name":"a","cluster":"c","match":{"model":"bad model"}}]}"#,
                "routes[0].match.model[0]",
                "glob",
            ),
            (
                r#"{"routes":[{"name":"a","cluster":"c"},{"name":"a","cluster":"d"}]}"#,
                "routes",
                "two routes are named `a`",
            ),
            (
                r#"{"routes":[{"name":"a","cluster":"c","key_pool":"team"}]}"#,
                "routes[0].key_pool",
                "no key pool named `team`",
            ),
            (
                r#"{"key_pools":{"team":{"keys":[{"alias":"k","env":"PATH"}]}},"routes":[{"name":"a","cluster":"c","key_pool":"team","auth":"x-api-key"}]}"#,
                "routes[0].identity",
                "needs virtual identity",
            ),
            (
                r#"{"identity":"virtual"}"#,
                "default_route.key_pool",
                "needs a key pool",
            ),
            (
                r#"{"identity":"virtual","key_pools":{"team":{"keys":[{"alias":"k","env":"PATH"}]}},"default_route":{"name":"d","cluster":"c","key_pool":"team"}}"#,
                "default_route.auth",
                "credential style",
            ),
            (
                r#"{"key_pools":{"team":{"keys":[{"alias":"k","env":"NO_SUCH_VARIABLE_XYZ"}]}}}"#,
                "key_pools.team.keys[0].env",
                "NO_SUCH_VARIABLE_XYZ is not set",
            ),
            (
                r#"{"routes":[{"name":"a","cluster":"c","path_prefix":"anthropic/"}]}"#,
                "routes[0].path_prefix",
                "start with '/'",
            ),
            (
                r#"{"routes":[{"name":"a","cluster":"c","auth":"basic"}]}"#,
                "routes[0].auth",
                "unknown variant",
            ),
            (
                r#"{"default_route":{"name":"d","cluster":"c","match":{"model":"x"}}}"#,
                "default_route.match",
                "matches everything",
            ),
            (
                r#"{"unknown_model":"drop"}"#,
                "unknown_model",
                "unknown variant",
            ),
        ] {
            let e = parse(doc.as_bytes()).unwrap_err();
            assert_eq!(e.path, path, "{doc}: {e}");
            assert!(e.message.contains(says), "{doc}: {e}");
        }
    }
}
