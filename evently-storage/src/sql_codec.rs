//! Decoding rows into domain records, shared by the SQL stores. Both schemas have the same tables and
//! column names and differ only in how a column holds a value (uuid or text, timestamptz or
//! microseconds, jsonb or JSON text, boolean or 0/1); each store says how through [`Columns`], and
//! the decoders here build the records. Decoding never panics: a value that does not fit the domain
//! is [`StoreError::Corrupt`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use evently_core::ports::JobStats;
use evently_core::{
    Booking, BookingSource, BookingStatus, Currency, Event, Job, JobStatus, Money, Notification,
    NotificationKind, PushSubscription, Role, StoreError, Ticket, User, WaitlistEntry,
    WaitlistStatus,
};
use uuid::Uuid;

type R<T> = Result<T, StoreError>;

/// A value that does not fit the domain.
pub(crate) fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        message: message.into(),
    }
}

/// How one store reads typed values out of one of its rows.
pub(crate) trait Columns {
    /// A text column.
    fn text(&self, col: &str) -> R<String>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> R<Option<String>>;
    /// An integer column.
    fn int(&self, col: &str) -> R<i64>;
    /// A boolean column.
    fn flag(&self, col: &str) -> R<bool>;
    /// An identifier column.
    fn uuid(&self, col: &str) -> R<Uuid>;
    /// A nullable identifier column.
    fn opt_uuid(&self, col: &str) -> R<Option<Uuid>>;
    /// A timestamp column.
    fn ts(&self, col: &str) -> R<DateTime<Utc>>;
    /// A nullable timestamp column.
    fn opt_ts(&self, col: &str) -> R<Option<DateTime<Utc>>>;
    /// A JSON column.
    fn json(&self, col: &str) -> R<serde_json::Value>;
}

fn id<T: From<Uuid>>(row: &impl Columns, col: &str) -> R<T> {
    row.uuid(col).map(T::from)
}

fn opt_id<T: From<Uuid>>(row: &impl Columns, col: &str) -> R<Option<T>> {
    Ok(row.opt_uuid(col)?.map(T::from))
}

fn int_as<T: TryFrom<i64>>(row: &impl Columns, col: &str) -> R<T> {
    let v = row.int(col)?;
    T::try_from(v).map_err(|_| corrupt(format!("{col} {v} is out of range")))
}

fn money(row: &impl Columns) -> R<Money> {
    let minor = row.int("price_minor")?;
    let code = row.text("currency")?;
    let currency =
        Currency::new(&code).map_err(|_| corrupt(format!("currency {code:?} is not valid")))?;
    Ok(Money::new(minor, currency))
}

fn map(row: &impl Columns, col: &str) -> R<BTreeMap<String, String>> {
    serde_json::from_value(row.json(col)?)
        .map_err(|e| corrupt(format!("{col} is not a JSON string map: {e}")))
}

fn parsed<T>(row: &impl Columns, col: &str, parse: impl FnOnce(&str) -> Option<T>) -> R<T> {
    let s = row.text(col)?;
    parse(&s).ok_or_else(|| corrupt(format!("unknown {col} {s:?}")))
}

/// Columns read for a [`User`].
pub(crate) const USER_COLUMNS: &str =
    "id, email, name, password_hash, role, attributes, created_at";

/// Decodes a [`User`].
pub(crate) fn user(row: &impl Columns) -> R<User> {
    Ok(User {
        id: id(row, "id")?,
        email: row.text("email")?,
        name: row.text("name")?,
        password_hash: row.text("password_hash")?,
        role: parsed(row, "role", Role::parse)?,
        attributes: map(row, "attributes")?,
        created_at: row.ts("created_at")?,
    })
}

/// Columns read for an [`Event`].
pub(crate) const EVENT_COLUMNS: &str = "id, name, description, venue, category, starts_at, ends_at, \
     capacity, price_minor, currency, active, version, seats_held, seats_confirmed, created_at, \
     updated_at";

/// Decodes an [`Event`].
pub(crate) fn event(row: &impl Columns) -> R<Event> {
    Ok(Event {
        id: id(row, "id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        venue: row.text("venue")?,
        category: row.text("category")?,
        starts_at: row.ts("starts_at")?,
        ends_at: row.ts("ends_at")?,
        capacity: int_as(row, "capacity")?,
        price: money(row)?,
        active: row.flag("active")?,
        version: int_as(row, "version")?,
        seats_held: int_as(row, "seats_held")?,
        seats_confirmed: int_as(row, "seats_confirmed")?,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// Columns read for a [`Booking`].
pub(crate) const BOOKING_COLUMNS: &str = "id, user_id, event_id, quantity, price_minor, currency, \
     status, held_until, idempotency_key, source_kind, source_entry_id, created_at, updated_at";

/// Decodes a [`Booking`].
pub(crate) fn booking(row: &impl Columns) -> R<Booking> {
    let kind = row.text("source_kind")?;
    let source = match (kind.as_str(), opt_id(row, "source_entry_id")?) {
        ("direct", None) => BookingSource::Direct,
        ("waitlist_offer", Some(entry)) => BookingSource::WaitlistOffer(entry),
        (k, entry) => {
            return Err(corrupt(format!(
                "booking source {k:?} with entry {entry:?} is not valid"
            )));
        }
    };
    Ok(Booking {
        id: id(row, "id")?,
        user_id: id(row, "user_id")?,
        event_id: id(row, "event_id")?,
        quantity: int_as(row, "quantity")?,
        total_price: money(row)?,
        status: parsed(row, "status", BookingStatus::parse)?,
        held_until: row.opt_ts("held_until")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        source,
        created_at: row.ts("created_at")?,
        updated_at: row.ts("updated_at")?,
    })
}

/// Columns read for a [`WaitlistEntry`].
pub(crate) const WAITLIST_COLUMNS: &str = "seq, id, event_id, user_id, quantity, status, \
     joined_at, notified_at, offer_expires_at, offer_booking_id";

/// Decodes a [`WaitlistEntry`] (`position` is left `None`; the engine computes it).
pub(crate) fn waitlist_entry(row: &impl Columns) -> R<WaitlistEntry> {
    Ok(WaitlistEntry {
        id: id(row, "id")?,
        event_id: id(row, "event_id")?,
        user_id: id(row, "user_id")?,
        quantity: int_as(row, "quantity")?,
        seq: row.int("seq")?,
        position: None,
        status: parsed(row, "status", WaitlistStatus::parse)?,
        joined_at: row.ts("joined_at")?,
        notified_at: row.opt_ts("notified_at")?,
        offer_expires_at: row.opt_ts("offer_expires_at")?,
        offer_booking_id: opt_id(row, "offer_booking_id")?,
    })
}

/// Columns read for a [`Ticket`].
pub(crate) const TICKET_COLUMNS: &str = "id, booking_id, event_id, number, qr_payload, issued_at";

/// Decodes a [`Ticket`].
pub(crate) fn ticket(row: &impl Columns) -> R<Ticket> {
    Ok(Ticket {
        id: id(row, "id")?,
        booking_id: id(row, "booking_id")?,
        event_id: id(row, "event_id")?,
        number: row.text("number")?,
        qr_payload: row.text("qr_payload")?,
        issued_at: row.ts("issued_at")?,
    })
}

/// Columns read for a [`Notification`].
pub(crate) const NOTIFICATION_COLUMNS: &str =
    "id, user_id, kind, data, created_at, sent_at, read_at";

/// The facts a notification reports, as its `data` column keeps them (a JSON object; absent facts
/// are left out).
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct NotificationFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_id: Option<evently_core::EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    booking_id: Option<evently_core::BookingId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seats: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total: Option<evently_core::Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offer_expires_at: Option<DateTime<Utc>>,
}

impl NotificationFacts {
    /// The facts of `n`.
    pub(crate) fn of(n: &Notification) -> Self {
        Self {
            event_id: n.event_id,
            booking_id: n.booking_id,
            seats: n.seats,
            total: n.total,
            offer_expires_at: n.offer_expires_at,
        }
    }

    /// As the JSON text of the `data` column.
    pub(crate) fn to_json(&self) -> R<String> {
        serde_json::to_string(self).map_err(|e| StoreError::Backend {
            message: format!("cannot encode notification data as JSON: {e}"),
        })
    }
}

/// The `channel` column of a `notification_deliveries` row.
pub(crate) fn delivery_channel(row: &impl Columns) -> R<String> {
    row.text("channel")
}

/// Decodes a [`Notification`].
pub(crate) fn notification(row: &impl Columns) -> R<Notification> {
    let facts: NotificationFacts = serde_json::from_value(row.json("data")?)
        .map_err(|e| corrupt(format!("data is not a notification's facts: {e}")))?;
    Ok(Notification {
        id: id(row, "id")?,
        user_id: id(row, "user_id")?,
        kind: parsed(row, "kind", NotificationKind::parse)?,
        event_id: facts.event_id,
        booking_id: facts.booking_id,
        seats: facts.seats,
        total: facts.total,
        offer_expires_at: facts.offer_expires_at,
        created_at: row.ts("created_at")?,
        sent_at: row.opt_ts("sent_at")?,
        read_at: row.opt_ts("read_at")?,
    })
}

/// Columns read for a [`PushSubscription`].
pub(crate) const PUSH_COLUMNS: &str = "id, user_id, endpoint, p256dh, auth, created_at";

/// Decodes a [`PushSubscription`].
pub(crate) fn push_subscription(row: &impl Columns) -> R<PushSubscription> {
    Ok(PushSubscription {
        id: id(row, "id")?,
        user_id: id(row, "user_id")?,
        endpoint: row.text("endpoint")?,
        p256dh: row.text("p256dh")?,
        auth: row.text("auth")?,
        created_at: row.ts("created_at")?,
    })
}

/// Columns read for a [`Job`].
pub(crate) const JOB_COLUMNS: &str = "id, payload, priority, status, run_at, attempts, \
     max_attempts, dedupe_key, last_error, locked_until, created_at";

/// Decodes a [`Job`].
pub(crate) fn job(row: &impl Columns) -> R<Job> {
    Ok(Job {
        id: id(row, "id")?,
        payload: serde_json::from_value(row.json("payload")?)
            .map_err(|e| corrupt(format!("job payload is not valid: {e}")))?,
        priority: int_as(row, "priority")?,
        status: parsed(row, "status", JobStatus::parse)?,
        run_at: row.ts("run_at")?,
        attempts: int_as(row, "attempts")?,
        max_attempts: int_as(row, "max_attempts")?,
        dedupe_key: row.opt_text("dedupe_key")?,
        last_error: row.opt_text("last_error")?,
        locked_until: row.opt_ts("locked_until")?,
        created_at: row.ts("created_at")?,
    })
}

/// The query [`job_stats`] decodes.
pub(crate) const JOB_STATS_SQL: &str = "SELECT status, \
     CASE WHEN last_error IS NULL THEN 0 ELSE 1 END AS failed, COUNT(*) AS n \
     FROM jobs GROUP BY status, failed";

/// Sums the rows of [`JOB_STATS_SQL`] into [`JobStats`].
pub(crate) fn job_stats<C: Columns>(rows: &[C]) -> R<JobStats> {
    let mut stats = JobStats::default();
    for row in rows {
        let n: u64 = int_as(row, "n")?;
        match parsed(row, "status", JobStatus::parse)? {
            JobStatus::Queued => {
                stats.queued += n;
                if int_as::<u64>(row, "failed")? != 0 {
                    stats.retrying += n;
                }
            }
            JobStatus::Running => stats.running += n,
            JobStatus::Done => stats.done += n,
            JobStatus::Dead => stats.dead += n,
        }
    }
    Ok(stats)
}

/// Refuses an event whose seats exceed its capacity before it is sent, as the schema's CHECK
/// `events_seats_within_capacity` would (a deferred write would report it only later).
pub(crate) fn check_seats_within_capacity(e: &Event) -> R<()> {
    if u64::from(e.seats_held) + u64::from(e.seats_confirmed) > u64::from(e.capacity) {
        return Err(StoreError::CheckViolation {
            constraint: "events_seats_within_capacity".into(),
        });
    }
    Ok(())
}
