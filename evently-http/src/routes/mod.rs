//! The routes and their handlers, one module per resource. Each handler carries its
//! `#[utoipa::path]` annotation; [`router`] collects both, so a route cannot exist without its place
//! in the OpenAPI document.

mod auth;
mod bookings;
mod cursor;
mod events;
mod health;
mod me;
mod push;
mod tickets;
mod waitlist;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::openapi::ApiDoc;

/// Every route of the API, without fallbacks or layers (see [`crate::app`]), and the OpenAPI document
/// describing them.
pub(crate) fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(events::list, events::create))
        .routes(routes!(events::get, events::update))
        .routes(routes!(events::deactivate))
        .routes(routes!(bookings::create, bookings::of_event))
        .routes(routes!(bookings::get))
        .routes(routes!(bookings::confirm))
        .routes(routes!(bookings::cancel))
        .routes(routes!(tickets::list))
        .routes(routes!(bookings::mine))
        .routes(routes!(waitlist::join, waitlist::list))
        .routes(routes!(waitlist::mine, waitlist::leave))
        .routes(routes!(waitlist::accept))
        .routes(routes!(me::profile))
        .routes(routes!(me::notifications))
        .routes(routes!(me::read_notification))
        .routes(routes!(push::vapid_public_key))
        .routes(routes!(push::subscribe, push::unsubscribe));
    // QR codes and PDFs need the renderers of the `server` feature.
    #[cfg(feature = "server")]
    let routes = routes
        .routes(routes!(tickets::artefacts::qr_code_svg))
        .routes(routes!(tickets::artefacts::qr_code_png))
        .routes(routes!(tickets::artefacts::pdf));
    let (router, mut doc) = routes.split_for_parts();
    crate::openapi::complete(&mut doc);
    (router, doc)
}
