//! The embedded default store: one SQLite file in WAL mode.
//!
//! # Design
//!
//! - **One writer.** Every [`Store::begin`](evently_core::Store::begin) transaction runs on the single connection of the writer
//!   pool and starts with `BEGIN IMMEDIATE`, so it holds SQLite's write lock from its first statement.
//!   Concurrent writers of this process queue on the pool (up to its 30 s acquire timeout) instead of
//!   failing with `SQLITE_BUSY`; writers in other processes wait up to
//!   [`SqliteConfig::busy_timeout`](crate::sqlite::SqliteConfig::busy_timeout). Holding the write lock for the whole transaction is also what
//!   makes [`LockMode::ForUpdate`](evently_core::LockMode) hold: no other transaction can change an
//!   event until the one that read it ends.
//! - **Many readers.** [`Store::begin_read`](evently_core::Store::begin_read) transactions run on a separate pool of
//!   [`SqliteConfig::max_readers`](crate::sqlite::SqliteConfig::max_readers) connections with a deferred `BEGIN` (`query_only` is on): in WAL
//!   mode each sees a consistent snapshot and neither blocks nor waits for the writer.
//!   A memory database (`sqlite::memory:`, `?mode=memory`) cannot be shared that way, so there
//!   reads use the writer connection too; prefer [`SqliteStore::open_in_memory`](crate::sqlite::SqliteStore::open_in_memory) for a throwaway store.
//! - **Rollback on drop.** A transaction dropped without commit is rolled back before its connection
//!   is reused, also one whose `BEGIN` was cut short (its caller went away). A connection that is
//!   somehow still inside a transaction when it is released is closed and counted
//!   ([`SqliteStore::connections_discarded`](crate::sqlite::SqliteStore::connections_discarded)).
//! - **Schema.** Migrations in `migrations/sqlite` are embedded and applied at open. Identifiers are
//!   hyphenated UUID text, timestamps INTEGER microseconds since the Unix epoch (so values round-trip
//!   at microsecond precision), money an INTEGER of minor units plus a currency code.
//! - **Errors** are classified in one place (`error.rs`): constraint violations carry the schema's
//!   constraint names, a busy or locked database is [`StoreError::Transient`](evently_core::StoreError::Transient), an unreachable one
//!   [`StoreError::Unavailable`](evently_core::StoreError::Unavailable), undecodable stored values [`StoreError::Corrupt`](evently_core::StoreError::Corrupt).

mod codec;
mod error;
mod jobs;
mod tx;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evently_core::{JobQueue, Store, StoreError, Transaction};
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use self::error::{classify, classify_migrate};
use self::tx::Access;

type R<T> = Result<T, StoreError>;

/// The schema migrations, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// A sqlx SQLite URL such as `sqlite://evently.db` or `sqlite:///var/lib/evently/evently.db`.
    /// The file is created if it is missing.
    pub url: String,
    /// Connections serving read-only transactions ([`Store::begin_read`]); at least 1.
    pub max_readers: u32,
    /// How long a statement waits for a lock held by another process before failing transiently.
    pub busy_timeout: Duration,
    /// Apply the embedded migrations when opening.
    pub run_migrations: bool,
}

impl SqliteConfig {
    /// A configuration for `url` with the defaults: 4 readers, 5 s busy timeout, migrations on.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_readers: 4,
            busy_timeout: Duration::from_secs(5),
            run_migrations: true,
        }
    }
}

impl Default for SqliteConfig {
    /// `sqlite://evently.db` (in the working directory) with the defaults of [`SqliteConfig::new`].
    fn default() -> Self {
        Self::new("sqlite://evently.db")
    }
}

/// A database file that exists only as long as the store that created it.
#[derive(Debug)]
struct EphemeralFile {
    path: PathBuf,
}

impl Drop for EphemeralFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            // Missing side files are normal; on Unix open connections keep the unlinked data alive.
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// The SQLite store. Clones share the same connections.
///
/// ```
/// # async fn demo() -> Result<(), evently_core::StoreError> {
/// use std::sync::Arc;
/// use evently_storage::{SqliteConfig, SqliteStore};
///
/// let dir = std::env::temp_dir().join(format!("evently-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let url = format!("sqlite://{}", dir.join("evently.db").display());
/// let store = SqliteStore::open(SqliteConfig::new(url)).await?;
/// let engine = evently_core::Evently::builder().store(Arc::new(store)).build().unwrap();
/// # drop(engine);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Connections the pools closed because they came back inside a transaction.
    discards: Arc<crate::pool_guard::Discards>,
    // Declared last: removed after the pools are dropped.
    _ephemeral: Option<Arc<EphemeralFile>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("file", &self.writer.connect_options().get_filename())
            .field("readers", &self.readers.options().get_max_connections())
            .field("ephemeral", &self._ephemeral.is_some())
            .finish()
    }
}

/// Run when a connection goes back to its pool. sqlx has already queued the `ROLLBACK` of a dropped
/// transaction; the ping waits for it. A connection still inside a transaction after that (the
/// rollback failed, or a cancelled `BEGIN` that sqlx counted but nobody holds) is closed rather than
/// reused, and counted (see `pool_guard.rs`).
async fn release_check(
    conn: &mut SqliteConnection,
    discards: Arc<crate::pool_guard::Discards>,
) -> Result<bool, sqlx::Error> {
    conn.ping().await?;
    let clean = !conn.is_in_transaction();
    if !clean {
        discards.record("inside a transaction");
    }
    Ok(clean)
}

fn checked_on_release(
    options: SqlitePoolOptions,
    discards: &Arc<crate::pool_guard::Discards>,
) -> SqlitePoolOptions {
    let discards = discards.clone();
    options.after_release(move |conn, _meta: PoolConnectionMetadata| {
        Box::pin(release_check(conn, discards.clone()))
    })
}

/// True for URLs of an SQLite memory database (`sqlite::memory:`, `...?mode=memory`).
fn is_memory_url(url: &str) -> bool {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|kv| kv == "mode=memory")
}

async fn migrate(writer: &SqlitePool) -> R<()> {
    MIGRATOR.run(writer).await.map_err(classify_migrate)?;
    tracing::debug!(backend = "sqlite", "migrations applied");
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `config.url` and applies the migrations when
    /// `config.run_migrations` is set.
    #[tracing::instrument(name = "sqlite_open", skip_all, fields(url = %config.url))]
    pub async fn open(config: SqliteConfig) -> R<SqliteStore> {
        if !config.url.starts_with("sqlite:") {
            return Err(StoreError::Backend {
                message: format!(
                    "invalid SQLite URL {:?}: expected sqlite://<path> or sqlite:<path>",
                    config.url
                ),
            });
        }
        let options =
            SqliteConnectOptions::from_str(&config.url).map_err(|e| StoreError::Backend {
                message: format!("invalid SQLite URL {:?}: {e}", config.url),
            })?;
        let shared_memory = is_memory_url(&config.url);
        Self::connect(options, &config, None, shared_memory).await
    }

    /// Opens a new, empty, private database that disappears when the last clone of the store is
    /// dropped. Migrations are applied.
    ///
    /// It is a file in the system's temporary directory rather than an SQLite `:memory:` database:
    /// a memory database shared between connections needs SQLite's shared-cache mode, whose
    /// table-level locks make readers wait for (and deadlock with) the writer. A temporary file in WAL
    /// mode behaves exactly like [`SqliteStore::open`] does in production.
    pub async fn open_in_memory() -> R<SqliteStore> {
        let path = std::env::temp_dir().join(format!("evently-{}.sqlite3", uuid::Uuid::new_v4()));
        let ephemeral = Arc::new(EphemeralFile { path: path.clone() });
        let config = SqliteConfig::new(format!("sqlite://{}", path.display()));
        let options = SqliteConnectOptions::new().filename(&path);
        Self::connect(options, &config, Some(ephemeral), false).await
    }

    async fn connect(
        options: SqliteConnectOptions,
        config: &SqliteConfig,
        ephemeral: Option<Arc<EphemeralFile>>,
        memory: bool,
    ) -> R<SqliteStore> {
        if config.max_readers == 0 {
            return Err(StoreError::Backend {
                message: "invalid SQLite configuration: max_readers must be at least 1".into(),
            });
        }
        let options = options.foreign_keys(true).busy_timeout(config.busy_timeout);
        let discards = Arc::new(crate::pool_guard::Discards::new("sqlite"));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false);
        let writer = checked_on_release(writer, &discards)
            .connect_with(
                options
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal),
            )
            .await
            .map_err(classify)?;
        if config.run_migrations {
            migrate(&writer).await?;
        }
        // Readers open only once the file and its schema exist. A memory database has no file that
        // other connections could share without shared-cache locking: its reads use the writer.
        let readers = if memory {
            writer.clone()
        } else {
            let readers = SqlitePoolOptions::new()
                .max_connections(config.max_readers)
                .test_before_acquire(false);
            checked_on_release(readers, &discards)
                .connect_with(options.create_if_missing(false).pragma("query_only", "ON"))
                .await
                .map_err(classify)?
        };
        let store = SqliteStore {
            writer,
            readers,
            discards,
            _ephemeral: ephemeral,
        };
        tracing::info!(backend = "sqlite", file = ?store.writer.connect_options().get_filename(), readers = config.max_readers, "SQLite store open");
        Ok(store)
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> R<()> {
        migrate(&self.writer).await
    }

    /// How many connections this store's pools have closed because they came back inside a
    /// transaction (also the metric `evently_pool_connections_discarded_total`, and a warning in the
    /// log the first time). The store's own code hands one back so only when SQLite could not roll a
    /// failed transaction back (after an I/O error or a full disk): any other count is a bug.
    pub fn connections_discarded(&self) -> u64 {
        self.discards.count()
    }

    /// Closes every connection, waiting for transactions in progress to end. Later calls fail with
    /// [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin(&self) -> R<Box<dyn Transaction>> {
        let tx = tx::begin(&self.writer, Some("BEGIN IMMEDIATE"), Access::Write)
            .await
            .map_err(classify)?;
        Ok(Box::new(tx))
    }

    async fn begin_read(&self) -> R<Box<dyn Transaction>> {
        let tx = tx::begin(&self.readers, None, Access::Read)
            .await
            .map_err(classify)?;
        Ok(Box::new(tx))
    }

    fn job_queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.clone())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> R<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
