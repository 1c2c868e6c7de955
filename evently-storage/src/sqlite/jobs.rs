//! The durable job queue in the `jobs` table.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::JobStats;
use evently_core::{Job, JobId, JobQueue, NewJob, StoreError};
use sqlx::Row;

use super::SqliteStore;
use super::codec::{self, id_text, json_payload, micros};
use super::error::classify;
use super::tx::insert_job;

type R<T> = Result<T, StoreError>;

fn missing_job() -> StoreError {
    StoreError::Backend {
        message: "job does not exist".into(),
    }
}

#[async_trait]
impl JobQueue for SqliteStore {
    fn queue_name(&self) -> &str {
        "sqlite"
    }

    async fn accept(&self, job: &Job) -> R<bool> {
        // No conflict target: a row with the same id, or a live job with the same dedupe key, keeps
        // the insert from happening.
        let done = sqlx::query(
            "INSERT INTO jobs (id, kind, payload, priority, status, run_at, attempts, max_attempts, \
             dedupe_key, last_error, locked_until, created_at) \
             VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id_text(job.id.0))
        .bind(job.payload.kind())
        .bind(json_payload(&job.payload)?)
        .bind(i64::from(job.priority))
        .bind(micros(job.run_at))
        .bind(i64::from(job.attempts))
        .bind(i64::from(job.max_attempts))
        .bind(job.dedupe_key.clone())
        .bind(job.last_error.clone())
        .bind(micros(job.created_at))
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>> {
        let id = JobId::new();
        let done = insert_job(job, id)?
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        let enqueued = done.rows_affected() > 0;
        tracing::debug!(backend = "sqlite", job_id = %id, kind = job.payload.kind(), enqueued, "enqueue job");
        Ok(enqueued.then_some(id))
    }

    async fn claim(&self, limit: u32, now: DateTime<Utc>, lease: Duration) -> R<Vec<Job>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let until = evently_core::ports::lease_end(now, lease);
        // One writer transaction: the selection and the update cannot interleave with another claim.
        let mut tx = super::tx::begin(
            &self.writer,
            Some("BEGIN IMMEDIATE"),
            super::tx::Access::Write,
        )
        .await
        .map_err(classify)?;
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = ?1 \
             WHERE id IN (SELECT id FROM jobs \
                 WHERE (status = 'queued' AND run_at <= ?2) \
                    OR (status = 'running' AND locked_until <= ?2) \
                 ORDER BY priority DESC, run_at, id LIMIT ?3) \
             RETURNING {}",
            codec::JOB_COLUMNS
        );
        let rows = sqlx::query(&sql)
            .bind(micros(until))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(tx.raw())
            .await
            .map_err(classify)?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            match codec::job(row) {
                Ok(job) => jobs.push(job),
                Err(e) => {
                    // A job that cannot be read back must not jam the queue: it is dead, with the reason.
                    let id: String = row.try_get("id").map_err(classify)?;
                    tracing::error!(backend = "sqlite", job_id = %id, error = %e, "undecodable job marked dead");
                    sqlx::query(
                        "UPDATE jobs SET status = 'dead', locked_until = NULL, last_error = ? \
                         WHERE id = ?",
                    )
                    .bind(e.to_string())
                    .bind(id)
                    .execute(tx.raw())
                    .await
                    .map_err(classify)?;
                }
            }
        }
        tx.end(true).await?;
        // RETURNING gives no order; hand jobs out in claim order.
        jobs.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
        tracing::debug!(backend = "sqlite", claimed = jobs.len(), "claim jobs");
        Ok(jobs)
    }

    async fn complete(&self, id: JobId) -> R<()> {
        let done = sqlx::query("UPDATE jobs SET status = 'done', locked_until = NULL WHERE id = ?")
            .bind(id_text(id.0))
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        match done.rows_affected() {
            0 => Err(missing_job()),
            _ => Ok(()),
        }
    }

    async fn complete_many(&self, ids: &[JobId]) -> R<()> {
        // Each id once (a repeated id would count as missing below), one statement per few hundred
        // ids (SQLite's limit on bound values is far above).
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let ids: Vec<JobId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        for chunk in ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE jobs SET status = 'done', locked_until = NULL WHERE id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id_text(id.0));
            }
            q.push(")");
            let done = q.build().execute(&self.writer).await.map_err(classify)?;
            if done.rows_affected() != chunk.len() as u64 {
                return Err(missing_job());
            }
        }
        Ok(())
    }

    async fn fail(&self, id: JobId, error: &str, retry_at: Option<DateTime<Utc>>) -> R<()> {
        let done = sqlx::query(
            "UPDATE jobs SET last_error = ?1, locked_until = NULL, \
             status = CASE WHEN ?2 IS NULL THEN 'dead' ELSE 'queued' END, \
             run_at = COALESCE(?2, run_at) WHERE id = ?3",
        )
        .bind(error.to_string())
        .bind(retry_at.map(micros))
        .bind(id_text(id.0))
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        tracing::debug!(backend = "sqlite", job_id = %id, retry = retry_at.is_some(), "job failed");
        match done.rows_affected() {
            0 => Err(missing_job()),
            _ => Ok(()),
        }
    }

    async fn job(&self, id: JobId) -> R<Option<Job>> {
        let sql = format!("SELECT {} FROM jobs WHERE id = ?", codec::JOB_COLUMNS);
        let row = sqlx::query(&sql)
            .bind(id_text(id.0))
            .fetch_optional(&self.readers)
            .await
            .map_err(classify)?;
        row.as_ref().map(codec::job).transpose()
    }

    async fn stats(&self) -> R<JobStats> {
        let rows = sqlx::query(codec::JOB_STATS_SQL)
            .fetch_all(&self.readers)
            .await
            .map_err(classify)?;
        codec::job_stats(&rows)
    }
}
