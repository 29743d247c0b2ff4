//! A fingerprint of a request's prompt prefix, in the order the cache reads it (tools, system,
//! messages; the model is the chain's key, so it never differs), so the next turn can tell where its prefix stopped matching. Hashes only:
//! no prompt byte is kept. The messages part covers the conversation up to the last user
//! message (what the next turn repeats verbatim; the last message itself changes as clients
//! move their own marker).

use crate::request::BodyFacts;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub tools: u64,
    pub system: u64,
    /// Bytes of `messages` (from its `[`) before the last user message, and their hash.
    pub cut: u64,
    pub cut_hash: u64,
}

/// The first part of the prefix that differs from the previous turn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Tools,
    System,
    Messages,
}

impl Section {
    pub fn changed(self) -> &'static str {
        match self {
            Section::Tools => "tools_changed",
            Section::System => "system_changed",
            Section::Messages => "messages_changed",
        }
    }
}

fn member<'b>(body: &'b [u8], facts: &BodyFacts, key: &str) -> &'b [u8] {
    facts
        .member(body, key)
        .and_then(|(_, span)| body.get(span.start..span.end))
        .unwrap_or_default()
}

/// This request's fingerprint, and where its prefix left the previous turn's (`None`: no
/// previous turn, or the whole prefix matched). One pass over the messages.
pub fn compare(
    body: &[u8],
    facts: &BodyFacts,
    previous: Option<&Fingerprint>,
) -> (Fingerprint, Option<Section>) {
    let messages = facts.member(body, "messages").map(|(_, s)| s.start);
    let head = match (messages, &facts.layout.last_turn) {
        (Some(start), Some((user, _))) => body.get(start..*user).unwrap_or_default(),
        _ => &[],
    };
    let mut print = Fingerprint {
        tools: xxh3_64(member(body, facts, "tools")),
        system: xxh3_64(member(body, facts, "system")),
        cut: head.len() as u64,
        cut_hash: 0,
    };
    let Some(prev) = previous else {
        print.cut_hash = xxh3_64(head);
        return (print, None);
    };
    // The previous turn's cut is normally inside this one's: hash up to it, then on.
    let prev_cut = usize::try_from(prev.cut).unwrap_or(usize::MAX);
    let mut hasher = Xxh3::new();
    let messages_match = match (head.get(..prev_cut), head.get(prev_cut..)) {
        (Some(before), Some(after)) => {
            hasher.update(before);
            let same = hasher.digest() == prev.cut_hash;
            hasher.update(after);
            same
        }
        _ => {
            hasher.update(head);
            false
        }
    };
    print.cut_hash = hasher.digest();
    let changed = [
        (print.tools != prev.tools, Section::Tools),
        (print.system != prev.system, Section::System),
        (!messages_match, Section::Messages),
    ]
    .into_iter()
    .find_map(|(differs, section)| differs.then_some(section));
    (print, changed)
}
