//! What each vendor accepts: which `anthropic-beta` values (and under which name) and which
//! top-level body fields. Vendors reject a whole request for one beta or field they do not know
//! (cloud-vendors.md §1.4, §6), and their lists change monthly, so the lists are configuration
//! data: shipped defaults (`policies.json`, read at configure time) that the plugin
//! configuration's `dialects` section replaces per dialect. Nothing is dropped silently: each
//! drop is counted and named in the audit record by the caller.

use super::Dialect;
use crate::json::Str;

/// One dialect's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Client beta -> the vendor's name for it (`None`: dropped); unlisted betas are dropped.
    /// `None` for the whole list: every beta passes as it is.
    pub betas: Option<Vec<(String, Option<String>)>>,
    /// The top-level fields the vendor accepts; `None`: all of them.
    pub fields: Option<Vec<String>>,
}

/// Betas after a policy: those to send, in order and without duplicates, and those dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Betas {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
}

impl Policy {
    /// The vendor's name for `beta`, or `None` if it does not take it.
    pub fn beta<'a>(&'a self, beta: &'a str) -> Option<&'a str> {
        match &self.betas {
            None => Some(beta),
            Some(map) => map
                .iter()
                .find(|(from, _)| from == beta)
                .and_then(|(_, to)| to.as_deref()),
        }
    }

    /// Applies the policy to betas from the header (comma lists) and the body.
    pub fn filter_betas<'a>(&self, betas: impl IntoIterator<Item = &'a str>) -> Betas {
        let mut out = Betas::default();
        for b in betas.into_iter().map(str::trim).filter(|b| !b.is_empty()) {
            match self.beta(b) {
                Some(to) if !out.kept.iter().any(|k| k == to) => out.kept.push(to.to_owned()),
                Some(_) => {}
                None if !out.dropped.iter().any(|d| d == b) => out.dropped.push(b.to_owned()),
                None => {}
            }
        }
        out
    }

    /// The vendor accepts this top-level key.
    pub fn accepts_field(&self, key: &Str, body: &[u8]) -> bool {
        self.fields
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|f| key.matches(body, f)))
    }
}

/// The policy of every dialect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies(Vec<(Dialect, Policy)>);

/// Betas of the Anthropic API that no shipped vendor list names (December 2026): metric
/// labels for betas dropped, beside every name in the policies.
const KNOWN_BETAS: [&str; 12] = [
    "extended-cache-ttl-2025-04-11",
    "prompt-caching-2024-07-31",
    "files-api-2025-04-14",
    "code-execution-2025-05-22",
    "code-execution-2025-08-25",
    "memory-2025-08-18",
    "oauth-2025-04-20",
    "skills-2025-10-02",
    "fast-mode-2026-02-01",
    "advisor-tool-2026-03-01",
    "mcp-servers-2025-12-04",
    "thinking-token-count-2026-05-13",
];

impl Policies {
    /// A beta's metric label: its name when a policy or the known list names it, else `other`
    /// (a client cannot add series by inventing betas).
    pub fn beta_label<'a>(&self, beta: &'a str) -> &'a str {
        let listed = self.0.iter().any(|(_, p)| {
            p.betas.as_ref().is_some_and(|m| {
                m.iter()
                    .any(|(from, to)| from == beta || to.as_deref() == Some(beta))
            })
        });
        if listed || KNOWN_BETAS.contains(&beta) {
            beta
        } else {
            "other"
        }
    }

    pub fn new(by_dialect: Vec<(Dialect, Policy)>) -> Policies {
        Policies(by_dialect)
    }

    /// The dialect's policy (Anthropic's own API takes everything).
    pub fn of(&self, d: Dialect) -> &Policy {
        static OPEN: Policy = Policy {
            betas: None,
            fields: None,
        };
        self.0
            .iter()
            .find(|(x, _)| *x == d)
            .map_or(&OPEN, |(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn betas_are_renamed_deduplicated_and_dropped() {
        let p = Policy {
            betas: Some(vec![
                ("a".into(), Some("a".into())),
                ("alias".into(), Some("a".into())),
                ("gone".into(), None),
            ]),
            fields: None,
        };
        let b = p.filter_betas(["a", " alias", "gone", "new", "", "new"]);
        assert_eq!(b.kept, ["a"]);
        assert_eq!(b.dropped, ["gone", "new"]);
        let open = Policy::default();
        assert_eq!(open.filter_betas(["x", "y"]).kept, ["x", "y"]);
    }
}
