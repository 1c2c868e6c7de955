//! Engine fixtures shared by the engine tests on the memory and SQLite stores.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use evently_core::*;

/// A manual clock stopped at 2030-01-01 09:00 UTC.
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap(),
    ))
}

/// An engine on `store` with `clock` and every other part at its default.
pub fn engine_on(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Evently {
    Evently::builder()
        .store(store)
        .clock(clock)
        .build()
        .unwrap()
}

/// An engine on `store` at [`clock`]'s time, with an administrator.
pub async fn setup(store: Arc<dyn Store>) -> (Evently, Arc<ManualClock>, Actor) {
    let clock = clock();
    let engine = engine_on(store, clock.clone());
    let admin = user(&engine, "admin@example.com", Role::Admin).await;
    (engine, clock, admin)
}

/// Registers a user with a `tier` attribute of `member`.
pub async fn user(engine: &Evently, email: &str, role: Role) -> Actor {
    let u = engine
        .register_user(NewUser {
            email: email.into(),
            name: "Someone".into(),
            password_hash: "$argon2id$stub".into(),
            role,
            attributes: [("tier".to_string(), "member".to_string())].into(),
        })
        .await
        .unwrap();
    Actor::new(u.id, u.role)
}

/// A gig a week ahead with `capacity` seats at 15.00 EUR.
pub async fn event(engine: &Evently, admin: &Actor, capacity: u32) -> Event {
    let now = engine.now();
    engine
        .create_event(
            admin,
            NewEvent {
                name: "Gig".into(),
                description: String::new(),
                venue: "Club".into(),
                category: "music".into(),
                starts_at: now + Duration::days(7),
                ends_at: now + Duration::days(7) + Duration::hours(3),
                capacity,
                price: Money::new(1500, Currency::new("EUR").unwrap()),
            },
        )
        .await
        .unwrap()
}

/// Deletes every key under the connection's prefix (fencing-token counters never expire on their own).
pub fn forget_redis_keys(conn: &evently_storage::redis::RedisConnection) {
    let url = conn.config().url.clone();
    let pattern = format!("{}*", conn.config().key_prefix);
    let keys = std::process::Command::new("redis-cli")
        .args(["-u", &url, "--scan", "--pattern", &pattern])
        .output()
        .expect("redis-cli must be installed");
    for key in String::from_utf8_lossy(&keys.stdout).lines() {
        let deleted = std::process::Command::new("redis-cli")
            .args(["-u", &url, "DEL", key])
            .output()
            .expect("redis-cli");
        assert!(deleted.status.success());
    }
}
