//! `key_pools`: upstream keys, read from environment variables handed to the VM by Envoy
//! (`vm_config.environment_variables.host_env_keys`), never written in the configuration.

use super::{ConfigError, error, validate_label};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    /// The name the key goes by in logs, metrics and the audit record.
    alias: String,
    /// The environment variable holding the key.
    env: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    keys: Vec<RawKey>,
}

/// A pool as configured: its name and (alias, environment variable) per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub keys: Vec<(String, String)>,
}

pub(super) fn compile_pools(
    raw: &BTreeMap<String, RawPool>,
) -> Result<Vec<PoolConfig>, ConfigError> {
    let mut pools = Vec::new();
    for (name, pool) in raw {
        let path = format!("key_pools.{name}");
        validate_label(&path, name)?;
        if pool.keys.is_empty() {
            return Err(error(&format!("{path}.keys"), "needs at least one key"));
        }
        let mut keys: Vec<(String, String)> = Vec::new();
        for (i, k) in pool.keys.iter().enumerate() {
            validate_label(&format!("{path}.keys[{i}].alias"), &k.alias)?;
            validate_label(&format!("{path}.keys[{i}].env"), &k.env)?;
            if keys.iter().any(|(a, _)| *a == k.alias) {
                return Err(error(&format!("{path}.keys[{i}].alias"), "is used twice"));
            }
            keys.push((k.alias.clone(), k.env.clone()));
        }
        pools.push(PoolConfig {
            name: name.clone(),
            keys,
        });
    }
    Ok(pools)
}
