//! [`PostgresConfig`]: how to reach the database and how long anything may take.

use std::fmt;
use std::time::Duration;

/// How to open a [`PostgresStore`](super::PostgresStore).
///
/// ```
/// use std::time::Duration;
/// use evently_storage::PostgresConfig;
///
/// let mut cfg = PostgresConfig::new("postgres://evently@127.0.0.1:5432/evently");
/// cfg.max_connections = 32;
/// cfg.statement_timeout = Duration::from_secs(2);
/// assert!(cfg.run_migrations);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq-style URL, e.g. `postgres://user:password@host:5432/database?sslmode=disable`.
    pub url: String,
    /// Most connections the pool opens (default 16). Every open transaction holds one.
    pub max_connections: u32,
    /// Connections kept open while idle (default 0).
    pub min_connections: u32,
    /// How long [`Store::begin`](evently_core::Store::begin) waits for a free connection before
    /// failing with [`StoreError::Unavailable`](evently_core::StoreError::Unavailable) (default 5 s).
    pub acquire_timeout: Duration,
    /// The server-side `statement_timeout` of every connection (default 5 s): no statement, including
    /// one waiting for a row lock, runs longer. The client also gives up on a statement whose answer
    /// has not arrived a second after this, and discards its connection.
    pub statement_timeout: Duration,
    /// Apply the embedded migrations (`migrations/postgres`) when opening (default true).
    pub run_migrations: bool,
}

/// The environment variables [`PostgresConfig::from_env`] reads.
pub mod env {
    /// The database URL (required).
    pub const URL: &str = "EVENTLY_DATABASE_URL";
    /// [`PostgresConfig::max_connections`](super::PostgresConfig::max_connections), an integer.
    pub const MAX_CONNECTIONS: &str = "EVENTLY_DATABASE_MAX_CONNECTIONS";
    /// [`PostgresConfig::min_connections`](super::PostgresConfig::min_connections), an integer.
    pub const MIN_CONNECTIONS: &str = "EVENTLY_DATABASE_MIN_CONNECTIONS";
    /// [`PostgresConfig::acquire_timeout`](super::PostgresConfig::acquire_timeout), in milliseconds.
    pub const ACQUIRE_TIMEOUT_MS: &str = "EVENTLY_DATABASE_ACQUIRE_TIMEOUT_MS";
    /// [`PostgresConfig::statement_timeout`](super::PostgresConfig::statement_timeout), in milliseconds.
    pub const STATEMENT_TIMEOUT_MS: &str = "EVENTLY_DATABASE_STATEMENT_TIMEOUT_MS";
    /// [`PostgresConfig::run_migrations`](super::PostgresConfig::run_migrations): `true`/`false`/`1`/`0`.
    pub const RUN_MIGRATIONS: &str = "EVENTLY_DATABASE_RUN_MIGRATIONS";
}

/// Why a [`PostgresConfig`] could not be read from the environment or is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostgresConfigError {
    /// A required variable is not set.
    Missing {
        /// The variable.
        var: &'static str,
    },
    /// A variable is set to something that does not parse.
    Invalid {
        /// The variable (or field).
        var: &'static str,
        /// What it was set to.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

impl fmt::Display for PostgresConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostgresConfigError::Missing { var } => write!(f, "{var} is not set"),
            PostgresConfigError::Invalid { var, value, reason } => {
                write!(f, "{var}={value:?} is not valid: {reason}")
            }
        }
    }
}

impl std::error::Error for PostgresConfigError {}

impl PostgresConfig {
    /// A configuration for `url` with the defaults: 16 connections at most, none kept idle, 5 s to
    /// acquire one, 5 s statement timeout, migrations applied at open.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            run_migrations: true,
        }
    }

    /// Reads the configuration from the process environment: [`env::URL`] (required) and the optional
    /// [`env::MAX_CONNECTIONS`], [`env::MIN_CONNECTIONS`], [`env::ACQUIRE_TIMEOUT_MS`],
    /// [`env::STATEMENT_TIMEOUT_MS`], [`env::RUN_MIGRATIONS`] and [`env::DEFER_WRITES`]; unset ones keep the defaults of
    /// [`PostgresConfig::new`]. The result is [validated](PostgresConfig::validate).
    pub fn from_env() -> Result<Self, PostgresConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`PostgresConfig::from_env`], reading variables through `lookup` (for tests and for
    /// configuration sources other than the environment).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PostgresConfigError> {
        let url = lookup(env::URL)
            .filter(|u| !u.trim().is_empty())
            .ok_or(PostgresConfigError::Missing { var: env::URL })?;
        let mut cfg = Self::new(url);
        if let Some(v) = lookup(env::MAX_CONNECTIONS) {
            cfg.max_connections = parse_u32(env::MAX_CONNECTIONS, &v)?;
        }
        if let Some(v) = lookup(env::MIN_CONNECTIONS) {
            cfg.min_connections = parse_u32(env::MIN_CONNECTIONS, &v)?;
        }
        if let Some(v) = lookup(env::ACQUIRE_TIMEOUT_MS) {
            cfg.acquire_timeout =
                Duration::from_millis(parse_u32(env::ACQUIRE_TIMEOUT_MS, &v)?.into());
        }
        if let Some(v) = lookup(env::STATEMENT_TIMEOUT_MS) {
            cfg.statement_timeout =
                Duration::from_millis(parse_u32(env::STATEMENT_TIMEOUT_MS, &v)?.into());
        }
        if let Some(v) = lookup(env::RUN_MIGRATIONS) {
            cfg.run_migrations = parse_bool(env::RUN_MIGRATIONS, v)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values fit together: a `postgres://` or `postgresql://` URL, at least one connection, no more kept idle
    /// than may be open, and timeouts of at least 1 ms and at most 24 h (PostgreSQL takes
    /// `statement_timeout` in whole milliseconds, and 0 would mean no limit).
    pub fn validate(&self) -> Result<(), PostgresConfigError> {
        let invalid =
            |var, value: String, reason| PostgresConfigError::Invalid { var, value, reason };
        if self.url.trim().is_empty() {
            return Err(PostgresConfigError::Missing { var: "url" });
        }
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(invalid(
                "url",
                redact(&self.url),
                "must start with postgres:// or postgresql://",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "0".into(), "must be at least 1"));
        }
        if self.min_connections > self.max_connections {
            return Err(invalid(
                "min_connections",
                self.min_connections.to_string(),
                "must not exceed max_connections",
            ));
        }
        for (var, d) in [
            ("acquire_timeout", self.acquire_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(24 * 3600) {
                return Err(invalid(var, format!("{d:?}"), "must be 1 ms to 24 h"));
            }
        }
        Ok(())
    }
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

fn parse_bool(var: &'static str, v: String) -> Result<bool, PostgresConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(PostgresConfigError::Invalid {
            var,
            value: v,
            reason: "expected true or false",
        }),
    }
}

fn parse_u32(var: &'static str, v: &str) -> Result<u32, PostgresConfigError> {
    v.trim().parse().map_err(|_| PostgresConfigError::Invalid {
        var,
        value: v.to_string(),
        reason: "expected a non-negative integer",
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_url_is_required() {
        assert_eq!(
            PostgresConfig::from_lookup(lookup(&[])),
            Err(PostgresConfigError::Missing { var: env::URL })
        );
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let cfg = PostgresConfig::from_lookup(lookup(&[(env::URL, "postgres://h/db")])).unwrap();
        assert_eq!(cfg, PostgresConfig::new("postgres://h/db"));
    }

    #[test]
    fn every_variable_is_read() {
        let cfg = PostgresConfig::from_lookup(lookup(&[
            (env::URL, "postgres://h/db"),
            (env::MAX_CONNECTIONS, "64"),
            (env::MIN_CONNECTIONS, "2"),
            (env::ACQUIRE_TIMEOUT_MS, "250"),
            (env::STATEMENT_TIMEOUT_MS, "1500"),
            (env::RUN_MIGRATIONS, "false"),
        ]))
        .unwrap();
        assert_eq!(cfg.max_connections, 64);
        assert_eq!(cfg.min_connections, 2);
        assert_eq!(cfg.acquire_timeout, Duration::from_millis(250));
        assert_eq!(cfg.statement_timeout, Duration::from_millis(1500));
        assert!(!cfg.run_migrations);
    }

    #[test]
    fn bad_values_are_typed_errors_naming_the_variable() {
        let err = PostgresConfig::from_lookup(lookup(&[
            (env::URL, "postgres://h/db"),
            (env::MAX_CONNECTIONS, "many"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, PostgresConfigError::Invalid { var, .. } if var == env::MAX_CONNECTIONS)
        );
        let err = PostgresConfig::from_lookup(lookup(&[
            (env::URL, "postgres://h/db"),
            (env::STATEMENT_TIMEOUT_MS, "0"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            PostgresConfigError::Invalid {
                var: "statement_timeout",
                ..
            }
        ));
        let err = PostgresConfig::from_lookup(lookup(&[
            (env::URL, "postgres://h/db"),
            (env::MIN_CONNECTIONS, "17"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            PostgresConfigError::Invalid {
                var: "min_connections",
                ..
            }
        ));
        let err = PostgresConfig::from_lookup(lookup(&[
            (env::URL, "postgres://h/db"),
            (env::RUN_MIGRATIONS, "maybe"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(env::RUN_MIGRATIONS));
        let err = PostgresConfig::from_lookup(lookup(&[(env::URL, "mysql://u:secret@h/db")]))
            .unwrap_err();
        assert!(matches!(
            err,
            PostgresConfigError::Invalid { var: "url", .. }
        ));
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
