//! The one place where errors become HTTP responses.
//!
//! Every failure a handler or extractor can produce is an [`ApiError`]; its [`IntoResponse`] impl picks
//! the status code and writes the body, always the same JSON shape:
//!
//! ```json
//! {"error": {"code": "sold_out", "message": "event … is sold out: 3 seat(s) requested, 1 available",
//!            "event_id": "…", "requested": 3, "available": 1}}
//! ```
//!
//! `code` is stable and meant for programs; `message` is for people; the other members carry the
//! context of the error (the offending `field` of a validation error, the seats still `available` when
//! sold out, ...).
//!
//! | core error | status | `code` |
//! | --- | --- | --- |
//! | `SoldOut` | 409 | `sold_out` (+ `event_id`, `requested`, `available`) |
//! | `NotFound` | 404 | `not_found` (+ `entity`, `id`) |
//! | `Conflict` | 409 | `conflict` |
//! | `Validation` | 422 | `validation_failed` (+ `field`) |
//! | `Forbidden` | 403 | `forbidden` |
//! | `InvalidTransition`, `InvalidWaitlistTransition` | 409 | `invalid_transition` (+ `from`, `to`) |
//! | `HoldExpired` | 410 | `hold_expired` (+ `booking_id`, `held_until`) |
//! | `EventClosed` | 409 | `event_closed` (+ `event_id`, `reason`) |
//! | `Policy` | 502 | `policy_failed` |
//! | `Store` (`Unavailable`, `Transient`) | 503 | `unavailable` (+ `Retry-After`) |
//! | `Store` (anything else) | 500 | `internal` |
//!
//! A failing pricing or waitlist policy is a **502 Bad Gateway**: the request was fine and so is the
//! server, but a component it delegates the decision to (a plugin, possibly remote) gave no usable answer.
//! That keeps policy outages apart from our own bugs (500) and from an overloaded store (503) on
//! dashboards. Neither 500 nor 502 bodies carry the internal detail; it is logged with `tracing`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evently_core::{Error as CoreError, StoreError};
use serde_json::{Map, Value, json};

/// Everything a request can fail with. Converts from [`evently_core::Error`] with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// An error of the booking engine.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// No usable bearer token: missing, malformed, badly signed or expired (401).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Login with an unknown e-mail or a wrong password (401, one answer for both).
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// The request could not be read: bad JSON, wrong content type, bad path or query (400, 413, 415, 422).
    #[error("{message}")]
    BadRequest {
        /// The status to answer with.
        status: StatusCode,
        /// The stable error code.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// No route matches the path (404).
    #[error("no route for this path")]
    NoRoute,
    /// The route exists but not for this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Web push is not configured on this server: no VAPID key (404 `push_not_configured`).
    #[error("web push is not configured on this server")]
    PushNotConfigured,
    /// The store did not answer the readiness probe (503).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A failure of the server itself; the detail is logged, never sent (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A validation error naming the offending field (422 `validation_failed`).
    pub fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        ApiError::Core(CoreError::Validation {
            field,
            reason: reason.into(),
        })
    }

    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().status
    }

    /// The stable `code` member of the body.
    pub fn code(&self) -> &'static str {
        self.parts().code
    }

    /// Status, code, public message and context members. Logs what must not be sent.
    fn parts(&self) -> Parts {
        match self {
            ApiError::Core(e) => core_parts(e),
            ApiError::Unauthorized(why) => Parts::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("authentication required: {why}"),
            ),
            ApiError::InvalidCredentials => Parts::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid e-mail or password",
            ),
            ApiError::BadRequest {
                status,
                code,
                message,
            } => Parts::new(*status, code, message.clone()),
            ApiError::NoRoute => Parts::new(StatusCode::NOT_FOUND, "not_found", "no such route"),
            ApiError::MethodNotAllowed => Parts::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            ),
            ApiError::PushNotConfigured => Parts::new(
                StatusCode::NOT_FOUND,
                "push_not_configured",
                "web push is not configured on this server",
            ),
            ApiError::NotReady(_) => Parts::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the store is not reachable",
            ),
            ApiError::Internal(_) => internal(),
        }
    }

    fn log(&self) {
        match self {
            ApiError::Core(CoreError::Store(e)) if is_unavailable(e) => {
                tracing::warn!(error = %e, "store unavailable")
            }
            ApiError::Core(CoreError::Store(e)) => tracing::error!(error = %e, "store failure"),
            ApiError::Core(CoreError::Policy(e)) => tracing::error!(error = %e, "policy failure"),
            ApiError::NotReady(why) => tracing::warn!(reason = %why, "readiness probe failed"),
            ApiError::Internal(why) => tracing::error!(error = %why, "internal error"),
            ApiError::Core(e) if core_parts(e).status.is_server_error() => {
                tracing::error!(error = %e, "unexpected engine error")
            }
            _ => {}
        }
    }
}

fn is_unavailable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Unavailable { .. } | StoreError::Transient { .. }
    )
}

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    code: &'static str,
    message: String,
    context: Map<String, Value>,
}

impl Parts {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            context: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.context.insert(key.to_owned(), value.into());
        self
    }
}

fn internal() -> Parts {
    Parts::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
    )
}

fn core_parts(e: &CoreError) -> Parts {
    let msg = e.to_string();
    match e {
        CoreError::SoldOut {
            event_id,
            requested,
            available,
        } => Parts::new(StatusCode::CONFLICT, "sold_out", msg)
            .with("event_id", event_id.to_string())
            .with("requested", *requested)
            .with("available", *available),
        CoreError::NotFound { entity, id } => Parts::new(StatusCode::NOT_FOUND, "not_found", msg)
            .with("entity", entity.to_string())
            .with("id", id.clone()),
        CoreError::Conflict { .. } => Parts::new(StatusCode::CONFLICT, "conflict", msg),
        CoreError::Validation { field, .. } => {
            Parts::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", msg)
                .with("field", *field)
        }
        CoreError::Forbidden { .. } => Parts::new(StatusCode::FORBIDDEN, "forbidden", msg),
        CoreError::InvalidTransition {
            booking_id,
            from,
            to,
        } => Parts::new(StatusCode::CONFLICT, "invalid_transition", msg)
            .with("booking_id", booking_id.to_string())
            .with("from", from.as_str())
            .with("to", to.as_str()),
        CoreError::InvalidWaitlistTransition { from, to } => {
            Parts::new(StatusCode::CONFLICT, "invalid_transition", msg)
                .with("from", from.to_string())
                .with("to", to.to_string())
        }
        CoreError::HoldExpired {
            booking_id,
            held_until,
        } => Parts::new(StatusCode::GONE, "hold_expired", msg)
            .with("booking_id", booking_id.to_string())
            .with("held_until", held_until.to_rfc3339()),
        CoreError::EventClosed { event_id, reason } => {
            Parts::new(StatusCode::CONFLICT, "event_closed", msg)
                .with("event_id", event_id.to_string())
                .with("reason", *reason)
        }
        CoreError::Policy(_) => Parts::new(
            StatusCode::BAD_GATEWAY,
            "policy_failed",
            "a pricing or waitlist policy failed; try again later",
        ),
        CoreError::Store(s) if is_unavailable(s) => Parts::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is temporarily unavailable; try again",
        ),
        CoreError::Store(_) => internal(),
        _ => internal(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let Parts {
            status,
            code,
            message,
            mut context,
        } = self.parts();
        let mut body = Map::new();
        body.insert("code".into(), code.into());
        body.insert("message".into(), message.into());
        body.append(&mut context);
        let mut response = (status, axum::Json(json!({ "error": body }))).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match &r {
            JsonRejection::JsonDataError(_) => "invalid_body",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "invalid_body",
        };
        ApiError::BadRequest {
            status: r.status(),
            code,
            message: r.body_text(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        let status = r.status();
        if status.is_server_error() {
            return ApiError::Internal(r.body_text());
        }
        ApiError::BadRequest {
            status,
            code: "invalid_path",
            message: r.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest {
            status: r.status(),
            code: "invalid_query",
            message: r.body_text(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evently_core::{BookingId, EventId};

    #[test]
    fn sold_out_is_409_with_its_context() {
        let e = ApiError::from(CoreError::SoldOut {
            event_id: EventId::new(),
            requested: 3,
            available: 1,
        });
        let p = e.parts();
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert_eq!(p.code, "sold_out");
        assert_eq!(p.context["available"], 1);
        assert_eq!(p.context["requested"], 3);
    }

    #[test]
    fn store_errors_never_leak_their_message() {
        let secret = "password=hunter2 at db.internal:5432";
        for (err, status) in [
            (
                StoreError::Backend {
                    message: secret.into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                StoreError::Corrupt {
                    message: secret.into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                StoreError::Unavailable {
                    message: secret.into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                StoreError::Transient {
                    message: secret.into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ] {
            let p = ApiError::from(CoreError::Store(err)).parts();
            assert_eq!(p.status, status);
            assert!(!p.message.contains("hunter2"), "{p:?}");
            assert!(p.context.is_empty());
        }
    }

    #[test]
    fn each_core_error_has_its_status() {
        let b = BookingId::new();
        let cases: Vec<(CoreError, u16, &str)> = vec![
            (
                CoreError::NotFound {
                    entity: evently_core::Entity::Booking,
                    id: b.to_string(),
                },
                404,
                "not_found",
            ),
            (CoreError::Conflict { reason: "x".into() }, 409, "conflict"),
            (
                CoreError::Validation {
                    field: "quantity",
                    reason: "x".into(),
                },
                422,
                "validation_failed",
            ),
            (
                CoreError::Forbidden { reason: "x".into() },
                403,
                "forbidden",
            ),
            (
                CoreError::InvalidTransition {
                    booking_id: b,
                    from: evently_core::BookingStatus::Expired,
                    to: evently_core::BookingStatus::Confirmed,
                },
                409,
                "invalid_transition",
            ),
            (
                CoreError::HoldExpired {
                    booking_id: b,
                    held_until: chrono::Utc::now(),
                },
                410,
                "hold_expired",
            ),
            (
                CoreError::EventClosed {
                    event_id: EventId::new(),
                    reason: "the event is not active",
                },
                409,
                "event_closed",
            ),
            (
                CoreError::Policy(evently_core::PolicyError::Failed {
                    policy: "p".into(),
                    message: "trap".into(),
                }),
                502,
                "policy_failed",
            ),
        ];
        for (e, status, code) in cases {
            let p = ApiError::from(e).parts();
            assert_eq!((p.status.as_u16(), p.code), (status, code));
        }
    }
}
