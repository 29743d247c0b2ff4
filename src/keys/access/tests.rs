use super::*;
use crate::config::parse_with_env;
use crate::keys::sha256_hex;
use crate::keys::tests::Memory;

const NOW: u64 = 1_795_000_000_000;

fn config(extra: &str) -> Config {
    let doc = format!(
        r#"{{"identity":"virtual",
        "key_pools":{{"team":{{"keys":[{{"alias":"a","env":"KEY_A"}},{{"alias":"b","env":"KEY_B"}}],"cooldown_seconds":20}}}},
        "default_route":{{"name":"anthropic","cluster":"anthropic","key_pool":"team","auth":"x-api-key"}},
        "consumers":[{{"id":"alice","key_sha256":["{}"],"cost_center":"eng",
            "limits":{{"requests_per_minute":2,"input_tokens_per_minute":1000}}}},
          {{"id":"bob","key_sha256":["{}"],"models":["claude-haiku-*"]}}]{extra}}}"#,
        sha256_hex("vk-alice"),
        sha256_hex("vk-bob")
    );
    parse_with_env(doc.as_bytes(), &|name| Some(format!("sk-{name}"))).unwrap()
}

const OPUS: Asks = Asks::Model(Some("claude-opus-4-8"));

/// Identifies and admits a request presenting `key`: its consumer and pool key.
fn admit_as<'c>(
    c: &'c Config,
    key: &str,
    asks: Asks,
    store: &Memory,
    now: u64,
) -> Result<(&'c str, usize), Denied> {
    let route = &c.routes.default;
    let consumer = identify(c, route, &[key])?.unwrap();
    let (_, k) = admit(c, route, consumer, asks, Some("s1"), store, now)?.unwrap();
    Ok((consumer.id.as_str(), k))
}

#[test]
fn virtual_keys_are_authenticated_and_authorized() {
    let c = config("");
    let store = Memory::default();
    let d = admit_as(&c, "vk-unknown", OPUS, &store, NOW).unwrap_err();
    assert_eq!(
        (d.status, d.error_type, d.reason()),
        (401, "authentication_error", "unauthenticated")
    );
    let d = admit_as(&c, "vk-bob", OPUS, &store, NOW).unwrap_err();
    assert_eq!((d.status, d.error_type), (403, "permission_error"));
    // A model-limited consumer: a body whose model cannot be read is refused, an endpoint
    // without a model (`/v1/models`) is not.
    let unreadable = admit_as(&c, "vk-bob", Asks::Model(None), &store, NOW);
    assert_eq!(unreadable.unwrap_err().status, 403);
    assert!(
        admit_as(
            &c,
            "vk-bob",
            Asks::Model(Some("claude-haiku-4-5")),
            &store,
            NOW
        )
        .is_ok()
    );
    assert!(admit_as(&c, "vk-bob", Asks::Other, &store, NOW).is_ok());
    let (id, key) = admit_as(&c, "vk-alice", OPUS, &store, NOW).unwrap();
    assert_eq!(id, "alice");
    assert_eq!(c.pools[0].keys[key].secret, ["sk-KEY_A", "sk-KEY_B"][key]);
}

#[test]
fn the_request_rate_is_limited_per_consumer() {
    let c = config("");
    let store = Memory::default();
    assert!(admit_as(&c, "vk-alice", OPUS, &store, NOW).is_ok());
    assert!(admit_as(&c, "vk-alice", OPUS, &store, NOW).is_ok());
    let d = admit_as(&c, "vk-alice", OPUS, &store, NOW).unwrap_err();
    assert_eq!(
        (d.status, d.reason(), d.retry_after_s),
        (429, "requests_per_minute", Some(30))
    );
    assert!(d.message.contains("2 requests per minute"));
    assert!(admit_as(&c, "vk-alice", OPUS, &store, NOW + 30_000).is_ok());
}

#[test]
fn tokens_are_charged_after_the_fact_and_checked_before() {
    let c = config("");
    let store = Memory::default();
    let alice = &c.consumers[0];
    settle(&c, alice, 1500, 10, 0, &store, NOW);
    let d = admit_as(&c, "vk-alice", OPUS, &store, NOW).unwrap_err();
    assert_eq!(d.reason(), "input_tokens_per_minute");
    // 500 tokens of debt at 1000 per minute: 30 s (and a bit).
    assert_eq!(d.retry_after_s, Some(31));
}

#[test]
fn budgets_are_enforced_per_cost_center_and_name_the_budget() {
    let c = config(r#","budgets":{"eng":{"daily_usd":1.5,"monthly_usd":100}}"#);
    let store = Memory::default();
    let alice = &c.consumers[0];
    settle(&c, alice, 0, 0, 1_000_000, &store, NOW);
    assert!(admit_as(&c, "vk-alice", OPUS, &store, NOW).is_ok());
    settle(&c, alice, 0, 0, 600_000, &store, NOW);
    let d = admit_as(&c, "vk-alice", OPUS, &store, NOW).unwrap_err();
    assert_eq!((d.status, d.reason()), (429, "budget_daily"));
    assert!(
        d.message
            .contains("daily budget of cost center `eng` ($1.50)"),
        "{}",
        d.message
    );
    assert!(!d.message.contains("vk-") && !d.message.contains("sk-"));
    // The next day starts from zero.
    let (_, tomorrow) = Period::Day.window(NOW);
    assert!(admit_as(&c, "vk-alice", OPUS, &store, tomorrow).is_ok());
}

#[test]
fn keys_cool_down_and_the_pool_answers_when_all_are_cooling() {
    let c = config("");
    let store = Memory::default();
    let pool = &c.pools[0];
    let first = pick_key(pool, Some("s1"), &store, NOW).unwrap();
    let retry = Observed {
        status: 429,
        retry_after_s: Some(7),
        exhausted_until: None,
    };
    assert!(learn(pool, first, &retry, &store, NOW));
    let second = pick_key(pool, Some("s1"), &store, NOW).unwrap();
    assert_ne!(first, second, "spilled over to the other key");
    let overloaded = Observed {
        status: 529,
        retry_after_s: None,
        exhausted_until: None,
    };
    assert!(learn(pool, second, &overloaded, &store, NOW));
    let d = pick_key(pool, Some("s1"), &store, NOW).unwrap_err();
    assert_eq!(
        (d.status, d.reason(), d.retry_after_s),
        (429, "no_key", Some(7))
    );
    assert_eq!(pick_key(pool, Some("s1"), &store, NOW + 7_000), Ok(first));
}

#[test]
fn passthrough_routes_need_no_gateway_key() {
    let c = parse_with_env(b"{}", &|_| None).unwrap();
    assert_eq!(identify(&c, &c.routes.default, &[]), Ok(None));
}
