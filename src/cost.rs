//! Cost in integer micro-USD from the five token buckets and a price table matched by model
//! pattern, so dated ids (`claude-sonnet-4-5-20250929`), aliases and platform prefixes
//! (`us.anthropic.claude-…`) resolve. An unknown model costs 0 and is counted, never guessed.

use crate::pattern::Pattern;
use crate::usage::Tokens;

/// Prices in micro-USD per million tokens (USD per MTok x 1e6), so a token count times a price
/// is micro-USD x 1e6 and every sum stays an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: u64,
    pub output: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// Label used in metrics and the audit record (`claude-opus-4-8`).
    pub name: String,
    pub model: Pattern,
    pub rates: Rates,
    /// Rates for the whole request when its prompt (input + cache reads + writes) exceeds the
    /// given number of tokens (Haiku 5.5's long-prompt band).
    pub long_prompt: Option<(u64, Rates)>,
    /// Micro-USD per web search request.
    pub web_search: u64,
}

/// USD per MTok as the integer unit of [`Rates`]; `None` if negative, not finite or absurd.
pub fn usd_per_mtok(usd: f64) -> Option<u64> {
    (usd.is_finite() && (0.0..1e6).contains(&usd)).then(|| (usd * 1e6).round() as u64)
}

/// The list prices in effect on the Claude pricing page as of October 2026
/// (anthropic-wire.md §7.2): (name, input, 5m write, 1h write, read, output) in USD per MTok.
/// Order matters: the first matching pattern wins, so specific ids come before families.
const LIST_PRICES: &[(&str, f64, f64, f64, f64, f64)] = &[
    ("claude-fable-5-1", 10.0, 12.5, 20.0, 0.25, 50.0),
    ("claude-mythos-5-1", 10.0, 12.5, 20.0, 0.25, 50.0),
    ("claude-opus-5-5", 4.0, 5.0, 8.0, 0.20, 20.0),
    ("claude-sonnet-5-5", 2.0, 2.5, 4.0, 0.10, 10.0),
    ("claude-haiku-5-5", 0.10, 0.125, 0.20, 0.01, 0.50),
    ("claude-fable-5", 10.0, 12.5, 20.0, 1.0, 50.0),
    ("claude-mythos-5", 10.0, 12.5, 20.0, 1.0, 50.0),
    ("claude-opus-5", 5.0, 6.25, 10.0, 0.50, 25.0),
    ("claude-sonnet-5", 2.0, 2.5, 4.0, 0.20, 10.0),
    ("claude-opus-4-8", 5.0, 6.25, 10.0, 0.50, 25.0),
    ("claude-opus-4-7", 5.0, 6.25, 10.0, 0.50, 25.0),
    ("claude-opus-4-6", 5.0, 6.25, 10.0, 0.50, 25.0),
    ("claude-opus-4-5", 5.0, 6.25, 10.0, 0.50, 25.0),
    ("claude-opus-4-1", 15.0, 18.75, 30.0, 1.50, 75.0),
    ("claude-opus-4", 15.0, 18.75, 30.0, 1.50, 75.0),
    ("claude-sonnet-4-6", 3.0, 3.75, 6.0, 0.30, 15.0),
    ("claude-sonnet-4-5", 3.0, 3.75, 6.0, 0.30, 15.0),
    ("claude-sonnet-4", 3.0, 3.75, 6.0, 0.30, 15.0),
    ("claude-3-7-sonnet", 3.0, 3.75, 6.0, 0.30, 15.0),
    ("claude-haiku-4-5", 1.0, 1.25, 2.0, 0.10, 5.0),
    ("claude-3-5-haiku", 0.80, 1.0, 1.60, 0.08, 4.0),
    ("claude-3-haiku", 0.25, 0.30, 0.50, 0.03, 1.25),
];

/// Haiku 5.5 above 100k prompt tokens (the whole request switches band).
const HAIKU_5_5_LONG: (f64, f64, f64, f64, f64) = (0.50, 0.625, 1.00, 0.05, 2.50);

/// Web search, USD per 1,000 requests.
const WEB_SEARCH_PER_1K: f64 = 10.0;

fn rates((input, w5, w1, read, output): (f64, f64, f64, f64, f64)) -> Rates {
    let r = |usd: f64| usd_per_mtok(usd).unwrap_or(0);
    Rates {
        input: r(input),
        output: r(output),
        cache_write_5m: r(w5),
        cache_write_1h: r(w1),
        cache_read: r(read),
    }
}

/// The built-in price list.
pub fn list_prices() -> Vec<Price> {
    LIST_PRICES
        .iter()
        .filter_map(|&(name, i, w5, w1, read, out)| {
            Some(Price {
                name: name.to_owned(),
                model: Pattern::new(&format!("*{name}*"))?,
                rates: rates((i, w5, w1, read, out)),
                long_prompt: (name == "claude-haiku-5-5").then(|| (100_000, rates(HAIKU_5_5_LONG))),
                web_search: (WEB_SEARCH_PER_1K * 1e6 / 1000.0) as u64,
            })
        })
        .collect()
}

/// The first price whose pattern matches the model.
pub fn find<'a>(prices: &'a [Price], model: &str) -> Option<&'a Price> {
    prices.iter().find(|p| p.model.matches(model))
}

/// The rates that apply to a request (the long-prompt band when it exceeds it).
fn rates_for(price: &Price, t: &Tokens) -> Rates {
    match price.long_prompt {
        Some((above, long)) if t.prompt() > above => long,
        _ => price.rates,
    }
}

/// What prompt caching saved on a request, in micro-USD: the cache reads and writes priced as
/// plain input, minus what they cost. Negative for a request that only wrote to the cache.
pub fn cache_savings_micro_usd(price: &Price, t: &Tokens) -> i64 {
    let r = rates_for(price, t);
    let m = |n: u64, rate: u64| i128::from(n) * i128::from(rate);
    let cached = t
        .cache_write_5m
        .saturating_add(t.cache_write_1h)
        .saturating_add(t.cache_read);
    let saved = m(cached, r.input)
        - m(t.cache_write_5m, r.cache_write_5m)
        - m(t.cache_write_1h, r.cache_write_1h)
        - m(t.cache_read, r.cache_read);
    let rounded = (saved + 500_000 * saved.signum()) / 1_000_000;
    i64::try_from(rounded).unwrap_or(0)
}

/// The cost of a request in micro-USD, rounded to the nearest.
pub fn micro_usd(price: &Price, t: &Tokens, web_searches: u64) -> u64 {
    let r = rates_for(price, t);
    let scaled: u128 = [
        (t.input, r.input),
        (t.cache_write_5m, r.cache_write_5m),
        (t.cache_write_1h, r.cache_write_1h),
        (t.cache_read, r.cache_read),
        (t.output, r.output),
    ]
    .iter()
    .map(|&(n, rate)| u128::from(n) * u128::from(rate))
    .sum();
    let tokens = (scaled + 500_000) / 1_000_000;
    let searches = u128::from(web_searches) * u128::from(price.web_search);
    u64::try_from(tokens + searches).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(model: &str) -> Price {
        find(&list_prices(), model).unwrap().clone()
    }

    #[test]
    fn dated_ids_aliases_and_platform_ids_resolve() {
        for (model, name) in [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("claude-opus-4-20250514", "claude-opus-4"),
            ("claude-opus-4-5-20251101", "claude-opus-4-5"),
            ("claude-opus-5-5", "claude-opus-5-5"),
            ("claude-opus-5", "claude-opus-5"),
            (
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5",
            ),
            ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ] {
            assert_eq!(price(model).name, name, "{model}");
        }
        assert!(find(&list_prices(), "gpt-5").is_none());
    }

    #[test]
    fn cost_in_micro_usd() {
        // Sonnet 4.5: 4 in, 306 5m writes, 147449 reads, 8 out (a real Claude Code turn).
        let t = Tokens {
            input: 4,
            cache_write_5m: 306,
            cache_write_1h: 0,
            cache_read: 147_449,
            output: 8,
        };
        // 4*3 + 306*3.75 + 147449*0.30 + 8*15 = 12 + 1147.5 + 44234.7 + 120 = 45514.2
        assert_eq!(micro_usd(&price("claude-sonnet-4-5"), &t, 0), 45_514);
        // 1h writes at 2x input; web searches at $10 per 1,000 (10,000 micro-USD each).
        let t = Tokens {
            cache_write_1h: 1_000_000,
            ..Tokens::default()
        };
        assert_eq!(
            micro_usd(&price("claude-opus-4-8"), &t, 2),
            10_000_000 + 20_000
        );
    }

    #[test]
    fn savings_compare_cached_tokens_with_plain_input() {
        let p = price("claude-sonnet-4-5");
        // 147,449 reads at 0.30 instead of 3.00, 306 writes at 3.75 instead of 3.00.
        let t = Tokens {
            input: 4,
            cache_write_5m: 306,
            cache_read: 147_449,
            output: 8,
            ..Tokens::default()
        };
        // 147449 * 2.70 - 306 * 0.75 = 398112.3 - 229.5 = 397882.8
        assert_eq!(cache_savings_micro_usd(&p, &t), 397_883);
        let writes_only = Tokens {
            cache_write_5m: 1000,
            ..Tokens::default()
        };
        assert_eq!(cache_savings_micro_usd(&p, &writes_only), -750);
    }

    #[test]
    fn haiku_5_5_switches_band_above_100k_prompt_tokens() {
        let p = price("claude-haiku-5-5");
        let small = Tokens {
            input: 100_000,
            output: 1_000,
            ..Tokens::default()
        };
        assert_eq!(micro_usd(&p, &small, 0), 10_000 + 500);
        let big = Tokens {
            input: 100_001,
            output: 1_000,
            ..Tokens::default()
        };
        assert_eq!(micro_usd(&p, &big, 0), 50_001 + 2_500);
    }

    #[test]
    fn rejects_bad_prices() {
        assert_eq!(usd_per_mtok(3.75), Some(3_750_000));
        assert_eq!(usd_per_mtok(-1.0), None);
        assert_eq!(usd_per_mtok(f64::NAN), None);
    }
}
