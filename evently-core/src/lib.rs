//! # evently-core
//!
//! The booking engine of Evently: the domain model, the rules (no oversell, idempotent booking, waitlist
//! promotion with offer expiry) and the ports adapters implement. It performs no I/O itself and depends on
//! no database, HTTP or WebAssembly crate.
//!
//! Assemble an engine with [`Evently::builder`], giving it a [`Store`] (see `evently-storage` for the
//! in-memory, SQLite and PostgreSQL ones). Every operation takes an [`Actor`], the already-authenticated
//! caller; the core decides what that actor may do.
//!
//! ```
//! # use std::sync::Arc;
//! # use evently_core::*;
//! # async fn demo(store: Arc<dyn Store>) -> Result<()> {
//! let engine = Evently::builder().store(store).build()?;
//! let admin = engine.register_user(NewUser {
//!     email: "ada@example.com".into(), name: "Ada".into(), password_hash: "x".into(),
//!     role: Role::Admin, attributes: Default::default(),
//! }).await?;
//! let admin = Actor::new(admin.id, admin.role);
//! let now = engine.now();
//! let event = engine.create_event(&admin, NewEvent {
//!     name: "RustConf".into(), description: String::new(), venue: "Hall A".into(),
//!     category: "conference".into(), starts_at: now + chrono::Duration::days(30),
//!     ends_at: now + chrono::Duration::days(31), capacity: 100,
//!     price: Money::new(4900, Currency::new("EUR")?),
//! }).await?;
//! let booking = engine.book(&admin, BookingRequest::new(event.id, 2)).await?;
//! assert_eq!(booking.status, BookingStatus::Confirmed);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod engine;
mod error;
mod ids;
mod model;
mod money;
pub mod ports;

pub use engine::{
    BookingRequest, EngineConfig, Evently, EventlyBuilder, JobRunSummary, PolicyFailureMode,
    PolicyRegistry, Reservation,
};
pub use error::{Entity, Error, PolicyError, Result, StoreError};
pub use ids::{
    BookingId, EventId, JobId, NotificationId, PushSubscriptionId, TicketId, UserId,
    WaitlistEntryId,
};
pub use model::*;
pub use money::{Currency, Money};
pub use ports::{
    Changes, Clock, IdGenerator, JobQueue, LockMode, ManualClock, NotificationQuery, Notifier,
    PricingPolicy, Store, SystemClock, Transaction, WaitlistPolicy,
};
