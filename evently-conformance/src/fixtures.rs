//! Records with non-default values, one-record writes built on [`Transaction::apply`], and generic
//! insert / read-back / update helpers over the records, so each case states only what it checks.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use evently_core::ports::DeliveryRecord;
use evently_core::{
    Booking, BookingId, BookingSource, BookingStatus, Changes, Currency, Event, EventFilter,
    EventId, Job, JobPayload, Money, NewJob, Notification, NotificationId, NotificationKind,
    NotificationQuery, PushSubscription, PushSubscriptionId, Role, Store, StoreError, Ticket,
    TicketId, Transaction, User, UserId, WaitlistEntry, WaitlistEntryId, WaitlistStatus,
};
use uuid::Uuid;

/// The suite's fixed "now": whole microseconds, as SQL stores keep them.
pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap() + Duration::microseconds(123_456)
}

/// `t0` plus `secs` seconds.
pub(super) fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

/// An amount in `code`.
pub(super) fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::new(code).unwrap())
}

/// A string no other record of this run uses.
pub(super) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

/// Begins a read-write transaction.
pub(super) async fn begin(store: &Arc<dyn Store>) -> Box<dyn Transaction> {
    store.begin().await.expect("begin a transaction")
}

/// Begins a read transaction.
pub(super) async fn read(store: &Arc<dyn Store>) -> Box<dyn Transaction> {
    store.begin_read().await.expect("begin a read transaction")
}

/// The error a refused write must report: its kind and the constraint's name as in `migrations/`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    Unique(&'static str),
    ForeignKey(&'static str),
    Check(&'static str),
}

/// Asserts `r` failed with the kind of error and the constraint name `refusal` says; `what` names the
/// case in the message.
pub(super) fn assert_refused<T: Debug>(r: Result<T, StoreError>, refusal: Refusal, what: &str) {
    let ok = match (&r, refusal) {
        (Err(StoreError::UniqueViolation { constraint }), Refusal::Unique(name))
        | (Err(StoreError::ForeignKeyViolation { constraint }), Refusal::ForeignKey(name))
        | (Err(StoreError::CheckViolation { constraint }), Refusal::Check(name)) => {
            constraint == name
        }
        _ => false,
    };
    assert!(ok, "{what}: expected {refusal:?}, got {r:?}");
}

/// Runs `f` until it succeeds, retrying the whole attempt while the store says the failure is transient.
pub(super) async fn retry_transient<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt: u64 = 1;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() && attempt < 100 => {
                tokio::time::sleep(std::time::Duration::from_millis(attempt.min(20))).await;
                attempt += 1;
            }
            Err(e) => panic!("store failure after {attempt} attempt(s): {e:?}"),
        }
    }
}

/// One-record writes, each one change set applied with [`Transaction::apply`].
#[async_trait]
pub(super) trait Writes: Transaction {
    /// Writes the event's every mutable field.
    async fn update_event(&mut self, e: &Event) -> Result<(), StoreError> {
        self.apply(Changes {
            updated_events: vec![e.clone()],
            ..Changes::default()
        })
        .await
    }

    /// Writes the booking's status, `held_until` and `updated_at`.
    async fn update_booking(&mut self, b: &Booking) -> Result<(), StoreError> {
        self.apply(Changes {
            updated_bookings: vec![b.clone()],
            ..Changes::default()
        })
        .await
    }

    /// Writes the entry's status and offer fields.
    async fn update_waitlist_entry(&mut self, w: &WaitlistEntry) -> Result<(), StoreError> {
        self.apply(Changes {
            updated_waitlist_entries: vec![w.clone()],
            ..Changes::default()
        })
        .await
    }

    /// Marks the notification sent at `at` (if it is not yet).
    async fn mark_sent(&mut self, id: NotificationId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.apply(Changes {
            notifications_sent: vec![(id, at)],
            ..Changes::default()
        })
        .await
    }

    /// Records that `channel` delivered the notification at `at`.
    async fn record_delivery(
        &mut self,
        id: NotificationId,
        channel: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.apply(Changes {
            deliveries: vec![delivery(id, channel, at)],
            ..Changes::default()
        })
        .await
    }

    /// Deletes the push subscription of `endpoint`, if there is one.
    async fn remove_push(&mut self, endpoint: &str) -> Result<(), StoreError> {
        self.apply(Changes {
            removed_push_subscriptions: vec![endpoint.to_string()],
            ..Changes::default()
        })
        .await
    }

    /// Enqueues the job with the transaction.
    async fn enqueue_job(&mut self, job: &NewJob) -> Result<(), StoreError> {
        self.apply(Changes {
            new_jobs: vec![job.clone()],
            ..Changes::default()
        })
        .await
    }
}

impl<T: Transaction + ?Sized> Writes for T {}

/// A delivery record of `channel`.
pub(super) fn delivery(id: NotificationId, channel: &str, at: DateTime<Utc>) -> DeliveryRecord {
    DeliveryRecord {
        notification_id: id,
        channel: channel.to_string(),
        at,
    }
}

pub(super) fn user(tag: &str) -> User {
    User {
        id: UserId::new(),
        email: format!("{}@exämple.com", unique(tag)),
        name: format!("Zoë Ødegård 🎟 {tag} 東京"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::Admin,
        attributes: BTreeMap::from([
            ("tier".to_string(), "mémber".to_string()),
            ("city".to_string(), "Zürich".to_string()),
        ]),
        created_at: at(-86_400),
    }
}

/// An active event of `capacity` seats starting a week after `t0`, in a category of its own.
pub(super) fn event(capacity: u32) -> Event {
    Event {
        id: EventId::new(),
        name: "Ünïcode Fest — 音楽祭".into(),
        description: "Line one\nline\ttwo".into(),
        venue: "Hall ß".into(),
        category: unique("cat"),
        starts_at: at(7 * 86_400),
        ends_at: at(7 * 86_400 + 3 * 3600),
        capacity,
        // Beyond f64's exact integers: a store that goes through a float loses it.
        price: money(9_007_199_254_740_993, "JPY"),
        active: true,
        version: 3,
        seats_held: 0,
        seats_confirmed: 0,
        created_at: at(-3600),
        updated_at: at(-1800),
    }
}

pub(super) fn booking(user: &User, event: &Event, status: BookingStatus) -> Booking {
    let held = status == BookingStatus::Held;
    Booking {
        id: BookingId::new(),
        user_id: user.id,
        event_id: event.id,
        quantity: 2,
        total_price: money(1_234, "CHF"),
        status,
        held_until: held.then(|| at(600)),
        idempotency_key: None,
        source: BookingSource::Direct,
        created_at: at(0),
        updated_at: at(1),
    }
}

/// A held booking of `event` ending at `held_until`.
pub(super) fn hold(user: &User, event: &Event, held_until: DateTime<Utc>) -> Booking {
    Booking {
        held_until: Some(held_until),
        ..booking(user, event, BookingStatus::Held)
    }
}

/// A waiting entry; `seq` is assigned by the store on insert.
pub(super) fn entry(user: &User, event: &Event) -> WaitlistEntry {
    WaitlistEntry {
        id: WaitlistEntryId::new(),
        event_id: event.id,
        user_id: user.id,
        quantity: 3,
        seq: 0,
        position: None,
        status: WaitlistStatus::Waiting,
        joined_at: at(-60),
        notified_at: None,
        offer_expires_at: None,
        offer_booking_id: None,
    }
}

pub(super) fn ticket(booking: &Booking, number: String) -> Ticket {
    Ticket {
        id: TicketId::new(),
        booking_id: booking.id,
        event_id: booking.event_id,
        qr_payload: format!("evently:v1:{}:{}:{number}", booking.event_id, booking.id),
        number,
        issued_at: at(2),
    }
}

pub(super) fn notification(user: &User, created_at: DateTime<Utc>) -> Notification {
    Notification {
        id: NotificationId::new(),
        user_id: user.id,
        kind: NotificationKind::WaitlistOffer,
        event_id: Some(EventId::new()),
        booking_id: Some(BookingId::new()),
        seats: Some(4_000_000_000),
        // Beyond f64's exact integers, in a currency of its own.
        total: Some(money(9_007_199_254_740_993, "JPY")),
        offer_expires_at: Some(created_at + Duration::microseconds(1)),
        created_at,
        sent_at: None,
        read_at: None,
    }
}

pub(super) fn push(user: &User, endpoint: &str) -> PushSubscription {
    PushSubscription {
        id: PushSubscriptionId::new(),
        user_id: user.id,
        endpoint: endpoint.to_string(),
        p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM".into(),
        auth: "tBHItJI5svbpez7KI4CCXg".into(),
        created_at: at(-7),
    }
}

/// A job due now (`t0`) with a dedupe key.
pub(super) fn keyed_job(key: &str) -> NewJob {
    NewJob {
        dedupe_key: Some(key.to_string()),
        ..job(t0(), 0)
    }
}

/// A job due at `run_at` with a payload of its own.
pub(super) fn job(run_at: DateTime<Utc>, priority: i16) -> NewJob {
    NewJob {
        priority,
        max_attempts: 3,
        ..NewJob::now(
            JobPayload::ExpireHolds {
                event_id: EventId::new(),
            },
            run_at,
        )
    }
}

/// The fields of a stored job that its [`NewJob`] sets.
pub(super) fn as_new(j: &Job) -> NewJob {
    NewJob {
        payload: j.payload.clone(),
        priority: j.priority,
        run_at: j.run_at,
        max_attempts: j.max_attempts,
        dedupe_key: j.dedupe_key.clone(),
    }
}

/// Claims every job of the store's queue due within ten years of `t0` and completes it (so the next
/// call sees only jobs queued after this one); returns the claimed jobs, as [`NewJob`]s.
pub(super) async fn drain_jobs(store: &Arc<dyn Store>) -> Vec<NewJob> {
    let queue = store.job_queue();
    let claimed = queue
        .claim(
            1_000,
            t0() + Duration::days(3650),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim");
    for j in &claimed {
        queue.complete(j.id).await.expect("complete");
    }
    claimed.iter().map(as_new).collect()
}

/// Asserts `got` and `want` hold the same jobs, in any order.
pub(super) fn assert_same_jobs(got: &[NewJob], want: &[NewJob], what: &str) {
    let missing: Vec<_> = want.iter().filter(|j| !got.contains(j)).collect();
    assert!(
        got.len() == want.len() && missing.is_empty(),
        "{what}: jobs {got:?}, expected {want:?}"
    );
}

/// One stored record of any kind, so one helper inserts, reads back or updates them all.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Rec {
    User(User),
    Event(Event),
    Booking(Booking),
    Entry(WaitlistEntry),
    /// Tickets of one booking, in number order.
    Tickets(Vec<Ticket>),
    Notification(Notification),
    Push(PushSubscription),
}

/// One record of every kind, linked to each other and full of non-default values: a user, their event,
/// a waitlist entry, a waitlist-offer hold with an idempotency key, a confirmed booking with two tickets,
/// a notification and a push subscription. Listed in an order that satisfies foreign keys.
pub(super) fn one_of_each() -> Vec<Rec> {
    let u = user("every");
    let mut e = event(500);
    e.seats_held = 2;
    e.seats_confirmed = 2;
    let w = entry(&u, &e);
    let offer = Booking {
        idempotency_key: Some(unique("ключ")),
        source: BookingSource::WaitlistOffer(w.id),
        ..booking(&u, &e, BookingStatus::Held)
    };
    let sold = Booking {
        total_price: money(4_999, "EUR"),
        ..booking(&u, &e, BookingStatus::Confirmed)
    };
    let mut tickets = vec![
        ticket(&sold, unique("EVT-B")),
        ticket(&sold, unique("EVT-A")),
    ];
    tickets.sort_by(|a, b| a.number.cmp(&b.number));
    vec![
        Rec::User(u.clone()),
        Rec::Event(e),
        Rec::Entry(w),
        Rec::Booking(offer),
        Rec::Booking(sold),
        Rec::Tickets(tickets),
        Rec::Notification(notification(&u, at(3))),
        Rec::Push(push(&u, &format!("https://push.example/{}", unique("ep")))),
    ]
}

/// The change set inserting `recs` (a push subscription is upserted).
pub(super) fn inserts(recs: &[Rec]) -> Changes {
    let mut c = Changes::default();
    for r in recs {
        match r.clone() {
            Rec::User(u) => c.new_users.push(u),
            Rec::Event(e) => c.new_events.push(e),
            Rec::Booking(b) => c.new_bookings.push(b),
            Rec::Entry(w) => c.new_waitlist_entries.push(w),
            Rec::Tickets(t) => c.new_tickets.extend(t),
            Rec::Notification(n) => c.new_notifications.push(n),
            Rec::Push(p) => c.push_subscriptions.push(p),
        }
    }
    c
}

/// Inserts `recs` as one change set; each waitlist entry then gets the `seq` the store assigned, read
/// back in the same transaction.
pub(super) async fn insert_all(
    tx: &mut dyn Transaction,
    recs: &mut [Rec],
) -> Result<(), StoreError> {
    tx.apply(inserts(recs)).await?;
    for r in recs.iter_mut() {
        if let Rec::Entry(w) = r {
            let stored = tx.waitlist_entry(w.id).await?.unwrap_or_else(|| {
                panic!("a waitlist entry is not visible to the transaction that inserted it: {w:?}")
            });
            w.seq = stored.seq;
        }
    }
    Ok(())
}

/// Inserts every record in one transaction, as one change set, and commits.
pub(super) async fn put(store: &Arc<dyn Store>, recs: &mut [Rec]) {
    let mut tx = begin(store).await;
    insert_all(&mut *tx, recs)
        .await
        .unwrap_or_else(|e| panic!("insert {recs:?}: {e:?}"));
    tx.commit().await.expect("commit");
}

/// Inserts `r` in a transaction of its own and expects the write refused as `refusal` says, and
/// nothing of it stored (see [`refuse_changes`]).
pub(super) async fn refuse(store: &Arc<dyn Store>, r: Rec, refusal: Refusal, what: &str) {
    let mut tx = read(store).await;
    let before = fetch(&mut *tx, &r).await;
    drop(tx);
    refuse_changes(store, inserts(std::slice::from_ref(&r)), refusal, what).await;
    let mut tx = read(store).await;
    assert_eq!(fetch(&mut *tx, &r).await, before, "{what}: stored anyway");
}

/// Applies `changes` in a transaction of its own and expects the call refused as `refusal` says; then
/// drops the transaction and checks that none of the records the change set creates is stored.
pub(super) async fn refuse_changes(
    store: &Arc<dyn Store>,
    changes: Changes,
    refusal: Refusal,
    what: &str,
) {
    {
        let mut tx = begin(store).await;
        assert_refused(tx.apply(changes.clone()).await, refusal, what);
    }
    let mut tx = read(store).await;
    assert_none_stored(&mut *tx, &changes, what).await;
}

/// Asserts that none of the records `c` creates (users, events, waitlist entries, bookings, tickets,
/// notifications, push subscriptions) is stored: no record with its id, no ticket of its number and id,
/// no push subscription equal to it.
pub(super) async fn assert_none_stored(tx: &mut dyn Transaction, c: &Changes, what: &str) {
    let res: Result<(), StoreError> = async {
        for u in &c.new_users {
            assert_eq!(tx.user(u.id).await?, None, "{what}: user stored");
        }
        for e in &c.new_events {
            let stored = tx.event(e.id, evently_core::LockMode::None).await?;
            assert_eq!(stored, None, "{what}: event stored");
        }
        for w in &c.new_waitlist_entries {
            let stored = tx.waitlist_entry(w.id).await?;
            assert_eq!(stored, None, "{what}: waitlist entry stored");
        }
        for b in &c.new_bookings {
            assert_eq!(tx.booking(b.id).await?, None, "{what}: booking stored");
        }
        for t in &c.new_tickets {
            let by_number = tx.ticket_by_number(&t.number).await?;
            assert_ne!(by_number.map(|x| x.id), Some(t.id), "{what}: ticket stored");
            let of_booking = tx.tickets_for_booking(t.booking_id).await?;
            assert!(
                of_booking.iter().all(|x| x.id != t.id),
                "{what}: ticket stored"
            );
        }
        for n in &c.new_notifications {
            let stored = tx.notification(n.id).await?;
            assert_eq!(stored, None, "{what}: notification stored");
        }
        for p in &c.push_subscriptions {
            let subs = tx.push_subscriptions_for_user(p.user_id).await?;
            assert!(!subs.contains(p), "{what}: push subscription stored");
        }
        Ok(())
    }
    .await;
    res.unwrap_or_else(|e| panic!("{what}: read back: {e:?}"));
}

/// Reads `r` back by its key (id, or ticket number); `None` when absent.
pub(super) async fn fetch(tx: &mut dyn Transaction, r: &Rec) -> Option<Rec> {
    let got = async {
        Ok::<_, StoreError>(match r {
            Rec::User(u) => tx.user(u.id).await?.map(Rec::User),
            Rec::Event(e) => tx
                .event(e.id, evently_core::LockMode::None)
                .await?
                .map(Rec::Event),
            Rec::Booking(b) => tx.booking(b.id).await?.map(Rec::Booking),
            Rec::Entry(w) => tx.waitlist_entry(w.id).await?.map(Rec::Entry),
            Rec::Tickets(ts) => {
                let mut found = Vec::new();
                for t in ts {
                    found.extend(tx.ticket_by_number(&t.number).await?);
                }
                (!found.is_empty()).then_some(Rec::Tickets(found))
            }
            Rec::Notification(n) => tx.notification(n.id).await?.map(Rec::Notification),
            Rec::Push(p) => find(tx.push_subscriptions_for_user(p.user_id).await?, |s| {
                s.endpoint == p.endpoint
            })
            .map(Rec::Push),
        })
    };
    got.await
        .unwrap_or_else(|e| panic!("read back {r:?}: {e:?}"))
}

/// Reads `r` back through the secondary lookups (by e-mail, idempotency key, per user, per event, ...);
/// every one that finds it must return the same record, and `None` means none found it.
pub(super) async fn fetch_indexed(tx: &mut dyn Transaction, r: &Rec) -> Option<Rec> {
    let mut found: Vec<Rec> = Vec::new();
    let res: Result<(), StoreError> = async {
        match r {
            Rec::User(u) => {
                found.extend(tx.user_by_email(&u.email).await?.map(Rec::User));
                found.extend(
                    tx.users(&[u.id, UserId::new()])
                        .await?
                        .into_iter()
                        .map(Rec::User),
                );
            }
            Rec::Event(e) => {
                let filter = EventFilter {
                    active_only: false,
                    category: Some(e.category.clone()),
                    limit: 500,
                    ..EventFilter::default()
                };
                found
                    .extend(find(tx.list_events(&filter).await?, |x| x.id == e.id).map(Rec::Event));
            }
            Rec::Booking(b) => {
                if let Some(k) = &b.idempotency_key {
                    found.extend(
                        tx.booking_by_idempotency_key(b.user_id, k)
                            .await?
                            .map(Rec::Booking),
                    );
                }
                found.extend(
                    find(tx.bookings_for_user(b.user_id).await?, |x| x.id == b.id)
                        .map(Rec::Booking),
                );
                found.extend(
                    find(tx.bookings_for_event(b.event_id).await?, |x| x.id == b.id)
                        .map(Rec::Booking),
                );
            }
            Rec::Entry(w) => {
                // Positions are the engine's to compute; these lookups need not fill them.
                let unnumbered = |x: WaitlistEntry| {
                    Rec::Entry(WaitlistEntry {
                        position: None,
                        ..x
                    })
                };
                let all = [
                    WaitlistStatus::Waiting,
                    WaitlistStatus::Offered,
                    WaitlistStatus::Accepted,
                    WaitlistStatus::Expired,
                    WaitlistStatus::Left,
                ];
                found.extend(
                    find(tx.waitlist(w.event_id, &all).await?, |x| x.id == w.id).map(unnumbered),
                );
                if w.status.is_live() {
                    found.extend(
                        tx.live_waitlist_entry(w.event_id, w.user_id)
                            .await?
                            .map(unnumbered),
                    );
                }
            }
            Rec::Tickets(ts) => {
                if let Some(first) = ts.first() {
                    let mine = tx.tickets_for_booking(first.booking_id).await?;
                    if !mine.is_empty() {
                        found.push(Rec::Tickets(mine));
                    }
                }
            }
            Rec::Notification(n) => {
                found.extend(
                    find(
                        tx.notifications_for_user(n.user_id, &NotificationQuery::newest(500))
                            .await?,
                        |x| x.id == n.id,
                    )
                    .map(Rec::Notification),
                );
            }
            Rec::Push(p) => {
                found.extend(
                    find(tx.push_subscriptions_for_user(p.user_id).await?, |s| {
                        s.endpoint == p.endpoint
                    })
                    .map(Rec::Push),
                );
            }
        }
        Ok(())
    }
    .await;
    res.unwrap_or_else(|e| panic!("look up {r:?}: {e:?}"));
    let first = found.first().cloned();
    for other in &found {
        assert_eq!(Some(other), first.as_ref(), "lookups of {r:?} disagree");
    }
    first
}

fn find<T>(v: Vec<T>, pred: impl Fn(&T) -> bool) -> Option<T> {
    v.into_iter().find(|x| pred(x))
}

/// Pairs of a record of `recs` (from [`one_of_each`]) and the same record with every field its update
/// writes changed; tickets, which are never updated, are left out. A waitlist entry's offer points at
/// the set's first booking.
pub(super) fn modified(recs: &[Rec]) -> Vec<(Rec, Rec)> {
    let offer = recs.iter().find_map(|r| match r {
        Rec::Booking(b) => Some(b.id),
        _ => None,
    });
    recs.iter()
        .filter_map(|r| {
            let changed = match r.clone() {
                Rec::User(u) => Rec::User(User {
                    name: "Renamed Ågot".into(),
                    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3".into(),
                    role: Role::User,
                    attributes: BTreeMap::from([("tier".to_string(), "gold ★".to_string())]),
                    ..u
                }),
                Rec::Event(e) => Rec::Event(Event {
                    name: "Renamed 祭".into(),
                    description: String::new(),
                    venue: "Other hall".into(),
                    category: unique("moved"),
                    starts_at: at(9 * 86_400),
                    ends_at: at(9 * 86_400 + 60),
                    capacity: e.capacity + 5,
                    price: money(0, "USD"),
                    active: false,
                    version: e.version + 1,
                    seats_held: e.seats_held + 1,
                    seats_confirmed: e.seats_confirmed + 2,
                    updated_at: at(50),
                    ..e
                }),
                Rec::Booking(b) => Rec::Booking(Booking {
                    status: BookingStatus::Confirmed,
                    held_until: None,
                    updated_at: at(77),
                    ..b
                }),
                Rec::Entry(w) => Rec::Entry(WaitlistEntry {
                    status: WaitlistStatus::Offered,
                    notified_at: Some(at(40)),
                    offer_expires_at: Some(at(40 + 1800)),
                    offer_booking_id: offer,
                    ..w
                }),
                Rec::Tickets(_) => return None,
                Rec::Notification(n) => Rec::Notification(Notification {
                    sent_at: Some(at(99)),
                    read_at: Some(at(100)),
                    ..n
                }),
                Rec::Push(p) => Rec::Push(PushSubscription {
                    p256dh: "BNew-key_0123456789".into(),
                    auth: "new-auth".into(),
                    ..p
                }),
            };
            Some((r.clone(), changed))
        })
        .collect()
}

/// The change set writing every record of `ms` (from [`modified`]) with the update its kind has: a
/// notification is marked sent at its `sent_at`, a push subscription upserted, tickets left out.
pub(super) fn updates<'a>(ms: impl IntoIterator<Item = &'a Rec>) -> Changes {
    let mut c = Changes::default();
    for m in ms {
        match m.clone() {
            Rec::User(u) => c.updated_users.push(u),
            Rec::Event(e) => c.updated_events.push(e),
            Rec::Booking(b) => c.updated_bookings.push(b),
            Rec::Entry(w) => c.updated_waitlist_entries.push(w),
            Rec::Tickets(_) => {}
            Rec::Notification(n) => {
                c.notifications_sent
                    .push((n.id, n.sent_at.unwrap_or_else(t0)));
                if let Some(read) = n.read_at {
                    c.notifications_read.push((n.id, read));
                }
            }
            Rec::Push(p) => c.push_subscriptions.push(p),
        }
    }
    c
}
