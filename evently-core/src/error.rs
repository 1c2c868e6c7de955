//! The one error enum of the core. HTTP, Python and Swift each map it in exactly one place.

use chrono::{DateTime, Utc};

use crate::ids::{BookingId, EventId};
use crate::model::{BookingStatus, WaitlistStatus};

/// `Result` with the core [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of record a [`Error::NotFound`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entity {
    /// A user.
    User,
    /// An event.
    Event,
    /// A booking.
    Booking,
    /// A waitlist entry.
    WaitlistEntry,
    /// A ticket.
    Ticket,
    /// A notification.
    Notification,
    /// A push subscription.
    PushSubscription,
    /// A job.
    Job,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::User => "user",
            Entity::Event => "event",
            Entity::Booking => "booking",
            Entity::WaitlistEntry => "waitlist entry",
            Entity::Ticket => "ticket",
            Entity::Notification => "notification",
            Entity::PushSubscription => "push subscription",
            Entity::Job => "job",
        })
    }
}

/// Everything the engine can refuse or fail with. Callers match on the variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer seats are free than were requested.
    #[error("event {event_id} is sold out: {requested} seat(s) requested, {available} available")]
    SoldOut {
        /// The event.
        event_id: EventId,
        /// Seats asked for.
        requested: u32,
        /// Seats free at the time of the attempt.
        available: u32,
    },
    /// The record does not exist (or is not visible to the caller).
    #[error("{entity} {id} not found")]
    NotFound {
        /// What kind of record.
        entity: Entity,
        /// Its identifier, as given.
        id: String,
    },
    /// The request clashes with the current state (stale version, reused idempotency key, duplicate, ...).
    #[error("conflict: {reason}")]
    Conflict {
        /// What clashed.
        reason: String,
    },
    /// An input value is out of its allowed range or malformed.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The offending field.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The actor may not do this.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why not.
        reason: String,
    },
    /// A booking status change that the state machine does not allow.
    #[error("booking {booking_id} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The booking.
        booking_id: BookingId,
        /// Its current status.
        from: BookingStatus,
        /// The status asked for.
        to: BookingStatus,
    },
    /// A waitlist entry status change that the state machine does not allow.
    #[error("waitlist entry cannot go from {from} to {to}")]
    InvalidWaitlistTransition {
        /// Current status.
        from: WaitlistStatus,
        /// Status asked for.
        to: WaitlistStatus,
    },
    /// The hold ran out before it was confirmed.
    #[error("hold on booking {booking_id} expired at {held_until}")]
    HoldExpired {
        /// The booking.
        booking_id: BookingId,
        /// When the hold ended.
        held_until: DateTime<Utc>,
    },
    /// The event is deactivated or already started, so it takes no bookings.
    #[error("event {event_id} is closed for booking: {reason}")]
    EventClosed {
        /// The event.
        event_id: EventId,
        /// Why.
        reason: &'static str,
    },
    /// A pricing or waitlist policy failed and the failure mode says to reject.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub(crate) fn not_found(entity: Entity, id: impl ToString) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub(crate) fn conflict(reason: impl Into<String>) -> Self {
        Error::Conflict {
            reason: reason.into(),
        }
    }

    pub(crate) fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Validation {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        Error::Forbidden {
            reason: reason.into(),
        }
    }

    /// True when retrying the same operation may succeed (a serialization failure, a dropped connection).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_transient())
    }
}

/// What a store adapter reports. Adapters classify backend errors into these kinds
/// (as sqlx's `DatabaseError::kind()` does), so the engine never parses driver messages.
///
/// `Clone`, so that one failure can be reported to every caller it concerns (the requests of a
/// batch, the calls grouped into one statement, the later calls of an aborted transaction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique constraint was violated.
    #[error("unique constraint {constraint} violated")]
    UniqueViolation {
        /// Name of the constraint (or the column set).
        constraint: String,
    },
    /// A foreign key points at nothing.
    #[error("foreign key {constraint} violated")]
    ForeignKeyViolation {
        /// Name of the constraint.
        constraint: String,
    },
    /// A check constraint refused the write (the schema's last line of defence).
    #[error("check constraint {constraint} violated")]
    CheckViolation {
        /// Name of the constraint.
        constraint: String,
    },
    /// Serialization failure, deadlock, lost connection: the whole transaction may be retried.
    #[error("transient store failure: {message}")]
    Transient {
        /// Detail from the backend.
        message: String,
    },
    /// The backend could not be reached in time (pool exhausted, server down, timeout).
    #[error("store unavailable: {message}")]
    Unavailable {
        /// Detail from the backend.
        message: String,
    },
    /// A stored row could not be turned back into a domain value.
    #[error("corrupt stored data: {message}")]
    Corrupt {
        /// What was wrong.
        message: String,
    },
    /// Any other backend failure.
    #[error("store failure: {message}")]
    Backend {
        /// Detail from the backend.
        message: String,
    },
}

impl StoreError {
    /// True for failures after which the whole transaction may be retried.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    /// [`StoreError::UniqueViolation`] of the named constraint.
    pub fn unique(constraint: &str) -> Self {
        StoreError::UniqueViolation {
            constraint: constraint.into(),
        }
    }

    /// [`StoreError::ForeignKeyViolation`] of the named constraint.
    pub fn foreign_key(constraint: &str) -> Self {
        StoreError::ForeignKeyViolation {
            constraint: constraint.into(),
        }
    }

    /// [`StoreError::CheckViolation`] of the named constraint.
    pub fn check(constraint: &str) -> Self {
        StoreError::CheckViolation {
            constraint: constraint.into(),
        }
    }
}

/// A pricing or waitlist policy misbehaved. Plugins (WebAssembly or native) report these.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy trapped, panicked or returned its own error.
    #[error("policy {policy} failed: {message}")]
    Failed {
        /// Policy name.
        policy: String,
        /// What it said.
        message: String,
    },
    /// The policy ran past a resource limit (fuel, time, memory, output size).
    #[error("policy {policy} exceeded its {limit} limit")]
    LimitExceeded {
        /// Policy name.
        policy: String,
        /// Which limit.
        limit: String,
    },
    /// The policy answered something outside the allowed range (negative price, unknown entry, ...).
    #[error("policy {policy} gave an invalid answer: {message}")]
    InvalidOutput {
        /// Policy name.
        policy: String,
        /// What was wrong with the answer.
        message: String,
    },
}
