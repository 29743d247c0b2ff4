//! The JSON locations of body offsets (`messages[41].content[0].content`), for the audit record
//! and block replies. Found in one walk over the body, and only when a secret was found: the
//! detector itself sees strings, not paths.

use crate::json::{Result, Scanner};

/// Deepest path written out; deeper offsets are located at this depth with a `.…` tail.
const MAX_DEPTH: usize = 48;

/// The location of each offset in `sorted` (ascending), in order. A key is written as `*`
/// when a located offset lies in it (a key can be the secret itself) or when it is not a short
/// lowercase name (one could hold a secret no rule matched: `x` and a key id).
pub fn paths(body: &[u8], sorted: &[usize]) -> Vec<String> {
    let mut walk = Walk {
        body,
        offsets: sorted,
        next: 0,
        out: Vec::with_capacity(sorted.len()),
    };
    let mut s = Scanner::new(body);
    let mut path = String::new();
    if walk.value(&mut s, &mut path, 0).is_err() {
        // Not JSON after all: every offset left is somewhere in the body.
    }
    while walk.out.len() < sorted.len() {
        walk.out.push("?".to_owned());
    }
    walk.out
}

struct Walk<'a> {
    body: &'a [u8],
    offsets: &'a [usize],
    next: usize,
    out: Vec<String>,
}

impl Walk<'_> {
    fn pending(&self) -> Option<usize> {
        self.offsets.get(self.next).copied()
    }

    /// Locates at `path` every pending offset before `end`.
    fn here(&mut self, path: &str, end: usize) {
        while self.pending().is_some_and(|o| o < end) {
            self.out
                .push(path.strip_prefix('.').unwrap_or(path).to_owned());
            self.next += 1;
        }
    }

    /// Walks the value at the cursor, locating the offsets inside it.
    fn value(&mut self, s: &mut Scanner, path: &mut String, depth: usize) -> Result<()> {
        let start = {
            s.peek()?;
            s.pos()
        };
        let span = s.value()?;
        if self.pending().is_none_or(|o| o >= span.end) {
            return Ok(());
        }
        let first = span.of(self.body).first().copied();
        if depth >= MAX_DEPTH || !matches!(first, Some(b'{' | b'[')) {
            let cut = if depth >= MAX_DEPTH { ".…" } else { "" };
            self.here(&format!("{path}{cut}"), span.end);
            return Ok(());
        }
        s.seek(start);
        let len = path.len();
        if first == Some(b'{') {
            let mut obj = s.enter_object()?;
            while let Some(key) = s.next_key(&mut obj)? {
                let raw = key.span.of(self.body);
                // Only a name no rule's secret can be: lowercase letters and `_` (the API's own
                // keys, most tool inputs').
                let plain = !key.escaped
                    && (1..=32).contains(&raw.len())
                    && raw.iter().all(|b| b.is_ascii_lowercase() || *b == b'_');
                let in_key = self.pending().is_some_and(|o| o < key.span.end);
                path.push('.');
                if plain && !in_key {
                    path.push_str(std::str::from_utf8(raw).unwrap_or("*"));
                } else {
                    path.push('*');
                }
                self.here(path, key.span.end + 1);
                self.value(s, path, depth + 1)?;
                path.truncate(len);
            }
        } else {
            let mut arr = s.enter_array()?;
            let mut i = 0usize;
            while s.next_item(&mut arr)? {
                path.push_str(&format!("[{i}]"));
                self.value(s, path, depth + 1)?;
                path.truncate(len);
                i += 1;
            }
        }
        // Offsets between members (none for string offsets) are at the container.
        self.here(path, span.end);
        Ok(())
    }
}
