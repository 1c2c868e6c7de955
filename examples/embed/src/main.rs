//! # Embed the Evently engine in your own program
//!
//! Evently is a library first: the HTTP server is one way to drive it, your own process is another.
//! This example walks through a whole booking story on the embedded default store (one SQLite file),
//! without any server:
//!
//! 1. open an SQLite store and build an engine with a custom [`Notifier`];
//! 2. register an administrator and two users;
//! 3. create an event with two seats;
//! 4. book both seats (with an idempotency key, so a retried request books nothing twice);
//! 5. try to book one more and get [`Error::SoldOut`];
//! 6. join the waitlist;
//! 7. cancel the first booking, which offers the freed seat to the waitlist;
//! 8. look at the offer (a held booking) and accept it;
//! 9. run the background jobs, which deliver every notification through our notifier.
//!
//! Run it with `cargo run -p example-embed`. It prints what happens and exits 0, or exits non-zero if
//! the engine did not behave as described (CI runs it, so this documentation cannot go stale).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;
use evently_core::ports::{Delivery, Notifier, NotifyError};
use evently_core::{
    Actor, BookingRequest, BookingStatus, Currency, Error, Evently, Money, NewEvent, NewUser, Role,
    WaitlistStatus,
};
use evently_storage::{SqliteConfig, SqliteStore};

/// A delivery channel that prints to stdout.
///
/// Real channels send e-mail, Web Push or webhooks. The engine records every notification in the same
/// transaction as the change that caused it and enqueues a delivery job; `Evently::run_jobs` later
/// hands each one to every configured notifier. Delivery is at least once, so a real notifier should
/// be idempotent per notification id.
#[derive(Default)]
struct StdoutNotifier {
    delivered: AtomicUsize,
}

#[async_trait]
impl Notifier for StdoutNotifier {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn notify(&self, delivery: Delivery<'_>) -> Result<(), NotifyError> {
        // A notification is data (its kind and facts); each channel writes its own words. The
        // reference server renders them with templates (`evently_http::texts`).
        let n = delivery.notification;
        let about = delivery
            .event
            .map_or(String::new(), |e| format!(" for {}", e.name));
        let seats = n.seats.map_or(String::new(), |s| format!(", {s} seat(s)"));
        let total = n.total.map_or(String::new(), |t| format!(", total {t}"));
        println!(
            "    -> to {:<20} [{}]{about}{seats}{total}",
            delivery.user.email,
            n.kind.as_str(),
        );
        self.delivered.fetch_add(1, Ordering::Relaxed);
        // A failing channel would return `NotifyError::Transient` (the job is retried with backoff)
        // or `NotifyError::Permanent` (the job is given up).
        Ok(())
    }
}

/// A fresh directory under the system's temporary directory, removed when dropped, so the example
/// leaves no database file behind.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("evently-embed-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Registers a user and returns the [`Actor`] the engine expects for their calls.
///
/// The engine stores a password *hash* and never reads it: checking passwords is the job of the edge
/// that authenticates people (the HTTP server hashes with Argon2id). An embedding program that
/// authenticates some other way can store any non-empty marker.
async fn register(engine: &Evently, email: &str, name: &str, role: Role) -> anyhow::Result<Actor> {
    let user = engine
        .register_user(NewUser {
            email: email.into(),
            name: name.into(),
            password_hash: "unused-by-this-example".into(),
            role,
            attributes: Default::default(),
        })
        .await?;
    println!(
        "  registered {} ({:?}) as {}",
        user.email, user.role, user.id
    );
    Ok(Actor::new(user.id, user.role))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. The store and the engine. ------------------------------------------------------------------
    //
    // `SqliteStore::open` creates the file if it is missing and applies the embedded migrations.
    // `SqliteStore::open_in_memory()` is the shortcut for a throwaway store; a real program passes
    // something like `sqlite:///var/lib/myapp/evently.db`.
    let dir = TempDir::new()?;
    let url = format!("sqlite://{}", dir.path().join("evently.db").display());
    println!("1. opening the SQLite store at {url}");
    let store = SqliteStore::open(SqliteConfig::new(url))
        .await
        .context("opening the SQLite store")?;

    let notifier = Arc::new(StdoutNotifier::default());
    // Only the store is required. Everything else has a default: the system clock, UUIDv7 ids,
    // fixed pricing (`FixedPrice`), a first-come-first-served waitlist (`FifoWaitlist`) and
    // `EngineConfig::default()` (10-minute holds, 30-minute waitlist offers, ...).
    let engine = Evently::builder()
        .store(Arc::new(store.clone()))
        .notifier(notifier.clone())
        .build()?;

    // 2. People. ------------------------------------------------------------------------------------
    //
    // Every engine call takes an `Actor`: the already-authenticated caller. The core decides what
    // that actor may do (only administrators create events, users see only their own bookings).
    println!("2. registering people");
    let admin = register(&engine, "admin@example.com", "Ada Admin", Role::Admin).await?;
    let alice = register(&engine, "alice@example.com", "Alice", Role::User).await?;
    let bob = register(&engine, "bob@example.com", "Bob", Role::User).await?;

    // 3. An event with two seats. -------------------------------------------------------------------
    let now = engine.now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Rust Meetup".into(),
                description: "Two seats only, to show the waitlist.".into(),
                venue: "Room 101".into(),
                category: "meetup".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(30) + chrono::Duration::hours(2),
                capacity: 2,
                // Money is integer minor units plus a currency, never a float: 25.00 EUR.
                price: Money::new(2500, Currency::new("EUR")?),
            },
        )
        .await?;
    println!(
        "3. created event {:?} ({}) with {} seats at {} each",
        event.name, event.id, event.capacity, event.price
    );

    // 4. Alice books both seats. --------------------------------------------------------------------
    //
    // The idempotency key makes a retry safe: the same key (per user) returns the same booking
    // instead of booking again. Clients should send one whenever they might retry.
    let request = BookingRequest::new(event.id, 2).idempotency_key("alice-order-1");
    let alice_booking = engine.book(&alice, request.clone()).await?;
    let retried = engine.book(&alice, request).await?;
    ensure!(
        retried.id == alice_booking.id,
        "a retried request with the same idempotency key must return the same booking"
    );
    let tickets = engine.tickets(&alice, alice_booking.id).await?;
    println!(
        "4. alice booked {} seats: booking {} is {}, total {}, tickets {}",
        alice_booking.quantity,
        alice_booking.id,
        alice_booking.status,
        alice_booking.total_price,
        tickets
            .iter()
            .map(|t| t.number.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ensure!(alice_booking.status == BookingStatus::Confirmed && tickets.len() == 2);

    // 5. The event is sold out. ---------------------------------------------------------------------
    //
    // Errors are one typed enum; match on the variant you care about. `SoldOut` carries what was
    // asked for and what was free at that moment.
    match engine.book(&bob, BookingRequest::new(event.id, 1)).await {
        Err(Error::SoldOut {
            requested,
            available,
            ..
        }) => println!(
            "5. bob asked for {requested} seat, {available} available: sold out (as expected)"
        ),
        other => bail!("expected Error::SoldOut, got {other:?}"),
    }

    // 6. Bob joins the waitlist. --------------------------------------------------------------------
    //
    // Positions are computed when read, over the entries still waiting, so they are always 1, 2, 3...
    let entry = engine.join_waitlist(&bob, event.id, 1).await?;
    println!(
        "6. bob joined the waitlist: position {:?}, status {}",
        entry.position, entry.status
    );
    ensure!(entry.position == Some(1) && entry.status == WaitlistStatus::Waiting);

    // 7. Alice cancels. -----------------------------------------------------------------------------
    //
    // In the same transaction, the freed seats go to the waitlist policy, which offers one to Bob.
    let cancelled = engine.cancel(&alice, alice_booking.id).await?;
    println!(
        "7. alice cancelled: booking {} is {}",
        cancelled.id, cancelled.status
    );
    ensure!(cancelled.status == BookingStatus::Cancelled);

    // 8. The offer, and accepting it. ---------------------------------------------------------------
    //
    // A waitlist offer *is* a held booking for the waiting user: it occupies the seat until it is
    // confirmed, or until the hold runs out (then the seat goes to the next in line).
    let offer = engine.waitlist_position(&bob, event.id).await?;
    let offer_booking_id = offer
        .offer_booking_id
        .context("an offered entry names the held booking that carries the offer")?;
    let held = engine.booking(&bob, offer_booking_id).await?;
    let seats = engine.availability(event.id).await?;
    println!(
        "8. bob's entry is {}; booking {} is {} until {}; seats: {} held, {} confirmed, {} free",
        offer.status,
        held.id,
        held.status,
        offer
            .offer_expires_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        seats.held,
        seats.confirmed,
        seats.available
    );
    ensure!(offer.status == WaitlistStatus::Offered && held.status == BookingStatus::Held);

    let accepted = engine.accept_offer(&bob, event.id).await?;
    let bob_tickets = engine.tickets(&bob, accepted.id).await?;
    println!(
        "   bob accepted: booking {} is {}, ticket {}",
        accepted.id,
        accepted.status,
        bob_tickets
            .first()
            .map(|t| t.number.as_str())
            .unwrap_or("-")
    );
    ensure!(accepted.id == held.id && accepted.status == BookingStatus::Confirmed);

    // 9. Background jobs. ---------------------------------------------------------------------------
    //
    // Notifications were recorded, and their delivery jobs enqueued, inside the transactions above.
    // A program runs `run_jobs` periodically (the reference server does it in a loop; call
    // `expire_holds` periodically too). Here one pass per batch until the queue has nothing due.
    println!("9. running background jobs:");
    let mut succeeded = 0;
    loop {
        let summary = engine.run_jobs(50).await?;
        ensure!(
            summary.retried == 0 && summary.dead == 0,
            "a job failed: {summary:?}"
        );
        succeeded += summary.succeeded;
        if summary.claimed == 0 {
            break;
        }
    }
    // Three welcomes, Alice's confirmation and cancellation, Bob's offer and confirmation.
    let delivered = notifier.delivered.load(Ordering::Relaxed);
    println!("   {succeeded} job(s) done, {delivered} notification(s) delivered");
    ensure!(
        delivered == 7,
        "expected 7 notifications, {delivered} delivered"
    );

    // Close the store so every connection ends before the temporary directory is removed.
    store.close().await;
    println!("done");
    Ok(())
}
