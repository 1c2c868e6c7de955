use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{Job, NewJob};
use crate::{JobId, StoreError};

type R<T> = std::result::Result<T, StoreError>;

/// Counts of jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Waiting to run (including delayed and [`retrying`](Self::retrying)).
    pub queued: u64,
    /// Of the queued: failed at least once and waiting for another attempt.
    pub retrying: u64,
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
    /// A short name for logs and metric labels (`memory`, `sqlite`, `postgres`, `redis`, ...).
    fn queue_name(&self) -> &str;
    /// Enqueues outside any transaction; `None` when deduplicated.
    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>>;
    /// Takes over a job claimed from another queue (the store's outbox, see [`crate::Evently::relay_jobs`]),
    /// keeping its id, payload, priority, `run_at`, `attempts`, `max_attempts`, dedupe key and
    /// `created_at`; it is queued here whatever its status was there. Idempotent by id: `false` when this
    /// queue already has (or had, within its retention of finished jobs) a job with that id, so a relay
    /// that crashed after handing a job over and hands it over again does not run it twice.
    async fn accept(&self, job: &Job) -> R<bool>;
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
