//! The routes and their handlers, one module per resource.

mod auth;
mod bookings;
mod events;
mod health;
mod push;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// Every route of the API, without fallbacks or layers (see [`crate::app`]).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/events", get(events::list).post(events::create))
        .route("/events/{id}", get(events::get))
        .route("/events/{id}/bookings", post(bookings::create))
        .route("/bookings/{id}", get(bookings::get))
        .route("/bookings/{id}/confirm", post(bookings::confirm))
        .route("/bookings/{id}/cancel", post(bookings::cancel))
        .route("/push/vapid-public-key", get(push::vapid_public_key))
        .route(
            "/me/push-subscriptions",
            post(push::subscribe).delete(push::unsubscribe),
        )
}
