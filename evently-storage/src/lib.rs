//! # evently-storage
//!
//! Stores for the [`evently_core::Store`] port:
//!
//! - [`memory::MemoryStore`]: everything in process memory; for tests, benchmarks and embedding where
//!   nothing must survive a restart.
//! - `sqlite::SqliteStore` (feature `sqlite`, on by default): the embedded default, one file, WAL mode.
//! - `postgres::PostgresStore` (feature `postgres`): for several engine processes sharing one database.
//! - `redis` (feature `redis`): a read cache in front of any store, a GCRA rate limiter, a lock
//!   with fencing tokens and a job queue (`redis::RedisJobQueue`) to use as the engine's work queue.
//!
//! Every store passes the same conformance suite (the `evently-conformance` crate), which an
//! integrator can run against their own store too.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(any(feature = "redis", feature = "postgres"))]
mod group_commit;
pub mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod pool_guard;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_codec;
/// The embedded default store: one SQLite file in WAL mode, one writer, a pool of readers.
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use memory::MemoryStore;
/// The PostgreSQL store and how to open it.
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
/// The Redis job queue.
#[cfg(feature = "redis")]
pub use redis::RedisJobQueue;
/// The SQLite store and how to open it.
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteConfig, SqliteStore};
