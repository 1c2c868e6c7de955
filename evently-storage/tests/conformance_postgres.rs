//! The conformance suite on the PostgreSQL store (server at `EVENTLY_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each case on a database of its own, created for it
//! and dropped after it, so the cases run in parallel. An unreachable server fails every case.

use std::sync::Arc;

use evently_core::Store;
use evently_storage::postgres::testing::fresh_store;

evently_conformance::store_conformance_tests!(mod postgres, async || -> Arc<dyn Store> {
    Arc::new(
        fresh_store()
            .await
            .expect("create a private PostgreSQL test database"),
    )
});
