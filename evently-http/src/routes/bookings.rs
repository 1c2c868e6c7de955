//! Bookings: book or hold seats, read, list, confirm and cancel one's own bookings; admins list an
//! event's bookings.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use evently_core::{
    Booking, BookingId, BookingRequest, BookingStatus, Error as CoreError, EventId, Reservation,
};
use uuid::Uuid;

use super::cursor;
use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{
    BookingMode, BookingPage, BookingResponse, CreateBookingRequest, ListBookingsQuery,
};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// The request header that makes a booking request safe to retry.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /events/{id}/bookings`: books (or holds) seats; 201 with the booking.
///
/// With an `Idempotency-Key` header, repeating the request returns the booking the first one made
/// (200) instead of booking again; the same key with another event or quantity is a 409.
#[utoipa::path(post, path = "/events/{id}/bookings", tag = "bookings", request_body = CreateBookingRequest,
    params(
        ("id" = Uuid, Path, description = "The event"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 200 visible ASCII characters: a retry with the same key returns the first booking"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new booking", body = BookingResponse,
            links(
                ("GetBooking" = (operation_id = "bookings_get", parameters(("id" = "$response.body#/id")))),
                ("ConfirmBooking" = (operation_id = "bookings_confirm", parameters(("id" = "$response.body#/id")))),
                ("CancelBooking" = (operation_id = "bookings_cancel", parameters(("id" = "$response.body#/id")))),
                ("BookingTickets" = (operation_id = "tickets_list", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 200, description = "An earlier request with this Idempotency-Key made this booking", body = BookingResponse),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
        (status = 409, description = "`sold_out`, `event_closed`, or the key was used for another request (`conflict`)", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's pricing policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<CreateBookingRequest>,
) -> Result<(StatusCode, Json<BookingResponse>), ApiError> {
    let key = idempotency_key(&headers)?;
    let mut req = BookingRequest::new(EventId(event_id), body.quantity);
    match (body.mode, body.hold_seconds) {
        (BookingMode::Book, Some(_)) => {
            return Err(ApiError::validation(
                "hold_seconds",
                "only allowed with mode \"hold\"",
            ));
        }
        (BookingMode::Hold, Some(secs)) => req = req.hold_for(Duration::from_secs(secs)),
        _ => {}
    }
    if let Some(k) = key {
        req = req.idempotency_key(k);
    }
    let engine = state.engine();
    let Reservation { booking, replayed } = match body.mode {
        BookingMode::Book => engine.book_reporting_replay(&actor, req).await,
        BookingMode::Hold => engine.hold_reporting_replay(&actor, req).await,
    }
    .map_err(|e| match e {
        CoreError::Validation {
            field: "hold_for",
            reason,
        } => CoreError::Validation {
            field: "hold_seconds",
            reason,
        },
        other => other,
    })?;
    let status = if replayed {
        StatusCode::OK
    } else {
        tracing::info!(booking_id = %booking.id, event_id = %booking.event_id, user_id = %actor.user_id,
            quantity = booking.quantity, status = %booking.status, "booking created");
        StatusCode::CREATED
    };
    Ok((status, Json(BookingResponse::from(&booking))))
}

/// The `Idempotency-Key` header: at most one, 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::validation(
            "idempotency_key",
            "send the Idempotency-Key header once",
        ));
    }
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| {
            ApiError::validation(
                "idempotency_key",
                "must be 1 to 200 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// `GET /bookings/{id}`: one's own booking (admins: any). Someone else's is a 404.
#[utoipa::path(get, path = "/bookings/{id}", tag = "bookings",
    params(("id" = Uuid, Path, description = "The booking")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The booking", body = BookingResponse),
        (status = 404, description = "No such booking, or not yours", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<BookingResponse>, ApiError> {
    let booking = state.engine().booking(&actor, BookingId(id)).await?;
    Ok(Json(BookingResponse::from(&booking)))
}

/// `POST /bookings/{id}/confirm`: turns a hold into a sale (410 once the hold has run out).
#[utoipa::path(post, path = "/bookings/{id}/confirm", tag = "bookings",
    params(("id" = Uuid, Path, description = "The booking")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The confirmed booking", body = BookingResponse),
        (status = 404, description = "No such booking, or not yours", body = crate::openapi::ErrorBody),
        (status = 409, description = "Cancelled or expired (`invalid_transition`)", body = crate::openapi::ErrorBody),
        (status = 410, description = "The hold ran out (`hold_expired`)", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's waitlist policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<BookingResponse>, ApiError> {
    let booking = state.engine().confirm(&actor, BookingId(id)).await?;
    tracing::info!(booking_id = %booking.id, "booking confirmed");
    Ok(Json(BookingResponse::from(&booking)))
}

/// `POST /bookings/{id}/cancel`: cancels and frees the seats. Cancelling again returns the cancelled
/// booking unchanged.
#[utoipa::path(post, path = "/bookings/{id}/cancel", tag = "bookings",
    params(("id" = Uuid, Path, description = "The booking")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The cancelled booking", body = BookingResponse),
        (status = 404, description = "No such booking, or not yours", body = crate::openapi::ErrorBody),
        (status = 409, description = "Expired (`invalid_transition`)", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's waitlist policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<BookingResponse>, ApiError> {
    let booking = state.engine().cancel(&actor, BookingId(id)).await?;
    tracing::info!(booking_id = %booking.id, "booking cancelled");
    Ok(Json(BookingResponse::from(&booking)))
}

/// Page size of the booking lists when the query names none.
const DEFAULT_PAGE: u32 = 20;
/// Largest page of the booking lists.
const MAX_PAGE: u32 = 100;

/// `GET /me/bookings`: your bookings, newest first, optionally of one status, a page at a time.
#[utoipa::path(get, path = "/me/bookings", tag = "bookings", params(ListBookingsQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of your bookings, newest first", body = BookingPage)))]
pub(crate) async fn mine(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<ListBookingsQuery>,
) -> Result<Json<BookingPage>, ApiError> {
    let bookings = state.engine().my_bookings(&actor).await?;
    page(bookings, q, Order::NewestFirst).map(Json)
}

/// `GET /events/{id}/bookings` (admins): the event's bookings, oldest first, optionally of one
/// status, a page at a time.
#[utoipa::path(get, path = "/events/{id}/bookings", tag = "bookings",
    params(("id" = Uuid, Path, description = "The event"), ListBookingsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the event's bookings, oldest first", body = BookingPage),
        (status = 403, description = "Admins only", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn of_event(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
    Query(q): Query<ListBookingsQuery>,
) -> Result<Json<BookingPage>, ApiError> {
    let id = EventId(event_id);
    let bookings = state.engine().event_bookings(&actor, id).await?;
    if bookings.is_empty() {
        // An empty list for an event that does not exist would hide a typo in the id.
        state.engine().event(id).await?;
    }
    page(bookings, q, Order::OldestFirst).map(Json)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    NewestFirst,
    OldestFirst,
}

/// Where a booking sits in a list: creation time, then id. A cursor names the last booking of a
/// page by this key, so bookings made later never shift the pages already read.
type Key = (DateTime<Utc>, Uuid);

fn key(b: &Booking) -> Key {
    (b.created_at, b.id.0)
}

/// The page of `bookings` that `q` asks for, in `order`.
fn page(
    mut bookings: Vec<Booking>,
    q: ListBookingsQuery,
    order: Order,
) -> Result<BookingPage, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let after = q.cursor.as_deref().map(cursor::decode).transpose()?;
    bookings.sort_by_key(key);
    if order == Order::NewestFirst {
        bookings.reverse();
    }
    let status = q.status.map(BookingStatus::from);
    let mut items = bookings.iter().filter(|b| {
        status.is_none_or(|s| b.status == s)
            && after.is_none_or(|a| match order {
                Order::NewestFirst => key(b) < a,
                Order::OldestFirst => key(b) > a,
            })
    });
    let page: Vec<&Booking> = items.by_ref().take(limit as usize).collect();
    let next_cursor = match (items.next(), page.last()) {
        (Some(_), Some(last)) => Some(cursor::encode(key(last))),
        _ => None,
    };
    Ok(BookingPage {
        items: page.into_iter().map(BookingResponse::from).collect(),
        next_cursor,
    })
}
