//! The conformance suite on the PostgreSQL store (server at `EVENTLY_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each case on a database of its own, created for it
//! and dropped after it, so the cases run in parallel. An unreachable server fails every case.
//!
//! The suite runs twice: with write-behind (the default, `defer_writes` on) and with every write sent
//! when it is made.

use std::sync::Arc;

use evently_core::Store;
use evently_storage::postgres::testing::fresh_store_with;

evently_conformance::store_conformance_tests!(mod deferred_writes, async || -> Arc<dyn Store> {
    Arc::new(
        fresh_store_with(|cfg| cfg.defer_writes = true)
            .await
            .expect("create a private PostgreSQL test database"),
    )
});

evently_conformance::store_conformance_tests!(mod immediate_writes, async || -> Arc<dyn Store> {
    Arc::new(
        fresh_store_with(|cfg| cfg.defer_writes = false)
            .await
            .expect("create a private PostgreSQL test database"),
    )
});
