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
    let Some(Caller::Configured(i)) = identify(c, route, &[key], None)? else {
        panic!("a virtual key's consumer is the configuration's");
    };
    let consumer = &c.consumers[i];
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
    assert_eq!(identify(&c, &c.routes.default, &[], None), Ok(None));
}

fn jwt_config() -> Config {
    let doc = format!(
        r#"{{"identity":"jwt",
        "key_pools":{{"team":{{"keys":[{{"alias":"a","env":"KEY_A"}}]}}}},
        "default_route":{{"name":"anthropic","cluster":"anthropic","key_pool":"team","auth":"x-api-key"}},
        "consumers":[{{"id":"ci-bot","key_sha256":["{}"],"budget":{{"daily_usd":0.001}}}}],
        "jwt":{{"consumer_claim":"email","groups":[
            {{"group":"ml","cost_center":"research","models":["claude-opus-*"],
              "budget":{{"daily_usd":0.002}}}},
            {{"group":"*","cost_center":"everyone","models":["claude-haiku-*"]}}]}}}}"#,
        sha256_hex("vk-ci")
    );
    parse_with_env(doc.as_bytes(), &|name| Some(format!("sk-{name}"))).unwrap()
}

#[test]
fn tokens_name_consumers_by_claim_and_groups_set_their_policy() {
    let c = jwt_config();
    let route = &c.routes.default;
    let claims = serde_json::json!({"email": "dev@example.com", "groups": ["ml"]});
    let Some(Caller::Token(dev)) = identify(&c, route, &[], Some(&claims)).unwrap() else {
        panic!("a token's consumer is made from its claims");
    };
    assert_eq!(
        (
            dev.id.as_str(),
            dev.group.as_deref(),
            dev.cost_center.as_deref()
        ),
        ("dev@example.com", Some("ml"), Some("research"))
    );
    let store = Memory::default();
    assert!(admit(&c, route, &dev, OPUS, None, &store, NOW).is_ok());
    // The catch-all group may use Haiku only.
    let other = serde_json::json!({"email": "pm@example.com", "groups": ["sales"]});
    let pm = identify(&c, route, &[], Some(&other)).unwrap().unwrap();
    let pm = pm.get(&c.consumers).unwrap();
    let d = admit(&c, route, pm, OPUS, None, &store, NOW).unwrap_err();
    assert_eq!((d.status, d.error_type), (403, "permission_error"));
    // No token: a virtual key still works on the same route; neither: 401.
    assert_eq!(
        identify(&c, route, &["vk-ci"], None)
            .unwrap()
            .unwrap()
            .get(&c.consumers)
            .unwrap()
            .id,
        "ci-bot"
    );
    let d = identify(&c, route, &["sk-ant-not-ours"], None).unwrap_err();
    assert_eq!((d.status, d.error_type), (401, "authentication_error"));
}

#[test]
fn a_developers_own_budget_is_kept_apart_from_the_cost_centers() {
    let c = jwt_config();
    let route = &c.routes.default;
    let store = Memory::default();
    let token = |email: &str| serde_json::json!({"email": email, "groups": ["ml"]});
    let caller = |claims: Option<&serde_json::Value>, keys: &[&str]| {
        identify(&c, route, keys, claims).unwrap().unwrap()
    };
    let (dev, other) = (
        caller(Some(&token("dev@example.com")), &[]),
        caller(Some(&token("other@example.com")), &[]),
    );
    let (dev, other) = (
        dev.get(&c.consumers).unwrap(),
        other.get(&c.consumers).unwrap(),
    );
    settle(&c, dev, 0, 0, 2_000, &store, NOW);
    let d = admit(&c, route, dev, OPUS, None, &store, NOW).unwrap_err();
    assert_eq!((d.status, d.reason()), (429, "consumer_budget_daily"));
    assert!(
        d.message
            .contains("daily budget of consumer `dev@example.com` ($0.00)"),
        "{}",
        d.message
    );
    // The same group, another developer: their own budget, untouched.
    assert!(admit(&c, route, other, OPUS, None, &store, NOW).is_ok());
    // A virtual key's consumer has its own budget too.
    let bot = caller(None, &["vk-ci"]);
    let bot = bot.get(&c.consumers).unwrap();
    settle(&c, bot, 0, 0, 1_000, &store, NOW);
    let d = admit(&c, route, bot, OPUS, None, &store, NOW).unwrap_err();
    assert_eq!(d.reason(), "consumer_budget_daily");
}

#[test]
fn the_jwt_section_is_checked() {
    let bad = |doc: &str| {
        parse_with_env(doc.as_bytes(), &|name| Some(format!("sk-{name}")))
            .unwrap_err()
            .to_string()
    };
    let base = r#""key_pools":{"team":{"keys":[{"alias":"a","env":"KEY_A"}]}},
        "default_route":{"name":"anthropic","cluster":"anthropic","key_pool":"team","auth":"x-api-key"}"#;
    assert!(bad(&format!(r#"{{"identity":"jwt",{base}}}"#)).contains("`jwt`"));
    assert!(
        bad(&format!(
            r#"{{"identity":"jwt",{base},"jwt":{{"groups":[]}}}}"#
        ))
        .contains("jwt.groups")
    );
    assert!(
        bad(&format!(
            r#"{{"identity":"virtual",{base},"jwt":{{"groups":[{{"group":"*"}}]}}}}"#
        ))
        .contains("no route has identity")
    );
    assert!(
        bad(&format!(
            r#"{{"identity":"jwt",{base},"jwt":{{"groups":[{{"group":"a","routes":["nope"]}}]}}}}"#
        ))
        .contains("jwt.groups[0].routes[0]")
    );
}
