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

/// The artefacts of tickets (QR codes, PDF): routes of the `server` feature, which brings the QR and
/// PDF renderers (`crate::tickets`); the router alone has none.
#[cfg(feature = "server")]
pub(crate) mod artefacts {
    use axum::extract::State;
    use axum::http::{HeaderValue, header};
    use axum::response::{IntoResponse, Response};
    use evently_core::{BookingId, Entity, Error as CoreError, Ticket};
    use uuid::Uuid;

    use crate::AppState;
    use crate::auth::AuthUser;
    use crate::error::ApiError;
    use crate::extract::Path;
    use crate::tickets::{TicketSheet, qr_png, qr_svg, tickets_pdf};

    /// Pixels per QR module in the PNG: a 33-module code with its quiet zone is about 330 px.
    const PNG_MODULE_PX: u32 = 8;

    /// One of the booking's tickets, for its owner or an admin.
    async fn ticket(
        state: &AppState,
        actor: &evently_core::Actor,
        booking: Uuid,
        ticket: Uuid,
    ) -> Result<Ticket, ApiError> {
        let tickets = state.engine().tickets(actor, BookingId(booking)).await?;
        tickets
            .into_iter()
            .find(|t| t.id.0 == ticket)
            .ok_or_else(|| {
                CoreError::NotFound {
                    entity: Entity::Ticket,
                    id: ticket.to_string(),
                }
                .into()
            })
    }

    fn file(content_type: &'static str, body: Vec<u8>, name: Option<String>) -> Response {
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(name) = name
            && let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\""))
        {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        response
    }

    fn render_error(e: crate::tickets::TicketRenderError) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    /// `GET /bookings/{id}/tickets/{ticket_id}/qr.svg`: the ticket's QR code as SVG.
    #[utoipa::path(get, path = "/bookings/{id}/tickets/{ticket_id}/qr.svg", tag = "tickets",
        params(
            ("id" = Uuid, Path, description = "The booking"),
            ("ticket_id" = Uuid, Path, description = "One of its tickets"),
        ),
        security(("bearer" = [])),
        responses(
            (status = 200, description = "The QR code", content_type = "image/svg+xml", body = String),
            (status = 404, description = "No such booking or ticket, or not yours", body = crate::openapi::ErrorBody),
        ))]
    pub(crate) async fn qr_code_svg(
        State(state): State<AppState>,
        AuthUser(actor): AuthUser,
        Path((booking, ticket_id)): Path<(Uuid, Uuid)>,
    ) -> Result<Response, ApiError> {
        let t = ticket(&state, &actor, booking, ticket_id).await?;
        let svg = qr_svg(&t.qr_payload).map_err(render_error)?;
        Ok(file("image/svg+xml", svg.into_bytes(), None))
    }

    /// `GET /bookings/{id}/tickets/{ticket_id}/qr.png`: the ticket's QR code as PNG.
    #[utoipa::path(get, path = "/bookings/{id}/tickets/{ticket_id}/qr.png", tag = "tickets",
        params(
            ("id" = Uuid, Path, description = "The booking"),
            ("ticket_id" = Uuid, Path, description = "One of its tickets"),
        ),
        security(("bearer" = [])),
        responses(
            (status = 200, description = "The QR code", content_type = "image/png", body = Vec<u8>),
            (status = 404, description = "No such booking or ticket, or not yours", body = crate::openapi::ErrorBody),
        ))]
    pub(crate) async fn qr_code_png(
        State(state): State<AppState>,
        AuthUser(actor): AuthUser,
        Path((booking, ticket_id)): Path<(Uuid, Uuid)>,
    ) -> Result<Response, ApiError> {
        let t = ticket(&state, &actor, booking, ticket_id).await?;
        let png = qr_png(&t.qr_payload, PNG_MODULE_PX).map_err(render_error)?;
        Ok(file("image/png", png, None))
    }

    /// `GET /bookings/{id}/tickets.pdf`: every ticket of the booking, a page each, in one PDF.
    #[utoipa::path(get, path = "/bookings/{id}/tickets.pdf", tag = "tickets",
        params(("id" = Uuid, Path, description = "The booking")),
        security(("bearer" = [])),
        responses(
            (status = 200, description = "The tickets", content_type = "application/pdf", body = Vec<u8>),
            (status = 404, description = "No such booking, or not yours", body = crate::openapi::ErrorBody),
            (status = 409, description = "The booking has no tickets (not confirmed) (`conflict`)", body = crate::openapi::ErrorBody),
        ))]
    pub(crate) async fn pdf(
        State(state): State<AppState>,
        AuthUser(actor): AuthUser,
        Path(booking): Path<Uuid>,
    ) -> Result<Response, ApiError> {
        let engine = state.engine();
        let b = engine.booking(&actor, BookingId(booking)).await?;
        let tickets = engine.tickets(&actor, b.id).await?;
        if tickets.is_empty() {
            return Err(CoreError::Conflict {
                reason: format!("booking {} is {} and has no tickets", b.id, b.status),
            }
            .into());
        }
        let event = engine.event(b.event_id).await?;
        let holder = engine.user(&actor, b.user_id).await?;
        let sheets: Vec<TicketSheet<'_>> = tickets
            .iter()
            .map(|ticket| TicketSheet {
                ticket,
                event_name: &event.name,
                venue: &event.venue,
                starts_at: event.starts_at,
                holder: &holder.name,
            })
            .collect();
        let pdf = tickets_pdf(&sheets).map_err(render_error)?;
        Ok(file(
            "application/pdf",
            pdf,
            Some(format!("tickets-{}.pdf", b.id)),
        ))
    }
}
