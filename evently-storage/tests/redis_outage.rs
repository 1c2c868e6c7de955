//! Redis going away in the middle of a run, on a private `redis-server` this test starts on a free
//! port (the shared one is left alone): bookings keep succeeding on the PostgreSQL store, the cache
//! is bypassed (never a stale seat count), the rate limiter answers by its fail mode, the lock
//! fails with a typed error, and the cache is used again once Redis is back.
//!
//! Needs `redis-server` on the PATH and the test PostgreSQL server; either missing fails the test.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evently_core::*;
use evently_storage::postgres::testing::fresh_store;
use evently_storage::redis::{
    CachedStore, DistributedLock, FailMode, RateLimit, RateLimiter, RedisConfig, RedisConnection,
    RedisError,
};

/// A redis-server of this test's own, killed when dropped.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    async fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        let r = PrivateRedis {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn setup(
    redis: &RedisConnection,
    capacity: u32,
    users: usize,
) -> (CachedStore, Evently, Event, Vec<Actor>) {
    let pg = fresh_store().await.expect("the test PostgreSQL server");
    let store = CachedStore::new(Arc::new(pg), redis.clone());
    let engine = Evently::builder()
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();
    let mut actors = Vec::new();
    for i in 0..=users {
        let u = engine
            .register_user(NewUser {
                email: format!("user{i}@example.com"),
                name: format!("User {i}"),
                password_hash: "$argon2id$stub".into(),
                role: if i == 0 { Role::Admin } else { Role::User },
                attributes: BTreeMap::new(),
            })
            .await
            .unwrap();
        actors.push(Actor::new(u.id, u.role));
    }
    let now = engine.now();
    let event = engine
        .create_event(
            &actors[0],
            NewEvent {
                name: "Outage".into(),
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
    actors.remove(0);
    (store, engine, event, actors)
}

fn connection(url: String) -> RedisConnection {
    let mut cfg = RedisConfig::new(url);
    cfg.key_prefix = "outage:".into();
    cfg.connect_timeout = Duration::from_millis(200);
    cfg.response_timeout = Duration::from_millis(200);
    cfg.retry_after = Duration::from_millis(200);
    RedisConnection::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_bookings_continue_and_cache_recovers() {
    let port = PrivateRedis::free_port();
    let mut server = PrivateRedis::start(port).await;
    let redis = connection(server.url());
    let (store, engine, event, users) = setup(&redis, 1_000, 300).await;
    let limit = RateLimit::per(1_000, Duration::from_secs(1));
    let open = RateLimiter::new(redis.clone(), FailMode::Open);
    let closed = RateLimiter::new(redis.clone(), FailMode::Closed);
    let locks = DistributedLock::new(redis.clone());

    // Warm: the cache answers.
    store.availability(event.id).await.unwrap();
    assert!(store.availability(event.id).await.unwrap().from_cache);
    assert!(!open.check("k", limit).await.unwrap().degraded);

    // 300 bookings, 10 at a time, while readers keep asking for availability.
    let done = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicUsize::new(0));
    let booking = {
        let engine = engine.clone();
        let booked = booked.clone();
        tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(10));
            let mut tasks = Vec::new();
            for u in users {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let engine = engine.clone();
                let booked = booked.clone();
                tasks.push(tokio::spawn(async move {
                    let r = engine.book(&u, BookingRequest::new(event.id, 1)).await;
                    drop(permit);
                    booked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    r
                }));
            }
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            results
        })
    };
    let reader = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut reads = 0usize;
            while !done.load(Ordering::SeqCst) {
                let a = store.availability(event.id).await.unwrap().value.unwrap();
                assert_eq!(a.confirmed + a.held + a.available, a.capacity);
                reads += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            reads
        })
    };

    // Stop Redis a third of the way in.
    while booked.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let killed_at = booked.load(Ordering::SeqCst);

    // Without Redis: reads come from the store and are the truth; the limiter answers by its mode;
    // the lock is a typed error.
    let a = store.availability(event.id).await.unwrap();
    assert!(!a.from_cache, "served from a Redis that is down");
    let d = open.check("k", limit).await.unwrap();
    assert!(d.allowed && d.degraded);
    let d = closed.check("k", limit).await.unwrap();
    assert!(!d.allowed && d.degraded);
    assert!(matches!(
        locks.acquire("l", Duration::from_secs(1)).await,
        Err(RedisError::Unavailable { .. })
    ));
    // Let bookings run without Redis for a while.
    while booked.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let without_redis = booked.load(Ordering::SeqCst) - killed_at;
    let truth = engine.availability(event.id).await.unwrap();
    let a = store.availability(event.id).await.unwrap();
    assert!(!a.from_cache);
    assert!(a.value.unwrap().confirmed >= truth.confirmed);

    // Redis comes back (empty, on the same port).
    let server = PrivateRedis::start(port).await;
    let results = booking.await.unwrap();
    done.store(true, Ordering::SeqCst);
    let reads = reader.await.unwrap();
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "bookings failed: {failed:?}");
    assert_eq!(results.len(), 300);
    assert!(
        without_redis >= 50,
        "only {without_redis} bookings ran without Redis"
    );

    // The cache recovers: a miss fills it, then it answers, with the store's numbers.
    let truth = engine.availability(event.id).await.unwrap();
    assert_eq!(truth.confirmed, 300);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = store.availability(event.id).await.unwrap();
        assert_eq!(a.value.unwrap(), truth);
        if a.from_cache {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.pending_invalidations(), 0);
    assert!(!open.check("k", limit).await.unwrap().degraded);
    let g = locks.acquire("l", Duration::from_secs(1)).await.unwrap();
    g.release().await.unwrap();
    eprintln!("{reads} availability reads during the run; {without_redis} bookings without Redis");
    drop(server);
}

/// Redis stops answering (paused) while a write commits, then comes back with the old entry still
/// in it: the invalidation Redis missed is sent before the cache is read again, so the stale seat
/// count is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_invalidation_is_sent_before_the_cache_is_trusted_again() {
    let server = PrivateRedis::start(PrivateRedis::free_port()).await;
    let redis = connection(server.url());
    let (store, engine, event, users) = setup(&redis, 10, 2).await;

    store.availability(event.id).await.unwrap();
    let cached = store.availability(event.id).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.value.unwrap().available, 10);

    // Every client command blocks for 1.5 s: the booking's invalidation times out.
    assert_eq!(
        server.cli(&["CLIENT", "PAUSE", "1500", "ALL"]).as_deref(),
        Some("OK")
    );
    let paused_at = Instant::now();
    engine
        .book(&users[0], BookingRequest::new(event.id, 4))
        .await
        .expect("the booking does not need Redis");
    assert_eq!(store.pending_invalidations(), 1);
    let a = store.availability(event.id).await.unwrap();
    assert!(
        !a.from_cache,
        "read from a paused Redis holding a stale entry"
    );
    assert_eq!(a.value.unwrap().available, 6);

    // Redis answers again, still holding the entry that says 10.
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(paused_at.elapsed())).await;
    let a = store.availability(event.id).await.unwrap();
    assert_eq!(
        a.value.unwrap().available,
        6,
        "a stale seat count was served"
    );
    assert_eq!(store.pending_invalidations(), 0);
    let a = store.availability(event.id).await.unwrap();
    assert!(a.from_cache);
    assert_eq!(a.value.unwrap().available, 6);
}
