//! Engine behaviour on the SQLite store: booking, cancel, waitlist promotion, hold expiry, rollback,
//! durability across reopening, constraint reporting and 1,000 concurrent bookings.

mod common;

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use common::{clock, engine_on, event, user};
use evently_core::ports::*;
use evently_core::*;
use evently_storage::{SqliteConfig, SqliteStore};

async fn setup() -> (Evently, Arc<ManualClock>, Actor) {
    common::setup(Arc::new(SqliteStore::open_in_memory().await.unwrap())).await
}

async fn seats(engine: &Evently, ev: EventId) -> (u32, u32, u32) {
    let a = engine.availability(ev).await.unwrap();
    (a.held, a.confirmed, a.available)
}

#[tokio::test]
async fn sells_out_then_cancel_offers_the_seat_to_the_waitlist() {
    let (engine, clock, admin) = setup().await;
    assert_eq!(engine.store().backend(), "sqlite");
    let ev = event(&engine, &admin, 2).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let bob = user(&engine, "bob@example.com", Role::User).await;

    let a = engine
        .book(&alice, BookingRequest::new(ev.id, 2))
        .await
        .unwrap();
    assert_eq!(a.status, BookingStatus::Confirmed);
    assert_eq!(a.total_price.minor, 3000);
    let tickets = engine.tickets(&alice, a.id).await.unwrap();
    assert_eq!(tickets.len(), 2);
    assert!(tickets.windows(2).all(|w| w[0].number < w[1].number));

    let err = engine
        .book(&bob, BookingRequest::new(ev.id, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SoldOut {
                requested: 1,
                available: 0,
                ..
            }
        ),
        "{err:?}"
    );

    let entry = engine.join_waitlist(&bob, ev.id, 1).await.unwrap();
    assert_eq!(entry.position, Some(1));
    let err = engine.join_waitlist(&bob, ev.id, 1).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");

    engine.cancel(&alice, a.id).await.unwrap();
    let offered = engine.waitlist_position(&bob, ev.id).await.unwrap();
    assert_eq!(offered.status, WaitlistStatus::Offered);
    assert_eq!(seats(&engine, ev.id).await, (1, 0, 1));

    // The offer runs out; no one else waits, so the seat is free again.
    clock.advance(Duration::minutes(31));
    assert_eq!(engine.expire_holds().await.unwrap(), 1);
    assert_eq!(seats(&engine, ev.id).await, (0, 0, 2));
    let err = engine.accept_offer(&bob, ev.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn an_accepted_offer_confirms_and_the_queue_moves_up() {
    let (engine, _clock, admin) = setup().await;
    let ev = event(&engine, &admin, 1).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let bob = user(&engine, "bob@example.com", Role::User).await;
    let carol = user(&engine, "carol@example.com", Role::User).await;

    let a = engine
        .book(&alice, BookingRequest::new(ev.id, 1))
        .await
        .unwrap();
    let b = engine.join_waitlist(&bob, ev.id, 1).await.unwrap();
    let c = engine.join_waitlist(&carol, ev.id, 1).await.unwrap();
    assert!(b.seq < c.seq, "join order is strictly increasing");
    assert_eq!((b.position, c.position), (Some(1), Some(2)));

    engine.cancel(&alice, a.id).await.unwrap();
    let booking = engine.accept_offer(&bob, ev.id).await.unwrap();
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert!(matches!(booking.source, BookingSource::WaitlistOffer(id) if id == b.id));
    assert_eq!(seats(&engine, ev.id).await, (0, 1, 0));
    let carol_now = engine.waitlist_position(&carol, ev.id).await.unwrap();
    assert_eq!(
        (carol_now.status, carol_now.position),
        (WaitlistStatus::Waiting, Some(1))
    );

    // Bookings are listed newest first for a user and oldest first for an event.
    let all = engine.event_bookings(&admin, ev.id).await.unwrap();
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id, booking.id]
    );
    assert_eq!(engine.my_bookings(&bob).await.unwrap(), vec![booking]);
}

#[tokio::test]
async fn a_hold_confirms_in_time_and_expires_after() {
    let (engine, clock, admin) = setup().await;
    let ev = event(&engine, &admin, 3).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;

    let h1 = engine
        .hold(
            &alice,
            BookingRequest::new(ev.id, 1).hold_for(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(h1.status, BookingStatus::Held);
    assert_eq!(h1.held_until, Some(engine.now() + Duration::seconds(60)));
    let confirmed = engine.confirm(&alice, h1.id).await.unwrap();
    assert_eq!(confirmed.status, BookingStatus::Confirmed);
    assert_eq!(engine.tickets(&alice, h1.id).await.unwrap().len(), 1);

    let h2 = engine
        .hold(
            &alice,
            BookingRequest::new(ev.id, 2).hold_for(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(seats(&engine, ev.id).await, (2, 1, 0));
    clock.advance(Duration::seconds(61));
    let err = engine.confirm(&alice, h2.id).await.unwrap_err();
    assert!(matches!(err, Error::HoldExpired { .. }), "{err:?}");
    assert_eq!(
        engine.booking(&alice, h2.id).await.unwrap().status,
        BookingStatus::Expired
    );
    assert_eq!(seats(&engine, ev.id).await, (0, 1, 2));
    assert_eq!(engine.expire_holds().await.unwrap(), 0);
}

#[tokio::test]
async fn expired_holds_are_released_by_the_sweep_and_by_a_sold_out_booking() {
    let (engine, clock, admin) = setup().await;
    let ev = event(&engine, &admin, 2).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let bob = user(&engine, "bob@example.com", Role::User).await;

    engine
        .hold(&alice, BookingRequest::new(ev.id, 2))
        .await
        .unwrap();
    clock.advance(Duration::minutes(11));
    // The event looks full, but the hold has run out: booking releases it first.
    let b = engine
        .book(&bob, BookingRequest::new(ev.id, 2))
        .await
        .unwrap();
    assert_eq!(b.status, BookingStatus::Confirmed);
    assert_eq!(seats(&engine, ev.id).await, (0, 2, 0));

    let ev2 = event(&engine, &admin, 5).await;
    for _ in 0..3 {
        engine
            .hold(&alice, BookingRequest::new(ev2.id, 1))
            .await
            .unwrap();
    }
    clock.advance(Duration::minutes(11));
    assert_eq!(engine.expire_holds().await.unwrap(), 3);
    assert_eq!(seats(&engine, ev2.id).await, (0, 0, 5));
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_booking() {
    let (engine, _clock, admin) = setup().await;
    let ev = event(&engine, &admin, 10).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let req = BookingRequest::new(ev.id, 2).idempotency_key("order-1");
    let first = engine.book(&alice, req.clone()).await.unwrap();
    let again = engine.book(&alice, req).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(seats(&engine, ev.id).await, (0, 2, 8));
}

#[tokio::test]
async fn jobs_run_and_notifications_are_marked_sent() {
    let (engine, clock, admin) = setup().await;
    let ev = event(&engine, &admin, 2).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    engine
        .book(&alice, BookingRequest::new(ev.id, 1))
        .await
        .unwrap();

    let queue = engine.store().job_queue();
    let before = queue.stats().await.unwrap();
    assert!(before.queued >= 3, "{before:?}");
    let summary = engine.run_jobs(100).await.unwrap();
    assert_eq!(summary.claimed as u64, before.queued);
    assert_eq!(summary.succeeded, summary.claimed);
    let after = queue.stats().await.unwrap();
    assert_eq!(
        (after.queued, after.running, after.done),
        (0, 0, before.queued)
    );

    let notes = engine
        .notifications(&alice, evently_core::NotificationQuery::newest(10))
        .await
        .unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].kind, NotificationKind::BookingConfirmed);
    assert_eq!(notes[1].kind, NotificationKind::Welcome);
    assert!(notes.iter().all(|n| n.sent_at == Some(clock.now())));
    assert_eq!(engine.run_jobs(100).await.unwrap().claimed, 0);
}

#[tokio::test]
async fn the_job_queue_dedupes_orders_and_leases() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let q = store.job_queue();
    let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let job = |priority: i16, run_at, key: Option<&str>| NewJob {
        payload: JobPayload::ExpireHolds {
            event_id: EventId::new(),
        },
        priority,
        run_at,
        max_attempts: 3,
        dedupe_key: key.map(str::to_string),
    };
    let low = q.enqueue(&job(0, t0, Some("k"))).await.unwrap().unwrap();
    assert_eq!(q.enqueue(&job(0, t0, Some("k"))).await.unwrap(), None);
    let high = q
        .enqueue(&job(5, t0 + Duration::seconds(1), None))
        .await
        .unwrap()
        .unwrap();
    let later = q
        .enqueue(&job(9, t0 + Duration::hours(1), None))
        .await
        .unwrap()
        .unwrap();

    let lease = std::time::Duration::from_secs(30);
    let claimed = q.claim(10, t0 + Duration::seconds(1), lease).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![high, low]
    );
    assert!(
        claimed
            .iter()
            .all(|j| j.status == JobStatus::Running && j.attempts == 1)
    );
    assert_eq!(claimed[0].locked_until, Some(t0 + Duration::seconds(31)));
    // Leased: nothing more is due until the lease lapses.
    assert!(
        q.claim(10, t0 + Duration::seconds(2), lease)
            .await
            .unwrap()
            .is_empty()
    );

    q.complete(high).await.unwrap();
    q.fail(low, "boom", None).await.unwrap();
    let dead = q.job(low).await.unwrap().unwrap();
    assert_eq!(
        (dead.status, dead.last_error.as_deref()),
        (JobStatus::Dead, Some("boom"))
    );
    // The key is free again once its job is dead.
    assert!(q.enqueue(&job(0, t0, Some("k"))).await.unwrap().is_some());

    let again = q.claim(10, t0 + Duration::hours(2), lease).await.unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].id, later);
    let keyed = again[1].id;
    q.fail(later, "try again", Some(t0 + Duration::hours(3)))
        .await
        .unwrap();
    let retried = q.job(later).await.unwrap().unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(retried.run_at, t0 + Duration::hours(3));
    // A lapsed lease makes a running job claimable again, as another attempt.
    let lapsed = q
        .claim(10, t0 + Duration::hours(2) + Duration::seconds(30), lease)
        .await
        .unwrap();
    assert_eq!(
        lapsed
            .iter()
            .map(|j| (j.id, j.attempts))
            .collect::<Vec<_>>(),
        vec![(keyed, 2)]
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.running, stats.done, stats.dead),
        (1, 1, 1, 1)
    );
    assert!(matches!(
        q.complete(JobId::new()).await,
        Err(StoreError::Backend { .. })
    ));
}

#[tokio::test]
async fn a_dropped_transaction_leaves_nothing_behind() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let u = User {
        id: UserId::new(),
        email: "ghost@example.com".into(),
        name: "Ghost".into(),
        password_hash: "x".into(),
        role: Role::User,
        attributes: Default::default(),
        created_at: now,
    };
    {
        let mut tx = store.begin().await.unwrap();
        tx.apply(Changes {
            new_users: vec![u.clone()],
            ..Changes::default()
        })
        .await
        .unwrap();
        assert!(tx.user(u.id).await.unwrap().is_some());
        tx.apply(Changes {
            new_jobs: vec![NewJob::now(
                JobPayload::ExpireHolds {
                    event_id: EventId::new(),
                },
                now,
            )],
            ..Changes::default()
        })
        .await
        .unwrap();
        // Dropped without commit.
    }
    {
        let mut tx = store.begin().await.unwrap();
        tx.apply(Changes {
            new_users: vec![User {
                id: UserId::new(),
                email: "other@example.com".into(),
                ..u.clone()
            }],
            ..Changes::default()
        })
        .await
        .unwrap();
        tx.rollback().await.unwrap();
    }
    // The writer connection is usable again and nothing was kept.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.user(u.id).await.unwrap().is_none());
    assert!(
        tx.user_by_email("other@example.com")
            .await
            .unwrap()
            .is_none()
    );
    tx.apply(Changes {
        new_users: vec![u.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.user(u.id).await.unwrap(), Some(u));
    assert_eq!(store.job_queue().stats().await.unwrap().queued, 0);
}

#[tokio::test]
async fn constraints_are_reported_by_name() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let u = User {
        id: UserId::new(),
        email: "a@example.com".into(),
        name: "A".into(),
        password_hash: "x".into(),
        role: Role::User,
        attributes: Default::default(),
        created_at: now,
    };
    let mut tx = store.begin().await.unwrap();
    tx.apply(Changes {
        new_users: vec![u.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    let dup = tx
        .apply(Changes {
            new_users: vec![User {
                id: UserId::new(),
                ..u.clone()
            }],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, StoreError::UniqueViolation { constraint } if constraint == "users_email_key"),
        "{dup:?}"
    );

    let mut ev = Event {
        id: EventId::new(),
        name: "E".into(),
        description: String::new(),
        venue: String::new(),
        category: String::new(),
        starts_at: now,
        ends_at: now + Duration::hours(1),
        capacity: 1,
        price: Money::new(0, Currency::new("EUR").unwrap()),
        active: true,
        version: 0,
        seats_held: 1,
        seats_confirmed: 1,
        created_at: now,
        updated_at: now,
    };
    let over = tx
        .apply(Changes {
            new_events: vec![ev.clone()],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&over, StoreError::CheckViolation { constraint } if constraint == "events_seats_within_capacity"),
        "{over:?}"
    );
    ev.seats_held = 0;
    ev.seats_confirmed = 0;
    tx.apply(Changes {
        new_events: vec![ev.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();

    let booking = Booking {
        id: BookingId::new(),
        user_id: UserId::new(),
        event_id: ev.id,
        quantity: 1,
        total_price: ev.price,
        status: BookingStatus::Confirmed,
        held_until: None,
        idempotency_key: Some("k".into()),
        source: BookingSource::Direct,
        created_at: now,
        updated_at: now,
    };
    let fk = tx
        .apply(Changes {
            new_bookings: vec![booking.clone()],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&fk, StoreError::ForeignKeyViolation { constraint } if constraint == "bookings_user_id_fkey"),
        "{fk:?}"
    );
    let fk = tx
        .apply(Changes {
            new_bookings: vec![Booking {
                user_id: u.id,
                event_id: EventId::new(),
                ..booking.clone()
            }],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&fk, StoreError::ForeignKeyViolation { constraint } if constraint == "bookings_event_id_fkey"),
        "{fk:?}"
    );
    let booking = Booking {
        user_id: u.id,
        ..booking
    };
    tx.apply(Changes {
        new_bookings: vec![booking.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    let again = tx
        .apply(Changes {
            new_bookings: vec![Booking {
                id: BookingId::new(),
                ..booking.clone()
            }],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&again, StoreError::UniqueViolation { constraint } if constraint == "bookings_user_idempotency_key"),
        "{again:?}"
    );

    // A batch of tickets goes in whole or not at all.
    let ticket = |n: &str| Ticket {
        id: TicketId::new(),
        booking_id: booking.id,
        event_id: ev.id,
        number: n.into(),
        qr_payload: "qr".into(),
        issued_at: now,
    };
    let clash = tx
        .apply(Changes {
            new_tickets: vec![ticket("T-1"), ticket("T-2"), ticket("T-1")],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&clash, StoreError::UniqueViolation { constraint } if constraint == "tickets_number_key"),
        "{clash:?}"
    );
    assert!(tx.tickets_for_booking(booking.id).await.unwrap().is_empty());
    tx.apply(Changes {
        new_tickets: vec![ticket("T-2"), ticket("T-1")],
        ..Changes::default()
    })
    .await
    .unwrap();
    let numbers: Vec<String> = tx
        .tickets_for_booking(booking.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.number)
        .collect();
    assert_eq!(numbers, ["T-1", "T-2"]);

    let entry = WaitlistEntry {
        id: WaitlistEntryId::new(),
        event_id: ev.id,
        user_id: u.id,
        quantity: 1,
        seq: 0,
        position: None,
        status: WaitlistStatus::Waiting,
        joined_at: now,
        notified_at: None,
        offer_expires_at: None,
        offer_booking_id: None,
    };
    tx.apply(Changes {
        new_waitlist_entries: vec![entry.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    let s1 = tx.waitlist_entry(entry.id).await.unwrap().unwrap().seq;
    let live = tx
        .apply(Changes {
            new_waitlist_entries: vec![WaitlistEntry {
                id: WaitlistEntryId::new(),
                ..entry.clone()
            }],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&live, StoreError::UniqueViolation { constraint } if constraint == "waitlist_entries_one_live_per_user"),
        "{live:?}"
    );
    let left = WaitlistEntry {
        id: WaitlistEntryId::new(),
        status: WaitlistStatus::Left,
        ..entry.clone()
    };
    tx.apply(Changes {
        new_waitlist_entries: vec![left.clone()],
        ..Changes::default()
    })
    .await
    .unwrap();
    let s2 = tx.waitlist_entry(left.id).await.unwrap().unwrap().seq;
    assert!(s2 > s1);
    // A failed change set takes back only itself: everything else commits.
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.tickets_for_booking(booking.id).await.unwrap().len(), 2);
    assert_eq!(
        read.waitlist(ev.id, &[WaitlistStatus::Waiting, WaitlistStatus::Left])
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn readers_see_committed_data_only_and_never_wait_for_the_writer() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let u = User {
        id: UserId::new(),
        email: "w@example.com".into(),
        name: "W".into(),
        password_hash: "x".into(),
        role: Role::User,
        attributes: [("k".to_string(), "v".to_string())].into(),
        created_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
    };
    let mut writer = store.begin().await.unwrap();
    writer
        .apply(Changes {
            new_users: vec![u.clone()],
            ..Changes::default()
        })
        .await
        .unwrap();
    let mut before = store.begin_read().await.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(2), before.user(u.id))
        .await
        .expect("a reader waited for the writer")
        .unwrap();
    assert_eq!(seen, None);
    writer.commit().await.unwrap();
    // The open read transaction keeps its snapshot; a new one sees the commit.
    assert_eq!(before.user(u.id).await.unwrap(), None);
    drop(before);
    let mut after = store.begin_read().await.unwrap();
    assert_eq!(after.user(u.id).await.unwrap(), Some(u));
}

#[tokio::test]
async fn a_read_transaction_refuses_writes() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    let user = User {
        id: UserId::new(),
        email: "r@example.com".into(),
        name: "R".into(),
        password_hash: "x".into(),
        role: Role::User,
        attributes: Default::default(),
        created_at: Utc::now(),
    };
    let err = read
        .apply(Changes {
            new_users: vec![user],
            ..Changes::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn a_file_store_keeps_its_data_across_reopening() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("evently.db").display());
    let clock = clock();

    let store = SqliteStore::open(SqliteConfig::new(url.clone()))
        .await
        .unwrap();
    let engine = engine_on(Arc::new(store.clone()), clock.clone());
    let admin = user(&engine, "admin@example.com", Role::Admin).await;
    let ev = event(&engine, &admin, 3).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let booked = engine
        .book(&alice, BookingRequest::new(ev.id, 3))
        .await
        .unwrap();
    let entry_seq = {
        let bob = user(&engine, "bob@example.com", Role::User).await;
        engine.join_waitlist(&bob, ev.id, 1).await.unwrap().seq
    };
    drop(engine);
    store.close().await;
    assert!(matches!(
        store.begin().await.map(drop),
        Err(StoreError::Unavailable { .. })
    ));
    drop(store);

    // Migrations run again on an up-to-date schema without effect.
    let store = SqliteStore::open(SqliteConfig::new(url)).await.unwrap();
    let engine = engine_on(Arc::new(store.clone()), clock.clone());
    assert_eq!(engine.booking(&alice, booked.id).await.unwrap(), booked);
    assert_eq!(engine.event(ev.id).await.unwrap().seats_confirmed, 3);
    assert_eq!(engine.tickets(&alice, booked.id).await.unwrap().len(), 3);
    let carol = user(&engine, "carol@example.com", Role::User).await;
    let later = engine.join_waitlist(&carol, ev.id, 1).await.unwrap();
    assert!(later.seq > entry_seq);
    let err = engine
        .register_user(NewUser {
            email: "ALICE@example.com".into(),
            name: "Imposter".into(),
            password_hash: "x".into(),
            role: Role::User,
            attributes: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    store.close().await;
}

#[tokio::test]
async fn bad_stored_values_are_corrupt_not_panics() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("evently.db").display());
    let store = SqliteStore::open(SqliteConfig::new(url.clone()))
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, role, attributes, created_at) \
         VALUES ('not-a-uuid', 'bad@example.com', 'B', 'x', 'user', '{}', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, role, attributes, created_at) \
         VALUES (?, 'worse@example.com', 'W', 'x', 'user', '[1, 2]', 0)",
    )
    .bind(UserId::new().to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let mut tx = store.begin_read().await.unwrap();
    for email in ["bad@example.com", "worse@example.com"] {
        let err = tx.user_by_email(email).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn invalid_configuration_is_an_error() {
    let mut config = SqliteConfig::new("sqlite://unused.db");
    config.max_readers = 0;
    assert!(matches!(
        SqliteStore::open(config).await,
        Err(StoreError::Backend { .. })
    ));
    assert!(matches!(
        SqliteStore::open(SqliteConfig::new("postgres://nope")).await,
        Err(StoreError::Backend { .. })
    ));
    let d = SqliteConfig::default();
    assert_eq!(
        (
            d.url.as_str(),
            d.max_readers,
            d.busy_timeout,
            d.run_migrations
        ),
        (
            "sqlite://evently.db",
            4,
            std::time::Duration::from_secs(5),
            true
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_url_serves_reads_from_the_writer() {
    let clock = clock();
    let store = SqliteStore::open(SqliteConfig::new("sqlite::memory:"))
        .await
        .unwrap();
    let engine = engine_on(Arc::new(store), clock);
    let admin = user(&engine, "admin@example.com", Role::Admin).await;
    let ev = event(&engine, &admin, 10).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine.book(&admin, BookingRequest::new(ev.id, 1)).await?;
            engine.availability(ev.id).await
        }));
    }
    let ok = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(ok, 10);
    assert_eq!(seats(&engine, ev.id).await, (0, 10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_bookings_never_oversell() {
    let (engine, _clock, admin) = setup().await;
    let ev = event(&engine, &admin, 100).await;
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(user(&engine, &format!("fan{i}@example.com"), Role::User).await);
    }

    let mut tasks = Vec::with_capacity(1000);
    for i in 0..1000 {
        let engine = engine.clone();
        let actor = users[i % users.len()];
        tasks.push(tokio::spawn(async move {
            engine.book(&actor, BookingRequest::new(ev.id, 1)).await
        }));
    }
    let (mut ok, mut sold_out) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(b) => {
                assert_eq!(b.status, BookingStatus::Confirmed);
                ok += 1;
            }
            Err(Error::SoldOut { requested: 1, .. }) => sold_out += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((ok, sold_out), (100, 900));
    let stored = engine.event(ev.id).await.unwrap();
    assert_eq!((stored.seats_held, stored.seats_confirmed), (0, 100));
    let bookings = engine.event_bookings(&admin, ev.id).await.unwrap();
    assert_eq!(bookings.len(), 100);
    assert!(
        bookings
            .iter()
            .all(|b| b.status == BookingStatus::Confirmed)
    );
}
