//! Secrets in outgoing requests: credential formats found in a body's strings, reported by rule
//! and JSON location, blocked, or replaced in place by a placeholder.
//!
//! The scanner shows the detector every string of the body in its one pass
//! ([`crate::json::Strings`]). A vector prefilter finds where a rule's literal prefix may start
//! (most text never gets further); there the prefix is compared, and the rule's pattern runs on
//! a bounded window of the string decoded as the upstream will read it, so a secret split by
//! escapes (`\n` in a PEM block) is still one match. A string with escapes that can spell a
//! prefix (`\u002d`, `\/`) is searched decoded, piece by piece. Values never leave this module:
//! findings are rule indices and byte spans.

mod locate;
mod prefilter;
mod rule;
mod window;

use crate::json::Span;
use crate::splice::Edit;
use hashbrown::HashMap;
use hmac::{Hmac, Mac};
use prefilter::{BUCKETS, Fingerprint, Tables};
pub use rule::{Action, Check, Rule, RuleSpec, shipped};
use serde::Serialize;
use sha2::Sha256;
use std::fmt;
pub use window::Window;

/// Strings shorter than this hold no secret a rule knows.
const MIN_STRING: usize = 12;
/// A string searched decoded is decoded this many bytes at a time...
const CHUNK: usize = 32 * 1024;
/// ...each piece overlapping the last by the longest prefix.
const MAX_PREFIX: usize = 64;
/// Locations listed per rule in the audit record.
const MAX_LOCATIONS: usize = 8;

/// One secret in a body: its rule and the raw bytes it occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub rule: usize,
    pub secret: Span,
}

/// Bytes of body a [`Collector`] lets pass before it searches the strings it was shown.
const BATCH: usize = 64 * 1024;

/// The findings of one body, collected while the scanner passes its strings: they are searched
/// a batch at a time ([`Detector::scan_strings`]), while the bytes are still in the cache.
pub struct Collector<'a> {
    detector: &'a Detector,
    body: &'a [u8],
    pending: Vec<Span>,
    found: Vec<Finding>,
}

impl<'a> Collector<'a> {
    pub fn new(detector: &'a Detector, body: &'a [u8]) -> Collector<'a> {
        Collector {
            detector,
            body,
            pending: Vec::new(),
            found: Vec::new(),
        }
    }

    fn flush(&mut self) {
        self.detector
            .scan_strings(self.body, &self.pending, &mut self.found);
        self.pending.clear();
    }

    /// Every finding, once the scanner is done.
    pub fn finish(mut self) -> Vec<Finding> {
        self.flush();
        self.found
    }
}

impl crate::json::Strings for Collector<'_> {
    fn string(&mut self, contents: Span) {
        if contents.len() < MIN_STRING {
            return;
        }
        self.pending.push(contents);
        if self
            .pending
            .first()
            .is_some_and(|f| contents.end - f.start >= BATCH)
        {
            self.flush();
        }
    }
}

/// Where a fingerprint sits in a rule's prefix.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    rule: usize,
    prefix: usize,
    offset: usize,
}

/// The compiled rules, with the key that makes placeholders.
#[derive(Clone)]
pub struct Detector {
    pub rules: Vec<Rule>,
    tables: Tables,
    anchors: HashMap<[u8; 3], Vec<Anchor>>,
    key: Vec<u8>,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.rules.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("Detector")
            .field("rules", &names)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// How often a byte appears in prompts and code, roughly (higher is more common): an anchor's
/// fingerprint is its rarest three bytes.
fn commonness(b: u8) -> u32 {
    const LETTERS: &[u8] = b"etaoinsrhldcumfpgwybvkxjqz";
    match b {
        b'a'..=b'z' => {
            let rank = LETTERS.iter().position(|&l| l == b).unwrap_or(0);
            26 - rank as u32
        }
        b' ' => 30,
        b'_' | b'.' => 8,
        b'-' | b'/' => 6,
        b':' => 5,
        b'A'..=b'Z' | b'0'..=b'9' => 3,
        _ => 2,
    }
}

/// The offset of a prefix's rarest three bytes.
fn fingerprint_offset(prefix: &[u8]) -> usize {
    let score = |w: &[u8]| {
        w.iter()
            .map(|b| commonness(b.to_ascii_lowercase()))
            .sum::<u32>()
    };
    prefix
        .windows(3)
        .enumerate()
        .min_by_key(|(_, w)| score(w))
        .map_or(0, |(i, _)| i)
}

/// Every letter-case variant of three bytes.
fn case_variants(bytes: [u8; 3]) -> Vec<[u8; 3]> {
    let mut out: Vec<[u8; 3]> = Vec::new();
    for mask in 0..8u8 {
        let mut v = bytes;
        for (k, b) in v.iter_mut().enumerate() {
            if mask & (1 << k) != 0 {
                *b = b.to_ascii_uppercase();
            } else {
                *b = b.to_ascii_lowercase();
            }
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Escapes that can spell a prefix's byte: `\uXXXX` (any) and `\/` (`://`). The prefilter finds
/// them too, in the last bucket. `\n`, `\t`, `\"`... decode to bytes no prefix has, and a window
/// decodes them.
const EXOTIC: [u8; 2] = [b'u', b'/'];

impl Detector {
    pub fn new(rules: Vec<Rule>, key: Vec<u8>) -> Detector {
        let mut anchors: HashMap<[u8; 3], Vec<Anchor>> = HashMap::new();
        for (r, rule) in rules.iter().enumerate() {
            for (p, prefix) in rule.prefixes.iter().enumerate() {
                let offset = fingerprint_offset(prefix);
                let Some(&[a, b, c]) = prefix.get(offset..offset + 3) else {
                    continue;
                };
                let variants = if rule.ignore_case {
                    case_variants([a, b, c])
                } else {
                    vec![[a, b, c]]
                };
                for v in variants {
                    let list = anchors.entry(v).or_default();
                    if !list.iter().any(|x| x.rule == r && x.prefix == p) {
                        list.push(Anchor {
                            rule: r,
                            prefix: p,
                            offset,
                        });
                    }
                }
            }
        }
        Detector {
            tables: Tables::new(&grouped(anchors.keys().copied().collect())),
            rules,
            anchors,
            key,
        }
    }

    /// Finds the secrets in one string (`contents`: the raw bytes between its quotes).
    pub fn scan(&self, body: &[u8], contents: Span, out: &mut Vec<Finding>) {
        if contents.len() >= MIN_STRING {
            self.scan_strings(body, &[contents], out);
        }
    }

    /// Finds the secrets in strings of `body` (contents spans, in order): one prefilter pass
    /// from the first to the last, so a body's thousands of short strings cost no call each.
    /// A candidate outside every string (a key or value shown in another batch, or JSON
    /// punctuation) is ignored.
    pub fn scan_strings(&self, body: &[u8], strings: &[Span], out: &mut Vec<Finding>) {
        let (Some(first), Some(last)) = (strings.first(), strings.last()) else {
            return;
        };
        let mut exotic: Vec<Span> = Vec::new();
        let mut at = 0;
        self.tables
            .candidates(body, first.start, last.end, &mut |j| {
                while strings.get(at).is_some_and(|s| s.end <= j) {
                    at += 1;
                }
                let Some(&string) = strings.get(at).filter(|s| s.start <= j) else {
                    return true;
                };
                if exotic.last() == Some(&string) {
                    return true;
                }
                if body.get(j) == Some(&b'\\') {
                    if window::starts_char(body, string.start, j)
                        && body.get(j + 1).is_some_and(|b| EXOTIC.contains(b))
                    {
                        exotic.push(string);
                    }
                    return true;
                }
                for (rule, p) in self.anchored(body, j, string.start) {
                    if !window::starts_char(body, string.start, p) {
                        continue;
                    }
                    let before = (p > string.start)
                        .then(|| {
                            let b = body.get(p - 1).copied().unwrap_or(0);
                            // An escape's letter (`\n`) is not a letter of the text.
                            window::starts_char(body, string.start, p - 1).then_some(b)
                        })
                        .flatten();
                    self.verify(rule, body, p, string.end, before, out);
                }
                true
            });
        // Strings whose escapes may hide a prefix: searched again, decoded.
        for string in exotic {
            out.retain(|f| f.secret.start < string.start || f.secret.start >= string.end);
            self.scan_decoded(body, string, out);
        }
    }

    /// The rules whose prefix may start where the candidate at `j` puts it: (rule, start).
    fn anchored<'s>(
        &'s self,
        hay: &'s [u8],
        j: usize,
        start: usize,
    ) -> impl Iterator<Item = (usize, usize)> + 's {
        let key = hay
            .get(j..j + 3)
            .and_then(|k| <[u8; 3]>::try_from(k).ok())
            .unwrap_or_default();
        self.anchors
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(move |a| {
                let at = j.checked_sub(a.offset).filter(|&at| at >= start)?;
                let rule = self.rules.get(a.rule)?;
                rule.prefix_at(hay, at, a.prefix).then_some((a.rule, at))
            })
    }

    /// A string whose escapes may hide a prefix, searched decoded a piece at a time.
    fn scan_decoded(&self, body: &[u8], contents: Span, out: &mut Vec<Finding>) {
        let mut w = Window::default();
        let mut from = contents.start;
        loop {
            w.fill(body, from, contents.end, CHUNK);
            let text = &w.text;
            self.tables.candidates(text, 0, text.len(), &mut |j| {
                for (rule, d) in self.anchored(text, j, 0) {
                    let before = d.checked_sub(1).and_then(|i| text.get(i)).copied();
                    let p = w.raw.get(d).copied().unwrap_or(contents.end);
                    self.verify(rule, body, p, contents.end, before, out);
                }
                true
            });
            let done = w.raw.last().is_none_or(|&end| end >= contents.end);
            let next = w
                .raw
                .get(w.text.len().saturating_sub(MAX_PREFIX))
                .copied()
                .unwrap_or(contents.end);
            if done || next <= from {
                return;
            }
            from = next;
        }
    }

    /// Runs `rule` at body offset `p` (a prefix matched there); `before` is the decoded byte
    /// before it, if any.
    fn verify(
        &self,
        r: usize,
        body: &[u8],
        p: usize,
        end: usize,
        before: Option<u8>,
        out: &mut Vec<Finding>,
    ) {
        let Some(rule) = self.rules.get(r) else {
            return;
        };
        if rule.boundary && before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return;
        }
        // Inside a secret this rule found already (a JWT's second `eyJ`).
        if out
            .iter()
            .rev()
            .take(4)
            .any(|f| f.rule == r && (f.secret.start..f.secret.end).contains(&p))
        {
            return;
        }
        let mut w = Window::default();
        w.fill(body, p, end, rule.max_len);
        let Some(caps) = rule.pattern.captures(w.str()) else {
            return;
        };
        let Some(m) = caps.name("secret").or_else(|| caps.get(0)) else {
            return;
        };
        if m.is_empty() {
            return;
        }
        if rule.check == Some(Check::Jwt) && !jwt_header(m.as_str()) {
            return;
        }
        out.push(Finding {
            rule: r,
            secret: w.span(m.start(), m.end()),
        });
    }

    /// The placeholder of a secret: `[REDACTED:<rule>:<8 hex digits>]`, the digits from a keyed
    /// hash of the rule and the decoded secret, so the same secret reads the same on every turn.
    pub fn placeholder(&self, body: &[u8], f: &Finding) -> String {
        let name = self.rules.get(f.rule).map_or("secret", |r| r.name.as_str());
        let mut w = Window::default();
        w.fill(body, f.secret.start, f.secret.end, usize::MAX);
        let tag = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(name.as_bytes());
                mac.update(&[0]);
                mac.update(&w.text);
                let digest = mac.finalize().into_bytes();
                crate::keys::hex(digest.get(..4).unwrap_or_default())
            }
            Err(_) => String::from("00000000"),
        };
        format!("[REDACTED:{name}:{tag}]")
    }

    /// What the findings of one body come to: per rule, the count and locations; the block, if
    /// a blocking rule matched; the redactions, as splice edits.
    pub fn assess(&self, body: &[u8], findings: &mut Vec<Finding>) -> Inspection {
        findings.sort_by_key(|f| (f.secret.start, f.rule));
        findings.dedup_by_key(|f| f.secret.start);
        let mut last_end = 0;
        findings.retain(|f| {
            let keep = f.secret.start >= last_end;
            last_end = last_end.max(f.secret.end);
            keep
        });
        let starts: Vec<usize> = findings.iter().map(|f| f.secret.start).collect();
        let locations = if starts.is_empty() {
            Vec::new()
        } else {
            locate::paths(body, &starts)
        };
        let mut inspection = Inspection::default();
        for (f, location) in findings.iter().zip(locations) {
            let Some(rule) = self.rules.get(f.rule) else {
                continue;
            };
            match rule.action {
                Action::Block if inspection.blocked.is_none() => {
                    inspection.blocked = Some(format!("{} at {location}", rule.name));
                }
                Action::Redact => inspection.edits.push(Edit {
                    at: f.secret.start,
                    remove: f.secret.len(),
                    bytes: self.placeholder(body, f).into_bytes(),
                }),
                _ => {}
            }
            let found = match inspection.found.iter_mut().find(|x| x.rule == rule.name) {
                Some(x) => x,
                None => {
                    inspection.found.push(Found {
                        rule: rule.name.clone(),
                        action: rule.action,
                        count: 0,
                        locations: Vec::new(),
                    });
                    let Some(x) = inspection.found.last_mut() else {
                        continue;
                    };
                    x
                }
            };
            found.count += 1;
            if found.locations.len() < MAX_LOCATIONS && !found.locations.contains(&location) {
                found.locations.push(location);
            }
        }
        inspection
    }
}

/// Groups fingerprints into the prefilter's buckets, each joining the bucket it widens least;
/// the last bucket holds the escapes that send a string to the decoded search.
fn grouped(mut keys: Vec<[u8; 3]>) -> Vec<Fingerprint> {
    keys.sort_unstable();
    let mut buckets: Vec<Vec<[Option<u8>; 3]>> = vec![Vec::new(); BUCKETS - 1];
    for k in keys {
        let f = k.map(Some);
        let best = buckets
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| {
                let mut with = (*b).clone();
                with.push(f);
                let grown =
                    Tables::accepted(&with) - if b.is_empty() { 0 } else { Tables::accepted(b) };
                (grown, !b.is_empty())
            })
            .map_or(0, |(i, _)| i);
        if let Some(b) = buckets.get_mut(best) {
            b.push(f);
        }
    }
    let mut out: Vec<Fingerprint> = buckets
        .into_iter()
        .enumerate()
        .flat_map(|(i, b)| b.into_iter().map(move |f| (f, i)))
        .collect();
    out.extend(EXOTIC.map(|e| ([Some(b'\\'), Some(e), None], BUCKETS - 1)));
    out
}

/// Whether a JWT's first segment is base64url of a JSON object naming its `alg`.
fn jwt_header(token: &str) -> bool {
    use base64::Engine;
    let head = token.split('.').next().unwrap_or_default();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    engine
        .decode(head.trim_end_matches('='))
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&h).ok())
        .is_some_and(|h| h.contains_key("alg"))
}

/// The secrets of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub found: Vec<Found>,
    /// `<rule> at <location>` of the first secret whose rule blocks.
    pub blocked: Option<String>,
    /// The placeholders of redacted secrets, sorted.
    pub edits: Vec<Edit>,
}

/// One rule's findings in a request, as the audit record lists them (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub rule: String,
    pub action: Action,
    pub count: u64,
    pub locations: Vec<String>,
}

#[cfg(test)]
mod tests;
