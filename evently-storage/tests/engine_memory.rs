//! Engine behaviour on the in-memory store: booking, cancel, waitlist promotion, expiry.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::{event, user};
use evently_core::*;
use evently_storage::MemoryStore;

async fn setup() -> (Evently, Arc<ManualClock>, Actor) {
    common::setup(Arc::new(MemoryStore::new())).await
}

#[tokio::test]
async fn sells_out_then_cancel_offers_the_seat_to_the_waitlist() {
    let (engine, clock, admin) = setup().await;
    let ev = event(&engine, &admin, 2).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let bob = user(&engine, "bob@example.com", Role::User).await;

    let a = engine
        .book(&alice, BookingRequest::new(ev.id, 2))
        .await
        .unwrap();
    assert_eq!(a.status, BookingStatus::Confirmed);
    assert_eq!(a.total_price.minor, 3000);
    assert_eq!(engine.tickets(&alice, a.id).await.unwrap().len(), 2);

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

    engine.cancel(&alice, a.id).await.unwrap();
    let offered = engine.waitlist_position(&bob, ev.id).await.unwrap();
    assert_eq!(offered.status, WaitlistStatus::Offered);
    let avail = engine.availability(ev.id).await.unwrap();
    assert_eq!((avail.held, avail.confirmed, avail.available), (1, 0, 1));

    // The offer runs out; no one else waits, so the seat is free again.
    clock.advance(Duration::minutes(31));
    assert_eq!(engine.expire_holds().await.unwrap(), 1);
    let avail = engine.availability(ev.id).await.unwrap();
    assert_eq!((avail.held, avail.confirmed, avail.available), (0, 0, 2));
    let err = engine.accept_offer(&bob, ev.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_bookings_on_a_hundred_seats_sell_exactly_a_hundred() {
    let (engine, _clock, admin) = setup().await;
    let ev = event(&engine, &admin, 100).await;
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(user(&engine, &format!("u{i}@example.com"), Role::User).await);
    }
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (engine, actor) = (engine.clone(), users[i % users.len()]);
            tokio::spawn(async move { engine.book(&actor, BookingRequest::new(ev.id, 1)).await })
        })
        .collect();
    let (mut ok, mut sold_out) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(b) => {
                assert_eq!(b.status, BookingStatus::Confirmed);
                ok += 1;
            }
            Err(Error::SoldOut { .. }) => sold_out += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!((ok, sold_out), (100, 900));
    assert_eq!(engine.event(ev.id).await.unwrap().seats_confirmed, 100);
}

/// A notifier that keeps what each delivery carried: the kind, the event it names and how many
/// tickets came with it.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(NotificationKind, Option<EventId>, usize)>>);

#[async_trait::async_trait]
impl Notifier for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn notify(&self, d: ports::Delivery<'_>) -> Result<(), ports::NotifyError> {
        self.0
            .lock()
            .unwrap()
            .push((d.notification.kind, d.event.map(|e| e.id), d.tickets.len()));
        Ok(())
    }
}

#[tokio::test]
async fn a_delivery_carries_the_event_and_the_tickets_a_channel_needs() {
    let recorder = Arc::new(Recorder::default());
    let engine = Evently::builder()
        .store(Arc::new(MemoryStore::new()))
        .clock(common::clock())
        .notifier(recorder.clone())
        .build()
        .unwrap();
    let admin = user(&engine, "admin@example.com", Role::Admin).await;
    let ev = event(&engine, &admin, 5).await;
    let alice = user(&engine, "alice@example.com", Role::User).await;
    let booking = engine
        .book(&alice, BookingRequest::new(ev.id, 3))
        .await
        .unwrap();
    engine.cancel(&alice, booking.id).await.unwrap();
    while engine.run_jobs(100).await.unwrap().claimed > 0 {}

    let mut seen = recorder.0.lock().unwrap().clone();
    seen.sort_by_key(|(kind, _, _)| kind.as_str());
    assert_eq!(
        seen,
        vec![
            (NotificationKind::BookingCancelled, Some(ev.id), 0),
            (NotificationKind::BookingConfirmed, Some(ev.id), 3),
            (NotificationKind::Welcome, None, 0),
            (NotificationKind::Welcome, None, 0),
        ]
    );
}
