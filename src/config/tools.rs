//! `tools`: tool-call inspection (src/tools.rs).

use super::{ConfigError, error};
use crate::tools::{self, RiskRule, RuleError, ToolConfig};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    tag: String,
    pattern: String,
    /// Empty: every tool; `@shell`: the shell tools.
    #[serde(default)]
    tools: Vec<String>,
    /// Literals one of which every match contains (a fast pre-check).
    #[serde(default)]
    contains: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTools {
    enabled: bool,
    max_input_bytes: usize,
    shell_tools: Vec<String>,
    labels: Vec<String>,
    risks: Vec<RawRisk>,
    builtin_risks: bool,
}

impl Default for RawTools {
    fn default() -> Self {
        let d = ToolConfig::default();
        RawTools {
            enabled: d.enabled,
            max_input_bytes: d.max_input_bytes,
            shell_tools: d.shell_tools,
            labels: d.labels,
            risks: Vec::new(),
            builtin_risks: true,
        }
    }
}

fn tool_names(path: &str, names: &[String]) -> Result<(), ConfigError> {
    match names.iter().position(|n| !tools::valid_tool_name(n)) {
        Some(i) => Err(error(
            &format!("{path}[{i}]"),
            "must be a tool name (letters, digits, '_', '-', at most 128)",
        )),
        None => Ok(()),
    }
}

pub(super) fn compile_tools(raw: RawTools) -> Result<ToolConfig, ConfigError> {
    if !(1..=tools::MAX_INPUT_BYTES_LIMIT).contains(&raw.max_input_bytes) {
        return Err(error(
            "tools.max_input_bytes",
            format!("must be 1 to {}", tools::MAX_INPUT_BYTES_LIMIT),
        ));
    }
    tool_names("tools.shell_tools", &raw.shell_tools)?;
    tool_names("tools.labels", &raw.labels)?;
    if raw.labels.len() > tools::MAX_LABELS {
        return Err(error(
            "tools.labels",
            format!(
                "at most {} tools (each is a metric label)",
                tools::MAX_LABELS
            ),
        ));
    }
    let mut risks = Vec::new();
    for (i, r) in raw.risks.into_iter().enumerate() {
        let path = format!("tools.risks[{i}]");
        risks.push(
            RiskRule::new(&r.tag, &r.pattern, r.tools, r.contains).map_err(|e| match e {
                RuleError::Tag => error(
                    &format!("{path}.tag"),
                    format!("must be a-z, 0-9 or '-' (at most {})", tools::MAX_TAG),
                ),
                RuleError::Pattern => error(
                    &format!("{path}.pattern"),
                    "must be a regular expression (regex-lite syntax) of bounded size",
                ),
                RuleError::Tool(t) => error(
                    &format!("{path}.tools[{t}]"),
                    "must be a tool name or `@shell`",
                ),
                RuleError::Contains(c) => error(
                    &format!("{path}.contains[{c}]"),
                    format!(
                        "must be non-empty text of at most {} bytes, at most {} of them",
                        tools::MAX_LITERAL,
                        tools::MAX_CONTAINS
                    ),
                ),
            })?,
        );
    }
    if raw.builtin_risks {
        risks.extend(tools::builtin_risks());
    }
    if risks.len() > tools::MAX_RULES {
        return Err(error(
            "tools.risks",
            format!(
                "at most {} rules with the built-in ones (tags are metric labels)",
                tools::MAX_RULES
            ),
        ));
    }
    Ok(ToolConfig {
        enabled: raw.enabled,
        max_input_bytes: raw.max_input_bytes,
        shell_tools: raw.shell_tools,
        labels: raw.labels,
        risks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<ToolConfig, ConfigError> {
        compile_tools(serde_json::from_str(json).map_err(|e| error(".", e.to_string()))?)
    }

    #[test]
    fn defaults_match_the_runtime_defaults() {
        let c = compile("{}").unwrap();
        let d = ToolConfig::default();
        assert!(c.enabled);
        assert_eq!(c.max_input_bytes, 64 << 10);
        assert_eq!(c.shell_tools, ["Bash"]);
        assert_eq!(c.labels, d.labels);
        let tags = |c: &ToolConfig| c.risks.iter().map(|r| r.tag.clone()).collect::<Vec<_>>();
        assert_eq!(tags(&c), tags(&d));
        assert_eq!(tags(&c).len(), 7);
    }

    #[test]
    fn configured_risks_come_first_and_builtins_can_be_off() {
        let c = compile(r#"{"risks":[{"tag":"kubectl-delete","pattern":"kubectl\\s+delete","tools":["@shell"],"contains":["kubectl"]}]}"#)
            .unwrap();
        assert_eq!(c.risks.len(), 8);
        assert_eq!(c.risks[0].tag, "kubectl-delete");
        let c = compile(r#"{"builtin_risks":false,"risks":[{"tag":"x","pattern":"x"}]}"#).unwrap();
        assert_eq!(c.risks.len(), 1);
        assert!(c.risks[0].tools.is_empty());
    }

    #[test]
    fn errors_name_the_path_and_never_echo_the_value() {
        let secret = "s3cr3t";
        for (json, path) in [
            (
                format!(
                    r#"{{"risks":[{{"tag":"a","pattern":"a"}},{{"tag":"b","pattern":"({secret}"}}]}}"#
                ),
                "tools.risks[1].pattern",
            ),
            (
                format!(r#"{{"risks":[{{"tag":"{secret}_X","pattern":"a"}}]}}"#),
                "tools.risks[0].tag",
            ),
            (
                format!(
                    r#"{{"risks":[{{"tag":"a","pattern":"a","tools":["Bash","{secret} x"]}}]}}"#
                ),
                "tools.risks[0].tools[1]",
            ),
            (
                format!(r#"{{"labels":["Bash","{secret}!"]}}"#),
                "tools.labels[1]",
            ),
            (
                format!(r#"{{"shell_tools":["{secret}/"]}}"#),
                "tools.shell_tools[0]",
            ),
            (
                format!(
                    r#"{{"risks":[{{"tag":"a","pattern":"{secret}","contains":["{secret}",""]}}]}}"#
                ),
                "tools.risks[0].contains[1]",
            ),
            (
                r#"{"max_input_bytes":0}"#.to_owned(),
                "tools.max_input_bytes",
            ),
            (
                r#"{"max_input_bytes":2000000}"#.to_owned(),
                "tools.max_input_bytes",
            ),
        ] {
            let e = compile(&json).unwrap_err();
            assert_eq!(e.path, path, "{json}");
            assert!(!format!("{e} {e:?}").contains(secret), "{e}");
        }
        let many: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"tag":"t{i}","pattern":"x"}}"#))
            .collect();
        let e = compile(&format!(r#"{{"risks":[{}]}}"#, many.join(","))).unwrap_err();
        assert_eq!(e.path, "tools.risks");
        let e = compile(r#"{"nope":1}"#).unwrap_err();
        assert!(e.message.contains("unknown field"));
    }
}
