//! # evently-storage
//!
//! Stores for the [`evently_core::Store`] port:
//!
//! - [`memory::MemoryStore`]: everything in process memory; for tests, benchmarks and embedding where
//!   nothing must survive a restart.
//! - `sqlite::SqliteStore` (feature `sqlite`, on by default): the embedded default, one file, WAL mode.
//!
//! Every store passes the same conformance suite ([`conformance`], feature `testing`), which an
//! integrator can run against their own store too.
#![warn(missing_docs)]

/// The conformance suite every store must pass: [`store_conformance_tests!`] and one public async fn per case.
#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
/// The PostgreSQL store: a connection pool, row locks for seat accounting, migrations in `migrations/postgres`.
#[cfg(feature = "postgres")]
pub mod postgres;
/// The embedded default store: one SQLite file in WAL mode, one writer, a pool of readers.
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use memory::MemoryStore;
/// The PostgreSQL store and how to open it.
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
/// The SQLite store and how to open it.
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteConfig, SqliteStore};
