//! The conformance suite on the SQLite store: each case on its own fresh, private database.

use std::sync::Arc;

use evently_core::Store;
use evently_storage::SqliteStore;

evently_conformance::store_conformance_tests!(async || -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open_in_memory()
            .await
            .expect("open a private SQLite store"),
    )
});
