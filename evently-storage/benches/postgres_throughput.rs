//! Confirmed bookings per second on ONE hot event against the local PostgreSQL, with 8, 32 and 128
//! concurrent clients, and their p50 / p99 latency.
//!
//! ```text
//! cargo bench -p evently-storage --bench postgres_throughput --features postgres
//! ```
//!
//! Each client books one seat at a time in a loop for `EVENTLY_BENCH_SECONDS` (default 5) seconds. Every
//! run is repeated with the engine's per-event batching on (the default `max_batch`, 64) and off
//! (`max_batch = 1`: one transaction, one lock and one commit per booking). Afterwards the run checks the
//! event's counter against the stored bookings, and a short sold-out round (128 clients racing for
//! 1,000 seats) checks that exactly the capacity is sold. The server is `EVENTLY_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each run uses a database of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use evently_core::ports::*;
use evently_core::*;
use evently_storage::PostgresStore;
use evently_storage::postgres::testing::TestDatabase;

const LEVELS: [usize; 3] = [8, 32, 128];

struct Run {
    clients: usize,
    max_batch: u32,
    confirmed: u64,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn admin_and_users(store: &PostgresStore, n: usize) -> (Actor, Vec<Actor>) {
    let mut tx = store.begin().await.expect("begin");
    let mut actors = Vec::new();
    for i in 0..=n {
        let u = User {
            id: UserId::new(),
            email: format!("bench{i:04}.{}@example.com", uuid::Uuid::new_v4().simple()),
            name: format!("Bench {i}"),
            password_hash: "$argon2id$stub".into(),
            role: if i == 0 { Role::Admin } else { Role::User },
            attributes: BTreeMap::new(),
            created_at: Utc::now(),
        };
        tx.apply(Changes {
            new_users: vec![u.clone()],
            ..Changes::default()
        })
        .await
        .expect("insert user");
        actors.push(Actor::new(u.id, u.role));
    }
    tx.commit().await.expect("commit");
    let admin = actors.remove(0);
    (admin, actors)
}

async fn hot_event(engine: &Evently, admin: &Actor, capacity: u32) -> Event {
    let now = engine.now();
    engine
        .create_event(
            admin,
            NewEvent {
                name: "Hot event".into(),
                description: String::new(),
                venue: "Stadium".into(),
                category: "bench".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(30) + chrono::Duration::hours(3),
                capacity,
                price: Money::new(4200, Currency::new("EUR").expect("currency")),
            },
        )
        .await
        .expect("create event")
}

fn engine_on(store: &PostgresStore, max_batch: u32) -> Evently {
    Evently::builder()
        .store(Arc::new(store.clone()))
        .config(EngineConfig {
            max_batch,
            ..EngineConfig::default()
        })
        .build()
        .expect("engine")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(store: &PostgresStore, clients: usize, max_batch: u32, seconds: u64) -> Run {
    let engine = engine_on(store, max_batch);
    let (admin, users) = admin_and_users(store, clients).await;
    let ev = hot_event(&engine, &admin, 10_000_000).await;
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = users
        .into_iter()
        .map(|actor| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    match engine.book(&actor, BookingRequest::new(ev.id, 1)).await {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(e) => {
                            let k = format!("{e:?}");
                            let k = k.split([' ', '(', '{']).next().unwrap_or("?").to_string();
                            *errors.entry(k).or_default() += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        lat.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed();
    lat.sort();
    let confirmed = lat.len() as u64;
    // Zero oversell, zero lost updates: the counter equals the stored bookings equals the successes.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings WHERE event_id = $1 AND status = 'confirmed'",
    )
    .bind(ev.id.0)
    .fetch_one(store.pool())
    .await
    .expect("count");
    let counter = engine.event(ev.id).await.expect("event").seats_confirmed;
    assert_eq!(
        stored as u64, confirmed,
        "stored bookings differ from successes"
    );
    assert_eq!(
        u64::from(counter),
        confirmed,
        "the seat counter differs from successes"
    );
    Run {
        clients,
        max_batch,
        confirmed,
        errors,
        elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}

/// 128 clients race for 1,000 seats: exactly 1,000 are sold, everyone else hears `SoldOut`.
async fn sold_out_round(store: &PostgresStore, max_batch: u32) {
    let engine = engine_on(store, max_batch);
    let (admin, users) = admin_and_users(store, 128).await;
    let ev = hot_event(&engine, &admin, 1_000).await;
    let tasks: Vec<_> = users
        .into_iter()
        .map(|actor| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let (mut ok, mut sold_out) = (0u32, 0u32);
                for _ in 0..10 {
                    match engine.book(&actor, BookingRequest::new(ev.id, 1)).await {
                        Ok(_) => ok += 1,
                        Err(Error::SoldOut { .. }) => sold_out += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                (ok, sold_out)
            })
        })
        .collect();
    let (mut ok, mut sold_out) = (0, 0);
    for t in tasks {
        let (o, s) = t.await.expect("client task");
        ok += o;
        sold_out += s;
    }
    let e = engine.event(ev.id).await.expect("event");
    assert_eq!((ok, sold_out), (1_000, 280), "oversold or undersold");
    assert_eq!(e.seats_confirmed, 1_000);
    println!(
        "sold-out round (max_batch {max_batch}): 1280 requests, 1000 confirmed, 280 SoldOut, counter 1000: no oversell"
    );
}

fn main() {
    let seconds: u64 = std::env::var("EVENTLY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = TestDatabase::create().await.expect("test database");
        let mut cfg = db.config();
        cfg.max_connections = 32;
        let store = PostgresStore::open(cfg).await.expect("open");
        println!(
            "PostgreSQL hot-event booking throughput ({seconds} s per run, pool of 32, one event)"
        );
        println!(
            "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10}  errors",
            "clients", "max_batch", "bookings/s", "p50 ms", "p99 ms", "confirmed"
        );
        for max_batch in [EngineConfig::default().max_batch, 1] {
            for clients in LEVELS {
                let r = run(&store, clients, max_batch, seconds).await;
                println!(
                    "{:>8} {:>10} {:>12.0} {:>10.2} {:>10.2} {:>10}  {:?}",
                    r.clients,
                    r.max_batch,
                    r.confirmed as f64 / r.elapsed.as_secs_f64(),
                    r.p50.as_secs_f64() * 1e3,
                    r.p99.as_secs_f64() * 1e3,
                    r.confirmed,
                    r.errors
                );
            }
        }
        for max_batch in [EngineConfig::default().max_batch, 1] {
            sold_out_round(&store, max_batch).await;
        }
        store.close().await;
    });
}
