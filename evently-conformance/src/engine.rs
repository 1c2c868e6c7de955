//! Cases that run the engine on the store, so every backend is held to the same booking rules.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use evently_core::ports::{Delivery, NotifyError};
use evently_core::{
    Actor, Booking, BookingRequest, BookingSource, BookingStatus, Error, Event, EventPatch,
    Evently, ManualClock, NewEvent, NewUser, NotificationId, NotificationKind, Notifier, Role,
    Store, WaitlistEntry, WaitlistStatus,
};

use super::fixtures::{money, read, t0, unique};

/// Asserts, in one read snapshot of `store`, that each event's seat counters equal the seats of its
/// held and confirmed bookings and stay within its capacity: the check to make after anything that
/// may have cut an operation short (a crash, a dropped future, a killed connection).
pub async fn assert_counters_match_bookings(store: &dyn Store, events: &[evently_core::EventId]) {
    let mut tx = store.begin_read().await.expect("begin a read transaction");
    for &id in events {
        let event = tx
            .event(id, evently_core::LockMode::None)
            .await
            .expect("read the event")
            .expect("the event exists");
        let bookings = tx
            .bookings_for_event(id)
            .await
            .expect("the event's bookings");
        let seats = |status: BookingStatus| -> u32 {
            bookings
                .iter()
                .filter(|b| b.status == status)
                .map(|b| b.quantity)
                .sum()
        };
        assert_eq!(
            (event.seats_held, event.seats_confirmed),
            (seats(BookingStatus::Held), seats(BookingStatus::Confirmed)),
            "event {id}: seat counters (held, confirmed) out of step with its bookings"
        );
        assert!(
            event.seats_held + event.seats_confirmed <= event.capacity,
            "event {id}: more seats taken than its capacity"
        );
    }
}

/// An engine on the store under test, stopped at `t0`, with an administrator.
struct Harness {
    engine: Evently,
    clock: Arc<ManualClock>,
    admin: Actor,
}

impl Harness {
    async fn new(store: Arc<dyn Store>) -> Self {
        Self::with_notifiers(store, Vec::new()).await
    }

    async fn with_notifiers(store: Arc<dyn Store>, notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = notifiers
            .into_iter()
            .fold(Evently::builder().store(store), |b, n| b.notifier(n))
            .clock(clock.clone())
            .build()
            .expect("build the engine");
        let admin = Self::register(&engine, "admin", Role::Admin).await;
        Self {
            engine,
            clock,
            admin,
        }
    }

    async fn register(engine: &Evently, tag: &str, role: Role) -> Actor {
        let u = engine
            .register_user(NewUser {
                email: format!("{}@example.com", unique(tag)),
                name: format!("User {tag}"),
                password_hash: "$argon2id$stub".into(),
                role,
                attributes: Default::default(),
            })
            .await
            .expect("register a user");
        Actor::new(u.id, u.role)
    }

    async fn user(&self, tag: &str) -> Actor {
        Self::register(&self.engine, tag, Role::User).await
    }

    async fn users(&self, n: usize) -> Vec<Actor> {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(self.user(&format!("u{i}")).await);
        }
        v
    }

    /// An event of `capacity` seats a week from now, 15 EUR a seat.
    async fn event(&self, capacity: u32) -> Event {
        let starts_at = self.engine.now() + Duration::days(7);
        self.engine
            .create_event(
                &self.admin,
                NewEvent {
                    name: "Conformance gig".into(),
                    description: String::new(),
                    venue: "Club".into(),
                    category: unique("engine"),
                    starts_at,
                    ends_at: starts_at + Duration::hours(3),
                    capacity,
                    price: money(1500, "EUR"),
                },
            )
            .await
            .expect("create an event")
    }

    async fn book(&self, who: &Actor, event: &Event, quantity: u32) -> Booking {
        let req = BookingRequest::new(event.id, quantity);
        self.engine.book(who, req).await.expect("book")
    }

    /// Checks the seat counters against the bookings: held seats are the quantities of held bookings,
    /// confirmed seats those of confirmed ones. Returns `(held, confirmed, available)`.
    async fn seats(&self, event: &Event) -> (u32, u32, u32) {
        let e = self.engine.event(event.id).await.expect("read the event");
        let bookings = self
            .engine
            .event_bookings(&self.admin, event.id)
            .await
            .expect("list the event's bookings");
        let sum = |s: BookingStatus| {
            bookings
                .iter()
                .filter(|b| b.status == s)
                .map(|b| b.quantity)
                .sum::<u32>()
        };
        assert_eq!(
            (e.seats_held, e.seats_confirmed),
            (sum(BookingStatus::Held), sum(BookingStatus::Confirmed)),
            "seat counters out of step with the bookings"
        );
        (e.seats_held, e.seats_confirmed, e.seats_free())
    }

    /// The stored waitlist entry (any status).
    async fn entry(&self, entry: &WaitlistEntry) -> WaitlistEntry {
        let mut tx = read(self.engine.store()).await;
        tx.waitlist_entry(entry.id)
            .await
            .expect("read the entry")
            .expect("entry exists")
    }

    /// The actor's live entry, asserting its status and position.
    async fn live(
        &self,
        who: &Actor,
        event: &Event,
        status: WaitlistStatus,
        position: Option<u32>,
    ) -> WaitlistEntry {
        let w = self
            .engine
            .waitlist_position(who, event.id)
            .await
            .expect("live waitlist entry");
        assert_eq!((w.status, w.position), (status, position), "{w:?}");
        w
    }

    /// The held booking carrying an open offer, checked against the entry.
    async fn offer(&self, who: &Actor, w: &WaitlistEntry) -> Booking {
        let id = w
            .offer_booking_id
            .expect("an offered entry names its booking");
        let b = self.engine.booking(who, id).await.expect("offer booking");
        assert_eq!(
            (b.status, b.source, b.held_until, b.quantity),
            (
                BookingStatus::Held,
                BookingSource::WaitlistOffer(w.id),
                w.offer_expires_at,
                w.quantity
            )
        );
        b
    }
}

fn expect_err<T: std::fmt::Debug>(
    r: evently_core::Result<T>,
    pred: impl Fn(&Error) -> bool,
    what: &str,
) {
    match r {
        Err(e) if pred(&e) => {}
        other => panic!("{what}: unexpected outcome {other:?}"),
    }
}

/// 1,000 concurrent one-seat bookings (by 50 users) of an event with 100 seats: exactly 100 are
/// confirmed, 900 are `SoldOut`, and the counters and the bookings agree.
pub async fn engine_never_oversells(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(100).await;
    let users = h.users(50).await;
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (engine, actor) = (h.engine.clone(), users[i % users.len()]);
            tokio::spawn(async move { engine.book(&actor, BookingRequest::new(ev.id, 1)).await })
        })
        .collect();
    let (mut ok, mut sold_out) = (0, 0);
    for t in tasks {
        match t.await.expect("task panicked") {
            Ok(b) if b.status == BookingStatus::Confirmed => ok += 1,
            Err(Error::SoldOut { .. }) => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((ok, sold_out), (100, 900));
    assert_eq!(h.seats(&ev).await, (0, 100, 0));
    let bookings = h
        .engine
        .event_bookings(&h.admin, ev.id)
        .await
        .expect("list");
    assert_eq!(bookings.len(), 100);
}

/// Requests that share a transaction (the engine combines concurrent requests for one event, up to
/// [`EngineConfig::max_batch`](evently_core::EngineConfig::max_batch)) do not decide each other's
/// outcome: 400 concurrent bookings, one in ten by a user the store does not know (its insert
/// fails the foreign key and aborts whatever batch it is in). Every good request is confirmed, every
/// bad one is `NotFound` for its user, and the counters equal the bookings.
pub async fn engine_bad_request_in_a_shared_batch_decides_only_itself(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(10_000).await;
    let good = h.user("good").await;
    let ghost = Actor::new(evently_core::UserId::new(), Role::User);
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let engine = h.engine.clone();
            let actor = if i % 10 == 0 { ghost } else { good };
            tokio::spawn(async move {
                let outcome = engine.book(&actor, BookingRequest::new(ev.id, 1)).await;
                (actor == ghost, outcome)
            })
        })
        .collect();
    let mut confirmed = 0;
    for t in tasks {
        match t.await.expect("task panicked") {
            (false, Ok(b)) if b.status == BookingStatus::Confirmed => confirmed += 1,
            (
                true,
                Err(Error::NotFound {
                    entity: evently_core::Entity::User,
                    ..
                }),
            ) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(confirmed, 360);
    assert_eq!(h.seats(&ev).await, (0, 360, 9_640));
}

/// The same idempotency key sent 50 times at once creates one booking, and every call returns it; the
/// key with another quantity is a `Conflict`; another user's same key is theirs.
pub async fn engine_idempotent_booking(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(10).await;
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let key = unique("retry");
    let req = BookingRequest::new(ev.id, 2).idempotency_key(key.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (engine, req) = (h.engine.clone(), req.clone());
            tokio::spawn(async move { engine.book_reporting_replay(&alice, req).await })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut new = 0;
    for t in tasks {
        let r = t
            .await
            .expect("task panicked")
            .expect("every retry succeeds");
        new += usize::from(!r.replayed);
        ids.insert(r.booking.id);
    }
    assert_eq!(ids.len(), 1, "one booking for one key: {ids:?}");
    assert_eq!(new, 1, "exactly one call made the booking, 49 replayed it");
    assert_eq!(h.seats(&ev).await, (0, 2, 8));
    let again = h
        .engine
        .book_reporting_replay(&alice, req.clone())
        .await
        .expect("replay");
    assert!(again.replayed && ids.contains(&again.booking.id));

    let other = BookingRequest::new(ev.id, 3).idempotency_key(key.clone());
    expect_err(
        h.engine.book(&alice, other).await,
        |e| matches!(e, Error::Conflict { .. }),
        "key reused for 3 seats",
    );
    let theirs = h.engine.book(&bob, req).await.expect("bob's own key");
    assert!(!ids.contains(&theirs.id));
    assert_eq!(h.seats(&ev).await, (0, 4, 6));
}

/// With a `ManualClock`: confirming a hold that ran out is `HoldExpired` and frees its seats;
/// `expire_holds` frees the seats of unconfirmed holds. Nothing sleeps.
pub async fn engine_hold_expiry(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(3).await;
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let ttl = std::time::Duration::from_secs(60);
    let held = h
        .engine
        .hold(&alice, BookingRequest::new(ev.id, 2).hold_for(ttl))
        .await
        .expect("hold");
    assert_eq!(held.held_until, Some(t0() + Duration::seconds(60)));
    assert_eq!(h.seats(&ev).await, (2, 0, 1));
    expect_err(
        h.engine.book(&bob, BookingRequest::new(ev.id, 2)).await,
        |e| matches!(e, Error::SoldOut { .. }),
        "seats held",
    );

    h.clock.advance(Duration::seconds(61));
    expect_err(
        h.engine.confirm(&alice, held.id).await,
        |e| matches!(e, Error::HoldExpired { .. }),
        "late confirm",
    );
    assert_eq!(h.seats(&ev).await, (0, 0, 3));
    let b = h.engine.booking(&alice, held.id).await.expect("booking");
    assert_eq!((b.status, b.held_until), (BookingStatus::Expired, None));

    let second = h
        .engine
        .hold(&bob, BookingRequest::new(ev.id, 3).hold_for(ttl))
        .await
        .expect("hold");
    assert_eq!(h.engine.expire_holds().await.expect("expire"), 0, "not yet");
    h.clock.advance(Duration::seconds(60));
    assert_eq!(h.engine.expire_holds().await.expect("expire"), 1);
    assert_eq!(h.seats(&ev).await, (0, 0, 3));
    let b = h.engine.booking(&bob, second.id).await.expect("booking");
    assert_eq!(b.status, BookingStatus::Expired);
    // The sweep tells the holder, in the same transaction.
    let told: Vec<_> = h
        .engine
        .notifications(&bob, evently_core::NotificationQuery::newest(50))
        .await
        .expect("notifications")
        .into_iter()
        .filter(|n| n.kind == NotificationKind::HoldExpired)
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].booking_id, Some(second.id));
    assert_eq!(told[0].event_id, Some(ev.id));
    assert_eq!(h.book(&bob, &ev, 3).await.status, BookingStatus::Confirmed);
}

/// Sold out; three users join (positions 1, 2, 3); the middle one leaves (1, 2); a cancellation offers
/// the seat to the first as a held booking; the offer runs out and passes to the next, who accepts it.
/// The seat counters match the bookings at every step.
pub async fn engine_waitlist_promotion(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(2).await;
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let to_cancel = h.book(&alice, &ev, 1).await;
    h.book(&bob, &ev, 1).await;
    let w = h.users(3).await;
    for (i, u) in w.iter().enumerate() {
        let e = h.engine.join_waitlist(u, ev.id, 1).await.expect("join");
        assert_eq!(
            (e.status, e.position),
            (WaitlistStatus::Waiting, Some(i as u32 + 1))
        );
    }
    h.engine.leave_waitlist(&w[1], ev.id).await.expect("leave");
    h.live(&w[0], &ev, WaitlistStatus::Waiting, Some(1)).await;
    h.live(&w[2], &ev, WaitlistStatus::Waiting, Some(2)).await;
    let listed = h.engine.waitlist(&h.admin, ev.id).await.expect("waitlist");
    let positions: Vec<_> = listed.iter().map(|e| (e.user_id, e.position)).collect();
    assert_eq!(
        positions,
        vec![(w[0].user_id, Some(1)), (w[2].user_id, Some(2))]
    );
    assert_eq!(h.seats(&ev).await, (0, 2, 0));

    h.engine.cancel(&alice, to_cancel.id).await.expect("cancel");
    let first = h.live(&w[0], &ev, WaitlistStatus::Offered, None).await;
    let offer_ttl = Duration::from_std(h.engine.config().offer_ttl).expect("offer ttl");
    assert_eq!(first.offer_expires_at, Some(t0() + offer_ttl));
    let first_offer = h.offer(&w[0], &first).await;
    h.live(&w[2], &ev, WaitlistStatus::Waiting, Some(1)).await;
    assert_eq!(h.seats(&ev).await, (1, 1, 0));

    h.clock.advance(offer_ttl + Duration::seconds(1));
    assert!(h.engine.expire_holds().await.expect("expire") >= 1);
    assert_eq!(h.entry(&first).await.status, WaitlistStatus::Expired);
    let b = h
        .engine
        .booking(&w[0], first_offer.id)
        .await
        .expect("booking");
    assert_eq!(b.status, BookingStatus::Expired);
    let kinds: Vec<_> = h
        .engine
        .notifications(&w[0], evently_core::NotificationQuery::newest(50))
        .await
        .expect("notifications")
        .iter()
        .map(|n| n.kind)
        .collect();
    assert!(
        kinds.contains(&NotificationKind::WaitlistOffer)
            && kinds.contains(&NotificationKind::WaitlistOfferExpired),
        "{kinds:?}"
    );
    let next = h.live(&w[2], &ev, WaitlistStatus::Offered, None).await;
    h.offer(&w[2], &next).await;
    assert_eq!(h.seats(&ev).await, (1, 1, 0));

    let accepted = h.engine.accept_offer(&w[2], ev.id).await.expect("accept");
    assert_eq!(
        (accepted.status, accepted.held_until),
        (BookingStatus::Confirmed, None)
    );
    assert_eq!(h.entry(&next).await.status, WaitlistStatus::Accepted);
    assert_eq!(
        h.engine
            .tickets(&w[2], accepted.id)
            .await
            .expect("tickets")
            .len(),
        1
    );
    assert_eq!(h.seats(&ev).await, (0, 2, 0));
}

/// A notifier for [`engine_retry_skips_delivered_channels`]: counts calls per notification and fails
/// the first `fail_first` of them transiently.
struct Scripted {
    name: &'static str,
    fail_first: AtomicU32,
    calls: Mutex<Vec<NotificationId>>,
}

impl Scripted {
    fn new(name: &'static str, fail_first: u32) -> Arc<Self> {
        Arc::new(Self {
            name,
            fail_first: AtomicU32::new(fail_first),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<NotificationId> {
        self.calls.lock().expect("calls").clone()
    }
}

#[async_trait::async_trait]
impl Notifier for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    async fn notify(&self, delivery: Delivery<'_>) -> Result<(), NotifyError> {
        self.calls
            .lock()
            .expect("calls")
            .push(delivery.notification.id);
        let failing = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            Err(NotifyError::Transient("scripted outage".into()))
        } else {
            Ok(())
        }
    }
}

/// A delivery retried because one channel failed goes only through the channels still missing: the
/// channel that succeeded the first time is not called again, and the notification is sent once all are.
pub async fn engine_retry_skips_delivered_channels(store: Arc<dyn Store>) {
    let (email, push) = (Scripted::new("email", 0), Scripted::new("push", 1));
    let h = Harness::with_notifiers(store, vec![email.clone(), push.clone()]).await;
    // The administrator's registration recorded one welcome notification and its delivery job.
    let first = h.engine.run_jobs(10).await.expect("run jobs");
    assert_eq!((first.claimed, first.retried), (1, 1), "{first:?}");
    let [id] = email.calls()[..] else {
        panic!("e-mail calls: {:?}", email.calls());
    };
    let mut tx = read(h.engine.store()).await;
    assert_eq!(
        tx.notification_deliveries(id).await.expect("deliveries"),
        vec!["email".to_owned()]
    );
    assert!(
        tx.notification(id)
            .await
            .expect("read")
            .expect("exists")
            .sent_at
            .is_none()
    );
    drop(tx);

    // Nothing is due until the backoff has passed.
    assert_eq!(h.engine.run_jobs(10).await.expect("run jobs").claimed, 0);
    h.clock.advance(Duration::hours(2));
    let second = h.engine.run_jobs(10).await.expect("run jobs");
    assert_eq!((second.claimed, second.succeeded), (1, 1), "{second:?}");
    assert_eq!(email.calls(), vec![id], "e-mail must not be sent twice");
    assert_eq!(push.calls(), vec![id, id]);
    let mut tx = read(h.engine.store()).await;
    assert_eq!(
        tx.notification_deliveries(id).await.expect("deliveries"),
        vec!["email".to_owned(), "push".to_owned()]
    );
    let n = tx.notification(id).await.expect("read").expect("exists");
    assert!(n.sent_at.is_some(), "sent once every channel delivered");
}

/// Cancelling a cancelled booking returns it unchanged and frees nothing more.
pub async fn engine_cancel_twice_frees_seats_once(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(5).await;
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let mine = h.book(&alice, &ev, 2).await;
    h.book(&bob, &ev, 1).await;
    let held = h
        .engine
        .hold(&bob, BookingRequest::new(ev.id, 1))
        .await
        .expect("hold");
    assert_eq!(h.seats(&ev).await, (1, 3, 1));
    for id in [mine.id, mine.id, held.id, held.id] {
        let c = h.engine.cancel(&h.admin, id).await.expect("cancel");
        assert_eq!(c.status, BookingStatus::Cancelled);
    }
    assert_eq!(h.seats(&ev).await, (0, 1, 4));
}

/// Confirming a confirmed booking returns it unchanged: no second set of tickets, no seat moved.
pub async fn engine_confirm_twice_is_idempotent(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(5).await;
    let alice = h.user("alice").await;
    let held = h
        .engine
        .hold(&alice, BookingRequest::new(ev.id, 3))
        .await
        .expect("hold");
    let once = h.engine.confirm(&alice, held.id).await.expect("confirm");
    let twice = h
        .engine
        .confirm(&alice, held.id)
        .await
        .expect("confirm again");
    assert_eq!(once, twice);
    assert_eq!(once.status, BookingStatus::Confirmed);
    assert_eq!(
        h.engine
            .tickets(&alice, held.id)
            .await
            .expect("tickets")
            .len(),
        3
    );
    assert_eq!(h.seats(&ev).await, (0, 3, 2));
}

/// An event edit made against a stale version is a `Conflict` and overwrites nothing.
pub async fn engine_stale_event_update_is_a_conflict(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(5).await;
    let patch = |name: &str| EventPatch {
        expected_version: ev.version,
        name: Some(name.into()),
        ..EventPatch::default()
    };
    let first = h
        .engine
        .update_event(&h.admin, ev.id, patch("First edit"))
        .await
        .expect("edit");
    assert_eq!(first.version, ev.version + 1);
    expect_err(
        h.engine
            .update_event(&h.admin, ev.id, patch("Stale edit"))
            .await,
        |e| matches!(e, Error::Conflict { .. }),
        "stale version",
    );
    assert_eq!(h.engine.event(ev.id).await.expect("event"), first);
}

/// A booking confirmation records what was booked, as data: the event, the booking, its seats and
/// the total it cost when it was booked, also after the event's price changed between two bookings.
pub async fn engine_confirmation_follows_event_edits(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    let ev = h.event(10).await;
    let buyer = h.user("buyer").await;
    let facts_of = |b: Booking| {
        let engine = h.engine.clone();
        async move {
            let all = engine
                .notifications(&buyer, evently_core::NotificationQuery::newest(50))
                .await
                .expect("list notifications");
            let n = all
                .into_iter()
                .find(|n| {
                    n.kind == NotificationKind::BookingConfirmed && n.booking_id == Some(b.id)
                })
                .expect("the booking's confirmation");
            (n.event_id, n.seats, n.total)
        }
    };
    for quantity in [2, 1] {
        let b = h.book(&buyer, &ev, quantity).await;
        assert_eq!(
            facts_of(b).await,
            (
                Some(ev.id),
                Some(quantity),
                Some(money(1500 * i64::from(quantity), "EUR"))
            )
        );
    }
    let edited = h
        .engine
        .update_event(
            &h.admin,
            ev.id,
            EventPatch {
                expected_version: ev.version,
                name: Some("Renamed gig".into()),
                price: Some(money(2000, "EUR")),
                ..EventPatch::default()
            },
        )
        .await
        .expect("edit the event");
    for quantity in [1, 3] {
        let b = h.book(&buyer, &edited, quantity).await;
        assert_eq!(b.total_price, money(2000 * i64::from(quantity), "EUR"));
        assert_eq!(
            facts_of(b.clone()).await,
            (Some(ev.id), Some(quantity), Some(b.total_price))
        );
    }
}
