//! A planned request in the route's dialect: body splices (never a re-serialization, except
//! Bedrock's count-tokens, whose API wants the request base64-encoded inside another object),
//! the vendor's path, and header changes. Pure: the filter's downstream instance applies it for
//! a route, the upstream instance per attempt for a failover target.

use super::Dialect;
use super::inbound::Inbound;
use super::path::segment;
use super::policy::{Betas, Policy};
use crate::json::{self, Scanner, Span, Str};
use crate::plan::HeaderOp;
use crate::request::{BodyFacts, Endpoint};
use crate::routing::{BedrockHost, Route};
use crate::splice::{self, Edit};

pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";
/// The Messages API version for hosts that take it as a header.
pub const API_VERSION: &str = "2023-06-01";

/// One request, as the dialect sees it.
pub struct Request<'a> {
    pub endpoint: Endpoint,
    pub body: &'a [u8],
    pub facts: &'a BodyFacts,
    /// The `anthropic-beta` header as it will be sent (with the gateway's own additions).
    pub betas: Option<&'a str>,
    /// The `anthropic-version` header, if the client sent one.
    pub version: Option<&'a str>,
    /// The client spoke a cloud's own format.
    pub inbound: Option<&'a Inbound>,
}

/// Builds a new body from the spliced one.
pub type Wrap = fn(&[u8]) -> Vec<u8>;

/// What the dialect does to a request.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Body splices besides the cache markers (sorted, none overlapping them).
    pub edits: Vec<Edit>,
    /// A body built anew, replacing the whole body (after every edit).
    pub wrap: Option<Wrap>,
    /// The path (and query) to send, when the dialect has its own.
    pub path: Option<String>,
    pub headers: Vec<HeaderOp>,
    pub dropped_betas: Vec<String>,
    pub dropped_fields: Vec<String>,
}

impl Outbound {
    /// Applies the edits (`cache` included, sorted) and the wrapping to `body`: only for a body
    /// that is rebuilt anyway (Bedrock's count-tokens); otherwise the filter splices in place.
    pub fn rebuild(&self, body: &[u8], all_edits: &[Edit]) -> Option<Vec<u8>> {
        self.wrap.map(|wrap| wrap(&splice::apply(body, all_edits)))
    }
}

fn quoted(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    json::write_string(&mut out, s);
    out
}

/// The dialect's request for `route`. `cache` are the cache markers' edits: a member that holds
/// one is never removed (config validation keeps that from happening).
pub fn plan(route: &Route, policy: &Policy, r: &Request, cache: &[Edit]) -> Outbound {
    let mut out = Outbound::default();
    let f = r.facts;
    let model = route.vendor_model(&f.model);
    let count = r.endpoint == Endpoint::CountTokens;
    // Bedrock's own count-tokens call from a Bedrock client: its body is already wrapped.
    if r.inbound.is_some_and(|i| i.dialect == Dialect::Bedrock) && count {
        out.path = Some(format!("/model/{}/count-tokens", segment(model)));
        return out;
    }
    // The Messages API as it is: at most the model changes (no member list to build).
    if route.dialect == Dialect::Anthropic {
        if let Some(span) = f.model_span.filter(|_| model != f.model) {
            out.edits.push(Edit {
                at: span.start,
                remove: span.len(),
                bytes: quoted(model),
            });
        }
        return out;
    }
    let mut body = Body::new(r.body, f, cache);
    let header_betas = r.betas.unwrap_or_default().split(',');
    match route.dialect {
        Dialect::Anthropic => {}
        Dialect::BedrockMessages | Dialect::Foundry => {
            body.set_model(model);
            // Mantle takes 2023-06-01 only (newer SDKs send a newer version by default);
            // bedrock-runtime wants the version in the body; Foundry the header, if absent.
            let runtime = route.bedrock_host == BedrockHost::Runtime;
            let mantle = route.dialect == Dialect::BedrockMessages && !runtime;
            if route.dialect == Dialect::BedrockMessages && runtime {
                body.set("anthropic_version", &quoted(BEDROCK_VERSION));
            } else if (mantle && r.version != Some(API_VERSION)) || r.version.is_none() {
                out.headers
                    .push(HeaderOp::Set("anthropic-version", API_VERSION.into()));
            }
            let suffix = if count { "/count_tokens" } else { "" };
            out.path = Some(format!("/anthropic/v1/messages{suffix}"));
            header_betas_op(&mut out, r.betas, policy.filter_betas(header_betas));
        }
        Dialect::Vertex => {
            if count {
                // Vertex's token counter wants the model in the body, not the path.
                body.set_model(model);
            } else {
                body.remove("model");
            }
            body.set("anthropic_version", &quoted(VERTEX_VERSION));
            let project = route.project.as_deref().unwrap_or_default();
            let region = route.region.as_deref().unwrap_or("global");
            let call = match (count, f.stream) {
                (true, _) => "count-tokens:rawPredict".to_owned(),
                (false, true) => format!("{}:streamRawPredict", segment(model)),
                (false, false) => format!("{}:rawPredict", segment(model)),
            };
            out.path = Some(format!(
                "/v1/projects/{}/locations/{}/publishers/anthropic/models/{call}",
                segment(project),
                segment(region)
            ));
            header_betas_op(&mut out, r.betas, policy.filter_betas(header_betas));
        }
        Dialect::Bedrock => {
            body.remove("model");
            body.remove("stream");
            body.set("anthropic_version", &quoted(BEDROCK_VERSION));
            // Betas go in the body (the header is ignored, then removed): the client's body
            // list (a Bedrock client's), then the header's.
            let listed = body.betas_listed();
            let betas = policy.filter_betas(listed.iter().map(String::as_str).chain(header_betas));
            if betas.kept.is_empty() {
                body.remove("anthropic_beta");
            } else {
                let items: Vec<Vec<u8>> = betas.kept.iter().map(|b| quoted(b)).collect();
                body.set(
                    "anthropic_beta",
                    &[b"[".as_slice(), &items.join(&b","[..]), b"]"].concat(),
                );
            }
            out.dropped_betas = betas.dropped;
            if r.betas.is_some() {
                out.headers.push(HeaderOp::Remove("anthropic-beta"));
            }
            let op = match (count, f.stream) {
                (true, _) => "count-tokens",
                (false, true) => "invoke-with-response-stream",
                (false, false) => "invoke",
            };
            out.path = Some(format!("/model/{}/{op}", segment(model)));
            if count {
                // CountTokens validates the inner body like InvokeModel's, which needs max_tokens.
                if f.member(r.body, "max_tokens").is_none() {
                    body.set("max_tokens", b"1");
                }
                out.wrap = Some(wrap_count_tokens);
            }
        }
    }
    out.dropped_fields = body.apply_policy(policy);
    if let (Some(prefix), Some(path)) = (&route.path_prefix, &mut out.path) {
        path.insert_str(0, prefix);
    }
    out.edits = body.edits();
    out
}

/// Sets or removes `anthropic-beta` after the policy, counting what it dropped.
fn header_betas_op(out: &mut Outbound, current: Option<&str>, betas: Betas) {
    let value = betas.kept.join(",");
    out.dropped_betas = betas.dropped;
    match current {
        Some(c) if c.trim() == value => {}
        Some(_) if value.is_empty() => out.headers.push(HeaderOp::Remove("anthropic-beta")),
        Some(_) => out.headers.push(HeaderOp::Set("anthropic-beta", value)),
        None => {}
    }
}

/// Bedrock CountTokens: `{"input":{"invokeModel":{"body":"<base64 of the InvokeModel body>"}}}`.
fn wrap_count_tokens(inner: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(inner);
    [
        br#"{"input":{"invokeModel":{"body":""#.as_slice(),
        encoded.as_bytes(),
        br#""}}}"#,
    ]
    .concat()
}

/// The top-level members of a body and what happens to them: replaced values, removals and
/// members added at the end, turned into non-overlapping splices at the end.
struct Body<'a> {
    body: &'a [u8],
    facts: &'a BodyFacts,
    cache: &'a [Edit],
    /// Per member: removed, or its value replaced.
    removed: Vec<bool>,
    replaced: Vec<Option<Vec<u8>>>,
    added: Vec<(&'static str, Vec<u8>)>,
}

impl<'a> Body<'a> {
    fn new(body: &'a [u8], facts: &'a BodyFacts, cache: &'a [Edit]) -> Body<'a> {
        let n = facts.members.len();
        Body {
            body,
            facts,
            cache,
            removed: vec![false; n],
            replaced: vec![None; n],
            added: Vec::new(),
        }
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.facts
            .members
            .iter()
            .position(|(k, _)| k.matches(self.body, key))
    }

    fn value(&self, i: usize) -> Option<Span> {
        self.facts.members.get(i).map(|(_, v)| *v)
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.index(key).and_then(|i| self.removed.get_mut(i)) {
            *slot = true;
        }
    }

    /// Sets a member's value, adding the member when the body has none.
    fn set(&mut self, key: &'static str, value: &[u8]) {
        match self.index(key) {
            Some(i) => {
                let same = self.value(i).is_some_and(|v| v.of(self.body) == value);
                if let Some(slot) = self.replaced.get_mut(i).filter(|_| !same) {
                    *slot = Some(value.to_vec());
                }
            }
            None => self.added.push((key, value.to_vec())),
        }
    }

    /// The model the upstream sees (a body without one, from a cloud-format client, gets one).
    fn set_model(&mut self, model: &str) {
        if self.facts.model_span.is_none() || model != self.facts.model {
            self.set("model", &quoted(model));
        }
    }

    /// The strings of a body's `anthropic_beta` array (a Bedrock client's).
    fn betas_listed(&self) -> Vec<String> {
        let Some(span) = self.index("anthropic_beta").and_then(|i| self.value(i)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut s = Scanner::new(self.body);
        s.seek(span.start);
        let Ok(mut arr) = s.enter_array() else {
            return out;
        };
        while let Ok(true) = s.next_item(&mut arr) {
            match s.peek() {
                Ok(b'"') => match s.string().ok().and_then(|v| v.decode(self.body)) {
                    Some(v) => out.push(v),
                    None => break,
                },
                _ => {
                    if s.value().is_err() {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Removes the members the vendor does not accept; returns their names.
    fn apply_policy(&mut self, policy: &Policy) -> Vec<String> {
        const OWN: [&str; 4] = ["model", "stream", "anthropic_version", "anthropic_beta"];
        let mut dropped = Vec::new();
        for (i, (key, value)) in self.facts.members.iter().enumerate() {
            let own = OWN.iter().any(|k| key.matches(self.body, k));
            let holds_marker = self
                .cache
                .iter()
                .any(|e| e.at > value.start && e.at < value.end);
            if own || holds_marker || policy.accepts_field(key, self.body) {
                continue;
            }
            if let Some(slot) = self.removed.get_mut(i) {
                *slot = true;
                dropped.push(name(key, self.body));
            }
        }
        dropped
    }

    /// The splices, sorted: replaced values, removed members (with the comma that separates
    /// them from the rest) and added members before the closing brace.
    fn edits(&self) -> Vec<Edit> {
        let members = &self.facts.members;
        let key_start = |i: usize| {
            members
                .get(i)
                .map_or(0, |(k, _)| k.span.start.saturating_sub(1))
        };
        let value_end = |i: usize| members.get(i).map_or(0, |(_, v)| v.end);
        let removed = |i: usize| self.removed.get(i).copied().unwrap_or(false);
        let mut edits = Vec::new();
        for (i, value) in self.replaced.iter().enumerate() {
            if let (Some(bytes), false, Some(span)) = (value, removed(i), self.value(i)) {
                edits.push(Edit {
                    at: span.start,
                    remove: span.len(),
                    bytes: bytes.clone(),
                });
            }
        }
        // Each run of removed members goes with the separator after it, or before it when the
        // run ends the object.
        let n = members.len();
        let kept = (0..n).filter(|&i| !removed(i)).count();
        let mut i = 0;
        while i < n {
            if !removed(i) {
                i += 1;
                continue;
            }
            let first = i;
            while i < n && removed(i) {
                i += 1;
            }
            let (from, to) = if i < n {
                (key_start(first), key_start(i))
            } else if first > 0 {
                (value_end(first - 1), value_end(n - 1))
            } else {
                (key_start(0), value_end(n - 1))
            };
            edits.push(Edit {
                at: from,
                remove: to.saturating_sub(from),
                bytes: Vec::new(),
            });
        }
        if !self.added.is_empty() {
            let mut bytes = Vec::new();
            for (j, (key, value)) in self.added.iter().enumerate() {
                if j > 0 || kept > 0 {
                    bytes.push(b',');
                }
                json::write_string(&mut bytes, key);
                bytes.push(b':');
                bytes.extend_from_slice(value);
            }
            edits.push(Edit::insert(self.facts.layout.root_close, bytes));
        }
        edits.sort_by_key(|e| e.at);
        edits
    }
}

/// A removed key's name for the record (bounded; not UTF-8 or escaped oddly: `?`).
fn name(key: &Str, body: &[u8]) -> String {
    key.decode(body)
        .map(|k| k.chars().take(64).collect())
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests;
