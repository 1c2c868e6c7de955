use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BookingId, EventId, JobId, NotificationId, PushSubscriptionId, TicketId, UserId};

/// One admission: a booking of `n` seats has `n` tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Identifier.
    pub id: TicketId,
    /// The booking.
    pub booking_id: BookingId,
    /// The event (denormalised for scanning at the door).
    pub event_id: EventId,
    /// Unique human-readable number, e.g. `EVT-7K2M-9QXD-AB3F`.
    pub number: String,
    /// What the QR code encodes.
    pub qr_payload: String,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Account created.
    Welcome,
    /// Booking confirmed; tickets issued.
    BookingConfirmed,
    /// Booking cancelled.
    BookingCancelled,
    /// A hold ran out.
    HoldExpired,
    /// Seats are offered from the waitlist.
    WaitlistOffer,
    /// A waitlist offer ran out.
    WaitlistOfferExpired,
}

impl NotificationKind {
    /// Stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::Welcome => "welcome",
            NotificationKind::BookingConfirmed => "booking_confirmed",
            NotificationKind::BookingCancelled => "booking_cancelled",
            NotificationKind::HoldExpired => "hold_expired",
            NotificationKind::WaitlistOffer => "waitlist_offer",
            NotificationKind::WaitlistOfferExpired => "waitlist_offer_expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "welcome" => NotificationKind::Welcome,
            "booking_confirmed" => NotificationKind::BookingConfirmed,
            "booking_cancelled" => NotificationKind::BookingCancelled,
            "hold_expired" => NotificationKind::HoldExpired,
            "waitlist_offer" => NotificationKind::WaitlistOffer,
            "waitlist_offer_expired" => NotificationKind::WaitlistOfferExpired,
            _ => return None,
        })
    }
}

/// A message to a user, recorded when the engine decides to send it; `sent_at` is set once delivered.
///
/// A notification is data: its kind and the facts it reports, as typed fields (each kind fills the
/// ones it needs). The words are the edge's business: the reference server renders them with
/// templates, per channel (e-mail, push, in-app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Identifier.
    pub id: NotificationId,
    /// Recipient.
    pub user_id: UserId,
    /// Kind.
    pub kind: NotificationKind,
    /// The event it is about (every kind but `Welcome`).
    pub event_id: Option<EventId>,
    /// The booking it is about (`BookingConfirmed`, `BookingCancelled`, `HoldExpired`, and the held
    /// booking of a `WaitlistOffer`).
    pub booking_id: Option<BookingId>,
    /// Seats of that booking or offer.
    pub seats: Option<u32>,
    /// What a confirmed booking costs in total.
    pub total: Option<crate::Money>,
    /// Until when a `WaitlistOffer` holds its seats.
    pub offer_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Delivery time; `None` while pending.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the recipient first marked it read; `None` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// A notification of `kind` for `user_id` at `at`, about nothing yet (set the fields its kind
    /// reports).
    pub fn new(
        id: NotificationId,
        user_id: UserId,
        kind: NotificationKind,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            user_id,
            kind,
            event_id: None,
            booking_id: None,
            seats: None,
            total: None,
            offer_expires_at: None,
            created_at: at,
            sent_at: None,
            read_at: None,
        }
    }
}

/// A browser's Web Push subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    /// Identifier.
    pub id: PushSubscriptionId,
    /// Owner.
    pub user_id: UserId,
    /// Push service URL; unique.
    pub endpoint: String,
    /// The client's P-256 public key (base64url).
    pub p256dh: String,
    /// The client's auth secret (base64url).
    pub auth: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Work for a background worker. Serialised as JSON by stores that persist jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobPayload {
    /// Deliver a recorded notification through every configured notifier.
    DeliverNotification {
        /// The notification.
        notification_id: NotificationId,
    },
    /// Expire the holds and offers of one event that ran out, then promote its waitlist.
    ExpireHolds {
        /// The event.
        event_id: EventId,
    },
}

impl JobPayload {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            JobPayload::DeliverNotification { .. } => "deliver_notification",
            JobPayload::ExpireHolds { .. } => "expire_holds",
        }
    }
}

/// Job lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for `run_at`.
    Queued,
    /// Claimed by a worker until `locked_until`.
    Running,
    /// Finished.
    Done,
    /// Gave up after `max_attempts`; `last_error` says why.
    Dead,
}

impl JobStatus {
    /// Stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "dead" => JobStatus::Dead,
            _ => return None,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// What to do.
    pub payload: JobPayload,
    /// Higher runs first.
    pub priority: i16,
    /// Not before this time.
    pub run_at: DateTime<Utc>,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
    /// At most one queued or running job with this key; a second enqueue is a no-op.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    /// A job due now with default priority (0) and 8 attempts.
    pub fn now(payload: JobPayload, now: DateTime<Utc>) -> Self {
        Self {
            payload,
            priority: 0,
            run_at: now,
            max_attempts: 8,
            dedupe_key: None,
        }
    }

    /// The stored job this becomes under `id`: queued, no attempts yet, created when first due
    /// (what every queue records).
    pub fn queued(&self, id: JobId) -> Job {
        Job {
            id,
            payload: self.payload.clone(),
            priority: self.priority,
            status: JobStatus::Queued,
            run_at: self.run_at,
            attempts: 0,
            max_attempts: self.max_attempts,
            dedupe_key: self.dedupe_key.clone(),
            last_error: None,
            locked_until: None,
            created_at: self.run_at,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Identifier.
    pub id: JobId,
    /// What to do.
    pub payload: JobPayload,
    /// Priority.
    pub priority: i16,
    /// Status.
    pub status: JobStatus,
    /// Earliest next run.
    pub run_at: DateTime<Utc>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempt limit.
    pub max_attempts: u32,
    /// Deduplication key.
    pub dedupe_key: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// While running: when the claim lapses and the job may be claimed again.
    pub locked_until: Option<DateTime<Utc>>,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
}
