use super::*;
use crate::request::inspect;
use crate::splice::apply;

const BIG: usize = 5000;

fn settings() -> Settings {
    Settings {
        ttl: Ttl::FiveMinutes,
        automatic: false,
        locations: Locations::ALL,
        min_tokens: 0,
        bytes_per_token: 4,
    }
}

fn rewrite_with(body: &str, s: &Settings) -> (String, Outcome) {
    let facts = inspect(body.as_bytes(), true).unwrap();
    let out = plan(&facts.layout, s);
    let new = String::from_utf8(apply(body.as_bytes(), &out.edits)).unwrap();
    serde_json::from_str::<serde_json::Value>(&new).expect("output must be valid JSON");
    (new, out)
}

fn rewrite(body: &str) -> (String, Outcome) {
    rewrite_with(body, &settings())
}

fn locations(o: &Outcome) -> Vec<(Location, Ttl)> {
    o.added.iter().map(|a| (a.location, a.ttl)).collect()
}

const M5: &str = r#""cache_control":{"type":"ephemeral"}"#;
const M1: &str = r#""cache_control":{"type":"ephemeral","ttl":"1h"}"#;

#[test]
fn plain_sdk_body_gets_tools_system_and_both_user_turns() {
    let body = r#"{"model":"m","tools":[{"name":"a"},{"name":"b"}],"system":"Be brief.","messages":[{"role":"user","content":"one"},{"role":"assistant","content":"two"},{"role":"user","content":"three"}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(
        new,
        format!(
            r#"{{"model":"m","tools":[{{"name":"a"}},{{"name":"b",{M5}}}],"system":[{{"type":"text","text":"Be brief.",{M5}}}],"messages":[{{"role":"user","content":[{{"type":"text","text":"one",{M5}}}]}},{{"role":"assistant","content":"two"}},{{"role":"user","content":[{{"type":"text","text":"three",{M5}}}]}}]}}"#
        )
    );
    assert_eq!(
        locations(&out),
        [
            (Location::Tools, Ttl::FiveMinutes),
            (Location::System, Ttl::FiveMinutes),
            (Location::LastUser, Ttl::FiveMinutes),
            (Location::PreviousUser, Ttl::FiveMinutes)
        ]
    );
}

#[test]
fn client_markers_are_counted_and_never_touched() {
    // Claude Code: markers on system[1], system[2] and a role:"system" message -> one slot left.
    let body = r#"{"model":"m","system":[{"type":"text","text":"billing"},{"type":"text","text":"id","cache_control":{"type":"ephemeral"}},{"type":"text","text":"rules","cache_control":{"type":"ephemeral","scope":"global"}}],"tools":[{"name":"Bash"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"system","content":[{"type":"text","text":"reminder","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":[{"type":"text","text":"go"}]}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(locations(&out), [(Location::Tools, Ttl::FiveMinutes)]);
    assert_eq!(
        new,
        body.replace(r#"{"name":"Bash"}"#, &format!(r#"{{"name":"Bash",{M5}}}"#))
    );
}

#[test]
fn four_markers_mean_no_change() {
    let body = r#"{"model":"m","tools":[{"name":"a","cache_control":{"type":"ephemeral"}}],"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r","cache_control":{"type":"ephemeral"}}]}]},{"role":"user","content":"b"}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(new, body);
    assert_eq!(out.skipped, Some(Skip::Full));
}

#[test]
fn top_level_cache_control_counts_and_stands_down() {
    let body = r#"{"model":"m","cache_control":{"type":"ephemeral"},"messages":[{"role":"user","content":"b"}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(new, body);
    assert_eq!(out.skipped, Some(Skip::ClientAutomatic));
}

#[test]
fn injected_ttl_keeps_the_order_around_client_1h_markers() {
    // Client 1h markers on system: a 5m marker on the tools before them would be a 400.
    let body = r#"{"model":"m","tools":[{"name":"a"}],"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"u"}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(
        locations(&out),
        [
            (Location::Tools, Ttl::OneHour),
            (Location::LastUser, Ttl::FiveMinutes)
        ]
    );
    assert!(new.contains(&format!(r#"{{"name":"a",{M1}}}"#)));
    assert!(out.uses_one_hour());

    // Configured 1h after a client 5m marker must drop to 5m.
    let body = r#"{"model":"m","system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"u"}]}"#;
    let s = Settings {
        ttl: Ttl::OneHour,
        ..settings()
    };
    let (_, out) = rewrite_with(body, &s);
    assert_eq!(locations(&out), [(Location::LastUser, Ttl::FiveMinutes)]);
}

#[test]
fn client_ttl_order_violations_are_left_alone() {
    let body = r#"{"model":"m","system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"u","cache_control":{"type":"ephemeral","ttl":"1h"}}]},{"role":"user","content":"x"}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(new, body);
    assert_eq!(out.skipped, Some(Skip::ClientTtlOrder));
}

#[test]
fn never_marks_thinking_empty_text_or_unknown_blocks() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"text","text":""},{"type":"fallback"}]},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"redacted_thinking","data":"x"}]}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(locations(&out), [(Location::LastUser, Ttl::FiveMinutes)]);
    assert!(new.contains(&format!(r#""data":"AAAA"}},{M5}}}"#)), "{new}");
}

#[test]
fn a_later_client_marker_in_the_message_blocks_an_earlier_one() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"fallback","cache_control":{"type":"ephemeral"}}]}]}"#;
    let (new, out) = rewrite(body);
    assert_eq!(new, body);
    assert_eq!(out.skipped, Some(Skip::NothingEligible));
}

#[test]
fn assistant_prefill_is_not_the_last_user_turn() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"{"}]}"#;
    let (new, _) = rewrite(body);
    assert!(new.contains(&format!(r#""text":"q",{M5}}}]"#)));
    assert!(new.ends_with(r#"{"role":"assistant","content":"{"}]}"#));
}

#[test]
fn short_prefixes_get_no_markers() {
    let body = format!(
        r#"{{"model":"m","tools":[{{"name":"a"}}],"system":"{}","messages":[{{"role":"user","content":"q"}}]}}"#,
        "s".repeat(BIG)
    );
    let s = Settings {
        min_tokens: 1024,
        ..settings()
    };
    let (_, out) = rewrite_with(&body, &s);
    // The tools alone are tiny; system and the conversation are long enough.
    assert_eq!(
        locations(&out),
        [
            (Location::System, Ttl::FiveMinutes),
            (Location::LastUser, Ttl::FiveMinutes)
        ]
    );
    let (new, out) = rewrite_with(
        r#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#,
        &s,
    );
    assert_eq!(out.skipped, Some(Skip::BelowMinimum));
    assert!(!new.contains("cache_control"));
}

#[test]
fn locations_can_be_switched_off() {
    let body = r#"{"model":"m","tools":[{"name":"a"}],"system":"s","messages":[{"role":"user","content":"q"}]}"#;
    let s = Settings {
        locations: Locations {
            tools: false,
            system: false,
            ..Locations::ALL
        },
        ..settings()
    };
    let (_, out) = rewrite_with(body, &s);
    assert_eq!(locations(&out), [(Location::LastUser, Ttl::FiveMinutes)]);
}

#[test]
fn automatic_mode_adds_a_top_level_marker_only_when_there_is_none() {
    let s = Settings {
        automatic: true,
        ttl: Ttl::OneHour,
        ..settings()
    };
    let body = r#"{"model":"m","messages":[{"role":"user","content":"q"}] }"#;
    let (new, out) = rewrite_with(body, &s);
    assert_eq!(
        new,
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"q"}}] ,{M1}}}"#)
    );
    assert_eq!(locations(&out), [(Location::Automatic, Ttl::OneHour)]);
    // With a client marker, block placement fills the free slots instead.
    let body = r#"{"model":"m","system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"q"}]}"#;
    let (_, out) = rewrite_with(body, &s);
    assert_eq!(locations(&out), [(Location::LastUser, Ttl::FiveMinutes)]);
}

#[test]
fn rewriting_is_idempotent() {
    for body in [
        r#"{"model":"m","tools":[{"name":"a"}],"system":"s","messages":[{"role":"user","content":"q"},{"role":"user","content":"r"}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#,
    ] {
        for s in [
            settings(),
            Settings {
                automatic: true,
                ..settings()
            },
        ] {
            let (once, _) = rewrite_with(body, &s);
            let (twice, out) = rewrite_with(&once, &s);
            assert_eq!(once, twice);
            assert!(out.added.is_empty());
        }
    }
}

#[test]
fn empty_objects_and_escaped_strings_splice_cleanly() {
    let body = r#"{"model":"m","tools":[{}],"system":"line\nquote\"","messages":[{"role":"user","content":"\u00e9"}]}"#;
    let (new, _) = rewrite(body);
    let v: serde_json::Value = serde_json::from_str(&new).unwrap();
    assert_eq!(v["tools"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(v["system"][0]["text"], "line\nquote\"");
    assert_eq!(v["messages"][0]["content"][0]["text"], "é");
}
