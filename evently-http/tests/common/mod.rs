//! Engine fixtures shared by the notification tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use evently_core::{Actor, Currency, Evently, Money, NewEvent, NewUser, Role, User};

/// Registers a user (the password hash is never read by the engine).
pub async fn user(engine: &Evently, email: &str, name: &str, role: Role) -> (User, Actor) {
    let u = engine
        .register_user(NewUser {
            email: email.into(),
            name: name.into(),
            password_hash: "unused".into(),
            role,
            attributes: BTreeMap::new(),
        })
        .await
        .expect("register");
    let actor = Actor::new(u.id, u.role);
    (u, actor)
}

/// A 100-seat conference a month ahead at 49.00 EUR, created by `admin`.
pub async fn event(engine: &Evently, admin: &Actor) -> evently_core::Event {
    let now = engine.now();
    engine
        .create_event(
            admin,
            NewEvent {
                name: "RustConf".into(),
                description: "Talks".into(),
                venue: "Hall A".into(),
                category: "conference".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(31),
                capacity: 100,
                price: Money::new(4900, Currency::new("EUR").expect("currency")),
            },
        )
        .await
        .expect("event")
}
