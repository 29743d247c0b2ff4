//! `cache`: prompt-cache injection settings.

use super::{ConfigError, error, pattern};
use crate::cache::{self, Locations, Skip, Ttl};
use crate::pattern::Pattern;
use crate::routing::Route;
use serde::Deserialize;

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

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum CacheMode {
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
pub(super) struct RawCache {
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
    /// The configured mode is automatic caching (a route may override it).
    pub fn automatic(&self) -> bool {
        self.base.automatic
    }

    /// The settings for a request to `model` on `route`, or why it gets no marker.
    pub fn settings_for(&self, model: &str, route: &Route) -> Result<cache::Settings, Skip> {
        if !self.enabled || !route.cache || self.disabled_models.iter().any(|p| p.matches(model)) {
            return Err(Skip::Disabled);
        }
        let min_tokens = self
            .min_tokens
            .iter()
            .find(|(p, _)| p.matches(model))
            .map_or(self.base.min_tokens, |&(_, t)| t);
        Ok(cache::Settings {
            min_tokens,
            automatic: route.cache_automatic.unwrap_or(self.base.automatic),
            ..self.base
        })
    }
}

pub(super) fn compile_cache(raw: RawCache) -> Result<CacheConfig, ConfigError> {
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
