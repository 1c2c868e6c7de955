//! Registration and login.

use axum::extract::State;
use axum::http::StatusCode;
use evently_core::{Actor, Error as CoreError, Role};

use crate::AppState;
use crate::dto::{LoginRequest, RegisterRequest, TokenResponse, UserResponse};
use crate::error::ApiError;
use crate::extract::Json;

/// `POST /auth/register`: a new account with the `user` role; 201 with the user.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new user", body = UserResponse),
        (status = 409, description = "The e-mail is taken (`conflict`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let user = state
        .register(body.email, body.name, body.password, Role::User)
        .await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(UserResponse::from(&user))))
}

/// `POST /auth/login`: a bearer token for a correct e-mail and password. An unknown e-mail and a wrong
/// password get the same 401 after the same amount of hashing work.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password (`invalid_credentials`)", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let user = match state.engine().user_by_email(&body.email).await {
        Ok(user) => Some(user),
        Err(CoreError::NotFound { .. } | CoreError::Validation { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = state.auth().verify_password(body.password, stored).await?;
    let user = match user {
        Some(user) if ok => user,
        _ => return Err(ApiError::InvalidCredentials),
    };
    let (access_token, expires_in) = state.auth().issue(&Actor::new(user.id, user.role))?;
    tracing::debug!(user_id = %user.id, "login");
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
    }))
}
