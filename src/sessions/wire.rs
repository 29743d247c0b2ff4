//! The messages between the gateway and the rate-limit service's session store (gRPC service
//! [`SERVICE`], `ratelimit/`), defined once here for both ends (prost derive; no .proto build
//! step). With the global rate-limit service configured, each finished turn is sent to `Add`
//! and `GET /v1/gateway/sessions/{id}` asks `Get`, so totals hold across replicas.
//!
//! ```proto
//! package claude_gateway.sessions.v1;
//! service Sessions { rpc Add(Turn) returns (Added); rpc Get(Key) returns (Found); }
//! ```

use super::{Caller, Outcome};

pub const SERVICE: &str = "claude_gateway.sessions.v1.Sessions";
pub const ADD: &str = "Add";
pub const GET: &str = "Get";

/// One finished turn of a session.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Turn {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub session: String,
    /// Empty: the main agent.
    #[prost(string, tag = "3")]
    pub agent: String,
    #[prost(string, tag = "4")]
    pub parent: String,
    #[prost(string, tag = "5")]
    pub model: String,
    #[prost(uint64, tag = "6")]
    pub input_tokens: u64,
    #[prost(uint64, tag = "7")]
    pub cache_write_5m_input_tokens: u64,
    #[prost(uint64, tag = "8")]
    pub cache_write_1h_input_tokens: u64,
    #[prost(uint64, tag = "9")]
    pub cache_read_input_tokens: u64,
    #[prost(uint64, tag = "10")]
    pub output_tokens: u64,
    #[prost(uint64, tag = "11")]
    pub cost_micro_usd: u64,
    /// When it ended, ms since the epoch.
    #[prost(uint64, tag = "12")]
    pub at_ms: u64,
    /// Anthropic's cache-miss reason; empty: none.
    #[prost(string, tag = "13")]
    pub miss_reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Added {}

/// A session, as its owner names it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Key {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub session: String,
}

/// The session as `GET /v1/gateway/sessions/{id}` answers it (JSON); empty: not found.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Found {
    #[prost(bytes = "vec", tag = "1")]
    pub json: Vec<u8>,
}

impl Turn {
    pub fn new(caller: &Caller, o: &Outcome) -> Turn {
        Turn {
            owner: caller.owner.clone(),
            session: caller.session.clone(),
            agent: caller.agent.clone().unwrap_or_default(),
            parent: caller.parent.clone().unwrap_or_default(),
            model: o.model.unwrap_or("unknown").to_owned(),
            input_tokens: o.tokens.input,
            cache_write_5m_input_tokens: o.tokens.cache_write_5m,
            cache_write_1h_input_tokens: o.tokens.cache_write_1h,
            cache_read_input_tokens: o.tokens.cache_read,
            output_tokens: o.tokens.output,
            cost_micro_usd: o.cost_micro_usd,
            at_ms: o.now_ms,
            miss_reason: o.miss_reason.unwrap_or_default().to_owned(),
        }
    }

    /// The caller and outcome back (the service adds them to its copy of the session).
    pub fn parts(&self) -> (Caller, Outcome<'_>) {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let caller = Caller {
            session: self.session.clone(),
            owner: self.owner.clone(),
            agent: some(&self.agent),
            parent: some(&self.parent),
        };
        let outcome = Outcome {
            model: Some(self.model.as_str()),
            tokens: crate::usage::Tokens {
                input: self.input_tokens,
                cache_write_5m: self.cache_write_5m_input_tokens,
                cache_write_1h: self.cache_write_1h_input_tokens,
                cache_read: self.cache_read_input_tokens,
                output: self.output_tokens,
            },
            cost_micro_usd: self.cost_micro_usd,
            now_ms: self.at_ms,
            miss_reason: (!self.miss_reason.is_empty()).then_some(self.miss_reason.as_str()),
            turn: None,
        };
        (caller, outcome)
    }
}
