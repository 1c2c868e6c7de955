//! The PostgreSQL store itself, against the real server (`EVENTLY_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), each test on a database of its own: schema
//! constraints and their names, error classification (deadlock, statement timeout, terminated
//! backend, exhausted pool), row locks, read snapshots and the job queue across workers.
//! An unreachable server fails these tests; it never skips them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use evently_core::ports::*;
use evently_core::*;
use evently_storage::postgres::testing::{TestDatabase, fresh_store, fresh_store_with};
use evently_storage::{PostgresConfig, PostgresStore};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap()
}

fn user(email: &str) -> User {
    User {
        id: UserId::new(),
        email: email.into(),
        name: "Someone".into(),
        password_hash: "$argon2id$stub".into(),
        role: Role::User,
        attributes: BTreeMap::from([("tier".to_string(), "member".to_string())]),
        created_at: t0(),
    }
}

fn event(capacity: u32) -> Event {
    Event {
        id: EventId::new(),
        name: "Gig".into(),
        description: "Loud".into(),
        venue: "Club".into(),
        category: "music".into(),
        starts_at: t0() + chrono::Duration::days(7),
        ends_at: t0() + chrono::Duration::days(7) + chrono::Duration::hours(3),
        capacity,
        price: Money::new(1500, Currency::new("EUR").unwrap()),
        active: true,
        version: 1,
        seats_held: 0,
        seats_confirmed: 0,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn booking(user: UserId, event: EventId, quantity: u32, key: Option<&str>) -> Booking {
    Booking {
        id: BookingId::new(),
        user_id: user,
        event_id: event,
        quantity,
        total_price: Money::new(1500 * i64::from(quantity), Currency::new("EUR").unwrap()),
        status: BookingStatus::Confirmed,
        held_until: None,
        idempotency_key: key.map(str::to_string),
        source: BookingSource::Direct,
        created_at: t0(),
        updated_at: t0(),
    }
}

async fn seeded(store: &PostgresStore) -> (User, Event) {
    let u = user("alice@example.com");
    let e = event(10);
    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_users: vec![u.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.apply(Changes {
        new_events: vec![e.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (u, e)
}

fn constraint_of(e: &StoreError) -> &str {
    match e {
        StoreError::UniqueViolation { constraint }
        | StoreError::ForeignKeyViolation { constraint }
        | StoreError::CheckViolation { constraint } => constraint,
        _ => "",
    }
}

#[tokio::test]
async fn values_round_trip_through_native_types() {
    let store = fresh_store().await.unwrap();
    assert_eq!(store.backend(), "postgres");
    store.ping().await.unwrap();
    let (u, e) = seeded(&store).await;
    let mut b = booking(u.id, e.id, 2, Some("key-1"));
    b.status = BookingStatus::Held;
    b.held_until = Some(t0() + chrono::Duration::minutes(10));
    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_bookings: vec![b.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.user(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        tx.user_by_email("alice@example.com").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(
        tx.event(e.id, LockMode::None).await.unwrap(),
        Some(e.clone())
    );
    assert_eq!(tx.booking(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(
        tx.booking_by_idempotency_key(u.id, "key-1").await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(tx.users(&[UserId::new(), u.id]).await.unwrap(), vec![u]);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn constraint_violations_carry_the_schema_names() {
    let store = fresh_store().await.unwrap();
    let (u, e) = seeded(&store).await;

    type MakeBooking = Box<dyn Fn() -> Booking + Send + Sync>;
    let cases: Vec<(&str, MakeBooking)> = vec![
        (
            "bookings_user_id_fkey",
            Box::new(move || booking(UserId::new(), e.id, 1, None)),
        ),
        (
            "bookings_event_id_fkey",
            Box::new(move || booking(u.id, EventId::new(), 1, None)),
        ),
        (
            "bookings_quantity_check",
            Box::new(move || booking(u.id, e.id, 0, None)),
        ),
    ];
    for (name, make) in cases {
        let mut tx = store.begin().await.unwrap();
        let err = match tx
            .apply(Changes {
                new_bookings: vec![make()],
                ..Changes::default()
            })
            .await
        {
            Err(err) => err,
            // Writes may be sent with the next statement or at commit.
            Ok(()) => tx.commit().await.unwrap_err(),
        };
        assert_eq!(constraint_of(&err), name, "{err}");
    }

    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_bookings: vec![booking(u.id, e.id, 1, Some("k"))],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let err = match tx
        .apply(Changes {
            new_bookings: vec![booking(u.id, e.id, 1, Some("k"))],
            ..Changes::default()
        })
        .await
    {
        Err(err) => err,
        Ok(()) => tx.commit().await.unwrap_err(),
    };
    assert!(matches!(err, StoreError::UniqueViolation { .. }), "{err}");
    assert_eq!(constraint_of(&err), "bookings_user_idempotency_key");

    let mut tx = store.begin().await.unwrap();
    let err = tx
        .apply(Changes {
            new_users: vec![user("alice@example.com")],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert_eq!(constraint_of(&err), "users_email_key");
    // PostgreSQL aborts the transaction after an error: later statements are refused, commit fails.
    assert!(tx.user(u.id).await.is_err());
    assert!(tx.commit().await.is_err());

    // Seats above capacity: the CHECK refuses it even when written directly.
    let err = sqlx::query("UPDATE events SET seats_confirmed = capacity + 1 WHERE id = $1")
        .bind(e.id.0)
        .execute(store.pool())
        .await
        .unwrap_err();
    let db = err.as_database_error().unwrap();
    assert_eq!(db.constraint(), Some("events_seats_within_capacity"));
    let err = sqlx::query("UPDATE events SET capacity = -1 WHERE id = $1")
        .bind(e.id.0)
        .execute(store.pool())
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("events_capacity_check")
    );

    // The store checks seats against capacity before sending the update.
    let mut over = e.clone();
    over.seats_held = 11;
    let mut tx = store.begin().await.unwrap();
    let err = tx
        .apply(Changes {
            updated_events: vec![over.clone()],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert_eq!(constraint_of(&err), "events_seats_within_capacity");
}

#[tokio::test]
async fn one_live_waitlist_entry_per_user_and_event() {
    let store = fresh_store().await.unwrap();
    let (u, e) = seeded(&store).await;
    let entry = |status| WaitlistEntry {
        id: WaitlistEntryId::new(),
        event_id: e.id,
        user_id: u.id,
        quantity: 1,
        seq: 0,
        position: None,
        status,
        joined_at: t0(),
        notified_at: None,
        offer_expires_at: None,
        offer_booking_id: None,
    };
    let mut tx = store.begin().await.unwrap();
    let (left, waiting) = (entry(WaitlistStatus::Left), entry(WaitlistStatus::Waiting));
    tx.apply(Changes {
        new_waitlist_entries: vec![left.clone(), waiting.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    let s1 = tx.waitlist_entry(left.id).await.unwrap().unwrap().seq;
    let s2 = tx.waitlist_entry(waiting.id).await.unwrap().unwrap().seq;
    assert!(s2 > s1);
    let err = tx
        .apply(Changes {
            new_waitlist_entries: vec![entry(WaitlistStatus::Offered)],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert_eq!(constraint_of(&err), "waitlist_entries_one_live_per_user");
}

#[tokio::test]
async fn for_update_makes_a_second_locker_wait_for_the_first_commit() {
    let store = fresh_store().await.unwrap();
    let (_, e) = seeded(&store).await;
    let mut first = store.begin().await.unwrap();
    let mut ev = first
        .event(e.id, LockMode::ForUpdate)
        .await
        .unwrap()
        .unwrap();

    let (tx_locked, rx_locked) = tokio::sync::oneshot::channel();
    let other = store.clone();
    let waiter = tokio::spawn(async move {
        let mut second = other.begin().await.unwrap();
        let seen = second
            .event(e.id, LockMode::ForUpdate)
            .await
            .unwrap()
            .unwrap();
        let _ = tx_locked.send(());
        second.commit().await.unwrap();
        seen
    });
    // A plain read does not wait.
    let mut reader = store.begin_read().await.unwrap();
    assert_eq!(
        reader
            .event(e.id, LockMode::None)
            .await
            .unwrap()
            .unwrap()
            .seats_held,
        0
    );
    drop(reader);
    let mut rx_locked = rx_locked;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut rx_locked)
            .await
            .is_err(),
        "the second locker got the row while the first held it"
    );
    ev.seats_held = 3;
    first
        .apply(Changes {
            updated_events: vec![ev.clone()],
            ..Changes::default()
        })
        .await
        .unwrap();
    first.commit().await.unwrap();
    let seen = waiter.await.unwrap();
    // Under READ COMMITTED the waiter gets the row the first transaction committed.
    assert_eq!(seen.seats_held, 3);
}

#[tokio::test]
async fn a_read_transaction_sees_one_snapshot() {
    let store = fresh_store().await.unwrap();
    let (u, e) = seeded(&store).await;
    let mut reader = store.begin_read().await.unwrap();
    assert!(reader.bookings_for_event(e.id).await.unwrap().is_empty());
    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_bookings: vec![booking(u.id, e.id, 1, None)],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(reader.bookings_for_event(e.id).await.unwrap().is_empty());
    // And it refuses writes.
    assert!(
        reader
            .apply(Changes {
                new_bookings: vec![booking(u.id, e.id, 1, None)],
                ..Changes::default()
            })
            .await
            .is_err()
            || reader.commit().await.is_err()
    );
}

#[tokio::test]
async fn a_dropped_transaction_rolls_back_and_its_connection_is_reused() {
    let store = fresh_store_with(|c| c.max_connections = 1).await.unwrap();
    let (u, e) = seeded(&store).await;
    for _ in 0..3 {
        let mut tx = store.begin().await.unwrap();
        tx.event(e.id, LockMode::ForUpdate).await.unwrap();
        tx.apply(Changes {
            new_bookings: vec![booking(u.id, e.id, 1, None)],
            ..Changes::default()
        })
        .await
        .unwrap();
        drop(tx);
    }
    let mut tx = store.begin_read().await.unwrap();
    assert!(tx.bookings_for_event(e.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_deadlock_is_transient() {
    let store = fresh_store().await.unwrap();
    let (_, a) = seeded(&store).await;
    let b = event(5);
    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_events: vec![b.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut t1 = store.begin().await.unwrap();
    let mut t2 = store.begin().await.unwrap();
    t1.event(a.id, LockMode::ForUpdate).await.unwrap();
    t2.event(b.id, LockMode::ForUpdate).await.unwrap();
    let h1 = tokio::spawn(async move {
        let r = t1.event(b.id, LockMode::ForUpdate).await;
        (r, t1)
    });
    let h2 = tokio::spawn(async move {
        let r = t2.event(a.id, LockMode::ForUpdate).await;
        (r, t2)
    });
    let (r1, t1) = h1.await.unwrap();
    let (r2, t2) = h2.await.unwrap();
    let errors: Vec<StoreError> = [r1, r2].into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "exactly one side is chosen as the victim");
    assert!(errors[0].is_transient(), "{}", errors[0]);
    drop((t1, t2));
}

#[tokio::test]
async fn a_statement_timeout_is_unavailable_and_bounds_lock_waits() {
    let store = fresh_store_with(|c| c.statement_timeout = Duration::from_millis(200))
        .await
        .unwrap();
    let (_, e) = seeded(&store).await;
    let mut holder = store.begin().await.unwrap();
    holder.event(e.id, LockMode::ForUpdate).await.unwrap();
    let mut waiter = store.begin().await.unwrap();
    let started = std::time::Instant::now();
    let err = waiter.event(e.id, LockMode::ForUpdate).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(waiter);
    holder.commit().await.unwrap();
}

#[tokio::test]
async fn a_terminated_backend_is_transient_and_the_pool_recovers() {
    let store = fresh_store().await.unwrap();
    let (_, e) = seeded(&store).await;
    let mut tx = store.begin().await.unwrap();
    tx.event(e.id, LockMode::ForUpdate).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(killed.iter().any(|k| *k));
    // Wait until the kill landed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = tx.event(e.id, LockMode::ForUpdate).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    drop(tx);
    // The dead connection is not reused.
    for _ in 0..3 {
        let mut tx = store.begin().await.unwrap();
        assert!(tx.event(e.id, LockMode::None).await.unwrap().is_some());
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn an_exhausted_pool_is_unavailable_after_the_acquire_timeout() {
    let store = fresh_store_with(|c| {
        c.max_connections = 1;
        c.acquire_timeout = Duration::from_millis(200);
    })
    .await
    .unwrap();
    let held = store.begin().await.unwrap();
    let err = match store.begin().await {
        Err(e) => e,
        Ok(_) => panic!("a second transaction got the only connection"),
    };
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    drop(held);
    store.begin().await.unwrap().commit().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_bad_config_is_refused() {
    let mut cfg = PostgresConfig::new("postgres://postgres@127.0.0.1:1/none");
    cfg.acquire_timeout = Duration::from_millis(300);
    let err = PostgresStore::open(cfg).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");

    let err = PostgresStore::open(PostgresConfig::new("mysql://nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    let mut cfg = PostgresConfig::new("postgres://h/db");
    cfg.max_connections = 0;
    let err = PostgresStore::open(cfg).await.unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
}

#[tokio::test]
async fn migrations_are_idempotent_and_can_be_deferred() {
    let db = TestDatabase::create().await.unwrap();
    let mut cfg = db.config();
    cfg.run_migrations = false;
    let store = db.open(cfg).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'bookings'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(tables, 0);
    // Two processes starting together apply them once.
    let other = db.open(db.config()).await.unwrap();
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    store.migrate().await.unwrap();
    seeded(&store).await;
}

#[tokio::test]
async fn concurrent_workers_claim_disjoint_jobs() {
    let store = fresh_store().await.unwrap();
    let queue = store.job_queue();
    let mut ids = Vec::new();
    for i in 0..60 {
        let mut job = NewJob::now(
            JobPayload::ExpireHolds {
                event_id: EventId::new(),
            },
            t0(),
        );
        job.priority = (i % 3) as i16;
        ids.push(queue.enqueue(&job).await.unwrap().unwrap());
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let q = store.job_queue();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = q.claim(5, t0(), Duration::from_secs(60)).await.unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    for j in &jobs {
                        assert_eq!(j.status, JobStatus::Running);
                        assert_eq!(j.attempts, 1);
                    }
                    // Highest priority first within a claim.
                    assert!(jobs.windows(2).all(|w| w[0].priority >= w[1].priority));
                    mine.extend(jobs.into_iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(before, claimed.len(), "a job was claimed twice");
    ids.sort();
    assert_eq!(claimed, ids);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.running, 60);

    // A lapsed lease makes a job claimable again; completion and failure are recorded.
    let later = t0() + chrono::Duration::seconds(61);
    let again = queue
        .claim(1, later, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2);
    queue.complete(again[0].id).await.unwrap();
    queue.fail(ids[0], "boom", None).await.unwrap_or(());
    let missing = queue.complete(JobId::new()).await.unwrap_err();
    assert!(matches!(missing, StoreError::Backend { .. }));
}

#[tokio::test]
async fn dedupe_keys_hold_across_enqueue_paths() {
    let store = Arc::new(fresh_store().await.unwrap());
    let queue = store.job_queue();
    let mut job = NewJob::now(
        JobPayload::ExpireHolds {
            event_id: EventId::new(),
        },
        t0(),
    );
    job.dedupe_key = Some("expire:x".into());
    let first = queue.enqueue(&job).await.unwrap();
    assert!(first.is_some());
    assert_eq!(queue.enqueue(&job).await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_jobs: vec![job.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // The change set's job was left out: one job holds the key.
    assert_eq!(queue.stats().await.unwrap().queued, 1);
    let claimed = queue.claim(10, t0(), Duration::from_secs(1)).await.unwrap();
    queue.complete(claimed[0].id).await.unwrap();
    // Once done, the key is free again.
    assert!(queue.enqueue(&job).await.unwrap().is_some());
}

/// Concurrent enqueues share one statement; a job the database refuses (a time before its range)
/// fails alone, not the jobs it was sent with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_does_not_fail_the_enqueues_grouped_with_it() {
    let store = fresh_store().await.expect("store");
    let queue = store.job_queue();
    let job = |run_at: DateTime<Utc>| {
        NewJob::now(
            JobPayload::ExpireHolds {
                event_id: EventId::new(),
            },
            run_at,
        )
    };
    let too_early = Utc.with_ymd_and_hms(-9000, 1, 1, 0, 0, 0).unwrap();
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let (queue, job) = (
                queue.clone(),
                job(if i == 7 { too_early } else { Utc::now() }),
            );
            tokio::spawn(async move { (i, queue.enqueue(&job).await) })
        })
        .collect();
    for call in calls {
        match call.await.expect("task") {
            (7, result) => assert!(
                result.is_err(),
                "a time PostgreSQL cannot store: {result:?}"
            ),
            (i, result) => assert!(
                matches!(result, Ok(Some(_))),
                "enqueue {i}, grouped with the refused one: {result:?}"
            ),
        }
    }
    assert_eq!(queue.stats().await.expect("stats").queued, 15);
}
