//! Server configuration from environment variables.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `EVENTLY_BIND` | `127.0.0.1:8080` | address to listen on |
//! | `EVENTLY_DATABASE_URL` | `sqlite://evently.db` | SQLite database (created if missing) |
//! | `EVENTLY_JWT_SECRET` | random per process | HS256 signing secret, at least 32 bytes |
//! | `EVENTLY_JWT_TTL_SECS` | `3600` | access-token lifetime in seconds |
//! | `EVENTLY_ADMIN_EMAIL`, `EVENTLY_ADMIN_PASSWORD` | unset | if both are set, this admin account is created at start when missing |
//!
//! Without `EVENTLY_JWT_SECRET` a random secret is generated ([`Config::jwt_secret_generated`] is set
//! and the binary logs a warning): tokens then stop working when the process restarts.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::{AuthSettings, AuthSettingsError, MIN_SECRET_LEN, PASSWORD_CHARS};

/// Listen address variable.
pub const ENV_BIND: &str = "EVENTLY_BIND";
/// Database URL variable.
pub const ENV_DATABASE_URL: &str = "EVENTLY_DATABASE_URL";
/// Token signing secret variable.
pub const ENV_JWT_SECRET: &str = "EVENTLY_JWT_SECRET";
/// Token lifetime variable.
pub const ENV_JWT_TTL_SECS: &str = "EVENTLY_JWT_TTL_SECS";
/// Bootstrap admin e-mail variable.
pub const ENV_ADMIN_EMAIL: &str = "EVENTLY_ADMIN_EMAIL";
/// Bootstrap admin password variable.
pub const ENV_ADMIN_PASSWORD: &str = "EVENTLY_ADMIN_PASSWORD";
/// Where workers take jobs from: `store` (the database's own queue, the default) or `redis` (a Redis
/// queue at `EVENTLY_REDIS_URL`, fed from the database's outbox).
pub const ENV_QUEUE: &str = "EVENTLY_QUEUE";

const ALL_VARS: [&str; 7] = [
    ENV_BIND,
    ENV_DATABASE_URL,
    ENV_QUEUE,
    ENV_JWT_SECRET,
    ENV_JWT_TTL_SECS,
    ENV_ADMIN_EMAIL,
    ENV_ADMIN_PASSWORD,
];

/// A configuration value that cannot be used. Secrets are never echoed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The variable is set but is not valid UTF-8.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// The variable's value is malformed or out of range.
    #[error("{var}={value:?} is invalid: {reason}")]
    InvalidValue {
        /// The variable.
        var: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token signing secret is too short to be safe.
    #[error("EVENTLY_JWT_SECRET is {len} bytes long; it must be at least {min} bytes")]
    JwtSecretTooShort {
        /// Its length in bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Only one of the admin e-mail and password is set.
    #[error("{missing} must be set too when {set} is set")]
    AdminIncomplete {
        /// The variable that is set.
        set: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// The admin password breaks the password policy.
    #[error("EVENTLY_ADMIN_PASSWORD must be {min} to {max} characters", min = PASSWORD_CHARS.start(), max = PASSWORD_CHARS.end())]
    AdminPasswordLength,
    /// The password-hash parameters are not accepted by argon2.
    #[error("invalid password hashing parameters: {reason}")]
    InvalidPasswordParams {
        /// What argon2 said.
        reason: String,
    },
}

impl From<AuthSettingsError> for ConfigError {
    fn from(e: AuthSettingsError) -> Self {
        match e {
            AuthSettingsError::SecretTooShort { len, min } => {
                ConfigError::JwtSecretTooShort { len, min }
            }
            AuthSettingsError::TokenTtl { secs, max } => ConfigError::InvalidValue {
                var: ENV_JWT_TTL_SECS,
                value: secs.to_string(),
                reason: format!("must be 1 to {max} seconds"),
            },
            AuthSettingsError::PasswordParams { reason } => {
                ConfigError::InvalidPasswordParams { reason }
            }
        }
    }
}

/// The bootstrap admin account.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminAccount {
    /// E-mail address.
    pub email: String,
    /// Password (8 to 256 characters).
    pub password: String,
}

impl fmt::Debug for AdminAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAccount")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything the `evently` binary reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The database: an SQLite URL (`sqlite://path` or `sqlite:path`, the embedded default) or a
    /// PostgreSQL URL (`postgres://...`; the pool's other settings come from `EVENTLY_DATABASE_*`, see
    /// `evently_storage::postgres::env`).
    pub database_url: String,
    /// Where workers take jobs from.
    pub queue: QueueKind,
    /// The token signing secret.
    pub jwt_secret: Vec<u8>,
    /// True when no secret was configured and [`Config::jwt_secret`] is a random one.
    pub jwt_secret_generated: bool,
    /// Access-token lifetime.
    pub jwt_ttl: Duration,
    /// The admin account to ensure at start.
    pub admin: Option<AdminAccount>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("database_url", &redact_password(&self.database_url))
            .field("queue", &self.queue)
            .field("jwt_secret", &"<redacted>")
            .field("jwt_secret_generated", &self.jwt_secret_generated)
            .field("jwt_ttl", &self.jwt_ttl)
            .field("admin", &self.admin)
            .finish()
    }
}

/// The values of `vars` in the process environment (unset ones left out); a value that is not
/// Unicode is an error naming its variable. Feeds the `from_lookup` constructors of every config.
pub(crate) fn env_snapshot(
    vars: &[&'static str],
) -> Result<HashMap<&'static str, String>, ConfigError> {
    let mut out = HashMap::new();
    for &var in vars {
        match std::env::var(var) {
            Ok(v) => {
                out.insert(var, v);
            }
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => return Err(ConfigError::NotUnicode { var }),
        }
    }
    Ok(out)
}

/// Where workers take jobs from ([`ENV_QUEUE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueKind {
    /// The database's own job table (the default): jobs are claimed where they were written.
    #[default]
    Store,
    /// A Redis queue (`EVENTLY_REDIS_URL`): jobs are still written in the database's transactions
    /// (the outbox) and each worker pass hands the due ones over to Redis before running them.
    Redis,
}

/// `url` with the password (if any) replaced by `***`, for logs and error messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars = env_snapshot(&ALL_VARS)?;
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads the variables through `lookup` (`None` = unset), e.g. from a map in a test.
    ///
    /// ```
    /// use evently_http::config::{Config, ConfigError};
    ///
    /// let config = Config::from_lookup(|var| match var {
    ///     "EVENTLY_BIND" => Some("0.0.0.0:9000".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.bind.port(), 9000);
    /// assert!(config.jwt_secret_generated);
    ///
    /// let err = Config::from_lookup(|var| (var == "EVENTLY_JWT_TTL_SECS").then(|| "soon".into()));
    /// assert!(matches!(err, Err(ConfigError::InvalidValue { var: "EVENTLY_JWT_TTL_SECS", .. })));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let bind = match lookup(ENV_BIND) {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.trim().parse().map_err(|e| ConfigError::InvalidValue {
                var: ENV_BIND,
                value: v.clone(),
                reason: format!("{e}; expected an address such as 127.0.0.1:8080"),
            })?,
        };

        let database_url = lookup(ENV_DATABASE_URL).unwrap_or_else(|| "sqlite://evently.db".into());
        let known = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme) && database_url.len() > scheme.len());
        if !known {
            return Err(ConfigError::InvalidValue {
                var: ENV_DATABASE_URL,
                value: redact_password(&database_url),
                reason: "expected an SQLite URL such as sqlite://evently.db or a PostgreSQL URL \
                         such as postgres://user@host/db"
                    .into(),
            });
        }

        let queue = match lookup(ENV_QUEUE).as_deref().map(str::trim) {
            None | Some("store") => QueueKind::Store,
            Some("redis") => QueueKind::Redis,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    var: ENV_QUEUE,
                    value: other.to_owned(),
                    reason: "expected store or redis".into(),
                });
            }
        };

        let jwt_ttl = match lookup(ENV_JWT_TTL_SECS) {
            None => Duration::from_secs(3600),
            Some(v) => {
                let secs: u64 = v.trim().parse().map_err(|e| ConfigError::InvalidValue {
                    var: ENV_JWT_TTL_SECS,
                    value: v.clone(),
                    reason: format!("{e}; expected a whole number of seconds"),
                })?;
                let max = crate::auth::MAX_TOKEN_TTL.as_secs();
                if secs == 0 || secs > max {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_JWT_TTL_SECS,
                        value: v,
                        reason: format!("must be 1 to {max} seconds"),
                    });
                }
                Duration::from_secs(secs)
            }
        };

        let (jwt_secret, jwt_secret_generated) = match lookup(ENV_JWT_SECRET) {
            Some(s) if s.len() < MIN_SECRET_LEN => {
                return Err(ConfigError::JwtSecretTooShort {
                    len: s.len(),
                    min: MIN_SECRET_LEN,
                });
            }
            Some(s) => (s.into_bytes(), false),
            None => (AuthSettings::random_secret(), true),
        };

        let admin = match (lookup(ENV_ADMIN_EMAIL), lookup(ENV_ADMIN_PASSWORD)) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::AdminIncomplete {
                    set: ENV_ADMIN_EMAIL,
                    missing: ENV_ADMIN_PASSWORD,
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::AdminIncomplete {
                    set: ENV_ADMIN_PASSWORD,
                    missing: ENV_ADMIN_EMAIL,
                });
            }
            (Some(email), Some(password)) => {
                if !PASSWORD_CHARS.contains(&password.chars().count()) {
                    return Err(ConfigError::AdminPasswordLength);
                }
                Some(AdminAccount { email, password })
            }
        };

        Ok(Config {
            bind,
            database_url,
            queue,
            jwt_secret,
            jwt_secret_generated,
            jwt_ttl,
            admin,
        })
    }

    /// The authentication settings: this secret and token lifetime, default password-hash cost.
    pub fn auth_settings(&self) -> Result<AuthSettings, ConfigError> {
        Ok(AuthSettings::new(self.jwt_secret.clone(), self.jwt_ttl)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://evently.db");
        assert_eq!(c.jwt_ttl, Duration::from_secs(3600));
        assert!(c.jwt_secret_generated);
        assert_eq!(c.jwt_secret.len(), 64);
        assert!(c.admin.is_none());
        c.auth_settings().unwrap();
        assert_ne!(from(&[]).unwrap().jwt_secret, c.jwt_secret, "random");
    }

    #[test]
    fn postgres_and_redis_queue() {
        let c = from(&[
            (
                ENV_DATABASE_URL,
                "postgres://evently:s3cret@db.internal:5432/evently",
            ),
            (ENV_QUEUE, "redis"),
        ])
        .unwrap();
        assert_eq!(c.queue, QueueKind::Redis);
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("evently:***@db.internal:5432/evently"),
            "{printed}"
        );
        assert_eq!(from(&[]).unwrap().queue, QueueKind::Store);
        assert_eq!(
            redact_password("postgresql://u@h/d"),
            "postgresql://u@h/d",
            "no password, nothing to hide"
        );
    }

    #[test]
    fn explicit_values() {
        let secret = "0123456789abcdef0123456789abcdef";
        let c = from(&[
            (ENV_BIND, "0.0.0.0:9999"),
            (ENV_DATABASE_URL, "sqlite:///tmp/x.db"),
            (ENV_JWT_SECRET, secret),
            (ENV_JWT_TTL_SECS, "60"),
            (ENV_ADMIN_EMAIL, "root@example.com"),
            (ENV_ADMIN_PASSWORD, "very secret"),
        ])
        .unwrap();
        assert_eq!(c.bind.port(), 9999);
        assert_eq!(c.jwt_secret, secret.as_bytes());
        assert!(!c.jwt_secret_generated);
        assert_eq!(c.jwt_ttl, Duration::from_secs(60));
        assert_eq!(c.admin.as_ref().unwrap().email, "root@example.com");
        let printed = format!("{c:?}");
        assert!(!printed.contains(secret) && !printed.contains("very secret"));
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(
            from(&[(ENV_BIND, "localhost")]),
            Err(ConfigError::InvalidValue { var: ENV_BIND, .. })
        ));
        for url in ["mysql://x", "postgres://", "sqlite:", "evently.db"] {
            assert!(
                matches!(
                    from(&[(ENV_DATABASE_URL, url)]),
                    Err(ConfigError::InvalidValue {
                        var: ENV_DATABASE_URL,
                        ..
                    })
                ),
                "{url}"
            );
        }
        assert!(matches!(
            from(&[(ENV_QUEUE, "rabbitmq")]),
            Err(ConfigError::InvalidValue { var: ENV_QUEUE, .. })
        ));
        for ttl in ["0", "-5", "1h", "99999999999"] {
            assert!(
                matches!(
                    from(&[(ENV_JWT_TTL_SECS, ttl)]),
                    Err(ConfigError::InvalidValue {
                        var: ENV_JWT_TTL_SECS,
                        ..
                    })
                ),
                "{ttl}"
            );
        }
        let short = from(&[(ENV_JWT_SECRET, "hunter2")]).unwrap_err();
        assert!(matches!(
            short,
            ConfigError::JwtSecretTooShort { len: 7, .. }
        ));
        assert!(!short.to_string().contains("hunter2"));
        assert!(matches!(
            from(&[(ENV_ADMIN_EMAIL, "a@b.c")]),
            Err(ConfigError::AdminIncomplete {
                missing: ENV_ADMIN_PASSWORD,
                ..
            })
        ));
        assert!(matches!(
            from(&[(ENV_ADMIN_PASSWORD, "12345678")]),
            Err(ConfigError::AdminIncomplete {
                missing: ENV_ADMIN_EMAIL,
                ..
            })
        ));
        assert!(matches!(
            from(&[(ENV_ADMIN_EMAIL, "a@b.c"), (ENV_ADMIN_PASSWORD, "short")]),
            Err(ConfigError::AdminPasswordLength)
        ));
    }
}
