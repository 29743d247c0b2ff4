//! The counter storage: limitador's async rate limiter over Redis, kept connected by a
//! supervisor task.
//!
//! limitador's Redis storage sits on redis-rs's `ConnectionManager`, which reconnects by
//! itself after a dropped connection, but only when a command fails, and a command issued
//! meanwhile waits on that reconnection instead of failing; a connection that stays open but
//! silent (a stalled Redis, a lost network path) only times out. So the service does not rely
//! on it alone: every storage call runs under a deadline, and a supervisor pings
//! Redis every `probe_every` (and at once when a call failed). A failed ping drops the limiter
//! (calls are then answered UNAVAILABLE at once, without touching Redis) and the next round
//! builds a new one, which also covers a service started before its Redis. State changes are
//! logged, one line each.

use limitador::AsyncRateLimiter;
use limitador::limit::Limit;
use limitador::storage::redis::AsyncRedisStorage;
use redis::aio::ConnectionManager;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// The limiter, and the Redis connection under it (none for the tests' in-memory counters).
#[derive(Clone)]
pub struct Backend {
    pub limiter: Arc<AsyncRateLimiter>,
    manager: Option<ConnectionManager>,
}

impl Backend {
    /// Whether Redis answers (a call with nothing to count asks this, so the filter's probe
    /// learns of an outage before the supervisor does).
    pub async fn alive(&self, timeout: Duration) -> Result<(), String> {
        match &self.manager {
            Some(m) => ping(m, timeout).await,
            None => Ok(()),
        }
    }

    /// The Redis connection itself (the session store's; none for the in-memory counters).
    pub fn redis(&self) -> Option<ConnectionManager> {
        self.manager.clone()
    }
}

/// Where the counters are, as far as a call is concerned.
#[derive(Default)]
pub struct Store {
    current: RwLock<Option<Backend>>,
    suspect: Notify,
}

impl Store {
    /// A store whose limiter is already there (the unit tests' in-memory one).
    pub fn with(limiter: AsyncRateLimiter) -> Store {
        Store {
            current: RwLock::new(Some(Backend {
                limiter: Arc::new(limiter),
                manager: None,
            })),
            suspect: Notify::new(),
        }
    }

    /// The limiter, or `None` while the storage is down.
    pub fn backend(&self) -> Option<Backend> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, backend: Option<Backend>) {
        match self.current.write() {
            Ok(mut guard) => *guard = backend,
            Err(poisoned) => *poisoned.into_inner() = backend,
        }
    }

    /// A call failed or timed out: have the supervisor look now.
    pub fn suspect(&self) {
        self.suspect.notify_one();
    }
}

/// How the supervisor talks to Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    /// Bound on connecting and on each command (and on each ping).
    pub timeout: Duration,
    /// Time between pings, and between attempts to connect while Redis is down.
    pub probe_every: Duration,
}

/// The URL without its credentials (`redis://user:secret@host` -> `redis://host`), for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!(
                "{}{}",
                url.get(..scheme + 3).unwrap_or(""),
                url.get(at + 1..).unwrap_or("")
            )
        }
        _ => url.to_owned(),
    }
}

/// Checks the URL's form (at start-up: a bad one is a configuration error, not an outage).
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("bad Redis URL {}: {e}", redacted(url)))
}

async fn connect(
    options: &RedisOptions,
    limits: &[Limit],
) -> Result<(ConnectionManager, AsyncRateLimiter), String> {
    let client = redis::Client::open(options.url.as_str()).map_err(|e| e.to_string())?;
    // One attempt per connection (no retries inside the manager: the supervisor retries),
    // each bounded, as is every command.
    let manager = ConnectionManager::new_with_backoff_and_timeouts(
        client,
        2,
        100,
        0,
        options.timeout,
        options.timeout,
    );
    let manager = tokio::time::timeout(options.timeout * 2, manager)
        .await
        .map_err(|_| format!("no connection within {:?}", options.timeout * 2))?
        .map_err(|e| e.to_string())?;
    // limitador loads its Lua scripts on first use (EVALSHA, then SCRIPT LOAD on NOSCRIPT),
    // so a Redis restarted without them is fine.
    let storage = AsyncRedisStorage::new_with_conn_manager(manager.clone());
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    for limit in limits {
        limiter.add_limit(limit.clone());
    }
    Ok((manager, limiter))
}

async fn ping(manager: &ConnectionManager, timeout: Duration) -> Result<(), String> {
    let mut manager = manager.clone();
    let cmd = redis::cmd("PING");
    match tokio::time::timeout(timeout, cmd.query_async::<_, String>(&mut manager)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer to PING within {timeout:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Up,
    Down,
}

/// Keeps `store` connected to Redis, forever; `log` gets one line per state change.
pub async fn supervise(
    store: Arc<Store>,
    options: RedisOptions,
    limits: Vec<Limit>,
    log: impl Fn(&str) + Send + 'static,
) {
    let target = redacted(&options.url);
    let mut state = State::Starting;
    let mut was_up = false;
    let mut manager: Option<ConnectionManager> = None;
    loop {
        let result = match &manager {
            Some(m) => ping(m, options.timeout).await,
            None => match connect(&options, &limits).await {
                Ok((m, limiter)) => {
                    manager = Some(m.clone());
                    store.set(Some(Backend {
                        limiter: Arc::new(limiter),
                        manager: Some(m),
                    }));
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) if state != State::Up => {
                log(&format!(
                    "redis {target}: up{}",
                    if was_up {
                        " again (counters are whatever it kept; empty if it restarted without persistence)"
                    } else {
                        ""
                    }
                ));
                state = State::Up;
                was_up = true;
            }
            Ok(()) => {}
            Err(e) => {
                store.set(None);
                manager = None;
                if state != State::Down {
                    log(&format!(
                        "redis {target}: down ({e}); calls are answered UNAVAILABLE until it is back"
                    ));
                    state = State::Down;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(options.probe_every) => {}
            _ = store.suspect.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redacted("redis://default:s3cr@t@redis.internal:6379/0"),
            "redis://redis.internal:6379/0"
        );
        assert_eq!(redacted("rediss://:pw@host"), "rediss://host");
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("http://127.0.0.1").is_err());
    }
}
