//! The last line of defence of the SQL stores' pools: a connection that comes back to its pool inside
//! a transaction, or in an aborted one, is closed instead of being handed to the next caller (who
//! would otherwise run inside a stranger's transaction: a read-only one refuses its writes, an
//! aborted one refuses everything, and its own writes would never commit). The stores' own code
//! does not let that happen, whatever await point its caller goes away at (the cancellation tests
//! check that the count below stays at zero); this catches and reports it when something else does
//! (a bug, a transaction left open on `PostgresStore::pool`, an SQLite transaction that could not be
//! rolled back after an I/O error).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Connections of one store's pool that were closed because they came back inside a transaction.
#[derive(Debug)]
pub(crate) struct Discards {
    backend: &'static str,
    count: AtomicU64,
    warned: AtomicBool,
}

impl Discards {
    pub(crate) fn new(backend: &'static str) -> Self {
        Self {
            backend,
            count: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// How many so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts a discarded connection (also as `evently_pool_connections_discarded_total{backend,
    /// reason}`) and logs a warning the first time for this store; later ones are logged at debug
    /// level, so a bug that strands connections under load does not flood the log.
    pub(crate) fn record(&self, reason: &'static str) {
        let backend = self.backend;
        self.count.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "evently_pool_connections_discarded_total",
            "backend" => backend,
            "reason" => reason
        )
        .increment(1);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                backend,
                reason,
                "a connection came back to the pool {reason}; closed instead of reused \
                 (further cases: debug log, metric evently_pool_connections_discarded_total)"
            );
        } else {
            tracing::debug!(backend, reason, "pooled connection discarded");
        }
    }
}
