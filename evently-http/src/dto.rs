//! The JSON shapes of the HTTP API, kept apart from the domain types so the wire format changes only
//! on purpose. Requests reject unknown fields; times are RFC 3339; money is `{minor, currency}` in integer
//! minor units.

use chrono::{DateTime, Utc};
use evently_core::{
    Availability, Booking, BookingSource, Currency, Error as CoreError, Event, Money, NewEvent,
    User,
};
use serde::{Deserialize, Serialize};

/// Money on the wire: `{"minor": 4900, "currency": "EUR"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceDto {
    /// Amount in minor units (cents).
    pub minor: i64,
    /// Three-letter upper-case currency code.
    pub currency: String,
}

impl From<Money> for PriceDto {
    fn from(m: Money) -> Self {
        Self {
            minor: m.minor,
            currency: m.currency.as_str().to_owned(),
        }
    }
}

impl PriceDto {
    /// The domain amount; an unknown currency code is a validation error on `price.currency`.
    pub fn to_money(&self) -> Result<Money, CoreError> {
        let currency = Currency::new(&self.currency).map_err(|e| match e {
            CoreError::Validation { reason, .. } => CoreError::Validation {
                field: "price.currency",
                reason,
            },
            other => other,
        })?;
        Ok(Money::new(self.minor, currency))
    }
}

/// `POST /auth/register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// E-mail address (compared case-insensitively).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Password, 8 to 256 characters.
    pub password: String,
}

/// `POST /auth/login`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// The answer to a successful login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserResponse {
    /// Identifier.
    pub id: String,
    /// E-mail address, lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `"user"` or `"admin"`.
    pub role: String,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserResponse {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().to_owned(),
            created_at: u.created_at,
        }
    }
}

/// `POST /events` (admins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEventRequest {
    /// Name, 1 to 200 characters.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where it takes place.
    #[serde(default)]
    pub venue: String,
    /// Category used for filtering.
    #[serde(default)]
    pub category: String,
    /// Start, RFC 3339.
    pub starts_at: DateTime<Utc>,
    /// End, RFC 3339, after the start.
    pub ends_at: DateTime<Utc>,
    /// Seats.
    pub capacity: u32,
    /// Price of one seat.
    pub price: PriceDto,
}

impl CreateEventRequest {
    /// The domain input (the engine validates the rest).
    pub fn into_new_event(self) -> Result<NewEvent, CoreError> {
        Ok(NewEvent {
            price: self.price.to_money()?,
            name: self.name,
            description: self.description,
            venue: self.venue,
            category: self.category,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            capacity: self.capacity,
        })
    }
}

/// Query of `GET /events`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEventsQuery {
    /// Only this category.
    pub category: Option<String>,
    /// Only events starting at or after this time (RFC 3339).
    pub starts_after: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Events to skip (default 0).
    pub offset: Option<u32>,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventResponse {
    /// Identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Venue.
    pub venue: String,
    /// Category.
    pub category: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Seats in total.
    pub capacity: u32,
    /// Seats neither held nor sold when the event was read.
    pub seats_available: u32,
    /// Price of one seat.
    pub price: PriceDto,
    /// Whether it takes bookings.
    pub active: bool,
    /// Bumped on every admin edit.
    pub version: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last edit.
    pub updated_at: DateTime<Utc>,
}

impl From<&Event> for EventResponse {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            name: e.name.clone(),
            description: e.description.clone(),
            venue: e.venue.clone(),
            category: e.category.clone(),
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            capacity: e.capacity,
            seats_available: e.seats_free(),
            price: e.price.into(),
            active: e.active,
            version: e.version,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// Seats of an event at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AvailabilityResponse {
    /// Seats in total.
    pub capacity: u32,
    /// Seats held (including waitlist offers).
    pub held: u32,
    /// Seats sold.
    pub confirmed: u32,
    /// Seats free.
    pub available: u32,
    /// People waiting on the waitlist.
    pub waitlist_waiting: u32,
}

impl From<Availability> for AvailabilityResponse {
    fn from(a: Availability) -> Self {
        Self {
            capacity: a.capacity,
            held: a.held,
            confirmed: a.confirmed,
            available: a.available,
            waitlist_waiting: a.waitlist_waiting,
        }
    }
}

/// `GET /events/{id}`: the event and its current availability.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDetailResponse {
    /// The event.
    #[serde(flatten)]
    pub event: EventResponse,
    /// Its seats, read right after the event.
    pub availability: AvailabilityResponse,
}

/// One page of events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventPage {
    /// The events, by start time.
    pub items: Vec<EventResponse>,
    /// The page size asked for.
    pub limit: u32,
    /// The offset asked for.
    pub offset: u32,
}

/// What `POST /events/{id}/bookings` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingMode {
    /// Buy now: confirmed at once, tickets issued.
    #[default]
    Book,
    /// Reserve for `hold_seconds`; confirm with `POST /bookings/{id}/confirm`.
    Hold,
}

/// `POST /events/{id}/bookings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBookingRequest {
    /// Seats, at least 1.
    pub quantity: u32,
    /// `"book"` (default) or `"hold"`.
    #[serde(default)]
    pub mode: BookingMode,
    /// For holds: how long to hold (the engine's default and maximum apply).
    pub hold_seconds: Option<u64>,
}

/// A booking as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookingResponse {
    /// Identifier.
    pub id: String,
    /// The event.
    pub event_id: String,
    /// Who booked.
    pub user_id: String,
    /// Seats.
    pub quantity: u32,
    /// Price of all seats.
    pub total_price: PriceDto,
    /// `held`, `confirmed`, `cancelled` or `expired`.
    pub status: String,
    /// End of the hold, while held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
    /// `direct` or `waitlist_offer`.
    pub source: String,
    /// The client's idempotency key, if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

impl From<&Booking> for BookingResponse {
    fn from(b: &Booking) -> Self {
        Self {
            id: b.id.to_string(),
            event_id: b.event_id.to_string(),
            user_id: b.user_id.to_string(),
            quantity: b.quantity,
            total_price: b.total_price.into(),
            status: b.status.as_str().to_owned(),
            held_until: b.held_until,
            source: match b.source {
                BookingSource::Direct => "direct",
                BookingSource::WaitlistOffer(_) => "waitlist_offer",
            }
            .to_owned(),
            idempotency_key: b.idempotency_key.clone(),
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// `"ok"` or `"ready"`.
    pub status: String,
}

/// `GET /push/vapid-public-key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VapidPublicKeyResponse {
    /// The server's VAPID public key, an uncompressed P-256 point in base64url without padding: the
    /// `applicationServerKey` of `pushManager.subscribe`.
    pub public_key: String,
}

/// The keys of a browser's push subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushKeysDto {
    /// The browser's P-256 public key: 65 bytes (an uncompressed point), base64url.
    pub p256dh: String,
    /// The browser's auth secret: 16 bytes, base64url.
    pub auth: String,
}

/// `POST /me/push-subscriptions`: what the browser's `PushSubscription.toJSON()` returns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionRequest {
    /// The push service URL.
    pub endpoint: String,
    /// The browser's keys.
    pub keys: PushKeysDto,
    /// When the browser lets the subscription lapse (milliseconds since the epoch, or `null`);
    /// accepted and ignored: an expired subscription answers 404/410 and is deleted then.
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<f64>,
}

/// `DELETE /me/push-subscriptions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushUnsubscribeRequest {
    /// The endpoint of the subscription to remove.
    pub endpoint: String,
}

/// A stored push subscription (its keys are not echoed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushSubscriptionResponse {
    /// Identifier.
    pub id: String,
    /// The push service URL.
    pub endpoint: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl From<&evently_core::PushSubscription> for PushSubscriptionResponse {
    fn from(s: &evently_core::PushSubscription) -> Self {
        Self {
            id: s.id.to_string(),
            endpoint: s.endpoint.clone(),
            created_at: s.created_at,
        }
    }
}
