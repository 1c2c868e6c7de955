//! Bookings: book or hold seats, read, confirm and cancel one's own bookings.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use evently_core::{BookingId, BookingRequest, Error as CoreError, EventId, Reservation};
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{BookingMode, BookingResponse, CreateBookingRequest};
use crate::error::ApiError;
use crate::extract::{Json, Path};

/// The request header that makes a booking request safe to retry.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /events/{id}/bookings`: books (or holds) seats; 201 with the booking.
///
/// With an `Idempotency-Key` header, repeating the request returns the booking the first one made
/// (200) instead of booking again; the same key with another event or quantity is a 409.
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
pub(crate) async fn get(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<BookingResponse>, ApiError> {
    let booking = state.engine().booking(&actor, BookingId(id)).await?;
    Ok(Json(BookingResponse::from(&booking)))
}

/// `POST /bookings/{id}/confirm`: turns a hold into a sale (410 once the hold has run out).
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
pub(crate) async fn cancel(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<BookingResponse>, ApiError> {
    let booking = state.engine().cancel(&actor, BookingId(id)).await?;
    tracing::info!(booking_id = %booking.id, "booking cancelled");
    Ok(Json(BookingResponse::from(&booking)))
}
