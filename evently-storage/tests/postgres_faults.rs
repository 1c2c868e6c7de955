//! Faults in the middle of a booking load: while two engines (each with its own pool) book, hold and
//! cancel seats of four events, a killer terminates every other backend of the database with
//! `pg_terminate_backend` every few milliseconds. Every request must end in success or a typed error
//! within a bound (no panic, no hang), and afterwards each event's counters must equal its held and
//! confirmed bookings, every confirmed booking must have all its tickets and its confirmation: nothing
//! is half-written.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use evently_core::ports::*;
use evently_core::*;
use evently_storage::PostgresStore;
use evently_storage::postgres::testing::TestDatabase;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const USERS: usize = 300;
const EVENTS: usize = 4;
const CAPACITY: u32 = 120;

#[derive(Debug)]
enum Outcome {
    Booked(Booking),
    Refused(Error),
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::SoldOut { .. } => "sold_out",
        Error::Conflict { .. } => "conflict",
        Error::NotFound { .. } => "not_found",
        Error::Store(StoreError::Transient { .. }) => "transient",
        Error::Store(StoreError::Unavailable { .. }) => "unavailable",
        Error::Store(StoreError::Backend { .. }) => "backend",
        Error::Store(_) => "store_other",
        _ => "other",
    }
}

async fn seed(store: &PostgresStore, engine: &Evently) -> (Vec<Actor>, Vec<EventId>) {
    let mut tx = store.begin().await.unwrap();
    let mut users = Vec::new();
    for i in 0..USERS {
        let u = User {
            id: UserId::new(),
            email: format!("user{i:04}@example.com"),
            name: format!("User {i}"),
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
        .unwrap();
        users.push(Actor::new(u.id, u.role));
    }
    tx.commit().await.unwrap();
    let now = engine.now();
    let mut events = Vec::new();
    for i in 0..EVENTS {
        let e = engine
            .create_event(
                &users[0],
                NewEvent {
                    name: format!("Event {i}"),
                    description: String::new(),
                    venue: "Hall".into(),
                    category: "test".into(),
                    starts_at: now + chrono::Duration::days(3),
                    ends_at: now + chrono::Duration::days(3) + chrono::Duration::hours(2),
                    capacity: CAPACITY,
                    price: Money::new(1000, Currency::new("EUR").unwrap()),
                },
            )
            .await
            .unwrap();
        events.push(e.id);
    }
    (users, events)
}

/// Terminates every other backend of the database every few milliseconds until told to stop.
async fn killer(url: String, stop: Arc<AtomicBool>, kills: Arc<AtomicU64>) {
    let opts = PgConnectOptions::from_str(&url).unwrap();
    let mut conn = PgConnection::connect_with(&opts).await.unwrap();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        kills.fetch_add(
            killed.iter().filter(|k| **k).count() as u64,
            Ordering::Relaxed,
        );
        round += 1;
        tokio::time::sleep(Duration::from_millis(3 + (round * 7) % 12)).await;
    }
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_leave_nothing_half_written() {
    let db = TestDatabase::create().await.unwrap();
    let store = db.open(db.config()).await.unwrap();
    let engine = Evently::builder()
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();
    let (users, events) = seed(&store, &engine).await;
    // Two engines, each with a pool of its own, as two processes would have.
    let engines = [
        engine.clone(),
        Evently::builder()
            .store(Arc::new(db.open(db.config()).await.unwrap()))
            .build()
            .unwrap(),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = tokio::spawn(killer(db.url().to_string(), stop.clone(), kills.clone()));

    // Each user asks for seats of two events: books one, holds the other; every fifth cancels what it
    // got. Demand (2 × 299 requests of 1 to 2 seats) exceeds the 480 seats.
    let mut tasks = Vec::new();
    for (i, actor) in users.iter().enumerate().skip(1) {
        for round in 0..2 {
            let engine = engines[(i + round) % 2].clone();
            let actor = *actor;
            let event = events[(i + round) % EVENTS];
            tasks.push(tokio::spawn(async move {
                let mut req = BookingRequest::new(event, 1 + (i % 2) as u32);
                if i % 2 == 0 {
                    req = req.idempotency_key(format!("req-{i}-{round}"));
                }
                let work = async {
                    let first = if round == 0 {
                        engine.book(&actor, req).await
                    } else {
                        engine.hold(&actor, req).await
                    };
                    let mut outcomes = vec![match first {
                        Ok(b) => Outcome::Booked(b),
                        Err(e) => Outcome::Refused(e),
                    }];
                    if let Some(Outcome::Booked(b)) = outcomes.first()
                        && i % 5 == 0
                    {
                        let id = b.id;
                        outcomes.push(match engine.cancel(&actor, id).await {
                            Ok(b) => Outcome::Booked(b),
                            Err(e) => Outcome::Refused(e),
                        });
                    }
                    outcomes
                };
                tokio::time::timeout(Duration::from_secs(60), work)
                    .await
                    .expect("a request did not end within 60 s")
            }));
        }
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        // A panic inside a request fails here.
        outcomes.extend(t.await.expect("a request panicked"));
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();

    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut succeeded: HashMap<BookingId, Booking> = HashMap::new();
    for o in &outcomes {
        match o {
            Outcome::Booked(b) => {
                *by_kind.entry("ok").or_default() += 1;
                succeeded.insert(b.id, b.clone());
            }
            Outcome::Refused(e) => *by_kind.entry(kind(e)).or_default() += 1,
        }
    }
    eprintln!(
        "kills: {}, outcomes: {by_kind:?}",
        kills.load(Ordering::Relaxed)
    );
    assert!(
        kills.load(Ordering::Relaxed) > 10,
        "the killer hardly killed"
    );
    assert!(
        by_kind.get("ok").copied().unwrap_or(0) > 50,
        "too few requests succeeded"
    );
    for k in by_kind.keys() {
        assert!(
            ["ok", "sold_out", "transient", "unavailable", "conflict"].contains(k),
            "unexpected outcome {k}: {by_kind:?}"
        );
    }

    // Afterwards, with nobody killing: the database is consistent.
    let check = db.open(db.config()).await.unwrap();
    for ev in &events {
        let e = check
            .begin_read()
            .await
            .unwrap()
            .event(*ev, LockMode::None)
            .await
            .unwrap()
            .unwrap();
        let (held, confirmed): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(quantity) FILTER (WHERE status = 'held'), 0)::bigint, \
                    coalesce(sum(quantity) FILTER (WHERE status = 'confirmed'), 0)::bigint \
             FROM bookings WHERE event_id = $1",
        )
        .bind(ev.0)
        .fetch_one(check.pool())
        .await
        .unwrap();
        assert_eq!(
            (i64::from(e.seats_held), i64::from(e.seats_confirmed)),
            (held, confirmed),
            "event {ev}: counters differ from its bookings"
        );
        assert!(e.seats_held + e.seats_confirmed <= e.capacity);
    }
    // Every confirmed booking has all its tickets and its confirmation notification.
    let half_written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings b WHERE b.status = 'confirmed' AND ( \
             (SELECT count(*) FROM tickets t WHERE t.booking_id = b.id) <> b.quantity \
          OR NOT EXISTS (SELECT 1 FROM notifications n WHERE n.user_id = b.user_id \
                         AND n.kind = 'booking_confirmed' AND n.data->>'booking_id' = b.id::text))",
    )
    .fetch_one(check.pool())
    .await
    .unwrap();
    assert_eq!(
        half_written, 0,
        "confirmed bookings without their tickets or confirmation"
    );
    // Every booking reported as made is stored, in the status reported or a later one.
    let mut tx = check.begin_read().await.unwrap();
    for b in succeeded.values() {
        let stored = tx
            .booking(b.id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("booking {} was reported but is not stored", b.id));
        let later = matches!(
            (b.status, stored.status),
            (x, y) if x == y
        ) || matches!(
            (b.status, stored.status),
            (
                BookingStatus::Held | BookingStatus::Confirmed,
                BookingStatus::Cancelled
            )
        );
        assert!(
            later,
            "booking {} reported {:?}, stored {:?}",
            b.id, b.status, stored.status
        );
    }
    drop(tx);
    // No transaction is left open holding a lock (dropped ones are rolled back as their connections
    // go back to the pool).
    let mut open: i64 = -1;
    for _ in 0..50 {
        open = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(check.pool())
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "transactions left open");
}
