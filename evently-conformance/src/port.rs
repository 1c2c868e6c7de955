//! Cases on the storage port itself: transactions, constraints, orders, locking, round trips.

use std::collections::HashSet;
use std::sync::Arc;

use evently_core::{
    BookingStatus, Event, EventFilter, EventId, LockMode, Store, User, WaitlistStatus,
};

use super::fixtures::*;

/// How a transaction under test ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
    Drop,
}

/// Commits a set of records, then in one transaction inserts a second set, updates every record of the
/// first (and enqueues a job with a dedupe key), checks the transaction sees its own writes, and ends it
/// as `end` says. Afterwards every write is visible (commit) or none is (rollback, drop).
async fn transaction_outcome(store: Arc<dyn Store>, end: End) {
    let mut base = one_of_each();
    put(&store, &mut base).await;
    let pairs = modified(&base);
    let mut fresh = one_of_each();
    let dedupe = unique("tx-job");

    let mut tx = begin(&store).await;
    for r in fresh.iter_mut() {
        insert(&mut *tx, r).await.expect("insert");
    }
    for (_, m) in &pairs {
        update(&mut *tx, m)
            .await
            .unwrap_or_else(|e| panic!("update {m:?}: {e:?}"));
    }
    let job = tx
        .enqueue_job(&keyed_job(&dedupe))
        .await
        .expect("enqueue")
        .expect("a new dedupe key is not deduplicated");
    for r in fresh.iter().chain(pairs.iter().map(|(_, m)| m)) {
        assert_eq!(fetch(&mut *tx, r).await.as_ref(), Some(r), "own write");
    }
    match end {
        End::Commit => tx.commit().await.expect("commit"),
        End::Rollback => tx.rollback().await.expect("rollback"),
        End::Drop => drop(tx),
    }

    let mut tx = read(&store).await;
    let committed = end == End::Commit;
    for r in &fresh {
        let want = committed.then_some(r);
        assert_eq!(fetch(&mut *tx, r).await.as_ref(), want, "{end:?}: {r:?}");
        assert_eq!(
            fetch_indexed(&mut *tx, r).await.as_ref(),
            want,
            "{end:?}, indexed: {r:?}"
        );
    }
    for (b, m) in &pairs {
        let want = if committed { m } else { b };
        assert_eq!(
            fetch(&mut *tx, want).await.as_ref(),
            Some(want),
            "{end:?}: update"
        );
        assert_eq!(
            fetch_indexed(&mut *tx, want).await.as_ref(),
            Some(want),
            "{end:?}, indexed: update"
        );
    }
    drop(tx);
    let queue = store.job_queue();
    let stored = queue.job(job).await.expect("read job");
    assert_eq!(stored.is_some(), committed, "{end:?}: enqueued job");
    let again = queue.enqueue(&keyed_job(&dedupe)).await.expect("enqueue");
    assert_eq!(
        again.is_none(),
        committed,
        "{end:?}: dedupe key of a discarded job is free"
    );
}

/// A transaction's writes of every kind (inserts, updates, a job) are visible to a new transaction once
/// it commits.
pub async fn commit_makes_writes_visible(store: Arc<dyn Store>) {
    transaction_outcome(store, End::Commit).await;
}

/// [`Transaction::rollback`](evently_core::Transaction::rollback) discards every kind of write: users, events, bookings, waitlist entries,
/// tickets, notifications, push subscriptions, jobs, and updates of existing records.
pub async fn rollback_discards_every_write(store: Arc<dyn Store>) {
    transaction_outcome(store, End::Rollback).await;
}

/// Dropping a transaction without commit discards every kind of write, as rollback does.
pub async fn drop_without_commit_discards_every_write(store: Arc<dyn Store>) {
    transaction_outcome(store, End::Drop).await;
}

/// Commits a user and an event of `capacity` seats.
async fn seed(store: &Arc<dyn Store>, capacity: u32) -> (User, Event) {
    let (u, e) = (user("seed"), event(capacity));
    put(store, &mut [Rec::User(u.clone()), Rec::Event(e.clone())]).await;
    (u, e)
}

/// A second user with a taken e-mail is a unique violation.
pub async fn unique_user_email(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let twin = User {
        email: u.email.clone(),
        ..user("twin")
    };
    refuse(&store, Rec::User(twin), Refusal::Unique, "taken e-mail").await;
}

/// A second booking with the same user and idempotency key is a unique violation; another user may use
/// the same key.
pub async fn unique_idempotency_key_per_user(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let key = unique("key");
    let keyed = |u: &User| evently_core::Booking {
        idempotency_key: Some(key.clone()),
        ..booking(u, &e, BookingStatus::Confirmed)
    };
    put(&store, &mut [Rec::Booking(keyed(&u))]).await;
    refuse(
        &store,
        Rec::Booking(keyed(&u)),
        Refusal::Unique,
        "reused key",
    )
    .await;
    let other = user("other");
    let mut theirs = [Rec::User(other.clone()), Rec::Booking(keyed(&other))];
    put(&store, &mut theirs).await;
    let mut tx = read(&store).await;
    assert_eq!(fetch(&mut *tx, &theirs[1]).await.as_ref(), Some(&theirs[1]));
}

/// A taken ticket number is a unique violation, across calls and within one call.
pub async fn unique_ticket_number(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let (b1, b2) = (
        booking(&u, &e, BookingStatus::Confirmed),
        booking(&u, &e, BookingStatus::Confirmed),
    );
    let number = unique("EVT");
    let mut first = [
        Rec::Booking(b1.clone()),
        Rec::Booking(b2.clone()),
        Rec::Tickets(vec![ticket(&b1, number.clone())]),
    ];
    put(&store, &mut first).await;
    let dup = Rec::Tickets(vec![ticket(&b2, number)]);
    refuse(&store, dup, Refusal::Unique, "taken ticket number").await;
    let same = unique("EVT");
    let twice = Rec::Tickets(vec![ticket(&b2, same.clone()), ticket(&b2, same)]);
    refuse(&store, twice, Refusal::Unique, "one number twice in a call").await;
}

/// [`seed`] (10 seats), plus a committed confirmed booking with one ticket, whose number is returned.
async fn seed_with_taken_number(store: &Arc<dyn Store>) -> (User, Event, String) {
    let (u, e) = seed(store, 10).await;
    let taken = unique("EVT");
    let first = booking(&u, &e, BookingStatus::Confirmed);
    put(
        store,
        &mut [
            Rec::Booking(first.clone()),
            Rec::Tickets(vec![ticket(&first, taken.clone())]),
        ],
    )
    .await;
    (u, e, taken)
}

/// [`Transaction::insert_confirmation`](evently_core::Transaction::insert_confirmation) writes the
/// tickets, the notification and its job together: all of them once committed, none after a rollback,
/// and none when a ticket number is taken (reported by the call or, by a store that defers writes, at
/// the latest by `commit`).
pub async fn confirmation_inserted_whole_or_not_at_all(store: Arc<dyn Store>) {
    use evently_core::{JobPayload, NewJob};
    let (u, e, taken) = seed_with_taken_number(&store).await;
    for (end, number) in [
        (End::Rollback, unique("EVT")),
        (End::Drop, taken),
        (End::Commit, unique("EVT")),
    ] {
        let b = booking(&u, &e, BookingStatus::Confirmed);
        let tickets = vec![ticket(&b, unique("EVT")), ticket(&b, number)];
        let n = notification(&u, t0());
        let job = NewJob::now(
            JobPayload::DeliverNotification {
                notification_id: n.id,
            },
            t0(),
        );
        let mut tx = begin(&store).await;
        tx.insert_booking(&b).await.expect("insert the booking");
        let outcome = tx
            .insert_confirmation(tickets.clone(), Box::new(n.clone()), job)
            .await;
        match end {
            End::Drop => match outcome {
                Ok(()) => assert_refused(tx.commit().await, Refusal::Unique, "a taken number"),
                refused => {
                    assert_refused(refused, Refusal::Unique, "a taken ticket number");
                    drop(tx);
                }
            },
            End::Rollback => {
                outcome.expect("insert the confirmation");
                tx.rollback().await.expect("rollback");
            }
            End::Commit => {
                outcome.expect("insert the confirmation");
                tx.commit().await.expect("commit");
            }
        }
        let committed = end == End::Commit;
        let mut tx = read(&store).await;
        let mut stored = tx.tickets_for_booking(b.id).await.expect("tickets");
        stored.sort_by(|a, b| a.number.cmp(&b.number));
        let mut want = if committed { tickets } else { Vec::new() };
        want.sort_by(|a, b| a.number.cmp(&b.number));
        assert_eq!(stored, want, "{end:?}: tickets");
        assert_eq!(
            tx.notification(n.id).await.expect("notification"),
            committed.then_some(n.clone()),
            "{end:?}: notification"
        );
        drop(tx);
        let (delivers, stats) = delivery_queued(&store, n.id).await;
        assert_eq!(delivers, committed, "{end:?}: delivery job ({stats:?})");
    }
}

/// Whether a job delivering notification `id` is queued; claims and completes every due job (so
/// the next call sees only jobs queued after this one), and returns the queue's figures from before.
async fn delivery_queued(
    store: &Arc<dyn Store>,
    id: evently_core::NotificationId,
) -> (bool, evently_core::ports::JobStats) {
    use evently_core::JobPayload;
    let stats = store.job_queue().stats().await.expect("job stats");
    let claimed = store
        .job_queue()
        .claim(
            100,
            t0() + chrono::Duration::days(3650),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim");
    let delivers = claimed.iter().any(|j| {
        j.payload
            == JobPayload::DeliverNotification {
                notification_id: id,
            }
    });
    for j in &claimed {
        store.job_queue().complete(j.id).await.expect("complete");
    }
    (delivers, stats)
}

/// The event as stored now.
async fn stored_event(store: &Arc<dyn Store>, id: EventId) -> Event {
    read(store)
        .await
        .event(id, LockMode::None)
        .await
        .expect("read the event")
        .expect("the event")
}

/// A [`BookingStep`](evently_core::ports::BookingStep) for the conformance case: records the event it
/// was shown; when it has writes, books them (accounting their seats), else changes nothing.
struct TestStep {
    writes: Option<evently_core::ports::StepWrites>,
    seen: Option<Event>,
}

impl evently_core::ports::BookingStep for TestStep {
    fn decide(&mut self, event: &mut Event) -> Option<evently_core::ports::StepWrites> {
        self.seen = Some(event.clone());
        let w = self.writes.take()?;
        match w.booking.status {
            BookingStatus::Held => event.seats_held += w.booking.quantity,
            _ => event.seats_confirmed += w.booking.quantity,
        }
        Some(w)
    }
}

/// [`Transaction::book_in_step`](evently_core::Transaction::book_in_step) shows the step the stored
/// event and stores what the step returns (the booking, its confirmation records, the event's new seat
/// counters) as one write of the transaction: all of it once committed, none after a rollback or a
/// refused ticket number; nothing when the step returns nothing; and it reports an unknown event
/// without calling the step.
pub async fn book_in_step_stores_what_the_step_decides(store: Arc<dyn Store>) {
    use evently_core::ports::{Confirmation, StepWrites};
    use evently_core::{JobPayload, NewJob};
    let (u, e, taken) = seed_with_taken_number(&store).await;
    let start = stored_event(&store, e.id).await;

    // Unknown event: not found, the step is not called.
    let mut step = TestStep {
        writes: None,
        seen: None,
    };
    let mut tx = begin(&store).await;
    let found = tx
        .book_in_step(EventId::new(), &mut step)
        .await
        .expect("book in step");
    assert!(!found && step.seen.is_none(), "unknown event");
    drop(tx);

    // Nothing to write: the step saw the stored event, and nothing changes.
    let mut tx = begin(&store).await;
    assert!(
        tx.book_in_step(e.id, &mut step)
            .await
            .expect("book in step")
    );
    tx.commit().await.expect("commit");
    assert_eq!(
        step.seen.as_ref(),
        Some(&start),
        "the step sees the stored event"
    );

    // With an idempotency key too: the engine books in a step only without one, but the port takes
    // any booking (the memory store stores such a booking the general way).
    for (end, number, status, key) in [
        (End::Rollback, unique("EVT"), BookingStatus::Confirmed, None),
        (End::Drop, taken, BookingStatus::Confirmed, None),
        (End::Commit, unique("EVT"), BookingStatus::Confirmed, None),
        (End::Commit, unique("EVT"), BookingStatus::Held, None),
        (
            End::Rollback,
            unique("EVT"),
            BookingStatus::Confirmed,
            Some(unique("key")),
        ),
        (
            End::Commit,
            unique("EVT"),
            BookingStatus::Confirmed,
            Some(unique("key")),
        ),
    ] {
        let before = stored_event(&store, e.id).await;
        let mut b = booking(&u, &e, status);
        b.idempotency_key = key.clone();
        let tickets = vec![ticket(&b, unique("EVT")), ticket(&b, number)];
        let n = notification(&u, t0());
        let confirmation = (status == BookingStatus::Confirmed).then(|| Confirmation {
            tickets: tickets.clone(),
            notification: Box::new(n.clone()),
            job: NewJob::now(
                JobPayload::DeliverNotification {
                    notification_id: n.id,
                },
                t0(),
            ),
        });
        let mut step = TestStep {
            writes: Some(StepWrites {
                booking: b.clone(),
                confirmation,
            }),
            seen: None,
        };
        let mut tx = begin(&store).await;
        let outcome = tx.book_in_step(e.id, &mut step).await;
        assert_eq!(
            step.seen.as_ref(),
            Some(&before),
            "{end:?}: the step sees the stored event"
        );
        match end {
            End::Drop => match outcome {
                Ok(found) => {
                    assert!(found);
                    assert_refused(tx.commit().await, Refusal::Unique, "a taken number");
                }
                refused => {
                    assert_refused(refused, Refusal::Unique, "a taken ticket number");
                    drop(tx);
                }
            },
            End::Rollback => {
                assert!(outcome.expect("book in step"));
                tx.rollback().await.expect("rollback");
            }
            End::Commit => {
                assert!(outcome.expect("book in step"));
                tx.commit().await.expect("commit");
            }
        }
        let committed = end == End::Commit;
        let after = stored_event(&store, e.id).await;
        let mut tx = read(&store).await;
        let (held, confirmed) = match (committed, status) {
            (false, _) => (0, 0),
            (true, BookingStatus::Held) => (b.quantity, 0),
            (true, _) => (0, b.quantity),
        };
        assert_eq!(
            after,
            Event {
                seats_held: before.seats_held + held,
                seats_confirmed: before.seats_confirmed + confirmed,
                ..before.clone()
            },
            "{end:?} {status:?}: the event's counters, and nothing else"
        );
        assert_eq!(
            tx.booking(b.id).await.expect("booking"),
            committed.then_some(b.clone()),
            "{end:?} {status:?}: booking"
        );
        let mut stored = tx.tickets_for_booking(b.id).await.expect("tickets");
        stored.sort_by(|a, b| a.number.cmp(&b.number));
        let mut want = if committed && status == BookingStatus::Confirmed {
            tickets
        } else {
            Vec::new()
        };
        want.sort_by(|a, b| a.number.cmp(&b.number));
        assert_eq!(stored, want, "{end:?} {status:?}: tickets");
        assert_eq!(
            tx.notification(n.id).await.expect("notification"),
            (committed && status == BookingStatus::Confirmed).then_some(n.clone()),
            "{end:?} {status:?}: notification"
        );
        if let Some(key) = &key {
            assert_eq!(
                tx.booking_by_idempotency_key(u.id, key)
                    .await
                    .expect("booking by key"),
                committed.then_some(b.clone()),
                "{end:?} {status:?}: booking by its key"
            );
        }
        if status == BookingStatus::Held {
            let due = tx
                .expired_holds(e.id, t0() + chrono::Duration::days(3650), 10)
                .await
                .expect("expired holds");
            assert_eq!(
                due.iter().any(|h| h.id == b.id),
                committed,
                "{end:?}: the hold is indexed"
            );
        }
        drop(tx);
        let (delivers, stats) = delivery_queued(&store, n.id).await;
        assert_eq!(
            delivers,
            committed && status == BookingStatus::Confirmed,
            "{end:?} {status:?}: delivery job ({stats:?})"
        );
    }
}

/// [`EventRepository::event_into`](evently_core::ports::EventRepository::event_into) reads what
/// `event` reads, into an event the caller has (whatever it held before), and leaves it alone for an
/// unknown id.
pub async fn event_into_reads_what_event_reads(store: Arc<dyn Store>) {
    let (_, e) = seed(&store, 7).await;
    let mut other = event(3);
    other.name = "a much longer name than the stored event has, to be overwritten".into();
    other.description = "text".into();
    let mut tx = begin(&store).await;
    let found = tx
        .event_into(e.id, LockMode::ForUpdate, &mut other)
        .await
        .expect("event_into");
    assert!(found);
    assert_eq!(other, e);
    let before = other.clone();
    let found = tx
        .event_into(EventId::new(), LockMode::None, &mut other)
        .await
        .expect("event_into an unknown id");
    assert!(!found);
    assert_eq!(other, before, "left alone");
}

/// A user has at most one live (waiting or offered) waitlist entry per event; a left or expired entry
/// does not block a new one, and other events are independent.
pub async fn one_live_waitlist_entry_per_user_and_event(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let mut first = [Rec::Entry(entry(&u, &e))];
    put(&store, &mut first).await;
    refuse(
        &store,
        Rec::Entry(entry(&u, &e)),
        Refusal::Unique,
        "second waiting entry",
    )
    .await;

    // Offered is live too; once it expires a new entry is allowed.
    let Rec::Entry(w) = &first[0] else {
        unreachable!()
    };
    let offer = hold(&u, &e, at(1800));
    let offered = evently_core::WaitlistEntry {
        status: WaitlistStatus::Offered,
        offer_booking_id: Some(offer.id),
        offer_expires_at: offer.held_until,
        notified_at: Some(at(0)),
        ..w.clone()
    };
    let mut tx = begin(&store).await;
    tx.insert_booking(&offer).await.expect("offer");
    tx.update_waitlist_entry(&offered).await.expect("offered");
    tx.commit().await.expect("commit");
    refuse(
        &store,
        Rec::Entry(entry(&u, &e)),
        Refusal::Unique,
        "entry beside an offer",
    )
    .await;
    set_entry_status(&store, &offered, WaitlistStatus::Expired).await;
    let mut second = [Rec::Entry(entry(&u, &e))];
    put(&store, &mut second).await;

    let Rec::Entry(w2) = &second[0] else {
        unreachable!()
    };
    set_entry_status(&store, w2, WaitlistStatus::Left).await;
    let other = event(10);
    let mut more = [
        Rec::Entry(entry(&u, &e)),
        Rec::Event(other.clone()),
        Rec::Entry(entry(&u, &other)),
    ];
    put(&store, &mut more).await;
    let mut tx = read(&store).await;
    let live = tx
        .live_waitlist_entry(e.id, u.id)
        .await
        .expect("live entry");
    assert_eq!(live.map(Rec::Entry).as_ref(), Some(&more[0]));
}

async fn set_entry_status(
    store: &Arc<dyn Store>,
    w: &evently_core::WaitlistEntry,
    to: WaitlistStatus,
) {
    let mut tx = begin(store).await;
    let next = evently_core::WaitlistEntry {
        status: to,
        ..w.clone()
    };
    tx.update_waitlist_entry(&next).await.expect("update entry");
    tx.commit().await.expect("commit");
}

/// Bookings and waitlist entries for unknown users or events, and tickets for unknown bookings, are
/// foreign-key violations.
pub async fn foreign_keys_are_enforced(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let (ghost, nowhere) = (user("ghost"), event(10));
    let fk = Refusal::ForeignKey;
    let cases = [
        (
            Rec::Booking(booking(&ghost, &e, BookingStatus::Confirmed)),
            "booking of an unknown user",
        ),
        (
            Rec::Booking(booking(&u, &nowhere, BookingStatus::Confirmed)),
            "booking of an unknown event",
        ),
        (
            Rec::Entry(entry(&ghost, &e)),
            "waitlist entry of an unknown user",
        ),
        (
            Rec::Entry(entry(&u, &nowhere)),
            "waitlist entry of an unknown event",
        ),
        (
            Rec::Tickets(vec![ticket(
                &booking(&u, &e, BookingStatus::Confirmed),
                unique("EVT"),
            )]),
            "ticket of an unknown booking",
        ),
    ];
    for (r, what) in cases {
        refuse(&store, r, fk, what).await;
    }
}

/// `update_event` with more seats held and confirmed than the capacity is a check violation, and
/// nothing of it is written.
pub async fn update_event_over_capacity_is_refused(store: Arc<dyn Store>) {
    let (_, e) = seed(&store, 10).await;
    let over = Event {
        seats_held: 6,
        seats_confirmed: 5,
        name: "Oversold".into(),
        version: e.version + 1,
        ..e.clone()
    };
    {
        let mut tx = begin(&store).await;
        assert_refused(
            tx.update_event(&over).await,
            Refusal::Check,
            "11 seats of 10",
        );
    }
    let mut tx = read(&store).await;
    let stored = tx.event(e.id, LockMode::None).await.expect("read event");
    assert_eq!(stored, Some(e));
}

/// `list_events` orders by `starts_at`, then id, and applies `active_only`, `category`, `starts_after`
/// (inclusive), `limit` and `offset`.
pub async fn list_events_orders_filters_and_pages(store: Arc<dyn Store>) {
    let cat = unique("list");
    let ev = |day: i64, active: bool| Event {
        category: cat.clone(),
        starts_at: at(day * 86_400),
        ends_at: at(day * 86_400 + 3600),
        active,
        ..event(10)
    };
    // Two events at the same time, inserted with the larger id first.
    let (mut tie_a, mut tie_b) = (ev(1, true), ev(1, true));
    if tie_a.id > tie_b.id {
        std::mem::swap(&mut tie_a.id, &mut tie_b.id);
    }
    let (late, inactive, elsewhere) = (
        ev(3, true),
        ev(2, false),
        Event {
            category: unique("x"),
            ..ev(0, true)
        },
    );
    let mut all = [&late, &tie_b, &inactive, &tie_a, &elsewhere].map(|e| Rec::Event(e.clone()));
    put(&store, &mut all).await;

    let mut tx = read(&store).await;
    let filter = EventFilter {
        active_only: false,
        category: Some(cat.clone()),
        starts_after: None,
        limit: 100,
        offset: 0,
    };
    let cases = [
        (filter.clone(), vec![&tie_a, &tie_b, &inactive, &late]),
        (
            EventFilter {
                active_only: true,
                ..filter.clone()
            },
            vec![&tie_a, &tie_b, &late],
        ),
        (
            EventFilter {
                starts_after: Some(inactive.starts_at),
                ..filter.clone()
            },
            vec![&inactive, &late],
        ),
        (
            EventFilter {
                limit: 2,
                offset: 1,
                ..filter.clone()
            },
            vec![&tie_b, &inactive],
        ),
        (
            EventFilter {
                offset: 4,
                ..filter.clone()
            },
            vec![],
        ),
    ];
    for (f, want) in cases {
        let got = tx.list_events(&f).await.expect("list events");
        let want: Vec<Event> = want.into_iter().cloned().collect();
        assert_eq!(got, want, "{f:?}");
    }
}

/// `bookings_for_user` is newest first; `bookings_for_event` is oldest first; each lists only its own.
pub async fn bookings_list_in_order(store: Arc<dyn Store>) {
    let (u, e1) = seed(&store, 100).await;
    let (other, e2) = (user("other"), event(100));
    let made = |who: &User, e: &Event, secs: i64| evently_core::Booking {
        created_at: at(secs),
        updated_at: at(secs),
        ..booking(who, e, BookingStatus::Confirmed)
    };
    let (b1, b2, b3, b4) = (
        made(&u, &e1, 0),
        made(&u, &e2, 10),
        made(&u, &e1, 5),
        made(&other, &e1, 7),
    );
    let mut recs = [
        Rec::User(other.clone()),
        Rec::Event(e2.clone()),
        Rec::Booking(b3.clone()),
        Rec::Booking(b1.clone()),
        Rec::Booking(b4.clone()),
        Rec::Booking(b2.clone()),
    ];
    put(&store, &mut recs).await;
    let mut tx = read(&store).await;
    assert_eq!(
        tx.bookings_for_user(u.id).await.expect("by user"),
        vec![b2, b3.clone(), b1.clone()]
    );
    assert_eq!(
        tx.bookings_for_event(e1.id).await.expect("by event"),
        vec![b1, b3, b4]
    );
}

/// Waitlist entries get strictly increasing `seq` numbers (across events too) and `waitlist` lists them
/// in `seq` order, filtered by status, whatever their join times.
pub async fn waitlist_in_seq_order(store: Arc<dyn Store>) {
    let (_, e) = seed(&store, 10).await;
    let other = event(10);
    let users: Vec<User> = (0..4).map(|i| user(&format!("w{i}"))).collect();
    let mut recs: Vec<Rec> = users.iter().map(|u| Rec::User(u.clone())).collect();
    recs.push(Rec::Event(other.clone()));
    for (i, u) in users.iter().enumerate() {
        let target = if i == 2 { &other } else { &e };
        recs.push(Rec::Entry(evently_core::WaitlistEntry {
            // Later joiners get earlier join times: the order must come from seq.
            joined_at: at(-(i as i64) * 60),
            ..entry(u, target)
        }));
    }
    put(&store, &mut recs).await;
    let entries: Vec<evently_core::WaitlistEntry> = recs
        .iter()
        .filter_map(|r| match r {
            Rec::Entry(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    assert!(
        entries.windows(2).all(|p| p[0].seq < p[1].seq),
        "seq not increasing: {entries:?}"
    );
    set_entry_status(&store, &entries[1], WaitlistStatus::Left).await;

    let mut tx = read(&store).await;
    let waiting = tx
        .waitlist(e.id, &[WaitlistStatus::Waiting])
        .await
        .expect("waitlist");
    assert_eq!(waiting, vec![entries[0].clone(), entries[3].clone()]);
    let both = tx
        .waitlist(e.id, &[WaitlistStatus::Waiting, WaitlistStatus::Left])
        .await
        .expect("waitlist");
    let ids: Vec<_> = both.iter().map(|w| w.id).collect();
    assert_eq!(ids, vec![entries[0].id, entries[1].id, entries[3].id]);
    assert!(
        tx.waitlist(e.id, &[WaitlistStatus::Offered])
            .await
            .expect("waitlist")
            .is_empty()
    );
}

/// `expired_holds` returns only held bookings of the event with `held_until <= now`, earliest first, at
/// most `limit`.
pub async fn expired_holds_earliest_first(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 100).await;
    let other = event(100);
    let now = at(0);
    let (h3, h1, h0, future) = (
        hold(&u, &e, at(-3)),
        hold(&u, &e, at(-1)),
        hold(&u, &e, now),
        hold(&u, &e, at(1)),
    );
    let cancelled = evently_core::Booking {
        status: BookingStatus::Cancelled,
        ..hold(&u, &e, at(-10))
    };
    let mut recs = vec![Rec::Event(other.clone())];
    recs.extend(
        [
            &h1,
            &future,
            &h0,
            &cancelled,
            &h3,
            &hold(&u, &other, at(-100)),
        ]
        .map(|b| Rec::Booking(b.clone())),
    );
    put(&store, &mut recs).await;

    let mut tx = read(&store).await;
    let got = tx
        .expired_holds(e.id, now, 10)
        .await
        .expect("expired holds");
    assert_eq!(got, vec![h3.clone(), h1.clone(), h0]);
    let got = tx.expired_holds(e.id, now, 2).await.expect("expired holds");
    assert_eq!(got, vec![h3, h1]);
    let none = tx
        .expired_holds(e.id, at(-4), 10)
        .await
        .expect("expired holds");
    assert!(none.is_empty(), "{none:?}");
}

/// `events_with_expired_holds` lists the events having a held booking with `held_until <= now`, at most
/// `limit`, and forgets an event once its holds are no longer held.
pub async fn events_with_expired_holds_lists_due_events(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 100).await;
    let (due1, due2, later, sold) = (event(10), event(10), event(10), event(10));
    let h1 = hold(&u, &due1, at(-5));
    let mut recs = vec![
        Rec::Event(due1.clone()),
        Rec::Event(due2.clone()),
        Rec::Event(later.clone()),
        Rec::Event(sold.clone()),
        Rec::Booking(h1.clone()),
        Rec::Booking(hold(&u, &due2, at(0))),
        Rec::Booking(hold(&u, &later, at(1))),
        Rec::Booking(booking(&u, &sold, BookingStatus::Confirmed)),
    ];
    put(&store, &mut recs).await;
    let due_ids = |v: Vec<EventId>| v.into_iter().collect::<HashSet<_>>();

    let mut tx = read(&store).await;
    let got = tx
        .events_with_expired_holds(at(0), 10)
        .await
        .expect("due events");
    assert_eq!(due_ids(got), HashSet::from([due1.id, due2.id]));
    let one = tx
        .events_with_expired_holds(at(0), 1)
        .await
        .expect("due events");
    assert_eq!(one.len(), 1, "limit 1: {one:?}");
    drop(tx);

    let mut tx = begin(&store).await;
    let expired = evently_core::Booking {
        status: BookingStatus::Expired,
        held_until: None,
        updated_at: at(1),
        ..h1
    };
    tx.update_booking(&expired).await.expect("expire");
    tx.commit().await.expect("commit");
    let mut tx = read(&store).await;
    let got = tx
        .events_with_expired_holds(at(0), 10)
        .await
        .expect("due events");
    assert_eq!(due_ids(got), HashSet::from([due2.id]));
}

/// Reading an event `ForUpdate` serialises: 50 concurrent read-modify-write transactions (read the
/// counter, sleep, write it plus one, commit) leave the counter at exactly 50.
pub async fn for_update_serialises_read_modify_write(store: Arc<dyn Store>) {
    let (_, e) = seed(&store, 1_000).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { retry_transient(|| increment(&store, e.id)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked");
    }
    let mut tx = read(&store).await;
    let stored = tx
        .event(e.id, LockMode::None)
        .await
        .expect("read")
        .expect("event");
    assert_eq!(stored.seats_confirmed, 50, "lost updates");
}

async fn increment(store: &Arc<dyn Store>, id: EventId) -> Result<(), evently_core::StoreError> {
    let mut tx = store.begin().await?;
    let mut e = tx
        .event(id, LockMode::ForUpdate)
        .await?
        .expect("event exists");
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    e.seats_confirmed += 1;
    e.version += 1;
    tx.update_event(&e).await?;
    tx.commit().await
}

/// Every field of every record kind survives a write and a read unchanged, through the primary and the
/// secondary lookups; so do a queued job's fields.
pub async fn records_round_trip(store: Arc<dyn Store>) {
    let mut recs = one_of_each();
    put(&store, &mut recs).await;
    let mut tx = read(&store).await;
    for r in &recs {
        assert_eq!(fetch(&mut *tx, r).await.as_ref(), Some(r));
        assert_eq!(fetch_indexed(&mut *tx, r).await.as_ref(), Some(r));
    }
    drop(tx);
    let new = evently_core::NewJob {
        priority: -7,
        max_attempts: 11,
        dedupe_key: Some(unique("round-trip")),
        ..job(at(42), 0)
    };
    let queue = store.job_queue();
    let id = queue
        .enqueue(&new)
        .await
        .expect("enqueue")
        .expect("new job");
    let j = queue.job(id).await.expect("read job").expect("job");
    assert_eq!(
        (j.id, &j.payload, j.priority, j.status, j.run_at, j.attempts),
        (
            id,
            &new.payload,
            new.priority,
            evently_core::JobStatus::Queued,
            new.run_at,
            0
        )
    );
    assert_eq!(
        (j.max_attempts, &j.dedupe_key, &j.last_error, j.locked_until),
        (new.max_attempts, &new.dedupe_key, &None, None)
    );
}

/// `mark_notification_sent` sets `sent_at` once (true), then refuses (false); `notifications_for_user`
/// is newest first and respects its limit.
pub async fn notification_marked_sent_once(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let (n0, n1, n2) = (
        notification(&u, at(0)),
        notification(&u, at(1)),
        notification(&u, at(2)),
    );
    let mut recs = [&n1, &n0, &n2].map(|n| Rec::Notification(n.clone()));
    put(&store, &mut recs).await;

    for expected in [true, false] {
        let mut tx = begin(&store).await;
        let marked = tx.mark_notification_sent(n0.id, at(5)).await.expect("mark");
        assert_eq!(marked, expected, "mark sent");
        tx.commit().await.expect("commit");
    }
    let mut tx = read(&store).await;
    let stored = tx
        .notification(n0.id)
        .await
        .expect("read")
        .expect("notification");
    assert_eq!(stored.sent_at, Some(at(5)));
    let newest = tx.notifications_for_user(u.id, 2).await.expect("list");
    assert_eq!(newest, vec![n2, n1]);
}

/// `record_notification_delivery` records a channel once (true, then false), a rolled-back record is
/// gone, `notification_deliveries` lists channels in name order, and an unknown notification is a
/// foreign-key violation.
pub async fn notification_deliveries_recorded_once(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let n = notification(&u, at(0));
    put(&store, &mut [Rec::Notification(n.clone())]).await;

    for expected in [true, false] {
        let mut tx = begin(&store).await;
        let recorded = tx
            .record_notification_delivery(n.id, "push", at(1))
            .await
            .expect("record");
        assert_eq!(recorded, expected, "record push");
        tx.commit().await.expect("commit");
    }
    let mut tx = begin(&store).await;
    assert!(
        tx.record_notification_delivery(n.id, "webhook", at(2))
            .await
            .expect("record")
    );
    tx.rollback().await.expect("rollback");
    let mut tx = begin(&store).await;
    assert!(
        tx.record_notification_delivery(n.id, "email", at(3))
            .await
            .expect("record")
    );
    tx.commit().await.expect("commit");

    let mut tx = read(&store).await;
    assert_eq!(
        tx.notification_deliveries(n.id).await.expect("list"),
        vec!["email".to_owned(), "push".to_owned()]
    );
    let other = notification(&u, at(4));
    assert!(
        tx.notification_deliveries(other.id)
            .await
            .expect("list")
            .is_empty()
    );
    drop(tx);

    let mut tx = begin(&store).await;
    let missing = tx
        .record_notification_delivery(other.id, "email", at(5))
        .await
        .expect_err("unknown notification");
    assert!(
        matches!(
            missing,
            evently_core::StoreError::ForeignKeyViolation { .. }
        ),
        "{missing:?}"
    );
}

/// `upsert_push_subscription` replaces the keys and owner of the subscription with the same endpoint;
/// `delete_push_subscription` returns true once, then false, and a rolled-back delete keeps it.
pub async fn push_subscription_upsert_and_delete(store: Arc<dyn Store>) {
    let (alice, _) = seed(&store, 1).await;
    let bob = user("bob");
    let endpoint = format!("https://push.example/{}", unique("ep"));
    let first = push(&alice, &endpoint);
    put(&store, &mut [Rec::User(bob.clone()), Rec::Push(first)]).await;
    let moved = evently_core::PushSubscription {
        p256dh: "BMoved".into(),
        auth: "moved-auth".into(),
        ..push(&bob, &endpoint)
    };
    put(&store, &mut [Rec::Push(moved.clone())]).await;

    let mut tx = read(&store).await;
    assert!(
        tx.push_subscriptions_for_user(alice.id)
            .await
            .expect("list")
            .is_empty()
    );
    let bobs = tx.push_subscriptions_for_user(bob.id).await.expect("list");
    let keys: Vec<_> = bobs
        .iter()
        .map(|s| {
            (
                s.user_id,
                s.endpoint.as_str(),
                s.p256dh.as_str(),
                s.auth.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![(bob.id, endpoint.as_str(), "BMoved", "moved-auth")]
    );
    drop(tx);

    {
        let mut tx = begin(&store).await;
        assert!(
            tx.delete_push_subscription(&endpoint)
                .await
                .expect("delete")
        );
    }
    for expected in [true, false] {
        let mut tx = begin(&store).await;
        assert_eq!(
            tx.delete_push_subscription(&endpoint)
                .await
                .expect("delete"),
            expected
        );
        tx.commit().await.expect("commit");
    }
    let mut tx = read(&store).await;
    assert!(
        tx.push_subscriptions_for_user(bob.id)
            .await
            .expect("list")
            .is_empty()
    );
}
