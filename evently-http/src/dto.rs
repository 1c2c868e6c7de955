//! The JSON shapes of the HTTP API, kept apart from the domain types so the wire format changes only
//! on purpose. Requests reject unknown fields; times are RFC 3339; money is `{minor, currency}` in integer
//! minor units.

use chrono::{DateTime, Utc};
use evently_core::{
    Availability, Booking, BookingSource, BookingStatus, Currency, Error as CoreError, Event,
    EventPatch, Money, NewEvent, Notification, User, WaitlistEntry,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Money on the wire: `{"minor": 4900, "currency": "EUR"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// The answer to a successful login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The bearer token to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListEventsQuery {
    /// Only this category.
    pub category: Option<String>,
    /// Only events starting at or after this time (RFC 3339).
    pub starts_after: Option<DateTime<Utc>>,
    /// Only events starting before this time (RFC 3339).
    pub starts_before: Option<DateTime<Utc>>,
    /// Only events whose name, venue or description contains this text (1 to 200 characters;
    /// ASCII letters compared without case).
    pub q: Option<String>,
    /// Admins only: `true` lists inactive events too.
    pub include_inactive: Option<bool>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventDetailResponse {
    /// The event.
    #[serde(flatten)]
    pub event: EventResponse,
    /// Its seats, read right after the event.
    pub availability: AvailabilityResponse,
}

/// One page of events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events, by start time, then id.
    pub items: Vec<EventResponse>,
    /// Pass as `cursor` for the next page; absent on the last page. Events added after the first
    /// page was read never shift the pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What `POST /events/{id}/bookings` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BookingMode {
    /// Buy now: confirmed at once, tickets issued.
    #[default]
    Book,
    /// Reserve for `hold_seconds`; confirm with `POST /bookings/{id}/confirm`.
    Hold,
}

/// `POST /events/{id}/bookings`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBookingRequest {
    /// Seats, at least 1.
    #[schema(minimum = 1)]
    pub quantity: u32,
    /// `"book"` (default) or `"hold"`.
    #[serde(default)]
    pub mode: BookingMode,
    /// For holds: how long to hold (the engine's default and maximum apply).
    pub hold_seconds: Option<u64>,
}

/// A booking as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// `"ok"` or `"ready"`.
    pub status: String,
}

/// `GET /push/vapid-public-key`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VapidPublicKeyResponse {
    /// The server's VAPID public key, an uncompressed P-256 point in base64url without padding: the
    /// `applicationServerKey` of `pushManager.subscribe`.
    pub public_key: String,
}

/// The keys of a browser's push subscription.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushKeysDto {
    /// The browser's P-256 public key: 65 bytes (an uncompressed point), base64url.
    pub p256dh: String,
    /// The browser's auth secret: 16 bytes, base64url.
    pub auth: String,
}

/// `POST /me/push-subscriptions`: what the browser's `PushSubscription.toJSON()` returns.
#[derive(Debug, Clone, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushUnsubscribeRequest {
    /// The endpoint of the subscription to remove.
    pub endpoint: String,
}

/// A stored push subscription (its keys are not echoed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// `PATCH /events/{id}` (admins): the fields to change; the others stay. The version the editor saw
/// goes in `version` or in an `If-Match` header (the event's `ETag`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEventRequest {
    /// The event's `version` when the editor read it; a different stored version is a 409.
    pub version: Option<u64>,
    /// New name, 1 to 200 characters.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New venue.
    pub venue: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New start.
    pub starts_at: Option<DateTime<Utc>>,
    /// New end, after the start.
    pub ends_at: Option<DateTime<Utc>>,
    /// New capacity; not below the seats already held or sold (422 otherwise).
    pub capacity: Option<u32>,
    /// New price of one seat (existing bookings keep theirs).
    pub price: Option<PriceDto>,
    /// `false` stops sales; `true` resumes them.
    pub active: Option<bool>,
}

impl UpdateEventRequest {
    /// The domain patch, expecting `version`.
    pub fn into_patch(self, version: u64) -> Result<EventPatch, CoreError> {
        Ok(EventPatch {
            expected_version: version,
            name: self.name,
            description: self.description,
            venue: self.venue,
            category: self.category,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            capacity: self.capacity,
            price: self.price.map(|p| p.to_money()).transpose()?,
            active: self.active,
        })
    }
}

/// `POST /events/{id}/deactivate` (admins). The version may come in an `If-Match` header instead.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateEventRequest {
    /// The event's `version` when the editor read it; a different stored version is a 409.
    pub version: Option<u64>,
}

/// A booking's status, as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatusDto {
    /// Seats reserved until `held_until`.
    Held,
    /// Sold.
    Confirmed,
    /// Cancelled by its owner or an admin.
    Cancelled,
    /// A hold that ran out.
    Expired,
}

impl From<BookingStatusDto> for BookingStatus {
    fn from(s: BookingStatusDto) -> Self {
        match s {
            BookingStatusDto::Held => BookingStatus::Held,
            BookingStatusDto::Confirmed => BookingStatus::Confirmed,
            BookingStatusDto::Cancelled => BookingStatus::Cancelled,
            BookingStatusDto::Expired => BookingStatus::Expired,
        }
    }
}

/// Query of the booking lists (`GET /me/bookings`, `GET /events/{id}/bookings`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListBookingsQuery {
    /// Only bookings in this status.
    #[param(inline)]
    pub status: Option<BookingStatusDto>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// One page of bookings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BookingPage {
    /// The bookings.
    pub items: Vec<BookingResponse>,
    /// Pass as `cursor` for the next page; absent on the last page. Bookings made after the first page
    /// was read never shift the pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /events/{id}/waitlist`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlistRequest {
    /// Seats wanted, at least 1; an offer holds this many.
    #[schema(minimum = 1)]
    pub quantity: u32,
}

/// A waitlist entry as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaitlistEntryResponse {
    /// Identifier.
    pub id: String,
    /// The event.
    pub event_id: String,
    /// Who waits.
    pub user_id: String,
    /// Seats wanted.
    pub quantity: u32,
    /// Place in the queue, 1 first, while waiting (an offered entry has left the queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// `waiting`, `offered`, `accepted`, `expired` or `left`.
    pub status: String,
    /// When the user joined.
    pub joined_at: DateTime<Utc>,
    /// When seats were offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
    /// Until when the offer stands (accept before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_expires_at: Option<DateTime<Utc>>,
    /// The hold made for the offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_booking_id: Option<String>,
}

impl From<&WaitlistEntry> for WaitlistEntryResponse {
    fn from(e: &WaitlistEntry) -> Self {
        Self {
            id: e.id.to_string(),
            event_id: e.event_id.to_string(),
            user_id: e.user_id.to_string(),
            quantity: e.quantity,
            position: e.position,
            status: e.status.as_str().to_owned(),
            joined_at: e.joined_at,
            notified_at: e.notified_at,
            offer_expires_at: e.offer_expires_at,
            offer_booking_id: e.offer_booking_id.map(|b| b.to_string()),
        }
    }
}

/// An event's waitlist (admins).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaitlistResponse {
    /// The live entries (waiting or offered), first in line first.
    pub items: Vec<WaitlistEntryResponse>,
}

/// Query of `GET /me/notifications`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListNotificationsQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `true`: only those not yet marked read.
    pub unread: Option<bool>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// A notification as the API shows it: its facts and its text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationResponse {
    /// Identifier.
    pub id: String,
    /// What happened: `welcome`, `booking_confirmed`, `booking_cancelled`, `waitlist_offer`, ...
    pub kind: String,
    /// Short title.
    pub title: String,
    /// One or two sentences.
    pub message: String,
    /// The event it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The booking it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When a channel (e-mail, push) delivered it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// When you first marked it read; absent while unread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

impl NotificationResponse {
    /// `n` with its text rendered for a recipient called `name`, about `event`.
    pub fn new(n: &Notification, name: &str, event: Option<&Event>) -> Self {
        let text = crate::texts::NotificationText::render(n, name, event);
        Self {
            id: n.id.to_string(),
            kind: n.kind.as_str().to_owned(),
            title: text.title,
            message: text.message,
            event_id: n.event_id.map(|e| e.to_string()),
            booking_id: n.booking_id.map(|b| b.to_string()),
            created_at: n.created_at,
            sent_at: n.sent_at,
            read_at: n.read_at,
        }
    }
}

/// `GET /me/notifications`: one page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    /// Newest first.
    pub items: Vec<NotificationResponse>,
    /// Pass as `cursor` for the next page; absent on the last page. Notifications made after the
    /// first page was read never shift the pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A ticket as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TicketResponse {
    /// Identifier.
    pub id: String,
    /// The booking.
    pub booking_id: String,
    /// The event.
    pub event_id: String,
    /// The number printed on the ticket.
    pub number: String,
    /// What its QR code encodes.
    pub qr_payload: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

impl From<&evently_core::Ticket> for TicketResponse {
    fn from(t: &evently_core::Ticket) -> Self {
        Self {
            id: t.id.to_string(),
            booking_id: t.booking_id.to_string(),
            event_id: t.event_id.to_string(),
            number: t.number.clone(),
            qr_payload: t.qr_payload.clone(),
            issued_at: t.issued_at,
        }
    }
}

/// `GET /bookings/{id}/tickets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TicketList {
    /// One per seat.
    pub items: Vec<TicketResponse>,
}
