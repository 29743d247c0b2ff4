//! The request plan: what the filter does to one request, decided in pure code from the
//! configuration, the endpoint, the request headers it asks for and the buffered body. The
//! filter only applies it.

use crate::cache::{self, EXTENDED_TTL_BETA, Skip};
use crate::config::Config;
use crate::json;
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};
use crate::routing::{Auth, Route, Selection};
use crate::splice::Edit;

/// A change to a request header (besides the routing header, which is always set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Set(&'static str, String),
    Remove(&'static str),
}

/// A reply the gateway sends itself, in the Messages API's error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub error_type: &'static str,
    pub message: String,
    /// Envoy's response code details (`claude_gateway.<reason>`).
    pub details: &'static str,
    /// `retry-after`, whole seconds.
    pub retry_after_s: Option<u64>,
}

impl Reply {
    /// The metric label: the details without their prefix.
    pub fn reason(&self) -> &'static str {
        self.details
            .strip_prefix("claude_gateway.")
            .unwrap_or(self.details)
    }

    pub fn body(&self) -> Vec<u8> {
        let mut out = br#"{"type":"error","error":{"type":""#.to_vec();
        out.extend_from_slice(self.error_type.as_bytes());
        out.extend_from_slice(br#"","message":"#);
        json::write_string(&mut out, &self.message);
        out.extend_from_slice(b"}}");
        out
    }
}

#[derive(Debug)]
pub struct Plan<'c> {
    /// The route taken (`None` when the request is answered locally before a route is chosen).
    pub route: Option<&'c Route>,
    /// What the body says, or why it is forwarded untouched.
    pub body: Result<BodyFacts, BodyIssue>,
    /// Cache markers added (their edits are in `edits`), or why none are.
    pub cache: cache::Outcome,
    /// All body edits, sorted: cache markers and the model rewrite.
    pub edits: Vec<Edit>,
    pub headers: Vec<HeaderOp>,
    /// Answer locally instead of forwarding.
    pub reply: Option<Reply>,
}

fn reply(status: u32, error_type: &'static str, details: &'static str, message: String) -> Reply {
    Reply {
        status,
        error_type,
        message,
        details,
        retry_after_s: None,
    }
}

/// The body was half rewritten in Envoy's buffer when a host call failed: it must not go out.
pub fn rewrite_failed() -> Reply {
    reply(
        500,
        "api_error",
        "claude_gateway.rewrite_failed",
        "The gateway could not rewrite the request body; nothing was sent upstream.".into(),
    )
}

/// Header changes a route makes to any request: path prefix and query, credential style.
pub fn route_headers(
    route: &Route,
    path: &str,
    header: &mut dyn FnMut(&str) -> Option<String>,
) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    if route.path_prefix.is_some() || route.strip_query {
        let kept = if route.strip_query {
            path.split('?').next().unwrap_or(path)
        } else {
            path
        };
        let prefix = route.path_prefix.as_deref().unwrap_or_default();
        ops.push(HeaderOp::Set(":path", format!("{prefix}{kept}")));
    }
    if route.auth != Auth::Passthrough && route.key_pool.is_none() {
        // The client's own credential, moved to the header the vendor reads.
        let bearer =
            header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
        if let Some(key) = header("x-api-key").or(bearer) {
            ops.extend(credential(route.auth, &key));
        }
    }
    ops
}

/// Header operations that present `key` in the given style.
pub fn credential(auth: Auth, key: &str) -> Vec<HeaderOp> {
    match auth {
        Auth::XApiKey | Auth::Passthrough => vec![
            HeaderOp::Set("x-api-key", key.to_owned()),
            HeaderOp::Remove("authorization"),
        ],
        Auth::Bearer => vec![
            HeaderOp::Set("authorization", format!("Bearer {key}")),
            HeaderOp::Remove("x-api-key"),
        ],
    }
}

/// The `anthropic-beta` change for a route: dropped entirely, tokens removed, the extended-TTL
/// beta added for injected 1h markers. `None` when the header stays as it is.
fn beta_op(route: &Route, current: Option<String>, add_extended_ttl: bool) -> Option<HeaderOp> {
    if route.drop_anthropic_beta {
        return current.map(|_| HeaderOp::Remove("anthropic-beta"));
    }
    let original = current.clone().unwrap_or_default();
    let mut tokens: Vec<&str> = original
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !route.drop_betas.iter().any(|d| d == t))
        .collect();
    if add_extended_ttl && !tokens.contains(&EXTENDED_TTL_BETA) {
        tokens.push(EXTENDED_TTL_BETA);
    }
    let value = tokens.join(",");
    if current.as_deref().map(str::trim) == Some(value.as_str()) {
        return None;
    }
    Some(if value.is_empty() {
        HeaderOp::Remove("anthropic-beta")
    } else {
        HeaderOp::Set("anthropic-beta", value)
    })
}

/// Plans a request to one of the endpoints the gateway acts on. `body` is `None` when the
/// request has none; `path` includes the query; `header` reads request headers on demand.
pub fn plan<'c>(
    config: &'c Config,
    endpoint: Endpoint,
    path: &str,
    body: Option<&[u8]>,
    header: &mut dyn FnMut(&str) -> Option<String>,
) -> Plan<'c> {
    let layout = config.cache.enabled || config.routes.all().any(|r| r.reject_system_messages);
    let facts = match body {
        Some(bytes) => request::read(bytes, header, layout),
        None => Err(BodyIssue::Empty),
    };
    let mut plan = Plan {
        route: None,
        body: Err(BodyIssue::Empty),
        cache: cache::Outcome::default(),
        edits: Vec::new(),
        headers: Vec::new(),
        reply: None,
    };
    let model = facts.as_ref().ok().map(|f| f.model.as_str());
    let route = match config.routes.select(model, header) {
        Selection::Route(r) => r,
        Selection::Unknown => {
            let model: String = model.unwrap_or_default().chars().take(128).collect();
            plan.reply = Some(reply(
                400,
                "invalid_request_error",
                "claude_gateway.unknown_model",
                format!("The model `{model}` is not available through this gateway."),
            ));
            plan.body = facts;
            return plan;
        }
    };
    plan.route = Some(route);
    if endpoint == Endpoint::CountTokens && !route.count_tokens {
        plan.reply = Some(reply(
            404,
            "not_found_error",
            "claude_gateway.no_count_tokens",
            "Token counting is not available for this model's upstream.".to_owned(),
        ));
    } else if let Ok(f) = &facts {
        if route.reject_system_messages && f.layout.system_messages > 0 {
            plan.reply = Some(reply(
                400,
                "invalid_request_error",
                "claude_gateway.system_messages",
                "The upstream for this model does not accept messages with role \"system\" \
                 inside `messages`; move their text into the top-level `system` field."
                    .to_owned(),
            ));
        }
    }
    if plan.reply.is_some() {
        plan.body = facts;
        return plan;
    }
    if let Ok(f) = &facts {
        plan.cache = match endpoint {
            // Markers change nothing in a token count.
            Endpoint::CountTokens => cache::Outcome::skip(Skip::Endpoint),
            Endpoint::Messages => match config.cache.settings_for(&f.model, route) {
                Ok(settings) => cache::plan(&f.layout, &settings),
                Err(skip) => cache::Outcome::skip(skip),
            },
        };
        plan.edits = plan.cache.edits.clone();
        if let Some(model) = &route.model_rewrite {
            let mut bytes = Vec::with_capacity(model.len() + 2);
            json::write_string(&mut bytes, model);
            plan.edits.push(Edit {
                at: f.model_span.start,
                remove: f.model_span.len(),
                bytes,
            });
            plan.edits.sort_by_key(|e| e.at);
        }
    }
    plan.headers = route_headers(route, path, header);
    let add_ttl = config.cache.extended_ttl_beta && plan.cache.uses_one_hour();
    if add_ttl || route.drop_anthropic_beta || !route.drop_betas.is_empty() {
        plan.headers
            .extend(beta_op(route, header("anthropic-beta"), add_ttl));
    }
    plan.body = facts;
    plan
}

#[cfg(test)]
mod tests;
