use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Evently, Work, chrono_dur};
use crate::model::{Job, JobPayload, NotificationKind};
use crate::ports::{Changes, Delivery, DeliveryRecord, JobQueue, NotifyError};
use crate::{Error, LockMode, NotificationId, Result};

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
    /// The queue workers claim jobs from: the one given to [`EventlyBuilder::queue`](super::EventlyBuilder::queue),
    /// else the store's own.
    pub fn job_queue(&self) -> Arc<dyn JobQueue> {
        match &self.inner.work_queue {
            Some(q) => Arc::clone(q),
            None => self.inner.store.job_queue(),
        }
    }

    /// Hands up to `limit` due jobs from the store's queue (the outbox every transaction writes its jobs
    /// to) over to the work queue given to [`EventlyBuilder::queue`](super::EventlyBuilder::queue), and
    /// returns how many were handed over. Does nothing (returns 0) when the engine has no separate work
    /// queue. Safe to run from several workers at once and to interrupt at any point: a job is claimed in
    /// the outbox, accepted by the work queue (idempotent by job id), then completed in the outbox; a relay
    /// that dies in between leaves the outbox claim to lapse, and the next relay's hand-over is a no-op.
    pub async fn relay_jobs(&self, limit: u32) -> Result<u32> {
        let Some(target) = &self.inner.work_queue else {
            return Ok(0);
        };
        let outbox = self.inner.store.job_queue();
        let jobs = outbox
            .claim(limit, self.now(), self.inner.config.job_lease)
            .await?;
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|mut job| {
                // The outbox claim is not an attempt to run the job.
                job.attempts = job.attempts.saturating_sub(1);
                job
            })
            .collect();
        let taken = target.accept_many(&jobs).await?;
        let ids: Vec<_> = jobs.iter().map(|j| j.id).collect();
        outbox.complete_many(&ids).await?;
        let mut moved = 0u32;
        for (job, taken) in jobs.iter().zip(taken) {
            if taken {
                moved += 1;
            } else {
                tracing::debug!(job_id = %job.id, queue = target.queue_name(), "job already handed over");
            }
        }
        if moved > 0 {
            metrics::counter!("evently_jobs_relayed_total", "queue" => target.queue_name().to_owned())
                .increment(u64::from(moved));
        }
        Ok(moved)
    }

    /// Claims up to `limit` due jobs from the [work queue](Self::job_queue) and runs them: notification
    /// delivery through the configured notifiers, hold and offer expiry. Every handler is idempotent, so a
    /// job delivered twice has the effect of once. Failures are retried with exponential backoff and
    /// jitter until the job's `max_attempts`, then the job is dead and keeps the last error.
    ///
    /// Metrics (through the `metrics` facade, labelled with the queue's name): `evently_jobs_total`
    /// (`kind`, `outcome` = ok / retry / dead) and `evently_job_latency_seconds` (from when a job was due
    /// to when a worker claimed it).
    ///
    /// An event with two seats:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use evently_core::*;
    /// # futures_executor::block_on(async {
    /// # let store = Arc::new(evently_storage::MemoryStore::new());
    /// # let engine = Evently::builder().store(store).build()?;
    /// # let person = async |email: &str, role| -> Result<Actor> {
    /// #     let new = NewUser { email: email.into(), name: email.into(), password_hash: "h".into(),
    /// #         role, attributes: Default::default() };
    /// #     let u = engine.register_user(new).await?;
    /// #     Ok(Actor::new(u.id, u.role))
    /// # };
    /// # let admin = person("admin@example.com", Role::Admin).await?;
    /// # let (alice, bob) = (person("alice@example.com", Role::User).await?,
    /// #     person("bob@example.com", Role::User).await?);
    /// # let starts_at = engine.now() + chrono::Duration::days(7);
    /// # let event = engine.create_event(&admin, NewEvent { name: "Gig".into(),
    /// #     description: String::new(), venue: "Club".into(), category: "music".into(), starts_at,
    /// #     ends_at: starts_at + chrono::Duration::hours(3), capacity: 2,
    /// #     price: Money::new(1500, Currency::new("EUR")?) }).await?;
    /// // A booking queues the delivery of its confirmation in the same transaction (and each sign-up
    /// // its welcome): four jobs, delivered through the engine's notifiers (none here).
    /// engine.book(&alice, BookingRequest::new(event.id, 1)).await?;
    /// let pass = engine.run_jobs(100).await?;
    /// assert_eq!((pass.claimed, pass.succeeded), (4, 4));
    /// // Run it from a loop (the reference server's `Worker` does, every second), with `expire_holds`.
    /// assert_eq!(engine.run_jobs(100).await?.claimed, 0);
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn run_jobs(&self, limit: u32) -> Result<JobRunSummary> {
        let queue = self.job_queue();
        let queue_name = queue.queue_name().to_owned();
        let now = self.now();
        let jobs = queue.claim(limit, now, self.inner.config.job_lease).await?;
        let mut summary = JobRunSummary {
            claimed: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        // Successes are marked done together, in one call to the queue: before a failure is
        // recorded, once half the lease has passed (before another worker could claim them again),
        // and at the end of the pass. A pass that stops in between (its future dropped) leaves its
        // unmarked successes to run again once the lease lapses: every handler is idempotent.
        let mut done = Vec::with_capacity(jobs.len());
        let mark_by = now
            .checked_add_signed(chrono_dur(self.inner.config.job_lease / 2))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        for job in jobs {
            let kind = job.payload.kind();
            let waited = (now - job.run_at).to_std().unwrap_or_default();
            metrics::histogram!("evently_job_latency_seconds", "queue" => queue_name.clone(), "kind" => kind)
                .record(waited.as_secs_f64());
            let outcome = match self.run_job(&job).await {
                Ok(()) => {
                    done.push(job.id);
                    if self.now() >= mark_by {
                        queue.complete_many(&done).await?;
                        done.clear();
                    }
                    summary.succeeded += 1;
                    "ok"
                }
                Err((e, retryable)) => {
                    let retry_at = (retryable && job.attempts < job.max_attempts).then(|| {
                        backoff(now, job.attempts, self.inner.ids.uuid().as_u128() as u64)
                    });
                    tracing::warn!(job_id = %job.id, kind, attempt = job.attempts, error = %e, "job failed");
                    queue.complete_many(&done).await?;
                    done.clear();
                    queue.fail(job.id, &e, retry_at).await?;
                    if retry_at.is_some() {
                        summary.retried += 1;
                        "retry"
                    } else {
                        summary.dead += 1;
                        "dead"
                    }
                }
            };
            metrics::counter!("evently_jobs_total", "queue" => queue_name.clone(), "kind" => kind, "outcome" => outcome)
                .increment(1);
        }
        queue.complete_many(&done).await?;
        Ok(summary)
    }

    async fn run_job(&self, job: &Job) -> Result<(), (String, bool)> {
        match &job.payload {
            JobPayload::ExpireHolds { event_id } => self
                .expire_event_holds(*event_id, self.now())
                .await
                .map(|_| ())
                .map_err(job_error),
            JobPayload::DeliverNotification { notification_id } => self
                .deliver_notification(*notification_id)
                .await
                .map_err(|e| match e {
                    DeliveryError::Engine(e) => job_error(e),
                    DeliveryError::Failed { message, retry } => (message, retry),
                }),
        }
    }

    /// Hands a notification to every notifier that has not delivered it yet, recording each channel's
    /// success as it happens, then sets `sent_at`. A retry after one channel failed goes only through the
    /// channels still missing, so a user does not get the same e-mail again because a push failed.
    async fn deliver_notification(&self, id: NotificationId) -> Result<(), DeliveryError> {
        let store = &self.inner.store;
        let mut tx = store.begin_read().await.map_err(Error::from)?;
        let Some(n) = tx.notification(id).await.map_err(Error::from)? else {
            return Err(DeliveryError::permanent(format!(
                "notification {id} does not exist"
            )));
        };
        if n.sent_at.is_some() {
            return Ok(());
        }
        let Some(user) = tx.user(n.user_id).await.map_err(Error::from)? else {
            return Err(DeliveryError::permanent(format!(
                "user {} does not exist",
                n.user_id
            )));
        };
        let subs = tx
            .push_subscriptions_for_user(user.id)
            .await
            .map_err(Error::from)?;
        let done = tx.notification_deliveries(id).await.map_err(Error::from)?;
        // What the notification is about.
        let event = match n.event_id {
            Some(e) => tx.event(e, LockMode::None).await.map_err(Error::from)?,
            None => None,
        };
        let tickets = match (n.kind, n.booking_id) {
            (NotificationKind::BookingConfirmed, Some(b)) => {
                tx.tickets_for_booking(b).await.map_err(Error::from)?
            }
            _ => Vec::new(),
        };
        drop(tx);
        let delivery = Delivery {
            user: &user,
            notification: &n,
            event: event.as_ref(),
            tickets: &tickets,
            push_subscriptions: &subs,
        };
        for notifier in &self.inner.notifiers {
            let channel = notifier.name();
            if done.iter().any(|c| c == channel) {
                continue;
            }
            match notifier.notify(delivery).await {
                Ok(()) => {}
                Err(NotifyError::SubscriptionGone { endpoint }) => {
                    // That subscription is gone for good; the channel's other work is done.
                    let gone = Changes {
                        removed_push_subscriptions: vec![endpoint.clone()],
                        ..Changes::default()
                    };
                    Work::write(&**store, gone).await.map_err(Error::from)?;
                    tracing::info!(notification_id = %id, channel, endpoint, "push subscription gone: deleted");
                }
                Err(NotifyError::Transient(m)) => {
                    return Err(DeliveryError::Failed {
                        message: format!("{channel}: {m}"),
                        retry: true,
                    });
                }
                Err(NotifyError::Permanent(m)) => {
                    return Err(DeliveryError::permanent(format!("{channel}: {m}")));
                }
            }
            let delivered = Changes {
                deliveries: vec![DeliveryRecord {
                    notification_id: id,
                    channel: channel.to_string(),
                    at: self.now(),
                }],
                ..Changes::default()
            };
            Work::write(&**store, delivered)
                .await
                .map_err(Error::from)?;
        }
        let sent = Changes {
            notifications_sent: vec![(id, self.now())],
            ..Changes::default()
        };
        Work::write(&**store, sent).await.map_err(Error::from)?;
        Ok(())
    }
}

/// Why delivering a notification failed.
enum DeliveryError {
    /// The engine or store failed (retried when transient).
    Engine(Error),
    /// A notifier failed, or the notification cannot be delivered.
    Failed { message: String, retry: bool },
}

impl DeliveryError {
    fn permanent(message: String) -> Self {
        Self::Failed {
            message,
            retry: false,
        }
    }
}

impl From<Error> for DeliveryError {
    fn from(e: Error) -> Self {
        Self::Engine(e)
    }
}

/// An engine error as a job failure: its message, and whether another attempt may succeed (a store error
/// always may: the database can come back).
fn job_error(e: Error) -> (String, bool) {
    let retry = e.is_transient() || matches!(e, Error::Store(_));
    (e.to_string(), retry)
}

/// 2^attempts seconds (capped at an hour) plus a random jitter of up to a quarter of that, so jobs that
/// failed together (an SMTP server down) do not all come back at the same instant. `random` is any
/// uniformly distributed value (the engine passes the random bits of a fresh id).
fn backoff(now: DateTime<Utc>, attempts: u32, random: u64) -> DateTime<Utc> {
    let base_ms = 1000 * 2u64.saturating_pow(attempts.min(12)).min(3600);
    let jitter_ms = random % (base_ms / 4 + 1);
    now + chrono_dur(std::time::Duration::from_millis(base_ms + jitter_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_jitters_within_a_quarter() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        for attempts in 0..14u32 {
            let base = 1000 * 2i64.pow(attempts.min(12)).min(3600);
            let mut seen = std::collections::BTreeSet::new();
            for random in [0u64, 1, 7, 999, u64::MAX / 3, u64::MAX] {
                let ms = (backoff(now, attempts, random) - now).num_milliseconds();
                assert!(
                    ms >= base && ms <= base + base / 4,
                    "attempt {attempts}: {ms} ms"
                );
                seen.insert(ms);
            }
            assert!(seen.len() > 1, "attempt {attempts}: no jitter");
        }
    }
}
