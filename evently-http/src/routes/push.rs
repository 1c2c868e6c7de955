//! Web push: the server's VAPID public key and the signed-in user's push subscriptions.

use axum::extract::State;
use axum::http::StatusCode;
use evently_core::Error as CoreError;

use crate::AppState;
use crate::auth::AuthUser;
use crate::dto::{
    PushSubscriptionRequest, PushSubscriptionResponse, PushUnsubscribeRequest,
    VapidPublicKeyResponse,
};
use crate::error::ApiError;
use crate::extract::Json;
use crate::webpush::{decode_base64url, is_loopback};

/// Longest endpoint accepted (the store's limit).
const MAX_ENDPOINT_LEN: usize = 2048;

/// `GET /push/vapid-public-key`: the `applicationServerKey` for `pushManager.subscribe`; 404
/// `push_not_configured` when the server has no VAPID key.
#[utoipa::path(get, path = "/push/vapid-public-key", tag = "push",
    responses(
        (status = 200, description = "The server's VAPID public key", body = VapidPublicKeyResponse),
        (status = 404, description = "Web push is not configured (`push_not_configured`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn vapid_public_key(
    State(state): State<AppState>,
) -> Result<Json<VapidPublicKeyResponse>, ApiError> {
    let key = state.push_public_key().ok_or(ApiError::PushNotConfigured)?;
    Ok(Json(VapidPublicKeyResponse {
        public_key: key.to_owned(),
    }))
}

/// `POST /me/push-subscriptions`: stores (or refreshes, keyed by endpoint) a browser's subscription;
/// 201 with it. 422 `validation_failed` naming `endpoint`, `keys.p256dh` or `keys.auth` when one is
/// unusable.
#[utoipa::path(post, path = "/me/push-subscriptions", tag = "push", request_body = PushSubscriptionRequest,
    security(("bearer" = [])),
    responses((status = 201, description = "The stored subscription", body = PushSubscriptionResponse)))]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(body): Json<PushSubscriptionRequest>,
) -> Result<(StatusCode, Json<PushSubscriptionResponse>), ApiError> {
    let endpoint = check_endpoint(&body.endpoint)?;
    check_p256dh(&body.keys.p256dh)?;
    check_auth(&body.keys.auth)?;
    let sub = state
        .engine()
        .subscribe_push(&actor, endpoint, body.keys.p256dh, body.keys.auth)
        .await
        .map_err(|e| match e {
            // The engine's field names, in the request's terms.
            CoreError::Validation { field, reason } => CoreError::Validation {
                field: match field {
                    "p256dh" => "keys.p256dh",
                    "auth" => "keys.auth",
                    other => other,
                },
                reason,
            },
            other => other,
        })?;
    tracing::info!(user_id = %actor.user_id, subscription_id = %sub.id, "push subscription stored");
    Ok((
        StatusCode::CREATED,
        Json(PushSubscriptionResponse::from(&sub)),
    ))
}

/// `DELETE /me/push-subscriptions`: removes one of the user's subscriptions by endpoint; 204, or 404
/// when the user has none with that endpoint.
#[utoipa::path(delete, path = "/me/push-subscriptions", tag = "push", request_body = PushUnsubscribeRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "You have no subscription with this endpoint", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Json(body): Json<PushUnsubscribeRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .engine()
        .unsubscribe_push(&actor, &body.endpoint)
        .await?;
    tracing::info!(user_id = %actor.user_id, "push subscription removed");
    Ok(StatusCode::NO_CONTENT)
}

/// An `https:` URL (plain `http:` only on a loopback host: development and tests) without user
/// information or fragment, of at most [`MAX_ENDPOINT_LEN`] bytes. Returns it as given.
fn check_endpoint(endpoint: &str) -> Result<String, ApiError> {
    let invalid = |reason: &str| ApiError::validation("endpoint", reason);
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(invalid("must be at most 2048 bytes"));
    }
    let url = url::Url::parse(endpoint).map_err(|e| invalid(&format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => return Err(invalid("must be an https: URL (http: only for localhost)")),
        _ => return Err(invalid("must be an https: URL")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(invalid("must not carry credentials or a fragment"));
    }
    Ok(endpoint.to_owned())
}

/// base64url of a 65-byte uncompressed P-256 point that is on the curve.
fn check_p256dh(p256dh: &str) -> Result<(), ApiError> {
    let invalid = |reason: &str| ApiError::validation("keys.p256dh", reason);
    let bytes = decode_base64url(p256dh).map_err(|_| invalid("must be base64url"))?;
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(invalid(&format!(
            "must be an uncompressed P-256 point (65 bytes starting with 0x04), got {} bytes",
            bytes.len()
        )));
    }
    p256::PublicKey::from_sec1_bytes(&bytes)
        .map_err(|_| invalid("is not a point on the P-256 curve"))?;
    Ok(())
}

/// base64url of 16 bytes.
fn check_auth(auth: &str) -> Result<(), ApiError> {
    let invalid = |reason: &str| ApiError::validation("keys.auth", reason);
    let bytes = decode_base64url(auth).map_err(|_| invalid("must be base64url"))?;
    if bytes.len() != 16 {
        return Err(invalid(&format!(
            "must be a 16-byte auth secret, got {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> &'static str {
        match e {
            ApiError::Core(CoreError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn endpoints() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/x?y=1",
            "http://127.0.0.1:3000/push/1",
            "http://localhost/push",
            "http://[::1]:8080/p",
        ] {
            assert_eq!(check_endpoint(ok).unwrap(), ok);
        }
        let long = format!("https://push.example/{}", "a".repeat(2048));
        for bad in [
            "",
            "push.example/x",
            "http://push.example/x",
            "ftp://push.example/x",
            "https://user:pw@push.example/x",
            "https://push.example/x#frag",
            long.as_str(),
        ] {
            assert_eq!(field(check_endpoint(bad).unwrap_err()), "endpoint", "{bad}");
        }
    }
}
