//! The signed-in user: profile and notifications.

use std::collections::HashMap;

use axum::extract::State;
use evently_core::{
    Error as CoreError, Event, EventId, Evently, Notification, NotificationId, NotificationQuery,
};
use uuid::Uuid;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{ListNotificationsQuery, NotificationList, NotificationResponse, UserResponse};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

use super::cursor;

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

/// `GET /me/notifications`: your notifications, newest first, with their text, a page at a time;
/// `unread=true` leaves out those marked read.
#[utoipa::path(get, path = "/me/notifications", tag = "me", params(ListNotificationsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of your notifications, newest first", body = NotificationList),
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
    let before = q
        .cursor
        .as_deref()
        .map(cursor::decode)
        .transpose()?
        .map(|(at, id)| (at, NotificationId(id)));
    let engine = state.engine();
    let user = engine.user(&actor, actor.user_id).await?;
    // One more than the page, to know whether another page follows.
    let mut list = engine
        .notifications(
            &actor,
            NotificationQuery {
                limit: limit + 1,
                unread_only: q.unread.unwrap_or(false),
                before,
            },
        )
        .await?;
    let next_cursor = (list.len() > limit as usize).then(|| {
        list.truncate(limit as usize);
        list.last().map(|n| cursor::encode((n.created_at, n.id.0)))
    });
    let items = render(engine, &list, &user.name).await?;
    Ok(Json(NotificationList {
        items,
        next_cursor: next_cursor.flatten(),
    }))
}

/// `POST /me/notifications/{id}/read`: marks one of your notifications read (again: it keeps the
/// first time).
#[utoipa::path(post, path = "/me/notifications/{id}/read", tag = "me",
    params(("id" = Uuid, Path, description = "The notification")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The notification, read", body = NotificationResponse),
        (status = 404, description = "No such notification, or not yours", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn read_notification(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<NotificationResponse>, ApiError> {
    let engine = state.engine();
    let n = engine
        .mark_notification_read(&actor, NotificationId(id))
        .await?;
    let user = engine.user(&actor, actor.user_id).await?;
    let mut items = render(engine, std::slice::from_ref(&n), &user.name).await?;
    items
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::Internal("a rendered notification went missing".into()))
}

/// `list` with its text, for a recipient called `name`. Each event named is read once; one deleted
/// since is rendered as "your event".
async fn render(
    engine: &Evently,
    list: &[Notification],
    name: &str,
) -> Result<Vec<NotificationResponse>, ApiError> {
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
    Ok(list
        .iter()
        .map(|n| {
            let event = n.event_id.and_then(|id| events.get(&id)?.as_ref());
            NotificationResponse::new(n, name, event)
        })
        .collect())
}
