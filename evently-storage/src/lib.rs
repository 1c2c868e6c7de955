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

pub mod memory;

pub use memory::MemoryStore;
