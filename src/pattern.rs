//! Model-name patterns from the configuration: an exact name, or a glob where `*` matches any run
//! of characters (`claude-haiku-*`, `*-4-5*`). Matching is case-sensitive, like model ids.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literal pieces between `*`s.
    parts: Vec<String>,
    /// Whether the pattern starts / ends with a `*`.
    open_start: bool,
    open_end: bool,
    source: String,
}

impl Pattern {
    /// Compiles a pattern; `None` if it is empty or has characters a model id never has.
    pub fn new(source: &str) -> Option<Pattern> {
        let valid = !source.is_empty()
            && source
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !valid {
            return None;
        }
        Some(Pattern {
            parts: source
                .split('*')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            open_start: source.starts_with('*'),
            open_end: source.ends_with('*'),
            source: source.to_owned(),
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        let mut rest = s;
        let n = self.parts.len();
        for (i, part) in self.parts.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == n;
            if first && !self.open_start {
                match rest.strip_prefix(part.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if last && !self.open_end {
                    return rest.is_empty();
                }
            } else if last && !self.open_end {
                return rest.ends_with(part.as_str());
            } else {
                match find(rest.as_bytes(), part.as_bytes()) {
                    Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
                    None => return false,
                }
            }
        }
        // No literal parts: "*" matches anything; otherwise the last part was consumed.
        n > 0 || self.open_start || rest.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Where `needle` first occurs in `hay`. Model ids are short, so a plain scan beats `str::find`,
/// whose searcher setup cost more than the search (a third of planning a small request).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).unwrap().matches(s)
    }

    #[test]
    fn exact_prefix_suffix_and_infix() {
        assert!(m("claude-opus-4-8", "claude-opus-4-8"));
        assert!(!m("claude-opus-4-8", "claude-opus-4-8-x"));
        assert!(m("claude-haiku-*", "claude-haiku-4-5-20251001"));
        assert!(!m("claude-haiku-*", "claude-sonnet-4-5"));
        assert!(m("*-20250929", "claude-sonnet-4-5-20250929"));
        assert!(m("claude-*-4-5*", "claude-sonnet-4-5-20250929"));
        assert!(m("claude-*-4-5*", "claude-opus-4-5"));
        assert!(!m("claude-*-4-5*", "claude-opus-4-6"));
        assert!(m("*", "anything"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-c-b"));
        assert!(!m("ab*ab", "ab"));
        assert!(m("ab*ab", "abab"));
        // The infix search restarts after a partial match, and finds an infix at the very end.
        assert!(m("*aab*", "aaab"));
        assert!(m("x*aab*", "xaaab"));
        assert!(!m("*aab*", "aa"));
        assert!(m("*-4-5*", "-4-5"));
    }

    #[test]
    fn rejects_unusable_patterns() {
        assert!(Pattern::new("").is_none());
        assert!(Pattern::new("has space").is_none());
        assert!(Pattern::new("quo\"te").is_none());
    }
}
