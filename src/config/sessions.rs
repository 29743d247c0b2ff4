//! `sessions`: per-session totals, the session endpoint and cache-miss insight (src/sessions.rs).

use super::{ConfigError, error};
use serde::Deserialize;

/// Bounds on `max_sessions`: the table's records are 13.5 KiB each at most.
const MAX_SESSIONS_LIMIT: usize = 1 << 20;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSessions {
    enabled: bool,
    max_sessions: usize,
    prefix_check: bool,
}

impl Default for RawSessions {
    fn default() -> Self {
        let d = Sessions::default();
        RawSessions {
            enabled: d.enabled,
            max_sessions: d.max_sessions,
            prefix_check: d.prefix_check,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    /// Keep per-session totals and answer `GET /v1/gateway/sessions/{id}`.
    pub enabled: bool,
    /// Records kept (per Envoy process), least recently used evicted within a set of 4.
    pub max_sessions: usize,
    /// Fingerprint each turn's prompt prefix for the gateway's own cache verdict (one hash
    /// pass over the conversation).
    pub prefix_check: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            enabled: true,
            max_sessions: 2048,
            prefix_check: true,
        }
    }
}

pub(super) fn compile_sessions(raw: RawSessions) -> Result<Sessions, ConfigError> {
    if !(crate::sessions::table::WAYS..=MAX_SESSIONS_LIMIT).contains(&raw.max_sessions) {
        return Err(error(
            "sessions.max_sessions",
            format!(
                "must be {} to {MAX_SESSIONS_LIMIT}",
                crate::sessions::table::WAYS
            ),
        ));
    }
    Ok(Sessions {
        enabled: raw.enabled,
        max_sessions: raw.max_sessions,
        prefix_check: raw.enabled && raw.prefix_check,
    })
}
