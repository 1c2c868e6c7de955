//! Cancellation safety on the SQL stores: engine, worker and queue futures dropped at random await
//! points (a client that went away, a timeout) must strand nothing. A storm of mixed calls (bookings
//! with and without idempotency keys, holds, confirmations, cancellations, waitlist joins, reads, job
//! runs, hold sweeps, raw queue claims and completions), each cut off by a timeout of a random 2 µs to
//! 3 ms, is followed by checks that:
//! - no connection of the store is left inside a transaction (PostgreSQL: `pg_stat_activity` shows
//!   none `idle in transaction` for the test database; the server's own idle-in-transaction timeout
//!   is set far beyond the test, so it cannot hide one);
//! - every later request succeeds, promptly, on every event (a lost hand-over of an event's booking
//!   queue would make them wait forever);
//! - each event's seat counters equal its held and confirmed bookings;
//! - through the Redis read cache, what the cache shows equals what the store holds.
//!
//! The random seed is printed; `EVENTLY_CANCEL_SEED` replays the same calls and timeouts (not the
//! same interleaving of tasks, which the scheduler decides).
//!
//! One case is not left to chance: a waiting request dropped after leadership of its event's queue
//! was handed to it, but before its task ran again.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use evently_conformance::assert_counters_match_bookings;
use evently_core::*;
use evently_storage::postgres::testing::TestDatabase;
use evently_storage::redis::{CacheConfig, CachedStore, RedisConfig, RedisConnection};
use evently_storage::{MemoryStore, PostgresStore, SqliteStore};

/// Concurrent tasks in the storm and calls each makes.
const TASKS: u64 = 24;
const CALLS_PER_TASK: u64 = 300;
/// How long a call after the storm may take: generous for a loaded CI machine, while a call that
/// waits for a queue nobody leads would wait forever.
const PROMPT: Duration = Duration::from_secs(5);

/// SplitMix64: small, seedable, good enough to pick operations and timeouts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    let seed = std::env::var("EVENTLY_CANCEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("cancellation storm seed: {seed} (EVENTLY_CANCEL_SEED={seed} replays it)");
    seed
}

struct World {
    engine: Evently,
    admin: Actor,
    users: Vec<Actor>,
    events: Vec<EventId>,
}

async fn world(store: Arc<dyn Store>) -> World {
    let engine = Evently::builder()
        .store(store)
        .config(EngineConfig {
            // Jobs claimed by a dropped run come back soon after the storm.
            job_lease: Duration::from_secs(1),
            ..EngineConfig::default()
        })
        .build()
        .expect("engine");
    let admin = common::user(&engine, "admin@example.com", Role::Admin).await;
    let mut users = Vec::new();
    for i in 0..24 {
        users.push(common::user(&engine, &format!("u{i}@example.com"), Role::User).await);
    }
    // Two roomy events and one small one that sells out, so sold-out, sweep and waitlist paths run.
    let mut events = Vec::new();
    for capacity in [100_000, 100_000, 40] {
        events.push(common::event(&engine, &admin, capacity).await.id);
    }
    World {
        engine,
        admin,
        users,
        events,
    }
}

/// One call of the storm, chosen by `op`.
async fn call(
    w: Arc<World>,
    op: u64,
    actor: Actor,
    event: EventId,
    quantity: u32,
    key: String,
    remembered: Option<(Actor, BookingId)>,
) -> Result<Option<(Actor, BookingId)>> {
    let e = &w.engine;
    match op {
        0..=2 => e
            .book(&actor, BookingRequest::new(event, quantity))
            .await
            .map(|b| Some((actor, b.id))),
        3 => e
            .book(
                &actor,
                BookingRequest::new(event, quantity).idempotency_key(key),
            )
            .await
            .map(|b| Some((actor, b.id))),
        4 => e
            .hold(&actor, BookingRequest::new(event, quantity))
            .await
            .map(|b| Some((actor, b.id))),
        5 => match remembered {
            Some((owner, id)) => e.confirm(&owner, id).await.map(|_| None),
            None => Ok(None),
        },
        6 => match remembered {
            Some((owner, id)) => e.cancel(&owner, id).await.map(|_| None),
            None => Ok(None),
        },
        7 => e.availability(event).await.map(|_| None),
        8 => e.join_waitlist(&actor, event, 1).await.map(|_| None),
        9 => e.run_jobs(10).await.map(|_| None),
        10 => e.expire_holds().await.map(|_| None),
        _ => {
            let queue = e.job_queue();
            let claimed = queue
                .claim(5, e.now(), Duration::from_secs(1))
                .await
                .map_err(Error::from)?;
            for job in claimed {
                queue.complete(job.id).await.map_err(Error::from)?;
            }
            Ok(None)
        }
    }
}

/// One storm task: `CALLS_PER_TASK` calls, each dropped after a random 2 µs to 3 ms, in one of two
/// ways: by a timeout around the call (which polls the call one last time before dropping it), or
/// by aborting the task that runs it (which drops it without polling it again, even when it was
/// just woken: what a server does to a request whose client went away).
async fn storm_task(w: Arc<World>, seed: u64) {
    let mut rng = Rng(seed);
    let mut mine: Vec<(Actor, BookingId)> = Vec::new();
    for _ in 0..CALLS_PER_TASK {
        let budget = Duration::from_micros(2 + rng.below(3_000));
        let actor = w.users[rng.below(w.users.len() as u64) as usize];
        let event = w.events[rng.below(w.events.len() as u64) as usize];
        let quantity = 1 + rng.below(3) as u32;
        let key = format!("k{}", rng.below(64));
        let remembered = (!mine.is_empty()).then(|| mine[rng.below(mine.len() as u64) as usize]);
        let op = rng.below(12);
        let call = call(w.clone(), op, actor, event, quantity, key, remembered);
        let made = if rng.below(2) == 0 {
            tokio::time::timeout(budget, call).await.ok()
        } else {
            let task = tokio::spawn(call);
            tokio::time::sleep(budget).await;
            task.abort();
            task.await.ok()
        };
        if let Some(Ok(Some(made))) = made {
            mine.push(made);
        }
    }
}

async fn storm(w: &Arc<World>) {
    let seed = seed();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            tokio::spawn(storm_task(
                w.clone(),
                seed ^ (t.wrapping_mul(0xA24B_AED4_963E_E407)),
            ))
        })
        .collect();
    for t in tasks {
        t.await.expect("a storm task panicked");
    }
}

/// Runs `what` within [`PROMPT`], failing the test if it errs or takes longer.
async fn promptly<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> T {
    match tokio::time::timeout(PROMPT, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what} failed after the storm: {e}"),
        Err(_) => panic!("{what} took longer than {PROMPT:?} after the storm"),
    }
}

/// Every kind of call works again, promptly, on every event; the jobs drain.
async fn everything_answers(w: &World) {
    let e = &w.engine;
    for (i, &event) in w.events.iter().enumerate() {
        // The sold-out event gets room first, so its bookings can succeed too.
        let current = promptly("reading the event", e.event(event)).await;
        let patch = EventPatch {
            expected_version: current.version,
            capacity: Some(current.capacity + 200),
            ..EventPatch::default()
        };
        promptly("updating the event", e.update_event(&w.admin, event, patch)).await;
        for (j, actor) in w.users.iter().enumerate() {
            let booking = promptly("a booking", e.book(actor, BookingRequest::new(event, 1))).await;
            assert_eq!(booking.status, BookingStatus::Confirmed);
            if j % 6 == 0 {
                let held = promptly("a hold", e.hold(actor, BookingRequest::new(event, 1))).await;
                promptly("a confirmation", e.confirm(actor, held.id)).await;
                promptly("a cancellation", e.cancel(actor, booking.id)).await;
            }
        }
        let key = format!("after-{i}");
        let first = promptly(
            "an idempotent booking",
            e.book(
                &w.users[0],
                BookingRequest::new(event, 2).idempotency_key(&key),
            ),
        )
        .await;
        let again = promptly(
            "its retry",
            e.book(
                &w.users[0],
                BookingRequest::new(event, 2).idempotency_key(&key),
            ),
        )
        .await;
        assert_eq!(first.id, again.id, "a retry with the same key books once");
        promptly("availability", e.availability(event)).await;
    }
    promptly("the hold sweep", e.expire_holds()).await;
    // Jobs claimed by dropped runs come back once their 1 s lease is over.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ran = promptly("a job run", e.run_jobs(200)).await;
        let stats = promptly("the queue's figures", async {
            e.job_queue().stats().await.map_err(Error::from)
        })
        .await;
        // Hold-expiry jobs are due when their holds run out, minutes from now: only what is due
        // must drain, and nothing may stay claimed.
        if ran.claimed == 0 && stats.running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs do not drain after the storm: {stats:?}"
        );
    }
}

/// Connections of the test database that sit inside a transaction, waiting up to 5 s for
/// connections still being handed back to the pool (a dropped future's `ROLLBACK` is sent then).
async fn idle_in_transaction(store: &PostgresStore) -> Vec<(i32, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows: Vec<(i32, String, String)> = sqlx::query_as(
            "SELECT pid, state, coalesce(query, '') FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_all(store.pool())
        .await
        .expect("pg_stat_activity");
        if rows.is_empty() || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn postgres_store() -> (PostgresStore, Arc<TestDatabase>) {
    let db = Arc::new(TestDatabase::create().await.expect("test database"));
    let mut cfg = db.config();
    // The server ends a session idle in a transaction after twice this: far beyond the test, so a
    // stranded transaction stays visible instead of being cleaned up behind the test's back.
    cfg.statement_timeout = Duration::from_secs(120);
    cfg.max_connections = 8;
    let store = PostgresStore::open(cfg).await.expect("store");
    (store, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_futures_strand_nothing_on_postgres() {
    let (store, _db) = postgres_store().await;
    let w = Arc::new(world(Arc::new(store.clone())).await);
    storm(&w).await;
    let stranded = idle_in_transaction(&store).await;
    assert!(
        stranded.is_empty(),
        "connections left inside a transaction: {stranded:?}"
    );
    // Not even the pool's last line of defence had to close one: the store's own code hands every
    // connection back clean, whatever await point its caller went away at.
    assert_eq!(store.connections_discarded(), 0);
    everything_answers(&w).await;
    assert_counters_match_bookings(&store, &w.events).await;
    assert!(idle_in_transaction(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_futures_strand_nothing_on_sqlite() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let w = Arc::new(world(Arc::new(store.clone())).await);
    storm(&w).await;
    // A writer connection stranded inside a transaction would make every later write fail or wait.
    everything_answers(&w).await;
    assert_counters_match_bookings(&store, &w.events).await;
    assert_eq!(store.connections_discarded(), 0);
}

/// The same storm through the Redis read cache in front of PostgreSQL, with readers filling the cache
/// all along and entries that would live an hour: a commit whose caller went away must still
/// invalidate what it changed, so that afterwards the cache shows what the store holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_futures_leave_the_redis_cache_true() {
    let (store, _db) = postgres_store().await;
    let url = std::env::var("EVENTLY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mut redis_config = RedisConfig::new(url.clone());
    redis_config.key_prefix = format!("evently-test:{}:", uuid::Uuid::new_v4().simple());
    let redis = RedisConnection::new(redis_config).expect("Redis configuration");
    redis
        .ping()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} must be up for this test: {e}"));
    let hour = Duration::from_secs(3600);
    let cached = CachedStore::with_config(
        Arc::new(store.clone()),
        redis.clone(),
        CacheConfig {
            event_ttl: hour,
            availability_ttl: hour,
        },
    );
    let w = Arc::new(world(Arc::new(cached.clone())).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cached, events, stop) = (cached.clone(), w.events.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for &id in &events {
                        let _ = cached.availability(id).await;
                        let _ = cached.event(id).await;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    storm(&w).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    for &id in &w.events {
        let truth = promptly("availability", w.engine.availability(id)).await;
        let shown = cached.availability(id).await.expect("cached availability");
        assert_eq!(
            shown.value,
            Some(truth),
            "event {id}: the cache against the store"
        );
        let event = promptly("the event", w.engine.event(id)).await;
        let shown = cached.event(id).await.expect("cached event");
        assert_eq!(
            shown.value,
            Some(event),
            "event {id}: the cache against the store"
        );
    }
    assert_eq!(store.connections_discarded(), 0);
}

/// The pool's last line of defence: a connection handed back inside a transaction (here, one opened
/// by hand through the pool the store exposes) or in an aborted one is closed, not reused.
#[tokio::test]
async fn the_postgres_pool_closes_connections_returned_inside_a_transaction() {
    let (store, _db) = postgres_store().await;
    for (i, statements) in [
        vec!["BEGIN"],
        vec!["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"],
        vec!["BEGIN", "SELECT 1/0"],
    ]
    .into_iter()
    .enumerate()
    {
        let mut conn = store.pool().acquire().await.expect("connection");
        for s in statements {
            let _ = sqlx::raw_sql(s).execute(&mut *conn).await;
        }
        drop(conn);
        let stranded = idle_in_transaction(&store).await;
        assert!(stranded.is_empty(), "case {i}: {stranded:?}");
        // Counted by the task that hands the connection back, which may still be running.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.connections_discarded() < i as u64 + 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.connections_discarded(), i as u64 + 1, "case {i}");
        // Every connection the pool hands out now writes and commits.
        let engine = Evently::builder()
            .store(Arc::new(store.clone()))
            .build()
            .expect("engine");
        for j in 0..10 {
            common::user(&engine, &format!("p{i}-{j}@example.com"), Role::User).await;
        }
    }
}

/// The memory store with requests combined per event (as the SQL stores have them) and a gate that
/// holds the next `begin` until it is opened.
struct GatedStore {
    inner: MemoryStore,
    armed: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl Store for GatedStore {
    async fn begin(&self) -> std::result::Result<Box<dyn Transaction>, StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            let _permit = self.gate.acquire().await;
        }
        self.inner.begin().await
    }

    fn job_queue(&self) -> Arc<dyn JobQueue> {
        self.inner.job_queue()
    }

    fn backend(&self) -> &'static str {
        "gated-memory"
    }

    async fn ping(&self) -> std::result::Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// A request queued behind its event's leader is handed leadership when the leader's transaction
/// ends, and dropped before its task runs again (a server drops a request whose client went away
/// without polling it once more). Leadership must pass on, or the event takes no booking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_dropped_after_leadership_reached_it_passes_it_on() {
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        armed: std::sync::atomic::AtomicBool::new(false),
        entered: tokio::sync::Notify::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let engine = Evently::builder()
        .store(store.clone())
        .build()
        .expect("engine");
    let admin = common::user(&engine, "admin@example.com", Role::Admin).await;
    let (a, b, c) = (
        common::user(&engine, "a@example.com", Role::User).await,
        common::user(&engine, "b@example.com", Role::User).await,
        common::user(&engine, "c@example.com", Role::User).await,
    );
    let event = common::event(&engine, &admin, 10).await.id;

    // The leader: its transaction waits at the gate, with the event's queue taken over.
    store.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let leader = tokio::spawn({
        let engine = engine.clone();
        async move { engine.book(&a, BookingRequest::new(event, 1)).await }
    });
    store.entered.notified().await;
    // A second request queues behind it (one poll), and is never polled again.
    let mut waiter = Box::pin(engine.book(&b, BookingRequest::new(event, 1)));
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    // The leader finishes and hands the queue to the waiter, whose task is not running.
    store.gate.add_permits(1);
    leader
        .await
        .expect("leader task")
        .expect("leader's booking");
    drop(waiter);

    let later = tokio::time::timeout(PROMPT, engine.book(&c, BookingRequest::new(event, 1)))
        .await
        .expect("a later booking for the event waits for a queue nobody leads")
        .expect("a later booking");
    assert_eq!(later.status, BookingStatus::Confirmed);
}
