//! Strings taken from clients and upstreams, bounded before they are kept.

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(super::cap("abcdef".into(), 4), "abcd");
        assert_eq!(super::cap("aé".into(), 2), "a");
        assert_eq!(super::cap("ab".into(), 4), "ab");
    }
}
