//! Authentication at the edge: argon2id password hashes, HS256 bearer tokens, and the [`AuthUser`]
//! extractor that turns `Authorization: Bearer …` into an [`Actor`].
//!
//! The server only authenticates. What an actor may do is decided by `evently-core`, which answers
//! [`Error::Forbidden`](evently_core::Error::Forbidden) (mapped to 403) when a role is not enough.
//!
//! Tokens carry `sub` (the user id), `role`, `iat` and `exp`. They are stateless: a role change takes
//! effect when the user's current token expires.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use evently_core::{Actor, Role, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::error::ApiError;

/// Shortest accepted HS256 secret, in bytes (the size of the SHA-256 output).
pub const MIN_SECRET_LEN: usize = 32;

/// Longest accepted token lifetime.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// Accepted password lengths, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;

/// Cost of the argon2id password hash. The default is the OWASP recommendation
/// (19 MiB, 2 iterations, 1 lane). Existing hashes keep the parameters they were made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB, at least `8 * parallelism`.
    pub memory_kib: u32,
    /// Passes over the memory, at least 1.
    pub iterations: u32,
    /// Lanes, at least 1.
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordParams {
    /// The cheapest parameters argon2 accepts. **For tests only**: such hashes are easy to brute-force.
    pub fn insecure_fast() -> Self {
        Self {
            memory_kib: Params::MIN_M_COST,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn to_argon2(self) -> Result<Params, AuthSettingsError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| {
            AuthSettingsError::PasswordParams {
                reason: e.to_string(),
            }
        })
    }
}

/// Settings that [`AuthSettings`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSettingsError {
    /// The token signing secret is too short to be safe.
    #[error("the token signing secret is {len} bytes long; it must be at least {min} bytes")]
    SecretTooShort {
        /// Its length in bytes.
        len: usize,
        /// The minimum, [`MIN_SECRET_LEN`].
        min: usize,
    },
    /// The token lifetime is not within 1 s and [`MAX_TOKEN_TTL`].
    #[error("a token lifetime of {secs} s is not within 1 to {max} seconds")]
    TokenTtl {
        /// The lifetime asked for, in whole seconds.
        secs: u64,
        /// The longest allowed.
        max: u64,
    },
    /// argon2 does not accept the password-hash parameters.
    #[error("invalid password hashing parameters: {reason}")]
    PasswordParams {
        /// What argon2 said.
        reason: String,
    },
}

/// How the server authenticates: the token signing secret, the token lifetime and the password-hash cost.
#[derive(Clone)]
pub struct AuthSettings {
    secret: Vec<u8>,
    token_ttl: Duration,
    password: PasswordParams,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("secret", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("password", &self.password)
            .finish()
    }
}

impl AuthSettings {
    /// Settings signing tokens with `secret` (at least [`MIN_SECRET_LEN`] bytes) that live `token_ttl`
    /// (1 s to [`MAX_TOKEN_TTL`]), hashing passwords with the default [`PasswordParams`].
    pub fn new(secret: impl Into<Vec<u8>>, token_ttl: Duration) -> Result<Self, AuthSettingsError> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthSettingsError::SecretTooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        if token_ttl < Duration::from_secs(1) || token_ttl > MAX_TOKEN_TTL {
            return Err(AuthSettingsError::TokenTtl {
                secs: token_ttl.as_secs(),
                max: MAX_TOKEN_TTL.as_secs(),
            });
        }
        Ok(Self {
            secret,
            token_ttl,
            password: PasswordParams::default(),
        })
    }

    /// Sets the password-hash cost (validated).
    pub fn password_params(mut self, params: PasswordParams) -> Result<Self, AuthSettingsError> {
        params.to_argon2()?;
        self.password = params;
        Ok(self)
    }

    /// 64 bytes from the operating system's random source, for a secret that lives as long as the process.
    pub fn random_secret() -> Vec<u8> {
        let mut secret = vec![0u8; 64];
        OsRng.fill_bytes(&mut secret);
        secret
    }

    /// The token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: u64,
    exp: u64,
}

/// Hashes, verifies and signs. One per [`AppState`], shared by all requests.
pub(crate) struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token_ttl: Duration,
    params: Params,
    /// A hash to verify against when the e-mail is unknown, so that costs as much as a wrong password.
    dummy_hash: OnceLock<String>,
    /// Bounds concurrent hash computations: each takes `memory_kib` of memory and a CPU.
    permits: Arc<Semaphore>,
}

impl Authenticator {
    pub(crate) fn new(settings: AuthSettings) -> Self {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let params = settings
            .password
            .to_argon2()
            .unwrap_or_else(|_| Params::default());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            encoding: EncodingKey::from_secret(&settings.secret),
            decoding: DecodingKey::from_secret(&settings.secret),
            validation,
            token_ttl: settings.token_ttl,
            params,
            dummy_hash: OnceLock::new(),
            permits: Arc::new(Semaphore::new(cpus * 2)),
        }
    }

    pub(crate) fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Runs a hash computation on the blocking pool, at most a few at a time.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(format!("hash semaphore closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing task failed: {e}")))
    }

    /// Checks the length policy and hashes `password` into a PHC string (`$argon2id$v=19$…`).
    pub(crate) async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        check_password(&password)?;
        let params = self.params.clone();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Self::argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ApiError::Internal(format!("hashing a password failed: {e}")))
        })
        .await?
    }

    /// True if `password` matches `stored`. With `stored = None` (unknown user) it verifies against a
    /// dummy hash of the same cost and answers false, so both cases take about as long.
    pub(crate) async fn verify_password(
        self: &Arc<Self>,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, ApiError> {
        if password.chars().count() > *PASSWORD_CHARS.end() {
            return Ok(false);
        }
        let this = Arc::clone(self);
        self.blocking(move || {
            let known = stored.is_some();
            let phc = match stored {
                Some(h) => h,
                None => this.dummy_hash().to_owned(),
            };
            let parsed = match PasswordHash::new(&phc) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "stored password hash is not a PHC string");
                    return false;
                }
            };
            let ok = Self::argon2(this.params.clone())
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            ok && known
        })
        .await
    }

    fn dummy_hash(&self) -> &str {
        self.dummy_hash.get_or_init(|| {
            let mut bytes = [0u8; 32];
            OsRng.fill_bytes(&mut bytes);
            let salt = SaltString::generate(&mut OsRng);
            Self::argon2(self.params.clone())
                .hash_password(&bytes, &salt)
                .map(|h| h.to_string())
                // Not reachable with validated params; an unparsable dummy still answers "false".
                .unwrap_or_default()
        })
    }

    /// Signs an access token for `actor`; returns it with its lifetime in seconds.
    pub(crate) fn issue(&self, actor: &Actor) -> Result<(String, u64), ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let ttl = self.token_ttl.as_secs();
        let claims = Claims {
            sub: actor.user_id.to_string(),
            role: actor.role.as_str().to_owned(),
            iat: now,
            exp: now + ttl,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("signing a token failed: {e}")))?;
        Ok((token, ttl))
    }

    /// Checks signature and expiry of a token and returns who it was issued to.
    pub(crate) fn verify_token(&self, token: &str) -> Result<Actor, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::Unauthorized("the token has expired"),
                _ => ApiError::Unauthorized("the token is invalid"),
            })?;
        let user_id: UserId = data
            .claims
            .sub
            .parse()
            .map_err(|_| ApiError::Unauthorized("the token is invalid"))?;
        let role =
            Role::parse(&data.claims.role).ok_or(ApiError::Unauthorized("the token is invalid"))?;
        Ok(Actor::new(user_id, role))
    }
}

/// The password policy: 8 to 256 characters.
pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !PASSWORD_CHARS.contains(&n) {
        return Err(ApiError::validation(
            "password",
            format!(
                "must be {} to {} characters, got {n}",
                PASSWORD_CHARS.start(),
                PASSWORD_CHARS.end()
            ),
        ));
    }
    Ok(())
}

/// The authenticated caller, from `Authorization: Bearer <token>`. A missing, malformed, badly signed
/// or expired token is rejected with 401 before the handler runs.
///
/// ```
/// use evently_http::AuthUser;
///
/// async fn whoami(AuthUser(actor): AuthUser) -> String {
///     format!("{} ({})", actor.user_id, actor.role.as_str())
/// }
/// # let _: axum::Router<evently_http::AppState> =
/// #     axum::Router::new().route("/me", axum::routing::get(whoami));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub Actor);

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing Authorization header"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
        let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized(
            "expected `Authorization: Bearer <token>`",
        ))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized(
                "expected `Authorization: Bearer <token>`",
            ));
        }
        let state = AppState::from_ref(state);
        state.auth().verify_token(token.trim()).map(AuthUser)
    }
}

/// The caller if the request carries a token: `None` without an `Authorization` header; a token
/// that is there but unusable is still a 401 (a client that meant to sign in learns it did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeAuthUser(pub Option<Actor>);

impl<S> FromRequestParts<S> for MaybeAuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.get(AUTHORIZATION).is_none() {
            return Ok(MaybeAuthUser(None));
        }
        let AuthUser(actor) = AuthUser::from_request_parts(parts, state).await?;
        Ok(MaybeAuthUser(Some(actor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Arc<Authenticator> {
        let settings = AuthSettings::new(vec![7u8; 32], Duration::from_secs(60))
            .unwrap()
            .password_params(PasswordParams::insecure_fast())
            .unwrap();
        Arc::new(Authenticator::new(settings))
    }

    #[test]
    fn short_secrets_and_silly_ttls_are_refused() {
        assert!(matches!(
            AuthSettings::new(vec![1u8; 31], Duration::from_secs(60)),
            Err(AuthSettingsError::SecretTooShort { len: 31, min: 32 })
        ));
        assert!(AuthSettings::new(vec![1u8; 32], Duration::ZERO).is_err());
        assert!(AuthSettings::new(vec![1u8; 32], MAX_TOKEN_TTL + Duration::from_secs(1)).is_err());
        let bad = PasswordParams {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        assert!(
            AuthSettings::new(vec![1u8; 32], Duration::from_secs(1))
                .unwrap()
                .password_params(bad)
                .is_err()
        );
    }

    #[test]
    fn the_secret_is_not_printed() {
        let s = AuthSettings::new(
            b"super-secret-super-secret-super-secret".to_vec(),
            MAX_TOKEN_TTL,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("super-secret"));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let auth = authenticator();
        let hash = auth.hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(
            auth.verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !auth
                .verify_password("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !auth
                .verify_password("correct horse".into(), None)
                .await
                .unwrap()
        );
        assert!(
            !auth
                .verify_password("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_password_policy_counts_characters() {
        let auth = authenticator();
        assert!(auth.hash_password("1234567".into()).await.is_err());
        assert!(
            auth.hash_password("ééééééé".into()).await.is_err(),
            "7 chars, 14 bytes"
        );
        assert!(auth.hash_password("x".repeat(256)).await.is_ok());
        assert!(auth.hash_password("x".repeat(257)).await.is_err());
    }

    #[test]
    fn tokens_round_trip_and_tampering_is_caught() {
        let auth = authenticator();
        let actor = Actor::new(UserId::new(), Role::Admin);
        let (token, ttl) = auth.issue(&actor).unwrap();
        assert_eq!(ttl, 60);
        assert_eq!(auth.verify_token(&token).unwrap(), actor);

        let other =
            Authenticator::new(AuthSettings::new(vec![8u8; 32], Duration::from_secs(60)).unwrap());
        assert!(other.verify_token(&token).is_err(), "another secret");
        assert!(auth.verify_token("a.b.c").is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = authenticator();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: UserId::new().to_string(),
            role: "user".into(),
            iat: now - 3600,
            exp: now - 60,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &auth.encoding).unwrap();
        assert!(matches!(
            auth.verify_token(&token),
            Err(ApiError::Unauthorized("the token has expired"))
        ));
    }
}
