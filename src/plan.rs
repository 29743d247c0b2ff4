//! The request plan: what the filter does to one request, decided in pure code from the
//! configuration, the endpoint and the buffered body. The filter only applies it.

use crate::cache::{self, Skip};
use crate::config::Config;
use crate::request::{self, BodyFacts, BodyIssue, Endpoint};

#[derive(Debug)]
pub struct Plan<'c> {
    /// Upstream cluster, written into the routing header (always: a client never chooses).
    pub cluster: &'c str,
    /// What the body says, or why it is forwarded untouched.
    pub body: Result<BodyFacts, BodyIssue>,
    /// Cache markers to add (as body edits), or why none are.
    pub cache: cache::Outcome,
    /// Add the extended-TTL beta to `anthropic-beta`.
    pub extended_ttl_beta: bool,
}

/// Plans a request to one of the endpoints the gateway acts on. `body` is `None` when the
/// request has none.
pub fn plan<'c>(config: &'c Config, endpoint: Endpoint, body: Option<&[u8]>) -> Plan<'c> {
    let body = match body {
        Some(bytes) if !bytes.is_empty() => request::inspect(bytes, config.cache.enabled),
        _ => Err(BodyIssue::Empty),
    };
    let cache = match (&body, endpoint) {
        (Err(_), _) => cache::Outcome::default(),
        // Markers change nothing in a token count.
        (Ok(_), Endpoint::CountTokens) => cache::Outcome::skip(Skip::Endpoint),
        (Ok(facts), Endpoint::Messages) => match config.cache.settings_for(&facts.model) {
            Ok(settings) => cache::plan(&facts.layout, &settings),
            Err(skip) => cache::Outcome::skip(skip),
        },
    };
    let extended_ttl_beta = config.cache.extended_ttl_beta && cache.uses_one_hour();
    Plan {
        cluster: &config.default_cluster,
        body,
        cache,
        extended_ttl_beta,
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
        assert_eq!(p.body.unwrap_err(), BodyIssue::Empty);
        let p = plan(&config, Endpoint::CountTokens, Some(b"nope"));
        assert_eq!(p.body.unwrap_err(), BodyIssue::InvalidJson);
    }

    #[test]
    fn count_tokens_gets_no_markers() {
        let config = crate::config::parse(b"").unwrap();
        let body = format!(
            r#"{{"model":"m","system":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
            "x".repeat(10_000)
        );
        let p = plan(&config, Endpoint::CountTokens, Some(body.as_bytes()));
        assert_eq!(p.cache.skipped, Some(Skip::Endpoint));
        let p = plan(&config, Endpoint::Messages, Some(body.as_bytes()));
        assert!(!p.cache.added.is_empty());
    }
}
