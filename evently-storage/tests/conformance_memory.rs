//! The conformance suite on the in-memory store, the reference semantics.

use std::sync::Arc;

use evently_core::Store;
use evently_storage::MemoryStore;

evently_conformance::store_conformance_tests!(async || -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
});
