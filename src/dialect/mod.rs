//! Upstream dialects: the wire formats of the vendors that sell Claude (cloud-vendors.md). The
//! client always speaks the Anthropic Messages API (or, on their own paths, Bedrock's or Vertex
//! AI's); each route names the format its upstream speaks, and this module turns a planned
//! request into that format as splice edits, a path and header changes (`outbound`), reads the
//! vendors' own request paths (`inbound`), and maps their answers back (`answer`).
//!
//! The filter holds no cloud credential: Envoy signs or authenticates the request after it.

pub mod answer;
pub mod inbound;
pub mod outbound;
mod path;
pub mod policy;

pub use policy::{Policies, Policy};

/// The wire format an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The Messages API as Anthropic serves it (and Anthropic-compatible vendors).
    Anthropic,
    /// Bedrock InvokeModel / InvokeModelWithResponseStream (AWS event stream).
    Bedrock,
    /// Bedrock's Messages API surface (`/anthropic/v1/messages`, plain SSE).
    BedrockMessages,
    /// Vertex AI rawPredict / streamRawPredict.
    Vertex,
    /// Microsoft Foundry (`/anthropic/v1/messages`, `model` is the deployment name).
    Foundry,
}

impl Dialect {
    pub const ALL: [Dialect; 5] = [
        Dialect::Anthropic,
        Dialect::Bedrock,
        Dialect::BedrockMessages,
        Dialect::Vertex,
        Dialect::Foundry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::Bedrock => "bedrock",
            Dialect::BedrockMessages => "bedrock-messages",
            Dialect::Vertex => "vertex",
            Dialect::Foundry => "foundry",
        }
    }

    pub fn from_name(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// `gen_ai.provider.name` in the OpenTelemetry GenAI conventions.
    pub fn provider(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::Bedrock | Dialect::BedrockMessages => "aws.bedrock",
            Dialect::Vertex => "gcp.vertex_ai",
            Dialect::Foundry => "azure.ai.inference",
        }
    }

    /// Credentials come from Envoy by default (the client's are never forwarded to a cloud).
    pub fn envoy_credentials(self) -> bool {
        self != Dialect::Anthropic
    }
}
