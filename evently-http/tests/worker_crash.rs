//! Crash tests: an `evently-worker` process is killed with SIGKILL while it has jobs in flight, a new
//! one starts, and in the end every notification has taken effect exactly once from the user's view:
//! one e-mail per notification (one `.eml` file named by the notification id, with its Message-ID,
//! and none written again after the crash but the one in flight),
//! `sent_at` set, one recorded delivery, one notification of each kind per user, every job done and
//! none dead. Once with the PostgreSQL job queue, once with the Redis queue fed from the PostgreSQL
//! outbox. Both need the real servers (127.0.0.1:5432 and 127.0.0.1:6379); a missing one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use evently_core::{
    Actor, BookingRequest, Currency, Evently, JobQueue, Money, NewEvent, NewUser, NotificationKind,
    Role, Store, UserId,
};
use evently_storage::RedisJobQueue;
use evently_storage::postgres::testing::TestDatabase;
use evently_storage::redis::{RedisConfig, RedisConnection};

/// Users who each book one seat: a welcome and a booking confirmation (with a PDF ticket) each.
const USERS: usize = 300;
/// The first worker is killed once at least this many e-mails went out (and some jobs are running).
const KILL_AFTER: usize = 40;
const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn new_user(i: usize, role: Role) -> NewUser {
    NewUser {
        email: format!("user{i}@example.com"),
        name: format!("User {i}"),
        password_hash: "unused".into(),
        role,
        attributes: BTreeMap::new(),
    }
}

/// Users, an event and one confirmed booking per user, written through the engine (so every
/// notification and its delivery job are committed together). Returns the users' ids.
async fn seed(engine: &Evently) -> Vec<UserId> {
    let admin = engine
        .register_user(new_user(USERS, Role::Admin))
        .await
        .expect("admin");
    let admin = Actor::new(admin.id, admin.role);
    let now = Utc::now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Crash Course".into(),
                description: String::new(),
                venue: "Hall".into(),
                category: "talk".into(),
                starts_at: now + chrono::Duration::days(3),
                ends_at: now + chrono::Duration::days(3) + chrono::Duration::hours(2),
                capacity: u32::try_from(USERS).expect("capacity"),
                price: Money::new(900, Currency::new("EUR").expect("currency")),
            },
        )
        .await
        .expect("event");
    let mut ids = vec![admin.user_id];
    for i in 0..USERS {
        let u = engine
            .register_user(new_user(i, Role::User))
            .await
            .expect("user");
        engine
            .book(&Actor::new(u.id, u.role), BookingRequest::new(event.id, 1))
            .await
            .expect("booking");
        ids.push(u.id);
    }
    ids
}

fn eml_files(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".eml").map(str::to_owned)
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The `.eml` files in `dir`, by notification id, with their inode numbers.
fn inodes(dir: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    eml_files(dir)
        .into_iter()
        .filter_map(|id| {
            let ino = std::fs::metadata(dir.join(format!("{id}.eml"))).ok()?.ino();
            Some((id, ino))
        })
        .collect()
}

/// Starts `evently-worker run` with short polls, small batches and a 2 s lease.
fn start_worker(db_url: &str, mail: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evently-worker"));
    cmd.arg("run")
        .env_remove("EVENTLY_SMTP_URL")
        .env_remove("EVENTLY_VAPID_PRIVATE_KEY")
        .env("EVENTLY_MAIL_TRANSPORT", "file")
        .env("EVENTLY_DATABASE_URL", db_url)
        .env("EVENTLY_DATABASE_MAX_CONNECTIONS", "4")
        .env("EVENTLY_MAIL_DIR", mail)
        .env("EVENTLY_WORKER_POLL_MS", "20")
        .env("EVENTLY_WORKER_BATCH", "5")
        .env("EVENTLY_WORKER_LEASE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start evently-worker")
}

/// Polls `check` every 50 ms until it is true, failing after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to the worker.
fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -{signal}: {e}"));
    assert!(sent.success(), "could not send SIG{signal} to the worker");
}

fn stop_gracefully(mut child: Child) {
    signal(&child, "TERM");
    let status = child.wait().expect("wait for the worker");
    assert!(
        status.success(),
        "the worker exited with {status} after SIGTERM"
    );
}

/// The whole scenario on a fresh PostgreSQL database; `queue` is the work queue the workers use
/// (`None`: the database's own), `extra` the environment that selects it.
async fn crash_and_recover(
    db: &TestDatabase,
    queue: Option<Arc<dyn JobQueue>>,
    extra: &[(&str, String)],
) {
    let store = db.open(db.config()).await.expect("open the test database");
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let engine = Evently::builder()
        .store(shared.clone())
        .build()
        .expect("engine");
    let users = seed(&engine).await;
    let expected = 2 * USERS + 1;
    let work_queue: Arc<dyn JobQueue> = queue.unwrap_or_else(|| shared.job_queue());
    let outbox = shared.job_queue();

    let out = tempfile::tempdir().expect("temp dir");
    let mail: PathBuf = out.path().join("mail");

    // The first worker: killed with SIGKILL once it has sent some mail and holds claimed jobs.
    let mut first = start_worker(db.url(), &mail, extra);
    let running = || async { work_queue.stats().await.map(|s| s.running).unwrap_or(0) };
    loop {
        wait_until(
            "the first worker to be mid-way with jobs in flight",
            Duration::from_secs(120),
            || async { eml_files(&mail).len() >= KILL_AFTER && running().await > 0 },
        )
        .await;
        // Stopped, the worker cannot finish its jobs between this look and the kill (it did once,
        // between the look above and an unannounced kill). No job in flight: let it go on, look again.
        signal(&first, "STOP");
        if running().await > 0 {
            break;
        }
        signal(&first, "CONT");
    }
    first.kill().expect("SIGKILL the first worker");
    let status = first.wait().expect("reap the first worker");
    assert!(!status.success(), "the first worker was killed: {status}");
    let written_before = inodes(&mail);
    let sent_before = written_before.len();
    let at_kill: evently_core::ports::JobStats = work_queue.stats().await.expect("stats");
    assert!(
        sent_before < expected,
        "the first worker finished everything ({sent_before} mails) before the kill; raise USERS"
    );
    assert!(
        at_kill.running > 0,
        "no job was in flight at the kill: {at_kill:?}"
    );

    // A new worker takes over: the killed one's claims lapse after the 2 s lease.
    let second = start_worker(db.url(), &mail, extra);
    wait_until(
        "every notification to be sent",
        Duration::from_secs(180),
        || async {
            let mut tx = shared.begin_read().await.expect("read");
            let mut unsent = 0;
            for u in &users {
                let ns = tx
                    .notifications_for_user(*u, &evently_core::NotificationQuery::newest(10))
                    .await
                    .expect("notifications");
                unsent += ns.iter().filter(|n| n.sent_at.is_none()).count();
            }
            unsent == 0
        },
    )
    .await;
    stop_gracefully(second);

    // From each user's view: one welcome, one confirmation; each sent, delivered by e-mail once, and
    // exactly one e-mail file, carrying the notification's Message-ID.
    let files = eml_files(&mail);
    // The directory transport writes a message through a new file and a rename, so a message sent
    // again shows as a new inode. Jobs run one after another, so only the one in flight at the kill
    // may have been written and not yet recorded as delivered: every other e-mail went out once.
    let after = inodes(&mail);
    let rewritten: Vec<&String> = written_before
        .iter()
        .filter(|(name, ino)| after.get(*name) != Some(*ino))
        .map(|(name, _)| name)
        .collect();
    assert!(
        rewritten.len() <= 1,
        "e-mails sent again after the crash: {rewritten:?}"
    );
    let mut tx = shared.begin_read().await.expect("read");
    let mut ids = BTreeSet::new();
    for (i, u) in users.iter().enumerate() {
        let ns = tx
            .notifications_for_user(*u, &evently_core::NotificationQuery::newest(10))
            .await
            .expect("notifications");
        let kinds: Vec<NotificationKind> = ns.iter().map(|n| n.kind).collect();
        let want = if i == 0 {
            vec![NotificationKind::Welcome]
        } else {
            vec![
                NotificationKind::BookingConfirmed,
                NotificationKind::Welcome,
            ]
        };
        let mut sorted = kinds.clone();
        sorted.sort_by_key(|k| k.as_str());
        assert_eq!(sorted, want, "user {u}: {kinds:?}");
        for n in ns {
            assert!(n.sent_at.is_some(), "notification {} unsent", n.id);
            assert_eq!(
                tx.notification_deliveries(n.id).await.expect("deliveries"),
                vec!["email".to_owned()],
                "notification {}",
                n.id
            );
            let text = std::fs::read_to_string(mail.join(format!("{}.eml", n.id)))
                .unwrap_or_else(|e| panic!("no e-mail for notification {}: {e}", n.id));
            assert!(
                text.contains(&format!("Message-ID: <notification-{}@", n.id)),
                "notification {}: wrong Message-ID",
                n.id
            );
            ids.insert(n.id.to_string());
        }
    }
    drop(tx);
    assert_eq!(ids.len(), expected);
    assert_eq!(
        files, ids,
        "exactly one e-mail per notification, none for anything else"
    );

    let stats = work_queue.stats().await.expect("stats");
    assert_eq!(
        (stats.queued, stats.running, stats.dead),
        (0, 0, 0),
        "work queue: {stats:?}"
    );
    assert!(
        stats.done >= u64::try_from(expected).expect("count"),
        "work queue: {stats:?}"
    );
    let outbox_stats = outbox.stats().await.expect("outbox stats");
    assert_eq!(
        (outbox_stats.queued, outbox_stats.running, outbox_stats.dead),
        (0, 0, 0),
        "outbox: {outbox_stats:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_the_postgres_queue_loses_nothing_and_repeats_nothing() {
    let db = TestDatabase::create()
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (needed by this test)");
    crash_and_recover(&db, None, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_the_redis_queue_loses_nothing_and_repeats_nothing() {
    let db = TestDatabase::create()
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (needed by this test)");
    let prefix = format!("evently-test:crash:{}:", uuid::Uuid::new_v4().simple());
    let mut config = RedisConfig::new(REDIS_URL);
    config.key_prefix = prefix.clone();
    let redis = RedisConnection::new(config).expect("redis config");
    redis
        .ping()
        .await
        .expect("Redis at 127.0.0.1:6379 (needed by this test)");
    let queue = RedisJobQueue::new(redis, evently_http::backend::REDIS_QUEUE_NAME).expect("queue");
    let extra = [
        ("EVENTLY_QUEUE", "redis".to_owned()),
        ("EVENTLY_REDIS_URL", REDIS_URL.to_owned()),
        ("EVENTLY_REDIS_KEY_PREFIX", prefix.clone()),
    ];
    crash_and_recover(&db, Some(Arc::new(queue)), &extra).await;
    delete_keys(&prefix);
}

/// Removes the test's keys from the shared Redis.
fn delete_keys(prefix: &str) {
    let keys = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern"])
        .arg(format!("{prefix}*"))
        .output()
        .expect("redis-cli --scan");
    let keys = String::from_utf8_lossy(&keys.stdout);
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let _ = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "DEL", key])
            .output();
    }
}
