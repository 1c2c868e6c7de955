//! Events: browse (public); create, edit and deactivate (admins; the engine enforces it).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use evently_core::{Error as CoreError, EventFilter, EventId};
use uuid::Uuid;

use super::cursor;
use crate::AppState;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::dto::{
    CreateEventRequest, DeactivateEventRequest, EventDetailResponse, EventPage, EventResponse,
    ListEventsQuery, UpdateEventRequest,
};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Page size when the query names none.
const DEFAULT_LIMIT: u32 = 50;
/// Largest page (the engine's limit, 500, leaves room for the one more asked for).
const MAX_LIMIT: u32 = 200;

/// `GET /events`: events by start time, filtered by `category`, start (`starts_after`,
/// `starts_before`) and text (`q`), a page of `limit` (1 to 200) at a time with keyset cursors.
/// Active events only, unless an admin asks for `include_inactive`.
#[utoipa::path(get, path = "/events", tag = "events", params(ListEventsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 401, description = "A token was sent but is unusable", body = crate::openapi::ErrorBody),
        (status = 403, description = "`include_inactive` is for admins", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    MaybeAuthUser(actor): MaybeAuthUser,
    Query(q): Query<ListEventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let include_inactive = q.include_inactive.unwrap_or(false);
    if include_inactive && !actor.is_some_and(|a| a.is_admin()) {
        return Err(CoreError::Forbidden {
            reason: "only administrators list inactive events".into(),
        }
        .into());
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let filter = EventFilter {
        active_only: !include_inactive,
        category: q.category,
        starts_after: q.starts_after,
        starts_before: q.starts_before,
        text: q.q,
        after: q
            .cursor
            .as_deref()
            .map(cursor::decode)
            .transpose()?
            .map(|(at, id)| (at, EventId(id))),
        // One more than the page, to know whether another follows.
        limit: limit + 1,
        offset: 0,
    };
    let mut events = state
        .engine()
        .list_events(&filter)
        .await
        .map_err(|e| match e {
            CoreError::Validation {
                field: "text",
                reason,
            } => CoreError::Validation { field: "q", reason },
            other => other,
        })?;
    let next_cursor = (events.len() > limit as usize).then(|| {
        events.truncate(limit as usize);
        events.last().map(|e| cursor::encode((e.starts_at, e.id.0)))
    });
    Ok(Json(EventPage {
        items: events.iter().map(EventResponse::from).collect(),
        next_cursor: next_cursor.flatten(),
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
