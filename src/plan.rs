//! The request plan: what the filter does to one request, decided in pure code from the
//! configuration, the endpoint, the request headers it asks for and the buffered body. The
//! filter only applies it.

use crate::cache::{self, EXTENDED_TTL_BETA, Skip};
use crate::config::Config;
use crate::dialect::Policy;
use crate::dialect::inbound::Inbound;
use crate::dialect::outbound::{self, Outbound};
use crate::json;
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};
use crate::routing::{Auth, Route, Selection};
use crate::secrets::Inspection;
use crate::splice::Edit;
use crate::tools::{self, ToolFeed};

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
    /// All body edits, sorted: cache markers, the model rewrite and the dialect's.
    pub edits: Vec<Edit>,
    /// A body built anew instead of spliced (Bedrock's count-tokens wraps the request).
    pub new_body: Option<Vec<u8>>,
    pub headers: Vec<HeaderOp>,
    /// Answer locally instead of forwarding.
    pub reply: Option<Reply>,
    /// Betas and body fields the route's vendor does not accept, dropped.
    pub dropped_betas: Vec<String>,
    pub dropped_fields: Vec<String>,
    /// Secrets the body carries, and what was done about them.
    pub secrets: Inspection,
    /// The tool results of this turn, by tool.
    pub tool_results: Vec<ToolFeed>,
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

/// `GET /v1/gateway/sessions/{id}` for a session this caller did not make (or one the table no
/// longer holds): the same answer, so a caller learns nothing of other callers' sessions.
pub fn session_not_found() -> Reply {
    reply(
        404,
        "not_found_error",
        "claude_gateway.session_not_found",
        "No session with this id was made with this credential on this gateway.".into(),
    )
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
    if route.auth == Auth::None {
        // Envoy adds the vendor's credential; the client's never leaves the gateway.
        ops.push(HeaderOp::Remove("x-api-key"));
        ops.push(HeaderOp::Remove("authorization"));
    }
    if route.path_prefix.is_some() || route.strip_query {
        let kept = if route.strip_query {
            path.split('?').next().unwrap_or(path)
        } else {
            path
        };
        let prefix = route.path_prefix.as_deref().unwrap_or_default();
        ops.push(HeaderOp::Set(":path", format!("{prefix}{kept}")));
    }
    if matches!(route.auth, Auth::XApiKey | Auth::Bearer) && route.key_pool.is_none() {
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
        Auth::XApiKey | Auth::Passthrough | Auth::None => vec![
            HeaderOp::Set("x-api-key", key.to_owned()),
            HeaderOp::Remove("authorization"),
        ],
        Auth::Bearer => vec![
            HeaderOp::Set("authorization", format!("Bearer {key}")),
            HeaderOp::Remove("x-api-key"),
        ],
    }
}

/// The `anthropic-beta` value a route sends: the client's, without the route's dropped betas
/// (or none at all), with the extended-TTL beta for injected 1h markers.
fn betas_for(route: &Route, current: Option<&str>, add_extended_ttl: bool) -> Option<String> {
    if route.drop_anthropic_beta {
        return None;
    }
    let mut tokens: Vec<&str> = current
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !route.drop_betas.iter().any(|d| d == t))
        .collect();
    if add_extended_ttl && !tokens.contains(&EXTENDED_TTL_BETA) {
        tokens.push(EXTENDED_TTL_BETA);
    }
    (!tokens.is_empty()).then(|| tokens.join(","))
}

/// The header change that turns `current` into `value` (`None` when there is none).
fn beta_op(current: Option<&str>, value: Option<String>) -> Option<HeaderOp> {
    match (current.map(str::trim), value) {
        (Some(c), Some(v)) if c == v => None,
        (_, Some(v)) => Some(HeaderOp::Set("anthropic-beta", v)),
        (Some(_), None) => Some(HeaderOp::Remove("anthropic-beta")),
        (None, None) => None,
    }
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
    plan_call(config, endpoint, path, body, header, None)
}

/// [`plan`] for a request that may be in a cloud's own format (`inbound`).
pub fn plan_call<'c>(
    config: &'c Config,
    endpoint: Endpoint,
    path: &str,
    body: Option<&[u8]>,
    header: &mut dyn FnMut(&str) -> Option<String>,
    inbound: Option<&Inbound>,
) -> Plan<'c> {
    let layout = config.cache.enabled
        || config.tools.enabled
        || config.sessions.prefix_check
        || config.routes.all().any(|r| r.reject_system_messages);
    let path_model = inbound.and_then(|i| i.model.as_deref());
    let mut facts = match body {
        Some(bytes) => request::read(bytes, header, layout, path_model, config.secrets.as_ref()),
        None => Err(BodyIssue::Empty),
    };
    if let (Ok(f), Some(stream)) = (&mut facts, inbound.and_then(|i| i.stream)) {
        f.stream = stream;
    }
    let mut plan = Plan {
        route: None,
        body: Err(BodyIssue::Empty),
        cache: cache::Outcome::default(),
        edits: Vec::new(),
        new_body: None,
        headers: Vec::new(),
        reply: None,
        dropped_betas: Vec::new(),
        dropped_fields: Vec::new(),
        secrets: Inspection::default(),
        tool_results: Vec::new(),
    };
    if let (Ok(f), Some(d), Some(bytes)) = (&mut facts, &config.secrets, body) {
        plan.secrets = d.assess(bytes, &mut f.secrets);
    }
    if let (Ok(f), Some(bytes), true) = (&facts, body, config.tools.enabled) {
        if let Some((user, assistants)) = &f.layout.last_turn {
            plan.tool_results = tools::tool_results(bytes, *user, assistants);
        }
    }
    let model = facts.as_ref().ok().map(|f| f.model.as_str()).or(path_model);
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
    plan.reply = refusal(route, endpoint, &facts, inbound).or_else(|| {
        let blocked = plan.secrets.blocked.as_ref()?;
        Some(reply(
            400,
            "invalid_request_error",
            "claude_gateway.secret",
            format!(
                "The request was not sent: it contains a secret ({blocked}). Remove it from \
                 the conversation and try again."
            ),
        ))
    });
    if plan.reply.is_some() {
        plan.body = facts;
        return plan;
    }
    let policy = config.policies.of(route.dialect);
    let current = header("anthropic-beta");
    let mut betas = current.clone();
    let mut out = Outbound::default();
    if let (Ok(f), Some(bytes)) = (&facts, body) {
        plan.cache = match endpoint {
            // Markers change nothing in a token count.
            Endpoint::CountTokens => cache::Outcome::skip(Skip::Endpoint),
            Endpoint::Messages => match config.cache.settings_for(&f.model, route) {
                Ok(settings) => cache::plan(&f.layout, &settings),
                Err(skip) => cache::Outcome::skip(skip),
            },
        };
        let add_ttl = config.cache.extended_ttl_beta
            && plan.cache.uses_one_hour()
            && policy.beta(EXTENDED_TTL_BETA).is_some();
        if add_ttl || route.drop_anthropic_beta || !route.drop_betas.is_empty() {
            betas = betas_for(route, current.as_deref(), add_ttl);
        }
        // A failover route's request is put in each target's dialect per attempt, by the
        // upstream instance: here it only gets its markers.
        if route.failover.is_empty() {
            let version = header("anthropic-version");
            out = outbound::plan(
                route,
                policy,
                &outbound::Request {
                    endpoint,
                    body: bytes,
                    facts: f,
                    betas: betas.as_deref(),
                    version: version.as_deref(),
                    inbound,
                },
                &plan.cache.edits,
            );
        }
        plan.edits = plan.cache.edits.clone();
        plan.edits.extend(out.edits.iter().cloned());
        // A redaction inside what the dialect removes or replaces goes with it.
        let overlaps = |r: &Edit| {
            out.edits
                .iter()
                .any(|e| r.at < e.at + e.remove.max(1) && e.at < r.at + r.remove)
        };
        let redactions = plan.secrets.edits.iter().filter(|r| !overlaps(r));
        plan.edits.extend(redactions.cloned());
        plan.edits.sort_by_key(|e| e.at);
        plan.new_body = out.rebuild(bytes, &plan.edits);
    }
    plan.headers = if route.failover.is_empty() {
        headers_for(route, path, header, &out, current.as_deref(), betas)
    } else {
        // A failover route's targets each present the request their way, per attempt.
        beta_op(current.as_deref(), betas).into_iter().collect()
    };
    plan.dropped_betas = out.dropped_betas;
    plan.dropped_fields = out.dropped_fields;
    plan.body = facts;
    plan
}

/// The header changes of a request on `route`: the route's (credential, path prefix), then the
/// dialect's path and headers. A dialect with its own path writes the betas itself (filtered
/// by its policy); otherwise the betas the route sends are set here.
fn headers_for(
    route: &Route,
    path: &str,
    header: &mut dyn FnMut(&str) -> Option<String>,
    out: &Outbound,
    current: Option<&str>,
    betas: Option<String>,
) -> Vec<HeaderOp> {
    let mut ops = route_headers(route, path, header);
    match &out.path {
        Some(p) => {
            ops.retain(|op| !matches!(op, HeaderOp::Set(":path", _)));
            ops.push(HeaderOp::Set(":path", p.clone()));
        }
        None => ops.extend(beta_op(current, betas)),
    }
    ops.extend(out.headers.iter().cloned());
    ops
}

/// Why the route cannot take this request, if it cannot: answered locally.
fn refusal(
    route: &Route,
    endpoint: Endpoint,
    facts: &Result<BodyFacts, BodyIssue>,
    inbound: Option<&Inbound>,
) -> Option<Reply> {
    if let Some(i) = inbound.filter(|i| i.dialect != route.dialect) {
        return Some(reply(
            400,
            "invalid_request_error",
            "claude_gateway.dialect",
            format!(
                "This model is not served through {} here; send the request in the Messages \
                 API format (ANTHROPIC_BASE_URL) instead.",
                i.dialect.as_str()
            ),
        ));
    }
    if endpoint == Endpoint::CountTokens && !route.count_tokens {
        return Some(reply(
            404,
            "not_found_error",
            "claude_gateway.no_count_tokens",
            "Token counting is not available for this model's upstream.".to_owned(),
        ));
    }
    match facts {
        Ok(f) if route.reject_system_messages && f.layout.system_messages > 0 => Some(reply(
            400,
            "invalid_request_error",
            "claude_gateway.system_messages",
            "The upstream for this model does not accept messages with role \"system\" \
             inside `messages`; move their text into the top-level `system` field."
                .to_owned(),
        )),
        _ => None,
    }
}

/// The outbound plan of a failover target for one attempt (the upstream instance): the body as
/// the downstream instance forwarded it, in the target's dialect, and its credential headers.
pub fn attempt(
    config: &Config,
    target: &Route,
    endpoint: Endpoint,
    path: &str,
    body: &[u8],
    header: &mut dyn FnMut(&str) -> Option<String>,
) -> Option<(Outbound, Option<Vec<u8>>, Vec<HeaderOp>)> {
    let facts = request::read(body, header, false, None, None).ok()?;
    let policy: &Policy = config.policies.of(target.dialect);
    let betas = betas_for(target, header("anthropic-beta").as_deref(), false);
    let version = header("anthropic-version");
    let out = outbound::plan(
        target,
        policy,
        &outbound::Request {
            endpoint,
            body,
            facts: &facts,
            betas: betas.as_deref(),
            version: version.as_deref(),
            inbound: None,
        },
        &[],
    );
    let new_body = out.rebuild(body, &out.edits);
    let current = header("anthropic-beta");
    let headers = headers_for(target, path, header, &out, current.as_deref(), betas);
    Some((out, new_body, headers))
}

#[cfg(test)]
mod tests;
