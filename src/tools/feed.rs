//! Request side: the tool results a request carries, attributed to the tools that produced
//! them, with their sizes, so a report can say which tools feed the most tokens.
//!
//! Only the last user message counts: it holds this turn's new results, and every earlier one
//! is history the client repeats each turn. The API requires each `tool_result` to answer a
//! `tool_use` of the assistant message just before it, so names come from the assistant
//! messages between the previous user message and the last one: memory stays constant however
//! long the conversation is.

use super::{Block, MAX_NAME, read_block};
use crate::json::{self, Scanner};
use crate::text::cap;
use serde::Serialize;

/// Distinct tools reported; results of any further tool are merged into `other`.
pub const MAX_FEEDS: usize = 64;
/// `tool_result` blocks attributed one by one; any further ones go to `other`.
const MAX_RESULTS: usize = 256;
/// Longest `tool_use_id` compared (longer ones are compared by this prefix).
const MAX_ID: usize = 128;

/// The results one tool fed into this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolFeed {
    /// The tool's name (capped), `unknown` for an id no assistant message named.
    pub tool: String,
    /// `tool_result` blocks.
    pub count: u64,
    /// Raw bytes of their `content` values, in the request body.
    pub bytes: u64,
}

/// The tool results of the request body `body` whose last user message starts at `user`, by
/// tool, the largest first, named by the calls of the assistant messages starting at
/// `assistants` (the scan that read the body found both: `Layout::last_turn`). Only those
/// messages are read again. Empty if they cannot be read.
pub fn tool_results(body: &[u8], user: usize, assistants: &[usize]) -> Vec<ToolFeed> {
    let mut s = Scanner::new(body);
    let Some(user) = content_of(&mut s, body, user) else {
        return Vec::new();
    };
    let assistants = assistants
        .iter()
        .filter_map(|&at| content_of(&mut s, body, at))
        .collect();
    attribute(&mut s, body, user, assistants)
}

/// Where the `content` of the message object at `at` is.
fn content_of(s: &mut Scanner, body: &[u8], at: usize) -> Option<usize> {
    s.seek(at);
    let mut message = s.enter_object().ok()?;
    while let Some(key) = s.next_key(&mut message).ok()? {
        if key.matches(body, "content") {
            return Some(s.pos());
        }
        s.value().ok()?;
    }
    None
}

/// The results of the user message whose `content` is at `user`, named by the tool calls of
/// the assistant messages whose `content` is at `assistants`.
fn attribute(s: &mut Scanner, body: &[u8], user: usize, assistants: Vec<usize>) -> Vec<ToolFeed> {
    let mut results: Vec<(String, u64)> = Vec::new();
    let mut extra = ToolFeed {
        tool: "other".to_owned(),
        count: 0,
        bytes: 0,
    };
    // Errors keep what was read: a broken block loses only itself and those after it.
    let _ = each_block(s, body, user, &mut |b| {
        if !b.ty.is_some_and(|t| t.matches(body, "tool_result")) {
            return;
        }
        let bytes = b.content.map_or(0, |c| c.len() as u64);
        if results.len() < MAX_RESULTS {
            let id = b.tool_use_id.and_then(|id| id.decode(body));
            results.push((id.map(|id| cap(id, MAX_ID)).unwrap_or_default(), bytes));
        } else {
            extra.count += 1;
            extra.bytes += bytes;
        }
    });
    if results.is_empty() && extra.count == 0 {
        return Vec::new();
    }
    let mut names: Vec<Option<String>> = vec![None; results.len()];
    for at in assistants {
        let _ = each_block(s, body, at, &mut |b| {
            if !b.is_tool(body) {
                return;
            }
            let (Some(id), Some(name)) = (b.id.and_then(|i| i.decode(body)), b.name) else {
                return;
            };
            let id = cap(id, MAX_ID);
            for (slot, _) in names.iter_mut().zip(&results).filter(|(_, r)| r.0 == id) {
                *slot = name.decode(body).map(|n| cap(n, MAX_NAME));
            }
        });
    }
    let mut feeds: Vec<ToolFeed> = Vec::new();
    for (name, (_, bytes)) in names.into_iter().zip(results) {
        let tool = name.unwrap_or_else(|| "unknown".to_owned());
        let feed = match feeds.iter_mut().position(|f| f.tool == tool) {
            Some(i) => feeds.get_mut(i),
            None if feeds.len() < MAX_FEEDS => {
                feeds.push(ToolFeed {
                    tool,
                    count: 0,
                    bytes: 0,
                });
                feeds.last_mut()
            }
            None => Some(&mut extra),
        };
        if let Some(f) = feed {
            f.count += 1;
            f.bytes += bytes;
        }
    }
    if extra.count > 0 {
        match feeds.iter_mut().find(|f| f.tool == "other") {
            Some(f) => {
                f.count += extra.count;
                f.bytes += extra.bytes;
            }
            None => feeds.push(extra),
        }
    }
    feeds.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.tool.cmp(&b.tool)));
    feeds
}

/// Shows `f` every block of the `content` array at `at` (a string content has none).
fn each_block(
    s: &mut Scanner,
    body: &[u8],
    at: usize,
    f: &mut dyn FnMut(&Block),
) -> json::Result<()> {
    s.seek(at);
    if s.peek()? != b'[' {
        return Ok(());
    }
    let mut blocks = s.enter_array()?;
    while s.next_item(&mut blocks)? {
        f(&read_block(s, body)?);
    }
    Ok(())
}
