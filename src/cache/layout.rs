//! The cache-relevant shape of a request body, collected by the scanner in the same pass that
//! reads `model`: where the tools, system blocks and message blocks are, which carry a
//! `cache_control` marker (and its TTL), and which could take one.

use crate::json::{Result, Scanner, Span, Str};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ttl {
    FiveMinutes,
    OneHour,
}

impl Ttl {
    pub fn as_str(self) -> &'static str {
        match self {
            Ttl::FiveMinutes => "5m",
            Ttl::OneHour => "1h",
        }
    }
}

/// One tool definition, system block or message content block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The object, braces included.
    pub span: Span,
    /// Its own marker, if it has one.
    pub marker: Option<Ttl>,
    /// It has a `cache_control` key at all (even `null`): never add a second one.
    pub has_cache_control: bool,
    /// The API accepts a marker on it (not thinking, not an empty text, a known block type).
    pub eligible: bool,
    /// `{}`: an insertion needs no leading comma.
    pub empty: bool,
    /// Markers on its sub-blocks (`tool_result.content[]`): they count towards the limit.
    pub nested: Vec<Ttl>,
}

/// A `system` value or a message's `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A JSON string (span with quotes) and whether it is blank.
    Text {
        span: Span,
        blank: bool,
    },
    Blocks(Vec<Block>),
    /// Anything else (null, a number...): left alone.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    System,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Span of the `tools` array and its elements.
    pub tools: Option<(Span, Vec<Block>)>,
    pub system: Option<(Span, Content)>,
    pub messages: Option<(Span, Vec<Message>)>,
    /// A top-level `cache_control` (automatic caching): `Some(None)` if present but not an object.
    pub top_level: Option<Option<Ttl>>,
    /// Position of the root object's closing brace.
    pub root_close: usize,
}

/// Block types the API accepts a marker on (anthropic-wire.md §4.1). Unknown types are left alone.
fn markable(ty: &[u8]) -> bool {
    matches!(
        ty,
        b"text" | b"image" | b"document" | b"tool_use" | b"tool_result" | b"search_result"
    )
}

/// True for an empty string or one made only of whitespace (raw or escaped).
fn blank(raw: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'\\' if matches!(raw.get(i + 1), Some(b'n' | b't' | b'r')) => i += 2,
            _ => return false,
        }
    }
    true
}

/// Reads a `cache_control` value; the cursor is at it.
fn marker(s: &mut Scanner, body: &[u8]) -> Result<Option<Ttl>> {
    if s.peek()? != b'{' {
        s.value()?;
        return Ok(None);
    }
    let mut ttl = Ttl::FiveMinutes;
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        if key.matches(body, "ttl") && s.peek()? == b'"' {
            if s.string()?.matches(body, "1h") {
                ttl = Ttl::OneHour;
            }
        } else {
            s.value()?;
        }
    }
    Ok(Some(ttl))
}

/// What kind of list a block belongs to; decides which keys matter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tool,
    System,
    Message,
}

fn string_or_skip(s: &mut Scanner) -> Result<Option<Str>> {
    if s.peek()? == b'"' {
        s.string().map(Some)
    } else {
        s.value()?;
        Ok(None)
    }
}

/// Reads one element of `tools`, `system` or a message's `content`.
fn block(s: &mut Scanner, body: &[u8], kind: Kind) -> Result<Block> {
    let start = s.pos();
    if s.peek()? != b'{' {
        let span = s.value()?;
        return Ok(Block {
            span,
            marker: None,
            has_cache_control: false,
            eligible: false,
            empty: false,
            nested: Vec::new(),
        });
    }
    let mut b = Block {
        span: Span::default(),
        marker: None,
        has_cache_control: false,
        eligible: kind == Kind::Tool,
        empty: true,
        nested: Vec::new(),
    };
    let mut ty: Option<Str> = None;
    let mut text_blank = false;
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        b.empty = false;
        if key.matches(body, "cache_control") {
            b.has_cache_control = true;
            b.marker = marker(s, body)?;
        } else if kind == Kind::Tool {
            s.value()?;
        } else if key.matches(body, "type") {
            ty = string_or_skip(s)?;
        } else if key.matches(body, "text") {
            text_blank = string_or_skip(s)?.is_none_or(|t| blank(t.span.of(body)));
        } else if kind == Kind::Message && key.matches(body, "content") && s.peek()? == b'[' {
            nested_markers(s, body, &mut b.nested)?;
        } else {
            s.value()?;
        }
    }
    b.span = Span {
        start,
        end: s.pos(),
    };
    if kind != Kind::Tool {
        let ty = ty.map(|t| t.span.of(body)).unwrap_or_default();
        b.eligible = markable(ty) && !(ty == b"text" && text_blank);
    }
    Ok(b)
}

/// Markers on the sub-blocks of a block's `content` array (tool results).
fn nested_markers(s: &mut Scanner, body: &[u8], out: &mut Vec<Ttl>) -> Result<()> {
    let mut arr = s.enter_array()?;
    while s.next_item(&mut arr)? {
        if s.peek()? != b'{' {
            s.value()?;
            continue;
        }
        let mut obj = s.enter_object()?;
        while let Some(key) = s.next_key(&mut obj)? {
            if key.matches(body, "cache_control") {
                if let Some(ttl) = marker(s, body)? {
                    out.push(ttl);
                }
            } else {
                s.value()?;
            }
        }
    }
    Ok(())
}

/// Reads an array of blocks (`tools` or a block-form `system`/`content`).
fn blocks(s: &mut Scanner, body: &[u8], kind: Kind) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    let mut arr = s.enter_array()?;
    while s.next_item(&mut arr)? {
        out.push(block(s, body, kind)?);
    }
    Ok(out)
}

/// Reads a `system` value or a message `content` value.
fn content(s: &mut Scanner, body: &[u8], kind: Kind) -> Result<Content> {
    match s.peek()? {
        b'"' => {
            let start = s.pos();
            let t = s.string()?;
            Ok(Content::Text {
                span: Span {
                    start,
                    end: s.pos(),
                },
                blank: blank(t.span.of(body)),
            })
        }
        b'[' => Ok(Content::Blocks(blocks(s, body, kind)?)),
        _ => {
            s.value()?;
            Ok(Content::Other)
        }
    }
}

fn message(s: &mut Scanner, body: &[u8]) -> Result<Message> {
    let mut m = Message {
        role: Role::Other,
        content: Content::Other,
    };
    if s.peek()? != b'{' {
        s.value()?;
        return Ok(m);
    }
    let mut obj = s.enter_object()?;
    while let Some(key) = s.next_key(&mut obj)? {
        if key.matches(body, "role") {
            m.role = match string_or_skip(s)? {
                Some(r) if r.matches(body, "user") => Role::User,
                Some(r) if r.matches(body, "assistant") => Role::Assistant,
                Some(r) if r.matches(body, "system") => Role::System,
                _ => Role::Other,
            };
        } else if key.matches(body, "content") {
            m.content = content(s, body, Kind::Message)?;
        } else {
            s.value()?;
        }
    }
    Ok(m)
}

impl Layout {
    /// Reads the value of a top-level key if it is one the cache planner needs, and returns
    /// whether it was (otherwise the caller skips the value). The cursor is at the value.
    pub fn read_member(&mut self, s: &mut Scanner, body: &[u8], key: &Str) -> Result<bool> {
        let start = s.pos();
        if key.matches(body, "tools") {
            if s.peek()? == b'[' {
                let list = blocks(s, body, Kind::Tool)?;
                self.tools = Some((span_from(start, s), list));
            } else {
                s.value()?;
            }
        } else if key.matches(body, "system") {
            let c = content(s, body, Kind::System)?;
            self.system = Some((span_from(start, s), c));
        } else if key.matches(body, "messages") {
            if s.peek()? == b'[' {
                let mut list = Vec::new();
                let mut arr = s.enter_array()?;
                while s.next_item(&mut arr)? {
                    list.push(message(s, body)?);
                }
                self.messages = Some((span_from(start, s), list));
            } else {
                s.value()?;
            }
        } else if key.matches(body, "cache_control") {
            self.top_level = Some(marker(s, body)?);
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

fn span_from(start: usize, s: &Scanner) -> Span {
    Span {
        start,
        end: s.pos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(body: &str) -> Layout {
        let b = body.as_bytes();
        let mut s = Scanner::new(b);
        let mut l = Layout::default();
        let mut obj = s.enter_object().unwrap();
        while let Some(k) = s.next_key(&mut obj).unwrap() {
            if !l.read_member(&mut s, b, &k).unwrap() {
                s.value().unwrap();
            }
        }
        l
    }

    #[test]
    fn collects_markers_and_eligibility() {
        let l = layout(
            r#"{"tools":[{"name":"a"},{"name":"b","cache_control":{"type":"ephemeral","ttl":"1h"}}],
            "system":[{"type":"text","text":"x"},{"type":"text","text":"  \n "}],
            "messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"ok"}]},
              {"role":"system","content":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","scope":"global"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r","cache_control":{"type":"ephemeral"}}]},{"type":"fallback"}]}],
            "cache_control":{"type":"ephemeral","ttl":"1h"}}"#,
        );
        let (_, tools) = l.tools.unwrap();
        assert_eq!(tools[0].marker, None);
        assert!(tools[0].eligible);
        assert_eq!(tools[1].marker, Some(Ttl::OneHour));
        let Content::Blocks(system) = l.system.unwrap().1 else {
            panic!()
        };
        assert!(system[0].eligible);
        assert!(!system[1].eligible, "blank text");
        let (_, msgs) = l.messages.unwrap();
        assert_eq!(msgs[0].role, Role::User);
        assert!(matches!(
            msgs[0].content,
            Content::Text { blank: false, .. }
        ));
        let Content::Blocks(a) = &msgs[1].content else {
            panic!()
        };
        assert!(!a[0].eligible, "thinking");
        assert!(a[1].eligible);
        assert_eq!(msgs[2].role, Role::System);
        let Content::Blocks(sys) = &msgs[2].content else {
            panic!()
        };
        assert_eq!(sys[0].marker, Some(Ttl::FiveMinutes));
        let Content::Blocks(u) = &msgs[3].content else {
            panic!()
        };
        assert_eq!(u[0].nested, vec![Ttl::FiveMinutes]);
        assert!(u[0].eligible && !u[1].eligible, "unknown block type");
        assert_eq!(l.top_level, Some(Some(Ttl::OneHour)));
    }

    #[test]
    fn blank_handles_escapes() {
        assert!(blank(b""));
        assert!(blank(br" \n\t "));
        assert!(!blank(br"\u0041"));
        assert!(!blank(b"a"));
    }
}
