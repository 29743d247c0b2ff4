use super::prefix::{self, Section};
use super::*;
use crate::keys::tests::Memory;
use crate::request;

fn caller(session: &str, agent: Option<&str>, parent: Option<&str>) -> Caller {
    Caller {
        session: session.into(),
        owner: "c:alice".into(),
        agent: agent.map(Into::into),
        parent: parent.map(Into::into),
    }
}

fn outcome(cost: u64, read: u64, now_ms: u64) -> Outcome<'static> {
    Outcome {
        model: Some("claude-sonnet-4-5"),
        tokens: Tokens {
            input: 10,
            cache_write_5m: 100,
            cache_write_1h: 0,
            cache_read: read,
            output: 5,
        },
        cost_micro_usd: cost,
        now_ms,
        miss_reason: None,
        turn: None,
    }
}

#[test]
fn totals_add_up_per_session_model_and_agent() {
    let store = Memory::default();
    let main = caller("s1", None, None);
    let sub = caller("s1", Some("a1"), None);
    let nested = caller("s1", Some("a2"), Some("a1"));
    assert!(table::record(&store, &main, &outcome(100, 0, 1), 64, None));
    assert!(table::record(&store, &sub, &outcome(50, 900, 2), 64, None));
    assert!(table::record(&store, &nested, &outcome(25, 0, 3), 64, None));
    assert!(table::record(
        &store,
        &main,
        &outcome(100, 100, 4),
        64,
        None
    ));
    let s = table::load(&store, "c:alice", "s1", 64).unwrap().session;
    assert_eq!(s.totals.requests, 4);
    assert_eq!(s.totals.cost_micro_usd, 275);
    assert_eq!(s.totals.tokens.cache_read, 1000);
    assert_eq!(s.models.len(), 1);
    assert_eq!(s.agent(None).unwrap().totals.requests, 2);
    assert_eq!(s.agent(Some("a2")).unwrap().parent.as_deref(), Some("a1"));
    assert_eq!((s.first_ms, s.last_ms), (1, 4));
    // The tree: the main agent and a1 at the top, a2 under a1.
    let json = s.to_json("replica");
    let top = json["agents"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    let a1 = top.iter().find(|a| a["agent_id"] == "a1").unwrap();
    assert_eq!(a1["agents"][0]["agent_id"], "a2");
    assert_eq!(a1["agents"][0]["usage"]["cost_micro_usd"], 25);
    assert_eq!(json["usage"]["requests"], 4);
    assert_eq!(json["usage"]["cost_usd"], 0.000275);
    assert!(table::load(&store, "c:alice", "s2", 64).is_none());
    // Another caller's session of the same id is another record, invisible to alice.
    let mallory = Caller {
        owner: "c:mallory".into(),
        ..main.clone()
    };
    assert!(table::record(&store, &mallory, &outcome(7, 0, 5), 64, None));
    assert_eq!(
        table::load(&store, "c:mallory", "s1", 64)
            .unwrap()
            .session
            .totals
            .requests,
        1
    );
    assert_eq!(
        table::load(&store, "c:alice", "s1", 64)
            .unwrap()
            .session
            .totals
            .requests,
        4
    );
}

#[test]
fn the_table_is_bounded_and_evicts_the_least_recently_used_of_a_set() {
    let store = Memory::default();
    // One set of four slots: the fifth session evicts the one used longest ago.
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        assert!(table::record(
            &store,
            &caller(id, None, None),
            &outcome(1, 0, 10 + i as u64),
            4,
            None
        ));
    }
    assert!(table::record(
        &store,
        &caller("a", None, None),
        &outcome(1, 0, 20),
        4,
        None
    ));
    assert!(table::record(
        &store,
        &caller("e", None, None),
        &outcome(1, 0, 21),
        4,
        None
    ));
    assert!(
        table::load(&store, "c:alice", "b", 4).is_none(),
        "b was the least recently used"
    );
    for id in ["a", "c", "d", "e"] {
        assert!(table::load(&store, "c:alice", id, 4).is_some(), "{id}");
    }
    assert_eq!(
        table::load(&store, "c:alice", "a", 4)
            .unwrap()
            .session
            .totals
            .requests,
        2
    );
}

#[test]
fn a_lost_race_is_retried() {
    let store = Memory::default();
    *store.conflicts.borrow_mut() = 3;
    assert!(table::record(
        &store,
        &caller("s", None, None),
        &outcome(1, 0, 1),
        64,
        None
    ));
    assert_eq!(
        table::load(&store, "c:alice", "s", 64)
            .unwrap()
            .session
            .totals
            .requests,
        1
    );
}

#[test]
fn records_stay_bounded() {
    let mut s = Session::new(&caller("s", None, None), 0);
    for i in 0..100 {
        let c = caller("s", Some(&format!("agent-{i}")), None);
        let mut o = outcome(1, 0, i);
        let model = format!("model-{i}");
        o.model = Some(&model);
        o.miss_reason = Some(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][i as usize % 10]);
        s.add(&c, &o);
    }
    assert_eq!(s.agents.len(), MAX_AGENTS + 1);
    assert_eq!(s.models.len(), MAX_MODELS + 1);
    assert_eq!(s.misses.len(), MAX_REASONS);
    assert_eq!(s.totals.requests, 100);
    let per_agent: u64 = s.agents.iter().map(|a| a.totals.requests).sum();
    assert_eq!(per_agent, 100, "every request counted once");
    assert!(s.encode().len() < 16 << 10, "{}", s.encode().len());
}

fn facts(body: &str) -> request::BodyFacts {
    request::inspect(body.as_bytes(), true).unwrap()
}

fn body(system: &str, turns: &[&str]) -> String {
    let mut messages = Vec::new();
    for (i, t) in turns.iter().enumerate() {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(format!(r#"{{"role":"{role}","content":"{t}"}}"#));
    }
    format!(
        r#"{{"model":"claude-sonnet-4-5","system":"{system}","tools":[{{"name":"Bash"}}],"messages":[{}]}}"#,
        messages.join(",")
    )
}

fn compare(now: &str, before: Option<&str>) -> Option<Section> {
    let prev = before.map(|b| prefix::compare(b.as_bytes(), &facts(b), None).0);
    prefix::compare(now.as_bytes(), &facts(now), prev.as_ref()).1
}

#[test]
fn the_prefix_comparison_names_the_first_part_that_changed() {
    let t1 = body("sys", &["hi"]);
    let t2 = body("sys", &["hi", "hello", "more"]);
    let t3 = body("sys", &["hi", "hello", "more", "ok", "again"]);
    assert_eq!(compare(&t1, None), None);
    assert_eq!(compare(&t2, Some(&t1)), None, "the conversation grew");
    assert_eq!(compare(&t3, Some(&t2)), None);
    assert_eq!(compare(&t2, Some(&t2)), None, "a retry");
    let edited = body("sys", &["HI", "hello", "more", "ok", "again"]);
    assert_eq!(compare(&edited, Some(&t2)), Some(Section::Messages));
    let compacted = body("sys", &["summary"]);
    assert_eq!(compare(&compacted, Some(&t3)), Some(Section::Messages));
    let system = body("sys at 10:02", &["hi", "hello", "more"]);
    assert_eq!(compare(&system, Some(&t1)), Some(Section::System));
    let tools = t2.replace("Bash", "Read");
    assert_eq!(compare(&tools, Some(&t1)), Some(Section::Tools));
    let both = system.replace("Bash", "Read");
    assert_eq!(
        compare(&both, Some(&t1)),
        Some(Section::Tools),
        "the first change in cache order wins"
    );
}

fn turn(cached: u64, at_ms: u64, ttl_s: u64) -> Turn {
    Turn {
        model: "claude-sonnet-4-5".into(),
        at_ms,
        message_id: None,
        print: None,
        cached,
        ttl_s,
    }
}

#[test]
fn the_verdict_explains_a_miss() {
    let read = |n| Tokens {
        cache_read: n,
        ..Tokens::default()
    };
    let prev = turn(10_000, 1_000, 300);
    assert_eq!(verdict(None, None, 2_000, &read(0)), None, "first turn");
    assert_eq!(verdict(Some(&turn(0, 0, 300)), None, 2_000, &read(0)), None);
    assert_eq!(
        verdict(Some(&prev), None, 2_000, &read(10_000)),
        Some("hit")
    );
    assert_eq!(verdict(Some(&prev), None, 2_000, &read(9_600)), Some("hit"));
    assert_eq!(
        verdict(Some(&prev), Some(Section::System), 2_000, &read(2_000)),
        Some("system_changed")
    );
    assert_eq!(
        verdict(Some(&prev), None, 1_000 + 301_000, &read(0)),
        Some("ttl_expired")
    );
    assert_eq!(
        verdict(
            Some(&turn(10_000, 1_000, 3600)),
            None,
            1_000 + 301_000,
            &read(0)
        ),
        Some("unexplained"),
        "a 1h marker outlives 5 idle minutes"
    );
    assert_eq!(
        verdict(Some(&prev), None, 2_000, &read(4_000)),
        Some("partial")
    );
}

#[test]
fn a_turn_survives_the_wire() {
    use prost::Message;
    let c = caller("s1", Some("a2"), Some("a1"));
    let mut o = outcome(42, 7, 99);
    o.miss_reason = Some("tools_changed");
    let bytes = wire::Turn::new(&c, &o).encode_to_vec();
    let back = wire::Turn::decode(bytes.as_slice()).unwrap();
    let (c2, o2) = back.parts();
    assert_eq!(c2, c);
    assert_eq!(
        (
            o2.model,
            o2.tokens,
            o2.cost_micro_usd,
            o2.now_ms,
            o2.miss_reason
        ),
        (o.model, o.tokens, o.cost_micro_usd, o.now_ms, o.miss_reason)
    );
    let main = wire::Turn::new(&caller("s1", None, None), &outcome(1, 0, 1));
    assert_eq!(
        wire::Turn::decode(main.encode_to_vec().as_slice())
            .unwrap()
            .parts()
            .0
            .agent,
        None
    );
}

#[test]
fn an_agent_keeps_one_turn_per_model_and_drops_the_oldest() {
    let mut s = Session::new(&caller("s", None, None), 0);
    let main = caller("s", None, None);
    for (i, model) in ["opus", "haiku", "opus", "m3"].iter().enumerate() {
        let mut o = outcome(1, 0, i as u64);
        o.turn = Some(Turn {
            model: (*model).into(),
            ..turn(10, i as u64, 300)
        });
        s.add(&main, &o);
    }
    let a = s.agent(None).unwrap();
    assert_eq!(a.turns.len(), MAX_TURNS);
    assert!(
        a.turn("haiku").is_none(),
        "the least recently used model went"
    );
    assert_eq!(a.turn("opus").unwrap().at_ms, 2, "the latest opus turn");
    assert!(a.turn("m3").is_some());
}

fn begin_on(
    body: &str,
    record: Option<&Session>,
    prefix_check: bool,
    ask: bool,
) -> (Insight, Option<String>) {
    let f = facts(body);
    let (insight, edit) = begin(
        record,
        None,
        body.as_bytes(),
        &f,
        &mut std::iter::empty(),
        prefix_check,
        ask,
    );
    let out = edit.map(|e| String::from_utf8(crate::splice::apply(body.as_bytes(), &[e])).unwrap());
    (insight, out)
}

#[test]
fn the_diagnostics_field_goes_first_and_names_the_previous_turn_of_the_model() {
    let t1 = body("sys", &["hi"]);
    let (insight, sent) = begin_on(&format!("  {t1}"), None, true, true);
    let sent = sent.unwrap();
    assert!(
        sent.starts_with(r#"  {"diagnostics":{"previous_message_id":null},"model""#),
        "{sent}"
    );
    let v: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert!(insight.asked && insight.previous.is_none() && insight.print.is_some());
    assert_eq!(insight.ttl_s, 300);

    // The turn it leaves, with prefix_check off too: the next one still names it.
    for prefix_check in [true, false] {
        let (i, _) = begin_on(&t1, None, prefix_check, true);
        let mut s = Session::new(&caller("s", None, None), 0);
        let mut o = outcome(1, 0, 5);
        o.turn = Some(i.turn(Some("msg_01Abc"), &o.tokens, 5));
        s.add(&caller("s", None, None), &o);
        let t2 = body("sys", &["hi", "hello", "more"]);
        let (next, sent) = begin_on(&t2, Some(&s), prefix_check, true);
        assert!(
            sent.unwrap()
                .starts_with(r#"{"diagnostics":{"previous_message_id":"msg_01Abc"},"#)
        );
        assert_eq!(
            next.previous.as_ref().unwrap().cached,
            100,
            "reads and writes"
        );
        assert_eq!(next.changed, None);
        // Another model's chain is its own.
        let (other, sent) = begin_on(&t2.replace("sonnet", "haiku"), Some(&s), prefix_check, true);
        assert!(other.previous.is_none());
        assert!(sent.unwrap().contains(r#""previous_message_id":null"#));
    }
    // A client's own diagnostics, or a route that does not ask: no edit.
    let own = t1.replacen(
        '{',
        r#"{"diagnostics":{"previous_message_id":"msg_mine"},"#,
        1,
    );
    assert_eq!(begin_on(&own, None, true, true).1, None);
    assert_eq!(begin_on(&t1, None, true, false).1, None);
    // An id that is not one is not written into a body.
    assert_eq!(
        diagnostics_edit(b"{}", Some("msg\",\"x\":1")).map(|e| e.bytes),
        Some(br#""diagnostics":{"previous_message_id":null},"#.to_vec())
    );
    assert!(diagnostics_edit(b"[1]", None).is_none());
}

#[test]
fn every_agent_is_in_the_tree_once_even_in_a_cycle_of_parents() {
    let mut s = Session::new(&caller("s", None, None), 0);
    for (agent, parent) in [
        ("a", Some("b")),
        ("b", Some("a")),
        ("c", Some("c")),
        ("d", Some("gone")),
    ] {
        s.add(&caller("s", Some(agent), parent), &outcome(100, 0, 1));
    }
    let tree = s.to_json("replica");
    fn count(nodes: &serde_json::Value) -> usize {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| 1 + count(&n["agents"]))
            .sum()
    }
    assert_eq!(count(&tree["agents"]), 4, "{tree}");
}

#[test]
fn a_record_at_every_bound_stays_small() {
    let long = "x".repeat(128);
    let mut s = Session::new(&caller(&long, None, None), 0);
    for i in 0..40 {
        let agent = format!("{}{i:03}", &long[..125]);
        let c = caller(&long, Some(&agent), Some(&long));
        for (k, model) in ["claude-opus-4-8-20261101", "claude-haiku-4-5-20251001"]
            .iter()
            .enumerate()
        {
            let mut o = outcome(1, 0, i);
            let m = format!("{model}{}", "-long".repeat(30));
            o.model = Some(&m);
            o.miss_reason = Some("previous_message_not_found");
            o.turn = Some(Turn {
                model: m.clone(),
                message_id: Some(format!("msg_{}", "a".repeat(26))),
                print: Some(prefix::Fingerprint {
                    tools: u64::MAX,
                    system: u64::MAX,
                    cut: u64::MAX,
                    cut_hash: u64::MAX,
                }),
                ..turn(u64::MAX, i * 2 + k as u64, 3600)
            });
            s.add(&c, &o);
        }
    }
    let size = s.encode().len();
    println!("a record at every bound: {size} bytes");
    assert!(size < 14 << 10, "{size}");
}

#[test]
fn a_record_read_at_the_start_is_written_back_and_a_stale_one_is_read_again() {
    let store = Memory::default();
    let main = caller("s1", None, None);
    assert!(table::record(&store, &main, &outcome(1, 0, 1), 64, None));
    // Two requests of the session start with the same record; the first to end writes it at
    // its version, the second finds the version moved and adds to what is there.
    let first = table::load(&store, "c:alice", "s1", 64);
    let second = table::load(&store, "c:alice", "s1", 64);
    assert!(first.is_some() && second.is_some());
    assert!(table::record(&store, &main, &outcome(1, 0, 2), 64, first));
    assert!(table::record(&store, &main, &outcome(1, 0, 3), 64, second));
    let s = table::load(&store, "c:alice", "s1", 64).unwrap().session;
    assert_eq!(s.totals.requests, 3);
    assert_eq!(s.totals.cost_micro_usd, 3);
}
