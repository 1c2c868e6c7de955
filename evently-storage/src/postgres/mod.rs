//! The PostgreSQL store.
//!
//! # Design
//!
//! - **Seat accounting across processes.** [`LockMode::ForUpdate`](evently_core::LockMode) is
//!   `SELECT … FOR UPDATE`: the event's row lock is held until the transaction ends, in the same
//!   transaction as the booking insert and the counter update, so any number of engine processes
//!   sharing the database never oversell. Write transactions run at READ COMMITTED, so the row a
//!   waiter gets once the lock is free is the one the previous holder committed, and every later
//!   statement sees that holder's bookings. The `events_seats_within_capacity` CHECK is the last line
//!   of defence.
//! - **Read transactions** ([`Store::begin_read`]) run `REPEATABLE READ READ ONLY`: one snapshot
//!   for all their statements, no locks, never a serialization failure.
//! - **Everything is bounded in time.** The pool waits at most
//!   [`PostgresConfig::acquire_timeout`] for a connection; every connection runs with the server-side
//!   `statement_timeout` (which also bounds lock waits) and an `idle_in_transaction_session_timeout`
//!   of twice that, so a stuck client cannot hold an event's lock for long; and the client gives up on
//!   any round trip a second after the statement timeout, closing that connection.
//! - **Rollback on drop.** A transaction dropped without commit queues a `ROLLBACK`, which the pool
//!   sends before the connection is reused. Connections in an unknown state are closed: one whose
//!   `BEGIN` was not acknowledged (its caller went away, or it failed), one whose statement did not
//!   answer in time. A pooled connection the server closed while it was idle is found by its
//!   `BEGIN` and replaced there, so a transaction is not failed for it.
//! - **No connection is reused inside a transaction.** As a last line of defence, every connection
//!   handed back to the pool is checked; one still inside a transaction, or in an aborted one, is
//!   closed, counted ([`PostgresStore::connections_discarded`]) and logged once.
//! - **Errors** are classified in one place (`error.rs`): constraint violations carry the schema's
//!   constraint names; serialization failures, deadlocks and connections lost before `COMMIT` are
//!   [`StoreError::Transient`] (the engine retries the whole transaction with bounded backoff); a lost
//!   `COMMIT`, a statement timeout or an exhausted pool are [`StoreError::Unavailable`].
//! - **Schema.** Migrations in `migrations/postgres` are embedded and applied at open (unless
//!   [`PostgresConfig::run_migrations`] is off) or by [`PostgresStore::migrate`]; sqlx takes an
//!   advisory lock, so processes starting together apply them once. Native types throughout: uuid,
//!   timestamptz, bigint, jsonb, text with CHECKs.
//! - **Change sets.** `Transaction::apply` sends what a booking writes (booking, ticket,
//!   notification and job inserts; event, booking and waitlist updates) as one statement, so a
//!   batch of bookings under one event lock costs one round trip for all its writes.
//! - **Job queue.** Claims are one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)` statement.

mod batch;
mod codec;
mod config;
mod error;
mod jobs;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evently_core::{JobQueue, Store, StoreError, Transaction};
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

pub use self::config::{PostgresConfig, PostgresConfigError, env};
use self::error::{Phase, classify, classify_migrate, timed_out};
use self::tx::{Access, PgTx};

type R<T> = Result<T, StoreError>;

/// The schema migrations (`migrations/postgres`), embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// How much longer than the server's statement timeout the client waits for an answer.
const CLIENT_MARGIN: Duration = Duration::from_secs(1);

/// The PostgreSQL store. Clones share the same pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use evently_storage::{PostgresConfig, PostgresStore};
///
/// let store = PostgresStore::open(PostgresConfig::from_env()?).await?;
/// let engine = evently_core::Evently::builder().store(Arc::new(store)).build()?;
/// # drop(engine);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Client-side bound on one round trip.
    deadline: Duration,
    /// Concurrent job completions, sent as one statement.
    completions: Arc<crate::group_commit::Batcher<uuid::Uuid>>,
    /// Concurrent enqueues, sent as one statement.
    enqueues: Arc<crate::group_commit::Batcher<jobs::Enqueued, R<i64>>>,
    /// Connections the pool closed because they came back inside a transaction.
    discards: Arc<crate::pool_guard::Discards>,
    /// A test database dropped with the last clone of the store (declared last: dropped after the pool).
    #[cfg(feature = "testing")]
    test_database: Option<Arc<testing::TestDatabase>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opts = self.pool.connect_options();
        f.debug_struct("PostgresStore")
            .field("host", &opts.get_host())
            .field("port", &opts.get_port())
            .field("database", &opts.get_database())
            .field(
                "max_connections",
                &self.pool.options().get_max_connections(),
            )
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `config.url` (opening `config.min_connections` right away and at least one to check
    /// the server answers) and applies the migrations when `config.run_migrations` is set.
    ///
    /// Fails with [`StoreError::Backend`] for an invalid configuration or URL, and with
    /// [`StoreError::Unavailable`] when the server cannot be reached within `acquire_timeout`.
    #[tracing::instrument(name = "postgres_open", skip_all)]
    pub async fn open(config: PostgresConfig) -> R<PostgresStore> {
        config.validate().map_err(|e| StoreError::Backend {
            message: format!("invalid PostgreSQL configuration: {e}"),
        })?;
        let options = PgConnectOptions::from_str(&config.url).map_err(|e| StoreError::Backend {
            message: format!("invalid PostgreSQL URL: {e}"),
        })?;
        let statement_ms = config.statement_timeout.as_millis().max(1);
        let idle_ms = statement_ms.saturating_mul(2);
        let options = options.application_name("evently").options([
            ("statement_timeout", statement_ms.to_string()),
            ("idle_in_transaction_session_timeout", idle_ms.to_string()),
        ]);
        let discards = Arc::new(crate::pool_guard::Discards::new("postgres"));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            // A connection the server closed is found by its first statement, which fails
            // transiently, and the engine retries on another; pinging before every use would cost a
            // round trip per transaction.
            .test_before_acquire(false)
            .after_release({
                let discards = discards.clone();
                move |conn, _meta| Box::pin(clean_after_release(conn, discards.clone()))
            })
            .connect_lazy_with(options);
        let store = PostgresStore {
            pool,
            deadline: config.statement_timeout + CLIENT_MARGIN,
            completions: Arc::new(crate::group_commit::Batcher::new()),
            enqueues: Arc::new(crate::group_commit::Batcher::new()),
            discards,
            #[cfg(feature = "testing")]
            test_database: None,
        };
        store.ping_with(Phase::Acquire).await.map_err(|e| match e {
            StoreError::Transient { message } => StoreError::Unavailable { message },
            other => other,
        })?;
        if config.run_migrations {
            store.migrate().await?;
        }
        tracing::info!(backend = "postgres", store = ?store, "PostgreSQL store open");
        Ok(store)
    }

    /// Applies the embedded migrations that have not run yet. Safe to call from several processes at
    /// once: sqlx serialises them with an advisory lock.
    pub async fn migrate(&self) -> R<()> {
        // Migrations may take longer than one statement: bounded by the pool's own timeouts only.
        MIGRATOR.run(&self.pool).await.map_err(classify_migrate)?;
        tracing::debug!(backend = "postgres", "migrations applied");
        Ok(())
    }

    /// The connection pool, for queries of your own against the same database. End every
    /// transaction you open on it: a connection handed back inside one is closed, not reused, and
    /// counted in [`PostgresStore::connections_discarded`].
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many connections this store's pool has closed because they came back inside a
    /// transaction or in an aborted one (also the metric `evently_pool_connections_discarded_total`,
    /// and a warning in the log the first time). The store's own code never hands one back so: a
    /// count above zero means a bug, or a transaction left open on [`PostgresStore::pool`].
    pub fn connections_discarded(&self) -> u64 {
        self.discards.count()
    }

    /// Closes every connection, waiting for transactions in progress to end. Later calls fail with
    /// [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn ping_with(&self, phase: Phase) -> R<()> {
        match tokio::time::timeout(self.deadline, sqlx::query("SELECT 1").execute(&self.pool)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(e, phase)),
            Err(_) => Err(timed_out("ping", phase)),
        }
    }

    async fn begin_with(&self, access: Access) -> R<Box<dyn Transaction>> {
        // Idle connections the server closed (a restart, `pg_terminate_backend`) are found by their
        // `BEGIN`, which has done nothing yet and fails transiently; each is discarded and another
        // taken, at most once per pooled connection, so the caller sees a dead pool only once.
        let mut attempts_left = self.pool.options().get_max_connections() + 1;
        loop {
            let conn = self
                .pool
                .acquire()
                .await
                .map_err(|e| classify(e, Phase::Acquire))?;
            match PgTx::begin(conn, access, self.deadline).await {
                Ok(tx) => return Ok(Box::new(tx)),
                Err(e @ StoreError::Transient { .. }) if attempts_left > 1 => {
                    attempts_left -= 1;
                    tracing::debug!(backend = "postgres", error = %e, "BEGIN on a dead connection; taking another");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Run when a connection goes back to the pool, after its user is done with it: a connection still
/// inside a transaction, or in an aborted one, is closed rather than reused (see `pool_guard.rs`).
/// A `ROLLBACK` that a dropped transaction queued is sent first.
///
/// One simple-protocol statement tells the state: outside a transaction block each statement runs in
/// a transaction of its own, which PostgreSQL starts at the statement's own start time, so
/// `transaction_timestamp()` equals `statement_timestamp()`; inside a block the transaction began
/// with an earlier statement (at least the round trip of its answer earlier). In an aborted block the
/// statement itself fails. It costs one round trip per release, in the background task that hands
/// the connection back (docs/benchmarks.md has the figures).
async fn clean_after_release(
    conn: &mut PgConnection,
    discards: Arc<crate::pool_guard::Discards>,
) -> Result<bool, sqlx::Error> {
    use sqlx::Executor;
    let row = conn
        .fetch_one("SELECT transaction_timestamp() = statement_timestamp()")
        .await;
    match row {
        Ok(row) => match row.try_get::<bool, _>(0) {
            Ok(true) => Ok(true),
            Ok(false) => {
                discards.record("inside a transaction");
                Ok(false)
            }
            Err(e) => Err(e),
        },
        Err(e) if self::error::is_connection_loss(&e) => Err(e),
        Err(_) => {
            discards.record("in an aborted transaction");
            Ok(false)
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(&self) -> R<Box<dyn Transaction>> {
        self.begin_with(Access::Write).await
    }

    async fn begin_read(&self) -> R<Box<dyn Transaction>> {
        self.begin_with(Access::Read).await
    }

    fn job_queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.clone())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> R<()> {
        self.ping_with(Phase::Statement).await
    }
}
