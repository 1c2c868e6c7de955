//! Records with non-default values, and generic insert / read-back / update helpers over them, so each
//! case states only what it checks.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use evently_core::{
    Booking, BookingId, BookingSource, BookingStatus, Currency, Event, EventFilter, EventId,
    JobPayload, Money, NewJob, Notification, NotificationId, NotificationKind, PushSubscription,
    PushSubscriptionId, Role, Store, StoreError, Ticket, TicketId, Transaction, User, UserId,
    WaitlistEntry, WaitlistEntryId, WaitlistStatus,
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

/// A constraint kind a refused write must report.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    Unique,
    ForeignKey,
    Check,
}

/// Asserts `r` failed with the `kind` of error; `what` names the case in the message.
pub(super) fn assert_refused<T: Debug>(r: Result<T, StoreError>, kind: Refusal, what: &str) {
    let ok = matches!(
        (&r, kind),
        (Err(StoreError::UniqueViolation { .. }), Refusal::Unique)
            | (
                Err(StoreError::ForeignKeyViolation { .. }),
                Refusal::ForeignKey
            )
            | (Err(StoreError::CheckViolation { .. }), Refusal::Check)
    );
    assert!(ok, "{what}: expected a {kind:?} violation, got {r:?}");
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
        kind: NotificationKind::WaitlistOfferExpired,
        title: "Angebot abgelaufen ⏰".into(),
        message: "Les places n’ont pas été confirmées.\nDésolé.".into(),
        data: evently_core::NotificationData::from([
            ("event_id".to_string(), "e-1".to_string()),
            ("ünï".to_string(), "cødé".to_string()),
        ]),
        created_at,
        sent_at: None,
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

/// Inserts `r`; a waitlist entry gets the `seq` the store assigned.
pub(super) async fn insert(tx: &mut dyn Transaction, r: &mut Rec) -> Result<(), StoreError> {
    match r {
        Rec::User(u) => tx.insert_user(u).await,
        Rec::Event(e) => tx.insert_event(e).await,
        Rec::Booking(b) => tx.insert_booking(b).await,
        Rec::Entry(w) => {
            w.seq = tx.insert_waitlist_entry(w).await?;
            Ok(())
        }
        Rec::Tickets(t) => tx.insert_tickets(t).await,
        Rec::Notification(n) => tx.insert_notification(n).await,
        Rec::Push(p) => tx.upsert_push_subscription(p).await,
    }
}

/// Inserts every record in one transaction and commits.
pub(super) async fn put(store: &Arc<dyn Store>, recs: &mut [Rec]) {
    let mut tx = begin(store).await;
    for r in recs.iter_mut() {
        insert(&mut *tx, r)
            .await
            .unwrap_or_else(|e| panic!("insert {r:?}: {e:?}"));
    }
    tx.commit().await.expect("commit");
}

/// Inserts `r` in a transaction of its own, expects the write refused with `kind`, and checks that
/// nothing of it is stored.
///
/// A store may report the violation by the write itself or, when it defers writes (the PostgreSQL
/// store sends them in batches), by a later call of the same transaction, at the latest by
/// `commit`; either way with the right kind, and nothing of the transaction is stored.
pub(super) async fn refuse(store: &Arc<dyn Store>, mut r: Rec, kind: Refusal, what: &str) {
    {
        let mut tx = begin(store).await;
        match insert(&mut *tx, &mut r).await {
            Ok(()) => assert_refused(tx.commit().await, kind, what),
            refused => assert_refused(refused, kind, what),
        }
    }
    let mut tx = read(store).await;
    assert_ne!(fetch(&mut *tx, &r).await, Some(r), "{what}: stored anyway");
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
                    find(tx.notifications_for_user(n.user_id, 500).await?, |x| {
                        x.id == n.id
                    })
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

/// Writes `m` (from [`modified`]) with the update its kind has.
pub(super) async fn update(tx: &mut dyn Transaction, m: &Rec) -> Result<(), StoreError> {
    match m {
        Rec::User(u) => tx.update_user(u).await,
        Rec::Event(e) => tx.update_event(e).await,
        Rec::Booking(b) => tx.update_booking(b).await,
        Rec::Entry(w) => tx.update_waitlist_entry(w).await,
        Rec::Tickets(_) => Ok(()),
        Rec::Notification(n) => {
            let when = n.sent_at.unwrap_or_else(t0);
            assert!(tx.mark_notification_sent(n.id, when).await?, "first mark");
            Ok(())
        }
        Rec::Push(p) => tx.upsert_push_subscription(p).await,
    }
}
