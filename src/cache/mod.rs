//! Prompt-cache marker injection (anthropic-wire.md §4): decides where to add `cache_control`
//! markers and returns them as insertions into the original bytes.
//!
//! The rules, all of which a wrong injector turns into a 400 or a silent cache miss:
//! - at most 4 breakpoints, counting every client marker (tools, system, every message block and
//!   its sub-blocks, `role:"system"` messages) plus a top-level `cache_control`;
//! - a client's marker is never touched, and a block with one never gets a second;
//! - TTLs never increase along tools → system → messages (no 1h after a 5m);
//! - no markers on thinking blocks, empty text blocks or unknown block types;
//! - a prefix shorter than the model's minimum is not cached anyway, so it gets no marker.

pub mod layout;

use crate::splice::Edit;
pub use layout::Ttl;
use layout::{Block, Content, Layout, Pos};

/// The API's limit on breakpoints per request.
pub const MAX_BREAKPOINTS: usize = 4;

/// Where a marker was added, in the order of value used to fill free slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// The last tool definition: caches the tools.
    Tools,
    /// The last system block: caches tools + system.
    System,
    /// The last eligible block of the last user message: caches the whole conversation.
    LastUser,
    /// The same on the user message before it, where the previous request wrote its cache, so
    /// this request reads it even when the new turn added more than 20 blocks.
    PreviousUser,
    /// A top-level `cache_control` (automatic caching).
    Automatic,
}

impl Location {
    pub const ALL: [Location; 5] = [
        Location::Tools,
        Location::System,
        Location::LastUser,
        Location::PreviousUser,
        Location::Automatic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Location::Tools => "tools",
            Location::System => "system",
            Location::LastUser => "last_user",
            Location::PreviousUser => "previous_user",
            Location::Automatic => "automatic",
        }
    }
}

/// Why a request got no marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Injection is off (globally, for the model or for the route).
    Disabled,
    /// An endpoint where markers have no effect (count_tokens).
    Endpoint,
    /// The client uses automatic caching (top-level `cache_control`).
    ClientAutomatic,
    /// The request already has 4 breakpoints.
    Full,
    /// The client's own TTLs are out of order: the API rejects the request whatever is added.
    ClientTtlOrder,
    /// Every place a marker could go has a prefix below the model's minimum.
    BelowMinimum,
    /// Every place a marker could go is taken, or there is none.
    NothingEligible,
}

impl Skip {
    pub const ALL: [Skip; 7] = [
        Skip::Disabled,
        Skip::Endpoint,
        Skip::ClientAutomatic,
        Skip::Full,
        Skip::ClientTtlOrder,
        Skip::BelowMinimum,
        Skip::NothingEligible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Disabled => "disabled",
            Skip::Endpoint => "endpoint",
            Skip::ClientAutomatic => "client_automatic",
            Skip::Full => "full",
            Skip::ClientTtlOrder => "client_ttl_order",
            Skip::BelowMinimum => "below_minimum",
            Skip::NothingEligible => "nothing_eligible",
        }
    }
}

/// Which locations may receive a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locations {
    pub tools: bool,
    pub system: bool,
    pub last_user: bool,
    pub previous_user: bool,
}

impl Locations {
    pub const ALL: Locations = Locations {
        tools: true,
        system: true,
        last_user: true,
        previous_user: true,
    };

    fn enabled(&self, l: Location) -> bool {
        match l {
            Location::Tools => self.tools,
            Location::System => self.system,
            Location::LastUser => self.last_user,
            Location::PreviousUser => self.previous_user,
            Location::Automatic => false,
        }
    }
}

/// The settings that apply to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// TTL of injected markers, unless the client's markers force the other one.
    pub ttl: Ttl,
    /// Use a top-level `cache_control` when the request has no marker at all.
    pub automatic: bool,
    pub locations: Locations,
    /// The model's minimum cacheable prefix, in tokens.
    pub min_tokens: u64,
    /// Body bytes per token, to estimate prefix lengths.
    pub bytes_per_token: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub location: Location,
    pub ttl: Ttl,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Insertions into the body, sorted by position.
    pub edits: Vec<Edit>,
    pub added: Vec<Added>,
    /// Set when nothing was added.
    pub skipped: Option<Skip>,
}

impl Outcome {
    pub fn skip(reason: Skip) -> Outcome {
        Outcome {
            skipped: Some(reason),
            ..Outcome::default()
        }
    }

    /// An injected marker is 1h (the request then needs the extended-TTL beta on some upstreams).
    pub fn uses_one_hour(&self) -> bool {
        self.added.iter().any(|a| a.ttl == Ttl::OneHour)
    }
}

/// Where a marker goes: into an object, or around a string that becomes a one-block array.
#[derive(Debug, Clone, Copy)]
enum Target {
    Object { close: usize, empty: bool },
    Text { start: usize, end: usize },
}

impl Target {
    fn end(self) -> usize {
        match self {
            Target::Object { close, .. } => close + 1,
            Target::Text { end, .. } => end,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    location: Location,
    pos: Pos,
    target: Target,
    /// Bytes of tools + system + messages up to and including the marked block.
    prefix: usize,
}

fn object_target(b: &Block) -> Option<Target> {
    (b.eligible && !b.has_cache_control).then_some(Target::Object {
        close: b.span.end.saturating_sub(1),
        empty: b.empty,
    })
}

/// A non-blank string, or the block the layout picked for a marker.
fn content_target(content: &Content) -> Option<(usize, Target)> {
    match *content {
        Content::Text { span, blank: false } => Some((
            0,
            Target::Text {
                start: span.start,
                end: span.end,
            },
        )),
        Content::Blocks {
            target: Some((k, b)),
            ..
        } => Some((k, object_target(&b)?)),
        _ => None,
    }
}

fn candidate(l: &Layout, location: Location) -> Option<Candidate> {
    let tools_len = l.tools.as_ref().map_or(0, |t| t.0.len());
    let system_len = l.system.as_ref().map_or(0, |s| s.0.len());
    let (pos, target, prefix) = match location {
        Location::Tools => {
            let (span, last) = l.tools.as_ref()?;
            let (i, b) = (*last)?;
            let t = object_target(&b)?;
            ((0, i, 0, 0), t, t.end() - span.start)
        }
        Location::System => {
            let (span, content) = l.system.as_ref()?;
            let (i, t) = match *content {
                // The last system block itself: never a marker on an earlier one.
                Content::Blocks { last, .. } => {
                    let (i, b) = last?;
                    (i, object_target(&b)?)
                }
                other => content_target(&other)?,
            };
            ((1, i, 0, 0), t, tools_len + t.end() - span.start)
        }
        Location::LastUser | Location::PreviousUser => {
            let (span, last, previous) = l.messages.as_ref()?;
            let turn = if location == Location::LastUser {
                (*last)?
            } else {
                (*previous)?
            };
            let (k, t) = content_target(&turn.content)?;
            (
                (2, turn.index, k, 0),
                t,
                tools_len + system_len + t.end() - span.start,
            )
        }
        Location::Automatic => return None,
    };
    Some(Candidate {
        location,
        pos,
        target,
        prefix,
    })
}

/// `"cache_control":{...}` for an injected marker. A 5-minute marker is written bare, which
/// every Anthropic-compatible upstream accepts.
fn marker_json(ttl: Ttl) -> &'static [u8] {
    match ttl {
        Ttl::FiveMinutes => br#""cache_control":{"type":"ephemeral"}"#,
        Ttl::OneHour => br#""cache_control":{"type":"ephemeral","ttl":"1h"}"#,
    }
}

fn edits_for(target: Target, ttl: Ttl, out: &mut Vec<Edit>) {
    match target {
        Target::Object { close, empty } => {
            let mut bytes = Vec::with_capacity(48);
            if !empty {
                bytes.push(b',');
            }
            bytes.extend_from_slice(marker_json(ttl));
            out.push(Edit::insert(close, bytes));
        }
        Target::Text { start, end } => {
            out.push(Edit::insert(start, br#"[{"type":"text","text":"#.to_vec()));
            let mut bytes = vec![b','];
            bytes.extend_from_slice(marker_json(ttl));
            bytes.extend_from_slice(b"}]");
            out.push(Edit::insert(end, bytes));
        }
    }
}

/// The TTL an injected marker at `pos` must take so the order stays valid: 1h if a client 1h
/// marker follows it, 5m if a client 5m marker precedes it, otherwise the configured one.
fn ttl_at(pos: Pos, existing: &[(Pos, Ttl)], wanted: Ttl) -> Ttl {
    if existing.iter().any(|&(p, t)| p > pos && t == Ttl::OneHour) {
        Ttl::OneHour
    } else if existing
        .iter()
        .any(|&(p, t)| p < pos && t == Ttl::FiveMinutes)
    {
        Ttl::FiveMinutes
    } else {
        wanted
    }
}

/// True if TTLs never go from 5m back up to 1h along the processing order (`markers` sorted).
fn ttl_order_valid(markers: &[(Pos, Ttl)]) -> bool {
    !markers
        .windows(2)
        .any(|w| matches!(w, [(_, Ttl::FiveMinutes), (_, Ttl::OneHour)]))
}

/// Plans the markers to add to a request with this layout.
pub fn plan(l: &Layout, settings: &Settings) -> Outcome {
    if l.top_level.is_some() {
        return Outcome::skip(Skip::ClientAutomatic);
    }
    let mut existing = l.markers.clone();
    existing.sort();
    if existing.len() >= MAX_BREAKPOINTS {
        return Outcome::skip(Skip::Full);
    }
    if !ttl_order_valid(&existing) {
        return Outcome::skip(Skip::ClientTtlOrder);
    }
    let tokens = |bytes: usize| bytes as u64 / settings.bytes_per_token.max(1);
    if settings.automatic && existing.is_empty() {
        let prompt = l.tools.as_ref().map_or(0, |t| t.0.len())
            + l.system.as_ref().map_or(0, |s| s.0.len())
            + l.messages.as_ref().map_or(0, |m| m.0.len());
        if tokens(prompt) < settings.min_tokens {
            return Outcome::skip(Skip::BelowMinimum);
        }
        let mut bytes = vec![b','];
        bytes.extend_from_slice(marker_json(settings.ttl));
        return Outcome {
            edits: vec![Edit::insert(l.root_close, bytes)],
            added: vec![Added {
                location: Location::Automatic,
                ttl: settings.ttl,
            }],
            skipped: None,
        };
    }
    let free = MAX_BREAKPOINTS - existing.len();
    let mut chosen: Vec<Candidate> = Vec::with_capacity(free);
    let mut below_minimum = false;
    for location in [
        Location::Tools,
        Location::System,
        Location::LastUser,
        Location::PreviousUser,
    ] {
        if chosen.len() == free {
            break;
        }
        if !settings.locations.enabled(location) {
            continue;
        }
        let Some(c) = candidate(l, location) else {
            continue;
        };
        if tokens(c.prefix) < settings.min_tokens {
            below_minimum = true;
            continue;
        }
        chosen.push(c);
    }
    if chosen.is_empty() {
        return Outcome::skip(if below_minimum {
            Skip::BelowMinimum
        } else {
            Skip::NothingEligible
        });
    }
    let mut out = Outcome::default();
    for c in &chosen {
        let ttl = ttl_at(c.pos, &existing, settings.ttl);
        edits_for(c.target, ttl, &mut out.edits);
        out.added.push(Added {
            location: c.location,
            ttl,
        });
    }
    out.edits.sort_by_key(|e| e.at);
    out
}

/// The `anthropic-beta` value that enables 1h cache TTLs on upstreams that still require it.
pub const EXTENDED_TTL_BETA: &str = "extended-cache-ttl-2025-04-11";

#[cfg(test)]
mod tests;
