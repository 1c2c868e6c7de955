//! The Redis job queue against the Redis at `EVENTLY_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`): the job-queue conformance cases, then leases, concurrent claimers,
//! delays, priorities, dedupe, dead letters, retention, undecodable jobs and the engine end to end.
//! Each test works under a key prefix of its own and deletes its keys when done. An unreachable Redis
//! fails the tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use evently_core::ports::{Delivery, JobStats, Notifier, NotifyError};
use evently_core::*;
use evently_storage::redis::{RedisConfig, RedisConnection, RedisJobQueue};
use evently_storage::{MemoryStore, SqliteStore};

fn redis_url() -> String {
    std::env::var("EVENTLY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// A queue under a fresh key prefix whose keys are deleted when it is dropped; fails the test when
/// Redis does not answer.
struct TestQueue {
    queue: RedisJobQueue,
    prefix: String,
}

impl TestQueue {
    async fn new() -> Self {
        Self::with(|q| q).await
    }

    async fn with(f: impl FnOnce(RedisJobQueue) -> RedisJobQueue) -> Self {
        let mut cfg = RedisConfig::new(redis_url());
        let prefix = format!("evently-test:{}:", uuid::Uuid::new_v4().simple());
        cfg.key_prefix = prefix.clone();
        let conn = RedisConnection::new(cfg).expect("valid Redis configuration");
        conn.ping()
            .await
            .unwrap_or_else(|e| panic!("Redis at {} must be up for these tests: {e}", redis_url()));
        let queue = f(RedisJobQueue::new(conn, "work").expect("valid queue name"));
        Self { queue, prefix }
    }

    /// A plain connection for looking under the hood.
    fn raw(&self) -> redis::Connection {
        redis::Client::open(redis_url())
            .and_then(|c| c.get_connection())
            .expect("Redis connection")
    }

    fn job_key(&self, id: JobId) -> String {
        format!("{}jobq:{{work}}:job:{id}", self.prefix)
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let mut c = self.raw();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .expect("list keys");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query(&mut c)
                .expect("delete keys");
        }
    }
}

#[async_trait]
impl JobQueue for TestQueue {
    fn queue_name(&self) -> &str {
        self.queue.queue_name()
    }
    async fn enqueue(&self, job: &NewJob) -> Result<Option<JobId>, StoreError> {
        self.queue.enqueue(job).await
    }
    async fn accept(&self, job: &Job) -> Result<bool, StoreError> {
        self.queue.accept(job).await
    }
    async fn claim(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        self.queue.claim(limit, now, lease).await
    }
    async fn complete(&self, id: JobId) -> Result<(), StoreError> {
        self.queue.complete(id).await
    }
    async fn fail(
        &self,
        id: JobId,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.queue.fail(id, error, retry_at).await
    }
    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.queue.job(id).await
    }
    async fn stats(&self) -> Result<JobStats, StoreError> {
        self.queue.stats().await
    }
}

evently_conformance::job_queue_conformance_tests!(mod redis_conformance, async || -> Arc<dyn JobQueue> {
    Arc::new(TestQueue::new().await)
});

const LEASE: Duration = Duration::from_secs(60);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn job(run_at: DateTime<Utc>, priority: i16) -> NewJob {
    NewJob {
        priority,
        ..NewJob::now(
            JobPayload::ExpireHolds {
                event_id: EventId::new(),
            },
            run_at,
        )
    }
}

async fn enqueue(q: &TestQueue, j: &NewJob) -> JobId {
    q.enqueue(j).await.unwrap().expect("not deduplicated")
}

async fn claim_ids(q: &TestQueue, limit: u32, now: DateTime<Utc>) -> Vec<JobId> {
    q.claim(limit, now, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_job_is_delivered_again_after_its_visibility_timeout() {
    let q = TestQueue::new().await;
    let id = enqueue(&q, &job(at(0), 0)).await;
    let lease = Duration::from_secs(30);
    let first = q.claim(10, at(0), lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].locked_until, Some(at(30)));
    assert!(
        q.claim(10, at(29), lease).await.unwrap().is_empty(),
        "leased"
    );
    assert_eq!(q.stats().await.unwrap().running, 1);
    // The worker died: after the lease, another worker gets the job, with the attempt counted.
    let again = q.claim(10, at(30), lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id, again[0].attempts, again[0].locked_until),
        (id, 2, Some(at(60)))
    );
    assert_eq!(again[0].status, JobStatus::Running);
    assert!(q.claim(10, at(59), lease).await.unwrap().is_empty());
    q.complete(id).await.unwrap();
    assert!(q.claim(10, at(10_000), lease).await.unwrap().is_empty());
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running, s.done), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_get_every_job_exactly_once() {
    let q = Arc::new(TestQueue::new().await);
    const N: usize = 2_000;
    let mut ids = Vec::with_capacity(N);
    for chunk in (0..N).collect::<Vec<_>>().chunks(200) {
        let jobs: Vec<NewJob> = chunk
            .iter()
            .map(|i| job(at(-((*i % 50) as i64)), (*i % 3) as i16))
            .collect();
        for r in futures::future::join_all(jobs.iter().map(|j| q.enqueue(j))).await {
            ids.push(r.unwrap().unwrap());
        }
    }
    let workers = (0..8).map(|_| {
        let q = q.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let jobs = q.claim(37, at(0), Duration::from_secs(3600)).await.unwrap();
                if jobs.is_empty() {
                    return got;
                }
                got.extend(jobs.into_iter().map(|j| j.id));
            }
        })
    });
    let mut seen: HashMap<JobId, u32> = HashMap::new();
    for w in futures::future::join_all(workers).await {
        for id in w.unwrap() {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), N, "every job claimed");
    assert!(seen.values().all(|&n| n == 1), "no job claimed twice");
    assert!(ids.iter().all(|id| seen.contains_key(id)));
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running), (0, N as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_is_not_claimable_before_it_is_due() {
    let q = TestQueue::new().await;
    let now_job = enqueue(&q, &job(at(0), 0)).await;
    let later = enqueue(&q, &job(at(10), 0)).await;
    let before = at(10) - chrono::Duration::microseconds(1);
    assert_eq!(claim_ids(&q, 10, at(-1)).await, vec![]);
    assert_eq!(claim_ids(&q, 1, at(10)).await, vec![now_job]);
    // A worker whose clock is behind does not take the job the last claim saw due.
    assert_eq!(claim_ids(&q, 10, before).await, vec![]);
    assert_eq!(q.stats().await.unwrap().queued, 1);
    assert_eq!(claim_ids(&q, 10, at(10)).await, vec![later]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_by_priority_then_oldest_including_lapsed_leases() {
    let q = TestQueue::new().await;
    let mut by_name = BTreeMap::new();
    for (name, run_at, priority) in [
        ("low-old", -50, -1),
        ("mid-new", -10, 0),
        ("mid-old", -20, 0),
        ("high-new", -1, 7),
        ("high-old", -2, 7),
        ("top", 0, 100),
    ] {
        by_name.insert(enqueue(&q, &job(at(run_at), priority)).await, name);
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        for id in claim_ids(&q, 2, at(0)).await {
            order.push(by_name[&id]);
        }
    }
    assert_eq!(
        order,
        [
            "top", "high-old", "high-new", "mid-old", "mid-new", "low-old"
        ]
    );
    // "top" lapsed (claimed first, same lease): it comes back first among newly queued work.
    let fresh = enqueue(&q, &job(at(0), 50)).await;
    let ids = claim_ids(&q, 2, at(61)).await;
    assert_eq!(ids.len(), 2);
    assert_eq!(by_name.get(&ids[0]), Some(&"top"));
    assert_eq!(ids[1], fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_key_holds_through_retries_and_frees_on_dead() {
    let q = TestQueue::new().await;
    let keyed = NewJob {
        dedupe_key: Some("expire:event-1".into()),
        ..job(at(0), 0)
    };
    let id = enqueue(&q, &keyed).await;
    assert_eq!(q.enqueue(&keyed).await.unwrap(), None);
    assert_eq!(claim_ids(&q, 10, at(0)).await, vec![id]);
    q.fail(id, "flaky", Some(at(5))).await.unwrap();
    assert_eq!(
        q.enqueue(&keyed).await.unwrap(),
        None,
        "still live while retrying"
    );
    assert_eq!(q.stats().await.unwrap().retrying, 1);
    assert_eq!(claim_ids(&q, 10, at(5)).await, vec![id]);
    q.fail(id, "broken", None).await.unwrap();
    let next = enqueue(&q, &keyed).await;
    assert_ne!(next, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_keeps_its_error_and_is_never_claimed() {
    let q = TestQueue::new().await;
    let id = enqueue(&q, &job(at(0), 0)).await;
    assert_eq!(claim_ids(&q, 10, at(0)).await, vec![id]);
    q.fail(id, "mailbox does not exist", None).await.unwrap();
    let j = q.job(id).await.unwrap().unwrap();
    assert_eq!(
        (
            j.status,
            j.last_error.as_deref(),
            j.locked_until,
            j.attempts
        ),
        (JobStatus::Dead, Some("mailbox does not exist"), None, 1)
    );
    assert!(claim_ids(&q, 10, at(1_000_000)).await.is_empty());
    assert_eq!(
        q.stats().await.unwrap(),
        JobStats {
            dead: 1,
            ..Default::default()
        }
    );
    // Dead letters do not expire.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(q.job_key(id))
        .query(&mut q.raw())
        .unwrap();
    assert_eq!(ttl, -1);
    // Unknown ids are an error, not a silent no-op.
    let unknown = JobId::new();
    assert!(q.complete(unknown).await.is_err());
    assert!(q.fail(unknown, "x", None).await.is_err());
    assert_eq!(q.job(unknown).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_is_idempotent_within_the_retention_of_finished_jobs() {
    let q = TestQueue::with(|q| q.with_retention(Duration::from_millis(300)).unwrap()).await;
    let id = enqueue(&q, &job(at(0), 0)).await;
    let claimed = q.claim(1, at(0), LEASE).await.unwrap().remove(0);
    q.complete(id).await.unwrap();
    assert!(!q.accept(&claimed).await.unwrap(), "done, within retention");
    assert_eq!(q.stats().await.unwrap().done, 1);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(q.job_key(id))
        .query(&mut q.raw())
        .unwrap();
    assert!(ttl > 0 && ttl <= 300, "finished jobs expire: {ttl}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(q.job(id).await.unwrap(), None, "expired");
    assert_eq!(q.stats().await.unwrap().done, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_job_is_buried_with_the_reason_and_does_not_jam_the_queue() {
    let q = TestQueue::new().await;
    let bad = enqueue(&q, &job(at(0), 9)).await;
    let good = enqueue(&q, &job(at(0), 0)).await;
    let _: () = redis::cmd("HSET")
        .arg(q.job_key(bad))
        .arg("payload")
        .arg("{\"type\":\"no_such_job\"}")
        .query(&mut q.raw())
        .unwrap();
    assert_eq!(claim_ids(&q, 10, at(0)).await, vec![good]);
    let (status, error): (String, String) = redis::cmd("HMGET")
        .arg(q.job_key(bad))
        .arg("status")
        .arg("last_error")
        .query(&mut q.raw())
        .unwrap();
    assert_eq!(status, "dead");
    assert!(error.contains("payload"), "{error}");
    assert!(matches!(q.job(bad).await, Err(StoreError::Corrupt { .. })));
    let s = q.stats().await.unwrap();
    assert_eq!((s.running, s.dead, s.queued), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_a_typed_unavailable_error() {
    let mut cfg = RedisConfig::new("redis://127.0.0.1:1");
    cfg.connect_timeout = Duration::from_millis(100);
    cfg.response_timeout = Duration::from_millis(100);
    let q = RedisJobQueue::new(RedisConnection::new(cfg).unwrap(), "work").unwrap();
    assert!(matches!(
        q.enqueue(&job(at(0), 0)).await,
        Err(StoreError::Unavailable { .. })
    ));
    assert!(RedisJobQueue::new(q_conn(), "bad{name}").is_err());
    assert!(
        RedisJobQueue::new(q_conn(), "ok")
            .unwrap()
            .with_retention(Duration::ZERO)
            .is_err()
    );
}

fn q_conn() -> RedisConnection {
    RedisConnection::new(RedisConfig::new(redis_url())).unwrap()
}

/// Counts deliveries per notification.
#[derive(Default)]
struct Counting {
    delivered: Mutex<HashMap<NotificationId, u32>>,
    calls: AtomicU32,
}

#[async_trait]
impl Notifier for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn notify(&self, d: Delivery<'_>) -> Result<(), NotifyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self
            .delivered
            .lock()
            .unwrap()
            .entry(d.notification.id)
            .or_default() += 1;
        Ok(())
    }
}

async fn relay_and_run_exactly_once(store: Arc<dyn Store>) {
    let q = Arc::new(TestQueue::new().await);
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap(),
    ));
    let notifier = Arc::new(Counting::default());
    let engine = Evently::builder()
        .store(store.clone())
        .queue(q.clone())
        .clock(clock.clone())
        .notifier(notifier.clone())
        .build()
        .unwrap();
    assert_eq!(engine.job_queue().queue_name(), "redis");
    let mut users = Vec::new();
    for (email, role) in [
        ("admin@example.com", Role::Admin),
        ("a@example.com", Role::User),
    ] {
        let u = engine
            .register_user(NewUser {
                email: email.into(),
                name: "Someone".into(),
                password_hash: "$argon2id$stub".into(),
                role,
                attributes: BTreeMap::new(),
            })
            .await
            .unwrap();
        users.push(Actor::new(u.id, u.role));
    }
    let now = engine.now();
    let ev = engine
        .create_event(
            &users[0],
            NewEvent {
                name: "Gig".into(),
                description: String::new(),
                venue: "Club".into(),
                category: "music".into(),
                starts_at: now + chrono::Duration::days(7),
                ends_at: now + chrono::Duration::days(7) + chrono::Duration::hours(3),
                capacity: 5,
                price: Money::new(1500, Currency::new("EUR").unwrap()),
            },
        )
        .await
        .unwrap();
    engine
        .book(&users[1], BookingRequest::new(ev.id, 2))
        .await
        .unwrap();

    let outbox = store.job_queue().stats().await.unwrap();
    assert!(outbox.queued >= 2, "{outbox:?}");
    assert_eq!(
        engine.run_jobs(100).await.unwrap().claimed,
        0,
        "nothing relayed yet"
    );
    let moved = engine.relay_jobs(100).await.unwrap();
    assert_eq!(u64::from(moved), outbox.queued);
    assert_eq!(
        engine.relay_jobs(100).await.unwrap(),
        0,
        "the outbox is empty"
    );
    let outbox = store.job_queue().stats().await.unwrap();
    assert_eq!((outbox.queued, outbox.running), (0, 0));
    assert_eq!(q.stats().await.unwrap().queued, u64::from(moved));

    let summary = engine.run_jobs(100).await.unwrap();
    assert_eq!(summary.claimed, moved);
    assert_eq!(summary.succeeded, moved);
    // Later passes, even past every lease, run nothing again.
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(engine.relay_jobs(100).await.unwrap(), 0);
    assert_eq!(engine.run_jobs(100).await.unwrap().claimed, 0);

    let notes = engine
        .notifications(&users[1], evently_core::NotificationQuery::newest(10))
        .await
        .unwrap();
    let kinds: Vec<_> = notes.iter().map(|n| n.kind).collect();
    assert!(
        kinds.contains(&NotificationKind::BookingConfirmed),
        "{kinds:?}"
    );
    assert!(notes.iter().all(|n| n.sent_at.is_some()));
    let delivered = notifier.delivered.lock().unwrap().clone();
    for n in &notes {
        assert_eq!(
            delivered.get(&n.id),
            Some(&1),
            "{:?} delivered once",
            n.kind
        );
    }
    assert!(delivered.values().all(|&c| c == 1), "{delivered:?}");
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running, s.done), (0, 0, u64::from(moved)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_relays_a_booking_notification_to_redis_and_runs_it_once_memory() {
    relay_and_run_exactly_once(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_relays_a_booking_notification_to_redis_and_runs_it_once_sqlite() {
    relay_and_run_exactly_once(Arc::new(SqliteStore::open_in_memory().await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_hands_a_job_over_twice_runs_it_once() {
    let q = TestQueue::new().await;
    let outbox = MemoryStore::new();
    let id = outbox.enqueue(&job(at(0), 0)).await.unwrap().unwrap();
    let mut claimed = outbox.claim(10, at(0), LEASE).await.unwrap().remove(0);
    claimed.attempts -= 1;
    assert!(q.accept(&claimed).await.unwrap());
    // The relay died before completing the outbox job; the next relay hands it over again.
    let mut again = outbox.claim(10, at(61), LEASE).await.unwrap().remove(0);
    again.attempts -= 1;
    assert!(!q.accept(&again).await.unwrap());
    assert_eq!(claim_ids(&q, 10, at(0)).await, vec![id]);
    assert!(claim_ids(&q, 10, at(1)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_each_get_their_own_answer_even_after_a_cancelled_one() {
    let q = Arc::new(TestQueue::new().await);
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(enqueue(&q, &job(at(0), 0)).await);
    }
    assert_eq!(claim_ids(&q, 300, at(0)).await.len(), 300);
    // A completion dropped before it ran (its caller timed out) does not stall the ones after it.
    let _ = tokio::time::timeout(Duration::ZERO, q.complete(ids[0])).await;
    let unknown = JobId::new();
    let mut all = ids.clone();
    all.push(unknown);
    let results = futures::future::join_all(all.iter().map(|id| q.complete(*id))).await;
    assert!(results[..300].iter().all(|r| r.is_ok()), "{results:?}");
    assert!(
        results[300].is_err(),
        "an unknown id is an error for its caller only"
    );
    let s = q.stats().await.unwrap();
    assert_eq!((s.running, s.done), (0, 300));
    for id in &ids {
        assert_eq!(q.job(*id).await.unwrap().unwrap().status, JobStatus::Done);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_of_one_dedupe_key_queue_exactly_one_job() {
    let q = TestQueue::new().await;
    let keyed = NewJob {
        dedupe_key: Some("one".into()),
        ..job(at(0), 0)
    };
    let results = futures::future::join_all((0..50).map(|_| q.enqueue(&keyed))).await;
    let queued: Vec<JobId> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(queued.len(), 1, "{queued:?}");
    // A cancelled enqueue leaves nothing half-written behind and does not stall the next.
    let _ = tokio::time::timeout(Duration::ZERO, q.enqueue(&job(at(0), 0))).await;
    let other = enqueue(&q, &job(at(0), 0)).await;
    let claimed = claim_ids(&q, 10, at(0)).await;
    assert!(
        claimed.contains(&queued[0]) && claimed.contains(&other),
        "{claimed:?}"
    );
    let s = q.stats().await.unwrap();
    assert_eq!((s.queued, s.running), (0, claimed.len() as u64));
}
