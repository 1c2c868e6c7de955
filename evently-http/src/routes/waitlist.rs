//! Waitlists: when an event is sold out, join its queue; when seats come free, the first in line gets
//! an offer (a hold) to accept before it runs out.

use axum::extract::State;
use axum::http::StatusCode;
use evently_core::EventId;
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{BookingResponse, JoinWaitlistRequest, WaitlistEntryResponse, WaitlistResponse};
use crate::error::ApiError;
use crate::extract::{Json, Path};

/// `POST /events/{id}/waitlist`: joins the event's waitlist for `quantity` seats; 201 with the entry.
#[utoipa::path(post, path = "/events/{id}/waitlist", tag = "waitlist", request_body = JoinWaitlistRequest,
    params(("id" = Uuid, Path, description = "The event")), security(("bearer" = [])),
    responses(
        (status = 201, description = "Your entry, with its position", body = WaitlistEntryResponse,
            links(
                ("MyEntry" = (operation_id = "waitlist_mine", parameters(("id" = "$response.body#/event_id")))),
                ("LeaveWaitlist" = (operation_id = "waitlist_leave", parameters(("id" = "$response.body#/event_id")))),
                ("AcceptOffer" = (operation_id = "waitlist_accept", parameters(("id" = "$response.body#/event_id")))),
            )),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
        (status = 409, description = "Already on this waitlist or seats are free (`conflict`), or the event \
            is closed (`event_closed`)", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's waitlist policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn join(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
    Json(body): Json<JoinWaitlistRequest>,
) -> Result<(StatusCode, Json<WaitlistEntryResponse>), ApiError> {
    let entry = state
        .engine()
        .join_waitlist(&actor, EventId(event_id), body.quantity)
        .await?;
    tracing::info!(entry_id = %entry.id, event_id = %entry.event_id, user_id = %actor.user_id, "waitlist joined");
    Ok((
        StatusCode::CREATED,
        Json(WaitlistEntryResponse::from(&entry)),
    ))
}

/// `GET /events/{id}/waitlist/me`: your live entry: position, status, and the offer while there is one.
#[utoipa::path(get, path = "/events/{id}/waitlist/me", tag = "waitlist",
    params(("id" = Uuid, Path, description = "The event")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Your entry", body = WaitlistEntryResponse),
        (status = 404, description = "You are not waiting for this event", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn mine(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
) -> Result<Json<WaitlistEntryResponse>, ApiError> {
    let entry = state
        .engine()
        .waitlist_position(&actor, EventId(event_id))
        .await?;
    Ok(Json(WaitlistEntryResponse::from(&entry)))
}

/// `DELETE /events/{id}/waitlist/me`: leaves the waitlist (declining an offer, whose seats go to the
/// next in line); 200 with the entry as it ends.
#[utoipa::path(delete, path = "/events/{id}/waitlist/me", tag = "waitlist",
    params(("id" = Uuid, Path, description = "The event")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The entry, now `left`", body = WaitlistEntryResponse),
        (status = 404, description = "You are not waiting for this event", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's waitlist policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn leave(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
) -> Result<Json<WaitlistEntryResponse>, ApiError> {
    let entry = state
        .engine()
        .leave_waitlist(&actor, EventId(event_id))
        .await?;
    tracing::info!(entry_id = %entry.id, user_id = %actor.user_id, "waitlist left");
    Ok(Json(WaitlistEntryResponse::from(&entry)))
}

/// `POST /events/{id}/waitlist/me/accept`: accepts your offer: its hold becomes a confirmed booking.
#[utoipa::path(post, path = "/events/{id}/waitlist/me/accept", tag = "waitlist",
    params(("id" = Uuid, Path, description = "The event")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The confirmed booking", body = BookingResponse),
        (status = 404, description = "You are not waiting for this event", body = crate::openapi::ErrorBody),
        (status = 409, description = "You have no offer to accept (`conflict`, `invalid_transition`)", body = crate::openapi::ErrorBody),
        (status = 410, description = "The offer ran out (`hold_expired`)", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's waitlist policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn accept(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
) -> Result<Json<BookingResponse>, ApiError> {
    let booking = state
        .engine()
        .accept_offer(&actor, EventId(event_id))
        .await?;
    tracing::info!(booking_id = %booking.id, user_id = %actor.user_id, "waitlist offer accepted");
    Ok(Json(BookingResponse::from(&booking)))
}

/// `GET /events/{id}/waitlist` (admins): the live entries, first in line first.
#[utoipa::path(get, path = "/events/{id}/waitlist", tag = "waitlist",
    params(("id" = Uuid, Path, description = "The event")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The waiting and offered entries", body = WaitlistResponse),
        (status = 403, description = "Admins only", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(event_id): Path<Uuid>,
) -> Result<Json<WaitlistResponse>, ApiError> {
    let id = EventId(event_id);
    let entries = state.engine().waitlist(&actor, id).await?;
    if entries.is_empty() {
        // An empty list for an event that does not exist would hide a typo in the id.
        state.engine().event(id).await?;
    }
    Ok(Json(WaitlistResponse {
        items: entries.iter().map(WaitlistEntryResponse::from).collect(),
    }))
}
