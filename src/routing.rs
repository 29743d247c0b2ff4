//! Model routing: an ordered route table where the first route whose conditions hold wins.
//! A route matches on the body's `model` (exact, prefix or glob) and optionally on a request
//! header (e.g. Claude Code's `x-claude-code-request-class`); a default route catches the rest,
//! unless the `unknown_model` policy rejects them.

use crate::pattern::Pattern;

/// How the upstream credential is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The client's own headers, unchanged.
    Passthrough,
    /// `x-api-key: <key>` (and no `authorization`).
    XApiKey,
    /// `authorization: Bearer <key>` (and no `x-api-key`).
    Bearer,
}

/// What a route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Any of these model patterns; empty means any model.
    pub models: Vec<Pattern>,
    /// A header (lowercase name) whose value must match.
    pub header: Option<(String, Pattern)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Label in metrics and the audit record.
    pub name: String,
    pub cluster: String,
    /// The model the upstream sees instead of the client's.
    pub model_rewrite: Option<String>,
    pub auth: Auth,
    /// Clients present gateway-issued (virtual) keys; the upstream key comes from the pool.
    pub virtual_keys: bool,
    /// The key pool whose keys this route's requests use.
    pub key_pool: Option<String>,
    /// Prepended to the path (`/anthropic` -> `/anthropic/v1/messages`); the query is kept.
    pub path_prefix: Option<String>,
    /// Cache injection for this route (off for vendors that ignore or reject markers).
    pub cache: bool,
    /// Overrides the configured cache mode: `Some(true)` automatic, `Some(false)` blocks.
    pub cache_automatic: Option<bool>,
    /// The vendor serves `count_tokens`; if not, the gateway answers 404 itself.
    pub count_tokens: bool,
    /// Remove `anthropic-beta` entirely (vendors that reject it).
    pub drop_anthropic_beta: bool,
    /// Remove these tokens from `anthropic-beta`.
    pub drop_betas: Vec<String>,
    /// Answer 400 to bodies with mid-conversation `role:"system"` messages (vendors that reject
    /// them): nothing is dropped from a body silently.
    pub reject_system_messages: bool,
    /// Drop the query (`?beta=true`) for vendors that refuse unknown parameters.
    pub strip_query: bool,
}

impl Route {
    /// A route to `cluster` that changes nothing.
    pub fn plain(name: &str, cluster: &str) -> Route {
        Route {
            name: name.to_owned(),
            cluster: cluster.to_owned(),
            model_rewrite: None,
            auth: Auth::Passthrough,
            virtual_keys: false,
            key_pool: None,
            path_prefix: None,
            cache: true,
            cache_automatic: None,
            count_tokens: true,
            drop_anthropic_beta: false,
            drop_betas: Vec::new(),
            reject_system_messages: false,
            strip_query: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownModel {
    /// Send it to the default route.
    Default,
    /// Answer 400.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub routes: Vec<(Match, Route)>,
    pub default: Route,
    pub unknown_model: UnknownModel,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    Route(&'a Route),
    /// No route matches the model and the policy is to reject.
    Unknown,
}

impl Match {
    fn holds(&self, model: Option<&str>, header: &mut dyn FnMut(&str) -> Option<String>) -> bool {
        let model_ok = self.models.is_empty()
            || model.is_some_and(|m| self.models.iter().any(|p| p.matches(m)));
        model_ok
            && self
                .header
                .as_ref()
                .is_none_or(|(name, value)| header(name).is_some_and(|v| value.matches(&v)))
    }
}

impl Routes {
    /// The route for a request with this model (`None` if the body had none) and these headers.
    pub fn select(
        &self,
        model: Option<&str>,
        header: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Selection<'_> {
        if let Some((_, route)) = self.routes.iter().find(|(m, _)| m.holds(model, header)) {
            return Selection::Route(route);
        }
        match (self.unknown_model, model) {
            (UnknownModel::Reject, Some(_)) => Selection::Unknown,
            _ => Selection::Route(&self.default),
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(_, r)| r).chain([&self.default])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(models: &[&str], header: Option<(&str, &str)>) -> Match {
        Match {
            models: models.iter().map(|p| Pattern::new(p).unwrap()).collect(),
            header: header.map(|(n, v)| (n.to_owned(), Pattern::new(v).unwrap())),
        }
    }

    fn table(unknown_model: UnknownModel) -> Routes {
        Routes {
            routes: vec![
                (
                    m(&[], Some(("x-claude-code-request-class", "auxiliary"))),
                    Route::plain("aux", "cheap"),
                ),
                (
                    m(&["claude-haiku-*"], None),
                    Route::plain("haiku", "vendor_b"),
                ),
                (
                    m(&["claude-opus-4-8", "claude-opus-5*"], None),
                    Route::plain("opus", "vendor_a"),
                ),
                (m(&["claude-*"], None), Route::plain("claude", "anthropic")),
            ],
            default: Route::plain("default", "anthropic"),
            unknown_model,
        }
    }

    fn select(t: &Routes, model: Option<&str>, class: Option<&str>) -> Option<String> {
        let mut header = |name: &str| {
            (name == "x-claude-code-request-class")
                .then(|| class.map(str::to_owned))
                .flatten()
        };
        match t.select(model, &mut header) {
            Selection::Route(r) => Some(r.name.clone()),
            Selection::Unknown => None,
        }
    }

    #[test]
    fn exact_prefix_glob_and_header_matches_in_order() {
        let t = table(UnknownModel::Default);
        let s = |model: &str| select(&t, Some(model), None);
        assert_eq!(s("claude-haiku-4-5-20251001").as_deref(), Some("haiku"));
        assert_eq!(s("claude-opus-4-8").as_deref(), Some("opus"));
        assert_eq!(s("claude-opus-5-5").as_deref(), Some("opus"));
        // Exact: the dated id is not claude-opus-4-8 itself.
        assert_eq!(s("claude-opus-4-8-20260101").as_deref(), Some("claude"));
        assert_eq!(s("claude-sonnet-4-5").as_deref(), Some("claude"));
        // The header route comes first and wins over every model route.
        let aux = select(&t, Some("claude-opus-4-8"), Some("auxiliary"));
        assert_eq!(aux.as_deref(), Some("aux"));
        let main = select(&t, Some("claude-opus-4-8"), Some("main"));
        assert_eq!(main.as_deref(), Some("opus"));
    }

    #[test]
    fn unknown_models_follow_the_policy() {
        let t = table(UnknownModel::Default);
        assert_eq!(select(&t, Some("gpt-5"), None).as_deref(), Some("default"));
        let t = table(UnknownModel::Reject);
        assert_eq!(select(&t, Some("gpt-5"), None), None);
        // A body without a model cannot be judged: it goes to the default route.
        assert_eq!(select(&t, None, None).as_deref(), Some("default"));
        assert_eq!(select(&t, None, Some("auxiliary")).as_deref(), Some("aux"));
    }
}
