//! Conversions between domain values and PostgreSQL columns. Decoding never panics: a value that does
//! not fit the domain is [`StoreError::Corrupt`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use evently_core::{
    Booking, BookingSource, BookingStatus, Currency, Event, Job, JobPayload, JobStatus, Money,
    Notification, NotificationKind, PushSubscription, Role, StoreError, Ticket, User,
    WaitlistEntry, WaitlistStatus,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Row, Type};
use uuid::Uuid;

use super::error::{Phase, classify, corrupt};

type R<T> = Result<T, StoreError>;

/// A `u64` that must fit a bigint column.
pub(crate) fn bigint_u64(field: &str, v: u64) -> R<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend {
        message: format!("{field} {v} does not fit a PostgreSQL bigint"),
    })
}

/// A job payload as a JSON value (stored as jsonb).
pub(crate) fn json_payload(payload: &JobPayload) -> R<serde_json::Value> {
    serde_json::to_value(payload).map_err(|e| StoreError::Backend {
        message: format!("cannot encode job payload as JSON: {e}"),
    })
}

/// The two stored columns of a [`BookingSource`]: kind and waitlist entry id.
pub(crate) fn source_columns(source: &BookingSource) -> (&'static str, Option<Uuid>) {
    match source {
        BookingSource::Direct => ("direct", None),
        BookingSource::WaitlistOffer(entry) => ("waitlist_offer", Some(entry.0)),
    }
}

fn get<'r, T>(row: &'r PgRow, col: &str) -> R<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(col).map_err(|e| classify(e, Phase::Statement))
}

fn id<T: From<Uuid>>(row: &PgRow, col: &str) -> R<T> {
    get::<Uuid>(row, col).map(T::from)
}

fn opt_id<T: From<Uuid>>(row: &PgRow, col: &str) -> R<Option<T>> {
    Ok(get::<Option<Uuid>>(row, col)?.map(T::from))
}

fn uint(row: &PgRow, col: &str) -> R<u32> {
    let v: i64 = get(row, col)?;
    u32::try_from(v).map_err(|_| corrupt(format!("{col} {v} is out of range")))
}

fn money(row: &PgRow) -> R<Money> {
    let minor: i64 = get(row, "price_minor")?;
    let code: String = get(row, "currency")?;
    let currency =
        Currency::new(&code).map_err(|_| corrupt(format!("currency {code:?} is not valid")))?;
    Ok(Money::new(minor, currency))
}

fn map(row: &PgRow, col: &str) -> R<BTreeMap<String, String>> {
    let v: serde_json::Value = get(row, col)?;
    serde_json::from_value(v).map_err(|e| corrupt(format!("{col} is not a JSON string map: {e}")))
}

fn parsed<T>(row: &PgRow, col: &str, parse: impl FnOnce(&str) -> Option<T>) -> R<T> {
    let s: String = get(row, col)?;
    parse(&s).ok_or_else(|| corrupt(format!("unknown {col} {s:?}")))
}

/// A string map as a jsonb parameter.
pub(crate) fn json_map(map: &BTreeMap<String, String>) -> Json<&BTreeMap<String, String>> {
    Json(map)
}

/// Columns read for a [`User`].
pub(crate) const USER_COLUMNS: &str =
    "id, email, name, password_hash, role, attributes, created_at";

/// Decodes a [`User`].
pub(crate) fn user(row: &PgRow) -> R<User> {
    Ok(User {
        id: id(row, "id")?,
        email: get(row, "email")?,
        name: get(row, "name")?,
        password_hash: get(row, "password_hash")?,
        role: parsed(row, "role", Role::parse)?,
        attributes: map(row, "attributes")?,
        created_at: get(row, "created_at")?,
    })
}

/// Columns read for an [`Event`].
pub(crate) const EVENT_COLUMNS: &str = "id, name, description, venue, category, starts_at, ends_at, \
     capacity, price_minor, currency, active, version, seats_held, seats_confirmed, created_at, \
     updated_at";

/// Decodes an [`Event`].
pub(crate) fn event(row: &PgRow) -> R<Event> {
    let version: i64 = get(row, "version")?;
    Ok(Event {
        id: id(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        venue: get(row, "venue")?,
        category: get(row, "category")?,
        starts_at: get(row, "starts_at")?,
        ends_at: get(row, "ends_at")?,
        capacity: uint(row, "capacity")?,
        price: money(row)?,
        active: get(row, "active")?,
        version: u64::try_from(version)
            .map_err(|_| corrupt(format!("version {version} is negative")))?,
        seats_held: uint(row, "seats_held")?,
        seats_confirmed: uint(row, "seats_confirmed")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Columns read for a [`Booking`].
pub(crate) const BOOKING_COLUMNS: &str = "id, user_id, event_id, quantity, price_minor, currency, \
     status, held_until, idempotency_key, source_kind, source_entry_id, created_at, updated_at";

/// Decodes a [`Booking`].
pub(crate) fn booking(row: &PgRow) -> R<Booking> {
    let kind: String = get(row, "source_kind")?;
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
        quantity: uint(row, "quantity")?,
        total_price: money(row)?,
        status: parsed(row, "status", BookingStatus::parse)?,
        held_until: get(row, "held_until")?,
        idempotency_key: get(row, "idempotency_key")?,
        source,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Columns read for a [`WaitlistEntry`].
pub(crate) const WAITLIST_COLUMNS: &str = "seq, id, event_id, user_id, quantity, status, \
     joined_at, notified_at, offer_expires_at, offer_booking_id";

/// Decodes a [`WaitlistEntry`] (`position` is left `None`; the engine computes it).
pub(crate) fn waitlist_entry(row: &PgRow) -> R<WaitlistEntry> {
    Ok(WaitlistEntry {
        id: id(row, "id")?,
        event_id: id(row, "event_id")?,
        user_id: id(row, "user_id")?,
        quantity: uint(row, "quantity")?,
        seq: get(row, "seq")?,
        position: None,
        status: parsed(row, "status", WaitlistStatus::parse)?,
        joined_at: get(row, "joined_at")?,
        notified_at: get(row, "notified_at")?,
        offer_expires_at: get(row, "offer_expires_at")?,
        offer_booking_id: opt_id(row, "offer_booking_id")?,
    })
}

/// Columns read for a [`Ticket`].
pub(crate) const TICKET_COLUMNS: &str = "id, booking_id, event_id, number, qr_payload, issued_at";

/// Decodes a [`Ticket`].
pub(crate) fn ticket(row: &PgRow) -> R<Ticket> {
    Ok(Ticket {
        id: id(row, "id")?,
        booking_id: id(row, "booking_id")?,
        event_id: id(row, "event_id")?,
        number: get(row, "number")?,
        qr_payload: get(row, "qr_payload")?,
        issued_at: get(row, "issued_at")?,
    })
}

/// Columns read for a [`Notification`].
pub(crate) const NOTIFICATION_COLUMNS: &str =
    "id, user_id, kind, title, message, data, created_at, sent_at";

/// Decodes a [`Notification`].
pub(crate) fn notification(row: &PgRow) -> R<Notification> {
    Ok(Notification {
        id: id(row, "id")?,
        user_id: id(row, "user_id")?,
        kind: parsed(row, "kind", NotificationKind::parse)?,
        title: get(row, "title")?,
        message: get(row, "message")?,
        data: map(row, "data")?,
        created_at: get(row, "created_at")?,
        sent_at: get(row, "sent_at")?,
    })
}

/// Columns read for a [`PushSubscription`].
pub(crate) const PUSH_COLUMNS: &str = "id, user_id, endpoint, p256dh, auth, created_at";

/// Decodes a [`PushSubscription`].
pub(crate) fn push_subscription(row: &PgRow) -> R<PushSubscription> {
    Ok(PushSubscription {
        id: id(row, "id")?,
        user_id: id(row, "user_id")?,
        endpoint: get(row, "endpoint")?,
        p256dh: get(row, "p256dh")?,
        auth: get(row, "auth")?,
        created_at: get(row, "created_at")?,
    })
}

/// Columns read for a [`Job`].
pub(crate) const JOB_COLUMNS: &str = "id, payload, priority, status, run_at, attempts, \
     max_attempts, dedupe_key, last_error, locked_until, created_at";

/// Decodes a [`Job`].
pub(crate) fn job(row: &PgRow) -> R<Job> {
    let payload: serde_json::Value = get(row, "payload")?;
    Ok(Job {
        id: id(row, "id")?,
        payload: serde_json::from_value(payload)
            .map_err(|e| corrupt(format!("job payload is not valid: {e}")))?,
        priority: get(row, "priority")?,
        status: parsed(row, "status", JobStatus::parse)?,
        run_at: get(row, "run_at")?,
        attempts: uint(row, "attempts")?,
        max_attempts: uint(row, "max_attempts")?,
        dedupe_key: get(row, "dedupe_key")?,
        last_error: get(row, "last_error")?,
        locked_until: get(row, "locked_until")?,
        created_at: get(row, "created_at")?,
    })
}

/// The latest instant PostgreSQL's timestamptz holds comfortably; leases past it are clamped.
pub(crate) fn clamp_far_future(t: Option<DateTime<Utc>>) -> DateTime<Utc> {
    // 9999-12-31T23:59:59Z: far beyond any lease, well inside timestamptz's range.
    let max =
        DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    t.map_or(max, |t| t.min(max))
}
