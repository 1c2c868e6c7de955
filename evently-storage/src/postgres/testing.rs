//! Throw-away databases for tests (feature `testing`), in the spirit of `#[sqlx::test]`: each test
//! gets a database of its own, so PostgreSQL tests run in parallel, and the database is dropped when
//! the test is done with it.
//!
//! The server is the one at [`TEST_URL_ENV`] (default [`DEFAULT_TEST_URL`]); its user must be
//! allowed to create databases. An unreachable server is an error, never a skipped test.
//!
//! ```no_run
//! # async fn demo() -> Result<(), evently_core::StoreError> {
//! use std::sync::Arc;
//! // A migrated store on a new database `evently_t_…`, dropped with the last clone of the store.
//! let store = evently_storage::postgres::testing::fresh_store().await?;
//! let engine = evently_core::Evently::builder().store(Arc::new(store)).build().unwrap();
//! # drop(engine);
//! # Ok(()) }
//! ```

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use evently_core::StoreError;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::error::{Phase, classify};
use super::{PostgresConfig, PostgresStore};

/// The variable naming the server tests use: a URL of a database on it that the user may connect to
/// (the maintenance database `postgres` will do).
pub const TEST_URL_ENV: &str = "EVENTLY_TEST_PG_URL";
/// The URL used when [`TEST_URL_ENV`] is not set.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Every test database's name starts with this.
pub const DATABASE_PREFIX: &str = "evently_t_";

type R<T> = Result<T, StoreError>;

/// The server URL tests use: [`TEST_URL_ENV`], or [`DEFAULT_TEST_URL`].
pub fn admin_url() -> String {
    std::env::var(TEST_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_URL.to_string())
}

/// `url` with its database replaced by `database` (query parameters are kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database created for one test, dropped (with `DROP DATABASE … WITH (FORCE)`, which also ends
/// connections still open to it) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database `evently_t_<pid>_<random>` on the server at [`admin_url`]. Databases
    /// left behind by test processes that no longer run (killed before they could drop theirs) are
    /// dropped first.
    pub async fn create() -> R<TestDatabase> {
        Self::create_on(&admin_url()).await
    }

    /// Like [`TestDatabase::create`], on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> R<TestDatabase> {
        let mut admin = connect(admin_url).await?;
        sweep_orphans(&mut admin).await;
        let name = format!(
            "{DATABASE_PREFIX}{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .map_err(|e| classify(e, Phase::Statement))?;
        let _ = admin.close().await;
        tracing::debug!(backend = "postgres", database = %name, "test database created");
        Ok(TestDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store configuration for the database with small pools (tests run in parallel against one
    /// server, whose `max_connections` is shared): 8 connections, migrations on.
    pub fn config(&self) -> PostgresConfig {
        let mut cfg = PostgresConfig::new(self.url.clone());
        cfg.max_connections = 8;
        cfg
    }

    /// Opens a store on the database with `config` (see [`TestDatabase::config`]).
    pub async fn open(&self, config: PostgresConfig) -> R<PostgresStore> {
        PostgresStore::open(config).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a helper thread with its own runtime works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut admin = connect(&admin_url).await.map_err(|e| e.to_string())?;
                let r = drop_database(&mut admin, &name).await;
                let _ = admin.close().await;
                r
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {
                tracing::debug!(backend = "postgres", database = %self.name, "test database dropped")
            }
            Ok(Err(e)) => {
                tracing::warn!(backend = "postgres", database = %self.name, error = %e, "could not drop test database")
            }
            Err(_) => {
                tracing::warn!(backend = "postgres", database = %self.name, "dropping the test database panicked")
            }
        }
    }
}

async fn connect(url: &str) -> R<PgConnection> {
    let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Backend {
        message: format!("invalid PostgreSQL URL {url:?}: {e}"),
    })?;
    match tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(match classify(e, Phase::Acquire) {
            StoreError::Backend { message } | StoreError::Unavailable { message } => {
                StoreError::Unavailable {
                    message: format!(
                        "cannot reach the test PostgreSQL server ({TEST_URL_ENV}={url}): {message}"
                    ),
                }
            }
            other => other,
        }),
        Err(_) => Err(StoreError::Unavailable {
            message: format!("the test PostgreSQL server ({url}) did not answer in 10 s"),
        }),
    }
}

async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<(), String> {
    // Names are ours (prefix, digits, hex), so quoting them is enough.
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(admin)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Drops test databases whose creating process (the pid in the name) no longer runs on this machine.
/// Best effort: another process may be sweeping at the same time.
async fn sweep_orphans(admin: &mut PgConnection) {
    let names: Vec<String> =
        match sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{DATABASE_PREFIX}%"))
            .fetch_all(&mut *admin)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
    for name in names {
        let Some(pid) = name
            .strip_prefix(DATABASE_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, rest)| {
                let ours = rest.len() == 32 && rest.chars().all(|c| c.is_ascii_hexdigit());
                pid.parse::<u32>().ok().filter(|_| ours)
            })
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if drop_database(admin, &name).await.is_ok() {
            tracing::debug!(backend = "postgres", database = %name, "dropped an orphaned test database");
        }
    }
}

/// A migrated store on a new test database, configured by [`TestDatabase::config`]. The database is
/// dropped when the last clone of the store is dropped.
pub async fn fresh_store() -> R<PostgresStore> {
    fresh_store_with(|_| {}).await
}

/// Like [`fresh_store`], with the configuration adjusted by `configure` first.
pub async fn fresh_store_with(configure: impl FnOnce(&mut PostgresConfig)) -> R<PostgresStore> {
    let db = TestDatabase::create().await?;
    let mut cfg = db.config();
    configure(&mut cfg);
    let mut store = db.open(cfg).await?;
    store.test_database = Some(Arc::new(db));
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h?application_name=a", "x"),
            "postgres://h/x?application_name=a"
        );
    }
}
