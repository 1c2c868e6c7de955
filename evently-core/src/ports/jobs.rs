use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{Job, NewJob};
use crate::{JobId, StoreError};

type R<T> = std::result::Result<T, StoreError>;

/// When a lease of `lease` taken at `now` lapses (what [`JobQueue::claim`] records as a job's
/// `locked_until`); the latest representable time if that is beyond it.
pub fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

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
    /// Marks claimed jobs done: [`JobQueue::complete`] for many, in one call to the backend where
    /// the queue can (the default completes them one by one). Completing is idempotent: after an
    /// error some of the jobs may be done, and completing them again is harmless. An id that does
    /// not exist is an error, as for `complete`.
    async fn complete_many(&self, ids: &[JobId]) -> R<()> {
        for &id in ids {
            self.complete(id).await?;
        }
        Ok(())
    }
    /// [`JobQueue::accept`] for many jobs, in one call to the backend where the queue can (the
    /// default accepts them one by one); per job, in order, whether it was taken.
    async fn accept_many(&self, jobs: &[Job]) -> R<Vec<bool>> {
        let mut taken = Vec::with_capacity(jobs.len());
        for job in jobs {
            taken.push(self.accept(job).await?);
        }
        Ok(taken)
    }
    /// Records a failed attempt: queued again at `retry_at`, or dead (keeping `error`) when `retry_at` is `None`.
    async fn fail(&self, id: JobId, error: &str, retry_at: Option<DateTime<Utc>>) -> R<()>;
    /// By id.
    async fn job(&self, id: JobId) -> R<Option<Job>>;
    /// Counts by state.
    async fn stats(&self) -> R<JobStats>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ends_after_its_length_or_at_the_latest_time() {
        let now = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).expect("a time");
        assert_eq!(
            lease_end(now, Duration::from_secs(90)),
            now + chrono::Duration::seconds(90)
        );
        assert_eq!(lease_end(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            lease_end(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
