//! Ids, the compare-and-set rounds over a stand-in for Redis, and the gRPC routing;
//! tests/sessions.rs runs the service against a real Redis.

use super::*;
use claude_gateway::sessions::wire::Turn;

fn turn(owner: &str, session: &str, agent: &str) -> Turn {
    Turn {
        owner: owner.into(),
        session: session.into(),
        agent: agent.into(),
        model: "claude-sonnet-4-5".into(),
        input_tokens: 10,
        output_tokens: 3,
        cost_micro_usd: 70,
        at_ms: 1_700_000_000_000,
        ..Turn::default()
    }
}

#[test]
fn owners_and_ids_are_checked_and_bounded() {
    let hex = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        key("c:alice", "s-1_A").as_deref(),
        Ok("claude_gateway:session:c:alice:s-1_A")
    );
    assert!(key(&format!("k:{hex}"), "s").is_ok());
    assert!(key("j:bob@example.com", &"x".repeat(MAX_ID)).is_ok());
    assert!(key(&format!("c:{}", "é".repeat(MAX_CONSUMER_ID / 2)), "s").is_ok());
    for bad_owner in [
        "",
        "c:",
        "alice",
        "anonymous",
        "j:",
        "c:al\nice",
        &format!("c:{}", "a".repeat(MAX_CONSUMER_ID + 1)),
        &format!("k:{}", &hex[1..]),
        &format!("k:{hex}0"),
        &format!("k:{}", hex.to_uppercase()),
        "k:0123456789abcdef0123456789abcdeg",
    ] {
        assert_eq!(key(bad_owner, "s"), Err("owner"), "{bad_owner:?}");
    }
    for bad_session in ["", "a:b", "a b", "ä", &"x".repeat(MAX_ID + 1)] {
        assert_eq!(
            key("c:alice", bad_session),
            Err("session"),
            "{bad_session:?}"
        );
    }

    let ok = turn("c:alice", "s", "");
    assert!(turn_key(&ok).is_ok());
    assert!(
        turn_key(&Turn {
            agent: "a-1".into(),
            parent: "a_0".into(),
            miss_reason: "system_changed".into(),
            ..ok.clone()
        })
        .is_ok()
    );
    let bad = [
        (
            "agent",
            Turn {
                agent: "a/b".into(),
                ..ok.clone()
            },
        ),
        (
            "parent",
            Turn {
                parent: "x".repeat(MAX_ID + 1),
                ..ok.clone()
            },
        ),
        (
            "model",
            Turn {
                model: "m".repeat(MAX_MODEL + 1),
                ..ok.clone()
            },
        ),
        (
            "model",
            Turn {
                model: "m\r\n".into(),
                ..ok.clone()
            },
        ),
        (
            "miss_reason",
            Turn {
                miss_reason: "r".repeat(MAX_REASON + 1),
                ..ok.clone()
            },
        ),
        (
            "session",
            Turn {
                session: String::new(),
                ..ok.clone()
            },
        ),
    ];
    for (field, t) in bad {
        assert_eq!(turn_key(&t), Err(field));
    }
}

/// Redis as far as [`add`] knows it: one record, and another replica that may write first.
#[derive(Default)]
struct Fake {
    stored: Option<(u64, Vec<u8>)>,
    reads: usize,
    /// Before each of this many swaps, the other replica adds `theirs` (so the swap loses).
    interfere: usize,
    theirs: Turn,
    broken: bool,
    ttl_s: Option<u64>,
}

impl Fake {
    fn session(&self) -> Option<Session> {
        Session::decode(&self.stored.as_ref()?.1)
    }

    fn version(&self) -> u64 {
        self.stored.as_ref().map_or(0, |(v, _)| *v)
    }
}

impl Records for Fake {
    async fn read(&mut self, _key: &str) -> Result<(u64, Option<Vec<u8>>), String> {
        self.reads += 1;
        if self.broken {
            return Err("connection refused".into());
        }
        Ok((self.version(), self.stored.as_ref().map(|(_, j)| j.clone())))
    }

    async fn swap(
        &mut self,
        _key: &str,
        version: u64,
        record: &[u8],
        ttl_s: u64,
    ) -> Result<bool, String> {
        if self.interfere > 0 {
            self.interfere -= 1;
            let (caller, o) = self.theirs.parts();
            let mut s = self
                .session()
                .unwrap_or_else(|| Session::new(&caller, o.now_ms));
            s.add(&caller, &o);
            self.stored = Some((self.version() + 1, s.encode()));
        }
        if version != self.version() {
            return Ok(false);
        }
        self.stored = Some((version + 1, record.to_vec()));
        self.ttl_s = Some(ttl_s);
        Ok(true)
    }
}

#[tokio::test]
async fn a_write_lost_to_another_replica_is_redone_on_its_record() {
    let mine = turn("c:alice", "s", "");
    let mut redis = Fake {
        interfere: 3,
        theirs: turn("c:alice", "s", "sub-1"),
        ..Fake::default()
    };
    add(&mut redis, "k", &mine, 3600).await.unwrap();
    // Three rounds lost to the other replica's writes, the fourth won: nothing lost.
    assert_eq!(redis.reads, 4);
    assert_eq!(redis.version(), 4);
    assert_eq!(redis.ttl_s, Some(3600));
    let s = redis.session().unwrap();
    assert_eq!(s.totals.requests, 4);
    assert_eq!(s.totals.tokens.input, 40);
    assert_eq!(s.agent(None).unwrap().totals.requests, 1);
    assert_eq!(s.agent(Some("sub-1")).unwrap().totals.requests, 3);
    assert_eq!((s.owner.as_str(), s.id.as_str()), ("c:alice", "s"));

    // Once there, the next turn adds to it in one round.
    add(&mut redis, "k", &mine, 3600).await.unwrap();
    assert_eq!(redis.reads, 5);
    assert_eq!(redis.session().unwrap().totals.requests, 5);
}

#[tokio::test]
async fn a_session_that_keeps_changing_gives_up_after_bounded_rounds() {
    let mut redis = Fake {
        interfere: usize::MAX,
        theirs: turn("c:alice", "s", ""),
        ..Fake::default()
    };
    let e = add(&mut redis, "k", &turn("c:alice", "s", ""), 60).await;
    assert_eq!(e, Err(Failure::Contended));
    assert_eq!(redis.reads, ATTEMPTS);
    // Only the other replica's turns are in.
    assert_eq!(redis.session().unwrap().totals.requests, ATTEMPTS as u64);
    assert_eq!(Failure::Contended.status().code(), Code::Unavailable);
}

#[tokio::test]
async fn a_failing_redis_is_not_retried() {
    let mut redis = Fake {
        broken: true,
        ..Fake::default()
    };
    let e = add(&mut redis, "k", &turn("c:alice", "s", ""), 60).await;
    assert_eq!(e, Err(Failure::Redis("connection refused".into())));
    assert_eq!(redis.reads, 1);
}

#[tokio::test]
async fn a_record_that_is_not_this_sessions_is_started_anew() {
    let other = Session::new(
        &claude_gateway::sessions::Caller {
            session: "s".into(),
            owner: "c:mallory".into(),
            ..Default::default()
        },
        1,
    );
    for stored in [b"not json".to_vec(), other.encode()] {
        let mut redis = Fake {
            stored: Some((7, stored)),
            ..Fake::default()
        };
        add(&mut redis, "k", &turn("c:alice", "s", ""), 60)
            .await
            .unwrap();
        let s = redis.session().unwrap();
        assert_eq!((s.owner.as_str(), s.totals.requests), ("c:alice", 1));
        assert_eq!(s.first_ms, 1_700_000_000_000);
        assert_eq!(redis.version(), 8);
    }
}

#[tokio::test]
async fn bad_input_is_invalid_and_a_store_without_redis_unavailable() {
    let sessions = Sessions::new(
        Arc::new(Store::default()),
        Duration::from_secs(3600),
        Duration::from_millis(500),
    );
    let e = sessions.add(&turn("alice", "s", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "invalid owner");
    let e = sessions
        .get(&Key {
            owner: "c:alice".into(),
            session: "../x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = sessions.add(&turn("c:alice", "s", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let e = sessions
        .get(&Key {
            owner: "c:alice".into(),
            session: "s".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    use tonic::codegen::Service as _;
    let sessions = Arc::new(Sessions::new(
        Arc::new(Store::default()),
        Duration::from_secs(3600),
        Duration::from_millis(500),
    ));
    let mut server = Server::new(sessions);
    for path in [
        format!("/{SERVICE}/Delete"),
        format!("/{SERVICE}/Add/x"),
        format!("/{SERVICE}x/Add"),
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit".to_owned(),
    ] {
        let request = http::Request::builder()
            .uri(path.as_str())
            .body(tonic::body::Body::default())
            .unwrap();
        let response = server.call(request).await.unwrap();
        let status = response.headers().get(Status::GRPC_STATUS).unwrap();
        assert_eq!(status, &(Code::Unimplemented as i32).to_string(), "{path}");
    }
}

#[tokio::test]
async fn the_largest_record_is_bounded() {
    // Every bound at its longest: more agents, models and reasons than a record keeps.
    let mut redis = Fake::default();
    for i in 0..2 * claude_gateway::sessions::MAX_AGENTS {
        let longest = |c: char| format!("{i:03}{}", c.to_string().repeat(MAX_ID - 3));
        let t = Turn {
            owner: format!("c:{}", "o".repeat(MAX_CONSUMER_ID)),
            session: "s".repeat(MAX_ID),
            agent: longest('a'),
            parent: longest('p'),
            model: format!("{i:03}{}", "m".repeat(MAX_MODEL - 3)),
            miss_reason: format!("{i:03}{}", "r".repeat(MAX_REASON - 3)),
            input_tokens: u64::MAX / 2,
            output_tokens: u64::MAX,
            cost_micro_usd: u64::MAX,
            at_ms: u64::MAX,
            ..Turn::default()
        };
        turn_key(&t).unwrap();
        add(&mut redis, "k", &t, 60).await.unwrap();
    }
    let size = redis.stored.as_ref().unwrap().1.len();
    let s = redis.session().unwrap();
    assert_eq!(s.agents.len(), claude_gateway::sessions::MAX_AGENTS + 1);
    eprintln!("the largest record: {size} bytes");
    assert!(size < 32 * 1024, "{size}");
}
