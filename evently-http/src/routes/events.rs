//! Events: browse (public); create, edit and deactivate (admins; the engine enforces it).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use evently_core::{EventFilter, EventId};
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{
    CreateEventRequest, DeactivateEventRequest, EventDetailResponse, EventPage, EventResponse,
    ListEventsQuery, UpdateEventRequest,
};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Page size when the query names none.
const DEFAULT_LIMIT: u32 = 50;

/// `GET /events`: active events by start time, filtered by `category` and `starts_after`, paged by
/// `limit` (1 to 500) and `offset`.
#[utoipa::path(get, path = "/events", tag = "events", params(ListEventsQuery),
    responses((status = 200, description = "A page of active events", body = EventPage)))]
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
#[utoipa::path(get, path = "/events/{id}", tag = "events",
    params(("id" = Uuid, Path, description = "The event")),
    responses(
        (status = 200, description = "The event and its seats", body = EventDetailResponse,
            headers(("ETag" = String, description = "The event's version, for `If-Match` on an edit"))),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<(HeaderMap, Json<EventDetailResponse>), ApiError> {
    let id = EventId(id);
    let event = state.engine().event(id).await?;
    let availability = state.engine().availability(id).await?;
    Ok((
        etag(event.version),
        Json(EventDetailResponse {
            event: EventResponse::from(&event),
            availability: availability.into(),
        }),
    ))
}

/// `POST /events`: creates an event; 201 with it.
#[utoipa::path(post, path = "/events", tag = "events", request_body = CreateEventRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new event", body = EventResponse,
            links(
                ("GetEvent" = (operation_id = "events_get", parameters(("id" = "$response.body#/id")))),
                ("UpdateEvent" = (operation_id = "events_update", parameters(("id" = "$response.body#/id")))),
                ("DeactivateEvent" = (operation_id = "events_deactivate", parameters(("id" = "$response.body#/id")))),
                ("BookSeats" = (operation_id = "bookings_create", parameters(("id" = "$response.body#/id")))),
                ("EventBookings" = (operation_id = "bookings_of_event", parameters(("id" = "$response.body#/id")))),
                ("JoinWaitlist" = (operation_id = "waitlist_join", parameters(("id" = "$response.body#/id")))),
                ("EventWaitlist" = (operation_id = "waitlist_list", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 403, description = "Admins only", body = crate::openapi::ErrorBody),
    ))]
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

/// `PATCH /events/{id}` (admins): changes the fields given. The version the editor saw comes in
/// `If-Match` (the `ETag` of `GET /events/{id}`) or in `version`; a stale one is a 409, none a 428.
#[utoipa::path(patch, path = "/events/{id}", tag = "events", request_body = UpdateEventRequest,
    params(
        ("id" = Uuid, Path, description = "The event"),
        ("If-Match" = Option<String>, Header, description = "The event's `ETag` when the editor read it"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event as edited", body = EventResponse,
            headers(("ETag" = String, description = "The event's new version"))),
        (status = 403, description = "Admins only", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
        (status = 409, description = "The event changed since the editor read it (`conflict`)", body = crate::openapi::ErrorBody),
        (status = 428, description = "Neither `If-Match` nor `version` (`precondition_required`)", body = crate::openapi::ErrorBody),
        (status = 502, description = "The event's waitlist policy failed (`policy_failed`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn update(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<UpdateEventRequest>,
) -> Result<(HeaderMap, Json<EventResponse>), ApiError> {
    let version = expected_version(&headers, body.version)?;
    let patch = body.into_patch(version)?;
    let event = state
        .engine()
        .update_event(&actor, EventId(id), patch)
        .await?;
    tracing::info!(event_id = %event.id, version = event.version, user_id = %actor.user_id, "event updated");
    Ok((etag(event.version), Json(EventResponse::from(&event))))
}

/// `POST /events/{id}/deactivate` (admins): the event takes no more bookings; existing ones stand.
/// The version as for `PATCH /events/{id}`.
#[utoipa::path(post, path = "/events/{id}/deactivate", tag = "events", request_body = DeactivateEventRequest,
    params(
        ("id" = Uuid, Path, description = "The event"),
        ("If-Match" = Option<String>, Header, description = "The event's `ETag` when the editor read it"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event, inactive", body = EventResponse,
            headers(("ETag" = String, description = "The event's new version"))),
        (status = 403, description = "Admins only", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such event", body = crate::openapi::ErrorBody),
        (status = 409, description = "The event changed since the editor read it (`conflict`)", body = crate::openapi::ErrorBody),
        (status = 428, description = "Neither `If-Match` nor `version` (`precondition_required`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<DeactivateEventRequest>,
) -> Result<(HeaderMap, Json<EventResponse>), ApiError> {
    let version = expected_version(&headers, body.version)?;
    let event = state
        .engine()
        .deactivate_event(&actor, EventId(id), version)
        .await?;
    tracing::info!(event_id = %event.id, user_id = %actor.user_id, "event deactivated");
    Ok((etag(event.version), Json(EventResponse::from(&event))))
}

/// An `ETag` header naming `version`.
fn etag(version: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        h.insert(header::ETAG, v);
    }
    h
}

/// The version an edit expects: `If-Match` (one strong `ETag` of ours) or the body's `version`; both
/// must agree when both are given.
fn expected_version(headers: &HeaderMap, body: Option<u64>) -> Result<u64, ApiError> {
    let mut values = headers.get_all(header::IF_MATCH).iter();
    let header = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(v), None) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .and_then(|t| t.strip_prefix('"')?.strip_suffix('"')?.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::validation("if_match", "must be one ETag of this event, like \"3\"")
                })?,
        ),
        (Some(_), Some(_)) => {
            return Err(ApiError::validation("if_match", "send If-Match once"));
        }
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::validation(
            "version",
            "differs from If-Match; send one or make them agree",
        )),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(ApiError::BadRequest {
            status: StatusCode::PRECONDITION_REQUIRED,
            code: "precondition_required",
            message:
                "say which version you edit: an If-Match header (the event's ETag) or `version`"
                    .into(),
        }),
    }
}
