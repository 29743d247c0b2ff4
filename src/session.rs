//! The session a request belongs to: Claude Code's `x-claude-code-session-id` header (v2.1.86+),
//! else the session id inside `metadata.user_id`, in either of its two formats
//! (anthropic-wire.md §3.2). Only ids that look like ids are kept: the value ends up in logs
//! and (hashed) in key selection, so it must not carry anything else.

use serde::Deserialize;

const MAX_LEN: usize = 128;

/// `Some(id)` if `id` is a plausible session id (letters, digits, `-`, `_`; bounded length).
pub fn valid(id: &str) -> Option<&str> {
    let id = id.trim();
    let ok = !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(id)
}

#[derive(Deserialize)]
struct UserIdJson {
    session_id: Option<String>,
}

/// The session id inside a `metadata.user_id` value:
/// `user_<hash>_account_<uuid>_session_<uuid>` (before v2.1.78) or a JSON object serialized into
/// the string (`{"device_id":…,"account_uuid":…,"session_id":…}`, v2.1.78+).
pub fn from_user_id(user_id: &str) -> Option<String> {
    if user_id.trim_start().starts_with('{') {
        let parsed: UserIdJson = serde_json::from_str(user_id).ok()?;
        return valid(&parsed.session_id?).map(str::to_owned);
    }
    let (_, session) = user_id.rsplit_once("_session_")?;
    valid(session).map(str::to_owned)
}

/// The session of a request: the header wins over the body.
pub fn session_id(header: Option<&str>, user_id: Option<&str>) -> Option<String> {
    header
        .and_then(valid)
        .map(str::to_owned)
        .or_else(|| user_id.and_then(from_user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_user_id_formats() {
        assert_eq!(
            from_user_id("user_67bad5aa_account__session_57a121ec-f78c-48c3-a745-e3036a3ecc33")
                .as_deref(),
            Some("57a121ec-f78c-48c3-a745-e3036a3ecc33")
        );
        assert_eq!(
            from_user_id(
                r#"{"device_id":"67bad5","account_uuid":"","session_id":"f25958b8-e75c-455d-8b40-f006d87cc2a4"}"#
            )
            .as_deref(),
            Some("f25958b8-e75c-455d-8b40-f006d87cc2a4")
        );
        assert_eq!(from_user_id("plain-user-42"), None);
        assert_eq!(
            from_user_id(r#"{"session_id":"bad id\nX-Injected: 1"}"#),
            None
        );
    }

    #[test]
    fn the_header_wins_and_bad_values_are_dropped() {
        let uid = "user_x_account__session_from-body";
        assert_eq!(
            session_id(Some("from-header"), Some(uid)).as_deref(),
            Some("from-header")
        );
        assert_eq!(session_id(None, Some(uid)).as_deref(), Some("from-body"));
        assert_eq!(
            session_id(Some("a b"), Some(uid)).as_deref(),
            Some("from-body")
        );
        assert_eq!(session_id(Some(&"x".repeat(500)), None), None);
    }
}
