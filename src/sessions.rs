//! What each session cost, and why its cache missed (issue 19). Per session: running totals
//! (requests, the five token buckets, cost) overall, per model and per agent (Claude Code's
//! subagents), Anthropic's cache-miss reasons, and per agent and model its previous turn: the
//! response id (for Anthropic's cache diagnostics) and a fingerprint of the prompt prefix (for
//! the gateway's own verdict). Per model too, because a client's side requests in the same
//! session (Claude Code's titles and summaries on a small model, without an agent id) are no
//! turn of the conversation: compared with it, every turn would look like a miss. Records live
//! in Envoy's shared data in a bounded table (`table`); this module is the pure part: the
//! record, its update, the verdict.

pub mod prefix;
pub mod table;
pub mod wire;

use crate::cache::layout::Ttl;
use crate::request::BodyFacts;
use crate::splice::Edit;
use crate::usage::Tokens;
use serde::{Deserialize, Serialize};

/// Bounds on one record, so its size (and each update's copy) stays small.
pub const MAX_MODELS: usize = 8;
pub const MAX_AGENTS: usize = 16;
pub const MAX_REASONS: usize = 8;
/// Models whose previous turn an agent keeps (the least recently used goes): the
/// conversation's and a side model's.
pub const MAX_TURNS: usize = 2;
/// Model names are kept to this many bytes.
const MAX_MODEL_LEN: usize = 128;

/// Requests, tokens by bucket and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub tokens: Tokens,
    pub cost_micro_usd: u64,
}

impl Totals {
    fn add(&mut self, t: &Tokens, cost: u64) {
        self.requests += 1;
        self.tokens.add(t);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(cost);
    }

    /// Share of prompt tokens read from the cache (0 with no prompt tokens).
    pub fn cache_hit_ratio(&self) -> f64 {
        match self.tokens.prompt() {
            0 => 0.0,
            prompt => self.tokens.cache_read as f64 / prompt as f64,
        }
    }
}

/// One agent's previous request on a model, as the next one compares itself to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The model the request asked for (the chain's key, with the agent).
    pub model: String,
    /// When it ended (ms since the epoch).
    pub at_ms: u64,
    /// Its response id (`msg_…`), for `diagnostics.previous_message_id`.
    pub message_id: Option<String>,
    /// `None` when `prefix_check` is off.
    pub print: Option<prefix::Fingerprint>,
    /// Prompt tokens the cache held after it (read + written): what the next turn can read.
    pub cached: u64,
    /// The longest TTL its markers asked for, in seconds.
    pub ttl_s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `None`: the session's main agent (requests without `x-claude-code-agent-id`).
    pub id: Option<String>,
    pub parent: Option<String>,
    pub totals: Totals,
    /// Its last turn per model (at most [`MAX_TURNS`]).
    pub turns: Vec<Turn>,
}

impl Agent {
    /// Its previous turn on `model`.
    pub fn turn(&self, model: &str) -> Option<&Turn> {
        self.turns.iter().find(|t| t.model == model)
    }

    fn keep(&mut self, turn: &Turn) {
        self.turns.retain(|t| t.model != turn.model);
        if self.turns.len() >= MAX_TURNS {
            // The least recently used model's turn goes.
            let oldest = self.turns.iter().enumerate().min_by_key(|(_, t)| t.at_ms);
            if let Some(i) = oldest.map(|(i, _)| i) {
                self.turns.remove(i);
            }
        }
        self.turns.push(turn.clone());
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// Who made it: `c:<consumer id>` or `k:<digest of the client credential>` (never the
    /// credential itself); only the same owner may read it.
    pub owner: String,
    pub first_ms: u64,
    pub last_ms: u64,
    pub totals: Totals,
    /// Per served model (the first [`MAX_MODELS`]; later ones count under `other`).
    pub models: Vec<(String, Totals)>,
    /// Per agent (the first [`MAX_AGENTS`]; later ones count under the main agent).
    pub agents: Vec<Agent>,
    /// Anthropic's cache-miss reasons, counted.
    pub misses: Vec<(String, u64)>,
}

/// Who is calling: the agent headers Claude Code sends on subagent requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub session: String,
    pub owner: String,
    pub agent: Option<String>,
    pub parent: Option<String>,
}

/// What the request side learnt about a turn, for its record and the next turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insight {
    /// The model the request asked for (bounded): the chain's key, with the agent.
    pub model: String,
    /// The gateway added `diagnostics` to the body (an optional edit: the request may go
    /// without it).
    pub asked: bool,
    /// The same agent's previous turn on the same model, if the session has one.
    pub previous: Option<Turn>,
    /// Where this turn's prefix stopped matching the previous one's.
    pub changed: Option<prefix::Section>,
    /// This turn's fingerprint (`None` when `prefix_check` is off).
    pub print: Option<prefix::Fingerprint>,
    /// The longest TTL this turn's markers ask for, in seconds.
    pub ttl_s: u64,
}

/// The request side of a turn: the agent's previous turn on the request's model (from the
/// session's record), this turn's fingerprint and where its prefix left the previous one's
/// (with `prefix_check`), the longest TTL its markers ask for (the client's and those the
/// gateway adds), and, when `ask` (a route to the Claude API) and the client sent no
/// `diagnostics` of its own, the insertion asking the API why the cache missed.
pub fn begin(
    record: Option<&Session>,
    agent: Option<&str>,
    body: &[u8],
    facts: &BodyFacts,
    added: &mut dyn Iterator<Item = Ttl>,
    prefix_check: bool,
    ask: bool,
) -> (Insight, Option<Edit>) {
    let model = crate::text::cap(facts.model.clone(), MAX_MODEL_LEN);
    let previous = record
        .and_then(|r| r.agent(agent))
        .and_then(|a| a.turn(&model))
        .cloned();
    let (print, changed) = if prefix_check {
        let before = previous.as_ref().and_then(|t| t.print.as_ref());
        let (print, changed) = prefix::compare(body, facts, before);
        (Some(print), changed)
    } else {
        (None, None)
    };
    let mut ttls = facts.layout.markers.iter().map(|(_, t)| *t).chain(added);
    let ttl_s = if ttls.any(|t| t == Ttl::OneHour) {
        3600
    } else {
        300
    };
    let edit = (ask && facts.member(body, "diagnostics").is_none())
        .then(|| {
            diagnostics_edit(
                body,
                previous.as_ref().and_then(|t| t.message_id.as_deref()),
            )
        })
        .flatten();
    let insight = Insight {
        model,
        asked: edit.is_some(),
        previous,
        changed,
        print,
        ttl_s,
    };
    (insight, edit)
}

/// `"diagnostics":{"previous_message_id":…},` right after the body's opening brace: the
/// previous response id of the same agent and model, or `null` on its first turn (which opts
/// in). `None` if the body does not start with an object.
pub fn diagnostics_edit(body: &[u8], previous: Option<&str>) -> Option<Edit> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut bytes = br#""diagnostics":{"previous_message_id":"#.to_vec();
    match previous.and_then(crate::session::valid) {
        Some(id) => crate::json::write_string(&mut bytes, id),
        None => bytes.extend_from_slice(b"null"),
    }
    bytes.extend_from_slice(b"},");
    Some(Edit::insert(open + 1, bytes))
}

impl Insight {
    /// The turn the next request of this agent on this model compares itself to.
    pub fn turn(&self, message_id: Option<&str>, tokens: &Tokens, end_ms: u64) -> Turn {
        Turn {
            model: self.model.clone(),
            at_ms: end_ms,
            message_id: message_id
                .and_then(crate::session::valid)
                .map(str::to_owned),
            print: self.print,
            cached: tokens.prompt().saturating_sub(tokens.input),
            ttl_s: self.ttl_s,
        }
    }
}

/// What one finished request adds to its session.
#[derive(Debug, Clone, Default)]
pub struct Outcome<'a> {
    pub model: Option<&'a str>,
    pub tokens: Tokens,
    pub cost_micro_usd: u64,
    pub now_ms: u64,
    /// Anthropic's cache-miss reason, if it gave one.
    pub miss_reason: Option<&'a str>,
    /// The turn the next request of this agent on this model compares itself to (`None`:
    /// leave the last).
    pub turn: Option<Turn>,
}

impl Session {
    pub fn new(caller: &Caller, now_ms: u64) -> Session {
        Session {
            id: caller.session.clone(),
            owner: caller.owner.clone(),
            first_ms: now_ms,
            last_ms: now_ms,
            ..Session::default()
        }
    }

    /// The agent's entry, if the session has one.
    pub fn agent(&self, id: Option<&str>) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id.as_deref() == id)
    }

    fn agent_mut(&mut self, caller: &Caller) -> Option<&mut Agent> {
        let known = self
            .agents
            .iter()
            .position(|a| a.id.as_deref() == caller.agent.as_deref());
        let i = match known {
            Some(i) => i,
            None if self.agents.len() < MAX_AGENTS => {
                self.agents.push(Agent {
                    id: caller.agent.clone(),
                    parent: caller.parent.clone(),
                    ..Agent::default()
                });
                self.agents.len() - 1
            }
            // Over the bound: counted under the main agent (one more entry at most).
            None => match self.agents.iter().position(|a| a.id.is_none()) {
                Some(main) => main,
                None => {
                    self.agents.push(Agent::default());
                    self.agents.len() - 1
                }
            },
        };
        self.agents.get_mut(i)
    }

    /// Adds a finished request.
    pub fn add(&mut self, caller: &Caller, o: &Outcome) {
        self.last_ms = self.last_ms.max(o.now_ms);
        self.totals.add(&o.tokens, o.cost_micro_usd);
        let model = o.model.unwrap_or("unknown");
        let known = self.models.iter().position(|(m, _)| m == model);
        let slot = match known {
            Some(i) => self.models.get_mut(i),
            None if self.models.len() < MAX_MODELS => {
                self.models.push((model.to_owned(), Totals::default()));
                self.models.last_mut()
            }
            None => {
                if !self.models.iter().any(|(m, _)| m == "other") {
                    self.models.push(("other".to_owned(), Totals::default()));
                }
                self.models.iter_mut().find(|(m, _)| m == "other")
            }
        };
        if let Some((_, t)) = slot {
            t.add(&o.tokens, o.cost_micro_usd);
        }
        if let Some(a) = self.agent_mut(caller) {
            a.totals.add(&o.tokens, o.cost_micro_usd);
            if let Some(turn) = &o.turn {
                a.keep(turn);
            }
        }
        if let Some(reason) = o.miss_reason {
            let full = self.misses.len() >= MAX_REASONS;
            match self.misses.iter_mut().find(|(r, _)| r == reason) {
                Some((_, n)) => *n += 1,
                None if !full => self.misses.push((reason.to_owned(), 1)),
                None => {}
            }
        }
    }

    /// The stored form (shared data, Redis): postcard, a compact binary serde format, several
    /// times cheaper to read and write than JSON in the VM.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Session> {
        postcard::from_bytes(bytes).ok()
    }

    /// The answer to `GET /v1/gateway/sessions/{id}`: totals, per model, the agent tree.
    pub fn to_json(&self, scope: &str) -> serde_json::Value {
        use serde_json::json;
        let models: Vec<_> = self
            .models
            .iter()
            .map(|(m, t)| json!({"model": m, "usage": totals_json(t)}))
            .collect();
        let misses: serde_json::Map<_, _> = self
            .misses
            .iter()
            .map(|(r, n)| (r.clone(), json!(n)))
            .collect();
        json!({
            "type": "gateway.session",
            "id": self.id,
            "scope": scope,
            "first_seen": crate::time::rfc3339(self.first_ms.saturating_mul(1_000_000)),
            "last_seen": crate::time::rfc3339(self.last_ms.saturating_mul(1_000_000)),
            "usage": totals_json(&self.totals),
            "models": models,
            "agents": self.tree(),
            "cache_miss_reasons": misses,
        })
    }

    /// The agent tree: the main agent and the subagents of no known parent at the top, each
    /// with those it spawned; an agent no walk from the top reaches (a cycle of parents) is put
    /// at the top too, so every agent is shown once.
    fn tree(&self) -> Vec<serde_json::Value> {
        let known = |id: &str| self.agents.iter().any(|a| a.id.as_deref() == Some(id));
        let mut shown = vec![false; self.agents.len()];
        let mut top: Vec<serde_json::Value> = Vec::new();
        for (i, a) in self.agents.iter().enumerate() {
            let root = a.id.is_none() || !a.parent.as_deref().is_some_and(known);
            if root {
                top.push(self.node(i, &mut shown));
            }
        }
        for i in 0..self.agents.len() {
            if !shown.get(i).copied().unwrap_or(true) {
                top.push(self.node(i, &mut shown));
            }
        }
        top
    }

    fn node(&self, i: usize, shown: &mut Vec<bool>) -> serde_json::Value {
        let Some(a) = self.agents.get(i) else {
            return serde_json::Value::Null;
        };
        if let Some(s) = shown.get_mut(i) {
            *s = true;
        }
        let mut children = Vec::new();
        for (j, child) in self.agents.iter().enumerate() {
            let mine = a.id.is_some() && child.id.is_some() && child.parent == a.id;
            if mine && !shown.get(j).copied().unwrap_or(true) {
                children.push(self.node(j, shown));
            }
        }
        serde_json::json!({
            "agent_id": a.id,
            "parent_agent_id": a.parent,
            "usage": totals_json(&a.totals),
            "agents": children,
        })
    }
}

fn totals_json(t: &Totals) -> serde_json::Value {
    serde_json::json!({
        "requests": t.requests,
        "input_tokens": t.tokens.input,
        "cache_write_5m_input_tokens": t.tokens.cache_write_5m,
        "cache_write_1h_input_tokens": t.tokens.cache_write_1h,
        "cache_read_input_tokens": t.tokens.cache_read,
        "output_tokens": t.tokens.output,
        "cost_micro_usd": t.cost_micro_usd,
        "cost_usd": t.cost_micro_usd as f64 / 1e6,
        "cache_hit_ratio": (t.cache_hit_ratio() * 10_000.0).round() / 10_000.0,
    })
}

/// The gateway's own reading of a turn's cache: did it read back what the previous turn of the
/// same agent left in the cache, and if not, why (the first part of the prefix that changed,
/// or the time between the turns against the markers' TTL).
pub fn verdict(
    previous: Option<&Turn>,
    changed: Option<prefix::Section>,
    now_start_ms: u64,
    tokens: &Tokens,
) -> Option<&'static str> {
    let prev = previous?;
    if prev.cached == 0 {
        return None;
    }
    // The cache counts in whole blocks: a read within 5% of what was left counts as read back.
    if tokens.cache_read.saturating_mul(20) >= prev.cached.saturating_mul(19) {
        return Some("hit");
    }
    if let Some(section) = changed {
        return Some(section.changed());
    }
    let idle_s = now_start_ms.saturating_sub(prev.at_ms) / 1000;
    if idle_s >= prev.ttl_s {
        return Some("ttl_expired");
    }
    Some(if tokens.cache_read > 0 {
        "partial"
    } else {
        "unexplained"
    })
}

#[cfg(test)]
mod tests;
