//! Redis adapters (feature `redis`): a read cache in front of any [`Store`](evently_core::Store)
//! ([`CachedStore`]), a distributed GCRA rate limiter ([`RateLimiter`]), a distributed lock with
//! fencing tokens ([`DistributedLock`]) and a job queue ([`RedisJobQueue`]).
//!
//! # When Redis is down
//!
//! Redis is never the source of truth for seats:
//!
//! - **Cache:** reads go to the store instead (the answer says so: [`Lookup::from_cache`] is false);
//!   writes still commit in the store, and the invalidations Redis could not take are kept and sent
//!   before this process trusts its cache again. Bookings never read the cache: the engine decides
//!   under the store's event lock.
//! - **Rate limiter:** answers by its [`FailMode`]: allow everything (`Open`) or refuse everything
//!   (`Closed`), and says the decision was taken without Redis ([`Decision::degraded`]).
//! - **Lock:** fails with [`RedisError::Unavailable`]; a lock cannot be granted without Redis.
//! - **Job queue:** calls fail with [`StoreError::Unavailable`](evently_core::StoreError::Unavailable);
//!   jobs written meanwhile wait in the store's outbox until the relay can hand them over.
//!
//! Every Redis call is bounded by [`RedisConfig::response_timeout`]; after a failed connection
//! attempt, calls fail fast for [`RedisConfig::retry_after`] instead of each waiting for a timeout.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use evently_storage::redis::{CachedStore, RedisConfig, RedisConnection};
//!
//! let redis = RedisConnection::new(RedisConfig::from_env()?)?;
//! let store = CachedStore::new(Arc::new(evently_storage::MemoryStore::new()), redis);
//! let engine = evently_core::Evently::builder().store(Arc::new(store.clone())).build()?;
//! # drop(engine);
//! # Ok(()) }
//! ```

mod cache;
mod lock;
pub mod queue;
mod rate_limit;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::RwLock;

pub use self::cache::{CacheConfig, CachedStore, Lookup};
pub use self::lock::{DistributedLock, FencingToken, LockGuard};
pub use self::queue::RedisJobQueue;
pub use self::rate_limit::{Decision, FailMode, RateLimit, RateLimiter};

/// What went wrong talking to Redis, or with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Redis cannot be reached, or did not answer in time.
    #[error("Redis is unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
    /// Redis answered with an error (a script error, a wrong type, …).
    #[error("Redis refused the command: {message}")]
    Command {
        /// Redis's answer.
        message: String,
    },
    /// The configuration is not usable.
    #[error("invalid Redis configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field or variable.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The lock is held by someone else.
    #[error("lock {name:?} is held by another owner")]
    LockBusy {
        /// The lock's name.
        name: String,
    },
    /// The lock expired (or was taken over) before this owner released or extended it: whatever it
    /// protected may have been changed by the next owner, whose fencing token is higher.
    #[error("lock {name:?} (fencing token {token}) was lost")]
    LockLost {
        /// The lock's name.
        name: String,
        /// The token this owner held.
        token: u64,
    },
}

impl RedisError {
    fn from_redis(e: redis::RedisError) -> RedisError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            RedisError::Unavailable {
                message: e.to_string(),
            }
        } else {
            RedisError::Command {
                message: e.to_string(),
            }
        }
    }
}

/// The environment variables [`RedisConfig::from_env`] reads.
pub mod env {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379/0` (required).
    pub const URL: &str = "EVENTLY_REDIS_URL";
    /// [`RedisConfig::key_prefix`](super::RedisConfig::key_prefix).
    pub const KEY_PREFIX: &str = "EVENTLY_REDIS_KEY_PREFIX";
    /// [`RedisConfig::response_timeout`](super::RedisConfig::response_timeout), in milliseconds.
    pub const TIMEOUT_MS: &str = "EVENTLY_REDIS_TIMEOUT_MS";
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prepended to every key (default `evently:`), so several deployments or tests share a server.
    pub key_prefix: String,
    /// Longest wait for a connection to open (default 500 ms).
    pub connect_timeout: Duration,
    /// Longest wait for any answer (default 500 ms); a call that takes longer fails with
    /// [`RedisError::Unavailable`].
    pub response_timeout: Duration,
    /// After a failed connection attempt, how long calls fail at once before the next attempt
    /// (default 1 s).
    pub retry_after: Duration,
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "evently:".into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
            retry_after: Duration::from_secs(1),
        }
    }

    /// Reads [`env::URL`] (required), [`env::KEY_PREFIX`] and [`env::TIMEOUT_MS`] (which sets both
    /// timeouts).
    pub fn from_env() -> Result<Self, RedisError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`RedisConfig::from_env`], through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RedisError> {
        let url =
            lookup(env::URL)
                .filter(|u| !u.trim().is_empty())
                .ok_or(RedisError::InvalidConfig {
                    field: env::URL,
                    reason: "is not set".into(),
                })?;
        let mut cfg = Self::new(url);
        if let Some(p) = lookup(env::KEY_PREFIX) {
            cfg.key_prefix = p;
        }
        if let Some(v) = lookup(env::TIMEOUT_MS) {
            let ms: u64 = v.trim().parse().map_err(|_| RedisError::InvalidConfig {
                field: env::TIMEOUT_MS,
                reason: format!("{v:?} is not a number of milliseconds"),
            })?;
            cfg.connect_timeout = Duration::from_millis(ms);
            cfg.response_timeout = Duration::from_millis(ms);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the URL scheme and that the timeouts are 1 ms to 1 min.
    pub fn validate(&self) -> Result<(), RedisError> {
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(RedisError::InvalidConfig {
                field: "url",
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("retry_after", self.retry_after),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
                return Err(RedisError::InvalidConfig {
                    field,
                    reason: format!("{d:?} is not within 1 ms to 1 min"),
                });
            }
        }
        Ok(())
    }
}

/// A shared, lazily opened, self-healing connection to Redis. Cheap to clone.
///
/// Creating one does not contact Redis: the first call connects, so a service starts while Redis
/// is down and uses it once it is back.
#[derive(Clone)]
pub struct RedisConnection {
    inner: std::sync::Arc<ConnInner>,
}

struct ConnInner {
    client: redis::Client,
    config: RedisConfig,
    manager: RwLock<Option<ConnectionManager>>,
    /// No connection attempt before this instant (set after a failed one).
    backoff_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("addr", &self.inner.client.get_connection_info().addr)
            .field("key_prefix", &self.inner.config.key_prefix)
            .finish()
    }
}

impl RedisConnection {
    /// A connection for `config` (validated; nothing is sent yet).
    pub fn new(config: RedisConfig) -> Result<Self, RedisError> {
        config.validate()?;
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| RedisError::InvalidConfig {
                field: "url",
                reason: e.to_string(),
            })?;
        Ok(Self {
            inner: std::sync::Arc::new(ConnInner {
                client,
                config,
                manager: RwLock::new(None),
                backoff_until: Mutex::new(None),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// `key_prefix` + `suffix`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.inner.config.key_prefix)
    }

    /// Sends `PING`.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(m) = self.inner.manager.read().await.as_ref() {
            return Ok(m.clone());
        }
        let mut slot = self.inner.manager.write().await;
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        if let Some(until) = *self.lock_backoff()
            && Instant::now() < until
        {
            return Err(RedisError::Unavailable {
                message: "the last connection attempt failed; waiting before the next".into(),
            });
        }
        let cfg = &self.inner.config;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(cfg.connect_timeout)
            .set_response_timeout(cfg.response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(100);
        let made = tokio::time::timeout(
            cfg.connect_timeout + cfg.response_timeout,
            ConnectionManager::new_with_config(self.inner.client.clone(), mcfg),
        )
        .await;
        match made {
            Ok(Ok(m)) => {
                *self.lock_backoff() = None;
                *slot = Some(m.clone());
                Ok(m)
            }
            Ok(Err(e)) => {
                *self.lock_backoff() = Some(Instant::now() + cfg.retry_after);
                Err(RedisError::Unavailable {
                    message: format!("cannot connect: {e}"),
                })
            }
            Err(_) => {
                *self.lock_backoff() = Some(Instant::now() + cfg.retry_after);
                Err(RedisError::Unavailable {
                    message: format!("no connection within {:?}", cfg.connect_timeout),
                })
            }
        }
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.inner
            .backoff_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on a connection, bounded by the response timeout (plus the connection's own
    /// reconnection attempt).
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.manager().await?;
        let bound = self.inner.config.response_timeout + self.inner.config.connect_timeout;
        match tokio::time::timeout(bound, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisError::from_redis(e)),
            Err(_) => Err(RedisError::Unavailable {
                message: format!("no answer within {bound:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_lookup() {
        let c = RedisConfig::from_lookup(|k| match k {
            env::URL => Some("redis://127.0.0.1:6379".into()),
            env::TIMEOUT_MS => Some("250".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.response_timeout, Duration::from_millis(250));
        assert_eq!(c.key_prefix, "evently:");
        assert!(matches!(
            RedisConfig::from_lookup(|_| None),
            Err(RedisError::InvalidConfig { .. })
        ));
        assert!(matches!(
            RedisConfig::from_lookup(|k| (k == env::URL).then(|| "http://x".to_string())),
            Err(RedisError::InvalidConfig { field: "url", .. })
        ));
        assert!(matches!(
            RedisConfig::from_lookup(|k| match k {
                env::URL => Some("redis://h".into()),
                env::TIMEOUT_MS => Some("0".into()),
                _ => None,
            }),
            Err(RedisError::InvalidConfig { .. })
        ));
    }
}
