//! Tickets: a confirmed booking's tickets, for its owner or an admin.

use axum::extract::State;
use evently_core::BookingId;
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{TicketList, TicketResponse};
use crate::error::ApiError;
use crate::extract::{Json, Path};

/// `GET /bookings/{id}/tickets`: the booking's tickets, one per seat (its owner or an admin).
#[utoipa::path(get, path = "/bookings/{id}/tickets", tag = "tickets",
    params(("id" = Uuid, Path, description = "The booking")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The tickets (none until the booking is confirmed)", body = TicketList),
        (status = 404, description = "No such booking, or not yours", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<TicketList>, ApiError> {
    let tickets = state.engine().tickets(&actor, BookingId(id)).await?;
    Ok(Json(TicketList {
        items: tickets.iter().map(TicketResponse::from).collect(),
    }))
}
