//! Consumers from a verified token's claims. Envoy's `jwt_authn` filter checks the token
//! (signature, issuer, audience, expiry) before the gateway filter and writes its payload into
//! dynamic metadata, which a client cannot write; this module only maps claims to a consumer:
//! its id from one claim, its policy (cost center, routes, models, limits, own budget) from the
//! first group rule that one of its groups matches, in the configured order.

use super::Consumer;
use super::access::Denied;
use serde_json::Value;

/// Where the claims are and how they map to consumers.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// The key `jwt_authn` writes the payload under (`payload_in_metadata`).
    pub metadata_key: String,
    /// The claim naming the consumer (`sub`, `email`).
    pub consumer_claim: String,
    /// The claim holding the groups (`groups`, `roles`): an array of strings, or one string.
    pub groups_claim: String,
    /// First match wins; a rule for group `*` matches every token.
    pub rules: Vec<GroupRule>,
}

/// One group's policy, as a consumer without an id.
#[derive(Debug, Clone)]
pub struct GroupRule {
    pub group: String,
    pub policy: Consumer,
}

/// Longest consumer id taken from a claim (longer ones are refused, not cut: two people must
/// never share a consumer).
const MAX_ID: usize = 256;

fn unauthenticated(message: &str) -> Denied {
    Denied {
        status: 401,
        error_type: "authentication_error",
        message: message.to_owned(),
        retry_after_s: None,
        details: "claude_gateway.unauthenticated",
    }
}

/// The groups a claim value lists.
fn groups(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// The claims of a verified token from Envoy's serialization of `jwt_authn`'s dynamic
/// metadata (`metadata.filter_metadata["envoy.filters.http.jwt_authn"]`): a map in the
/// proxy-wasm pairs format, whose entry `key` is the payload, itself such a map; a string claim
/// is its bytes, a list claim a map of its items, a number 8 bytes of a double (skipped).
pub fn claims_from_metadata(bytes: &[u8], key: &str) -> Option<Value> {
    use crate::header_pairs::decode_exact;
    let (_, payload) = decode_exact(bytes)?
        .into_iter()
        .find(|(k, _)| *k == key.as_bytes())?;
    let mut claims = serde_json::Map::new();
    for (name, value) in decode_exact(payload)? {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let items = decode_exact(value).filter(|items| items.iter().all(|(_, v)| v.is_empty()));
        let claim = match items {
            Some(items) => Value::Array(
                items
                    .iter()
                    .filter_map(|(item, _)| std::str::from_utf8(item).ok())
                    .map(|item| Value::String(item.to_owned()))
                    .collect(),
            ),
            None => match std::str::from_utf8(value) {
                Ok(text) => Value::String(text.to_owned()),
                Err(_) => continue,
            },
        };
        claims.insert(name.to_owned(), claim);
    }
    Some(Value::Object(claims))
}

/// The consumer a verified token's claims make, or why the token gets no access.
pub fn consumer(jwt: &Jwt, claims: &Value) -> Result<Consumer, Denied> {
    let id = match claims.get(&jwt.consumer_claim) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID => s.clone(),
        _ => {
            return Err(unauthenticated(&format!(
                "The token has no usable `{}` claim to name its caller.",
                jwt.consumer_claim
            )));
        }
    };
    let theirs = groups(claims.get(&jwt.groups_claim));
    let Some(rule) = jwt
        .rules
        .iter()
        .find(|r| r.group == "*" || theirs.contains(&r.group.as_str()))
    else {
        return Err(Denied {
            status: 403,
            error_type: "permission_error",
            message: format!("`{id}` is in no group with access to this gateway."),
            retry_after_s: None,
            details: "claude_gateway.forbidden",
        });
    };
    Ok(Consumer {
        id,
        group: Some(rule.group.clone()),
        ..rule.policy.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ConsumerBudget, Limits};
    use serde_json::json;

    fn rule(group: &str, cost_center: &str) -> GroupRule {
        GroupRule {
            group: group.into(),
            policy: Consumer {
                id: String::new(),
                digests: Vec::new(),
                cost_center: Some(cost_center.into()),
                routes: Vec::new(),
                models: Vec::new(),
                limits: Limits::default(),
                budget: ConsumerBudget::default(),
                group: None,
            },
        }
    }

    fn jwt(rules: Vec<GroupRule>) -> Jwt {
        Jwt {
            metadata_key: "jwt_payload".into(),
            consumer_claim: "email".into(),
            groups_claim: "groups".into(),
            rules,
        }
    }

    #[test]
    fn claims_are_read_from_envoys_serialization_of_the_metadata() {
        use crate::header_pairs::encode;
        // As Envoy 1.40 hands it over (seen in the end-to-end tests): strings as bytes, a list
        // as a map of its items, numbers as doubles.
        let exp = 1_795_000_000f64.to_le_bytes();
        let groups = encode(&[("engineering", ""), ("ml", "")]);
        let mut payload = Vec::new();
        let entries: [(&str, &[u8]); 4] = [
            ("email", b"dev@example.com"),
            ("exp", &exp),
            ("groups", &groups),
            ("iss", b"https://idp.example.com"),
        ];
        payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (k, v) in entries {
            payload.extend_from_slice(&(k.len() as u32).to_le_bytes());
            payload.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in entries {
            payload.extend_from_slice(k.as_bytes());
            payload.push(0);
            payload.extend_from_slice(v);
            payload.push(0);
        }
        let mut outer = Vec::new();
        outer.extend_from_slice(&1u32.to_le_bytes());
        outer.extend_from_slice(&11u32.to_le_bytes());
        outer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        outer.extend_from_slice(b"jwt_payload\0");
        outer.extend_from_slice(&payload);
        outer.push(0);
        let claims = claims_from_metadata(&outer, "jwt_payload").unwrap();
        assert_eq!(
            claims,
            json!({"email": "dev@example.com", "groups": ["engineering", "ml"],
                   "iss": "https://idp.example.com"})
        );
        assert_eq!(claims_from_metadata(&outer, "other"), None);
        assert_eq!(
            claims_from_metadata(&outer[..outer.len() - 2], "jwt_payload"),
            None
        );
        assert_eq!(claims_from_metadata(b"", "jwt_payload"), None);
    }

    #[test]
    fn the_first_rule_a_group_matches_decides() {
        let j = jwt(vec![rule("ml", "research"), rule("eng", "platform")]);
        let c = consumer(
            &j,
            &json!({"email": "dev@example.com", "groups": ["eng", "ml"]}),
        )
        .unwrap();
        assert_eq!(c.id, "dev@example.com");
        assert_eq!(c.group.as_deref(), Some("ml"));
        assert_eq!(c.cost_center.as_deref(), Some("research"));
        // One string is one group.
        let c = consumer(&j, &json!({"email": "a@example.com", "groups": "eng"})).unwrap();
        assert_eq!(c.group.as_deref(), Some("eng"));
    }

    #[test]
    fn no_group_is_forbidden_unless_a_rule_takes_everyone() {
        let j = jwt(vec![rule("ml", "research")]);
        let e = consumer(&j, &json!({"email": "a@example.com", "groups": ["sales"]})).unwrap_err();
        assert_eq!((e.status, e.error_type), (403, "permission_error"));
        let e = consumer(&j, &json!({"email": "a@example.com"})).unwrap_err();
        assert_eq!(e.status, 403);
        let j = jwt(vec![rule("ml", "research"), rule("*", "everyone")]);
        let c = consumer(&j, &json!({"email": "a@example.com"})).unwrap();
        assert_eq!(c.cost_center.as_deref(), Some("everyone"));
    }

    #[test]
    fn a_token_without_a_usable_id_claim_is_unauthenticated() {
        let j = jwt(vec![rule("*", "everyone")]);
        for claims in [
            json!({"sub": "x"}),
            json!({"email": ""}),
            json!({"email": 7}),
            json!({"email": "x".repeat(MAX_ID + 1)}),
        ] {
            let e = consumer(&j, &claims).unwrap_err();
            assert_eq!((e.status, e.error_type), (401, "authentication_error"));
            assert!(e.message.contains("`email`"), "{}", e.message);
        }
    }
}
