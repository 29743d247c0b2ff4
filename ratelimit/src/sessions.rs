//! The session store: per-session totals (`claude_gateway::sessions::Session`) in Redis, so they
//! hold across Envoy replicas. gRPC service `claude_gateway.sessions.v1.Sessions`
//! (`claude_gateway::sessions::wire`): `Add(Turn)` adds a finished turn, `Get(Key)` answers the
//! session as `GET /v1/gateway/sessions/{id}` does (empty: not found).
//!
//! One Redis hash per session, `claude_gateway:session:{owner}:{session}` = {`v`: version,
//! `j`: the record, `Session::encode`}, expiring `ttl` after its last turn. An update reads both, adds the
//! turn in Rust (`Session::add`, the filter's own bounded merge) and writes back with a
//! compare-and-set script (written only if `v` is unchanged, which bumps it), up to
//! [`ATTEMPTS`] times: atomic across replicas over a multiplexed connection (no WATCH).

use crate::store::Store;
use claude_gateway::sessions::Session;
use claude_gateway::sessions::wire::{ADD, Added, Found, GET, Key, SERVICE, Turn};
use redis::aio::ConnectionManager;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// Compare-and-set rounds of one `Add` before it gives up (other replicas kept writing).
pub const ATTEMPTS: usize = 16;
/// Longest consumer id in an owner (`c:<id>`), as the filter takes one from a token's claim.
pub const MAX_CONSUMER_ID: usize = 256;
/// Longest session or agent id (the filter's own bound on them).
pub const MAX_ID: usize = 128;
/// Longest model name and cache-miss reason a turn may carry.
pub const MAX_MODEL: usize = 256;
pub const MAX_REASON: usize = 64;
/// Largest request message accepted (a valid `Turn` is well under 1 KiB).
const MAX_MESSAGE: usize = 16 * 1024;

/// KEYS[1] the session; ARGV: the version read (0: none), the record, its TTL in seconds.
const SWAP_LUA: &str = r"
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'j', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";
static SWAP: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SWAP_LUA));

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Not a valid turn or key: which field.
    Invalid(&'static str),
    /// The store knows Redis is down (the supervisor logs that).
    Down,
    Redis(String),
    Timeout(Duration),
    /// [`ATTEMPTS`] writes lost to other replicas' in a row.
    Contended,
}

impl Failure {
    /// Index of its "logged once" flag; `None`: not logged here.
    fn kind(&self) -> Option<usize> {
        match self {
            Failure::Invalid(_) => Some(0),
            Failure::Down => None,
            Failure::Redis(_) | Failure::Timeout(_) => Some(1),
            Failure::Contended => Some(2),
        }
    }

    fn status(&self) -> Status {
        match self {
            Failure::Invalid(field) => Status::invalid_argument(format!("invalid {field}")),
            Failure::Down => Status::unavailable("the session store (Redis) is unavailable"),
            Failure::Redis(e) => {
                Status::unavailable(format!("the session store (Redis) failed: {e}"))
            }
            Failure::Timeout(t) => Status::unavailable(format!(
                "the session store (Redis) did not answer within {t:?}"
            )),
            Failure::Contended => Status::unavailable(format!(
                "the session changed under {ATTEMPTS} updates in a row; not added"
            )),
        }
    }
}

fn id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `c:<consumer id>` (a virtual key's consumer), `j:<consumer id>` (a verified token's) or
/// `k:<32 lowercase hex>` (a credential's digest). A caller with no credential has no sessions.
fn owner(s: &str) -> bool {
    if let Some(consumer) = s.strip_prefix("c:").or_else(|| s.strip_prefix("j:")) {
        return !consumer.is_empty()
            && consumer.len() <= MAX_CONSUMER_ID
            && !consumer.chars().any(char::is_control);
    }
    if let Some(digest) = s.strip_prefix("k:") {
        return digest.len() == 32
            && digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    }
    false
}

fn text(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

/// The Redis key of a session. Unambiguous: a session id has no `:`.
pub fn key(owner_id: &str, session: &str) -> Result<String, &'static str> {
    if !owner(owner_id) {
        return Err("owner");
    }
    if !id(session, MAX_ID) {
        return Err("session");
    }
    Ok(format!("claude_gateway:session:{owner_id}:{session}"))
}

/// The key of a turn's session, once every field of the turn is within bounds.
fn turn_key(t: &Turn) -> Result<String, &'static str> {
    let optional_id = |s: &str| s.is_empty() || id(s, MAX_ID);
    let key = key(&t.owner, &t.session)?;
    let fields = [
        ("agent", optional_id(&t.agent)),
        ("parent", optional_id(&t.parent)),
        ("model", text(&t.model, MAX_MODEL)),
        ("miss_reason", text(&t.miss_reason, MAX_REASON)),
    ];
    match fields.into_iter().find(|(_, ok)| !ok) {
        Some((field, _)) => Err(field),
        None => Ok(key),
    }
}

/// Where session records live: Redis, or the unit tests' stand-in.
trait Records {
    /// The record's version (0: none) and its encoding.
    fn read(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<(u64, Option<Vec<u8>>), String>> + Send;
    /// Writes `record` if the version is still `version` (bumping it, refreshing the TTL);
    /// false if another write came first.
    fn swap(
        &mut self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl_s: u64,
    ) -> impl Future<Output = Result<bool, String>> + Send;
}

impl Records for ConnectionManager {
    async fn read(&mut self, key: &str) -> Result<(u64, Option<Vec<u8>>), String> {
        let (v, j): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(key)
            .arg("v")
            .arg("j")
            .query_async(self)
            .await
            .map_err(|e| e.to_string())?;
        Ok((v.unwrap_or(0), j))
    }

    async fn swap(
        &mut self,
        key: &str,
        version: u64,
        record: &[u8],
        ttl_s: u64,
    ) -> Result<bool, String> {
        let written: i64 = SWAP
            .key(key)
            .arg(version)
            .arg(record)
            .arg(ttl_s)
            .invoke_async(self)
            .await
            .map_err(|e| e.to_string())?;
        Ok(written == 1)
    }
}

/// The stored record of `owner`'s `session`, if it is one (a record that does not decode,
/// or names another session, is none: `Add` starts it anew).
fn record(bytes: Option<&[u8]>, owner: &str, session: &str) -> Option<Session> {
    Session::decode(bytes?).filter(|s| s.owner == owner && s.id == session)
}

/// Adds `turn` to its session at `key`: read, `Session::add`, compare-and-set, again on a
/// conflict, at most [`ATTEMPTS`] rounds.
async fn add(
    records: &mut impl Records,
    key: &str,
    turn: &Turn,
    ttl_s: u64,
) -> Result<(), Failure> {
    let (caller, outcome) = turn.parts();
    for _ in 0..ATTEMPTS {
        let (version, bytes) = records.read(key).await.map_err(Failure::Redis)?;
        let mut session = record(bytes.as_deref(), &caller.owner, &caller.session)
            .unwrap_or_else(|| Session::new(&caller, outcome.now_ms));
        session.add(&caller, &outcome);
        let written = records
            .swap(key, version, &session.encode(), ttl_s)
            .await
            .map_err(Failure::Redis)?;
        if written {
            return Ok(());
        }
    }
    Err(Failure::Contended)
}

/// The session service (its gRPC face is [`Server`]).
pub struct Sessions {
    store: Arc<Store>,
    ttl_s: u64,
    /// Bound on the Redis work of one call.
    timeout: Duration,
    logged: [AtomicBool; 3],
}

impl Sessions {
    /// Sessions in `store`'s Redis, each kept `ttl` after its last turn.
    pub fn new(store: Arc<Store>, ttl: Duration, timeout: Duration) -> Sessions {
        Sessions {
            store,
            ttl_s: ttl.as_secs().max(1),
            timeout,
            logged: Default::default(),
        }
    }

    pub async fn add(&self, turn: &Turn) -> Result<Added, Status> {
        let key = turn_key(turn).map_err(|field| self.fail(Failure::Invalid(field)))?;
        self.with_redis(|mut redis| async move { add(&mut redis, &key, turn, self.ttl_s).await })
            .await
            .map(|()| Added {})
    }

    pub async fn get(&self, k: &Key) -> Result<Found, Status> {
        let key = key(&k.owner, &k.session).map_err(|field| self.fail(Failure::Invalid(field)))?;
        let bytes = self
            .with_redis(|mut redis| async move {
                redis
                    .read(&key)
                    .await
                    .map(|(_, j)| j)
                    .map_err(Failure::Redis)
            })
            .await?;
        let json = record(bytes.as_deref(), &k.owner, &k.session)
            .map(|s| s.to_json("global").to_string().into_bytes())
            .unwrap_or_default();
        Ok(Found { json })
    }

    /// Runs `work` on the Redis connection, within the call's bound; UNAVAILABLE at once
    /// while the store knows Redis is down.
    async fn with_redis<T, F, W>(&self, work: W) -> Result<T, Status>
    where
        W: FnOnce(ConnectionManager) -> F,
        F: Future<Output = Result<T, Failure>>,
    {
        let Some(redis) = self.store.backend().and_then(|b| b.redis()) else {
            return Err(self.fail(Failure::Down));
        };
        let failure = match tokio::time::timeout(self.timeout, work(redis)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(f)) => f,
            Err(_) => Failure::Timeout(self.timeout),
        };
        if matches!(failure, Failure::Redis(_) | Failure::Timeout(_)) {
            self.store.suspect();
        }
        Err(self.fail(failure))
    }

    /// The failure's status, logged the first time one of its kind happens (no key, no owner).
    fn fail(&self, failure: Failure) -> Status {
        let status = failure.status();
        let first = failure
            .kind()
            .and_then(|k| self.logged.get(k))
            .is_some_and(|flag| !flag.swap(true, Ordering::Relaxed));
        if first {
            crate::log(&format!(
                "sessions: {} (answered {:?}; the filter keeps its own numbers); this kind is \
                 logged once",
                status.message(),
                status.code()
            ));
        }
        status
    }
}

/// `claude_gateway.sessions.v1.Sessions` over tonic, shaped as tonic-build's generated server.
#[derive(Clone)]
pub struct Server(Arc<Sessions>);

impl Server {
    pub fn new(sessions: Arc<Sessions>) -> Server {
        Server(sessions)
    }
}

impl NamedService for Server {
    const NAME: &'static str = SERVICE;
}

/// One unary method: its request message to its answer.
struct Unary<F>(F);

impl<M, R, F, A> UnaryService<M> for Unary<F>
where
    F: FnMut(M) -> A,
    A: Future<Output = Result<R, Status>> + Send + 'static,
{
    type Response = R;
    type Future = BoxFuture<tonic::Response<R>, Status>;

    fn call(&mut self, request: tonic::Request<M>) -> Self::Future {
        let answer = (self.0)(request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

/// tonic's server side of one method, over prost (requests bounded to [`MAX_MESSAGE`]).
fn grpc<T, U>() -> Grpc<ProstCodec<T, U>>
where
    ProstCodec<T, U>: tonic::codec::Codec,
{
    Grpc::new(ProstCodec::default()).apply_max_message_size_config(Some(MAX_MESSAGE), None)
}

impl<B> tonic::codegen::Service<http::Request<B>> for Server
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(SERVICE))
            .and_then(|p| p.strip_prefix('/'));
        let sessions = self.0.clone();
        match method {
            Some(ADD) => Box::pin(async move {
                let add = Unary(move |turn: Turn| {
                    let sessions = sessions.clone();
                    async move { sessions.add(&turn).await }
                });
                Ok(grpc().unary(add, req).await)
            }),
            Some(GET) => Box::pin(async move {
                let get = Unary(move |key: Key| {
                    let sessions = sessions.clone();
                    async move { sessions.get(&key).await }
                });
                Ok(grpc().unary(get, req).await)
            }),
            _ => Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (Code::Unimplemented as i32).into());
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            }),
        }
    }
}

#[cfg(test)]
mod tests;
