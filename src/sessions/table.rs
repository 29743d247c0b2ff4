//! The sessions' bounded table in shared data. Envoy's shared data cannot delete a key, so the
//! table is a fixed set of slots: a session hashes to a set of [`WAYS`] slots, and a new session
//! takes an empty slot of its set or evicts the one used least recently (LRU within its set).
//! At most `max_sessions` records exist (each bounded by the record's own limits). Each host
//! call costs microseconds, so a session's slots are probed from the way its hash prefers (where
//! a new session goes first when it can): a known session is one read away.

use super::{Caller, Outcome, Session};
use crate::keys::{SharedStore, Write};

/// Slots per set.
pub const WAYS: usize = 4;
/// Read-modify-write attempts before giving up on an update (another worker kept writing).
const ATTEMPTS: usize = 8;

/// FNV-1a of owner and id: stable across workers and restarts, unlike a seeded hasher; with
/// the owner in it, a caller cannot aim other sessions' set at will.
fn hash(owner: &str, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes().chain([b'/']).chain(id.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The session's slot keys, its preferred way first.
fn keys(owner: &str, id: &str, max_sessions: usize) -> [String; WAYS] {
    let h = hash(owner, id);
    let sets = (max_sessions / WAYS).max(1) as u64;
    let (set, first) = (h % sets, (h >> 32) as usize % WAYS);
    std::array::from_fn(|i| format!("claude_gateway.session.{set}.{}", (first + i) % WAYS))
}

/// Whether a stored record is this session's, without decoding it: the encoding starts with
/// the id and the owner (`Session`'s first fields).
fn holds(bytes: &[u8], owner: &str, id: &str) -> bool {
    let prefix = postcard::to_allocvec(&(id, owner)).unwrap_or_default();
    !prefix.is_empty() && bytes.starts_with(&prefix)
}

/// A session's record as it was read, with the slot and version it was read at: the end of
/// the same request writes there without reading it again (unless another worker wrote first).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub session: Session,
    way: usize,
    cas: u32,
}

/// The session's record, if the table still holds it and `owner` made it: a record is found
/// by its owner and id together, so another caller's session of the same id is not there.
pub fn load(store: &dyn SharedStore, owner: &str, id: &str, max_sessions: usize) -> Option<Loaded> {
    keys(owner, id, max_sessions)
        .iter()
        .enumerate()
        .find_map(|(way, key)| {
            let (bytes, cas) = store.get(key)?;
            let session = holds(&bytes, owner, id)
                .then(|| Session::decode(&bytes))
                .flatten()?;
            Some(Loaded { session, way, cas })
        })
}

/// Adds a finished request to its session, creating the record (and evicting the set's least
/// recently used one) if needed. `loaded` is the record as the request found it: written back
/// at its version, and read again only if another worker wrote since. False if the store kept
/// refusing the write.
pub fn record(
    store: &dyn SharedStore,
    caller: &Caller,
    o: &Outcome,
    max_sessions: usize,
    loaded: Option<Loaded>,
) -> bool {
    let keys = keys(&caller.owner, &caller.session, max_sessions);
    let mut known = loaded.and_then(|l| Some((keys.get(l.way)?, Some(l.session), l.cas)));
    for _ in 0..ATTEMPTS {
        let (key, current, cas) = match known.take().or_else(|| slot_for(store, &keys, caller)) {
            Some(found) => found,
            None => return false,
        };
        let mut session = current.unwrap_or_else(|| Session::new(caller, o.now_ms));
        session.add(caller, o);
        // Compare-and-swap on the slot's version; a slot never written has none (0 writes
        // unconditionally), so two workers claiming the same empty slot at once may lose one
        // request's counts (a session's first requests rarely race).
        match store.set(key, &session.encode(), cas) {
            Write::Done => return true,
            Write::Conflict => continue,
            Write::Failed => return false,
        }
    }
    false
}

/// The slot to write: the session's own (with its record and version), else an empty one,
/// else the least recently used of the set (evicted: no record).
fn slot_for<'k>(
    store: &dyn SharedStore,
    keys: &'k [String; WAYS],
    caller: &Caller,
) -> Option<(&'k String, Option<Session>, u32)> {
    let mut others = Vec::with_capacity(WAYS);
    for key in keys {
        let (bytes, cas) = store.get(key).unwrap_or_default();
        if holds(&bytes, &caller.owner, &caller.session) {
            if let Some(s) = Session::decode(&bytes) {
                return Some((key, Some(s), cas));
            }
        }
        // An empty slot sorts first, then the least recently used.
        let last = Session::decode(&bytes).map_or(0, |s| s.last_ms.saturating_add(1));
        others.push((key, last, cas));
    }
    let (key, _, cas) = others.into_iter().min_by_key(|(_, last, _)| *last)?;
    Some((key, None, cas))
}
