//! The scanner and the cache rewriter on arbitrary bytes: no panic, and valid JSON in gives
//! valid JSON out that equals the input once the inserted bytes are removed.

#![no_main]

use claude_gateway::cache::{self, Locations, Settings, Ttl};
use claude_gateway::{json, request, splice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the settings; the rest is the body.
    let Some((&knobs, body)) = data.split_first() else { return };
    let settings = Settings {
        ttl: if knobs & 1 == 0 { Ttl::FiveMinutes } else { Ttl::OneHour },
        automatic: knobs & 2 != 0,
        locations: Locations {
            tools: knobs & 4 == 0,
            system: knobs & 8 == 0,
            last_user: knobs & 16 == 0,
            previous_user: knobs & 32 == 0,
        },
        min_tokens: u64::from(knobs >> 6),
        bytes_per_token: 1,
    };
    let serde_ok = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    if serde_ok {
        assert!(json::validate(body).is_ok(), "the scanner rejected valid JSON");
    }
    let Ok(facts) = request::inspect(body, true) else { return };
    let plan = cache::plan(&facts.layout, &settings);
    let out = splice::apply(body, &plan.edits);
    if serde_ok {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
            "valid JSON in, invalid JSON out"
        );
    }
    // Removing the inserted bytes gives back the input.
    let mut back = Vec::with_capacity(body.len());
    let mut from = 0;
    for e in &plan.edits {
        back.extend_from_slice(&body[from..e.at]);
        from = e.at;
    }
    back.extend_from_slice(&body[from..]);
    assert_eq!(back, body);
    assert_eq!(out.len(), body.len() + plan.edits.iter().map(|e| e.bytes.len()).sum::<usize>());
});
