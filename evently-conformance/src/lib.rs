//! The conformance suite every Evently store must pass: the in-memory, SQLite and PostgreSQL stores of
//! `evently-storage`, and an integrator's own [`Store`]. It depends on `evently-core` and tokio only:
//! no database driver and none of our stores comes into a build that runs it.
//!
//! It holds a store to the contract of [`evently_core::ports`] (atomic transactions, change sets
//! applied whole or not at all, `ForUpdate` serialisation, constraint errors named as in the schema,
//! list orders, round trips of every field, the job queue) and runs
//! the engine ([`evently_core::Evently`] with a [`ManualClock`](evently_core::ManualClock)) on it, so
//! every backend is held to the same booking rules: no oversell under 1,000 concurrent requests,
//! idempotent retries, hold expiry, waitlist promotion.
//!
//! # Running it on your store
//!
//! Add this crate to your dev-dependencies and invoke
//! [`store_conformance_tests!`](crate::store_conformance_tests) in an integration test with an async
//! closure that returns a fresh, empty store. It expands to a module `store_conformance` holding one
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per case, so `cargo test` lists and
//! reports each case on its own; every case gets its own store from the closure. Name the module with
//! `store_conformance_tests!(mod my_name, ...)` to run the suite twice in one file. The closure is
//! evaluated inside that module, which imports everything of the invoking module (`use super::*`).
//!
//! ```text
//! # Cargo.toml
//! [dev-dependencies]
//! evently-conformance = "0.1"
//! ```
//!
//! ```
//! // tests/conformance.rs
//! use std::sync::Arc;
//!
//! use evently_core::Store;
//! use evently_storage::MemoryStore; // your store here
//!
//! evently_conformance::store_conformance_tests!(async || -> Arc<dyn Store> {
//!     Arc::new(MemoryStore::new())
//! });
//!
//! // Without the macro, call a case yourself: each is a public async fn taking a fresh store.
//! async fn one_case() {
//!     evently_conformance::for_update_serialises_read_modify_write(Arc::new(
//!         MemoryStore::new(),
//!     ))
//!     .await;
//! }
//! # fn main() { let _ = one_case; }
//! ```
//!
//! A case panics (fails its test) on the first broken rule, naming it. Cases may retry a whole
//! transaction that fails with [`StoreError::Transient`](evently_core::StoreError::Transient), as the
//! contract allows; any other store error fails the case.
//!
//! Timestamps in the suite carry whole microseconds, the precision SQL stores keep.

#![warn(missing_docs)]

mod engine;
mod fixtures;
mod jobs;
mod port;

pub use engine::*;
pub use jobs::*;
pub use port::*;

/// The `JobQueue` trait the queue cases take, for the macro's expansion.
#[doc(hidden)]
pub use evently_core::JobQueue;
/// The `Store` trait the cases take, for the macro's expansion.
#[doc(hidden)]
pub use evently_core::Store;
/// The tokio the generated tests run on, so the invoking crate need not name it.
#[doc(hidden)]
pub use tokio;

/// Expands to one `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per conformance case,
/// each running the case on a fresh store from `$factory` (an async closure, or any closure returning a
/// future, that yields an `Arc<dyn Store>`). See the crate documentation.
///
/// `store_conformance_tests!(factory)` puts the tests in a module `store_conformance`;
/// `store_conformance_tests!(mod name, factory)` names the module.
#[macro_export]
macro_rules! store_conformance_tests {
    (mod $name:ident, async $(move)? || -> $ret:ty $body:block $(,)?) => {
        // A closure's body is no coercion site, a function's is: `Arc::new(MyStore)` becomes `$ret`.
        $crate::store_conformance_tests!(@module $name, {
            async fn evently_conformance_store() -> $ret $body
        }, evently_conformance_store);
    };
    (mod $name:ident, $factory:expr $(,)?) => {
        $crate::store_conformance_tests!(@module $name, {}, $factory);
    };
    (@module $name:ident, { $($factory_fn:item)? }, $factory:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::tokio;

            $($factory_fn)?

            $crate::__store_conformance_case!(
                $factory;
                // Port contract.
                commit_makes_writes_visible,
                rollback_discards_every_write,
                drop_without_commit_discards_every_write,
                unique_user_email,
                unique_idempotency_key_per_user,
                unique_ticket_number,
                a_change_set_is_applied_whole_or_not_at_all,
                one_change_set_carries_a_whole_booking,
                changes_are_visible_to_later_reads_of_the_same_transaction,
                an_update_after_an_insert_in_one_change_set,
                waitlist_entries_get_increasing_seq,
                one_live_waitlist_entry_per_user_and_event,
                foreign_keys_are_enforced,
                update_event_over_capacity_is_refused,
                list_events_orders_filters_and_pages,
                bookings_list_in_order,
                waitlist_in_seq_order,
                expired_holds_earliest_first,
                events_with_expired_holds_lists_due_events,
                for_update_serialises_read_modify_write,
                records_round_trip,
                notification_marked_sent_once,
                notification_marked_read_once_and_listed_by_page,
                notification_deliveries_recorded_once,
                push_subscription_upsert_and_delete,
                // Job queue.
                job_enqueued_in_a_transaction_exists_only_if_committed,
                job_dedupe_key_blocks_until_done,
                job_concurrent_enqueues_keep_one_per_dedupe_key,
                job_complete_many_and_accept_many,
                job_claim_order_and_limit,
                job_lease_lapses,
                job_fail_retries_or_buries,
                job_accept_is_idempotent,
                // Engine rules on this store.
                engine_never_oversells,
                engine_bad_request_in_a_shared_batch_decides_only_itself,
                engine_idempotent_booking,
                engine_hold_expiry,
                engine_waitlist_promotion,
                engine_cancel_twice_frees_seats_once,
                engine_retry_skips_delivered_channels,
                engine_confirm_twice_is_idempotent,
                engine_stale_event_update_is_a_conflict,
                engine_confirmation_follows_event_edits,
            );
        }
    };
    ($($factory:tt)+) => {
        $crate::store_conformance_tests!(mod store_conformance, $($factory)+);
    };
}

/// One test per case name; used by [`store_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_case {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[allow(clippy::redundant_closure_call)]
            async fn $case() {
                let factory = $factory;
                let store: ::std::sync::Arc<dyn $crate::Store> = factory().await;
                $crate::$case(store).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per job-queue case
/// (the `queue_*` functions of this crate), each on a fresh, empty queue from
/// `$factory` (an async closure yielding an `Arc<dyn JobQueue>`), for a queue that is not a store's own
/// (a Redis queue, say). `job_queue_conformance_tests!(mod name, factory)` names the module (default
/// `job_queue_conformance`).
///
/// ```
/// use std::sync::Arc;
///
/// use evently_core::JobQueue;
/// use evently_storage::MemoryStore; // your queue here
///
/// evently_conformance::job_queue_conformance_tests!(async || -> Arc<dyn JobQueue> {
///     Arc::new(MemoryStore::new())
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! job_queue_conformance_tests {
    (mod $name:ident, async $(move)? || -> $ret:ty $body:block $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::tokio;

            async fn evently_conformance_queue() -> $ret $body

            $crate::__job_queue_conformance_case!(
                evently_conformance_queue;
                queue_claim_order_and_limit,
                queue_lease_lapses,
                queue_fail_retries_or_buries,
                queue_dedupe_key_blocks_until_done,
                queue_concurrent_enqueues_keep_one_per_dedupe_key,
                queue_complete_many_and_accept_many,
                queue_accept_is_idempotent,
            );
        }
    };
    ($($factory:tt)+) => {
        $crate::job_queue_conformance_tests!(mod job_queue_conformance, $($factory)+);
    };
}

/// One test per case name; used by [`job_queue_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __job_queue_conformance_case {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let queue: ::std::sync::Arc<dyn $crate::JobQueue> = $factory().await;
                $crate::$case(queue).await;
            }
        )*
    };
}
