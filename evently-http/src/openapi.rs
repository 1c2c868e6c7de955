//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the wire
//! types of [`crate::dto`]; served at `GET /openapi.json`, with Swagger UI (bundled into the binary,
//! nothing fetched from elsewhere) at `GET /docs`.
//!
//! Each handler's annotation lists the answers particular to it (its success, 404, 409, ...). The
//! answers every route of a kind can give are added here from the route's shape, so no route can
//! forget one: a route with path or query parameters can answer 400 `invalid_path`/`invalid_query`,
//! one with a JSON body 400, 413, 415 and 422, one that needs a token 401, and every route 500 and
//! 503. Every error answer has the one body shape of [`crate::error`], described by [`ErrorBody`].
//!
//! Operation ids are `<tag>_<handler>` (see [`complete`]); the responses that create a record link
//! to the operations that take its id (OpenAPI links), so a client generator or a stateful tester
//! can follow them.

use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{OpenApi, ToSchema};

/// The name of the bearer-token security scheme in the document.
pub(crate) const BEARER: &str = "bearer";

/// The document's fixed part; the routes add their paths (see `routes::router`), then [`complete`]
/// the conventions.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Evently",
        description = "Event booking: browse events, book or hold seats, waitlists, tickets and \
                       notifications. Errors share one body shape (`ErrorBody`) with a stable `code`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "auth", description = "Registration and login"),
        (name = "events", description = "Events and their availability"),
        (name = "bookings", description = "Booking, holding, confirming and cancelling seats"),
        (name = "waitlist", description = "Waitlists of sold-out events and their offers"),
        (name = "tickets", description = "Tickets of confirmed bookings"),
        (name = "me", description = "Your profile and notifications"),
        (name = "push", description = "Web push subscriptions"),
    )
)]
pub(crate) struct ApiDoc;

/// Every error answer's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error: a stable code for programs, a message for people, and members naming its context
/// (present only for the codes that have them).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable; match on it.
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
    /// `validation_failed`: the offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `not_found`: the kind of record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// `not_found`: the id looked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `sold_out`, `event_closed`: the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// `sold_out`: seats asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<u32>,
    /// `sold_out`: seats free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
    /// `invalid_transition`, `hold_expired`: the booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    /// `invalid_transition`: the current status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `invalid_transition`: the status asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `hold_expired`: when the hold ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<String>,
    /// `event_closed`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every `code` an error body can carry (see `evently_http::error` for the status of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 409: too few seats free.
    SoldOut,
    /// 404: no such record (or not yours), or no such route.
    NotFound,
    /// 409: conflicts with the current state (a taken e-mail, a reused idempotency key, ...).
    Conflict,
    /// 422: a field's value is not acceptable.
    ValidationFailed,
    /// 403: your role may not do this.
    Forbidden,
    /// 409: the record's status does not allow this change.
    InvalidTransition,
    /// 410: the hold ran out.
    HoldExpired,
    /// 409: the event is inactive or has started.
    EventClosed,
    /// 502: a pricing or waitlist policy failed.
    PolicyFailed,
    /// 503: the store is busy or unreachable; retry (see `Retry-After`).
    Unavailable,
    /// 500: a fault of the server; the detail is in its log.
    Internal,
    /// 401: no usable bearer token.
    Unauthorized,
    /// 401: wrong e-mail or password.
    InvalidCredentials,
    /// 400 or 422: the body is not the expected shape.
    InvalidBody,
    /// 400: the body is not JSON.
    MalformedJson,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// 400: a path parameter is malformed.
    InvalidPath,
    /// 400: a query parameter is malformed.
    InvalidQuery,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 404: web push is not configured on this server.
    PushNotConfigured,
    /// 503: the store does not answer the readiness probe.
    NotReady,
    /// 428: an edit that must name the version it was made against did not.
    PreconditionRequired,
}

/// Adds the bearer-token scheme and the answers every route of a kind can give (see the module docs)
/// to `doc`, once the routes have added their paths.
pub(crate) fn complete(doc: &mut utoipa::openapi::OpenApi) {
    {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The `access_token` of `POST /auth/login`."))
                    .build(),
            ),
        );
        components.responses.insert(
            "Error".into(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("An error; `error.code` says which (see `ErrorCode`).")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                name_operation(op);
                add_common_errors(op);
            }
        }
    }
}

/// Makes the operation's id `<tag>_<handler>` (`events_get`, `bookings_create`): handlers of
/// different resources share names (`get`, `list`), and an id must be unique in the document. The
/// response links of the annotations name operations by these ids.
fn name_operation(op: &mut Operation) {
    if let (Some(tag), Some(id)) = (
        op.tags.as_ref().and_then(|t| t.first()),
        op.operation_id.as_mut(),
    ) && !id.starts_with(&format!("{tag}_"))
    {
        *id = format!("{tag}_{id}");
    }
}

fn add_common_errors(op: &mut Operation) {
    let has_param = |place: ParameterIn| {
        op.parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == place)
    };
    let mut statuses = vec!["500", "503"];
    if has_param(ParameterIn::Path) || has_param(ParameterIn::Query) {
        statuses.push("400");
    }
    if has_param(ParameterIn::Query) {
        statuses.push("422");
    }
    if has_param(ParameterIn::Header) {
        statuses.push("422");
    }
    if op.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.push("401");
    }
    for status in statuses {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
    }
}

/// The document as served. utoipa 5.5 writes a response link's fields in snake case
/// (`operation_id`); OpenAPI spells them in camel case (`operationId`), which is what tools read.
pub(crate) fn to_json(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    camel_case_links(&mut value);
    value
}

fn camel_case_links(value: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = value else {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(camel_case_links);
        }
        return;
    };
    for (key, child) in map.iter_mut() {
        if key == "links"
            && let Value::Object(links) = child
        {
            for link in links.values_mut() {
                if let Value::Object(fields) = link {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(v) = fields.remove(from) {
                            fields.insert(to.to_owned(), v);
                        }
                    }
                }
            }
        } else {
            camel_case_links(child);
        }
    }
}
