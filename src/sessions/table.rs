//! The sessions' bounded table in shared data. Envoy's shared data cannot delete a key, so the
//! table is a fixed set of slots: a session hashes to a set of [`WAYS`] slots, and a new session
//! takes an empty slot of its set or evicts the one used least recently (LRU within its set).
//! At most `max_sessions` records exist; each is a few hundred bytes to a few KiB (bounded by
//! the record's own limits).

use super::{Caller, Outcome, Session};
use crate::keys::{SharedStore, Write};

/// Slots per set.
pub const WAYS: usize = 4;
/// Read-modify-write attempts before giving up on an update (another worker kept writing).
const ATTEMPTS: usize = 8;

fn sets(max_sessions: usize) -> usize {
    (max_sessions / WAYS).max(1)
}

/// FNV-1a of owner and id: stable across workers and restarts, unlike a seeded hasher; with
/// the owner in it, a caller cannot aim other sessions' set at will.
fn set_of(owner: &str, id: &str, max_sessions: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes().chain([b'/']).chain(id.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % sets(max_sessions) as u64) as usize
}

fn slot_key(set: usize, way: usize) -> String {
    format!("claude_gateway.session.{set}.{way}")
}

/// The slots of a session's set: key, record (if it decodes), version.
fn slots(
    store: &dyn SharedStore,
    owner: &str,
    id: &str,
    max_sessions: usize,
) -> Vec<(String, Option<Session>, u32)> {
    let set = set_of(owner, id, max_sessions);
    (0..WAYS)
        .map(|way| {
            let key = slot_key(set, way);
            let (value, cas) = store.get(&key).unwrap_or_default();
            (key, Session::decode(&value), cas)
        })
        .collect()
}

/// The session's record, if the table still holds it and `owner` made it: a record is found
/// by its owner and id together, so another caller's session of the same id is not there.
pub fn load(
    store: &dyn SharedStore,
    owner: &str,
    id: &str,
    max_sessions: usize,
) -> Option<Session> {
    slots(store, owner, id, max_sessions)
        .into_iter()
        .find_map(|(_, s, _)| s.filter(|s| s.id == id && s.owner == owner))
}

/// Adds a finished request to its session, creating the record (and evicting the set's least
/// recently used one) if needed. False if the store kept refusing the write.
pub fn record(store: &dyn SharedStore, caller: &Caller, o: &Outcome, max_sessions: usize) -> bool {
    for _ in 0..ATTEMPTS {
        let slots = slots(store, &caller.owner, &caller.session, max_sessions);
        let mine = slots.iter().position(|(_, s, _)| {
            s.as_ref()
                .is_some_and(|s| s.id == caller.session && s.owner == caller.owner)
        });
        // Else an empty slot, else the least recently used.
        let target = mine.or_else(|| {
            slots
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, s, _))| s.as_ref().map_or(0, |s| s.last_ms.saturating_add(1)))
                .map(|(i, _)| i)
        });
        let Some((key, current, cas)) = target.and_then(|i| slots.get(i)) else {
            return false;
        };
        let mut session = match (mine, current) {
            (Some(_), Some(s)) => s.clone(),
            _ => Session::new(caller, o.now_ms),
        };
        session.add(caller, o);
        // Compare-and-swap on the slot's version; a slot never written has none (0 writes
        // unconditionally), so two workers claiming the same empty slot at once may lose one
        // request's counts (a session's first requests rarely race).
        match store.set(key, &session.encode(), *cas) {
            Write::Done => return true,
            Write::Conflict => continue,
            Write::Failed => return false,
        }
    }
    false
}
