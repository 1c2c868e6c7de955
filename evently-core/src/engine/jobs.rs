use chrono::{DateTime, Utc};

use super::{Evently, chrono_dur};
use crate::model::{Job, JobPayload};
use crate::ports::{Delivery, NotifyError};
use crate::{Error, Result};

/// What one [`Evently::run_jobs`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobRunSummary {
    /// Jobs claimed.
    pub claimed: u32,
    /// Jobs that succeeded.
    pub succeeded: u32,
    /// Jobs that failed and will be retried.
    pub retried: u32,
    /// Jobs that failed for good.
    pub dead: u32,
}

impl Evently {
    /// Claims up to `limit` due jobs from the store's queue and runs them: notification delivery through the
    /// configured notifiers, hold and offer expiry. Every handler is idempotent, so a job delivered twice
    /// has the effect of once. Failures are retried with exponential backoff until `max_attempts`.
    pub async fn run_jobs(&self, limit: u32) -> Result<JobRunSummary> {
        let queue = self.inner.store.job_queue();
        let now = self.now();
        let jobs = queue.claim(limit, now, self.inner.config.job_lease).await?;
        let mut summary = JobRunSummary {
            claimed: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        for job in jobs {
            let kind = job.payload.kind();
            match self.run_job(&job).await {
                Ok(()) => {
                    queue.complete(job.id).await?;
                    summary.succeeded += 1;
                    metrics::counter!("evently_jobs_total", "kind" => kind, "outcome" => "ok")
                        .increment(1);
                }
                Err((e, retryable)) => {
                    let retry_at = (retryable && job.attempts < job.max_attempts)
                        .then(|| backoff(now, job.attempts));
                    tracing::warn!(job_id = %job.id, kind, attempt = job.attempts, error = %e, "job failed");
                    queue.fail(job.id, &e, retry_at).await?;
                    if retry_at.is_some() {
                        summary.retried += 1;
                    } else {
                        summary.dead += 1;
                    }
                    metrics::counter!("evently_jobs_total", "kind" => kind, "outcome" => "failed")
                        .increment(1);
                }
            }
        }
        Ok(summary)
    }

    async fn run_job(&self, job: &Job) -> Result<(), (String, bool)> {
        let fatal = |e: Error| {
            (
                e.to_string(),
                e.is_transient() || matches!(e, Error::Store(_)),
            )
        };
        match &job.payload {
            JobPayload::ExpireHolds { event_id } => self
                .expire_event_holds(*event_id, self.now())
                .await
                .map(|_| ())
                .map_err(fatal),
            JobPayload::DeliverNotification { notification_id } => {
                let mut tx = self
                    .inner
                    .store
                    .begin_read()
                    .await
                    .map_err(|e| fatal(e.into()))?;
                let Some(n) = tx
                    .notification(*notification_id)
                    .await
                    .map_err(|e| fatal(e.into()))?
                else {
                    return Err((
                        format!("notification {notification_id} does not exist"),
                        false,
                    ));
                };
                if n.sent_at.is_some() {
                    return Ok(());
                }
                let Some(user) = tx.user(n.user_id).await.map_err(|e| fatal(e.into()))? else {
                    return Err((format!("user {} does not exist", n.user_id), false));
                };
                let subs = tx
                    .push_subscriptions_for_user(user.id)
                    .await
                    .map_err(|e| fatal(e.into()))?;
                drop(tx);
                let delivery = Delivery {
                    user: &user,
                    notification: &n,
                    push_subscriptions: &subs,
                };
                for notifier in &self.inner.notifiers {
                    match notifier.notify(delivery).await {
                        Ok(()) => {}
                        Err(NotifyError::SubscriptionGone { endpoint }) => {
                            let mut tx = self
                                .inner
                                .store
                                .begin()
                                .await
                                .map_err(|e| fatal(e.into()))?;
                            tx.delete_push_subscription(&endpoint)
                                .await
                                .map_err(|e| fatal(e.into()))?;
                            tx.commit().await.map_err(|e| fatal(e.into()))?;
                        }
                        Err(NotifyError::Transient(m)) => {
                            return Err((format!("{}: {m}", notifier.name()), true));
                        }
                        Err(NotifyError::Permanent(m)) => {
                            return Err((format!("{}: {m}", notifier.name()), false));
                        }
                    }
                }
                let mut tx = self
                    .inner
                    .store
                    .begin()
                    .await
                    .map_err(|e| fatal(e.into()))?;
                tx.mark_notification_sent(n.id, self.now())
                    .await
                    .map_err(|e| fatal(e.into()))?;
                tx.commit().await.map_err(|e| fatal(e.into()))?;
                Ok(())
            }
        }
    }
}

/// 2^attempt seconds (capped at an hour), with up to 25 % jitter derived from the attempt time.
fn backoff(now: DateTime<Utc>, attempts: u32) -> DateTime<Utc> {
    let secs = 2u64.saturating_pow(attempts.min(12)).min(3600);
    let jitter = (now.timestamp_subsec_nanos() as u64 % 250) * secs / 1000;
    now + chrono_dur(std::time::Duration::from_secs(secs + jitter))
}
