//! Seat accounting across processes: three engine processes, each with its own connection pool on the
//! same PostgreSQL database, race 1,500 bookings (500 each, all at once) for an event of 500 seats.
//! Exactly 500 are confirmed and the other 1,000 are `SoldOut`, in each of five rounds.
//!
//! The three processes are this test binary started again (`current_exe`) with
//! `EVENTLY_XPROC_CHILD` set: the same test function then plays one engine process, books its share
//! and prints its tally on one line, which the parent reads back. The parent owns the database.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use evently_core::ports::*;
use evently_core::*;
use evently_storage::postgres::testing::TestDatabase;
use evently_storage::{PostgresConfig, PostgresStore};
use uuid::Uuid;

const PROCESSES: usize = 3;
const PER_PROCESS: usize = 500;
const CAPACITY: u32 = 500;
const ROUNDS: usize = 5;

const CHILD: &str = "EVENTLY_XPROC_CHILD";
const URL: &str = "EVENTLY_XPROC_URL";
const EVENT: &str = "EVENTLY_XPROC_EVENT";
const START_AT_MS: &str = "EVENTLY_XPROC_START_AT_MS";
const TALLY: &str = "XPROC-TALLY";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Debug, Default, PartialEq)]
struct Tally {
    ok: usize,
    sold_out: usize,
    other: Vec<String>,
}

/// One engine process: books one seat for each of its 500 users, all at once.
async fn child(index: usize) {
    let url = std::env::var(URL).unwrap();
    let event = EventId(Uuid::parse_str(&std::env::var(EVENT).unwrap()).unwrap());
    let start_at: u64 = std::env::var(START_AT_MS).unwrap().parse().unwrap();
    let mut cfg = PostgresConfig::new(url);
    cfg.max_connections = 8;
    cfg.run_migrations = false;
    let store = PostgresStore::open(cfg).await.unwrap();
    // This process's users: its slice of all users, in e-mail order.
    let users: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM users ORDER BY email OFFSET $1 LIMIT $2")
            .bind((index * PER_PROCESS) as i64)
            .bind(PER_PROCESS as i64)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(users.len(), PER_PROCESS);
    let engine = Evently::builder().store(Arc::new(store)).build().unwrap();
    // Every process fires at the same moment.
    let wait = start_at.saturating_sub(unix_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let actor = Actor::new(UserId(u), Role::User);
                engine.book(&actor, BookingRequest::new(event, 1)).await
            })
        })
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        match t.await.unwrap() {
            Ok(b) => {
                assert_eq!(b.status, BookingStatus::Confirmed);
                tally.ok += 1;
            }
            Err(Error::SoldOut { .. }) => tally.sold_out += 1,
            Err(e) => tally.other.push(e.to_string().replace('\n', " ")),
        }
    }
    println!(
        "{TALLY} {} {} {}",
        tally.ok,
        tally.sold_out,
        tally.other.join(" | ")
    );
}

fn parse_tally(stdout: &str) -> Tally {
    let line = stdout
        .lines()
        .find_map(|l| l.find(TALLY).map(|i| &l[i + TALLY.len()..]))
        .unwrap_or_else(|| panic!("child printed no tally:\n{stdout}"));
    let mut parts = line.trim_start().splitn(3, ' ');
    let ok = parts.next().unwrap().parse().unwrap();
    let sold_out = parts.next().unwrap().parse().unwrap();
    let other = parts
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.split(" | ").map(str::to_string).collect())
        .unwrap_or_default();
    Tally {
        ok,
        sold_out,
        other,
    }
}

/// Waits for a child (polling, so the runtime's threads stay free), killing it after two minutes.
async fn wait(mut c: std::process::Child) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            panic!("a child process ran for over 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn seed_users(store: &PostgresStore, n: usize) {
    let mut tx = store.begin().await.unwrap();
    for i in 0..n {
        tx.apply(Changes {
            new_users: vec![User {
                id: UserId::new(),
                email: format!("user{i:05}@example.com"),
                name: format!("User {i}"),
                password_hash: "$argon2id$stub".into(),
                role: Role::User,
                attributes: BTreeMap::new(),
                created_at: Utc::now(),
            }],
            ..Changes::default()
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn new_event(engine: &Evently, admin: &Actor) -> Event {
    let now = engine.now();
    engine
        .create_event(
            admin,
            NewEvent {
                name: "Hot gig".into(),
                description: String::new(),
                venue: "Arena".into(),
                category: "music".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(30) + chrono::Duration::hours(3),
                capacity: CAPACITY,
                price: Money::new(2500, Currency::new("EUR").unwrap()),
            },
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_never_oversell() {
    if let Ok(index) = std::env::var(CHILD) {
        child(index.parse().unwrap()).await;
        return;
    }

    let db = TestDatabase::create().await.unwrap();
    let store = db.open(db.config()).await.unwrap();
    seed_users(&store, PROCESSES * PER_PROCESS).await;
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
    let exe = std::env::current_exe().unwrap();

    for round in 1..=ROUNDS {
        let ev = new_event(&engine, &admin).await;
        let start_at = unix_ms() + 1_500;
        let children: Vec<_> = (0..PROCESSES)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "three_processes_never_oversell",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD, i.to_string())
                    .env(URL, db.url())
                    .env(EVENT, ev.id.to_string())
                    .env(START_AT_MS, start_at.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut total = Tally::default();
        for c in children {
            let out = wait(c).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child failed: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let t = parse_tally(&stdout);
            total.ok += t.ok;
            total.sold_out += t.sold_out;
            total.other.extend(t.other);
        }
        assert!(
            total.other.is_empty(),
            "round {round}: unexpected errors {:?}",
            total.other
        );
        assert_eq!(
            total.ok, CAPACITY as usize,
            "round {round}: confirmed bookings"
        );
        assert_eq!(
            total.sold_out,
            PROCESSES * PER_PROCESS - CAPACITY as usize,
            "round {round}: sold out"
        );

        // The database agrees: counters, bookings and tickets.
        let ev = engine.event(ev.id).await.unwrap();
        assert_eq!(
            (ev.seats_confirmed, ev.seats_held),
            (CAPACITY, 0),
            "round {round}"
        );
        // Every booking row of the event (any status) is one of the 500 confirmed ones.
        let (rows, bookings, seats, tickets): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'confirmed'), \
                    coalesce(sum(quantity) FILTER (WHERE status = 'confirmed'), 0)::bigint, \
                    (SELECT count(*) FROM tickets WHERE event_id = $1) \
             FROM bookings WHERE event_id = $1",
        )
        .bind(ev.id.0)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(
            (rows, bookings, seats, tickets),
            (500, 500, 500, 500),
            "round {round}: bookings, confirmed, seats, tickets"
        );
        let per_user: Option<i64> = sqlx::query_scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM bookings WHERE event_id = $1 \
             GROUP BY user_id) s",
        )
        .bind(ev.id.0)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(per_user, Some(1), "round {round}: a user booked twice");
    }
    store.close().await;
}
