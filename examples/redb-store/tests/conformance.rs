//! The whole conformance suite (the store's cases and the bare job-queue cases), each case on a
//! fresh in-memory redb store.

use std::sync::Arc;

use evently_core::{JobQueue, Store};
use example_redb_store::RedbStore;

evently_conformance::store_conformance_tests!(async || -> Arc<dyn Store> {
    Arc::new(RedbStore::open_temporary().expect("a fresh redb store"))
});

evently_conformance::job_queue_conformance_tests!(async || -> Arc<dyn JobQueue> {
    Arc::new(RedbStore::open_temporary().expect("a fresh redb store"))
});
