//! Limits that hold across Envoy replicas: Envoy's global rate-limit filter asks the rate-limit
//! service (`ratelimit/`) on the request path and charges the actual usage when the stream ends
//! (`apply_on_stream_done`). The filter's part is to name the request's consumer, cost center
//! and UTC budget windows, and at the end its tokens and cost, as filter state the bootstrap's
//! descriptors read (`%FILTER_STATE(wasm.<name>:PLAIN)%`, FilterStateInput). Headers would not
//! do for the charge: the router has removed the gateway's own headers by stream end
//! (cross-replica.md §1.2).

use crate::keys::Consumer;

pub const CONSUMER: &str = "claude_gateway_consumer";
pub const COST_CENTER: &str = "claude_gateway_cost_center";
/// A token's consumer's group rule (identity `jwt`): its limits count per member.
pub const GROUP: &str = "claude_gateway_group";
/// The UTC day (`2026-12-02`) and month (`2026-12`) of the request: part of the budget
/// descriptors, so every replica's counters renew at midnight UTC alike.
pub const DAY: &str = "claude_gateway_day";
pub const MONTH: &str = "claude_gateway_month";
/// What the request used, charged at stream end: uncached input plus cache writes (as the
/// local limits count), output, cost in micro-USD.
pub const INPUT_TOKENS: &str = "claude_gateway_input_tokens";
pub const OUTPUT_TOKENS: &str = "claude_gateway_output_tokens";
pub const COST: &str = "claude_gateway_cost_micro_usd";

/// The filter state naming who is calling, set when the consumer is known.
pub fn admission(consumer: &Consumer, now_ms: u64) -> Vec<(&'static str, String)> {
    let date = crate::time::rfc3339(now_ms.saturating_mul(1_000_000));
    let mut out = vec![
        (CONSUMER, consumer.id.clone()),
        (DAY, date.chars().take(10).collect()),
        (MONTH, date.chars().take(7).collect()),
    ];
    if let Some(cc) = &consumer.cost_center {
        out.push((COST_CENTER, cc.clone()));
    }
    if let Some(group) = &consumer.group {
        out.push((GROUP, group.clone()));
    }
    out
}

/// The filter state the stream-end charge reads (also `0`s: a missing value would make Envoy
/// drop the descriptor with a warning).
pub fn charges(input: u64, output: u64, cost_micro_usd: u64) -> [(&'static str, String); 3] {
    [
        (INPUT_TOKENS, input.to_string()),
        (OUTPUT_TOKENS, output.to_string()),
        (COST, cost_micro_usd.to_string()),
    ]
}

/// A `ShouldRateLimit` request with only a domain (no descriptor, so nothing is counted): the
/// gateway's periodic probe of the service, whose answer says whether it is up.
pub fn probe_request(domain: &str) -> Vec<u8> {
    // RateLimitRequest { string domain = 1; ... }
    let mut out = Vec::with_capacity(domain.len() + 3);
    out.push(0x0a);
    let mut len = domain.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(domain.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Limits;

    #[test]
    fn admission_names_the_consumer_and_the_utc_windows() {
        let c = Consumer {
            id: "alice".into(),
            digests: Vec::new(),
            cost_center: Some("platform".into()),
            routes: Vec::new(),
            models: Vec::new(),
            limits: Limits::default(),
            budget: Default::default(),
            group: None,
        };
        // 2026-12-31T23:59:59.999Z
        let state = admission(&c, 1_798_761_599_999);
        assert_eq!(
            state,
            [
                (CONSUMER, "alice".to_owned()),
                (DAY, "2026-12-31".to_owned()),
                (MONTH, "2026-12".to_owned()),
                (COST_CENTER, "platform".to_owned()),
            ]
        );
        let state = admission(
            &Consumer {
                cost_center: None,
                ..c
            },
            1_798_761_600_000,
        );
        assert_eq!(state.get(1).map(|s| s.1.as_str()), Some("2027-01-01"));
        assert_eq!(state.len(), 3);
    }

    #[test]
    fn the_probe_is_a_domain_only_request() {
        use prost::Message;
        #[derive(Clone, PartialEq, prost::Message)]
        struct RateLimitRequest {
            #[prost(string, tag = "1")]
            domain: String,
            #[prost(uint32, tag = "3")]
            hits_addend: u32,
        }
        for domain in ["claude-gateway", &"d".repeat(200)] {
            let r = RateLimitRequest::decode(probe_request(domain).as_slice()).unwrap();
            assert_eq!((r.domain.as_str(), r.hits_addend), (domain, 0));
        }
    }
}
