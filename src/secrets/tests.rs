use super::*;
use crate::json::Scanner;

#[path = "../../tests/support/fakes.rs"]
mod fakes;
use fakes::fake;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

pub(crate) fn pem() -> String {
    let body: Vec<String> = (0..6).map(|i| fake(B64, 64, 90 + i)).collect();
    format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
        body.join("\n")
    )
}

/// (rule, text around the secret, the secret) for every shipped rule.
pub(crate) fn positives() -> Vec<(&'static str, String, String)> {
    let aws = format!("AKIA{}", fake(UPPER32, 16, 1));
    let aws_secret = fake(B64, 40, 2);
    let ghp = format!("ghp_{}", fake(ALNUM, 36, 3));
    let pat = format!("github_pat_{}_{}", fake(ALNUM, 22, 4), fake(ALNUM, 59, 5));
    let glpat = format!("glpat-{}", fake(URLSAFE, 20, 6));
    let slack = format!(
        "xoxb-{}-{}-{}",
        fake(b"0123456789", 12, 7),
        fake(b"0123456789", 13, 8),
        fake(ALNUM, 24, 9)
    );
    let stripe = format!("sk_live_{}", fake(ALNUM, 24, 10));
    let google = format!("AIza{}", fake(URLSAFE, 35, 11));
    let anthropic = format!("sk-ant-api03-{}", fake(URLSAFE, 95, 12));
    let openai = format!("sk-proj-{}", fake(URLSAFE, 48, 13));
    let legacy = format!("sk-{}T3BlbkFJ{}", fake(ALNUM, 20, 14), fake(ALNUM, 20, 15));
    let jwt = format!(
        "{}.{}.{}",
        b64url(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(r#"{"sub":"1234567890","name":"Jo"}"#),
        fake(URLSAFE, 43, 16)
    );
    let password = fake(ALNUM, 16, 17);
    vec![
        (
            "aws-access-key-id",
            format!("aws_access_key_id = {aws}\n"),
            aws,
        ),
        (
            "aws-secret-access-key",
            format!("AWS_SECRET_ACCESS_KEY={aws_secret}\nAWS_REGION=eu-west-1"),
            aws_secret.clone(),
        ),
        (
            "aws-secret-access-key",
            format!("{{\"SecretAccessKey\": 1, \"aws_secret_access_key\": \"{aws_secret}\"}}"),
            aws_secret,
        ),
        ("private-key", format!("key:\n{}\n", pem()), pem()),
        ("github-token", format!("token {ghp}."), ghp),
        ("github-token", format!("GH_TOKEN={pat}"), pat),
        ("gitlab-token", format!("x {glpat} y"), glpat),
        ("slack-token", format!("SLACK_BOT_TOKEN={slack}"), slack),
        ("stripe-key", format!("STRIPE_KEY=\"{stripe}\""), stripe),
        ("google-api-key", format!("?key={google}&q=1"), google),
        (
            "anthropic-api-key",
            format!("ANTHROPIC_API_KEY={anthropic}"),
            anthropic,
        ),
        ("openai-api-key", format!("OPENAI_API_KEY={openai}"), openai),
        ("openai-api-key", format!("key: {legacy}"), legacy),
        ("jwt", format!("Authorization: Bearer {jwt}"), jwt),
        (
            "database-url",
            format!("DATABASE_URL=postgres://app:{password}@db.internal:5432/app"),
            password,
        ),
    ]
}

/// Near misses that no rule may report.
fn negatives() -> Vec<String> {
    vec![
        format!("AKIA{}", fake(UPPER32, 15, 1)),
        format!("xAKIA{}", fake(UPPER32, 16, 1)),
        format!("AKIA{}1", fake(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 16, 1)),
        format!("aws_secret_access_key = {}", fake(B64, 39, 2)),
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----".into(),
        "-----BEGIN CERTIFICATE-----".into(),
        format!("ghp_{}", fake(ALNUM, 35, 3)),
        format!("ghx_{}", fake(ALNUM, 36, 3)),
        format!("myghp_{}", fake(ALNUM, 36, 3)),
        "glpat-short".into(),
        "xoxb-not-a-token".into(),
        format!("sk_live_{}", fake(ALNUM, 10, 10)),
        format!("pk_live_{}", fake(ALNUM, 24, 10)),
        format!("AIza{}", fake(URLSAFE, 30, 11)),
        "sk-ant-...".into(),
        "the task-runner and disk-usage".into(),
        format!("sk-{}", fake(ALNUM, 48, 13)),
        format!("eyJ{}.eyJ{}.{}", fake(URLSAFE, 20, 1), fake(URLSAFE, 20, 2), fake(URLSAFE, 20, 3)),
        "postgres://localhost:5432/app".into(),
        "postgres://app:${DB_PASSWORD}@db/app".into(),
        "https://user:pass@example.com/".into(),
        "mysql://root:@localhost/x".into(),
        "See https://docs.anthropic.com/en/api/messages and the secret_access_key docs.".into(),
    ]
}

fn detector(action: Action) -> Detector {
    let rules = shipped()
        .iter()
        .map(|s| Rule::new(s, action))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Detector::new(rules, b"test-key".to_vec())
}

/// The findings in a JSON document, through the scanner as a request body sees them.
fn scan_json(d: &Detector, body: &[u8]) -> Vec<Finding> {
    let mut c = Collector::new(d, body);
    let mut s = Scanner::observed(body, &mut c);
    s.value().unwrap();
    s.finish().unwrap();
    let mut out = c.finish();
    d.assess(body, &mut out);
    out
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A JSON string's encoding without its quotes.
fn inner(text: &str) -> String {
    let s = json_string(text);
    s[1..s.len() - 1].to_owned()
}

/// (rule name, decoded secret) of each finding.
fn found(d: &Detector, body: &[u8]) -> Vec<(String, String)> {
    scan_json(d, body)
        .iter()
        .map(|f| {
            let mut w = Window::default();
            w.fill(body, f.secret.start, f.secret.end, usize::MAX);
            (
                d.rules[f.rule].name.clone(),
                String::from_utf8(w.text).unwrap(),
            )
        })
        .collect()
}

#[test]
fn shipped_rules_parse_and_compile() {
    let specs = shipped();
    assert_eq!(specs.len(), 12);
    let d = detector(Action::Audit);
    assert_eq!(d.rules.len(), 12);
}

#[test]
fn every_rule_finds_its_format_and_only_the_secret() {
    let d = detector(Action::Audit);
    for (rule, text, secret) in positives() {
        let body = format!("{{\"content\":{}}}", json_string(&text));
        assert_eq!(
            found(&d, body.as_bytes()),
            vec![(rule.to_owned(), secret.clone())],
            "{rule}: {body}"
        );
    }
}

#[test]
fn near_misses_are_not_secrets() {
    let d = detector(Action::Audit);
    for text in negatives() {
        let body = format!("[{}]", json_string(&text));
        assert_eq!(found(&d, body.as_bytes()), vec![], "{text}");
    }
}

#[test]
fn secrets_split_by_escapes_are_found_and_mapped_to_their_raw_bytes() {
    let d = detector(Action::Audit);
    let (_, _, aws) = positives().remove(0);
    // Any character may be escaped: the prefix itself, a slash of a URL, a PEM's newlines.
    let escaped_prefix = format!("[\"id: \\u0041KIA{}\"]", &aws[4..]);
    assert_eq!(
        found(&d, escaped_prefix.as_bytes()),
        vec![("aws-access-key-id".to_owned(), aws.clone())]
    );
    let f = scan_json(&d, escaped_prefix.as_bytes());
    assert_eq!(
        f[0].secret.of(escaped_prefix.as_bytes()),
        format!("\\u0041KIA{}", &aws[4..]).as_bytes()
    );
    let dash = "[\"sk\\u002dant\\u002dapi03-".to_owned() + &fake(URLSAFE, 95, 12) + "\"]";
    assert_eq!(found(&d, dash.as_bytes())[0].0, "anthropic-api-key");
    let slashes = "[\"postgres:\\/\\/app:hunter2hunter2@db\\/x\"]";
    assert_eq!(
        found(&d, slashes.as_bytes()),
        vec![("database-url".to_owned(), "hunter2hunter2".to_owned())]
    );
    let pem_body = format!("[{}]", json_string(&pem()));
    assert!(pem_body.contains("\\n"));
    assert_eq!(
        found(&d, pem_body.as_bytes()),
        vec![("private-key".to_owned(), pem())]
    );
    // An escaped backslash before `u` is text, not an escape: the fast search keeps the string.
    let path = format!("[\"C:\\\\users\\\\x {aws}\"]");
    assert_eq!(
        found(&d, path.as_bytes()),
        vec![("aws-access-key-id".to_owned(), aws.clone())]
    );
    // The letter of an escape (`\n`) is not a letter before the prefix.
    let after_newline = format!("[\"x\\n{aws}\"]");
    assert_eq!(found(&d, after_newline.as_bytes()).len(), 1);
}

#[test]
fn secrets_at_every_offset_and_string_boundary() {
    let d = detector(Action::Audit);
    for (rule, text, secret) in positives() {
        let enc = inner(&text);
        for pad in 0..40 {
            let newline = if pad % 2 == 1 { "\\n" } else { "" };
            let filler = "a ".repeat(pad / 2) + newline;
            let after = newline.to_owned() + &" a".repeat(pad / 2);
            // At the start, the end, and the middle of a string; strings next to each other.
            for body in [
                format!("[\"{filler}{enc}\",\"x\"]"),
                format!("[\"{enc}{after}\"]"),
                format!("{{\"k\":\"{filler}\",\"v\":\"{enc}\"}}"),
                format!("\"{filler}{enc}\""),
            ] {
                assert_eq!(
                    found(&d, body.as_bytes()),
                    vec![(rule.to_owned(), secret.clone())],
                    "{body}"
                );
            }
        }
    }
}

#[test]
fn long_strings_decoded_in_pieces_keep_secrets_across_pieces() {
    let d = detector(Action::Audit);
    let (_, _, aws) = positives().remove(0);
    for delta in [-80i64, -64, -63, -30, -10, -1, 0, 1, 10, 60] {
        // A `\u00e9` sends the string to the decoded search; the secret is near a piece's end.
        let at = (CHUNK as i64 + delta) as usize;
        let pad = "é".to_owned() + &"x ".repeat((at - 2) / 2);
        let text = format!("{pad} {aws} tail");
        let body = format!("[\"\\u00e9{}\"]", &text[2..]);
        assert_eq!(
            found(&d, body.as_bytes()),
            vec![("aws-access-key-id".to_owned(), aws.clone())],
            "delta {delta}"
        );
    }
}

#[test]
fn locations_name_the_path_never_the_value() {
    let d = detector(Action::Audit);
    let (_, _, aws) = positives().remove(0);
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"Read","input":{{"file_path":".env"}}}}]}},{{"role":"user","content":[{{"type":"text","text":"see"}},{{"type":"tool_result","tool_use_id":"t1","content":"KEY={aws}"}}]}}],"tools":[{{"name":"x","input_schema":{{"{aws}":1}}}}]}}"#
    );
    let mut f = scan_json(&d, body.as_bytes());
    let i = d.assess(body.as_bytes(), &mut f);
    assert_eq!(
        i.found,
        vec![Found {
            rule: "aws-access-key-id".into(),
            action: Action::Audit,
            count: 2,
            locations: vec![
                "messages[2].content[1].content".into(),
                "tools[0].input_schema.*".into()
            ],
        }]
    );
    assert_eq!(i.blocked, None);
    assert!(i.edits.is_empty());
}

#[test]
fn a_string_searched_decoded_keeps_secrets_found_before_it_later_in_the_batch() {
    let d = detector(Action::Audit);
    let (_, _, aws) = positives().remove(0);
    // The first string has an escape (decoded search), the second the same key plainly.
    let body = format!(
        r#"["\u0041{}","{aws}",{{"x{aws}":"{aws}","Key":"{aws}"}}]"#,
        &aws[1..]
    );
    let mut f = scan_json(&d, body.as_bytes());
    assert_eq!(f.len(), 4);
    let i = d.assess(body.as_bytes(), &mut f);
    assert_eq!(i.found[0].locations, ["[0]", "[1]", "[2].*"]);
    assert!(!format!("{i:?}").contains(&aws[4..]));
}

#[test]
fn block_names_the_rule_and_location() {
    let d = detector(Action::Block);
    let body = format!(
        r#"{{"system":[{{"type":"text","text":{}}}]}}"#,
        json_string(&pem())
    );
    let mut f = scan_json(&d, body.as_bytes());
    let i = d.assess(body.as_bytes(), &mut f);
    assert_eq!(i.blocked.as_deref(), Some("private-key at system[0].text"));
}

#[test]
fn placeholders_are_deterministic_and_keyed() {
    let d = detector(Action::Redact);
    let (_, _, aws) = positives().remove(0);
    let one = format!(r#"["a {aws} b"]"#);
    let two = format!(r#"{{"x":[1,"\u0041KIA{}"]}}"#, &aws[4..]);
    let tag = |d: &Detector, body: &str| {
        let mut f = scan_json(d, body.as_bytes());
        let i = d.assess(body.as_bytes(), &mut f);
        String::from_utf8(i.edits[0].bytes.clone()).unwrap()
    };
    let a = tag(&d, &one);
    assert!(
        a.starts_with("[REDACTED:aws-access-key-id:") && a.len() == 37,
        "{a}"
    );
    assert_eq!(a, tag(&d, &two), "the same secret, however escaped");
    let other_key = Detector::new(d.rules.clone(), b"another".to_vec());
    assert_ne!(a, tag(&other_key, &one));
    let (_, _, aws2) = positives()
        .into_iter()
        .find(|p| p.0 == "aws-access-key-id")
        .unwrap();
    assert_eq!(aws, aws2);
    let different = format!(r#"["AKIA{}"]"#, fake(UPPER32, 16, 99));
    assert_ne!(a, tag(&d, &different));
}

#[test]
fn redaction_keeps_the_body_valid_and_equal_but_for_placeholders() {
    use proptest::prelude::*;
    let d = detector(Action::Redact);
    let secrets = positives();
    let texts = [
        "",
        "plain words ",
        "line\nbreak\t",
        "quote \" and \\ ",
        "ünïcødé ",
        "\u{1}ctl ",
    ];
    proptest!(ProptestConfig::with_cases(300), |(
        picks in proptest::collection::vec((0..texts.len(), 0..secrets.len(), any::<bool>()), 1..8),
        ascii_only in any::<bool>(),
    )| {
        // One string of text and secrets; the expected text has each secret's placeholder.
        let mut text = String::new();
        let mut want = String::new();
        for &(t, s, with_secret) in &picks {
            text.push_str(texts[t]);
            want.push_str(texts[t]);
            if with_secret {
                let (rule, with, secret) = &secrets[s];
                let alone = format!("[{}]", json_string(with));
                let mut f = scan_json(&d, alone.as_bytes());
                let placeholder = d.placeholder(alone.as_bytes(), &f.remove(0));
                prop_assert!(placeholder.contains(rule));
                text.push_str(with);
                want.push_str(&with.replace(secret.as_str(), &placeholder));
                text.push(' ');
                want.push(' ');
            }
        }
        let encoded = if ascii_only {
            // Python's json.dumps: every non-ASCII character as \uXXXX.
            text.chars().map(|c| if c.is_ascii() { inner(&c.to_string()) } else {
                c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect()
            }).collect::<String>()
        } else {
            inner(&text)
        };
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{encoded}"}}]}}"#);
        let mut f = scan_json(&d, body.as_bytes());
        let i = d.assess(body.as_bytes(), &mut f);
        let out = crate::splice::apply(body.as_bytes(), &i.edits);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        prop_assert_eq!(v["messages"][0]["content"].as_str().unwrap(), want.as_str());
        prop_assert_eq!(v["model"].as_str(), Some("m"));
    });
}

#[test]
fn the_prefilter_groups_fingerprints_into_its_buckets() {
    let d = detector(Action::Audit);
    // Every anchor is reachable: its fingerprint is a candidate where it stands.
    for (key, anchors) in &d.anchors {
        let mut hits = Vec::new();
        let hay = [b"zz".as_slice(), key, b"zz"].concat();
        d.tables.candidates(&hay, 0, hay.len(), &mut |j| {
            hits.push(j);
            true
        });
        assert!(
            hits.contains(&2),
            "{:?} {anchors:?}",
            String::from_utf8_lossy(key)
        );
    }
    // Prose and code give few candidates.
    let text = include_str!("../../README.md").as_bytes();
    let mut n = 0;
    d.tables.candidates(text, 0, text.len(), &mut |_| {
        n += 1;
        true
    });
    assert!(
        n < text.len() / 100,
        "{n} candidates in {} bytes",
        text.len()
    );
}
