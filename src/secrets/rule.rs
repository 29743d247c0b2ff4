//! Secret rules: the data a rule is written as (the shipped `rules.json`, the plugin
//! configuration's `secrets.rules`), and the compiled rule the detector runs.

use super::MAX_PREFIX;

/// The shipped rules (configuration data: the plugin configuration adds to or replaces them).
const SHIPPED: &str = include_str!("rules.json");
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Listed in the audit record and counted.
    Audit,
    /// Answered with a 400; nothing goes upstream.
    Block,
    /// Replaced by a placeholder before the request goes upstream.
    Redact,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Audit, Action::Block, Action::Redact];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Audit => "audit",
            Action::Block => "block",
            Action::Redact => "redact",
        }
    }
}

/// A further check of a match that its pattern cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// A JSON Web Token: the first segment is base64url of a JSON object with `alg`.
    Jwt,
}

/// A rule as data: the shipped list and the plugin configuration's `secrets.rules`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Short `[a-z0-9-]` name: metric label, audit record, placeholder.
    pub name: String,
    /// Literal starts of a match (3 to 64 ASCII bytes); the prefilter looks for these.
    pub prefixes: Vec<String>,
    /// A regular expression matched at a prefix on the decoded string; its `secret` group (or
    /// the whole match) is the secret.
    pub pattern: String,
    /// Prefixes match in any letter case.
    #[serde(default)]
    pub ignore_case: bool,
    /// The byte before a prefix must not be a letter or digit.
    #[serde(default = "yes")]
    pub boundary: bool,
    /// Decoded bytes the pattern may read from the prefix.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    #[serde(default)]
    pub check: Option<Check>,
}

fn yes() -> bool {
    true
}

fn default_max_len() -> usize {
    256
}

/// The shipped rules.
pub fn shipped() -> Vec<RuleSpec> {
    serde_json::from_str(SHIPPED).unwrap_or_default()
}

#[derive(Clone)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub(super) prefixes: Vec<Vec<u8>>,
    pub(super) ignore_case: bool,
    pub(super) boundary: bool,
    pub(super) max_len: usize,
    pub(super) pattern: regex_lite::Regex,
    pub(super) check: Option<Check>,
}

impl Rule {
    /// Compiles a rule, or says which field is wrong and how (never echoing it).
    pub fn new(spec: &RuleSpec, action: Action) -> Result<Rule, (&'static str, &'static str)> {
        let name_ok = (1..=48).contains(&spec.name.len())
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(("name", "must be 1 to 48 characters of a-z, 0-9 and -"));
        }
        let prefix_ok = |p: &String| {
            (3..=MAX_PREFIX).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                && !p.contains(['"', '\\'])
        };
        if spec.prefixes.is_empty() || !spec.prefixes.iter().all(prefix_ok) {
            return Err((
                "prefixes",
                "must be one or more strings of 3 to 64 printable ASCII characters, without quotes or backslashes",
            ));
        }
        if !(16..=65_536).contains(&spec.max_len) {
            return Err(("max_len", "must be between 16 and 65536"));
        }
        let pattern = regex_lite::Regex::new(&format!("^(?:{})", spec.pattern))
            .map_err(|_| ("pattern", "is not a valid regular expression"))?;
        Ok(Rule {
            name: spec.name.clone(),
            action,
            prefixes: spec
                .prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            ignore_case: spec.ignore_case,
            boundary: spec.boundary,
            max_len: spec.max_len,
            pattern,
            check: spec.check,
        })
    }

    pub(super) fn prefix_at(&self, hay: &[u8], at: usize, prefix: usize) -> bool {
        let Some(p) = self.prefixes.get(prefix) else {
            return false;
        };
        match hay.get(at..at + p.len()) {
            Some(got) if self.ignore_case => got.eq_ignore_ascii_case(p),
            Some(got) => got == p.as_slice(),
            None => false,
        }
    }
}
