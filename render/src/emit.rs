//! Writes a YAML document the way the shipped bootstraps are written: block style, two-space
//! indents, sequences at their key's indent, short leaves in flow style
//! (`address: {socket_address: {address: 127.0.0.1, port_value: 9901}}`), a blank line between
//! top-level sections, and comments above the nodes named by path patterns. Scalars are written
//! by serde_yaml_ng; strings that Envoy's YAML loader (yaml-cpp) would read as booleans (`on`,
//! `yes`, `n`...) are quoted. The output is parsed again and must give the same value.

use serde_yaml_ng::{Mapping, Value};

/// Longest line a flow-style node may make.
const WIDTH: usize = 100;
/// Most scalars a flow-style node may hold.
const FLOW_LEAVES: usize = 6;

/// A comment placed above every node whose path matches `pattern`: segments separated by `/`,
/// each a mapping key, `[n]` (the n-th item of a sequence), `[name=x]` (the item whose `name`
/// is `x`) or `**` (any number of segments).
pub struct Comment<'a> {
    pub pattern: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
    Named(String),
    Any,
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Item(usize, Option<String>),
}

fn pattern(p: &str) -> Vec<Seg> {
    p.split('/')
        .map(|s| {
            if s == "**" {
                Seg::Any
            } else if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                match inner.strip_prefix("name=") {
                    Some(name) => Seg::Named(name.to_owned()),
                    None => inner
                        .parse()
                        .map_or_else(|_| Seg::Key(s.to_owned()), Seg::Index),
                }
            } else {
                Seg::Key(s.to_owned())
            }
        })
        .collect()
}

fn matches(pattern: &[Seg], path: &[Step]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((Seg::Any, rest)), _) => {
            matches(rest, path) || path.split_first().is_some_and(|(_, p)| matches(pattern, p))
        }
        (Some((seg, rest)), Some((step, p))) => {
            let here = match (seg, step) {
                (Seg::Key(k), Step::Key(s)) => k == s,
                (Seg::Index(i), Step::Item(j, _)) => i == j,
                (Seg::Named(n), Step::Item(_, Some(s))) => n == s,
                _ => false,
            };
            here && matches(rest, p)
        }
        _ => false,
    }
}

struct Emitter<'a> {
    comments: Vec<(Vec<Seg>, &'a str)>,
    placed: Vec<bool>,
    out: String,
}

/// `doc` as YAML text, after `header` (comment lines, written as they are), with `comments`.
/// Fails on a value YAML cannot hold as written here (tagged values, non-scalar keys), a
/// comment whose pattern matches no node, or output that does not parse back to `doc`.
pub fn emit(doc: &Value, header: &str, comments: &[Comment]) -> Result<String, String> {
    let mut e = Emitter {
        comments: comments
            .iter()
            .map(|c| (pattern(c.pattern), c.text))
            .collect(),
        placed: vec![false; comments.len()],
        out: String::new(),
    };
    e.out.push_str(header);
    let mut path = Vec::new();
    match doc {
        Value::Mapping(m) if !m.is_empty() => e.entries(m, 0, &mut path, true)?,
        Value::Sequence(s) if !s.is_empty() => e.items(s, 0, &mut path)?,
        other => {
            let text = scalar(other)?;
            e.out.push_str(&text);
            e.out.push('\n');
        }
    }
    if let Some(i) = e.placed.iter().position(|p| !p) {
        let pattern = comments.get(i).map_or("", |c| c.pattern);
        return Err(format!("no node matches the comment pattern {pattern:?}"));
    }
    let back: Value = serde_yaml_ng::from_str(&e.out)
        .map_err(|err| format!("the YAML written does not parse: {err}"))?;
    if back != *doc {
        return Err("the YAML written does not read back as the document".to_owned());
    }
    Ok(e.out)
}

impl Emitter<'_> {
    /// Writes the comments whose pattern matches `path`, at `indent`.
    fn comment(&mut self, path: &[Step], indent: usize) {
        for (i, (pattern, text)) in self.comments.iter().enumerate() {
            if matches(pattern, path) {
                for line in text.lines() {
                    push_indent(&mut self.out, indent);
                    if line.is_empty() {
                        self.out.push_str("#\n");
                    } else {
                        self.out.push_str("# ");
                        self.out.push_str(line);
                        self.out.push('\n');
                    }
                }
                if let Some(p) = self.placed.get_mut(i) {
                    *p = true;
                }
            }
        }
    }

    /// Whether a comment targets a node below `v` (at `path`).
    fn commented_within(&self, path: &[Step], v: &Value) -> bool {
        let mut path = path.to_vec();
        self.commented_below(&mut path, v)
    }

    fn commented_below(&self, path: &mut Vec<Step>, v: &Value) -> bool {
        let hit = |path: &mut Vec<Step>, step: Step, child: &Value| {
            path.push(step);
            let hit = self.comments.iter().any(|(p, _)| matches(p, path))
                || self.commented_below(path, child);
            path.pop();
            hit
        };
        match v {
            Value::Mapping(m) => m
                .iter()
                .any(|(k, child)| hit(path, Step::Key(key_text(k)), child)),
            Value::Sequence(s) => s
                .iter()
                .enumerate()
                .any(|(i, child)| hit(path, item_step(i, child), child)),
            _ => false,
        }
    }

    fn entries(
        &mut self,
        m: &Mapping,
        indent: usize,
        path: &mut Vec<Step>,
        top: bool,
    ) -> Result<(), String> {
        for (n, (k, v)) in m.iter().enumerate() {
            if top && n > 0 {
                self.out.push('\n');
            }
            let key = match k {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => scalar(k)?,
                _ => return Err(format!("a mapping key that is not a scalar: {k:?}")),
            };
            if key.contains('\n') {
                return Err(format!("a mapping key on several lines: {k:?}"));
            }
            path.push(Step::Key(key_text(k)));
            self.comment(path, indent);
            push_indent(&mut self.out, indent);
            self.out.push_str(&key);
            self.out.push(':');
            self.value(v, indent, indent + key.len() + 2, path, false)?;
            path.pop();
        }
        Ok(())
    }

    fn items(&mut self, s: &[Value], indent: usize, path: &mut Vec<Step>) -> Result<(), String> {
        for (i, v) in s.iter().enumerate() {
            path.push(item_step(i, v));
            self.comment(path, indent);
            push_indent(&mut self.out, indent);
            self.out.push('-');
            self.value(v, indent, indent + 2, path, true)?;
            path.pop();
        }
        Ok(())
    }

    /// Writes `v` after `key:` or `-` (already written; `column` is where the value would
    /// start), with the parent at `indent`.
    fn value(
        &mut self,
        v: &Value,
        indent: usize,
        column: usize,
        path: &mut Vec<Step>,
        item: bool,
    ) -> Result<(), String> {
        if let Some(text) = self.flow(v, column, path)? {
            self.out.push(' ');
            self.out.push_str(&text);
            self.out.push('\n');
            return Ok(());
        }
        match v {
            Value::Mapping(m) => {
                let first_commented = m.iter().next().is_some_and(|(k, _)| {
                    path.push(Step::Key(key_text(k)));
                    let hit = self.comments.iter().any(|(p, _)| matches(p, path));
                    path.pop();
                    hit
                });
                if item && !first_commented {
                    // `- key: value`, the other keys under the first one.
                    let start = self.out.len();
                    self.out.push('\n');
                    self.entries(m, indent + 2, path, false)?;
                    // Joins the first key to the dash: "-\n    key" -> "- key".
                    self.out.replace_range(start..start + 1 + indent + 2, " ");
                } else {
                    self.out.push('\n');
                    self.entries(m, indent + 2, path, false)?;
                }
            }
            Value::Sequence(s) => {
                self.out.push('\n');
                // Under a key a sequence keeps the key's indent; inside a sequence it goes in.
                self.items(s, if item { indent + 2 } else { indent }, path)?;
            }
            Value::Tagged(t) => return Err(format!("a tagged value ({}) is not written", t.tag)),
            Value::String(s) if column + s.len() > WIDTH && foldable(s) => {
                // A long line of words as a folded block scalar (`>-`): each line break reads
                // as one space.
                self.out.push_str(" >-\n");
                let mut line = String::new();
                for word in s.split(' ') {
                    if !line.is_empty() && indent + 2 + line.len() + 1 + word.len() > WIDTH {
                        push_indent(&mut self.out, indent + 2);
                        self.out.push_str(&line);
                        self.out.push('\n');
                        line.clear();
                    }
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(word);
                }
                push_indent(&mut self.out, indent + 2);
                self.out.push_str(&line);
                self.out.push('\n');
            }
            _ => {
                let text = scalar(v)?;
                // `split`, not `lines`: a kept final blank line (`|+`) is one more line.
                let mut lines = text.split('\n');
                if let Some(first) = lines.next() {
                    self.out.push(' ');
                    self.out.push_str(first);
                }
                self.out.push('\n');
                // A block scalar's lines (`|`): serde_yaml_ng indents them by two.
                for line in lines {
                    let line = line.strip_prefix("  ").unwrap_or(line);
                    if !line.is_empty() {
                        push_indent(&mut self.out, indent + 2);
                        self.out.push_str(line);
                    }
                    self.out.push('\n');
                }
            }
        }
        Ok(())
    }

    /// `v` in flow style, if it is a collection that fits from `column` and has no comment.
    fn flow(&self, v: &Value, column: usize, path: &[Step]) -> Result<Option<String>, String> {
        let empty = match v {
            Value::Mapping(m) => m.is_empty(),
            Value::Sequence(s) => s.is_empty(),
            _ => return Ok(None),
        };
        if !empty && (leaves(v) > FLOW_LEAVES || self.commented_within(path, v)) {
            return Ok(None);
        }
        let Some(text) = flow_text(v)? else {
            return Ok(None);
        };
        Ok((empty || column + text.len() <= WIDTH).then_some(text))
    }
}

fn item_step(i: usize, v: &Value) -> Step {
    Step::Item(i, v.get("name").and_then(Value::as_str).map(str::to_owned))
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn leaves(v: &Value) -> usize {
    match v {
        Value::Mapping(m) => m.values().map(leaves).sum(),
        Value::Sequence(s) => s.iter().map(leaves).sum(),
        _ => 1,
    }
}

/// The flow form of `v`, or `None` when a scalar in it cannot be written in flow context.
fn flow_text(v: &Value) -> Result<Option<String>, String> {
    Ok(match v {
        Value::Mapping(m) => {
            let mut parts = Vec::new();
            for (k, child) in m {
                let (Some(k), Some(child)) = (flow_scalar(k)?, flow_text(child)?) else {
                    return Ok(None);
                };
                parts.push(format!("{k}: {child}"));
            }
            Some(format!("{{{}}}", parts.join(", ")))
        }
        Value::Sequence(s) => {
            let mut parts = Vec::new();
            for child in s {
                let Some(child) = flow_text(child)? else {
                    return Ok(None);
                };
                parts.push(child);
            }
            Some(format!("[{}]", parts.join(", ")))
        }
        _ => flow_scalar(v)?,
    })
}

fn flow_scalar(v: &Value) -> Result<Option<String>, String> {
    if matches!(v, Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_)) {
        return Ok(None);
    }
    let text = scalar(v)?;
    let quoted = text.starts_with('\'') || text.starts_with('"');
    // serde_yaml_ng quotes what cannot start a plain scalar; flow context also forbids these.
    let safe = !text.contains('\n')
        && (quoted
            || !(text.contains([',', '[', ']', '{', '}'])
                || text.contains(": ")
                || text.contains(" #")
                || text.ends_with(':')
                || text.starts_with(['|', '>', '&', '*', '!', '?', '-', '#', ':'])));
    Ok(safe.then_some(text))
}

/// Whether `s` is words separated by single spaces, which a folded block scalar holds as they are.
fn foldable(s: &str) -> bool {
    s.contains(' ')
        && !s.contains("  ")
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && s.chars().all(|c| !c.is_control())
}

/// Words yaml-cpp reads as booleans in a plain scalar (Envoy's loader would turn a string
/// `on` into `true`).
fn yaml_cpp_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// One scalar as serde_yaml_ng writes it (several lines for a block scalar), but `"..."`
/// rather than `'...'` where no escape is needed, and quoted where yaml-cpp would read a plain
/// string otherwise (a boolean word) or it starts with `:` (`":path"`).
fn scalar(v: &Value) -> Result<String, String> {
    let text = serde_yaml_ng::to_string(v).map_err(|e| e.to_string())?;
    let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
    if let Value::String(s) = v {
        let plain_quotable = yaml_cpp_bool(s) || (s.starts_with(':') && !text.starts_with('\''));
        let simple = !s.contains(['"', '\\']) && s.chars().all(|c| !c.is_control());
        if simple && (plain_quotable || text.starts_with('\'')) {
            return Ok(format!("\"{s}\""));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let v: Value = serde_yaml_ng::from_str(text).unwrap();
        emit(&v, "", &[]).unwrap()
    }

    #[test]
    fn writes_the_shipped_style() {
        let out = round_trip(
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n\
             list:\n- name: a\n  body: {inline_string: \"ok\\n\"}\n  x: [h2, http/1.1]\n- plain\n\
             q: ['86400', 'on', '', '@type', '%X%']\nr: ['a, b', ':x']\n",
        );
        assert_eq!(
            out,
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n\n\
             list:\n- name: a\n  body:\n    inline_string: |\n      ok\n  x: [h2, http/1.1]\n- plain\n\n\
             q: [\"86400\", \"on\", \"\", \"@type\", \"%X%\"]\n\nr:\n- a, b\n- \":x\"\n"
        );
    }

    #[test]
    fn places_comments_by_path() {
        let v: Value =
            serde_yaml_ng::from_str("a:\n  items:\n  - {name: x, v: 1}\n  - {name: y, v: 2}\n")
                .unwrap();
        let out = emit(
            &v,
            "# head\n",
            &[
                Comment {
                    pattern: "**/[name=y]",
                    text: "the y item",
                },
                Comment {
                    pattern: "a/items/[0]/v",
                    text: "x's value",
                },
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "# head\na:\n  items:\n  - name: x\n    # x's value\n    v: 1\n  # the y item\n  - {name: \"y\", v: 2}\n"
        );
        let missing = emit(
            &v,
            "",
            &[Comment {
                pattern: "b",
                text: "nothing",
            }],
        );
        assert!(missing.unwrap_err().contains("\"b\""));
    }

    #[test]
    fn a_commented_first_key_of_an_item_goes_under_the_dash() {
        let v: Value =
            serde_yaml_ng::from_str("- {k: 1, j: 2, l: 3, m: 4, n: 5, o: 6, p: 7}\n").unwrap();
        let out = emit(
            &v,
            "",
            &[Comment {
                pattern: "[0]/k",
                text: "first",
            }],
        )
        .unwrap();
        assert!(out.starts_with("-\n  # first\n  k: 1\n"), "{out}");
    }
}
