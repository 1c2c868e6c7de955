//! Cases on the storage port itself: transactions, change sets, constraints, orders, locking, round
//! trips.

use std::collections::HashSet;
use std::sync::Arc;

use evently_core::{
    Booking, BookingSource, BookingStatus, Changes, Event, EventFilter, EventId, JobPayload,
    LockMode, NewJob, Notification, NotificationKind, NotificationQuery, Store, Ticket,
    Transaction, User, WaitlistEntry, WaitlistStatus,
};

use super::fixtures::*;

/// How a transaction under test ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
    Drop,
}

/// Commits a set of records, then in one transaction inserts a second set (one change set), updates
/// every record of the first (a second change set) and enqueues a job with a dedupe key (a third),
/// checks the transaction sees its own writes, and ends it as `end` says. Afterwards every write is
/// visible (commit) or none is (rollback, drop).
async fn transaction_outcome(store: Arc<dyn Store>, end: End) {
    let mut base = one_of_each();
    put(&store, &mut base).await;
    let pairs = modified(&base);
    let mut fresh = one_of_each();
    let dedupe = unique("tx-job");
    let job = keyed_job(&dedupe);

    let mut tx = begin(&store).await;
    insert_all(&mut *tx, &mut fresh).await.expect("insert");
    tx.apply(updates(pairs.iter().map(|(_, m)| m)))
        .await
        .expect("update");
    tx.enqueue_job(&job).await.expect("enqueue");
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
    let queued = queue.stats().await.expect("job stats").queued;
    assert_eq!(queued, u64::from(committed), "{end:?}: enqueued job");
    let again = keyed_job(&dedupe);
    let taken = queue.enqueue(&again).await.expect("enqueue").is_none();
    assert_eq!(
        taken, committed,
        "{end:?}: dedupe key of a discarded job is free"
    );
    let want = if committed { job } else { again };
    assert_same_jobs(&drain_jobs(&store).await, &[want], "{end:?}: the queue");
}

/// A transaction's writes of every kind (inserts, updates, a job) are visible to a new transaction once
/// it commits.
pub async fn commit_makes_writes_visible(store: Arc<dyn Store>) {
    transaction_outcome(store, End::Commit).await;
}

/// [`Transaction::rollback`] discards every kind of write: users, events, bookings, waitlist entries,
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

/// A second user with a taken e-mail is `users_email_key`.
pub async fn unique_user_email(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let twin = User {
        email: u.email.clone(),
        ..user("twin")
    };
    let refusal = Refusal::Unique("users_email_key");
    refuse(&store, Rec::User(twin), refusal, "taken e-mail").await;
}

/// A second booking with the same user and idempotency key is `bookings_user_idempotency_key`, also
/// within one change set; another user may use the same key.
pub async fn unique_idempotency_key_per_user(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let key = unique("key");
    let keyed = |u: &User| Booking {
        idempotency_key: Some(key.clone()),
        ..booking(u, &e, BookingStatus::Confirmed)
    };
    let refusal = Refusal::Unique("bookings_user_idempotency_key");
    let fresh = unique("key");
    let twice = Changes {
        new_bookings: vec![
            Booking {
                idempotency_key: Some(fresh.clone()),
                ..keyed(&u)
            },
            Booking {
                idempotency_key: Some(fresh),
                ..keyed(&u)
            },
        ],
        ..Changes::default()
    };
    refuse_changes(&store, twice, refusal, "one key twice in a change set").await;
    put(&store, &mut [Rec::Booking(keyed(&u))]).await;
    refuse(&store, Rec::Booking(keyed(&u)), refusal, "reused key").await;
    let other = user("other");
    let mut theirs = [Rec::User(other.clone()), Rec::Booking(keyed(&other))];
    put(&store, &mut theirs).await;
    let mut tx = read(&store).await;
    assert_eq!(fetch(&mut *tx, &theirs[1]).await.as_ref(), Some(&theirs[1]));
}

/// A taken ticket number is `tickets_number_key`, across change sets and within one.
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
    let refusal = Refusal::Unique("tickets_number_key");
    let dup = Rec::Tickets(vec![ticket(&b2, number)]);
    refuse(&store, dup, refusal, "taken ticket number").await;
    let same = unique("EVT");
    let twice = Rec::Tickets(vec![ticket(&b2, same.clone()), ticket(&b2, same)]);
    refuse(&store, twice, refusal, "one number twice in a change set").await;
}

/// What [`seed_with_taken_number`] committed.
struct Seeded {
    user: User,
    /// 10 seats, two of them confirmed.
    event: Event,
    booking: Booking,
    ticket: Ticket,
}

/// A user, an event of 10 seats, a confirmed booking of two of them with one ticket (whose number the
/// cases reuse), and the event's counters to match: committed as one change set.
async fn seed_with_taken_number(store: &Arc<dyn Store>) -> Seeded {
    let (u, e) = (user("seed"), event(10));
    let b = booking(&u, &e, BookingStatus::Confirmed);
    let t = ticket(&b, unique("EVT"));
    let counted = Event {
        seats_confirmed: b.quantity,
        version: e.version + 1,
        ..e.clone()
    };
    let mut tx = begin(store).await;
    tx.apply(Changes {
        new_users: vec![u.clone()],
        new_events: vec![e],
        updated_events: vec![counted.clone()],
        new_bookings: vec![b.clone()],
        new_tickets: vec![t.clone()],
        ..Changes::default()
    })
    .await
    .expect("apply the seed");
    tx.commit().await.expect("commit");
    Seeded {
        user: u,
        event: counted,
        booking: b,
        ticket: t,
    }
}

/// A confirmed booking and everything its confirmation writes, as [`whole_booking`] builds it.
struct WholeBooking {
    booking: Booking,
    /// In number order.
    tickets: Vec<Ticket>,
    /// As stored: marked sent.
    notification: Notification,
    jobs: Vec<NewJob>,
    /// With the booking's seats counted.
    event: Event,
    changes: Changes,
}

/// One change set carrying a whole confirmed booking of two seats of `event` (as stored): the booking
/// (with an idempotency key); its two tickets, listed out of number order, the last one numbered
/// `last_number`; its confirmation notification, marked sent, with a delivery by `email`; the job that
/// delivers it and a job with a dedupe key; and the event with the seats counted and its version
/// bumped.
fn whole_booking(u: &User, event: &Event, last_number: String) -> WholeBooking {
    let b = Booking {
        idempotency_key: Some(unique("whole")),
        ..booking(u, event, BookingStatus::Confirmed)
    };
    let mut tickets = vec![ticket(&b, unique("EVT-Z")), ticket(&b, last_number)];
    let n = Notification {
        kind: NotificationKind::BookingConfirmed,
        event_id: Some(event.id),
        booking_id: Some(b.id),
        seats: Some(b.quantity),
        total: Some(b.total_price),
        offer_expires_at: None,
        ..notification(u, at(2))
    };
    let jobs = vec![
        NewJob::now(
            JobPayload::DeliverNotification {
                notification_id: n.id,
            },
            t0(),
        ),
        keyed_job(&unique("whole")),
    ];
    let counted = Event {
        seats_confirmed: event.seats_confirmed + b.quantity,
        version: event.version + 1,
        updated_at: at(2),
        ..event.clone()
    };
    let changes = Changes {
        updated_events: vec![counted.clone()],
        new_bookings: vec![b.clone()],
        new_tickets: tickets.clone(),
        new_notifications: vec![n.clone()],
        notifications_sent: vec![(n.id, at(4))],
        deliveries: vec![delivery(n.id, "email", at(4))],
        new_jobs: jobs.clone(),
        ..Changes::default()
    };
    tickets.sort_by(|a, b| a.number.cmp(&b.number));
    WholeBooking {
        booking: b,
        tickets,
        notification: Notification {
            sent_at: Some(at(4)),
            ..n
        },
        jobs,
        event: counted,
        changes,
    }
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

/// Reads the event `ForUpdate`, as the engine does before it writes.
async fn lock_event(tx: &mut dyn Transaction, id: EventId) -> Event {
    tx.event(id, LockMode::ForUpdate)
        .await
        .expect("lock the event")
        .expect("the event")
}

/// A part of a change set that breaks a constraint, for
/// [`a_change_set_is_applied_whole_or_not_at_all`].
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The booking's last ticket has a taken number.
    TakenTicketNumber,
    /// After the notification's good delivery, one by an empty channel.
    EmptyDeliveryChannel,
    /// A push subscription of an unknown user (past every record but the jobs).
    UnknownPushOwner,
}

/// A change set that fails in its last part is applied not at all: one [`Transaction::apply`] with a
/// new user and their waitlist entry, a renamed user, an event's new counters, a booking, its tickets,
/// its notification (marked sent, with a delivery) and two jobs, where a late part breaks a constraint
/// (a taken ticket number, an empty delivery channel, a push subscription of an unknown user), fails
/// with that constraint; after the transaction is dropped or rolled back none of it is visible (no
/// record, no counter change, no rename, no delivery, no job) and the data committed before is intact.
pub async fn a_change_set_is_applied_whole_or_not_at_all(store: Arc<dyn Store>) {
    let seeded = seed_with_taken_number(&store).await;
    let u = &seeded.user;
    let ghost = user("ghost");
    for fault in [
        Fault::TakenTicketNumber,
        Fault::EmptyDeliveryChannel,
        Fault::UnknownPushOwner,
    ] {
        for end in [End::Drop, End::Rollback] {
            let what = format!("{fault:?}, {end:?}");
            let jobs_before = store.job_queue().stats().await.expect("job stats");
            let mut tx = begin(&store).await;
            let locked = lock_event(&mut *tx, seeded.event.id).await;
            assert_eq!(locked, seeded.event, "{what}: the event as committed");
            let last_number = match fault {
                Fault::TakenTicketNumber => seeded.ticket.number.clone(),
                _ => unique("EVT-A"),
            };
            let whole = whole_booking(u, &locked, last_number);
            let friend = user("friend");
            let mut changes = Changes {
                new_users: vec![friend.clone()],
                updated_users: vec![User {
                    name: "Renamed, never committed".into(),
                    ..u.clone()
                }],
                new_waitlist_entries: vec![entry(&friend, &locked)],
                ..whole.changes.clone()
            };
            let refusal = match fault {
                Fault::TakenTicketNumber => Refusal::Unique("tickets_number_key"),
                Fault::EmptyDeliveryChannel => {
                    let n = whole.notification.id;
                    changes.deliveries.push(delivery(n, "", at(4)));
                    Refusal::Check("notification_deliveries_channel_check")
                }
                Fault::UnknownPushOwner => {
                    let endpoint = format!("https://push.example/{}", unique("ghost"));
                    changes.push_subscriptions.push(push(&ghost, &endpoint));
                    Refusal::ForeignKey("push_subscriptions_user_id_fkey")
                }
            };
            assert_refused(tx.apply(changes.clone()).await, refusal, &what);
            match end {
                End::Rollback => tx
                    .rollback()
                    .await
                    .expect("rollback after a refused change set"),
                _ => drop(tx),
            }

            let mut tx = read(&store).await;
            assert_none_stored(&mut *tx, &changes, &what).await;
            assert_eq!(
                tx.event(seeded.event.id, LockMode::None)
                    .await
                    .expect("read the event"),
                Some(seeded.event.clone()),
                "{what}: the event's counters"
            );
            assert_eq!(
                tx.user(u.id).await.expect("read the user").as_ref(),
                Some(u),
                "{what}: the user"
            );
            let key = whole.booking.idempotency_key.as_deref().expect("a key");
            assert_eq!(
                tx.booking_by_idempotency_key(u.id, key)
                    .await
                    .expect("booking by key"),
                None,
                "{what}: booking by its key"
            );
            assert_eq!(
                tx.bookings_for_event(seeded.event.id)
                    .await
                    .expect("the event's bookings"),
                vec![seeded.booking.clone()],
                "{what}: the event's bookings"
            );
            assert_eq!(
                tx.ticket_by_number(&seeded.ticket.number)
                    .await
                    .expect("ticket by number"),
                Some(seeded.ticket.clone()),
                "{what}: the ticket committed before"
            );
            assert_eq!(
                tx.tickets_for_booking(seeded.booking.id)
                    .await
                    .expect("tickets"),
                vec![seeded.ticket.clone()],
                "{what}: the booking committed before"
            );
            assert!(
                tx.notification_deliveries(whole.notification.id)
                    .await
                    .expect("deliveries")
                    .is_empty(),
                "{what}: deliveries"
            );
            assert!(
                tx.waitlist(seeded.event.id, &[WaitlistStatus::Waiting])
                    .await
                    .expect("waitlist")
                    .is_empty(),
                "{what}: waitlist"
            );
            drop(tx);
            let jobs_after = store.job_queue().stats().await.expect("job stats");
            assert_eq!(jobs_after, jobs_before, "{what}: job counts");
            assert_same_jobs(&drain_jobs(&store).await, &[], &what);
        }
    }
}

/// One change set carries a whole confirmed booking (see [`a_change_set_is_applied_whole_or_not_at_all`]
/// for its parts): once committed, every record reads back equal, through every lookup (tickets in
/// number order, the notification marked sent, its delivery listed), the event has its new counters,
/// and both jobs are queued with the fields they were given.
pub async fn one_change_set_carries_a_whole_booking(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let jobs_before = store.job_queue().stats().await.expect("job stats");
    let mut tx = begin(&store).await;
    let locked = lock_event(&mut *tx, e.id).await;
    let whole = whole_booking(&u, &locked, unique("EVT-A"));
    tx.apply(whole.changes.clone())
        .await
        .expect("apply the booking");
    tx.commit().await.expect("commit");

    let b = &whole.booking;
    assert_eq!(stored_event(&store, e.id).await, whole.event, "the event");
    let mut tx = read(&store).await;
    for r in [
        Rec::Booking(b.clone()),
        Rec::Tickets(whole.tickets.clone()),
        Rec::Notification(whole.notification.clone()),
    ] {
        assert_eq!(fetch(&mut *tx, &r).await.as_ref(), Some(&r));
        assert_eq!(fetch_indexed(&mut *tx, &r).await.as_ref(), Some(&r));
    }
    assert_eq!(
        tx.tickets_for_booking(b.id).await.expect("tickets"),
        whole.tickets,
        "tickets in number order"
    );
    assert_eq!(
        tx.notification_deliveries(whole.notification.id)
            .await
            .expect("deliveries"),
        vec!["email".to_owned()]
    );
    drop(tx);
    let jobs_after = store.job_queue().stats().await.expect("job stats");
    assert_eq!(jobs_after.queued, jobs_before.queued + 2, "queued jobs");
    assert_same_jobs(&drain_jobs(&store).await, &whole.jobs, "the booking's jobs");
}

/// A waitlist entry as the reads return it: the `seq` the store assigned, no position.
fn as_stored(w: &WaitlistEntry, seq: i64) -> WaitlistEntry {
    WaitlistEntry {
        seq,
        position: None,
        ..w.clone()
    }
}

/// Reads within a transaction see the change sets it applied before: after one change set (two
/// waitlist entries, a hold with an idempotency key, the event's counters) the booking reads back by
/// id, by key, per event and as due to expire, the entries with increasing `seq` through every lookup,
/// and the event with its new counters; a second change set building on the first (a ticket of that
/// booking, its confirmation, an entry leaving, the counters again) is seen too; and after commit a new
/// transaction reads the same.
pub async fn changes_are_visible_to_later_reads_of_the_same_transaction(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let (u2, u3) = (user("second"), user("third"));
    put(&store, &mut [Rec::User(u2.clone()), Rec::User(u3.clone())]).await;

    let mut tx = begin(&store).await;
    let locked = lock_event(&mut *tx, e.id).await;
    let (w2, w3) = (entry(&u2, &locked), entry(&u3, &locked));
    let held = Booking {
        idempotency_key: Some(unique("seen")),
        ..hold(&u, &locked, at(600))
    };
    let holding = Event {
        seats_held: locked.seats_held + held.quantity,
        version: locked.version + 1,
        ..locked.clone()
    };
    tx.apply(Changes {
        updated_events: vec![holding.clone()],
        new_waitlist_entries: vec![w2.clone(), w3.clone()],
        new_bookings: vec![held.clone()],
        ..Changes::default()
    })
    .await
    .expect("apply the first change set");

    let key = held.idempotency_key.as_deref().expect("a key");
    assert_eq!(
        tx.booking(held.id).await.expect("by id"),
        Some(held.clone())
    );
    assert_eq!(
        tx.booking_by_idempotency_key(u.id, key)
            .await
            .expect("by key"),
        Some(held.clone())
    );
    assert_eq!(
        tx.bookings_for_event(e.id).await.expect("per event"),
        vec![held.clone()]
    );
    assert_eq!(
        tx.expired_holds(e.id, at(600), 10)
            .await
            .expect("due holds"),
        vec![held.clone()]
    );
    assert_eq!(
        tx.events_with_expired_holds(at(600), 10)
            .await
            .expect("due events"),
        vec![e.id]
    );
    assert_eq!(lock_event(&mut *tx, e.id).await, holding, "the counters");
    let seq = |w: Option<WaitlistEntry>| w.expect("the entry is visible").seq;
    let s2 = seq(tx.waitlist_entry(w2.id).await.expect("entry"));
    let s3 = seq(tx.waitlist_entry(w3.id).await.expect("entry"));
    assert!(s2 < s3, "seq in insertion order: {s2}, {s3}");
    let (w2, w3) = (as_stored(&w2, s2), as_stored(&w3, s3));
    assert_eq!(
        tx.waitlist_entry(w2.id).await.expect("entry"),
        Some(w2.clone())
    );
    assert_eq!(
        tx.live_waitlist_entry(e.id, u3.id)
            .await
            .expect("live entry"),
        Some(w3.clone())
    );
    assert_eq!(
        tx.waitlist(e.id, &[WaitlistStatus::Waiting])
            .await
            .expect("waitlist"),
        vec![w2.clone(), w3.clone()]
    );

    let confirmed = Booking {
        status: BookingStatus::Confirmed,
        held_until: None,
        updated_at: at(30),
        ..held.clone()
    };
    let t = ticket(&confirmed, unique("EVT"));
    let sold = Event {
        seats_held: holding.seats_held - held.quantity,
        seats_confirmed: holding.seats_confirmed + held.quantity,
        version: holding.version + 1,
        ..holding.clone()
    };
    let left = WaitlistEntry {
        status: WaitlistStatus::Left,
        ..w3.clone()
    };
    tx.apply(Changes {
        updated_events: vec![sold.clone()],
        updated_bookings: vec![confirmed.clone()],
        updated_waitlist_entries: vec![left.clone()],
        new_tickets: vec![t.clone()],
        ..Changes::default()
    })
    .await
    .expect("apply the second change set");

    let mut open = Some(tx);
    for when in ["before commit", "after commit"] {
        let mut tx = match open.take() {
            Some(tx) => tx,
            None => read(&store).await,
        };
        assert_eq!(
            tx.booking(held.id).await.expect("by id"),
            Some(confirmed.clone()),
            "{when}"
        );
        assert_eq!(
            tx.booking_by_idempotency_key(u.id, key)
                .await
                .expect("by key"),
            Some(confirmed.clone()),
            "{when}"
        );
        assert!(
            tx.expired_holds(e.id, at(600), 10)
                .await
                .expect("due holds")
                .is_empty(),
            "{when}: no longer held"
        );
        assert_eq!(
            tx.tickets_for_booking(held.id).await.expect("tickets"),
            vec![t.clone()],
            "{when}"
        );
        let event = tx.event(e.id, LockMode::None).await.expect("the event");
        assert_eq!(event, Some(sold.clone()), "{when}: the counters");
        assert_eq!(
            tx.waitlist(e.id, &[WaitlistStatus::Waiting])
                .await
                .expect("waitlist"),
            vec![w2.clone()],
            "{when}"
        );
        assert_eq!(
            tx.live_waitlist_entry(e.id, u3.id)
                .await
                .expect("live entry"),
            None,
            "{when}"
        );
        assert_eq!(
            tx.waitlist_entry(w3.id).await.expect("entry"),
            Some(left.clone()),
            "{when}"
        );
        if when == "before commit" {
            tx.commit().await.expect("commit");
        }
    }
}

/// Later parts of one change set apply over earlier ones: a user, an event, a waitlist entry and a
/// booking inserted and updated in the same change set end as the update says (the booking confirmed,
/// no longer held, the entry accepted with the booking as its offer); a notification marked sent twice
/// keeps the first time; a channel recorded twice is listed once; a push subscription upserted twice
/// has the second keys, and one upserted then removed is gone.
pub async fn an_update_after_an_insert_in_one_change_set(store: Arc<dyn Store>) {
    let (u, f) = (user("fresh"), event(10));
    let w = entry(&u, &f);
    let b = Booking {
        idempotency_key: Some(unique("fresh")),
        source: BookingSource::WaitlistOffer(w.id),
        ..hold(&u, &f, at(600))
    };
    let renamed = User {
        name: "Renamed at once".into(),
        role: evently_core::Role::User,
        attributes: Default::default(),
        ..u.clone()
    };
    let counted = Event {
        name: "Edited at once".into(),
        seats_confirmed: b.quantity,
        version: f.version + 1,
        updated_at: at(77),
        ..f.clone()
    };
    let confirmed = Booking {
        status: BookingStatus::Confirmed,
        held_until: None,
        updated_at: at(77),
        ..b.clone()
    };
    let accepted = WaitlistEntry {
        status: WaitlistStatus::Accepted,
        notified_at: Some(at(3)),
        offer_expires_at: Some(at(1800)),
        offer_booking_id: Some(b.id),
        ..w.clone()
    };
    let n = notification(&u, at(1));
    let (kept, gone) = (
        format!("https://push.example/{}", unique("kept")),
        format!("https://push.example/{}", unique("gone")),
    );
    let second_keys = evently_core::PushSubscription {
        p256dh: "BSecond".into(),
        auth: "second-auth".into(),
        ..push(&u, &kept)
    };
    let mut tx = begin(&store).await;
    tx.apply(Changes {
        new_users: vec![u.clone()],
        updated_users: vec![renamed.clone()],
        new_events: vec![f.clone()],
        updated_events: vec![counted.clone()],
        new_waitlist_entries: vec![w.clone()],
        new_bookings: vec![b.clone()],
        updated_bookings: vec![confirmed.clone()],
        updated_waitlist_entries: vec![accepted.clone()],
        new_notifications: vec![n.clone()],
        notifications_sent: vec![(n.id, at(8)), (n.id, at(9))],
        deliveries: vec![
            delivery(n.id, "email", at(8)),
            delivery(n.id, "email", at(9)),
        ],
        push_subscriptions: vec![push(&u, &kept), second_keys.clone(), push(&u, &gone)],
        removed_push_subscriptions: vec![gone],
        ..Changes::default()
    })
    .await
    .expect("apply");
    tx.commit().await.expect("commit");

    let mut tx = read(&store).await;
    let seq = tx
        .waitlist_entry(w.id)
        .await
        .expect("entry")
        .expect("the entry")
        .seq;
    let sent = Notification {
        sent_at: Some(at(8)),
        ..n.clone()
    };
    for r in [
        Rec::User(renamed),
        Rec::Event(counted),
        Rec::Booking(confirmed),
        Rec::Entry(as_stored(&accepted, seq)),
        Rec::Notification(sent),
    ] {
        assert_eq!(fetch(&mut *tx, &r).await.as_ref(), Some(&r), "as updated");
        assert_eq!(
            fetch_indexed(&mut *tx, &r).await.as_ref(),
            Some(&r),
            "as updated, indexed"
        );
    }
    assert!(
        tx.expired_holds(f.id, at(100_000), 10)
            .await
            .expect("due holds")
            .is_empty(),
        "the confirmed booking is no longer held"
    );
    assert_eq!(
        tx.notification_deliveries(n.id).await.expect("deliveries"),
        vec!["email".to_owned()]
    );
    let subs: Vec<_> = tx
        .push_subscriptions_for_user(u.id)
        .await
        .expect("push subscriptions")
        .into_iter()
        .map(|s| (s.endpoint, s.p256dh, s.auth))
        .collect();
    assert_eq!(
        subs,
        vec![(kept, second_keys.p256dh, second_keys.auth)],
        "push subscriptions"
    );
}

/// The store numbers waitlist entries itself, ignoring the `seq` they are given: entries of one change
/// set get strictly increasing `seq` in the order listed (across events too), and entries of later
/// change sets, in the same transaction or a later one, get greater ones.
pub async fn waitlist_entries_get_increasing_seq(store: Arc<dyn Store>) {
    let (_, e) = seed(&store, 10).await;
    let other = event(10);
    let users: Vec<User> = (0..5).map(|i| user(&format!("seq{i}"))).collect();
    let mut recs: Vec<Rec> = users.iter().map(|u| Rec::User(u.clone())).collect();
    recs.push(Rec::Event(other.clone()));
    put(&store, &mut recs).await;

    // Given numbers in no order at all: the store's count from its own.
    let given = |u: &User, event: &Event, seq: i64| WaitlistEntry {
        seq,
        ..entry(u, event)
    };
    let first = vec![
        given(&users[0], &e, 1_000_000),
        given(&users[1], &other, 7),
        given(&users[2], &e, -3),
        given(&users[3], &e, 0),
    ];
    let mut tx = begin(&store).await;
    tx.apply(Changes {
        new_waitlist_entries: first.clone(),
        ..Changes::default()
    })
    .await
    .expect("apply");
    tx.commit().await.expect("commit");
    let mut tx = begin(&store).await;
    let later = [given(&users[4], &e, 1), given(&users[0], &other, 1)];
    for w in &later {
        tx.apply(Changes {
            new_waitlist_entries: vec![w.clone()],
            ..Changes::default()
        })
        .await
        .expect("apply");
    }
    tx.commit().await.expect("commit");

    let mut tx = read(&store).await;
    let mut seqs = Vec::new();
    for w in first.iter().chain(&later) {
        let stored = tx
            .waitlist_entry(w.id)
            .await
            .expect("entry")
            .expect("the entry");
        seqs.push(stored.seq);
    }
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "seq not increasing in insertion order: {seqs:?}"
    );
    let ids: Vec<_> = tx
        .waitlist(e.id, &[WaitlistStatus::Waiting])
        .await
        .expect("waitlist")
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(
        ids,
        vec![first[0].id, first[2].id, first[3].id, later[0].id]
    );
}

/// A user has at most one live (waiting or offered) waitlist entry per event
/// (`waitlist_entries_one_live_per_user`), also within one change set; a left or expired entry does
/// not block a new one, and other events are independent.
pub async fn one_live_waitlist_entry_per_user_and_event(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let refusal = Refusal::Unique("waitlist_entries_one_live_per_user");
    let twice = Changes {
        new_waitlist_entries: vec![entry(&u, &e), entry(&u, &e)],
        ..Changes::default()
    };
    refuse_changes(&store, twice, refusal, "two entries in a change set").await;
    let mut first = [Rec::Entry(entry(&u, &e))];
    put(&store, &mut first).await;
    refuse(
        &store,
        Rec::Entry(entry(&u, &e)),
        refusal,
        "second waiting entry",
    )
    .await;

    // Offered is live too; once it expires a new entry is allowed.
    let Rec::Entry(w) = &first[0] else {
        unreachable!()
    };
    let offer = hold(&u, &e, at(1800));
    let offered = WaitlistEntry {
        status: WaitlistStatus::Offered,
        offer_booking_id: Some(offer.id),
        offer_expires_at: offer.held_until,
        notified_at: Some(at(0)),
        ..w.clone()
    };
    let mut tx = begin(&store).await;
    tx.apply(Changes {
        new_bookings: vec![offer],
        updated_waitlist_entries: vec![offered.clone()],
        ..Changes::default()
    })
    .await
    .expect("offer");
    tx.commit().await.expect("commit");
    refuse(
        &store,
        Rec::Entry(entry(&u, &e)),
        refusal,
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
    drop(tx);

    // An update may not make a second live entry either.
    let revived = WaitlistEntry {
        status: WaitlistStatus::Waiting,
        ..w2.clone()
    };
    let revive = Changes {
        updated_waitlist_entries: vec![revived],
        ..Changes::default()
    };
    refuse_changes(&store, revive, refusal, "an update to a second live entry").await;
}

async fn set_entry_status(store: &Arc<dyn Store>, w: &WaitlistEntry, to: WaitlistStatus) {
    let mut tx = begin(store).await;
    let next = WaitlistEntry {
        status: to,
        ..w.clone()
    };
    tx.update_waitlist_entry(&next).await.expect("update entry");
    tx.commit().await.expect("commit");
}

/// Bookings, waitlist entries, notifications and push subscriptions of unknown users, bookings and
/// waitlist entries of unknown events, and tickets of unknown bookings are foreign-key violations,
/// each named as in the schema.
pub async fn foreign_keys_are_enforced(store: Arc<dyn Store>) {
    let (u, e) = seed(&store, 10).await;
    let (ghost, nowhere) = (user("ghost"), event(10));
    let cases = [
        (
            Rec::Booking(booking(&ghost, &e, BookingStatus::Confirmed)),
            "bookings_user_id_fkey",
        ),
        (
            Rec::Booking(booking(&u, &nowhere, BookingStatus::Confirmed)),
            "bookings_event_id_fkey",
        ),
        (
            Rec::Entry(entry(&ghost, &e)),
            "waitlist_entries_user_id_fkey",
        ),
        (
            Rec::Entry(entry(&u, &nowhere)),
            "waitlist_entries_event_id_fkey",
        ),
        (
            Rec::Tickets(vec![ticket(
                &booking(&u, &e, BookingStatus::Confirmed),
                unique("EVT"),
            )]),
            "tickets_booking_id_fkey",
        ),
        (
            Rec::Notification(notification(&ghost, at(0))),
            "notifications_user_id_fkey",
        ),
        (
            Rec::Push(push(
                &ghost,
                &format!("https://push.example/{}", unique("ghost")),
            )),
            "push_subscriptions_user_id_fkey",
        ),
    ];
    for (r, name) in cases {
        refuse(&store, r, Refusal::ForeignKey(name), name).await;
    }
}

/// An event update with more seats held and confirmed than the capacity is
/// `events_seats_within_capacity`, and nothing of it is written.
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
            Refusal::Check("events_seats_within_capacity"),
            "11 seats of 10",
        );
    }
    let mut tx = read(&store).await;
    let stored = tx.event(e.id, LockMode::None).await.expect("read event");
    assert_eq!(stored, Some(e));
}

/// `list_events` orders by `starts_at`, then id, and applies `active_only`, `category`, `starts_after`
/// (inclusive), `starts_before` (exclusive), `text` (a substring of the name, venue or description,
/// ASCII letters without case, other characters exactly; `%` and `_` are plain characters), `after`
/// (keyset: strictly after that `(starts_at, id)`), `limit` and `offset`.
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
        Event {
            name: "Late Show at the ÉTOILE".into(),
            ..ev(3, true)
        },
        Event {
            description: "100% acoustic_set".into(),
            ..ev(2, false)
        },
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
        starts_before: None,
        text: None,
        after: None,
        limit: 100,
        offset: 0,
    };
    let text = |t: &str| EventFilter {
        text: Some(t.into()),
        ..filter.clone()
    };
    let cases = [
        (
            EventFilter {
                starts_before: Some(inactive.starts_at),
                ..filter.clone()
            },
            vec![&tie_a, &tie_b],
        ),
        (
            EventFilter {
                after: Some((tie_a.starts_at, tie_a.id)),
                limit: 2,
                ..filter.clone()
            },
            vec![&tie_b, &inactive],
        ),
        (text("late SHOW"), vec![&late]),
        // Only ASCII letters are folded: `é` does not match `É`.
        (text("étoile"), vec![]),
        (text("ÉTOILE"), vec![&late]),
        (text("0% a"), vec![&inactive]),
        (text("c_s"), vec![&inactive]),
        (text("%"), vec![&inactive]),
        (text("a_c"), vec![]),
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
    let made = |who: &User, e: &Event, secs: i64| Booking {
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
        recs.push(Rec::Entry(WaitlistEntry {
            // Later joiners get earlier join times: the order must come from seq.
            joined_at: at(-(i as i64) * 60),
            ..entry(u, target)
        }));
    }
    put(&store, &mut recs).await;
    let entries: Vec<WaitlistEntry> = recs
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
    let cancelled = Booking {
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
    let expired = Booking {
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

/// A notification marked sent keeps the first time it was marked: a second mark, in a later
/// transaction or later in the same change set, changes nothing, and a rolled-back mark is gone;
/// `notifications_for_user` is newest first and respects its limit.
pub async fn notification_marked_sent_once(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let (n0, n1, n2) = (
        notification(&u, at(0)),
        notification(&u, at(1)),
        notification(&u, at(2)),
    );
    let mut recs = [&n1, &n0, &n2].map(|n| Rec::Notification(n.clone()));
    put(&store, &mut recs).await;

    let sent_at = |store: Arc<dyn Store>, id| async move {
        let mut tx = read(&store).await;
        let n = tx
            .notification(id)
            .await
            .expect("read")
            .expect("notification");
        n.sent_at
    };
    let mut tx = begin(&store).await;
    tx.mark_sent(n0.id, at(3)).await.expect("mark");
    tx.rollback().await.expect("rollback");
    assert_eq!(sent_at(store.clone(), n0.id).await, None, "rolled back");
    for when in [at(5), at(9)] {
        let mut tx = begin(&store).await;
        tx.mark_sent(n0.id, when).await.expect("mark");
        tx.commit().await.expect("commit");
        assert_eq!(
            sent_at(store.clone(), n0.id).await,
            Some(at(5)),
            "marked at {when}"
        );
    }
    let mut tx = begin(&store).await;
    tx.apply(Changes {
        notifications_sent: vec![(n1.id, at(6)), (n1.id, at(4))],
        ..Changes::default()
    })
    .await
    .expect("mark twice");
    tx.commit().await.expect("commit");
    assert_eq!(
        sent_at(store.clone(), n1.id).await,
        Some(at(6)),
        "in one change set"
    );
    assert_eq!(sent_at(store.clone(), n2.id).await, None, "never marked");

    let mut tx = read(&store).await;
    let newest = tx
        .notifications_for_user(u.id, &NotificationQuery::newest(2))
        .await
        .expect("list");
    let ids: Vec<_> = newest.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![n2.id, n1.id]);
}

/// A notification marked read keeps the first time (a second mark, later or in the same change set,
/// changes nothing; a rolled-back one is gone); `notifications_for_user` leaves out read ones when
/// asked, and pages by `before`: strictly older by `(created_at, id)`, so notifications made at the
/// same microsecond are neither repeated nor skipped.
pub async fn notification_marked_read_once_and_listed_by_page(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let (other, _) = seed(&store, 1).await;
    // Two at the same time, so the id decides their order.
    let ns = [
        notification(&u, at(0)),
        notification(&u, at(1)),
        notification(&u, at(1)),
        notification(&u, at(2)),
        notification(&other, at(3)),
    ];
    put(&store, &mut ns.clone().map(Rec::Notification)).await;
    let mut order: Vec<_> = ns[..4].iter().collect();
    order.sort_by_key(|n| std::cmp::Reverse((n.created_at, n.id)));
    let list = |store: Arc<dyn Store>, q: NotificationQuery| async move {
        let mut tx = read(&store).await;
        let v = tx.notifications_for_user(u.id, &q).await.expect("list");
        v.into_iter().map(|n| (n.id, n.read_at)).collect::<Vec<_>>()
    };

    let mut tx = begin(&store).await;
    tx.apply(Changes {
        notifications_read: vec![(order[0].id, at(10))],
        ..Changes::default()
    })
    .await
    .expect("mark");
    tx.rollback().await.expect("rollback");
    let all = list(store.clone(), NotificationQuery::newest(10)).await;
    assert!(all.iter().all(|(_, r)| r.is_none()), "rolled back: {all:?}");

    let mut tx = begin(&store).await;
    tx.apply(Changes {
        notifications_read: vec![(order[1].id, at(11)), (order[1].id, at(12))],
        ..Changes::default()
    })
    .await
    .expect("mark twice");
    tx.commit().await.expect("commit");
    let mut tx = begin(&store).await;
    tx.apply(Changes {
        notifications_read: vec![(order[1].id, at(13)), (order[3].id, at(14))],
        ..Changes::default()
    })
    .await
    .expect("mark again");
    tx.commit().await.expect("commit");

    let all = list(store.clone(), NotificationQuery::newest(10)).await;
    assert_eq!(
        all,
        vec![
            (order[0].id, None),
            (order[1].id, Some(at(11))),
            (order[2].id, None),
            (order[3].id, Some(at(14))),
        ],
        "newest first, the first read kept, another user's left out"
    );
    let unread = NotificationQuery {
        unread_only: true,
        ..NotificationQuery::newest(10)
    };
    let ids: Vec<_> = list(store.clone(), unread).await;
    assert_eq!(
        ids,
        vec![(order[0].id, None), (order[2].id, None)],
        "unread only"
    );

    // Pages of one, each after the last of the one before.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = list(
            store.clone(),
            NotificationQuery {
                before,
                ..NotificationQuery::newest(1)
            },
        )
        .await;
        let Some(&(id, _)) = page.first() else { break };
        let n = order.iter().find(|n| n.id == id).expect("one of them");
        before = Some((n.created_at, n.id));
        seen.push(id);
        assert!(seen.len() <= 4, "pages repeat: {seen:?}");
    }
    assert_eq!(seen, order.iter().map(|n| n.id).collect::<Vec<_>>());
    let page = list(
        store.clone(),
        NotificationQuery {
            unread_only: true,
            before: Some((order[1].created_at, order[1].id)),
            ..NotificationQuery::newest(10)
        },
    )
    .await;
    assert_eq!(
        page,
        vec![(order[2].id, None)],
        "unread and before together"
    );
}

/// A delivery is recorded once per channel: a second record of a channel (in a later transaction or
/// the same change set) is no error and leaves one; a rolled-back record is gone;
/// `notification_deliveries` lists channels in name order; an unknown notification is
/// `notification_deliveries_notification_id_fkey`; an empty channel, or one over 64 characters, is
/// `notification_deliveries_channel_check`.
pub async fn notification_deliveries_recorded_once(store: Arc<dyn Store>) {
    let (u, _) = seed(&store, 1).await;
    let n = notification(&u, at(0));
    put(&store, &mut [Rec::Notification(n.clone())]).await;
    let channels = |store: Arc<dyn Store>, id| async move {
        let mut tx = read(&store).await;
        tx.notification_deliveries(id).await.expect("list")
    };

    for when in [at(1), at(2)] {
        let mut tx = begin(&store).await;
        tx.record_delivery(n.id, "push", when)
            .await
            .expect("record");
        tx.commit().await.expect("commit");
        assert_eq!(channels(store.clone(), n.id).await, vec!["push".to_owned()]);
    }
    let mut tx = begin(&store).await;
    tx.record_delivery(n.id, "webhook", at(2))
        .await
        .expect("record");
    tx.rollback().await.expect("rollback");
    let longest = "x".repeat(64);
    let mut tx = begin(&store).await;
    tx.apply(Changes {
        deliveries: vec![
            delivery(n.id, "email", at(3)),
            delivery(n.id, &longest, at(3)),
            delivery(n.id, "email", at(4)),
        ],
        ..Changes::default()
    })
    .await
    .expect("record");
    tx.commit().await.expect("commit");
    assert_eq!(
        channels(store.clone(), n.id).await,
        vec!["email".to_owned(), "push".to_owned(), longest]
    );
    let other = notification(&u, at(4));
    assert!(channels(store.clone(), other.id).await.is_empty());

    let refused = [
        (
            delivery(n.id, "", at(5)),
            Refusal::Check("notification_deliveries_channel_check"),
            "empty channel",
        ),
        (
            delivery(n.id, &"y".repeat(65), at(5)),
            Refusal::Check("notification_deliveries_channel_check"),
            "65 characters",
        ),
        (
            delivery(other.id, "email", at(5)),
            Refusal::ForeignKey("notification_deliveries_notification_id_fkey"),
            "unknown notification",
        ),
    ];
    for (d, refusal, what) in refused {
        let mut tx = begin(&store).await;
        assert_refused(
            tx.record_delivery(d.notification_id, &d.channel, d.at)
                .await,
            refusal,
            what,
        );
    }
    assert_eq!(
        channels(store.clone(), n.id).await.len(),
        3,
        "refused records"
    );
}

/// Upserting a push subscription replaces the keys and owner of the one with the same endpoint;
/// removing one deletes it on commit, not in a dropped transaction, and removing an endpoint that has
/// none is no error.
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

    let endpoints = |store: Arc<dyn Store>, who| async move {
        let mut tx = read(&store).await;
        let subs = tx.push_subscriptions_for_user(who).await.expect("list");
        subs.into_iter()
            .map(|s| (s.user_id, s.endpoint, s.p256dh, s.auth))
            .collect::<Vec<_>>()
    };
    assert!(endpoints(store.clone(), alice.id).await.is_empty());
    let bobs = vec![(
        bob.id,
        endpoint.clone(),
        "BMoved".to_owned(),
        "moved-auth".to_owned(),
    )];
    assert_eq!(endpoints(store.clone(), bob.id).await, bobs);

    {
        let mut tx = begin(&store).await;
        tx.remove_push(&endpoint).await.expect("remove");
    }
    assert_eq!(
        endpoints(store.clone(), bob.id).await,
        bobs,
        "dropped removal"
    );
    for _ in 0..2 {
        let mut tx = begin(&store).await;
        tx.remove_push(&endpoint).await.expect("remove");
        tx.commit().await.expect("commit");
        assert!(endpoints(store.clone(), bob.id).await.is_empty());
    }
}
