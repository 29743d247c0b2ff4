//! The request plan: what the filter does to one request, decided in pure code from the
//! configuration, the endpoint and the buffered body. The filter only applies it.

use crate::config::Config;
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};

#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'c> {
    /// Upstream cluster, written into the routing header (always: a client never chooses).
    pub cluster: &'c str,
    /// What the body says, or why it is forwarded untouched.
    pub body: Result<BodyFacts, BodyIssue>,
}

/// Plans a request to one of the endpoints the gateway acts on. `body` is `None` when the
/// request has none.
pub fn plan<'c>(config: &'c Config, _endpoint: Endpoint, body: Option<&[u8]>) -> Plan<'c> {
    let body = match body {
        Some(bytes) if !bytes.is_empty() => request::inspect(bytes),
        _ => Err(BodyIssue::Empty),
    };
    Plan {
        cluster: &config.default_cluster,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_everything_to_the_default_cluster() {
        let config = crate::config::parse(b"").unwrap();
        let p = plan(&config, Endpoint::Messages, Some(br#"{"model":"m"}"#));
        assert_eq!(p.cluster, "anthropic");
        assert_eq!(p.body.unwrap().model, "m");
        let p = plan(&config, Endpoint::Messages, None);
        assert_eq!(p.cluster, "anthropic");
        assert_eq!(p.body, Err(BodyIssue::Empty));
        let p = plan(&config, Endpoint::CountTokens, Some(b"nope"));
        assert_eq!(p.body, Err(BodyIssue::InvalidJson));
    }
}
