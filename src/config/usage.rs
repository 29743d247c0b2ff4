//! `usage` and prices.

use super::{Amount, ConfigError, error, pattern};
use crate::cost::{self, Price, Rates};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRates {
    input: Amount,
    output: Amount,
    cache_write_5m: Amount,
    cache_write_1h: Amount,
    cache_read: Amount,
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
pub(super) struct RawPrice {
    name: String,
    model: String,
    #[serde(flatten)]
    rates: RawRates,
    #[serde(default)]
    web_search_per_1k: Amount,
    long_prompt: Option<RawLongPrompt>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUsage {
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

/// Usage extraction, cost and usage metrics.
#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub enabled: bool,
    /// Configured prices first, then the built-in list (unless switched off).
    pub prices: Vec<Price>,
    /// Non-streaming responses are copied (bounded) to read their usage at the end.
    pub max_json_response_bytes: usize,
}

fn compile_rates(path: &str, r: &RawRates) -> Result<Rates, ConfigError> {
    let usd = |field: &str, Amount(v): Amount| {
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

/// A price list (`path` names it in errors: `usage.prices`, `routes[0].prices`).
pub(super) fn compile_prices(path: &str, raw: &[RawPrice]) -> Result<Vec<Price>, ConfigError> {
    let mut prices = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let path = format!("{path}[{i}]");
        super::validate_label(&format!("{path}.name"), &p.name)?;
        let long_prompt = match &p.long_prompt {
            Some(l) => Some((
                l.above_tokens,
                compile_rates(&format!("{path}.long_prompt"), &l.rates)?,
            )),
            None => None,
        };
        let web_search = cost::usd_per_mtok(p.web_search_per_1k.0)
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
    Ok(prices)
}

pub(super) fn compile_usage(raw: RawUsage) -> Result<UsageConfig, ConfigError> {
    let mut prices = compile_prices("usage.prices", &raw.prices)?;
    if raw.builtin_prices {
        prices.extend(cost::list_prices());
    }
    Ok(UsageConfig {
        enabled: raw.enabled,
        prices,
        max_json_response_bytes: raw.max_json_response_bytes,
    })
}
