//! `identity`, `consumers`, `budgets` and `key_pools`. Upstream keys are read from environment
//! variables that Envoy hands to the VM (`vm_config.environment_variables.host_env_keys`): the
//! configuration names the variables and never holds a key. Client keys are configured as
//! SHA-256 digests.

use super::{Amount, ConfigError, error, pattern, validate_env_name, validate_label};
use crate::keys::jwt::{GroupRule, Jwt};
use crate::keys::pool::{Pool, PoolKey};
use crate::keys::{Consumer, ConsumerBudget, Limits};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum IdentityName {
    /// The client's own credential goes upstream.
    #[default]
    Passthrough,
    /// Clients present gateway-issued keys; upstream keys come from a pool.
    Virtual,
    /// Clients present a token of the company's identity provider, verified by Envoy's
    /// `jwt_authn`; virtual keys are accepted too; upstream keys come from a pool.
    Jwt,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    /// The name the key goes by in logs, metrics and the audit record.
    alias: String,
    /// The environment variable holding the key.
    env: String,
}

fn default_cooldown() -> u64 {
    30
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    keys: Vec<RawKey>,
    /// Cooldown after a 429/529 that gives no retry-after or reset time.
    #[serde(default = "default_cooldown")]
    cooldown_seconds: u64,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    requests_per_minute: u64,
    input_tokens_per_minute: u64,
    output_tokens_per_minute: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    id: String,
    /// SHA-256 digests (hex) of the consumer's virtual keys.
    key_sha256: Vec<String>,
    cost_center: Option<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    /// The consumer's own spend budget.
    #[serde(default)]
    budget: RawBudget,
}

/// `jwt`: where a verified token's claims are, and the group rules that make consumers.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawJwt {
    metadata_key: String,
    consumer_claim: String,
    groups_claim: String,
    groups: Vec<RawGroupRule>,
}

impl Default for RawJwt {
    fn default() -> Self {
        RawJwt {
            metadata_key: "jwt_payload".to_owned(),
            consumer_claim: "sub".to_owned(),
            groups_claim: "groups".to_owned(),
            groups: Vec::new(),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroupRule {
    group: String,
    cost_center: Option<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    /// Each member's own spend budget.
    #[serde(default)]
    budget: RawBudget,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBudget {
    daily_usd: Option<Amount>,
    monthly_usd: Option<Amount>,
}

/// A cost center's spend budgets, in micro-USD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub cost_center: String,
    pub daily: Option<u64>,
    pub monthly: Option<u64>,
}

pub(super) fn compile_pools(
    raw: &BTreeMap<String, RawPool>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Pool>, ConfigError> {
    let mut pools = Vec::new();
    for (name, pool) in raw {
        let path = format!("key_pools.{name}");
        validate_label(&path, name)?;
        if pool.keys.is_empty() {
            return Err(error(&format!("{path}.keys"), "needs at least one key"));
        }
        let mut keys: Vec<PoolKey> = Vec::new();
        for (i, k) in pool.keys.iter().enumerate() {
            let at = format!("{path}.keys[{i}]");
            validate_label(&format!("{at}.alias"), &k.alias)?;
            validate_env_name(&format!("{at}.env"), &k.env)?;
            if keys.iter().any(|p| p.alias == k.alias) {
                return Err(error(&format!("{at}.alias"), "is used twice in the pool"));
            }
            let secret = env(&k.env)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    error(
                        &format!("{at}.env"),
                        format!(
                            "environment variable {} is not set in the VM (list it in \
                         vm_config.environment_variables.host_env_keys)",
                            k.env
                        ),
                    )
                })?;
            keys.push(PoolKey {
                alias: k.alias.clone(),
                secret: secret.trim().to_owned(),
            });
        }
        pools.push(Pool {
            name: name.clone(),
            keys,
            default_cooldown_ms: pool.cooldown_seconds.saturating_mul(1000),
        });
    }
    Ok(pools)
}

pub(super) fn compile_consumers(
    raw: &[RawConsumer],
    route_names: &[String],
) -> Result<Vec<Consumer>, ConfigError> {
    let mut consumers: Vec<Consumer> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let path = format!("consumers[{i}]");
        validate_label(&format!("{path}.id"), &c.id)?;
        if consumers.iter().any(|o| o.id == c.id) {
            return Err(error(
                &format!("{path}.id"),
                format!("two consumers are named `{}`", c.id),
            ));
        }
        let mut digests = Vec::new();
        for (j, d) in c.key_sha256.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error(
                    &format!("{path}.key_sha256[{j}]"),
                    "must be a SHA-256 digest in hex (64 characters): `printf %s KEY | sha256sum`",
                ));
            }
            if consumers.iter().any(|o| o.digests.contains(&d)) {
                return Err(error(
                    &format!("{path}.key_sha256[{j}]"),
                    "belongs to another consumer too",
                ));
            }
            digests.push(d);
        }
        if digests.is_empty() {
            return Err(error(
                &format!("{path}.key_sha256"),
                "needs at least one key digest",
            ));
        }
        consumers.push(Consumer {
            id: c.id.clone(),
            digests,
            ..policy(
                &path,
                Policy {
                    cost_center: &c.cost_center,
                    routes: &c.routes,
                    models: &c.models,
                    limits: &c.limits,
                    budget: &c.budget,
                },
                route_names,
            )?
        });
    }
    Ok(consumers)
}

/// What a consumer or a group rule may do.
struct Policy<'a> {
    cost_center: &'a Option<String>,
    routes: &'a [String],
    models: &'a [String],
    limits: &'a RawLimits,
    budget: &'a RawBudget,
}

/// A consumer without id or keys: the policy at `path`.
fn policy(path: &str, p: Policy<'_>, route_names: &[String]) -> Result<Consumer, ConfigError> {
    if let Some(cc) = p.cost_center {
        validate_label(&format!("{path}.cost_center"), cc)?;
    }
    for (j, r) in p.routes.iter().enumerate() {
        if !route_names.contains(r) {
            return Err(error(
                &format!("{path}.routes[{j}]"),
                format!("no route named `{r}`"),
            ));
        }
    }
    let models = p
        .models
        .iter()
        .enumerate()
        .map(|(j, m)| pattern(&format!("{path}.models[{j}]"), m))
        .collect::<Result<_, _>>()?;
    Ok(Consumer {
        id: String::new(),
        digests: Vec::new(),
        cost_center: p.cost_center.clone(),
        routes: p.routes.to_vec(),
        models,
        limits: Limits {
            requests_per_minute: p.limits.requests_per_minute,
            input_tokens_per_minute: p.limits.input_tokens_per_minute,
            output_tokens_per_minute: p.limits.output_tokens_per_minute,
        },
        budget: ConsumerBudget {
            daily: usd(&format!("{path}.budget.daily_usd"), p.budget.daily_usd)?,
            monthly: usd(&format!("{path}.budget.monthly_usd"), p.budget.monthly_usd)?,
        },
        group: None,
    })
}

fn usd(path: &str, v: Option<Amount>) -> Result<Option<u64>, ConfigError> {
    v.map(|Amount(usd)| {
        crate::cost::usd_per_mtok(usd)
            .ok_or_else(|| error(path, "must be an amount in USD, 0 or more"))
    })
    .transpose()
}

/// The `jwt` section, for a configuration whose routes take tokens.
pub(super) fn compile_jwt(raw: &RawJwt, route_names: &[String]) -> Result<Jwt, ConfigError> {
    for (field, value) in [
        ("metadata_key", &raw.metadata_key),
        ("consumer_claim", &raw.consumer_claim),
        ("groups_claim", &raw.groups_claim),
    ] {
        if value.is_empty() || value.len() > 128 {
            return Err(error(
                &format!("jwt.{field}"),
                "must be 1 to 128 characters",
            ));
        }
    }
    if raw.groups.is_empty() {
        return Err(error(
            "jwt.groups",
            "needs at least one group rule (`group: \"*\"` admits every valid token)",
        ));
    }
    let mut rules: Vec<GroupRule> = Vec::new();
    for (i, g) in raw.groups.iter().enumerate() {
        let path = format!("jwt.groups[{i}]");
        if g.group.is_empty() || g.group.len() > 256 {
            return Err(error(
                &format!("{path}.group"),
                "must be 1 to 256 characters",
            ));
        }
        if rules.iter().any(|r| r.group == g.group) {
            return Err(error(
                &format!("{path}.group"),
                "has a rule already (the first would always win)",
            ));
        }
        rules.push(GroupRule {
            group: g.group.clone(),
            policy: policy(
                &path,
                Policy {
                    cost_center: &g.cost_center,
                    routes: &g.routes,
                    models: &g.models,
                    limits: &g.limits,
                    budget: &g.budget,
                },
                route_names,
            )?,
        });
    }
    Ok(Jwt {
        metadata_key: raw.metadata_key.clone(),
        consumer_claim: raw.consumer_claim.clone(),
        groups_claim: raw.groups_claim.clone(),
        rules,
    })
}

pub(super) fn compile_budgets(
    raw: &BTreeMap<String, RawBudget>,
) -> Result<Vec<Budget>, ConfigError> {
    let mut out = Vec::new();
    for (cc, b) in raw {
        let path = format!("budgets.{cc}");
        validate_label(&path, cc)?;
        out.push(Budget {
            cost_center: cc.clone(),
            daily: usd(&format!("{path}.daily_usd"), b.daily_usd)?,
            monthly: usd(&format!("{path}.monthly_usd"), b.monthly_usd)?,
        });
    }
    Ok(out)
}
