use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{Job, NewJob};
use crate::{JobId, StoreError};

type R<T> = std::result::Result<T, StoreError>;

/// Counts of jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Waiting to run (including delayed).
    pub queued: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Finished.
    pub done: u64,
    /// Gave up.
    pub dead: u64,
}

/// A durable job queue with at-least-once delivery. Handlers must be idempotent.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues outside any transaction; `None` when deduplicated.
    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>>;
    /// Claims up to `limit` due jobs (queued with `run_at <= now`, or running with a lapsed lease),
    /// highest priority first, then oldest. Each claim counts as an attempt and is leased for `lease`.
    async fn claim(&self, limit: u32, now: DateTime<Utc>, lease: Duration) -> R<Vec<Job>>;
    /// Marks a claimed job done.
    async fn complete(&self, id: JobId) -> R<()>;
    /// Records a failed attempt: queued again at `retry_at`, or dead (keeping `error`) when `retry_at` is `None`.
    async fn fail(&self, id: JobId, error: &str, retry_at: Option<DateTime<Utc>>) -> R<()>;
    /// By id.
    async fn job(&self, id: JobId) -> R<Option<Job>>;
    /// Counts by state.
    async fn stats(&self) -> R<JobStats>;
}
