//! The cache-relevant shape of a request body, collected by the scanner in the same pass that
//! reads `model`: every client `cache_control` marker (position and TTL), and the few places a
//! marker could be added (the last tool, the last system block, the last two user turns). It is
//! a summary, not a tree: memory stays constant however long the conversation is.

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

/// Position of a breakpoint in the API's processing order: (section, index, block, sub-block),
/// sections being tools (0), system (1), messages (2).
pub type Pos = (u8, usize, usize, usize);

/// One tool definition, system block or message content block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The object, braces included.
    pub span: Span,
    /// It has a `cache_control` key at all (even `null`): never add a second one.
    pub has_cache_control: bool,
    /// The API accepts a marker on it (not thinking, not an empty text, a known block type).
    pub eligible: bool,
    /// `{}`: an insertion needs no leading comma.
    pub empty: bool,
}

/// A `system` value or a message's `content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A JSON string (span with quotes) and whether it is blank.
    Text { span: Span, blank: bool },
    /// A block array: its last block, and the block a marker would go on (the last eligible one
    /// after the last block that has `cache_control`), each with its index.
    Blocks {
        last: Option<(usize, Block)>,
        target: Option<(usize, Block)>,
    },
    /// Anything else (null, a number...): left alone.
    Other,
}

/// A user message: its index in `messages` and its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTurn {
    pub index: usize,
    pub content: Content,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Span of the `tools` array and its last element.
    pub tools: Option<(Span, Option<(usize, Block)>)>,
    pub system: Option<(Span, Content)>,
    /// Span of `messages`, its last user turn and the one before.
    pub messages: Option<(Span, Option<UserTurn>, Option<UserTurn>)>,
    /// Mid-conversation `role:"system"` messages (several vendors reject them).
    pub system_messages: usize,
    /// Where the last user message starts, and the messages between it and the user message
    /// before it (the assistant turn its tool results answer; at most [`TURN_MESSAGES`]).
    pub last_turn: Option<(usize, Vec<usize>)>,
    /// Every client marker (tools, system, message blocks and their sub-blocks), in body order.
    pub markers: Vec<(Pos, Ttl)>,
    /// A top-level `cache_control` (automatic caching): `Some(None)` if present but not an object.
    pub top_level: Option<Option<Ttl>>,
    /// Position of the root object's closing brace.
    pub root_close: usize,
}

/// Messages of the assistant turn before the last user message that [`Layout::last_turn`] keeps.
pub const TURN_MESSAGES: usize = 16;

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

/// The raw bytes of a key, or its decoded form when it has escapes, for matching.
fn key_bytes<'a>(key: &Str, body: &'a [u8], decoded: &'a mut String) -> &'a [u8] {
    if key.escaped {
        *decoded = key.decode(body).unwrap_or_default();
        decoded.as_bytes()
    } else {
        key.span.of(body)
    }
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

/// Collects markers while walking one section.
struct Walk<'a> {
    body: &'a [u8],
    markers: &'a mut Vec<(Pos, Ttl)>,
    /// Skip message contents without markers (always, but in the test that checks it).
    skip: bool,
}

impl Walk<'_> {
    /// Reads one element of `tools`, `system` or a message's `content` at position `pos`.
    fn block(&mut self, s: &mut Scanner, kind: Kind, pos: Pos) -> Result<Block> {
        let body = self.body;
        let start = s.pos();
        let mut b = Block {
            span: Span::default(),
            has_cache_control: false,
            eligible: false,
            empty: true,
        };
        if s.peek()? != b'{' {
            b.span = s.value()?;
            b.empty = false;
            return Ok(b);
        }
        let mut ty = Span::default();
        let mut text_blank = false;
        let mut decoded = String::new();
        let mut obj = s.enter_object()?;
        while let Some(key) = s.next_key(&mut obj)? {
            b.empty = false;
            match key_bytes(&key, body, &mut decoded) {
                b"cache_control" => {
                    b.has_cache_control = true;
                    if let Some(ttl) = marker(s, body)? {
                        self.markers.push((pos, ttl));
                    }
                }
                b"type" if kind != Kind::Tool && s.peek()? == b'"' => ty = s.string()?.span,
                b"text" if kind != Kind::Tool && s.peek()? == b'"' => {
                    text_blank = blank(s.skip_string()?.of(body));
                }
                b"content" if kind == Kind::Message && s.peek()? == b'[' => {
                    self.nested_markers(s, pos)?;
                }
                _ => {
                    s.value()?;
                }
            }
        }
        b.span = Span {
            start,
            end: s.pos(),
        };
        b.eligible = match kind {
            Kind::Tool => true,
            _ => {
                let ty = ty.of(body);
                markable(ty) && !(ty == b"text" && text_blank)
            }
        };
        Ok(b)
    }

    /// Markers on the sub-blocks of a block's `content` array (tool results).
    fn nested_markers(&mut self, s: &mut Scanner, (section, i, k, _): Pos) -> Result<()> {
        let mut arr = s.enter_array()?;
        let mut sub = 0;
        while s.next_item(&mut arr)? {
            sub += 1;
            if s.peek()? != b'{' {
                s.value()?;
                continue;
            }
            let mut obj = s.enter_object()?;
            while let Some(key) = s.next_key(&mut obj)? {
                if key.matches(self.body, "cache_control") {
                    if let Some(ttl) = marker(s, self.body)? {
                        self.markers.push(((section, i, k, sub), ttl));
                    }
                } else {
                    s.value()?;
                }
            }
        }
        Ok(())
    }

    /// Reads a block array, returning its last block and its marker target (see [`Content`]).
    fn blocks(&mut self, s: &mut Scanner, kind: Kind, section: u8, i: usize) -> Result<Content> {
        let mut last = None;
        let mut target = None;
        let mut arr = s.enter_array()?;
        let mut k = 0;
        while s.next_item(&mut arr)? {
            let b = self.block(s, kind, (section, i, k, 0))?;
            if b.has_cache_control {
                target = None;
            } else if b.eligible {
                target = Some((k, b));
            }
            last = Some((k, b));
            k += 1;
        }
        Ok(Content::Blocks { last, target })
    }

    /// Reads a `system` value or a message `content` value.
    fn content(&mut self, s: &mut Scanner, kind: Kind, section: u8, i: usize) -> Result<Content> {
        match s.peek()? {
            b'"' => {
                let start = s.pos();
                let text = s.skip_string()?;
                Ok(Content::Text {
                    span: Span {
                        start,
                        end: s.pos(),
                    },
                    blank: blank(text.of(self.body)),
                })
            }
            b'[' => self.blocks(s, kind, section, i),
            _ => {
                s.value()?;
                Ok(Content::Other)
            }
        }
    }

    /// Reads one message; returns its role and its content, or where its content starts when
    /// that is a block array without any `cache_control`: most of a conversation's bytes, which
    /// are then skipped at scanning speed and read block by block only if the message turns out
    /// to be one of the last two user turns (see [`Walk::unread`]).
    fn message(&mut self, s: &mut Scanner, i: usize) -> Result<(Role, Seen)> {
        let mut role = Role::Other;
        let mut content = Seen::Read(Content::Other);
        if s.peek()? != b'{' {
            s.value()?;
            return Ok((role, content));
        }
        let mut obj = s.enter_object()?;
        while let Some(key) = s.next_key(&mut obj)? {
            if key.matches(self.body, "role") {
                role = if s.peek()? == b'"' {
                    let r = s.string()?;
                    if r.matches(self.body, "user") {
                        Role::User
                    } else if r.matches(self.body, "system") {
                        Role::System
                    } else {
                        Role::Other
                    }
                } else {
                    s.value()?;
                    Role::Other
                };
            } else if key.matches(self.body, "content") {
                let start = s.pos();
                let unmarked =
                    self.skip && s.peek()? == b'[' && !s.value_has_key("cache_control")?;
                content = if unmarked {
                    Seen::Skipped(start)
                } else {
                    s.seek(start);
                    Seen::Read(self.content(s, Kind::Message, 2, i)?)
                };
            } else {
                s.value()?;
            }
        }
        Ok((role, content))
    }

    /// The content of a user turn whose blocks were skipped (it has no markers to collect).
    fn unread(&mut self, s: &mut Scanner, turn: Option<(usize, Seen)>) -> Result<Option<UserTurn>> {
        let Some((index, content)) = turn else {
            return Ok(None);
        };
        let content = match content {
            Seen::Read(c) => c,
            Seen::Skipped(start) => {
                s.seek(start);
                self.content(s, Kind::Message, 2, index)?
            }
        };
        Ok(Some(UserTurn { index, content }))
    }
}

/// A message's content as the walk left it: read, or skipped from this offset.
enum Seen {
    Read(Content),
    Skipped(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    System,
    Other,
}

impl Layout {
    /// Reads the value of a top-level key if it is one the cache planner needs, and returns
    /// whether it was (otherwise the caller skips the value). The cursor is at the value.
    pub fn read_member(&mut self, s: &mut Scanner, body: &[u8], key: &Str) -> Result<bool> {
        self.read(s, body, key, true)
    }

    fn read(&mut self, s: &mut Scanner, body: &[u8], key: &Str, skip: bool) -> Result<bool> {
        let start = s.pos();
        let mut w = Walk {
            body,
            markers: &mut self.markers,
            skip,
        };
        if key.matches(body, "tools") {
            if s.peek()? != b'[' {
                s.value()?;
                return Ok(true);
            }
            let last = match w.blocks(s, Kind::Tool, 0, 0)? {
                Content::Blocks { last, .. } => last,
                _ => None,
            };
            self.tools = Some((span_from(start, s), last));
        } else if key.matches(body, "system") {
            let c = w.content(s, Kind::System, 1, 0)?;
            self.system = Some((span_from(start, s), c));
        } else if key.matches(body, "messages") {
            if s.peek()? != b'[' {
                s.value()?;
                return Ok(true);
            }
            let (mut last, mut previous) = (None, None);
            let mut arr = s.enter_array()?;
            let mut i = 0;
            let mut since_user = Vec::new();
            while s.next_item(&mut arr)? {
                let at = s.pos();
                match w.message(s, i)? {
                    (Role::User, content) => {
                        previous = last;
                        last = Some((i, content));
                        self.last_turn = Some((at, std::mem::take(&mut since_user)));
                    }
                    (Role::System, _) => self.system_messages += 1,
                    (Role::Other, _) if since_user.len() < TURN_MESSAGES => since_user.push(at),
                    (Role::Other, _) => {}
                }
                i += 1;
            }
            let span = span_from(start, s);
            let (last, previous) = (w.unread(s, last)?, w.unread(s, previous)?);
            s.seek(span.end);
            self.messages = Some((span, last, previous));
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
        walked(body, true).unwrap()
    }

    /// The layout of `body`, skipping unmarked message contents or walking every block.
    fn walked(body: &str, skip: bool) -> Result<Layout> {
        let b = body.as_bytes();
        let mut s = Scanner::new(b);
        let mut l = Layout::default();
        let mut obj = s.enter_object()?;
        while let Some(k) = s.next_key(&mut obj)? {
            if !l.read(&mut s, b, &k, skip)? {
                s.value()?;
            }
        }
        s.finish()?;
        Ok(l)
    }

    /// Message contents as Claude Code and the SDKs send them, with markers (plain, 1h, on
    /// tool-result sub-blocks, behind an escaped key), look-alikes that are not markers, and
    /// whitespace between tokens.
    fn conversation() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let block = prop_oneof![
            Just(r#"{"type":"text","text":"a \"quoted\" line\n"}"#),
            Just(r#"{"type":"text","text":" \n"}"#),
            Just(r#"{"type":"thinking","thinking":"t","signature":"s"}"#),
            Just(
                r#"{"type":"tool_use","id":"t","name":"Bash","input":{"cache_control":{"ttl":"1h"}}}"#
            ),
            Just(r#"{"type":"tool_result","tool_use_id":"t","content":"cache_control"}"#),
            Just(
                r#"{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r","cache_control":{"type":"ephemeral"}}]}"#
            ),
            Just(
                r#"{"type":"image","source":{"data":"AAAA"},"cache_control":{"type":"ephemeral","ttl":"1h"}}"#
            ),
            Just(
                r#"{ "type" : "text" , "text" : "x" , "cache_control" : { "type" : "ephemeral" } }"#
            ),
            Just(r#"{"type":"text","text":"x","cache\u005fcontrol":{"type":"ephemeral"}}"#),
            Just(r#"{"type":"text","text":"x","long\u005fkey\u005fname":1}"#),
            Just(r#""not a block""#),
        ];
        let content = prop_oneof![
            Just(r#""plain text""#.to_owned()),
            Just("null".to_owned()),
            prop::collection::vec(block, 0..4).prop_map(|b| format!("[{}]", b.join(","))),
        ];
        let role = prop_oneof![Just("user"), Just("assistant"), Just("system")];
        let message = (role, content, any::<bool>()).prop_map(|(r, c, role_first)| {
            if role_first {
                format!(r#"{{"role":"{r}","content":{c}}}"#)
            } else {
                format!(r#"{{"content":{c}, "role":"{r}"}}"#)
            }
        });
        prop::collection::vec(message, 0..8).prop_map(|m| {
            format!(
                r#"{{"model":"m","messages":[{}],"system":"s"}}"#,
                m.join(", ")
            )
        })
    }

    proptest::proptest! {
        #[test]
        fn skipping_unmarked_contents_changes_nothing(body in conversation()) {
            let skipped = walked(&body, true).unwrap();
            proptest::prop_assert_eq!(&skipped, &walked(&body, false).unwrap(), "{}", body);
        }
    }

    #[test]
    fn markers_in_early_messages_are_counted() {
        let l = layout(
            r#"{"messages":[
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r","cache_control":{"type":"ephemeral"}}]}]},
              {"role":"assistant","content":[{"type":"text","text":"x","cache\u005fcontrol":{"type":"ephemeral","ttl":"1h"}}]},
              {"role":"user","content":[{"type":"text","text":"q"}]},
              {"role":"user","content":[{"type":"text","text":"a"},{"type":"thinking"}]}]}"#,
        );
        assert_eq!(
            l.markers,
            [
                ((2, 0, 0, 1), Ttl::FiveMinutes),
                ((2, 1, 0, 0), Ttl::OneHour)
            ]
        );
        let (span, last, previous) = l.messages.unwrap();
        let Content::Blocks { target, last: end } = last.unwrap().content else {
            panic!()
        };
        assert_eq!((target.unwrap().0, end.unwrap().0), (0, 1));
        assert_eq!(previous.unwrap().index, 2);
        assert!(!span.is_empty());
    }

    #[test]
    fn collects_markers_and_targets() {
        let l = layout(
            r#"{"tools":[{"name":"a"},{"name":"b","cache_control":{"type":"ephemeral","ttl":"1h"}}],
            "system":[{"type":"text","text":"x"},{"type":"text","text":"  \n "}],
            "messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"ok"}]},
              {"role":"system","content":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","scope":"global"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r","cache_control":{"type":"ephemeral"}}]},{"type":"fallback"}]}],
            "cache_control":{"type":"ephemeral","ttl":"1h"}}"#,
        );
        assert_eq!(
            l.markers,
            [
                ((0, 0, 1, 0), Ttl::OneHour),
                ((2, 2, 0, 0), Ttl::FiveMinutes),
                ((2, 3, 0, 1), Ttl::FiveMinutes)
            ]
        );
        let (_, last_tool) = l.tools.unwrap();
        let (i, b) = last_tool.unwrap();
        assert!(i == 1 && b.has_cache_control && b.eligible);
        let Content::Blocks { last, .. } = l.system.unwrap().1 else {
            panic!()
        };
        let (i, b) = last.unwrap();
        assert!(i == 1 && !b.eligible, "blank text");
        let (_, last_user, previous) = l.messages.unwrap();
        let last_user = last_user.unwrap();
        assert_eq!(last_user.index, 3);
        // The tool result is the target: the unknown block after it cannot take a marker.
        let Content::Blocks { target, last } = last_user.content else {
            panic!()
        };
        assert_eq!((target.unwrap().0, last.unwrap().0), (0, 1));
        let previous = previous.unwrap();
        assert_eq!(previous.index, 0);
        assert!(matches!(
            previous.content,
            Content::Text { blank: false, .. }
        ));
        assert_eq!(l.top_level, Some(Some(Ttl::OneHour)));
        assert_eq!(l.system_messages, 1);
    }

    #[test]
    fn a_later_marker_clears_the_target() {
        let l = layout(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","cache_control":{"type":"ephemeral"}},{"type":"thinking"}]}]}"#,
        );
        let Content::Blocks { target, .. } = l.messages.unwrap().1.unwrap().content else {
            panic!()
        };
        assert_eq!(target, None);
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let l = layout(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a","cache\u005fcontrol":{"type":"ephemeral"}}]}]}"#,
        );
        assert_eq!(l.markers.len(), 1);
    }

    #[test]
    fn blank_handles_escapes() {
        assert!(blank(b""));
        assert!(blank(br" \n\t "));
        assert!(!blank(br"\u0041"));
        assert!(!blank(b"a"));
    }
}
