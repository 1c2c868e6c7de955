//! The worker loop inside a process (spawned next to other work, stopped gracefully) and the
//! `evently-worker` binary against an SQLite database file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evently_core::{Evently, NewUser, Role, Store};
use evently_http::notify::{EmailNotifier, MailTransport};
use evently_http::worker::Worker;
use evently_storage::{SqliteConfig, SqliteStore};

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        name: "Ada".into(),
        password_hash: "unused".into(),
        role: Role::User,
        attributes: BTreeMap::new(),
    }
}

fn eml_count(dir: &Path) -> usize {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_worker_delivers_new_notifications_and_stops_on_request() {
    let out = tempfile::tempdir().expect("temp dir");
    let mail = out.path().join("mail");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"));
    let email = EmailNotifier::new(
        MailTransport::Directory(mail.clone()),
        "Evently <noreply@example.com>".parse().expect("from"),
    );
    let engine = Evently::builder()
        .store(store)
        .notifier(Arc::new(email))
        .build()
        .expect("engine");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = Worker::new(engine.clone())
        .poll_interval(Duration::from_millis(20))
        .spawn(async move {
            let _ = stopped.await;
        });

    // Work that arrives while the worker is already polling.
    for i in 0..3 {
        engine
            .register_user(new_user(&format!("user{i}@example.com")))
            .await
            .expect("register");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while eml_count(&mail) < 3 {
        assert!(
            Instant::now() < deadline,
            "the worker did not deliver the welcomes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send(()).expect("worker still running");
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the worker stops promptly")
        .expect("the worker task did not panic");
    assert_eq!(eml_count(&mail), 3);
    assert_eq!(engine.run_jobs(10).await.expect("jobs").claimed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_due_jobs_once_from_its_environment() {
    let out = tempfile::tempdir().expect("temp dir");
    let db = out.path().join("evently.db");
    let url = format!("sqlite://{}", db.display());
    let mail = out.path().join("mail");

    let store = SqliteStore::open(SqliteConfig::new(url.clone()))
        .await
        .expect("open database");
    let engine = Evently::builder()
        .store(Arc::new(store.clone()))
        .build()
        .expect("engine");
    engine
        .register_user(new_user("ada@example.com"))
        .await
        .expect("register");
    store.close().await;

    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_evently-worker"));
        cmd.args(args)
            .env_remove("EVENTLY_SMTP_URL")
            .env_remove("EVENTLY_MAIL_TRANSPORT")
            .env("EVENTLY_DATABASE_URL", &url)
            .env("EVENTLY_MAIL_DIR", &mail)
            .env("RUST_LOG", "warn");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run evently-worker")
    };

    let first = run(&["once"], &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(eml_count(&mail), 1);
    let message = std::fs::read_dir(&mail)
        .expect("mail dir")
        .find_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "eml").then_some(p)
        })
        .expect("an .eml file");
    let text = std::fs::read_to_string(message).expect("read message");
    assert!(text.contains("Subject: Welcome to Evently"), "{text}");
    assert!(text.contains("To: Ada <ada@example.com>"), "{text}");

    // Nothing is due any more: a second run sends nothing.
    let second = run(&["once"], &[]);
    assert!(second.status.success());
    assert_eq!(eml_count(&mail), 1);

    // Bad configuration is a clear error and a failure exit status.
    let bad = run(&["once"], &[("EVENTLY_MAIL_TRANSPORT", "pigeon")]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("EVENTLY_MAIL_TRANSPORT"), "{stderr}");

    let usage = run(&["bogus"], &[]);
    assert_eq!(usage.status.code(), Some(2));
}

/// A notifier that takes its time, and tells when its first delivery started.
struct Slow {
    started: tokio::sync::Notify,
    calls: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl evently_core::Notifier for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn notify(
        &self,
        _: evently_core::ports::Delivery<'_>,
    ) -> Result<(), evently_core::ports::NotifyError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_pass_finishes_the_batch_in_flight_and_starts_no_other() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"));
    let slow = Arc::new(Slow {
        started: tokio::sync::Notify::new(),
        calls: Default::default(),
    });
    let engine = Evently::builder()
        .store(store.clone())
        .notifier(slow.clone())
        .build()
        .expect("engine");
    for i in 0..40 {
        engine
            .register_user(new_user(&format!("user{i}@example.com")))
            .await
            .expect("register");
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = Worker::new(engine.clone()).batch_size(4).spawn(async move {
        let _ = stopped.await;
    });
    // Ask to stop while the first batch is being delivered (one pass would otherwise run all ten).
    slow.started.notified().await;
    stop.send(()).expect("worker still running");
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the worker stops within a batch's time")
        .expect("the worker task did not panic");

    let stats = store.job_queue().stats().await.expect("stats");
    assert_eq!(stats.running, 0, "no claimed job abandoned: {stats:?}");
    assert_eq!(stats.dead, 0, "{stats:?}");
    let delivered = slow.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        u64::from(delivered),
        stats.done,
        "every claimed job finished: {stats:?}"
    );
    assert!(
        (4..40).contains(&delivered) && stats.queued == u64::from(40 - delivered),
        "the pass stopped after its batch: {delivered} delivered, {stats:?}"
    );
}
