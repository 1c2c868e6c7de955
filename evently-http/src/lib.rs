//! # evently-http
//!
//! The reference HTTP server of Evently: an [axum] [`Router`] over the booking engine, to run as the
//! `evently` binary or to mount in your own application.
//!
//! [`app`] takes an [`AppState`] (an [`Evently`] engine plus [`AuthSettings`]) and returns a
//! `Router` with its state applied, so it can be nested under a prefix or merged with your routes:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use axum::{Router, routing::get};
//! use evently_core::Evently;
//! use evently_http::{AppState, AuthSettings, app};
//! use evently_storage::MemoryStore;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Evently::builder().store(Arc::new(MemoryStore::new())).build()?;
//! let auth = AuthSettings::new(AuthSettings::random_secret(), Duration::from_secs(3600))?;
//!
//! // Your application, with the booking API under /api.
//! let site: Router = Router::new()
//!     .route("/", get(|| async { "my site" }))
//!     .nest("/api", app(AppState::new(engine, auth)));
//!
//! let response = site
//!     .oneshot(Request::get("/api/healthz").body(Body::empty())?)
//!     .await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // To serve it: axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8080").await?, site).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Endpoints
//!
//! The README's API table lists them; [`openapi`] describes how the OpenAPI document served at
//! `GET /openapi.json` (with Swagger UI at `GET /docs`) is made from the handlers.
//!
//! Bodies are JSON ([`dto`]); every error has the body described in [`error`].
//! Authentication is the server's job ([`auth`]); authorization is the engine's.
//!
//! ## Background work
//!
//! [`worker::Worker`] runs the engine's jobs on a polling loop, as the `evently-worker` binary or as a
//! task inside your process; [`notify::EmailNotifier`] delivers notifications by e-mail (SMTP, `.eml`
//! files or the log) with one PDF ticket per seat on a confirmation ([`tickets`] renders the QR codes
//! and the PDF); [`notify::PushNotifier`] delivers them as web push messages (VAPID, `aes128gcm`) to
//! the browsers the user subscribed. See `docs/notifications.md`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
#[cfg(feature = "server")]
pub mod backend;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
pub mod dto;
pub mod error;
pub mod extract;
#[cfg(feature = "server")]
pub mod notify;
pub mod openapi;
mod routes;
pub mod texts;
#[cfg(feature = "server")]
pub mod tickets;
pub mod webpush;
#[cfg(feature = "server")]
pub mod worker;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use evently_core::{Actor, Error as CoreError, Evently, NewUser, Role, User};
use tower_http::trace::TraceLayer;

pub use auth::{AuthSettings, AuthSettingsError, AuthUser, MaybeAuthUser, PasswordParams};
#[cfg(feature = "server")]
pub use config::{Config, ConfigError};
pub use error::ApiError;

use auth::Authenticator;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares: the engine and the authenticator. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    engine: Evently,
    auth: Arc<Authenticator>,
    push_public_key: Option<Arc<str>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.engine)
            .field("token_ttl", &self.auth.token_ttl())
            .field("push_public_key", &self.push_public_key)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State serving `engine`, authenticating with `auth`.
    pub fn new(engine: Evently, auth: AuthSettings) -> Self {
        Self {
            engine,
            auth: Arc::new(Authenticator::new(auth)),
            push_public_key: None,
        }
    }

    /// Serves `keys`' public key at `GET /push/vapid-public-key` (without it that route answers 404
    /// `push_not_configured`). Use the keys of the [`PushNotifier`](notify::PushNotifier) the engine
    /// delivers through, or browsers' subscriptions will not accept its pushes.
    #[cfg(feature = "server")]
    pub fn with_push(self, keys: &notify::VapidKeys) -> Self {
        self.with_push_public_key(keys.public_key_base64url())
    }

    /// Serves `public_key` (a VAPID public key, base64url) at `GET /push/vapid-public-key`: the
    /// key of whatever delivers this application's web push messages.
    pub fn with_push_public_key(mut self, public_key: impl Into<Arc<str>>) -> Self {
        self.push_public_key = Some(public_key.into());
        self
    }

    /// The VAPID public key served to browsers (base64url), when web push is configured.
    pub fn push_public_key(&self) -> Option<&str> {
        self.push_public_key.as_deref()
    }

    /// The engine.
    pub fn engine(&self) -> &Evently {
        &self.engine
    }

    pub(crate) fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// Registers a user with an argon2id hash of `password` (8 to 256 characters).
    pub async fn register(
        &self,
        email: String,
        name: String,
        password: String,
        role: Role,
    ) -> Result<User, ApiError> {
        let password_hash = self.auth.hash_password(password).await?;
        Ok(self
            .engine
            .register_user(NewUser {
                email,
                name,
                password_hash,
                role,
                attributes: Default::default(),
            })
            .await?)
    }

    /// Makes sure an administrator with this e-mail exists, creating it with `password` if it does not.
    /// An existing account is left as it is (its password is not reset); one that exists without the
    /// admin role is a [`Conflict`](evently_core::Error::Conflict).
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<User, ApiError> {
        let existing = match self.engine.user_by_email(email).await {
            Ok(user) => Some(user),
            Err(CoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let user = match existing {
            Some(user) => user,
            None => {
                match self
                    .register(
                        email.into(),
                        "Administrator".into(),
                        password.into(),
                        Role::Admin,
                    )
                    .await
                {
                    Ok(user) => {
                        tracing::info!(user_id = %user.id, email = %user.email, "admin account created");
                        return Ok(user);
                    }
                    // Created concurrently (another process starting up): use that one.
                    Err(ApiError::Core(CoreError::Conflict { .. })) => {
                        self.engine.user_by_email(email).await?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if user.role != Role::Admin {
            return Err(CoreError::Conflict {
                reason: format!("{} exists but is not an administrator", user.email),
            }
            .into());
        }
        Ok(user)
    }

    /// A bearer token for `actor`, as `POST /auth/login` issues (for integrators with their own login).
    pub fn issue_token(&self, actor: &Actor) -> Result<String, ApiError> {
        self.auth.issue(actor).map(|(token, _)| token)
    }
}

/// The whole API as a [`Router`] with its state applied: every route, its OpenAPI document at
/// `GET /openapi.json` and Swagger UI at `GET /docs` (bundled, nothing fetched from elsewhere), JSON
/// 404/405 fallbacks, a [`MAX_BODY_BYTES`] body limit and request tracing.
pub fn app(state: AppState) -> Router {
    let (routes, doc) = routes::router();
    routes
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", openapi::to_json(&doc)),
        )
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
