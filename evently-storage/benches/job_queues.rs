//! Job-queue throughput of every queue: Redis, PostgreSQL, SQLite (a file) and memory.
//!
//! ```text
//! cargo bench -p evently-storage --bench job_queues --features redis,postgres -- \
//!     [--jobs 50000] [--workers 8] [--batch 100] [--enqueuers 16] [--only redis,postgres,sqlite,memory]
//! ```
//!
//! For each queue, three phases with no-op handlers:
//!
//! 1. **enqueue**: `enqueuers` tasks enqueue `jobs` jobs between them (each awaits its enqueue before
//!    the next);
//! 2. **process**: `workers` tasks each loop `claim(batch)` then complete every claimed job (the
//!    completions of a batch concurrently), until the queue is empty;
//! 3. **end to end**: the enqueuers and the workers run at once on `jobs` fresh jobs, until every one
//!    is done.
//!
//! It prints jobs per second for each phase and checks the queue's counts afterwards (nothing queued
//! or running, every job done). Redis is `EVENTLY_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`),
//! under a fresh key prefix deleted afterwards; PostgreSQL is a fresh database on
//! `EVENTLY_TEST_PG_URL` (dropped afterwards); SQLite a file in a temporary directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use evently_core::{EventId, JobPayload, JobQueue, NewJob};
use evently_storage::postgres::testing::TestDatabase;
use evently_storage::redis::{RedisConfig, RedisConnection, RedisJobQueue};
use evently_storage::{MemoryStore, PostgresStore, SqliteConfig, SqliteStore};

#[derive(Debug, Clone)]
struct Params {
    jobs: u64,
    workers: usize,
    batch: u32,
    enqueuers: usize,
    only: Vec<String>,
}

fn params() -> Params {
    let mut p = Params {
        jobs: 50_000,
        workers: 8,
        batch: 100,
        enqueuers: 16,
        only: ["redis", "postgres", "sqlite", "memory"]
            .map(String::from)
            .to_vec(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let num = |what: &str| -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{what} needs a number, got {value:?}"))
        };
        match args[i].as_str() {
            "--jobs" => p.jobs = num("--jobs"),
            "--workers" => p.workers = num("--workers") as usize,
            "--batch" => p.batch = num("--batch") as u32,
            "--enqueuers" => p.enqueuers = num("--enqueuers") as usize,
            "--only" => p.only = value.split(',').map(String::from).collect(),
            // `cargo bench` passes `--bench`; anything else unknown is ignored as well.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(p.jobs > 0 && p.workers > 0 && p.batch > 0 && p.enqueuers > 0);
    p
}

fn a_job() -> NewJob {
    NewJob::now(
        JobPayload::ExpireHolds {
            event_id: EventId::new(),
        },
        Utc::now(),
    )
}

async fn enqueue_all(q: Arc<dyn JobQueue>, p: &Params) {
    let per = p.jobs / p.enqueuers as u64;
    let extra = p.jobs % p.enqueuers as u64;
    let tasks: Vec<_> = (0..p.enqueuers as u64)
        .map(|i| {
            let q = q.clone();
            let n = per + u64::from(i < extra);
            tokio::spawn(async move {
                for _ in 0..n {
                    q.enqueue(&a_job())
                        .await
                        .expect("enqueue")
                        .expect("no dedupe key");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("enqueuer");
    }
}

/// Workers claim and complete until `target` jobs are done (counted in `done`).
async fn process(q: Arc<dyn JobQueue>, p: &Params, target: u64, done: Arc<AtomicU64>) {
    let tasks: Vec<_> = (0..p.workers)
        .map(|_| {
            let (q, done, batch) = (q.clone(), done.clone(), p.batch);
            tokio::spawn(async move {
                while done.load(Ordering::Relaxed) < target {
                    let jobs = q
                        .claim(batch, Utc::now(), Duration::from_secs(600))
                        .await
                        .expect("claim");
                    if jobs.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    let n = jobs.len() as u64;
                    let completions = jobs.iter().map(|j| q.complete(j.id));
                    for r in futures::future::join_all(completions).await {
                        r.expect("complete");
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
}

async fn bench(name: &str, q: Arc<dyn JobQueue>, p: &Params) {
    let n = p.jobs;
    let t = Instant::now();
    enqueue_all(q.clone(), p).await;
    let enqueue = t.elapsed();

    let t = Instant::now();
    process(q.clone(), p, n, Arc::new(AtomicU64::new(0))).await;
    let processed = t.elapsed();

    let t = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let (q2, p2) = (q.clone(), p.clone());
    let producers = tokio::spawn(async move { enqueue_all(q2, &p2).await });
    process(q.clone(), p, n, done).await;
    producers.await.expect("producers");
    let e2e = t.elapsed();

    let s = q.stats().await.expect("stats");
    assert_eq!((s.queued, s.running, s.dead), (0, 0, 0), "{name}: {s:?}");
    assert!(s.done >= 2 * n, "{name}: {s:?}");
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{name:>9} {:>14.0} {:>14.0} {:>14.0}",
        rate(enqueue),
        rate(processed),
        rate(e2e)
    );
}

fn redis_url() -> String {
    std::env::var("EVENTLY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// Deletes every key under `prefix`.
fn forget_redis(prefix: &str) {
    let mut c = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .expect("Redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut c)
        .expect("keys");
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query(&mut c)
            .expect("unlink");
    }
}

fn main() {
    let p = params();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "Job queues: {} jobs, {} workers claiming batches of {}, {} concurrent enqueuers, \
             no-op handlers, {} CPU cores",
            p.jobs,
            p.workers,
            p.batch,
            p.enqueuers,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:>9} {:>14} {:>14} {:>14}",
            "queue", "enqueue/s", "processed/s", "end-to-end/s"
        );
        for which in p.only.clone() {
            match which.as_str() {
                "redis" => {
                    let mut cfg = RedisConfig::new(redis_url());
                    cfg.key_prefix = format!("evently-bench:{}:", uuid::Uuid::new_v4().simple());
                    cfg.response_timeout = Duration::from_secs(5);
                    let prefix = cfg.key_prefix.clone();
                    let conn = RedisConnection::new(cfg).expect("config");
                    conn.ping().await.expect("Redis must be up");
                    let q = RedisJobQueue::new(conn, "bench").expect("queue");
                    bench("redis", Arc::new(q), &p).await;
                    forget_redis(&prefix);
                }
                "postgres" => {
                    let db = TestDatabase::create().await.expect("test database");
                    let mut cfg = db.config();
                    cfg.max_connections = pg_pool();
                    let store = PostgresStore::open(cfg).await.expect("open");
                    bench("postgres", Arc::new(store.clone()), &p).await;
                    store.close().await;
                    drop(db);
                }
                "sqlite" => {
                    let dir = tempfile::TempDir::new().expect("tempdir");
                    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
                    let store = SqliteStore::open(SqliteConfig::new(url))
                        .await
                        .expect("open");
                    bench("sqlite", Arc::new(store), &p).await;
                }
                "memory" => bench("memory", Arc::new(MemoryStore::new()), &p).await,
                other => panic!("unknown queue {other:?}"),
            }
        }
    });
}

/// The PostgreSQL pool size: `EVENTLY_BENCH_PG_POOL`, default 16.
fn pg_pool() -> u32 {
    std::env::var("EVENTLY_BENCH_PG_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}
