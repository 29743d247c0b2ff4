//! Tool-call inspection's configuration: the compiled settings and the risk-tag rules (the
//! shipped `risks.json`, the plugin configuration's `tools.risks`).

use super::{CLAUDE_CODE_TOOLS, DEFAULT_MAX_INPUT_BYTES, MAX_NAME, MAX_TAG, SHELL_TOOLS};
use regex_lite::{Regex, RegexBuilder};
use serde::Deserialize;

/// The shipped risk rules (each with a `why`).
pub(super) const BUILTIN_RISKS: &str = include_str!("risks.json");

/// Tool-call inspection, compiled.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    pub enabled: bool,
    /// Bytes of one tool block's input assembled from a stream (and read from a JSON body).
    pub max_input_bytes: usize,
    /// Tools whose input `command` is a shell command (program names, `@shell` rules).
    pub shell_tools: Vec<String>,
    /// Tools with their own metric label; others are `mcp` (`mcp__…`) or `other`.
    pub labels: Vec<String>,
    pub risks: Vec<RiskRule>,
}

impl Default for ToolConfig {
    fn default() -> Self {
        ToolConfig {
            enabled: true,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            shell_tools: vec!["Bash".to_owned()],
            labels: CLAUDE_CODE_TOOLS.map(str::to_owned).into(),
            risks: builtin_risks(),
        }
    }
}

/// A risk tag given to calls whose input has a string value the pattern matches.
#[derive(Debug, Clone)]
pub struct RiskRule {
    pub tag: String,
    /// The tools it applies to (`@shell`: the shell tools); empty: every tool.
    pub tools: Vec<String>,
    /// Literals one of which every match contains; empty: none. When set, the pattern runs
    /// on each line holding one (so `^`/`$` are line ends). regex-lite has no literal
    /// optimisations (about 30 ns a byte for any pattern): this keeps a 64 KiB input cheap.
    pub contains: Vec<String>,
    pub pattern: Regex,
}

/// What is wrong with a rule (the config names the path; values are never echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    Tag,
    Pattern,
    /// `tools[i]` is not a tool name.
    Tool(usize),
    /// `contains[i]` is empty or too long, or the list is too long.
    Contains(usize),
}

/// Literals in a rule's `contains`, and their length.
pub const MAX_CONTAINS: usize = 16;
pub const MAX_LITERAL: usize = 128;

impl RiskRule {
    pub fn new(
        tag: &str,
        pattern: &str,
        tools: Vec<String>,
        contains: Vec<String>,
    ) -> Result<RiskRule, RuleError> {
        if !valid_tag(tag) {
            return Err(RuleError::Tag);
        }
        if let Some(i) = tools
            .iter()
            .position(|t| t != SHELL_TOOLS && !valid_tool_name(t))
        {
            return Err(RuleError::Tool(i));
        }
        let bad =
            |(i, c): (usize, &String)| i >= MAX_CONTAINS || c.is_empty() || c.len() > MAX_LITERAL;
        if let Some((i, _)) = contains.iter().enumerate().find(|&x| bad(x)) {
            return Err(RuleError::Contains(i));
        }
        // Bounded compile (a rule is configuration, still): matching is linear in any case.
        let pattern = RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .nest_limit(64)
            .build()
            .map_err(|_| RuleError::Pattern)?;
        Ok(RiskRule {
            tag: tag.to_owned(),
            tools,
            contains,
            pattern,
        })
    }

    pub(super) fn applies(&self, tool: &str, shell: bool) -> bool {
        self.tools.is_empty()
            || self
                .tools
                .iter()
                .any(|t| t == tool || (shell && t == SHELL_TOOLS))
    }

    /// With `contains`, only the lines holding a literal are matched: shell rules are about
    /// one command line, and a long heredoc then costs a few substring searches.
    pub(super) fn matches(&self, value: &str) -> bool {
        let has = |text: &str| {
            self.contains
                .iter()
                .any(|c| memchr::memmem::find(text.as_bytes(), c.as_bytes()).is_some())
        };
        if self.contains.is_empty() {
            return self.pattern.is_match(value);
        }
        has(value)
            && value
                .split('\n')
                .any(|line| has(line) && self.pattern.is_match(line))
    }
}

/// A risk tag: a short metric label, `[a-z0-9-]`, at most [`MAX_TAG`] bytes.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A tool name as the API allows them: letters, digits, `_`, `-` (at most [`MAX_NAME`]).
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The shipped rules (`src/tools/risks.json`); a test checks that every one compiles.
pub fn builtin_risks() -> Vec<RiskRule> {
    #[derive(Deserialize)]
    struct Shipped {
        tag: String,
        pattern: String,
        tools: Vec<String>,
        contains: Vec<String>,
    }
    let shipped: Vec<Shipped> = serde_json::from_str(BUILTIN_RISKS).unwrap_or_default();
    shipped
        .into_iter()
        .filter_map(|r| RiskRule::new(&r.tag, &r.pattern, r.tools, r.contains).ok())
        .collect()
}
