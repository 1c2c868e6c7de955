//! Opening what a [`Config`] names: the store (SQLite or PostgreSQL) and, with
//! `EVENTLY_QUEUE=redis`, a Redis work queue. The `evently` server and the `evently-worker` binary both
//! start from here, so they always agree on where data and jobs live.
//!
//! ```no_run
//! use evently_http::Config;
//! use evently_http::backend::Backend;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_env()?;
//! let backend = Backend::open(&config).await?;
//! // Your own assembly ...
//! let engine = backend.engine_builder().build()?;
//! // ... or the binaries' (e-mail and web push from the environment).
//! let engine = backend.engine_from_env(&Default::default())?.engine;
//! // ... serve, or run a worker ...
//! # drop(engine);
//! backend.close().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use evently_core::{Evently, EventlyBuilder, JobQueue, Store, StoreError};
use evently_storage::postgres::PostgresConfigError;
use evently_storage::redis::{RedisConfig, RedisConnection, RedisError};
use evently_storage::{PostgresConfig, PostgresStore, RedisJobQueue, SqliteConfig, SqliteStore};

use crate::config::{Config, ConfigError, QueueKind, redact_password};
use crate::notify::{EmailConfig, EmailNotifier, PushConfig, PushNotifier};
use crate::worker::WorkerConfig;

/// The name of the Redis job queue (its keys sit under `<EVENTLY_REDIS_KEY_PREFIX>queue:jobs:`).
pub const REDIS_QUEUE_NAME: &str = "jobs";

/// Why the store or the queue could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The SQLite database could not be opened or migrated.
    #[error("opening the SQLite database {url}: {source}")]
    Sqlite {
        /// The database URL.
        url: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The PostgreSQL settings (`EVENTLY_DATABASE_*`) are invalid.
    #[error("the PostgreSQL configuration is invalid: {0}")]
    PostgresConfig(#[from] PostgresConfigError),
    /// The PostgreSQL database could not be reached or migrated.
    #[error("opening the PostgreSQL database {url}: {source}")]
    Postgres {
        /// The database URL, password hidden.
        url: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The Redis settings are invalid, or Redis does not answer.
    #[error("the Redis job queue: {0}")]
    Redis(#[from] RedisError),
    /// A notifier's settings (mail, web push) are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine refused its settings.
    #[error("building the engine: {0}")]
    Engine(#[from] evently_core::Error),
}

/// What [`Backend::engine_from_env`] built.
#[derive(Debug)]
pub struct EnvEngine {
    /// The engine, with its notifiers.
    pub engine: Evently,
    /// The web push settings, when push is on (the server serves its public key).
    pub push: Option<PushConfig>,
}

enum Handle {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// The opened store and work queue. Close it when done, so connections end cleanly.
pub struct Backend {
    store: Arc<dyn Store>,
    queue: Option<Arc<dyn JobQueue>>,
    handle: Handle,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("store", &self.store.backend())
            .field(
                "queue",
                &self.queue.as_ref().map(|q| q.queue_name().to_owned()),
            )
            .finish()
    }
}

impl Backend {
    /// Opens the database of `config.database_url` (applying migrations; PostgreSQL pool settings from
    /// `EVENTLY_DATABASE_*`) and, for [`QueueKind::Redis`], connects to the Redis of
    /// `EVENTLY_REDIS_URL` (checked with a PING, so a wrong URL fails here, not at the first job).
    pub async fn open(config: &Config) -> Result<Self, BackendError> {
        let url = &config.database_url;
        let (store, handle): (Arc<dyn Store>, Handle) = if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
        {
            let mut pg = PostgresConfig::from_env()?;
            pg.url = url.clone();
            let store = PostgresStore::open(pg)
                .await
                .map_err(|source| BackendError::Postgres {
                    url: redact_password(url),
                    source,
                })?;
            (Arc::new(store.clone()), Handle::Postgres(store))
        } else {
            let store = SqliteStore::open(SqliteConfig::new(url.clone()))
                .await
                .map_err(|source| BackendError::Sqlite {
                    url: url.clone(),
                    source,
                })?;
            (Arc::new(store.clone()), Handle::Sqlite(store))
        };
        let queue: Option<Arc<dyn JobQueue>> = match config.queue {
            QueueKind::Store => None,
            QueueKind::Redis => {
                let redis = RedisConnection::new(RedisConfig::from_env()?)?;
                redis.ping().await?;
                Some(Arc::new(RedisJobQueue::new(redis, REDIS_QUEUE_NAME)?))
            }
        };
        Ok(Self {
            store,
            queue,
            handle,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The separate work queue, if the configuration names one.
    pub fn queue(&self) -> Option<&Arc<dyn JobQueue>> {
        self.queue.as_ref()
    }

    /// An engine builder with the store and work queue set; add notifiers and policies, then build.
    pub fn engine_builder(&self) -> EventlyBuilder {
        let builder = evently_core::Evently::builder().store(Arc::clone(&self.store));
        match &self.queue {
            Some(q) => builder.queue(Arc::clone(q)),
            None => builder,
        }
    }

    /// The engine the `evently` server and `evently-worker` run: this backend's store and queue, the
    /// job lease of `worker`, and the notifiers the environment configures: e-mail always
    /// ([`EmailConfig::from_env`]: SMTP, or `.eml` files by default), web push when
    /// `EVENTLY_VAPID_PRIVATE_KEY` and `EVENTLY_VAPID_SUBJECT` are set ([`PushConfig::from_env`]).
    pub fn engine_from_env(&self, worker: &WorkerConfig) -> Result<EnvEngine, BackendError> {
        let mail = EmailConfig::from_env()?;
        let push = PushConfig::from_env()?;
        let email = EmailNotifier::from_config(&mail)?;
        tracing::info!(mail = ?mail, "e-mail notifications on");
        let mut builder = self
            .engine_builder()
            .config(worker.engine_config())
            .notifier(Arc::new(email));
        match &push {
            Some(push) => {
                builder = builder.notifier(Arc::new(PushNotifier::new(push)?));
                tracing::info!(public_key = %push.keys.public_key_base64url(), subject = %push.subject, "web push on");
            }
            None => tracing::info!(
                "web push off: set EVENTLY_VAPID_PRIVATE_KEY and EVENTLY_VAPID_SUBJECT to turn it on"
            ),
        }
        Ok(EnvEngine {
            engine: builder.build()?,
            push,
        })
    }

    /// Closes the database connections.
    pub async fn close(self) {
        match self.handle {
            Handle::Sqlite(s) => s.close().await,
            Handle::Postgres(s) => s.close().await,
        }
    }
}
