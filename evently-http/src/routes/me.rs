//! The signed-in user: profile and notifications.

use std::collections::HashMap;

use axum::extract::State;
use evently_core::{Error as CoreError, Event, EventId};

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{ListNotificationsQuery, NotificationList, NotificationResponse, UserResponse};
use crate::error::ApiError;
use crate::extract::{Json, Query};

/// Page size of the notification list when the query names none.
const DEFAULT_LIMIT: u32 = 20;
/// Longest notification list.
const MAX_LIMIT: u32 = 100;

/// `GET /me`: your account.
#[utoipa::path(get, path = "/me", tag = "me", security(("bearer" = [])),
    responses(
        (status = 200, description = "Your account", body = UserResponse),
        (status = 404, description = "The account was deleted", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn profile(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
) -> Result<Json<UserResponse>, ApiError> {
    let user = state.engine().user(&actor, actor.user_id).await?;
    Ok(Json(UserResponse::from(&user)))
}

/// `GET /me/notifications`: your notifications, newest first, with their text.
#[utoipa::path(get, path = "/me/notifications", tag = "me", params(ListNotificationsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your notifications, newest first", body = NotificationList),
        (status = 404, description = "The account was deleted", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn notifications(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(q): Query<ListNotificationsQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let engine = state.engine();
    let user = engine.user(&actor, actor.user_id).await?;
    let list = engine.notifications(&actor, limit).await?;
    // Each event named once, read once; one deleted since is rendered as "your event".
    let mut events: HashMap<EventId, Option<Event>> = HashMap::new();
    for id in list.iter().filter_map(|n| n.event_id) {
        if events.contains_key(&id) {
            continue;
        }
        let event = match engine.event(id).await {
            Ok(e) => Some(e),
            Err(CoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        events.insert(id, event);
    }
    let items = list
        .iter()
        .map(|n| {
            let event = n.event_id.and_then(|id| events.get(&id)?.as_ref());
            NotificationResponse::new(n, &user.name, event)
        })
        .collect();
    Ok(Json(NotificationList { items }))
}
