//! The Evently engine on the redb store: registers an administrator and a user, creates an event,
//! books two seats and prints the booking and its tickets.
//!
//! `cargo run -p example-redb-store -- [FILE]` keeps the database in FILE (created if missing; run it
//! again to add to it), or in a temporary file removed at the end.

use std::sync::Arc;

use anyhow::Context;
use evently_core::{Actor, BookingRequest, Currency, Evently, Money, NewEvent, NewUser, Role};
use example_redb_store::RedbStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let given = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let run = std::process::id();
    let path = given
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("evently-redb-{run}.redb")));
    let store = RedbStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
    println!("store: redb at {}", path.display());
    let engine = Evently::builder().store(Arc::new(store)).build()?;

    let register = async |name: &str, role| -> anyhow::Result<Actor> {
        let user = engine
            .register_user(NewUser {
                // A new address each run, so that a kept database takes a second run.
                email: format!("{name}-{run}@example.com"),
                name: name.into(),
                password_hash: "unused-by-this-example".into(),
                role,
                attributes: Default::default(),
            })
            .await?;
        println!("registered {} ({:?})", user.email, user.role);
        Ok(Actor::new(user.id, user.role))
    };
    let admin = register("admin", Role::Admin).await?;
    let alice = register("alice", Role::User).await?;

    let starts_at = engine.now() + chrono::Duration::days(30);
    let new_event = NewEvent {
        name: "Embedded databases night".into(),
        description: "Evently on redb.".into(),
        venue: "Room 101".into(),
        category: "meetup".into(),
        starts_at,
        ends_at: starts_at + chrono::Duration::hours(2),
        capacity: 10,
        price: Money::new(1500, Currency::new("EUR")?),
    };
    let event = engine.create_event(&admin, new_event).await?;
    println!("created {:?} with {} seats", event.name, event.capacity);

    let booking = engine
        .book(&alice, BookingRequest::new(event.id, 2))
        .await?;
    println!(
        "booking {}: {}, {} seats, {}",
        booking.id, booking.status, booking.quantity, booking.total_price
    );
    for ticket in engine.tickets(&alice, booking.id).await? {
        println!("  ticket {}  {}", ticket.number, ticket.qr_payload);
    }
    let seats = engine.availability(event.id).await?;
    println!(
        "seats: {} confirmed, {} free",
        seats.confirmed, seats.available
    );

    drop(engine);
    if given.is_none() {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}
