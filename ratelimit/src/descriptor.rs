//! The descriptor contract between the gateway's Envoy configuration and this service (domain
//! `claude-gateway`). Each descriptor's entries, in this order:
//!
//! - `[consumer=<id>, kind=requests|input_tokens|output_tokens]`
//! - `[cost_center=<cc>|consumer=<id>, kind=usd_day, window=<YYYY-MM-DD>]`
//! - `[cost_center=<cc>|consumer=<id>, kind=usd_month, window=<YYYY-MM>]`
//! - `[group=<g>, member=<id>, kind=…]` with the kinds and windows above: a token's consumer
//!   (identity `jwt`), counted per member by its group rule's limits and budget
//!
//! The window is the request's UTC day or month, written by the filter, so every replica's
//! budgets renew at midnight UTC alike. Anything else (other keys, order, kinds, a malformed
//! window) is no limit of ours: answered OK, nothing counted.

use crate::limits::{Kind, Subject};
use claude_gateway::time::days_from_civil;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;

const DAY_MS: u64 = 86_400_000;

/// A descriptor of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub subject: Subject,
    /// A group's member (a group's limits count per member).
    pub member: Option<String>,
    pub kind: Kind,
    /// For budgets: the `window` value and when that UTC day or month ends (ms since epoch).
    pub window: Option<(String, u64)>,
}

/// Reads a descriptor's entries; `None` when they are not of the contract.
pub fn parse(descriptor: &RateLimitDescriptor) -> Option<Parsed> {
    let entry = |i: usize| {
        descriptor
            .entries
            .get(i)
            .map(|e| (e.key.as_str(), e.value.as_str()))
    };
    let (subject, member) = match entry(0)? {
        ("consumer", id) if !id.is_empty() => (Subject::Consumer(id.to_owned()), None),
        ("cost_center", id) if !id.is_empty() => (Subject::CostCenter(id.to_owned()), None),
        ("group", group) if !group.is_empty() => match entry(1)? {
            ("member", id) if !id.is_empty() => {
                (Subject::Group(group.to_owned()), Some(id.to_owned()))
            }
            _ => return None,
        },
        _ => return None,
    };
    let at = usize::from(member.is_some());
    let kind = match entry(at + 1)? {
        ("kind", kind) => Kind::parse(kind)?,
        _ => return None,
    };
    let window = match (kind, entry(at + 2), descriptor.entries.len() - at) {
        (Kind::UsdDay, Some(("window", w)), 3) => Some((w.to_owned(), day_end(w)?)),
        (Kind::UsdMonth, Some(("window", w)), 3) => Some((w.to_owned(), month_end(w)?)),
        (Kind::Requests | Kind::InputTokens | Kind::OutputTokens, None, 2) => None,
        _ => return None,
    };
    Some(Parsed {
        subject,
        member,
        kind,
        window,
    })
}

fn number(s: &str, digits: usize) -> Option<u64> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The end (next midnight UTC, in ms) of a `YYYY-MM-DD` day.
pub fn day_end(window: &str) -> Option<u64> {
    let mut parts = window.split('-');
    let (y, m, d) = (
        number(parts.next()?, 4)?,
        number(parts.next()?, 2)?,
        number(parts.next()?, 2)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let day = days_from_civil(y, m, d)?;
    // 2026-02-30 would be March 2nd: not a date.
    (claude_gateway::time::civil_from_days(day) == (y, m, d)).then_some((day + 1) * DAY_MS)
}

/// The end (the first of the next month, midnight UTC, in ms) of a `YYYY-MM` month.
pub fn month_end(window: &str) -> Option<u64> {
    let mut parts = window.split('-');
    let (y, m) = (number(parts.next()?, 4)?, number(parts.next()?, 2)?);
    if parts.next().is_some() || !(1..=12).contains(&m) {
        return None;
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some(days_from_civil(ny, nm, 1)? * DAY_MS)
}

/// A descriptor's hits: its own `hits_addend` when set, else the request's, at least 1
/// (envoyproxy/ratelimit's rule; Envoy sends a request-level 0 for "unset").
pub fn hits(descriptor: &RateLimitDescriptor, request_hits: u32) -> u64 {
    descriptor
        .hits_addend
        .as_ref()
        .map_or(u64::from(request_hits.max(1)), |h| h.value)
}
