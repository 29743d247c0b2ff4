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
    /// Unset: on when the section sets an action or a rule. Off by default: the detector adds
    /// about 15% to a 512 KiB request's CPU (README "Performance"), more than the 10% the
    /// default may cost.
    enabled: Option<bool>,
    /// What every rule does unless `actions` says otherwise.
    action: Option<RawAction>,
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
            enabled: None,
            action: None,
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
    let configured = raw.action.is_some() || !raw.actions.is_empty() || !raw.rules.is_empty();
    if !raw.enabled.unwrap_or(configured) {
        return Ok(None);
    }
    let default_action = raw.action.unwrap_or(RawAction::Audit);
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
        let action = match raw
            .actions
            .get(&spec.name)
            .copied()
            .unwrap_or(default_action)
        {
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

#[cfg(test)]
mod tests {
    use crate::config::parse_with_env;
    use crate::secrets::Action;

    fn parse(doc: &str, key: Option<&str>) -> Result<crate::config::Config, String> {
        let env = |name: &str| {
            (name == super::DEFAULT_KEY_ENV)
                .then(|| key.map(str::to_owned))
                .flatten()
        };
        parse_with_env(doc.as_bytes(), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn off_unless_configured_and_each_rule_takes_its_action() {
        assert!(parse("{}", None).unwrap().secrets.is_none());
        assert!(
            parse(r#"{"secrets":{"enabled":false,"action":"block"}}"#, None)
                .unwrap()
                .secrets
                .is_none()
        );
        let d = parse(r#"{"secrets":{"enabled":true}}"#, None)
            .unwrap()
            .secrets
            .unwrap();
        assert_eq!(d.rules.len(), 12);
        assert!(d.rules.iter().all(|r| r.action == Action::Audit));
        let d = parse(
            r#"{"secrets":{"actions":{"private-key":"block","jwt":"off"},
                "rules":[{"name":"acme-token","prefixes":["acme_"],"pattern":"acme_[a-z0-9]{32}"}]}}"#,
            None,
        )
        .unwrap()
        .secrets
        .unwrap();
        let action = |n: &str| d.rules.iter().find(|r| r.name == n).map(|r| r.action);
        assert_eq!(action("private-key"), Some(Action::Block));
        assert_eq!(action("jwt"), None);
        assert_eq!(action("acme-token"), Some(Action::Audit));
        assert_eq!(d.rules.len(), 12);
        let only = parse(
            r#"{"secrets":{"builtin_rules":false,"rules":[{"name":"aws-access-key-id","prefixes":["AKIA"],"pattern":"AKIA[A-Z0-9]{16}"}]}}"#,
            None,
        )
        .unwrap()
        .secrets
        .unwrap();
        assert_eq!(only.rules.len(), 1);
    }

    #[test]
    fn errors_name_the_field_and_never_echo_it() {
        let secret_pattern = "zz9secretzz9[";
        for (doc, path) in [
            (r#"{"secrets":{"actions":{"nope":"block"}}}"#.to_owned(), "secrets.actions.nope"),
            (r#"{"secrets":{"action":"redact"}}"#.to_owned(), "secrets.redaction_key_env"),
            (
                format!(r#"{{"secrets":{{"rules":[{{"name":"x","prefixes":["abc"],"pattern":"{secret_pattern}"}}]}}}}"#),
                "secrets.rules[0].pattern",
            ),
            (
                r#"{"secrets":{"rules":[{"name":"X Y","prefixes":["abc"],"pattern":"a"}]}}"#.to_owned(),
                "secrets.rules[0].name",
            ),
            (
                r#"{"secrets":{"rules":[{"name":"x","prefixes":["a\""],"pattern":"a"}]}}"#.to_owned(),
                "secrets.rules[0].prefixes",
            ),
            (
                r#"{"secrets":{"rules":[{"name":"x","prefixes":["abc"],"pattern":"a"},{"name":"x","prefixes":["abd"],"pattern":"a"}]}}"#.to_owned(),
                "secrets.rules[1].name",
            ),
            (r#"{"secrets":{"action":"shout"}}"#.to_owned(), "secrets.action"),
        ] {
            let e = parse(&doc, None).unwrap_err();
            assert!(e.contains(&format!("`{path}`")), "{e}");
            assert!(!e.contains("zz9secret"), "{e}");
        }
        // A key shorter than 16 bytes is refused; a long one is taken, never shown.
        assert!(parse(r#"{"secrets":{"action":"redact"}}"#, Some("short")).is_err());
        let c = parse(
            r#"{"secrets":{"action":"redact"}}"#,
            Some("a-long-enough-redaction-key"),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("a-long-enough"));
        // Blocking and redacting need the body before the request goes on.
        let e = parse(
            r#"{"hold_headers":false,"cache":{"enabled":false},"secrets":{"action":"block"}}"#,
            None,
        )
        .unwrap_err();
        assert!(e.contains("`secrets.actions`"), "{e}");
        assert!(
            parse(
                r#"{"hold_headers":false,"cache":{"enabled":false},"secrets":{"enabled":true}}"#,
                None
            )
            .is_ok()
        );
    }
}
