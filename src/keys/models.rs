//! `GET /v1/models` as a consumer sees it: only the models it may use (Claude Code's model
//! picker lists what this answers). The list is a few KiB of JSON; it is parsed and written
//! again, the other members as they were.

use crate::pattern::Pattern;
use serde_json::Value;

/// The list path (not `/v1/models/{id}`), any query.
pub fn is_list(method: &str, path: &str) -> bool {
    method == "GET" && path.split_once('?').map_or(path, |(p, _)| p) == "/v1/models"
}

/// The models list without the models `allowed` does not match (`first_id` and `last_id` kept
/// true); `None` when the body is not a models list (it then goes out as it came).
pub fn visible(body: &[u8], allowed: &[Pattern]) -> Option<Vec<u8>> {
    let mut list: Value = serde_json::from_slice(body).ok()?;
    let data = list.get_mut("data")?.as_array_mut()?;
    data.retain(|m| {
        m.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| allowed.iter().any(|p| p.matches(id)))
    });
    let ids: Vec<Value> = data.iter().filter_map(|m| m.get("id").cloned()).collect();
    if let Some(obj) = list.as_object_mut() {
        for (key, id) in [("first_id", ids.first()), ("last_id", ids.last())] {
            if obj.contains_key(key) {
                obj.insert(key.to_owned(), id.cloned().unwrap_or(Value::Null));
            }
        }
    }
    serde_json::to_vec(&list).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_allowed_models_are_listed() {
        let body = json!({"data": [
            {"type": "model", "id": "claude-opus-4-8", "display_name": "Claude Opus 4.8"},
            {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5"},
            {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5"}],
            "has_more": false, "first_id": "claude-opus-4-8", "last_id": "claude-haiku-4-5"});
        let allowed = [
            Pattern::new("claude-sonnet-*").unwrap(),
            Pattern::new("claude-haiku-*").unwrap(),
        ];
        let out: Value =
            serde_json::from_slice(&visible(body.to_string().as_bytes(), &allowed).unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"data": [
                {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5"},
                {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5"}],
                "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-haiku-4-5"})
        );
        let none: Value =
            serde_json::from_slice(&visible(body.to_string().as_bytes(), &[]).unwrap()).unwrap();
        assert_eq!(none["data"], json!([]));
        assert_eq!(none["first_id"], Value::Null);
        assert_eq!(visible(b"not json", &allowed), None);
        assert_eq!(visible(br#"{"error":{}}"#, &allowed), None);
    }

    #[test]
    fn the_list_path_only() {
        assert!(is_list("GET", "/v1/models"));
        assert!(is_list("GET", "/v1/models?limit=20"));
        assert!(!is_list("GET", "/v1/models/claude-opus-4-8"));
        assert!(!is_list("POST", "/v1/models"));
    }
}
