//! Admission of a request on a route with virtual keys: who is calling, may they use this
//! route and model, have they room under their limits and budgets, and which upstream key
//! serves them. Then, when the response is over, what it used is charged.

use super::limits::{Bucket, Period, Spend};
use super::pool::{self, KeyState, Observed, Pool};
use super::refusals::{Holder, Refusal, retry_after_seconds};
use super::{Caller, Consumer, SharedStore, update};
use crate::config::Config;
use crate::plan::Reply;
use crate::routing::Route;

/// A refusal, answered locally in the API's error envelope.
pub type Denied = Reply;

fn key_state_key(pool: &str, alias: &str) -> String {
    format!("cgw:key:{pool}:{alias}")
}

fn bucket_key(kind: &str, consumer: &str) -> String {
    format!("cgw:{kind}:{consumer}")
}

fn spend_key(period: Period, holder: Holder, id: &str) -> String {
    match holder {
        Holder::CostCenter => format!("cgw:spend:{}:{id}", period.as_str()),
        // Labels have no `:`, so a consumer's key never meets a cost center's.
        Holder::Consumer => format!("cgw:spend:{}:consumer:{id}", period.as_str()),
    }
}

fn too_many(message: String, wait_ms: u64, details: &'static str) -> Denied {
    Denied {
        status: 429,
        error_type: "rate_limit_error",
        message,
        retry_after_s: Some(retry_after_seconds(wait_ms)),
        details,
    }
}

fn refused(refusal: Refusal<'_>, wait_ms: u64) -> Denied {
    too_many(refusal.message(), wait_ms, refusal.details())
}

/// The shared state of every key of a pool.
pub fn key_states(p: &Pool, store: &dyn SharedStore) -> Vec<KeyState> {
    p.keys
        .iter()
        .map(|k| {
            store
                .get(&key_state_key(&p.name, &k.alias))
                .map_or_else(KeyState::default, |(v, _)| KeyState::decode(&v))
        })
        .collect()
}

/// Picks a key of the pool for a request (see [`pool::select`]).
pub fn pick_key(
    p: &Pool,
    session: Option<&str>,
    store: &dyn SharedStore,
    now: u64,
) -> Result<usize, Denied> {
    let states = key_states(p, store);
    // A shared round-robin counter spreads requests without a session evenly over workers.
    let counter = match session {
        Some(_) => 0,
        None => update(store, &format!("cgw:rr:{}", p.name), &mut |v| {
            let n = v
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes);
            (Some(n.wrapping_add(1).to_le_bytes().to_vec()), n)
        })
        .unwrap_or(now),
    };
    pool::select(&states, session, counter, now).map_err(|at| {
        too_many(
            "Every upstream key for this route is cooling down after rate limiting; retry later."
                .to_owned(),
            at.saturating_sub(now),
            "claude_gateway.no_key",
        )
    })
}

/// The daily and monthly budgets of a cost center or a consumer (`None`: no budget).
fn budgets_of(config: &Config, holder: Holder, c: &Consumer) -> Option<(String, [Option<u64>; 2])> {
    match holder {
        Holder::CostCenter => {
            let cc = c.cost_center.as_ref()?;
            let b = config.budgets.iter().find(|b| &b.cost_center == cc)?;
            Some((cc.clone(), [b.daily, b.monthly]))
        }
        Holder::Consumer => {
            let b = c.budget;
            (b.daily.is_some() || b.monthly.is_some()).then(|| (c.id.clone(), [b.daily, b.monthly]))
        }
    }
}

const PERIODS: [Period; 2] = [Period::Day, Period::Month];

fn check_budgets(
    config: &Config,
    consumer: &Consumer,
    store: &dyn SharedStore,
    now: u64,
) -> Result<(), Denied> {
    for holder in [Holder::CostCenter, Holder::Consumer] {
        let Some((id, limits)) = budgets_of(config, holder, consumer) else {
            continue;
        };
        for (period, limit) in PERIODS.into_iter().zip(limits) {
            let Some(limit) = limit else { continue };
            let (window, ends) = period.window(now);
            let stored = store.get(&spend_key(period, holder, &id));
            let spent = Spend::decode(stored.as_ref().map(|s| s.0.as_slice()), window);
            if spent.micro_usd >= limit {
                let refusal = Refusal::Budget {
                    holder,
                    id: &id,
                    period,
                    limit_micro_usd: limit,
                    renews_at_ms: ends,
                };
                return Err(refused(refusal, ends.saturating_sub(now)));
            }
        }
    }
    Ok(())
}

fn check_limits(c: &Consumer, store: &dyn SharedStore, now: u64) -> Result<(), Denied> {
    let l = c.limits;
    if l.requests_per_minute > 0 {
        let taken = update(store, &bucket_key("rpm", &c.id), &mut |v| {
            let mut b = Bucket::decode(v, l.requests_per_minute, now);
            let r = b.take(l.requests_per_minute, 1, now);
            (Some(b.encode()), r)
        });
        if let Some(Err(wait)) = taken {
            let refusal = Refusal::RequestsPerMinute {
                consumer: &c.id,
                limit: l.requests_per_minute,
            };
            return Err(refused(refusal, wait));
        }
    }
    for (kind, limit, refusal) in [
        (
            "itpm",
            l.input_tokens_per_minute,
            Refusal::InputTokensPerMinute {
                consumer: &c.id,
                limit: l.input_tokens_per_minute,
            },
        ),
        (
            "otpm",
            l.output_tokens_per_minute,
            Refusal::OutputTokensPerMinute {
                consumer: &c.id,
                limit: l.output_tokens_per_minute,
            },
        ),
    ] {
        if limit == 0 {
            continue;
        }
        let stored = store.get(&bucket_key(kind, &c.id));
        let mut b = Bucket::decode(stored.as_ref().map(|s| s.0.as_slice()), limit, now);
        if let Err(wait) = b.admit(limit, now) {
            return Err(refused(refusal, wait));
        }
    }
    Ok(())
}

/// Who is calling on `route`: nobody in particular on a passthrough route; on a virtual-key
/// route the consumer whose key was presented, or a 401.
pub fn identify(
    config: &Config,
    route: &Route,
    presented: &[&str],
    claims: Option<&serde_json::Value>,
) -> Result<Option<Caller>, Denied> {
    if !route.virtual_keys {
        return Ok(None);
    }
    // A verified token first (Envoy checked it; the claims are in its metadata, which no
    // client can write), then a virtual key.
    if let (true, Some(jwt), Some(claims)) = (route.jwt, &config.jwt, claims) {
        return super::jwt::consumer(jwt, claims).map(|c| Some(Caller::Token(c.into())));
    }
    match super::authenticate(&config.consumers, presented) {
        Some(i) => Ok(Some(Caller::Configured(i))),
        None => Err(Denied {
            status: 401,
            error_type: "authentication_error",
            message: if route.jwt {
                "Invalid or missing token or gateway API key.".to_owned()
            } else {
                "Invalid or missing gateway API key.".to_owned()
            },
            retry_after_s: None,
            details: "claude_gateway.unauthenticated",
        }),
    }
}

/// What a request asks for, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asks<'a> {
    /// A Messages or count_tokens request, with the model its body names (`None`: unreadable,
    /// which a consumer limited to some models is refused).
    Model(Option<&'a str>),
    /// Another endpoint (`/v1/models`...), which involves no model.
    Other,
}

/// Admits a consumer's request on `route`: it needs permission for the route and model, room
/// under its limits and its cost center's budgets, and a usable key in the route's pool (the
/// key returned, if the route has a pool).
pub fn admit<'c>(
    config: &'c Config,
    route: &Route,
    consumer: &Consumer,
    asks: Asks<'_>,
    session: Option<&str>,
    store: &dyn SharedStore,
    now: u64,
) -> Result<Option<(&'c Pool, usize)>, Denied> {
    let permitted = match asks {
        Asks::Model(model) => consumer.allowed(&route.name, model),
        Asks::Other => consumer.allowed_route(&route.name),
    };
    if !permitted {
        let model = match asks {
            Asks::Model(m) => m.unwrap_or("?"),
            Asks::Other => "?",
        };
        let model: String = model.chars().take(128).collect();
        return Err(Denied {
            status: 403,
            error_type: "permission_error",
            message: format!(
                "Consumer `{}` may not use model `{model}` here.",
                consumer.id
            ),
            retry_after_s: None,
            details: "claude_gateway.forbidden",
        });
    }
    check_budgets(config, consumer, store, now)?;
    check_limits(consumer, store, now)?;
    match route
        .key_pool
        .as_ref()
        .and_then(|name| config.pools.iter().find(|p| &p.name == name))
    {
        Some(p) => Ok(Some((p, pick_key(p, session, store, now)?))),
        None => Ok(None),
    }
}

/// Charges what a finished request used: its tokens against the consumer's token limits (input
/// is uncached input plus cache writes), its cost against the cost center's budgets.
pub fn settle(
    config: &Config,
    consumer: &Consumer,
    input_tokens: u64,
    output_tokens: u64,
    cost_micro_usd: u64,
    store: &dyn SharedStore,
    now: u64,
) {
    let l = consumer.limits;
    for (kind, limit, n) in [
        ("itpm", l.input_tokens_per_minute, input_tokens),
        ("otpm", l.output_tokens_per_minute, output_tokens),
    ] {
        if limit > 0 && n > 0 {
            update(store, &bucket_key(kind, &consumer.id), &mut |v| {
                let mut b = Bucket::decode(v, limit, now);
                b.charge(limit, n, now);
                (Some(b.encode()), ())
            });
        }
    }
    if cost_micro_usd == 0 {
        return;
    }
    for holder in [Holder::CostCenter, Holder::Consumer] {
        let Some((id, _)) = budgets_of(config, holder, consumer) else {
            continue;
        };
        for period in PERIODS {
            let (window, _) = period.window(now);
            update(store, &spend_key(period, holder, &id), &mut |v| {
                let mut s = Spend::decode(v, window);
                s.micro_usd = s.micro_usd.saturating_add(cost_micro_usd);
                (Some(s.encode()), ())
            });
        }
    }
}

/// Records what a response said about the key that served it. Returns true if the key is now
/// cooling down (a 429 or 529).
pub fn learn(p: &Pool, key: usize, o: &Observed, store: &dyn SharedStore, now: u64) -> bool {
    let Some(k) = p.keys.get(key) else {
        return false;
    };
    let mut cooling = false;
    update(store, &key_state_key(&p.name, &k.alias), &mut |v| {
        let old = v.map_or_else(KeyState::default, KeyState::decode);
        let new = pool::learn(old, o, now, p.default_cooldown_ms);
        cooling = new.cooldown_until > now;
        ((new != old).then(|| new.encode()), ())
    });
    cooling && (o.status == 429 || o.status == 529)
}

#[cfg(test)]
mod tests;
