//! Upstream key pools: which key a request uses, and what each key's responses teach about it.
//!
//! Every key has a state shared by all workers: a cooldown (after a 429 or 529, until the reset
//! the response gave) and the headroom Anthropic reported (`anthropic-ratelimit-*`). A session
//! sticks to one key so its prompt cache survives (caches are per workspace); it moves to the
//! next usable key only while its own key cools down or has no headroom.

use std::fmt;

/// An upstream key: its alias (logs, metrics, the audit record) and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PoolKey {
    pub alias: String,
    pub secret: String,
}

impl fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolKey({}, <redacted>)", self.alias)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub keys: Vec<PoolKey>,
    /// Cooldown after a 429/529 that says nothing about when to come back.
    pub default_cooldown_ms: u64,
}

/// A key's shared state. Times are Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyState {
    pub cooldown_until: u64,
    /// The key reported no requests or tokens left until this time.
    pub exhausted_until: u64,
}

impl KeyState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.cooldown_until.to_le_bytes().to_vec();
        out.extend_from_slice(&self.exhausted_until.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> KeyState {
        let word = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        KeyState {
            cooldown_until: word(0),
            exhausted_until: word(1),
        }
    }

    /// When the key can take requests again (`<= now`: it can).
    pub fn available_at(&self) -> u64 {
        self.cooldown_until.max(self.exhausted_until)
    }
}

/// The rate-limit facts of one upstream response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// `retry-after`, seconds.
    pub retry_after_s: Option<u64>,
    /// The earliest reset among the limits that report nothing left (0 requests, 0 tokens).
    pub exhausted_until: Option<u64>,
}

/// Reads the rate-limit headers of a response. `header` returns a header's value.
pub fn observe(status: u16, header: &mut dyn FnMut(&str) -> Option<String>) -> Observed {
    let retry_after_s = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
    let mut exhausted_until: Option<u64> = None;
    for limit in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let remaining = header(&format!("anthropic-ratelimit-{limit}-remaining"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if remaining != Some(0) {
            continue;
        }
        if let Some(reset) = header(&format!("anthropic-ratelimit-{limit}-reset"))
            .and_then(|v| crate::time::parse_rfc3339_ms(v.trim()))
        {
            exhausted_until = Some(exhausted_until.map_or(reset, |e| e.min(reset)));
        }
    }
    Observed {
        status,
        retry_after_s,
        exhausted_until,
    }
}

/// The longest `retry-after` believed: an upstream (or a bug) saying "in a year" must not take a
/// key out of the pool for good.
pub const MAX_RETRY_AFTER_S: u64 = 24 * 3600;

/// The key's new state after a response: a 429 or 529 cools it down until `retry-after`, else
/// until the exhausted limit resets, else for the pool's default; headroom reported as zero
/// marks it exhausted until the reset. A cooldown only ever grows (a second, shorter 429 must
/// not shorten the first one).
pub fn learn(state: KeyState, o: &Observed, now: u64, default_cooldown_ms: u64) -> KeyState {
    let mut next = state;
    if o.status == 429 || o.status == 529 {
        let until = match (o.retry_after_s, o.exhausted_until) {
            (Some(s), _) => now.saturating_add(s.min(MAX_RETRY_AFTER_S).saturating_mul(1000)),
            (None, Some(reset)) if reset > now => reset,
            _ => now.saturating_add(default_cooldown_ms),
        };
        next.cooldown_until = next.cooldown_until.max(until);
    }
    if let Some(reset) = o.exhausted_until {
        next.exhausted_until = next.exhausted_until.max(reset);
    }
    next
}

/// A stable hash of a session id (FNV-1a), the same on every worker and replica.
pub fn session_slot(session: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n.max(1) as u64) as usize
}

/// Picks a key: the session's own key if it is usable, else the next usable one after it; a
/// request without a session starts at `counter` (a shared round-robin counter) so load
/// spreads evenly. `Err` gives when the first key becomes usable again.
pub fn select(
    states: &[KeyState],
    session: Option<&str>,
    counter: u64,
    now: u64,
) -> Result<usize, u64> {
    let n = states.len();
    if n == 0 {
        return Err(now);
    }
    let start = match session {
        Some(s) => session_slot(s, n),
        None => (counter % n as u64) as usize,
    };
    (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| states.get(i).is_some_and(|s| s.available_at() <= now))
        .ok_or_else(|| {
            states
                .iter()
                .map(KeyState::available_at)
                .min()
                .unwrap_or(now)
        })
}
