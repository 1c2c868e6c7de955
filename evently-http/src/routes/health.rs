//! Liveness and readiness probes.

use std::time::Duration;

use axum::extract::State;

use crate::AppState;
use crate::dto::StatusResponse;
use crate::error::ApiError;
use crate::extract::Json;

/// How long the readiness probe waits for the store.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process answers. Touches nothing else.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = StatusResponse)))]
pub(crate) async fn healthz() -> Json<StatusResponse> {
    Json(StatusResponse {
        status: "ok".into(),
    })
}

/// `GET /readyz`: the store answers a ping within two seconds, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "The store answers", body = StatusResponse)))]
pub(crate) async fn readyz(
    State(state): State<AppState>,
) -> Result<Json<StatusResponse>, ApiError> {
    match tokio::time::timeout(PING_TIMEOUT, state.engine().store().ping()).await {
        Ok(Ok(())) => Ok(Json(StatusResponse {
            status: "ready".into(),
        })),
        Ok(Err(e)) => Err(ApiError::NotReady(e.to_string())),
        Err(_) => Err(ApiError::NotReady(format!(
            "no answer within {} s",
            PING_TIMEOUT.as_secs()
        ))),
    }
}
