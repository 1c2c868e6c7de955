//! The Redis adapters against the Redis at `EVENTLY_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), each test under a key prefix of its own. An unreachable Redis fails
//! the tests.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use evently_core::*;
use evently_storage::MemoryStore;
use evently_storage::redis::{
    CacheConfig, CachedStore, DistributedLock, FailMode, RateLimit, RateLimiter, RedisConfig,
    RedisConnection, RedisError,
};

fn redis_url() -> String {
    std::env::var("EVENTLY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// A connection under a fresh key prefix; fails the test when Redis does not answer.
async fn connection() -> RedisConnection {
    let mut cfg = RedisConfig::new(redis_url());
    cfg.key_prefix = format!("evently-test:{}:", uuid::Uuid::new_v4().simple());
    let conn = RedisConnection::new(cfg).expect("valid Redis configuration");
    conn.ping()
        .await
        .unwrap_or_else(|e| panic!("Redis at {} must be up for these tests: {e}", redis_url()));
    conn
}

// The whole store conformance suite through the cache wrapper: it changes no behaviour of the store.
evently_conformance::store_conformance_tests!(mod cached_memory_conformance, async || -> Arc<dyn Store> {
    Arc::new(CachedStore::new(Arc::new(MemoryStore::new()), connection().await))
});

// And over each SQL store, whose change sets the cache forwards.
evently_conformance::store_conformance_tests!(mod cached_sqlite_conformance, async || -> Arc<dyn Store> {
    let inner = evently_storage::SqliteStore::open_in_memory()
        .await
        .expect("an in-memory SQLite store");
    Arc::new(CachedStore::new(Arc::new(inner), connection().await))
});

evently_conformance::store_conformance_tests!(mod cached_postgres_conformance, async || -> Arc<dyn Store> {
    let inner = evently_storage::postgres::testing::fresh_store()
        .await
        .expect("create a private PostgreSQL test database");
    Arc::new(CachedStore::new(Arc::new(inner), connection().await))
});

async fn engine_with_event(store: &CachedStore, capacity: u32) -> (Evently, Actor, Event) {
    let engine = Evently::builder()
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();
    let admin = engine
        .register_user(NewUser {
            email: "admin@example.com".into(),
            name: "Admin".into(),
            password_hash: "$argon2id$stub".into(),
            role: Role::Admin,
            attributes: BTreeMap::new(),
        })
        .await
        .unwrap();
    let admin = Actor::new(admin.id, admin.role);
    let now = engine.now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Cached".into(),
                description: String::new(),
                venue: "Hall".into(),
                category: "test".into(),
                starts_at: now + chrono::Duration::days(3),
                ends_at: now + chrono::Duration::days(3) + chrono::Duration::hours(2),
                capacity,
                price: Money::new(1000, Currency::new("EUR").unwrap()),
            },
        )
        .await
        .unwrap();
    (engine, admin, event)
}

async fn user(engine: &Evently, i: usize) -> Actor {
    let u = engine
        .register_user(NewUser {
            email: format!("user{i}@example.com"),
            name: format!("User {i}"),
            password_hash: "$argon2id$stub".into(),
            role: Role::User,
            attributes: BTreeMap::new(),
        })
        .await
        .unwrap();
    Actor::new(u.id, u.role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_cached_and_every_write_invalidates() {
    let store = CachedStore::new(Arc::new(MemoryStore::new()), connection().await);
    let (engine, admin, event) = engine_with_event(&store, 10).await;

    let first = store.availability(event.id).await.unwrap();
    assert!(!first.from_cache, "the first read is a miss");
    let second = store.availability(event.id).await.unwrap();
    assert!(second.from_cache, "the second read is a hit");
    assert_eq!(second.value.unwrap().available, 10);
    assert!(!store.event(event.id).await.unwrap().from_cache);
    assert!(store.event(event.id).await.unwrap().from_cache);

    // A booking invalidates both entries.
    let u = user(&engine, 1).await;
    engine
        .book(&u, BookingRequest::new(event.id, 3))
        .await
        .unwrap();
    let after = store.availability(event.id).await.unwrap();
    assert!(!after.from_cache);
    assert_eq!(after.value.unwrap().available, 7);
    assert_eq!(
        store
            .event(event.id)
            .await
            .unwrap()
            .value
            .unwrap()
            .seats_confirmed,
        3
    );

    // So does an admin edit.
    let cached = store.event(event.id).await.unwrap();
    assert!(cached.from_cache);
    let edited = engine
        .update_event(
            &admin,
            event.id,
            EventPatch {
                name: Some("Renamed".into()),
                expected_version: cached.value.unwrap().version,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let after = store.event(event.id).await.unwrap();
    assert!(!after.from_cache);
    assert_eq!(after.value.unwrap(), edited);

    // A rolled-back write changes nothing and leaves the cache alone.
    assert!(!store.availability(event.id).await.unwrap().from_cache);
    assert!(store.availability(event.id).await.unwrap().from_cache);
    {
        let mut tx = store.begin().await.unwrap();
        let mut e = tx
            .event(event.id, LockMode::ForUpdate)
            .await
            .unwrap()
            .unwrap();
        e.seats_held += 1;
        tx.apply(Changes {
            updated_events: vec![e.clone()],
            ..Changes::default()
        })
        .await
        .unwrap();
        tx.rollback().await.unwrap();
    }
    assert!(store.availability(event.id).await.unwrap().from_cache);
    // Unknown events are not cached.
    let unknown = EventId::new();
    assert_eq!(store.event(unknown).await.unwrap().value, None);
    assert!(!store.event(unknown).await.unwrap().from_cache);
}

/// Readers racing with writers: once the writes are done, the cache answers what the store holds
/// (a fill that read the store before a commit never lands after that commit's invalidation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reads_never_leave_a_stale_entry() {
    let store = CachedStore::with_config(
        Arc::new(MemoryStore::new()),
        connection().await,
        CacheConfig {
            event_ttl: Duration::from_secs(600),
            availability_ttl: Duration::from_secs(600),
        },
    );
    let (engine, _admin, event) = engine_with_event(&store, 150).await;
    let mut users = Vec::new();
    for i in 0..200 {
        users.push(user(&engine, i).await);
    }
    let writers: Vec<_> = users
        .into_iter()
        .map(|u| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.book(&u, BookingRequest::new(event.id, 1)).await })
        })
        .collect();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    let a = store.availability(event.id).await.unwrap().value.unwrap();
                    assert!(a.confirmed + a.held + a.available == a.capacity);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut ok = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::SoldOut { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(ok, 150);
    let truth = engine.availability(event.id).await.unwrap();
    assert_eq!(truth.available, 0);
    // Read twice: the first may fill, the second is surely from the cache.
    store.availability(event.id).await.unwrap();
    let cached = store.availability(event.id).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.value.unwrap(), truth);
    assert_eq!(store.pending_invalidations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_allows_the_burst_then_the_rate() {
    let limiter = RateLimiter::new(connection().await, FailMode::Closed);
    // 5 at once, then one every 200 ms.
    let limit = RateLimit::per(5, Duration::from_secs(1));
    for i in 0..5 {
        let d = limiter.check("k", limit).await.unwrap();
        assert!(d.allowed, "request {i} of the burst");
        assert_eq!(d.remaining, 4 - i);
        assert!(!d.degraded);
    }
    let refused = limiter.check("k", limit).await.unwrap();
    assert!(!refused.allowed);
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(200),
        "{refused:?}"
    );
    // Keys are independent.
    assert!(limiter.check("other", limit).await.unwrap().allowed);
    tokio::time::sleep(refused.retry_after + Duration::from_millis(20)).await;
    assert!(limiter.check("k", limit).await.unwrap().allowed);
    assert!(!limiter.check("k", limit).await.unwrap().allowed);
    // A cost above the burst can never pass: a typed error, not a silent refusal.
    assert!(matches!(
        limiter.check_n("k", limit, 6).await,
        Err(RedisError::InvalidConfig { .. })
    ));
    assert!(matches!(
        limiter
            .check("k", RateLimit::per(0, Duration::from_secs(1)))
            .await,
        Err(RedisError::InvalidConfig { .. })
    ));
}

/// Two limiters (as two processes would have) share each key's budget, even when they race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_budget_is_shared_across_limiters() {
    let conn = connection().await;
    let other = RedisConnection::new(conn.config().clone()).unwrap();
    let a = RateLimiter::new(conn, FailMode::Open);
    let b = RateLimiter::new(other, FailMode::Open);
    let limit = RateLimit::per(1, Duration::from_secs(60)).burst(50);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { l.check("shared", limit).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        let d = t.await.unwrap();
        assert!(!d.degraded);
        allowed += usize::from(d.allowed);
    }
    assert_eq!(allowed, 50);
}

/// An `acquire` dropped after Redis granted the lease but before its answer was read (its caller
/// went away) must not leave the lock held by an owner nobody has, until the lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_grant_nobody_received_is_released() {
    let conn = connection().await;
    let locks = DistributedLock::new(conn.clone());
    let other = DistributedLock::new(RedisConnection::new(conn.config().clone()).unwrap());
    let key = format!("{}lock:{{orphan}}", conn.config().key_prefix);
    let url = redis_url();
    let exists = || {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url, "EXISTS", &key])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    };
    // Poll an acquire once (the request goes out), then wait, without polling it again, until Redis
    // has granted the lease, and drop it. When the answer was already in at the first poll, or
    // the request was not out yet, the attempt ends normally and another is made.
    let mut orphaned = false;
    for _ in 0..20 {
        let mut acquiring = Box::pin(locks.acquire("orphan", Duration::from_secs(600)));
        if let std::task::Poll::Ready(granted) = futures::poll!(acquiring.as_mut()) {
            // Busy (an earlier attempt's grant not yet released) is no answer either: try again.
            if let Ok(g) = granted {
                g.release().await.unwrap();
            }
            continue;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if exists() {
            drop(acquiring);
            orphaned = true;
            break;
        }
        // Not granted within the wait. Under load the answer can come later than the command's
        // timeout: then this attempt failed, and a grant it got is released like a dropped one's.
        if let Ok(g) = acquiring.await {
            g.release().await.unwrap();
        }
    }
    assert!(
        orphaned,
        "no acquire was left between its grant and its answer"
    );
    // The grant is released in the background: the lock is free long before its 10-minute lease.
    let guard = other
        .acquire_within("orphan", Duration::from_secs(5), Duration::from_secs(3))
        .await
        .expect("the orphaned grant was released");
    guard.release().await.unwrap();
    common::forget_redis_keys(&conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_exclusive_and_fencing_tokens_grow() {
    let conn = connection().await;
    let locks = DistributedLock::new(conn.clone());
    let other = DistributedLock::new(RedisConnection::new(conn.config().clone()).unwrap());

    let a = locks
        .acquire("job", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(matches!(
        other.acquire("job", Duration::from_secs(5)).await,
        Err(RedisError::LockBusy { .. })
    ));
    // Another name is another lock.
    let n = other
        .acquire("other", Duration::from_secs(5))
        .await
        .unwrap();
    n.release().await.unwrap();

    // a's lease runs out; b gets the lock with a higher token; a can neither extend nor release.
    let b = other
        .acquire_within("job", Duration::from_secs(5), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(b.token() > a.token(), "{} > {}", b.token(), a.token());
    assert!(matches!(
        a.extend(Duration::from_secs(5)).await,
        Err(RedisError::LockLost { .. })
    ));
    assert!(matches!(
        a.release().await,
        Err(RedisError::LockLost { .. })
    ));
    // b still holds it: a's failed release did not free it.
    assert!(matches!(
        locks.acquire("job", Duration::from_secs(5)).await,
        Err(RedisError::LockBusy { .. })
    ));
    b.extend(Duration::from_secs(5)).await.unwrap();
    let b_token = b.token();
    b.release().await.unwrap();
    let c = locks.acquire("job", Duration::from_secs(5)).await.unwrap();
    assert!(c.token() > b_token);
    c.release().await.unwrap();
    common::forget_redis_keys(&conn);
}

/// Many contenders: at most one holds the lock at any time, and tokens are handed out in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_contention_grants_one_at_a_time() {
    let conn = connection().await;
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let locks = DistributedLock::new(conn.clone());
            let inside = inside.clone();
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let g = locks
                    .acquire_within("critical", Duration::from_secs(5), Duration::from_secs(20))
                    .await
                    .unwrap();
                let was = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(was, 0, "two holders at once");
                tokens.lock().unwrap().push(g.token().0);
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                g.release().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 20);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    common::forget_redis_keys(&conn);
}
