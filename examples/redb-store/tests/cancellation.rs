//! Futures dropped at any await point (a client that went away, a timeout) strand nothing: after a
//! storm of engine calls cut off by timeouts of 1 µs to 3 ms, every event still takes a booking
//! promptly (no writer's turn is left taken) and its seat counters match its bookings.

use std::sync::Arc;
use std::time::Duration;

use evently_conformance::assert_counters_match_bookings;
use evently_core::{
    Actor, BookingRequest, Currency, Error, Evently, Money, NewEvent, NewUser, Role, Store,
};
use example_redb_store::RedbStore;

async fn actor(engine: &Evently, name: &str, role: Role) -> Actor {
    let user = engine
        .register_user(NewUser {
            email: format!("{name}@example.com"),
            name: name.into(),
            password_hash: "unused".into(),
            role,
            attributes: Default::default(),
        })
        .await
        .expect("register");
    Actor::new(user.id, user.role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_calls_strand_nothing() {
    let store = Arc::new(RedbStore::open_temporary().expect("a store"));
    let engine = Evently::builder()
        .store(store.clone())
        .build()
        .expect("engine");
    let admin = actor(&engine, "admin", Role::Admin).await;
    let mut events = Vec::new();
    for i in 0..3 {
        let starts_at = engine.now() + chrono::Duration::days(7);
        let new = NewEvent {
            name: format!("Event {i}"),
            description: String::new(),
            venue: "Hall".into(),
            category: "storm".into(),
            starts_at,
            ends_at: starts_at + chrono::Duration::hours(1),
            capacity: 40,
            price: Money::new(100, Currency::new("EUR").expect("EUR")),
        };
        events.push(engine.create_event(&admin, new).await.expect("event").id);
    }
    let tasks: Vec<_> = (0..16u64)
        .map(|task| {
            let (engine, events) = (engine.clone(), events.clone());
            tokio::spawn(async move {
                let me = actor(&engine, &format!("u{task}"), Role::User).await;
                let mut rng = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..100 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let event = events[(rng % 3) as usize];
                    let cut_off = Duration::from_micros(1 + (rng >> 8) % 3000);
                    let call = async {
                        match (rng >> 4) % 4 {
                            0 => drop(engine.book(&me, BookingRequest::new(event, 1)).await),
                            1 => drop(engine.hold(&me, BookingRequest::new(event, 2)).await),
                            2 => {
                                let mine = engine.my_bookings(&me).await.unwrap_or_default();
                                if let Some(b) = mine.first() {
                                    drop(engine.cancel(&me, b.id).await);
                                }
                            }
                            _ => drop(engine.run_jobs(10).await),
                        }
                    };
                    let _ = tokio::time::timeout(cut_off, call).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a storm task");
    }
    let buyer = actor(&engine, "after", Role::User).await;
    for &event in &events {
        let call = engine.book(&buyer, BookingRequest::new(event, 1));
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(_) | Err(Error::SoldOut { .. })) => {}
            other => panic!("a booking after the storm: {other:?}"),
        }
    }
    assert_counters_match_bookings(&*store as &dyn Store, &events).await;
}
