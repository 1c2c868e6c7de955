//! Events: browse (public) and create (admins; the engine enforces it).

use axum::extract::State;
use axum::http::StatusCode;
use evently_core::{EventFilter, EventId};
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{
    CreateEventRequest, EventDetailResponse, EventPage, EventResponse, ListEventsQuery,
};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Page size when the query names none.
const DEFAULT_LIMIT: u32 = 50;

/// `GET /events`: active events by start time, filtered by `category` and `starts_after`, paged by
/// `limit` (1 to 500) and `offset`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListEventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let filter = EventFilter {
        active_only: true,
        category: q.category,
        starts_after: q.starts_after,
        limit: q.limit.unwrap_or(DEFAULT_LIMIT),
        offset: q.offset.unwrap_or(0),
    };
    let events = state.engine().list_events(&filter).await?;
    Ok(Json(EventPage {
        items: events.iter().map(EventResponse::from).collect(),
        limit: filter.limit,
        offset: filter.offset,
    }))
}

/// `GET /events/{id}`: the event with its current availability.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<EventDetailResponse>, ApiError> {
    let id = EventId(id);
    let event = state.engine().event(id).await?;
    let availability = state.engine().availability(id).await?;
    Ok(Json(EventDetailResponse {
        event: EventResponse::from(&event),
        availability: availability.into(),
    }))
}

/// `POST /events`: creates an event; 201 with it.
pub(crate) async fn create(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(body): Json<CreateEventRequest>,
) -> Result<(StatusCode, Json<EventResponse>), ApiError> {
    let new = body.into_new_event()?;
    let event = state.engine().create_event(&actor, new).await?;
    tracing::info!(event_id = %event.id, user_id = %actor.user_id, "event created");
    Ok((StatusCode::CREATED, Json(EventResponse::from(&event))))
}
