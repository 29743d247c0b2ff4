//! Reading a tool call's input: its string values (the JSON text may be cut at the assembly
//! bound, so this is a lenient walk, not a parser) and a shell command's program name.

use crate::json;
use std::borrow::Cow;

/// Wrappers that run the next word as the program: the program is what they run.
const WRAPPERS: [&str; 6] = ["sudo", "env", "time", "nohup", "exec", "command"];

/// Wrapper options that take an argument (`sudo -u root`, `env -u VAR`).
const WRAPPER_ARGS: [&str; 2] = ["-u", "-g"];

/// Words of a command looked at for its program; the rest are arguments.
const MAX_WORDS: usize = 16;

/// Calls `f(key, value)` for every string value of the JSON text `text` (keys are not values),
/// decoded; `key` is the member name when the value is a member of the top-level object. The
/// text may end anywhere: a string cut short is still shown, and a bad or cut escape falls back
/// to the raw bytes. Never fails: bytes that are not JSON are skipped.
pub(super) fn each_string(text: &[u8], f: &mut dyn FnMut(Option<&str>, &str)) {
    let mut depth = 0usize;
    let mut key: Option<(usize, usize)> = None;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        i += 1;
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let (start, end) = (i, string_end(text, i));
                i = end + 1;
                let after = text.get(i..).unwrap_or_default().trim_ascii_start();
                if after.first() == Some(&b':') {
                    if depth == 1 {
                        key = Some((start, end));
                    }
                    continue;
                }
                let name = match key {
                    Some((s, e)) if depth == 1 => Some(decode(text.get(s..e).unwrap_or_default())),
                    _ => None,
                };
                f(
                    name.as_deref(),
                    &decode(text.get(start..end).unwrap_or_default()),
                );
            }
            _ => {}
        }
    }
}

/// Where the string whose contents start at `from` ends (its closing quote, or the end).
fn string_end(text: &[u8], mut from: usize) -> usize {
    loop {
        let rest = text.get(from..).unwrap_or_default();
        match memchr::memchr2(b'"', b'\\', rest) {
            Some(at) if rest.get(at) == Some(&b'\\') => from += at + 2,
            Some(at) => return from + at,
            None => return text.len(),
        }
    }
}

fn decode(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'\\') {
        if let Ok(s) = std::str::from_utf8(raw) {
            return Cow::Borrowed(s);
        }
    }
    match json::unescape(raw) {
        Some(s) => Cow::Owned(s),
        None => String::from_utf8_lossy(raw),
    }
}

/// The program a shell command runs first: the first word of its first simple command, after
/// variable assignments (`FOO=1 make`) and the [`WRAPPERS`] (`sudo -u x git` is `git`), as a
/// basename (`/usr/bin/git` is `git`). `cd x && make` is `cd`: the first program, not the
/// "main" one (there is no telling which that is). `None` when that word is not a plain name
/// (`$CMD`, a glob); capped at [`super::MAX_PROGRAM`] bytes.
pub(super) fn program(command: &str) -> Option<String> {
    let mut wrapped = false;
    let mut skip_arg = false;
    for word in first_words(command) {
        if std::mem::take(&mut skip_arg) || matches!(word.as_str(), "!" | "{") {
            continue;
        }
        if wrapped && word.starts_with('-') {
            skip_arg = WRAPPER_ARGS.contains(&word.as_str());
            continue;
        }
        if is_assignment(&word) {
            continue;
        }
        let name = word.rsplit('/').next().unwrap_or_default();
        if WRAPPERS.contains(&name) {
            wrapped = true;
            continue;
        }
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
        return plain.then(|| name.get(..super::MAX_PROGRAM).unwrap_or(name).to_owned());
    }
    None
}

/// `NAME=value`: a variable assignment before the program.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The first words of the first simple command: split at unquoted blanks, quotes and
/// backslashes removed, up to the first unquoted operator (`;`, `&`, `|`, `<`, `>`, `(`, `)`,
/// a backquote or a line end). Leading operators (`(cd x`) are skipped.
fn first_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut quote = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                started = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '\n') => {
                if started || !words.is_empty() {
                    break;
                }
            }
            (None, c) if c.is_whitespace() => {
                if std::mem::take(&mut started) {
                    words.push(std::mem::take(&mut word));
                    if words.len() == MAX_WORDS {
                        return words;
                    }
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
        if word.len() > 4 * super::MAX_PROGRAM {
            break; // A word this long is no program name: stop copying it.
        }
    }
    if started {
        words.push(word);
    }
    words
}
