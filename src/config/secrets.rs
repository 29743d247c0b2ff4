//! `secrets`: which credential formats the detector knows (the shipped rules and the plugin's
//! own) and what each one does when a request carries it.

use super::{ConfigError, error};
use crate::secrets::{self, Action, Detector, Rule, RuleSpec};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The environment variable holding the placeholders' hash key, unless configured.
pub const DEFAULT_KEY_ENV: &str = "CLAUDE_GATEWAY_REDACTION_KEY";

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    Audit,
    Block,
    Redact,
    Off,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSecrets {
    enabled: bool,
    /// What every rule does unless `actions` says otherwise.
    action: RawAction,
    /// Per rule name.
    actions: BTreeMap<String, RawAction>,
    builtin_rules: bool,
    /// More rules; one with a shipped rule's name replaces it.
    rules: Vec<RuleSpec>,
    redaction_key_env: String,
}

impl Default for RawSecrets {
    fn default() -> Self {
        RawSecrets {
            enabled: true,
            action: RawAction::Audit,
            actions: BTreeMap::new(),
            builtin_rules: true,
            rules: Vec::new(),
            redaction_key_env: DEFAULT_KEY_ENV.to_owned(),
        }
    }
}

/// The detector, or `None` when no rule is on.
pub(super) fn compile_secrets(
    raw: &RawSecrets,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Detector>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    let mut specs: Vec<(String, &RuleSpec)> = Vec::new();
    let shipped = if raw.builtin_rules {
        secrets::shipped()
    } else {
        Vec::new()
    };
    for spec in &shipped {
        specs.push(("secrets.builtin".to_owned(), spec));
    }
    for (i, spec) in raw.rules.iter().enumerate() {
        let path = format!("secrets.rules[{i}]");
        if raw.rules.iter().take(i).any(|r| r.name == spec.name) {
            return Err(error(
                &format!("{path}.name"),
                "is the name of an earlier rule",
            ));
        }
        specs.retain(|(_, s)| s.name != spec.name);
        specs.push((path, spec));
    }
    for name in raw.actions.keys() {
        if !specs.iter().any(|(_, s)| &s.name == name) {
            return Err(error(&format!("secrets.actions.{name}"), "names no rule"));
        }
    }
    let mut rules = Vec::new();
    for (path, spec) in specs {
        let action = match raw.actions.get(&spec.name).copied().unwrap_or(raw.action) {
            RawAction::Off => continue,
            RawAction::Audit => Action::Audit,
            RawAction::Block => Action::Block,
            RawAction::Redact => Action::Redact,
        };
        let rule = Rule::new(spec, action)
            .map_err(|(field, why)| error(&format!("{path}.{field}"), why))?;
        rules.push(rule);
    }
    if rules.is_empty() {
        return Ok(None);
    }
    let mut key = Vec::new();
    if rules.iter().any(|r| r.action == Action::Redact) {
        match env(&raw.redaction_key_env) {
            Some(k) if k.len() >= 16 => key = k.into_bytes(),
            _ => {
                return Err(error(
                    "secrets.redaction_key_env",
                    "names an environment variable that is unset or shorter than 16 bytes; \
                     redaction needs it to key the placeholders",
                ));
            }
        }
    }
    Ok(Some(Detector::new(rules, key)))
}
