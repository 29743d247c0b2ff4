use super::limits::{Bucket, Period, Spend};
use super::pool::{self, KeyState, Observed};
use super::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// An in-memory store with Envoy's CAS semantics; `conflicts` makes the next writes lose races.
#[derive(Default)]
pub struct Memory {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub conflicts: RefCell<u32>,
}

impl SharedStore for Memory {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Write {
        if *self.conflicts.borrow() > 0 {
            *self.conflicts.borrow_mut() -= 1;
            let mut map = self.map.borrow_mut();
            let e = map.entry(key.to_owned()).or_insert((vec![0], 0));
            e.1 += 1; // Someone else's write.
            return Write::Conflict;
        }
        let mut map = self.map.borrow_mut();
        let current = map.get(key).map_or(0, |e| e.1);
        if cas != 0 && cas != current {
            return Write::Conflict;
        }
        map.insert(key.to_owned(), (value.to_vec(), current + 1));
        Write::Done
    }
}

#[test]
fn sha256_matches_the_standard_vectors() {
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

fn consumer(id: &str, key: &str) -> Consumer {
    Consumer {
        id: id.into(),
        digests: vec![sha256_hex(key)],
        cost_center: Some("eng".into()),
        routes: vec![],
        models: vec![],
        limits: Limits::default(),
        budget: Default::default(),
        group: None,
    }
}

#[test]
fn authenticates_by_digest_from_either_header() {
    let cs = [consumer("alice", "vk-alice"), consumer("bob", "vk-bob")];
    let id = |x: Option<&str>, auth: Option<&str>| {
        authenticate(&cs, &presented(x, auth)).map(|i| cs[i].id.clone())
    };
    assert_eq!(id(Some("vk-alice"), None).as_deref(), Some("alice"));
    assert_eq!(id(None, Some("Bearer vk-bob")).as_deref(), Some("bob"));
    // Both headers (apiKeyHelper): the one that is known wins.
    assert_eq!(
        id(Some("garbage"), Some("Bearer vk-bob")).as_deref(),
        Some("bob")
    );
    assert_eq!(id(Some("vk-nobody"), None), None);
    assert_eq!(id(None, Some("Basic dXNlcg==")), None);
    assert_eq!(id(None, None), None);
    assert!(format!("{:?}", cs[0]).find("vk-alice").is_none());
}

#[test]
fn consumers_are_limited_to_their_routes_and_models() {
    let mut c = consumer("a", "k");
    c.routes = vec!["opus".into()];
    c.models = vec![crate::pattern::Pattern::new("claude-opus-*").unwrap()];
    assert!(c.allowed("opus", Some("claude-opus-4-8")));
    assert!(!c.allowed("haiku", Some("claude-opus-4-8")));
    assert!(!c.allowed("opus", Some("claude-haiku-4-5")));
    assert!(!c.allowed("opus", None));
}

#[test]
fn update_retries_lost_races() {
    let store = Memory::default();
    *store.conflicts.borrow_mut() = 3;
    let n = update(&store, "k", &mut |v| {
        let n = v.map_or(0, |b| b[0]) + 1;
        (Some(vec![n]), n)
    });
    assert_eq!(n, Some(1));
    *store.conflicts.borrow_mut() = 100;
    assert_eq!(
        update(&store, "k", &mut |_| (Some(vec![9]), ())),
        None,
        "bounded retries"
    );
}

#[test]
fn sessions_stick_to_a_key_and_spill_over_while_it_cools() {
    let now = 1_000_000;
    let free = [KeyState::default(); 3];
    let home = pool::session_slot("session-42", 3);
    for counter in 0..5 {
        assert_eq!(
            pool::select(&free, Some("session-42"), counter, now),
            Ok(home)
        );
    }
    let mut cooling = free;
    cooling[home].cooldown_until = now + 5_000;
    let spill = pool::select(&cooling, Some("session-42"), 0, now).unwrap();
    assert_eq!(spill, (home + 1) % 3);
    // Back home once the cooldown is over.
    assert_eq!(
        pool::select(&cooling, Some("session-42"), 0, now + 5_000),
        Ok(home)
    );
}

#[test]
fn requests_without_a_session_spread_evenly() {
    let free = [KeyState::default(); 3];
    let mut counts = [0; 3];
    for counter in 0..300 {
        counts[pool::select(&free, None, counter, 0).unwrap()] += 1;
    }
    assert_eq!(counts, [100, 100, 100]);
}

#[test]
fn no_usable_key_says_when_one_will_be() {
    let now = 10_000;
    let states = [
        KeyState {
            cooldown_until: now + 3_000,
            exhausted_until: 0,
        },
        KeyState {
            cooldown_until: 0,
            exhausted_until: now + 1_500,
        },
    ];
    assert_eq!(pool::select(&states, None, 0, now), Err(now + 1_500));
    assert_eq!(pool::select(&[], None, 0, now), Err(now));
}

fn headers(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

#[test]
fn cooldowns_follow_retry_after_then_resets_then_the_default() {
    let now = crate::time::parse_rfc3339_ms("2026-11-21T10:00:00Z").unwrap();
    let reset = "2026-11-21T10:00:42Z";
    let o = pool::observe(
        429,
        &mut headers(&[
            ("retry-after", "17"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", reset),
        ]),
    );
    assert_eq!(o.retry_after_s, Some(17));
    let s = pool::learn(KeyState::default(), &o, now, 30_000);
    assert_eq!(s.cooldown_until, now + 17_000);
    assert_eq!(s.exhausted_until, now + 42_000);

    let o = pool::observe(
        429,
        &mut headers(&[
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            ("anthropic-ratelimit-input-tokens-reset", reset),
        ]),
    );
    assert_eq!(
        pool::learn(KeyState::default(), &o, now, 30_000).cooldown_until,
        now + 42_000
    );

    let o = pool::observe(529, &mut headers(&[]));
    let s = pool::learn(KeyState::default(), &o, now, 30_000);
    assert_eq!(s.cooldown_until, now + 30_000);
    // An absurd retry-after is capped, without overflow.
    for absurd in ["99999999999", "18446744073709551615"] {
        let o = pool::observe(429, &mut headers(&[("retry-after", absurd)]));
        assert_eq!(
            pool::learn(KeyState::default(), &o, now, 30_000).cooldown_until,
            now + pool::MAX_RETRY_AFTER_S * 1000
        );
    }
    // A shorter cooldown never shortens a longer one.
    let o = pool::observe(429, &mut headers(&[("retry-after", "1")]));
    assert_eq!(pool::learn(s, &o, now, 30_000).cooldown_until, now + 30_000);
    // A 200 that reports no requests left marks the key exhausted until the reset.
    let o = pool::observe(
        200,
        &mut headers(&[
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", reset),
        ]),
    );
    let s = pool::learn(KeyState::default(), &o, now, 30_000);
    assert_eq!((s.cooldown_until, s.exhausted_until), (0, now + 42_000));
    // Headroom left: nothing changes.
    let o = pool::observe(
        200,
        &mut headers(&[
            ("anthropic-ratelimit-requests-remaining", "999"),
            ("anthropic-ratelimit-requests-reset", reset),
        ]),
    );
    assert_eq!(
        pool::learn(KeyState::default(), &o, now, 30_000),
        KeyState::default()
    );
    assert_eq!(
        o,
        Observed {
            status: 200,
            retry_after_s: None,
            exhausted_until: None
        }
    );
}

#[test]
fn key_states_round_trip() {
    let s = KeyState {
        cooldown_until: 123,
        exhausted_until: 456,
    };
    assert_eq!(KeyState::decode(&s.encode()), s);
    assert_eq!(KeyState::decode(b"short"), KeyState::default());
}

#[test]
fn token_buckets_with_an_injected_clock() {
    // 60 per minute: one per second.
    let mut b = Bucket::decode(None, 60, 0);
    for _ in 0..60 {
        assert_eq!(b.take(60, 1, 0), Ok(()));
    }
    assert_eq!(b.take(60, 1, 0), Err(1000));
    assert_eq!(b.take(60, 1, 999), Err(1));
    assert_eq!(b.take(60, 1, 1000), Ok(()));
    // Never above capacity, however long it rests.
    let mut b = Bucket::decode(None, 60, 0);
    b.take(60, 60, 0).unwrap();
    b.refill_for_tests(60, 10 * 60_000);
    assert_eq!(b.level_milli, 60_000);
    // Tokens are charged after the fact and may go into debt; admission waits for it to clear.
    let mut t = Bucket::decode(None, 1000, 0);
    assert_eq!(t.admit(1000, 0), Ok(()));
    t.charge(1000, 1600, 0);
    assert_eq!(t.level_milli, -600_000);
    assert_eq!(t.admit(1000, 0), Err(36_001));
    assert_eq!(t.admit(1000, 36_001), Ok(()));
    let round = Bucket::decode(Some(&t.encode()), 1000, 99);
    assert_eq!(round, t);
}

#[test]
fn budget_windows_roll_over() {
    let at = |s: &str| crate::time::parse_rfc3339_ms(s).unwrap();
    let (day, end) = Period::Day.window(at("2026-11-21T23:59:59Z"));
    assert_eq!(end, at("2026-11-22T00:00:00Z"));
    assert_eq!(Period::Day.window(at("2026-11-22T00:00:00Z")).0, day + 1);
    let (month, end) = Period::Month.window(at("2026-12-31T12:00:00Z"));
    assert_eq!(month, 2026 * 12 + 12);
    assert_eq!(end, at("2027-01-01T00:00:00Z"));
    assert_eq!(
        Period::Month.window(at("2026-02-01T00:00:00Z")).1,
        at("2026-03-01T00:00:00Z")
    );
    let spent = Spend {
        window: month,
        micro_usd: 5,
    };
    assert_eq!(Spend::decode(Some(&spent.encode()), month), spent);
    assert_eq!(Spend::decode(Some(&spent.encode()), month + 1).micro_usd, 0);
}
