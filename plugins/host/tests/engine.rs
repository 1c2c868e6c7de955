//! End to end through the booking engine: bookings priced by the reference pricing plugins, waitlist
//! promotion following the tier plugin, plugins assigned per event and replaced at run time, and the
//! engine's failure mode applied to a hostile plugin.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use evently_core::*;
use evently_plugins::{HostConfig, Limits, PluginHost, WasmPricingPolicy};
use evently_storage::MemoryStore;

use common::reference_plugin;

/// Default limits with a generous deadline: tests run in parallel on a small machine and a wall-clock
/// deadline must not fire because of CPU contention (the deadline is tested in `tests/deadline.rs`).
fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        limits: Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..HostConfig::default()
    })
    .unwrap()
}

struct World {
    engine: Evently,
    admin: Actor,
    clock: Arc<ManualClock>,
}

fn world(
    host: &PluginHost,
    pricing: Option<&str>,
    waitlist: Option<&str>,
    mode: PolicyFailureMode,
) -> World {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap(),
    ));
    let mut b = Evently::builder()
        .store(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .config(EngineConfig {
            policy_failure_mode: mode,
            ..EngineConfig::default()
        });
    if let Some(name) = pricing {
        b = b.pricing(host.load_pricing(name, &reference_plugin(name)).unwrap());
    }
    if let Some(name) = waitlist {
        b = b.waitlist(host.load_waitlist(name, &reference_plugin(name)).unwrap());
    }
    let engine = b.build().unwrap();
    World {
        engine,
        admin: Actor::new(UserId::new(), Role::Admin),
        clock,
    }
}

impl World {
    async fn user(&self, email: &str, tier: Option<&str>) -> Actor {
        let mut attributes = BTreeMap::new();
        if let Some(t) = tier {
            attributes.insert("tier".to_string(), t.to_string());
        }
        let u = self
            .engine
            .register_user(NewUser {
                email: email.into(),
                name: email.into(),
                password_hash: "x".into(),
                role: Role::User,
                attributes,
            })
            .await
            .unwrap();
        Actor::new(u.id, u.role)
    }

    async fn admin(&mut self) {
        let u = self
            .engine
            .register_user(NewUser {
                email: "admin@example.com".into(),
                name: "Admin".into(),
                password_hash: "x".into(),
                role: Role::Admin,
                attributes: BTreeMap::new(),
            })
            .await
            .unwrap();
        self.admin = Actor::new(u.id, u.role);
    }

    async fn event(&self, capacity: u32, days_ahead: i64, price: i64) -> Event {
        let now = self.clock.now();
        self.engine
            .create_event(
                &self.admin,
                NewEvent {
                    name: format!("Event in {days_ahead} days"),
                    description: String::new(),
                    venue: "Hall A".into(),
                    category: "concert".into(),
                    starts_at: now + chrono::Duration::days(days_ahead),
                    ends_at: now + chrono::Duration::days(days_ahead + 1),
                    capacity,
                    price: Money::new(price, Currency::new("EUR").unwrap()),
                },
            )
            .await
            .unwrap()
    }

    async fn book(&self, who: &Actor, event: &Event, quantity: u32) -> Result<Booking> {
        self.engine
            .book(who, BookingRequest::new(event.id, quantity))
            .await
    }

    async fn total(&self, who: &Actor, event: &Event, quantity: u32) -> i64 {
        self.book(who, event, quantity)
            .await
            .unwrap()
            .total_price
            .minor
    }
}

#[tokio::test]
async fn bookings_are_priced_by_the_pricing_plugin() {
    let host = host();
    let mut w = world(
        &host,
        Some("early-bird-surge"),
        None,
        PolicyFailureMode::Reject,
    );
    w.admin().await;
    let buyer = w.user("ada@example.com", None).await;

    // 40 days ahead: early bird (-20 points), plus surge from the seats already taken.
    let early = w.event(10, 40, 10_000).await;
    assert_eq!(w.total(&buyer, &early, 2).await, 2 * 8_000); // 0% taken
    assert_eq!(w.total(&buyer, &early, 3).await, 3 * 8_000); // 20% taken
    assert_eq!(w.total(&buyer, &early, 1).await, 9_000); // 50%: -20 + 10
    assert_eq!(w.total(&buyer, &early, 2).await, 2 * 9_000); // 60%
    assert_eq!(w.total(&buyer, &early, 1).await, 10_500); // 80%: -20 + 25
    assert_eq!(w.total(&buyer, &early, 1).await, 13_000); // 90%: -20 + 50

    // 10 days ahead: no early bird.
    let late = w.event(4, 10, 10_000).await;
    assert_eq!(w.total(&buyer, &late, 2).await, 2 * 10_000); // 0%
    assert_eq!(w.total(&buyer, &late, 1).await, 11_000); // 50%
    assert_eq!(w.total(&buyer, &late, 1).await, 12_500); // 75%

    // Time moves on: 40 days ahead becomes 20 days ahead, the early bird is over.
    let other = w.event(100, 40, 10_000).await;
    assert_eq!(w.total(&buyer, &other, 1).await, 8_000);
    w.clock.advance(chrono::Duration::days(20));
    assert_eq!(w.total(&buyer, &other, 1).await, 10_000);
}

#[tokio::test]
async fn plugins_are_assigned_per_event_and_replaced_at_run_time() {
    let host = host();
    let mut w = world(
        &host,
        Some("early-bird-surge"),
        None,
        PolicyFailureMode::Reject,
    );
    w.admin().await;
    let buyer = w.user("ada@example.com", None).await;
    let a = w.event(100, 40, 10_000).await;
    let b = w.event(100, 40, 10_000).await;

    let group: Arc<WasmPricingPolicy> = host
        .load_pricing("group-discount", &reference_plugin("group-discount"))
        .unwrap();
    w.engine
        .policies()
        .set_event_pricing(b.id, Some(group.clone()));
    // Event b: 10% off from 5 seats, 15% from 10 (no early bird there); event a: the default.
    assert_eq!(w.total(&buyer, &b, 5).await, 5 * 9_000);
    assert_eq!(w.total(&buyer, &b, 10).await, 10 * 8_500);
    assert_eq!(w.total(&buyer, &b, 2).await, 2 * 10_000);
    assert_eq!(w.total(&buyer, &a, 5).await, 5 * 8_000);

    // Replace the default while the engine runs: every event without its own policy follows.
    w.engine.policies().set_default_pricing(group.clone());
    assert_eq!(w.total(&buyer, &a, 5).await, 5 * 9_000);
    // Back to the built-in fixed price for event b only.
    w.engine
        .policies()
        .set_event_pricing(b.id, Some(Arc::new(evently_core::ports::FixedPrice)));
    assert_eq!(w.total(&buyer, &b, 5).await, 5 * 10_000);
    // Reloading the same module (e.g. after a deploy) reuses the compiled code.
    let before = host.stats();
    let again = host
        .load_pricing("early-bird-surge", &reference_plugin("early-bird-surge"))
        .unwrap();
    assert_eq!(host.stats().compiled, before.compiled);
    w.engine.policies().set_default_pricing(again);
    assert_eq!(w.total(&buyer, &a, 1).await, 8_000);
}

#[tokio::test]
async fn waitlist_promotion_follows_the_tier_plugin() {
    let host = host();
    let mut w = world(
        &host,
        None,
        Some("tiered-waitlist"),
        PolicyFailureMode::Reject,
    );
    w.admin().await;
    let holder = w.user("holder@example.com", None).await;
    let plain = w.user("plain@example.com", None).await;
    let member = w.user("member@example.com", Some("member")).await;
    let late_member = w.user("late-member@example.com", Some("member")).await;
    let vip = w.user("vip@example.com", Some("vip")).await;

    let event = w.event(3, 10, 5_000).await;
    let held = w.book(&holder, &event, 3).await.unwrap();
    // Join order: plain, member, late member, vip.
    for who in [&plain, &member, &late_member, &vip] {
        w.engine.join_waitlist(who, event.id, 1).await.unwrap();
    }
    // Three seats free up: vip first, then the members in join order; plain keeps waiting.
    w.engine.cancel(&holder, held.id).await.unwrap();
    let list = w.engine.waitlist(&w.admin, event.id).await.unwrap();
    let status = |who: &Actor| {
        list.iter()
            .find(|e| e.user_id == who.user_id)
            .map(|e| e.status)
            .unwrap()
    };
    assert_eq!(status(&vip), WaitlistStatus::Offered);
    assert_eq!(status(&member), WaitlistStatus::Offered);
    assert_eq!(status(&late_member), WaitlistStatus::Offered);
    assert_eq!(status(&plain), WaitlistStatus::Waiting);
    // The vip accepts the held offer.
    let booking = w.engine.accept_offer(&vip, event.id).await.unwrap();
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.total_price.minor, 5_000);
}

#[tokio::test]
async fn tier_plugin_serves_members_before_earlier_plain_users() {
    let host = host();
    let mut w = world(
        &host,
        None,
        Some("tiered-waitlist"),
        PolicyFailureMode::Reject,
    );
    w.admin().await;
    let holder = w.user("holder@example.com", None).await;
    let plain = w.user("plain@example.com", None).await;
    let member = w.user("member@example.com", Some("member")).await;
    let event = w.event(1, 10, 5_000).await;
    let held = w.book(&holder, &event, 1).await.unwrap();
    w.engine.join_waitlist(&plain, event.id, 1).await.unwrap();
    w.engine.join_waitlist(&member, event.id, 1).await.unwrap();
    w.engine.cancel(&holder, held.id).await.unwrap();
    // FIFO would offer the seat to `plain`, who joined first.
    assert!(w.engine.accept_offer(&member, event.id).await.is_ok());
    assert!(w.engine.accept_offer(&plain, event.id).await.is_err());
}

const SPIN: &str =
    r#"(func (export "price") (param i32) (result i32) (loop $l (br $l)) (i32.const 0))"#;

#[tokio::test]
async fn a_hostile_pricing_plugin_is_rejected_or_falls_back_by_failure_mode() {
    let host = PluginHost::new(HostConfig {
        limits: Limits {
            timeout: Duration::from_millis(200),
            fuel: Some(200_000),
            ..Limits::default()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let spin = host
        .load_pricing(
            "spinner",
            &wat::parse_str(common::pricing_component(SPIN)).unwrap(),
        )
        .unwrap();

    // Reject: the booking fails with the typed policy error and takes no seat.
    let mut w = world(&host, None, None, PolicyFailureMode::Reject);
    w.admin().await;
    let buyer = w.user("ada@example.com", None).await;
    let event = w.event(10, 10, 10_000).await;
    w.engine
        .policies()
        .set_event_pricing(event.id, Some(spin.clone()));
    match w.book(&buyer, &event, 2).await.unwrap_err() {
        Error::Policy(PolicyError::LimitExceeded { policy, limit }) => {
            assert_eq!(policy, "spinner");
            assert_eq!(limit, "fuel");
        }
        other => panic!("expected a policy error, got {other:?}"),
    }
    assert_eq!(w.engine.availability(event.id).await.unwrap().available, 10);

    // Fallback: the booking goes through at the built-in fixed price.
    let mut w = world(&host, None, None, PolicyFailureMode::FallbackToBuiltin);
    w.admin().await;
    let buyer = w.user("ada@example.com", None).await;
    let event = w.event(10, 10, 10_000).await;
    w.engine.policies().set_event_pricing(event.id, Some(spin));
    assert_eq!(w.total(&buyer, &event, 2).await, 20_000);
    assert_eq!(w.engine.availability(event.id).await.unwrap().available, 8);
}

#[tokio::test]
async fn a_waitlist_plugin_with_an_out_of_range_answer_falls_back_to_fifo() {
    let host = host();
    // Always offers to waiting entry #7, which does not exist.
    let bad = host
        .load_waitlist(
            "liar",
            &wat::parse_str(common::waitlist_component(
                r#"(data (i32.const 1024) "\07\00\00\00")
                   (func (export "choose") (param i32) (result i32)
                     (i32.store8 (i32.const 0) (i32.const 0))
                     (i32.store (i32.const 4) (i32.const 1024))
                     (i32.store (i32.const 8) (i32.const 1)) (i32.const 0))"#,
            ))
            .unwrap(),
        )
        .unwrap();
    for mode in [
        PolicyFailureMode::Reject,
        PolicyFailureMode::FallbackToBuiltin,
    ] {
        let mut w = world(&host, None, None, mode);
        w.admin().await;
        w.engine.policies().set_default_waitlist(bad.clone());
        let holder = w.user("holder@example.com", None).await;
        let first = w.user("first@example.com", None).await;
        let event = w.event(1, 10, 5_000).await;
        let held = w.book(&holder, &event, 1).await.unwrap();
        w.engine.join_waitlist(&first, event.id, 1).await.unwrap();
        let cancelled = w.engine.cancel(&holder, held.id).await;
        match mode {
            PolicyFailureMode::Reject => {
                assert!(
                    matches!(
                        cancelled,
                        Err(Error::Policy(PolicyError::InvalidOutput { .. }))
                    ),
                    "{cancelled:?}"
                );
            }
            _ => {
                cancelled.unwrap();
                // FIFO picked the first waiting user.
                w.engine.accept_offer(&first, event.id).await.unwrap();
            }
        }
    }
}
