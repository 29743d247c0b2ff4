//! Model routing: an ordered route table where the first route whose conditions hold wins.
//! A route matches on the body's `model` (exact, prefix or glob) and optionally on a request
//! header (e.g. Claude Code's `x-claude-code-request-class`); a default route catches the rest,
//! unless the `unknown_model` policy rejects them.

use crate::cost::Price;
use crate::dialect::Dialect;
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
    /// No credential from the gateway: the client's are removed and Envoy adds the vendor's
    /// (`aws_request_signing`, `gcp_authn`, `credential_injector`).
    None,
}

/// Where Bedrock's Messages surface is served: the two hosts differ in how the API version
/// is given (cloud-vendors.md §1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockHost {
    /// `bedrock-mantle.{region}.api.aws`: an `anthropic-version` header.
    Mantle,
    /// `bedrock-runtime.{region}.amazonaws.com/anthropic`: `anthropic_version` in the body.
    Runtime,
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
    /// Verified tokens (Envoy's `jwt_authn`) name the caller; virtual keys are accepted too.
    pub jwt: bool,
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
    /// Ask the Claude API why the cache missed (`diagnostics.previous_message_id`, added when
    /// the client did not send `diagnostics`); never for vendors that reject the field.
    pub cache_diagnostics: bool,
    /// Drop the query (`?beta=true`) for vendors that refuse unknown parameters.
    pub strip_query: bool,
    /// The wire format the upstream speaks.
    pub dialect: Dialect,
    /// The upstream's model ids: an exact match first, else the longest matching glob.
    pub models: Vec<(Pattern, String)>,
    /// Vertex AI: the project and region (`global` for the global endpoint) in the path.
    pub project: Option<String>,
    pub region: Option<String>,
    /// Bedrock's Messages surface: which host serves it.
    pub bedrock_host: BedrockHost,
    /// The vendor's own prices, checked before the global table.
    pub prices: Vec<Price>,
    /// The targets that serve this route's requests when Envoy fails over to the next priority
    /// of its (aggregate) cluster, in order; each names itself in its endpoints' metadata.
    pub failover: Vec<Route>,
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
            jwt: false,
            key_pool: None,
            path_prefix: None,
            cache: true,
            cache_automatic: None,
            count_tokens: true,
            drop_anthropic_beta: false,
            drop_betas: Vec::new(),
            reject_system_messages: false,
            cache_diagnostics: false,
            strip_query: false,
            dialect: Dialect::Anthropic,
            models: Vec::new(),
            project: None,
            region: None,
            bedrock_host: BedrockHost::Mantle,
            prices: Vec::new(),
            failover: Vec::new(),
        }
    }

    /// The model id the upstream sees for the client's `model`.
    pub fn vendor_model<'a>(&'a self, model: &'a str) -> &'a str {
        let exact = self.models.iter().find(|(p, _)| p.as_str() == model);
        let glob = || {
            self.models
                .iter()
                .filter(|(p, _)| p.matches(model))
                .max_by_key(|(p, _)| p.as_str().len())
        };
        match exact.or_else(glob) {
            Some((_, id)) => id,
            None => self.model_rewrite.as_deref().unwrap_or(model),
        }
    }

    /// This route or one of its failover targets, by name.
    pub fn target(&self, name: &str) -> Option<&Route> {
        std::iter::once(self)
            .chain(&self.failover)
            .find(|r| r.name == name)
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

    /// The route (not a failover target) with this name.
    pub fn by_name(&self, name: &str) -> Option<&Route> {
        self.all().find(|r| r.name == name)
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
