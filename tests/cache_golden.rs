//! Golden tests of the cache rewriter on bodies shaped like real traffic
//! (`tests/fixtures/cache/<case>.json` -> `<case>.out.json`, compared byte for byte), with the
//! default configuration. `UPDATE_GOLDEN=1 cargo test --test cache_golden` rewrites the
//! expected files; review their diff before committing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/bodies.rs"]
#[allow(dead_code)]
mod bodies;

use std::path::PathBuf;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cache");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_str().unwrap().ends_with(".json") && !p.to_str().unwrap().ends_with(".out.json")
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 7, "fixtures missing in {}", dir.display());
    inputs
}

#[test]
fn rewritten_fixtures_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for input in fixtures() {
        let body = std::fs::read(&input).unwrap();
        let got = bodies::rewritten(&body);
        let golden = input.with_extension("out.json");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read(&golden)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", golden.display()));
        assert!(
            got == want,
            "{} differs from its golden file",
            input.display()
        );
        serde_json::from_slice::<serde_json::Value>(&got).expect("valid JSON");
        assert_eq!(
            bodies::rewritten(&got),
            got,
            "{}: not a fixed point",
            input.display()
        );
    }
}

#[test]
fn a_5_mib_claude_code_body() {
    let body = bodies::claude_code("claude-opus-4-8", true, 5 << 20);
    let got = bodies::rewritten(&body);
    let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
    let mut found: Vec<String> = bodies::markers(&v).into_iter().map(|(p, _)| p).collect();
    found.sort();
    let last = v["messages"].as_array().unwrap().len() - 1;
    // Claude Code's two system markers, plus the two conversation breakpoints: the last user
    // turn (a string, converted) and the previous one, whose last block is a text after the tool
    // result. The tools are below Opus 4.8's 1,024-token minimum, so they get none.
    let mut want = vec![
        format!(".messages[{}].content[1]", last - 2),
        format!(".messages[{last}].content[0]"),
        ".system[1]".to_owned(),
        ".system[2]".to_owned(),
    ];
    want.sort();
    assert_eq!(found, want);
    let marker = br#","cache_control":{"type":"ephemeral"}"#.len();
    let conversion = br#"[{"type":"text","text":"#.len() + b"}]".len();
    assert_eq!(got.len(), body.len() + 2 * marker + conversion);
    assert_eq!(bodies::rewritten(&got), got);
}
