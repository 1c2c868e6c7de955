//! Property test of the booking state machine: random sequences of holds, bookings, confirmations,
//! cancellations, expiry and waitlist moves on one small event, through the engine on the in-memory
//! store and on SQLite (where the engine combines an event's requests). After every step the state is read back and checked against the invariants (seat accounting,
//! monotone statuses, a dense waitlist, offers backed by holds, tickets for confirmed bookings only),
//! and each outcome is checked against what the state before the step allows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, TimeZone, Utc};
use evently_core::*;
use evently_storage::{MemoryStore, SqliteStore};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// Users acting on the event (plus one admin who only reads).
const USERS: usize = 4;
/// Hold time of a direct hold.
const HOLD_TTL: StdDuration = StdDuration::from_secs(10 * 60);
/// How long a waitlist offer stays open.
const OFFER_TTL: StdDuration = StdDuration::from_secs(20 * 60);

/// Picks a booking among those seen so far.
#[derive(Debug, Clone)]
enum Pick {
    /// Any booking, whatever its status (most of the time a refusal or a no-op).
    Any(Index),
    /// One still occupying seats (held, or for a cancel also confirmed), if there is one.
    Live(Index),
}

/// Picks a user.
#[derive(Debug, Clone)]
enum Who {
    /// This user, on the waitlist or not.
    User(usize),
    /// One of the users with a live waitlist entry, if there is one.
    OnWaitlist(Index),
    /// One of the users holding an offer, if there is one.
    Offered(Index),
}

#[derive(Debug, Clone)]
enum Op {
    Hold {
        user: usize,
        qty: u32,
    },
    Book {
        user: usize,
        qty: u32,
    },
    /// Confirms a booking, as its owner.
    Confirm(Pick),
    /// Cancels a booking, as its owner.
    Cancel(Pick),
    /// Moves the clock forward, then runs `expire_holds`.
    Advance {
        minutes: i64,
    },
    Join {
        user: usize,
        qty: u32,
    },
    Leave(Who),
    Accept(Who),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => any::<Index>().prop_map(Pick::Any),
        2 => any::<Index>().prop_map(Pick::Live),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        1 => (0..USERS).prop_map(Who::User),
        1 => any::<Index>().prop_map(Who::OnWaitlist),
        1 => any::<Index>().prop_map(Who::Offered),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let qty = 1u32..=3;
    prop_oneof![
        3 => (user.clone(), qty.clone()).prop_map(|(user, qty)| Op::Hold { user, qty }),
        3 => (user.clone(), qty.clone()).prop_map(|(user, qty)| Op::Book { user, qty }),
        2 => pick().prop_map(Op::Confirm),
        3 => pick().prop_map(Op::Cancel),
        2 => (0i64..=40).prop_map(|minutes| Op::Advance { minutes }),
        3 => (user, qty).prop_map(|(user, qty)| Op::Join { user, qty }),
        1 => who().prop_map(Op::Leave),
        2 => who().prop_map(Op::Accept),
    ]
}

/// Everything read back after a step.
struct Snapshot {
    event: Event,
    bookings: Vec<Booking>,
    waitlist: Vec<WaitlistEntry>,
}

impl Snapshot {
    fn booking(&self, id: BookingId) -> Option<&Booking> {
        self.bookings.iter().find(|b| b.id == id)
    }

    fn live_entry(&self, user: UserId) -> Option<&WaitlistEntry> {
        self.waitlist.iter().find(|e| e.user_id == user)
    }
}

/// What the test remembers across steps.
#[derive(Default)]
struct Model {
    /// Last status seen of every booking, and whether it was ever confirmed.
    seen: HashMap<BookingId, (BookingStatus, bool)>,
    /// Bookings in the order they were first seen, for `Confirm`/`Cancel` to pick from.
    order: Vec<BookingId>,
    /// Every ticket number issued so far, with its booking.
    tickets: HashMap<String, BookingId>,
}

struct World {
    engine: Evently,
    clock: Arc<ManualClock>,
    admin: Actor,
    users: Vec<Actor>,
    event: EventId,
}

async fn world(capacity: u32, store: Arc<dyn Store>) -> World {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap(),
    ));
    let engine = Evently::builder()
        .store(store)
        .clock(clock.clone())
        .config(EngineConfig {
            default_hold_ttl: HOLD_TTL,
            offer_ttl: OFFER_TTL,
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    let register = |email: String, role: Role| {
        let engine = engine.clone();
        async move {
            let u = engine
                .register_user(NewUser {
                    email,
                    name: "Someone".into(),
                    password_hash: "$argon2id$stub".into(),
                    role,
                    attributes: Default::default(),
                })
                .await
                .unwrap();
            Actor::new(u.id, u.role)
        }
    };
    let admin = register("admin@example.com".into(), Role::Admin).await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(register(format!("user{i}@example.com"), Role::User).await);
    }
    let now = engine.now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Small gig".into(),
                description: String::new(),
                venue: "Cellar".into(),
                category: "music".into(),
                // Far enough that 60 steps of at most 40 minutes never reach it.
                starts_at: now + Duration::days(7),
                ends_at: now + Duration::days(7) + Duration::hours(2),
                capacity,
                price: Money::new(1000, Currency::new("EUR").unwrap()),
            },
        )
        .await
        .unwrap()
        .id;
    World {
        engine,
        clock,
        admin,
        users,
        event,
    }
}

async fn snapshot(w: &World) -> Result<Snapshot, TestCaseError> {
    let event = w.engine.event(w.event).await;
    let bookings = w.engine.event_bookings(&w.admin, w.event).await;
    let waitlist = w.engine.waitlist(&w.admin, w.event).await;
    match (event, bookings, waitlist) {
        (Ok(event), Ok(bookings), Ok(waitlist)) => Ok(Snapshot {
            event,
            bookings,
            waitlist,
        }),
        (e, b, l) => Err(TestCaseError::fail(format!(
            "reading state back failed: {:?} {:?} {:?}",
            e.err(),
            b.err(),
            l.err()
        ))),
    }
}

fn actor_of(w: &World, user: UserId) -> Actor {
    w.users
        .iter()
        .copied()
        .find(|a| a.user_id == user)
        .unwrap_or(w.admin)
}

/// The user a [`Who`] names; `None` when it asks for someone on the waitlist and no one is.
fn resolve<'a>(w: &'a World, pre: &Snapshot, who: &Who) -> Option<&'a Actor> {
    match who {
        Who::User(i) => w.users.get(*i),
        Who::OnWaitlist(ix) | Who::Offered(ix) => {
            let offered_only = matches!(who, Who::Offered(_));
            let live: Vec<UserId> = pre
                .waitlist
                .iter()
                .filter(|e| !offered_only || e.status == WaitlistStatus::Offered)
                .map(|e| e.user_id)
                .collect();
            if live.is_empty() {
                return None;
            }
            let user = live[ix.index(live.len())];
            w.users.iter().find(|a| a.user_id == user)
        }
    }
}

/// Runs one step and checks its outcome against the state before it (`pre`).
async fn step(w: &World, model: &Model, pre: &Snapshot, op: &Op) -> Result<(), TestCaseError> {
    let now = w.clock.now();
    let free = pre.event.seats_free();
    match op {
        Op::Hold { user, qty } | Op::Book { user, qty } => {
            let hold = matches!(op, Op::Hold { .. });
            let actor = &w.users[*user];
            let req = BookingRequest::new(w.event, *qty);
            let r = if hold {
                w.engine.hold(actor, req).await
            } else {
                w.engine.book(actor, req).await
            };
            match r {
                Ok(b) => {
                    let want = if hold {
                        BookingStatus::Held
                    } else {
                        BookingStatus::Confirmed
                    };
                    prop_assert_eq!(b.status, want);
                    prop_assert_eq!(b.quantity, *qty);
                    prop_assert_eq!(b.user_id, actor.user_id);
                    prop_assert_eq!(b.source, BookingSource::Direct);
                    if hold {
                        prop_assert_eq!(b.held_until, Some(now + Duration::minutes(10)));
                    }
                    // No lapsed hold is ever left unswept between steps, so the seats free before the
                    // request decide it.
                    prop_assert!(
                        free >= *qty,
                        "{} seat(s) sold while {} were free",
                        qty,
                        free
                    );
                    Ok(())
                }
                Err(Error::SoldOut {
                    requested,
                    available,
                    ..
                }) => {
                    prop_assert!(
                        free < *qty,
                        "sold out for {} seat(s) while {} were free before the request",
                        qty,
                        free
                    );
                    prop_assert_eq!(requested, *qty);
                    prop_assert!(available < requested);
                    Ok(())
                }
                Err(e) => Err(TestCaseError::fail(format!(
                    "{op:?}: unexpected error {e:?}"
                ))),
            }
        }
        Op::Confirm(p) | Op::Cancel(p) => {
            let confirming = matches!(op, Op::Confirm(_));
            let candidates: Vec<BookingId> = match p {
                Pick::Any(_) => model.order.clone(),
                Pick::Live(_) => pre
                    .bookings
                    .iter()
                    .filter(|b| {
                        b.status == BookingStatus::Held
                            || (!confirming && b.status == BookingStatus::Confirmed)
                    })
                    .map(|b| b.id)
                    .collect(),
            };
            let (Pick::Any(ix) | Pick::Live(ix)) = p;
            if candidates.is_empty() {
                return Ok(());
            }
            let id = candidates[ix.index(candidates.len())];
            let Some(before) = pre.booking(id) else {
                return Err(TestCaseError::fail(format!("booking {id} disappeared")));
            };
            let actor = actor_of(w, before.user_id);
            if confirming {
                let r = w.engine.confirm(&actor, id).await;
                match (before.status, r) {
                    (BookingStatus::Held, Ok(b)) => {
                        prop_assert!(before.held_until.is_some_and(|t| t > now));
                        prop_assert_eq!(b.status, BookingStatus::Confirmed);
                    }
                    (BookingStatus::Held, Err(Error::HoldExpired { .. })) => {
                        prop_assert!(before.held_until.is_some_and(|t| t <= now));
                    }
                    (BookingStatus::Confirmed, Ok(b)) => {
                        prop_assert_eq!(b.status, BookingStatus::Confirmed);
                    }
                    (
                        BookingStatus::Cancelled | BookingStatus::Expired,
                        Err(Error::InvalidTransition { .. }),
                    ) => {}
                    (from, r) => {
                        return Err(TestCaseError::fail(format!(
                            "confirm of a {from} booking gave {r:?}"
                        )));
                    }
                }
            } else {
                let r = w.engine.cancel(&actor, id).await;
                match (before.status, r) {
                    (
                        BookingStatus::Held | BookingStatus::Confirmed | BookingStatus::Cancelled,
                        Ok(b),
                    ) => {
                        prop_assert_eq!(b.status, BookingStatus::Cancelled);
                    }
                    (BookingStatus::Expired, Err(Error::InvalidTransition { .. })) => {}
                    (from, r) => {
                        return Err(TestCaseError::fail(format!(
                            "cancel of a {from} booking gave {r:?}"
                        )));
                    }
                }
            }
            Ok(())
        }
        Op::Advance { minutes } => {
            w.clock.advance(Duration::minutes(*minutes));
            let now = w.clock.now();
            let due = pre.bookings.iter().filter(|b| b.hold_expired(now)).count();
            match w.engine.expire_holds().await {
                // Offers made while expiring start now, so they cannot be due yet: exactly the due holds go.
                Ok(n) => prop_assert_eq!(n as usize, due),
                Err(e) => {
                    return Err(TestCaseError::fail(format!("expire_holds failed: {e:?}")));
                }
            }
            Ok(())
        }
        Op::Join { user, qty } => {
            let actor = &w.users[*user];
            let already = pre.live_entry(actor.user_id).is_some();
            let nobody_waits = pre
                .waitlist
                .iter()
                .all(|e| e.status != WaitlistStatus::Waiting);
            // Joining is refused while the user is on the list, or while nobody waits and the seats
            // are free (book instead).
            let refused = already || (nobody_waits && free >= *qty);
            match w.engine.join_waitlist(actor, w.event, *qty).await {
                Ok(e) => {
                    prop_assert!(
                        !refused,
                        "join accepted (on list: {}, free: {})",
                        already,
                        free
                    );
                    prop_assert_eq!(e.user_id, actor.user_id);
                    prop_assert_eq!(e.quantity, *qty);
                    prop_assert!(e.status.is_live());
                    prop_assert_eq!(e.position.is_some(), e.status == WaitlistStatus::Waiting);
                }
                Err(Error::Conflict { .. }) => {
                    prop_assert!(
                        refused,
                        "join refused (on list: {}, free: {})",
                        already,
                        free
                    );
                }
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "{op:?}: unexpected error {e:?}"
                    )));
                }
            }
            Ok(())
        }
        Op::Leave(who) => {
            let Some(actor) = resolve(w, pre, who) else {
                return Ok(());
            };
            let live = pre.live_entry(actor.user_id);
            match (live, w.engine.leave_waitlist(actor, w.event).await) {
                (Some(before), Ok(e)) => {
                    prop_assert_eq!(e.id, before.id);
                    prop_assert_eq!(e.status, WaitlistStatus::Left);
                }
                (None, Err(Error::NotFound { .. })) => {}
                (live, r) => {
                    return Err(TestCaseError::fail(format!(
                        "leave with live entry {live:?} gave {r:?}"
                    )));
                }
            }
            Ok(())
        }
        Op::Accept(who) => {
            let Some(actor) = resolve(w, pre, who) else {
                return Ok(());
            };
            let live = pre.live_entry(actor.user_id);
            let r = w.engine.accept_offer(actor, w.event).await;
            match (live.map(|e| (e.status, e.offer_booking_id)), r) {
                (Some((WaitlistStatus::Offered, Some(bid))), Ok(b)) => {
                    prop_assert_eq!(b.id, bid);
                    prop_assert_eq!(b.status, BookingStatus::Confirmed);
                    let held = pre.booking(bid).and_then(|b| b.held_until);
                    prop_assert!(held.is_some_and(|t| t > now), "accepted a lapsed offer");
                }
                (Some((WaitlistStatus::Offered, Some(bid))), Err(Error::HoldExpired { .. })) => {
                    let held = pre.booking(bid).and_then(|b| b.held_until);
                    prop_assert!(held.is_some_and(|t| t <= now), "refused an open offer");
                }
                (Some((WaitlistStatus::Waiting, _)), Err(Error::Conflict { .. })) => {}
                (None, Err(Error::NotFound { .. })) => {}
                (live, r) => {
                    return Err(TestCaseError::fail(format!(
                        "accept with live entry {live:?} gave {r:?}"
                    )));
                }
            }
            Ok(())
        }
    }
}

/// Checks every invariant on the state after a step and folds it into the model.
async fn check(w: &World, model: &mut Model, s: &Snapshot) -> Result<(), TestCaseError> {
    let ev = &s.event;

    // Seats accounted exactly, never beyond capacity.
    let sum = |st: BookingStatus| -> u32 {
        s.bookings
            .iter()
            .filter(|b| b.status == st)
            .map(|b| b.quantity)
            .sum()
    };
    prop_assert_eq!(ev.seats_held, sum(BookingStatus::Held), "seats_held");
    prop_assert_eq!(
        ev.seats_confirmed,
        sum(BookingStatus::Confirmed),
        "seats_confirmed"
    );
    prop_assert!(
        ev.seats_held + ev.seats_confirmed <= ev.capacity,
        "oversold: {} held + {} confirmed > {}",
        ev.seats_held,
        ev.seats_confirmed,
        ev.capacity
    );
    let avail = w
        .engine
        .availability(ev.id)
        .await
        .map_err(|e| TestCaseError::fail(format!("availability: {e:?}")))?;
    prop_assert_eq!(avail.available, ev.seats_free());

    // Each booking once; statuses only move forward; none disappears.
    let mut ids = HashSet::new();
    for b in &s.bookings {
        prop_assert!(ids.insert(b.id), "booking {} listed twice", b.id);
        prop_assert_eq!(b.event_id, ev.id);
        prop_assert_eq!(b.held_until.is_some(), b.status == BookingStatus::Held);
        match model.seen.get(&b.id) {
            None => {
                model.order.push(b.id);
            }
            Some(&(prev, _)) => {
                use BookingStatus::*;
                let ok = prev == b.status
                    || matches!(
                        (prev, b.status),
                        (Held, Confirmed)
                            | (Held, Cancelled)
                            | (Held, Expired)
                            | (Confirmed, Cancelled)
                    );
                prop_assert!(ok, "booking {} went from {} to {}", b.id, prev, b.status);
            }
        }
        let was_confirmed =
            model.seen.get(&b.id).is_some_and(|&(_, c)| c) || b.status == BookingStatus::Confirmed;
        model.seen.insert(b.id, (b.status, was_confirmed));
    }
    for id in model.seen.keys() {
        prop_assert!(ids.contains(id), "booking {} disappeared", id);
    }

    // Tickets: exactly `quantity` for a confirmed booking, none for one never confirmed.
    for b in &s.bookings {
        let was_confirmed = model.seen[&b.id].1;
        let tickets = w
            .engine
            .tickets(&w.admin, b.id)
            .await
            .map_err(|e| TestCaseError::fail(format!("tickets: {e:?}")))?;
        if b.status == BookingStatus::Confirmed {
            prop_assert_eq!(tickets.len(), b.quantity as usize, "tickets of {}", b.id);
        } else if !was_confirmed {
            prop_assert!(
                tickets.is_empty(),
                "{} booking {} has tickets",
                b.status,
                b.id
            );
        }
        for t in &tickets {
            prop_assert_eq!(t.booking_id, b.id);
            prop_assert_eq!(t.event_id, ev.id);
            let owner = model.tickets.entry(t.number.clone()).or_insert(b.id);
            prop_assert_eq!(*owner, b.id, "ticket number {} reused", &t.number);
        }
    }

    // Waitlist: live entries in seq order, waiting ones numbered 1..=n, one live entry per user.
    let mut users = HashSet::new();
    let mut last_seq = i64::MIN;
    let mut pos = 0u32;
    for e in &s.waitlist {
        prop_assert!(e.status.is_live(), "waitlist() listed a {} entry", e.status);
        prop_assert!(e.seq > last_seq, "seq not strictly increasing");
        last_seq = e.seq;
        prop_assert!(users.insert(e.user_id), "two live entries for one user");
        if e.status == WaitlistStatus::Waiting {
            pos += 1;
            prop_assert_eq!(e.position, Some(pos));
            prop_assert_eq!(e.offer_booking_id, None);
        } else {
            prop_assert_eq!(e.position, None);
        }
    }

    // Offers: each offered entry is carried by a held booking of its user for its quantity, and every
    // held offer booking belongs to an offered entry.
    let mut offered_seats = 0;
    let mut offer_bookings = BTreeMap::new();
    for e in s
        .waitlist
        .iter()
        .filter(|e| e.status == WaitlistStatus::Offered)
    {
        offered_seats += e.quantity;
        let Some(bid) = e.offer_booking_id else {
            return Err(TestCaseError::fail(format!(
                "offered entry {} has no booking",
                e.id
            )));
        };
        let Some(b) = s.booking(bid) else {
            return Err(TestCaseError::fail(format!("offer booking {bid} missing")));
        };
        prop_assert_eq!(
            b.status,
            BookingStatus::Held,
            "offer booking of entry {}",
            e.id
        );
        prop_assert_eq!(b.source, BookingSource::WaitlistOffer(e.id));
        prop_assert_eq!(b.quantity, e.quantity);
        prop_assert_eq!(b.user_id, e.user_id);
        prop_assert_eq!(b.held_until, e.offer_expires_at);
        offer_bookings.insert(bid, e.id);
    }
    prop_assert!(
        offered_seats <= ev.capacity - ev.seats_confirmed,
        "{} seats offered, {} confirmed of {}",
        offered_seats,
        ev.seats_confirmed,
        ev.capacity
    );
    for b in &s.bookings {
        if let (BookingSource::WaitlistOffer(entry), BookingStatus::Held) = (b.source, b.status) {
            prop_assert_eq!(
                offer_bookings.get(&b.id),
                Some(&entry),
                "held offer booking {} without an offered entry",
                b.id
            );
        }
    }

    // Promotion keeps up: the head of the queue never waits while enough seats are free for it.
    if let Some(head) = s
        .waitlist
        .iter()
        .find(|e| e.status == WaitlistStatus::Waiting)
    {
        prop_assert!(
            head.quantity > ev.seats_free(),
            "entry {} waits for {} seat(s) while {} are free",
            head.id,
            head.quantity,
            ev.seats_free()
        );
    }
    Ok(())
}

async fn run(capacity: u32, ops: Vec<Op>, store: Arc<dyn Store>) -> Result<(), TestCaseError> {
    let w = world(capacity, store).await;
    let mut model = Model::default();
    let mut pre = snapshot(&w).await?;
    check(&w, &mut model, &pre).await?;
    for (i, op) in ops.iter().enumerate() {
        step(&w, &model, &pre, op)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
        let post = snapshot(&w).await?;
        check(&w, &mut model, &post)
            .await
            .map_err(|e| TestCaseError::fail(format!("after step {i} {op:?}: {e}")))?;
        pre = post;
    }
    Ok(())
}

fn on(
    store: impl AsyncFnOnce() -> Arc<dyn Store>,
    capacity: u32,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { run(capacity, ops, store().await).await })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        // An integration test has no lib.rs for proptest to file regressions beside; the shrunk failing
        // sequence is printed instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_booking_state_machine_keeps_its_invariants(
        capacity in 1u32..=8,
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        on(async || Arc::new(MemoryStore::new()) as Arc<dyn Store>, capacity, ops)?;
    }
}

proptest! {
    // Each case opens a fresh SQLite file (migrations included): fewer cases than on memory.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_booking_state_machine_keeps_its_invariants_on_sqlite(
        capacity in 1u32..=8,
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        on(
            async || Arc::new(SqliteStore::open_in_memory().await.expect("SQLite store")) as Arc<dyn Store>,
            capacity,
            ops,
        )?;
    }
}
