//! An incremental Server-Sent Events framer. Network chunks do not align with events (an event
//! can be split mid-line, mid-JSON or mid-UTF-8, or several can arrive together), so partial
//! lines are carried to the next chunk. Accepts LF, CRLF and CR line ends, ignores comments and
//! fields other than `event` and `data`. Memory carried between chunks is bounded: a line or an
//! event's data longer than [`MAX_FIELD`] is dropped (the event is still delivered, marked
//! truncated), so a hostile upstream cannot grow the VM.

/// Longest line, and longest event data, kept.
pub const MAX_FIELD: usize = 64 * 1024;

/// One event: its name (empty if the event had no `event:` field) and its data lines joined
/// with `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
    /// The data (or a line) was longer than [`MAX_FIELD`] and is incomplete.
    pub truncated: bool,
}

#[derive(Debug, Default)]
pub struct Framer {
    /// The unfinished line carried from the previous chunk.
    line: Vec<u8>,
    /// The current line is longer than the bound: ignore it up to its end.
    skipping: bool,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    name: Vec<u8>,
    data: Vec<u8>,
    /// Any field of the current event was seen.
    started: bool,
    truncated: bool,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Bytes held between chunks (bounded by a few times [`MAX_FIELD`]).
    pub fn carried(&self) -> usize {
        self.line.len() + self.name.len() + self.data.len()
    }

    /// Feeds one chunk; `on_event` is called for each event it completes.
    pub fn feed(&mut self, mut chunk: &[u8], on_event: &mut dyn FnMut(Event)) {
        if chunk.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) else {
                self.carry(chunk);
                return;
            };
            let (head, rest) = chunk.split_at(end);
            let crlf = rest.starts_with(b"\r\n");
            if rest == b"\r" {
                self.after_cr = true;
            }
            chunk = rest.get(if crlf { 2 } else { 1 }..).unwrap_or_default();
            if self.skipping || self.line.len() + head.len() > MAX_FIELD {
                // The end of a line too long to keep.
                self.skipping = false;
                self.truncated = true;
                self.line.clear();
            } else if self.line.is_empty() {
                self.line_done(head, on_event);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, on_event);
                // Keeps the allocation for the next carried line.
                self.line = line;
                self.line.clear();
            }
        }
    }

    fn carry(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + part.len() > MAX_FIELD {
            self.skipping = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut dyn FnMut(Event)) {
        if line.is_empty() {
            if self.started {
                on_event(Event {
                    name: &self.name,
                    data: &self.data,
                    truncated: self.truncated,
                });
            }
            self.name.clear();
            self.data.clear();
            self.started = false;
            self.truncated = false;
            return;
        }
        if line.first() == Some(&b':') {
            return; // A comment.
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let (f, v) = line.split_at(i);
                let v = v.get(1..).unwrap_or_default();
                (f, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.started = true;
                self.name.clear();
                self.name
                    .extend_from_slice(value.get(..MAX_FIELD).unwrap_or(value));
            }
            b"data" => {
                self.started = true;
                let extra = value.len() + usize::from(!self.data.is_empty());
                if self.truncated || self.data.len() + extra > MAX_FIELD {
                    self.truncated = true;
                    self.data.clear();
                } else {
                    if !self.data.is_empty() {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                }
            }
            _ => {} // id, retry and unknown fields.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String, bool)> {
        let mut f = Framer::new();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut |e| {
                out.push((
                    String::from_utf8_lossy(e.name).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                    e.truncated,
                ))
            });
        }
        out
    }

    fn ev(name: &str, data: &str) -> (String, String, bool) {
        (name.into(), data.into(), false)
    }

    #[test]
    fn frames_events_with_any_line_ending() {
        let want = vec![ev("ping", "{}"), ev("message_stop", "{\"a\":1}")];
        for sep in ["\n", "\r\n", "\r"] {
            let text = format!(
                "event: ping{sep}data: {{}}{sep}{sep}event:message_stop{sep}data:{{\"a\":1}}{sep}{sep}"
            );
            assert_eq!(events(&[text.as_bytes()]), want, "{sep:?}");
        }
    }

    #[test]
    fn ignores_comments_and_other_fields_and_joins_data_lines() {
        let got =
            events(&[b": keep-alive\n\nid: 7\nretry: 10\nevent: x\ndata: a\ndata: b\nweird\n\n"]);
        assert_eq!(got, vec![ev("x", "a\nb")]);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let text: &[u8] =
            "event: a\r\ndata: {\"t\":\"é😀\"}\r\n\r\n: c\n\nevent: b\ndata: x\n\n".as_bytes();
        let whole = events(&[text]);
        assert_eq!(whole.len(), 2);
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    events(&[&text[..i], &text[i..j], &text[j..]]),
                    whole,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn long_lines_are_dropped_with_bounded_memory() {
        let mut f = Framer::new();
        let mut got = Vec::new();
        f.feed(b"event: big\ndata: ", &mut |_| {});
        for _ in 0..100 {
            f.feed(&[b'x'; 10_000], &mut |_| {});
            assert!(f.carried() <= 2 * MAX_FIELD);
        }
        f.feed(b"\n\nevent: next\ndata: 1\n\n", &mut |e| {
            got.push((e.name.to_vec(), e.data.to_vec(), e.truncated))
        });
        assert_eq!(
            got,
            vec![
                (b"big".to_vec(), Vec::new(), true),
                (b"next".to_vec(), b"1".to_vec(), false)
            ]
        );
    }
}
