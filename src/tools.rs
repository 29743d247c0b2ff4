//! Tool calls. Response side: the calls the model asked for (JSON body or stream), each with
//! its name, a bounded metric label, a shell command's program name and the risk tags its input
//! matches; never the input itself. Request side ([`tool_results`]): which tools the results
//! of this turn came from, and their sizes.
//!
//! A streamed call's input arrives as `input_json_delta` fragments of its JSON text; each open
//! tool block assembles them in a buffer bounded by [`ToolConfig::max_input_bytes`] (beyond it
//! the call is marked truncated and what was kept is still read). Text and thinking deltas are
//! the bulk of a stream: a delta is only parsed when its `"index"` (found with one substring
//! search) is an open tool block.

mod feed;
mod input;
mod rules;

pub use feed::{MAX_FEEDS, ToolFeed, tool_results};
pub use rules::{
    MAX_CONTAINS, MAX_LITERAL, RiskRule, RuleError, ToolConfig, builtin_risks, valid_tag,
    valid_tool_name,
};

use crate::json::{self, Scanner, Span, Str};
use crate::sse::Event;
use serde::{Deserialize, Serialize};

pub const DEFAULT_MAX_INPUT_BYTES: usize = 64 << 10;
/// Largest `max_input_bytes` accepted: risk rules read the whole assembled input.
pub const MAX_INPUT_BYTES_LIMIT: usize = 1 << 20;
/// Longest tool name kept (the API allows 64; MCP names run longer).
pub const MAX_NAME: usize = 128;
/// Longest program name kept.
pub const MAX_PROGRAM: usize = 64;
/// Distinct program names per tool in a summary.
pub const MAX_PROGRAMS: usize = 8;
/// Tool blocks assembled at once (the API streams one block at a time): memory stays below
/// `MAX_OPEN * max_input_bytes` whatever the upstream sends.
pub const MAX_OPEN: usize = 4;
/// Calls recorded per response; further ones are only counted ([`ToolWatch::dropped`]).
pub const MAX_CALLS: usize = 256;
/// Risk rules (their tags are metric labels) and tools with their own label.
pub const MAX_RULES: usize = 64;
pub const MAX_LABELS: usize = 64;
/// Longest risk tag.
pub const MAX_TAG: usize = 40;
/// In a rule's `tools`: the configured shell tools.
pub const SHELL_TOOLS: &str = "@shell";

/// Claude Code's built-in tools: the default metric labels.
pub const CLAUDE_CODE_TOOLS: [&str; 15] = [
    "Bash",
    "Read",
    "Write",
    "Edit",
    "MultiEdit",
    "Glob",
    "Grep",
    "LS",
    "WebFetch",
    "WebSearch",
    "Task",
    "TodoWrite",
    "NotebookEdit",
    "BashOutput",
    "KillShell",
];

/// Block types that are tool calls.
const TOOL_BLOCKS: [&str; 3] = ["tool_use", "server_tool_use", "mcp_tool_use"];
/// The input member holding a shell tool's command.
const COMMAND: &str = "command";

/// One tool call the model asked for. Holds no input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool's name, capped at [`MAX_NAME`] bytes.
    pub name: String,
    /// Its metric label: the name if configured, else `mcp` or `other`.
    pub label: String,
    /// A shell tool's program name (audit only: unbounded values are no label).
    pub program: Option<String>,
    /// Risk tags, each once, in rule order.
    pub risks: Vec<String>,
    /// Bytes of input received (also past the bound).
    pub input_bytes: usize,
    /// The input was longer than the bound (or a fragment was lost): only a prefix was read.
    pub truncated: bool,
    /// The stream ended before the block did.
    pub incomplete: bool,
}

/// The tool calls of one response, fed its events or its JSON body.
#[derive(Debug, Default)]
pub struct ToolWatch {
    open: Vec<Open>,
    calls: Vec<ToolCall>,
    dropped: u64,
    /// Events parsed as JSON (tests show that text deltas are not).
    parsed: u64,
}

/// A tool block being assembled.
#[derive(Debug)]
struct Open {
    index: usize,
    name: String,
    input: Vec<u8>,
    seen: usize,
    truncated: bool,
    /// `input` is the start event's `input` (`{}`), replaced by the first delta.
    seeded: bool,
}

impl Open {
    fn append(&mut self, max: usize, part: &[u8]) {
        if std::mem::take(&mut self.seeded) {
            self.input.clear();
            self.seen = 0;
        }
        self.seen = self.seen.saturating_add(part.len());
        if self.truncated {
            return;
        }
        let take = part.len().min(max.saturating_sub(self.input.len()));
        self.truncated = take < part.len();
        let need = self.input.len() + take;
        if need > self.input.capacity() {
            // Doubling, but never past the bound.
            let target = self.input.capacity().saturating_mul(2).max(need).min(max);
            self.input.reserve_exact(target - self.input.len());
        }
        self.input
            .extend_from_slice(part.get(..take).unwrap_or_default());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    Delta,
    Stop,
    Other,
}

/// Event types as the data spells them (a string can only hold `"` escaped, so these
/// substrings are whole tokens).
const SNIFFED: [(&[u8], Kind); 3] = [
    (b"\"content_block_delta\"", Kind::Delta),
    (b"\"content_block_start\"", Kind::Start),
    (b"\"content_block_stop\"", Kind::Stop),
];

fn kind(e: &Event) -> Kind {
    match e.name {
        b"content_block_delta" => Kind::Delta,
        b"content_block_start" => Kind::Start,
        b"content_block_stop" => Kind::Stop,
        b"" => SNIFFED
            .iter()
            .find(|(token, _)| memchr::memmem::find(e.data, token).is_some())
            .map_or(Kind::Other, |&(_, k)| k),
        _ => Kind::Other,
    }
}

/// The top-level `"index": N` of an event, found without parsing (only keys can hold `"index"`
/// followed by a colon, and deltas have no other `index`).
fn find_index(data: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(data, b"\"index\"")?;
    let rest = data.get(at + 7..)?.trim_ascii_start();
    let rest = rest.strip_prefix(b":")?.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(rest.get(..digits)?).ok()?.parse().ok()
}

#[derive(Deserialize)]
struct DeltaEvent {
    delta: DeltaBody,
}

#[derive(Deserialize)]
struct DeltaBody {
    partial_json: Option<String>,
}

impl ToolWatch {
    pub fn new() -> ToolWatch {
        ToolWatch::default()
    }

    /// Reads one stream event.
    pub fn on_event(&mut self, cfg: &ToolConfig, e: &Event) {
        if !cfg.enabled {
            return;
        }
        match kind(e) {
            _ if e.truncated && matches!(e.name, b"content_block_delta" | b"") => {
                // The framer dropped an event's data: if it was a fragment, inputs are wrong.
                self.open.iter_mut().for_each(|o| o.truncated = true);
            }
            Kind::Delta if !self.open.is_empty() => {
                let Some(at) = find_index(e.data).and_then(|i| self.position(i)) else {
                    return;
                };
                self.parsed += 1;
                let Ok(d) = serde_json::from_slice::<DeltaEvent>(e.data) else {
                    return;
                };
                if let (Some(part), Some(open)) = (d.delta.partial_json, self.open.get_mut(at)) {
                    open.append(cfg.max_input_bytes, part.as_bytes());
                }
            }
            Kind::Start => {
                self.parsed += 1;
                if let Some((index, block)) = read_start(e.data) {
                    self.start(cfg, index, &block, e.data);
                }
            }
            Kind::Stop => {
                if let Some(at) = find_index(e.data).and_then(|i| self.position(i)) {
                    let open = self.open.remove(at);
                    self.close(cfg, open, false);
                }
            }
            _ => {}
        }
    }

    /// Reads a whole (non-streaming) response body.
    pub fn on_json(&mut self, cfg: &ToolConfig, body: &[u8]) {
        if !cfg.enabled {
            return;
        }
        let mut s = Scanner::new(body);
        // A body that breaks off keeps the calls before the break.
        let _ = self.json_content(cfg, &mut s, body);
    }

    fn json_content(&mut self, cfg: &ToolConfig, s: &mut Scanner, body: &[u8]) -> json::Result<()> {
        let mut top = s.enter_object()?;
        while let Some(key) = s.next_key(&mut top)? {
            if !key.matches(body, "content") || s.peek()? != b'[' {
                s.value()?;
                continue;
            }
            let mut blocks = s.enter_array()?;
            while s.next_item(&mut blocks)? {
                let b = read_block(s, body)?;
                if b.is_tool(body) {
                    let input = b.input.unwrap_or_default().of(body);
                    let kept = input.get(..cfg.max_input_bytes).unwrap_or(input);
                    let cut = kept.len() < input.len();
                    let call = call(cfg, b.name_in(body), kept, input.len(), cut, false);
                    self.record(call);
                }
            }
        }
        Ok(())
    }

    /// Ends the response: blocks still open (the stream was cut) are reported as incomplete,
    /// with what was assembled. Returns every call.
    pub fn finish(&mut self, cfg: &ToolConfig) -> &[ToolCall] {
        for open in std::mem::take(&mut self.open) {
            self.close(cfg, open, true);
        }
        &self.calls
    }

    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// Calls past [`MAX_CALLS`], not recorded.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes held for open blocks (at most [`MAX_OPEN`] × `max_input_bytes`).
    pub fn carried(&self) -> usize {
        self.open.iter().map(|o| o.input.capacity()).sum()
    }

    fn position(&self, index: usize) -> Option<usize> {
        self.open.iter().position(|o| o.index == index)
    }

    fn start(&mut self, cfg: &ToolConfig, index: usize, block: &Block, data: &[u8]) {
        if !block.is_tool(data) {
            return;
        }
        // A repeated index, or more blocks than kept at once: the older one ends here.
        let at = self.position(index);
        if let Some(old) = at.map(|i| self.open.remove(i)) {
            self.close(cfg, old, true);
        }
        if self.open.len() >= MAX_OPEN {
            let oldest = self.open.remove(0);
            self.close(cfg, oldest, true);
        }
        let mut open = Open {
            index,
            name: block.name_in(data),
            input: Vec::new(),
            seen: 0,
            truncated: false,
            seeded: false,
        };
        open.append(
            cfg.max_input_bytes,
            block.input.unwrap_or_default().of(data),
        );
        open.seeded = true;
        self.open.push(open);
    }

    fn close(&mut self, cfg: &ToolConfig, o: Open, incomplete: bool) {
        let call = call(cfg, o.name, &o.input, o.seen, o.truncated, incomplete);
        self.record(call);
    }

    fn record(&mut self, call: ToolCall) {
        if self.calls.len() < MAX_CALLS {
            self.calls.push(call);
        } else {
            self.dropped += 1;
        }
    }
}

/// The call to `name` with the (possibly cut) input text `input`.
fn call(
    cfg: &ToolConfig,
    name: String,
    input: &[u8],
    input_bytes: usize,
    truncated: bool,
    incomplete: bool,
) -> ToolCall {
    let shell = cfg.shell_tools.contains(&name);
    let rules: Vec<&RiskRule> = cfg
        .risks
        .iter()
        .filter(|r| r.applies(&name, shell))
        .collect();
    let mut hit = vec![false; rules.len()];
    let mut program = None;
    input::each_string(input, &mut |key, value| {
        if shell && program.is_none() && key == Some(COMMAND) {
            program = input::program(value);
        }
        for (rule, hit) in rules.iter().zip(hit.iter_mut()) {
            *hit = *hit || rule.matches(value);
        }
    });
    let mut risks: Vec<String> = Vec::new();
    for (rule, _) in rules.iter().zip(&hit).filter(|(_, h)| **h) {
        if !risks.contains(&rule.tag) {
            risks.push(rule.tag.clone());
        }
    }
    let label = if cfg.labels.contains(&name) {
        name.clone()
    } else if name.starts_with("mcp__") {
        "mcp".to_owned()
    } else {
        "other".to_owned()
    };
    ToolCall {
        name,
        label,
        program,
        risks,
        input_bytes,
        truncated,
        incomplete,
    }
}

/// The calls of one tool in the audit record: counts, program names, tags; no input text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolSummary {
    pub tool: String,
    pub count: u64,
    /// Distinct program names (shell tools), at most [`MAX_PROGRAMS`].
    pub programs: Vec<String>,
    /// Each risk tag with the number of this tool's calls it tagged.
    pub risks: Vec<Risk>,
    pub truncated: u64,
    pub incomplete: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Risk {
    pub tag: String,
    pub count: u64,
}

/// Calls grouped by tool, in the order tools were first called.
pub fn summary(calls: &[ToolCall]) -> Vec<ToolSummary> {
    let mut out: Vec<ToolSummary> = Vec::new();
    for c in calls {
        let at = match out.iter().position(|s| s.tool == c.name) {
            Some(i) => i,
            None => {
                out.push(ToolSummary {
                    tool: c.name.clone(),
                    count: 0,
                    programs: Vec::new(),
                    risks: Vec::new(),
                    truncated: 0,
                    incomplete: 0,
                });
                out.len() - 1
            }
        };
        let Some(s) = out.get_mut(at) else {
            continue;
        };
        s.count += 1;
        s.truncated += u64::from(c.truncated);
        s.incomplete += u64::from(c.incomplete);
        if let Some(p) = &c.program {
            if !s.programs.contains(p) && s.programs.len() < MAX_PROGRAMS {
                s.programs.push(p.clone());
            }
        }
        for tag in &c.risks {
            match s.risks.iter_mut().find(|r| &r.tag == tag) {
                Some(r) => r.count += 1,
                None => s.risks.push(Risk {
                    tag: tag.clone(),
                    count: 1,
                }),
            }
        }
    }
    out
}

/// The members of a content block the module reads (others are skipped).
#[derive(Debug, Default)]
struct Block {
    ty: Option<Str>,
    name: Option<Str>,
    id: Option<Str>,
    tool_use_id: Option<Str>,
    input: Option<Span>,
    content: Option<Span>,
}

impl Block {
    fn is_tool(&self, buf: &[u8]) -> bool {
        self.ty
            .is_some_and(|t| TOOL_BLOCKS.iter().any(|w| t.matches(buf, w)))
    }

    fn name_in(&self, buf: &[u8]) -> String {
        let name = self.name.and_then(|n| n.decode(buf));
        crate::text::cap(name.unwrap_or_else(|| "unknown".to_owned()), MAX_NAME)
    }
}

/// Reads one content block (any value: a non-object reads as an empty block).
fn read_block(s: &mut Scanner, buf: &[u8]) -> json::Result<Block> {
    let mut b = Block::default();
    if s.peek()? != b'{' {
        s.value()?;
        return Ok(b);
    }
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        let slot = if key.matches(buf, "type") {
            &mut b.ty
        } else if key.matches(buf, "name") {
            &mut b.name
        } else if key.matches(buf, "id") {
            &mut b.id
        } else if key.matches(buf, "tool_use_id") {
            &mut b.tool_use_id
        } else {
            if key.matches(buf, "input") {
                b.input = Some(s.value()?);
            } else if key.matches(buf, "content") {
                b.content = Some(s.value()?);
            } else {
                s.value()?;
            }
            continue;
        };
        *slot = if s.peek()? == b'"' {
            Some(s.string()?)
        } else {
            s.value()?;
            None
        };
    }
    Ok(b)
}

/// A `content_block_start` event's `index` and block.
fn read_start(data: &[u8]) -> Option<(usize, Block)> {
    let mut s = Scanner::new(data);
    let mut obj = s.enter_object().ok()?;
    let (mut index, mut block) = (None, None);
    while let Some(key) = s.next_key(&mut obj).ok()? {
        if key.matches(data, "index") {
            let digits = s.value().ok()?.of(data);
            index = std::str::from_utf8(digits).ok()?.parse().ok();
        } else if key.matches(data, "content_block") {
            block = Some(read_block(&mut s, data).ok()?);
        } else {
            s.value().ok()?;
        }
    }
    Some((index?, block?))
}

#[cfg(test)]
mod tests;
