//! Price bookings with a sandboxed WebAssembly plugin.
//!
//! Loads the reference `group-discount` pricing plugin (built by `scripts/build-plugins` into
//! `target/plugins/`; pass another component's path as the first argument), gives it to the engine
//! as its pricing policy, and books 1, 5 and 10 seats of a 20 EUR event on an in-memory SQLite store:
//! the plugin charges the list price, then 10 % and 15 % off each seat.
//!
//! ```text
//! scripts/build-plugins
//! cargo run -p example-plugin-pricing [-- path/to/plugin.wasm]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use chrono::Utc;
use evently_core::{
    Actor, BookingRequest, Currency, Evently, Money, NewEvent, NewUser, PolicyFailureMode, Role,
};
use evently_plugins::{HostConfig, Limits, PluginHost};
use evently_storage::SqliteStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/plugins/group-discount.wasm")
        });

    // One host per process: it compiles components (cached on disk when `cache_dir` is set) and runs
    // every call in a fresh sandbox with a deadline, fuel and a memory cap.
    let host = PluginHost::new(HostConfig {
        limits: Limits {
            timeout: Duration::from_millis(50),
            ..Limits::default()
        },
        ..HostConfig::default()
    })?;
    let pricing = host.load_pricing_file(&path).with_context(|| {
        format!(
            "loading {} (run scripts/build-plugins to build the reference plugins)",
            path.display()
        )
    })?;
    println!("loaded pricing plugin {}", path.display());

    let store = SqliteStore::open_in_memory().await?;
    let engine = Evently::builder()
        .store(Arc::new(store))
        .pricing(pricing)
        // A plugin that fails (traps, runs out of time, answers nonsense) refuses the booking rather
        // than selling at a wrong price; `FallbackToDefault` would charge the list price instead.
        .config(evently_core::EngineConfig {
            policy_failure_mode: PolicyFailureMode::Reject,
            ..Default::default()
        })
        .build()?;

    let admin = engine
        .register_user(user("admin@example.com", Role::Admin))
        .await?;
    let admin = Actor::new(admin.id, admin.role);
    let now = Utc::now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Workshop".into(),
                description: "Bring a laptop".into(),
                venue: "Room 2".into(),
                category: "training".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(30) + chrono::Duration::hours(4),
                capacity: 100,
                price: Money::new(2000, Currency::new("EUR")?),
            },
        )
        .await?;

    let buyer = engine
        .register_user(user("team-lead@example.com", Role::User))
        .await?;
    let buyer = Actor::new(buyer.id, buyer.role);
    let mut totals = Vec::new();
    for seats in [1, 5, 10] {
        let booking = engine
            .book(&buyer, BookingRequest::new(event.id, seats))
            .await?;
        println!(
            "{seats:>2} seat(s): total {} (minor units)",
            booking.total_price
        );
        totals.push(booking.total_price.minor);
    }
    ensure!(
        totals == [2000, 9000, 17000],
        "unexpected totals {totals:?} (the group-discount plugin charges 2000, 5 x 1800, 10 x 1700)"
    );
    Ok(())
}

fn user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.into(),
        name: email.into(),
        password_hash: "hashed-by-your-login-code".into(),
        role,
        attributes: Default::default(),
    }
}
