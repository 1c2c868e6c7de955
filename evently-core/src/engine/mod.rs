//! The engine: every business rule, run inside store transactions.

mod bookings;
mod combiner;
mod events;
mod jobs;
mod policies;
mod users;
mod waitlist;
mod work;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use bookings::{BookingRequest, Reservation};
pub use jobs::JobRunSummary;
pub use policies::{PolicyFailureMode, PolicyRegistry};
pub(crate) use work::Work;

use crate::model::{
    Booking, BookingStatus, Event, JobPayload, NewJob, Notification, NotificationKind,
};
use crate::ports::{
    Clock, DefaultIdGenerator, FifoWaitlist, FixedPrice, IdGenerator, JobQueue, Notifier,
    PricingPolicy, Store, SystemClock, WaitlistPolicy,
};
use crate::{Error, NotificationId, Result, StoreError, UserId};

/// Tunables. Every field has a sensible default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Hold time when the request names none.
    pub default_hold_ttl: Duration,
    /// Longest hold a request may ask for.
    pub max_hold_ttl: Duration,
    /// How long a waitlist offer stays open.
    pub offer_ttl: Duration,
    /// Most seats in one booking or waitlist entry.
    pub max_seats_per_booking: u32,
    /// What happens when a policy fails.
    pub policy_failure_mode: PolicyFailureMode,
    /// Attempts for a transaction that fails transiently (serialization failure, lost connection).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub retry_base_delay: Duration,
    /// How long a claimed job is leased to a worker.
    pub job_lease: Duration,
    /// Most booking requests for one event that share one transaction. Concurrent requests for the same
    /// event queue behind the one in flight and the next transaction takes them together: one event lock
    /// and one commit for many bookings, which is what lets a hot event go faster than one commit at a
    /// time. Each request still gets its own outcome. `1` turns batching off.
    pub max_batch: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_hold_ttl: Duration::from_secs(10 * 60),
            max_hold_ttl: Duration::from_secs(60 * 60),
            offer_ttl: Duration::from_secs(30 * 60),
            max_seats_per_booking: 20,
            policy_failure_mode: PolicyFailureMode::Reject,
            max_attempts: 5,
            retry_base_delay: Duration::from_millis(5),
            job_lease: Duration::from_secs(5 * 60),
            max_batch: 64,
        }
    }
}

impl EngineConfig {
    fn validate(&self) -> Result<()> {
        if self.default_hold_ttl.is_zero() || self.default_hold_ttl > self.max_hold_ttl {
            return Err(Error::validation(
                "default_hold_ttl",
                "must be positive and at most max_hold_ttl",
            ));
        }
        if self.offer_ttl.is_zero() {
            return Err(Error::validation("offer_ttl", "must be positive"));
        }
        if self.max_seats_per_booking == 0 {
            return Err(Error::validation(
                "max_seats_per_booking",
                "must be at least 1",
            ));
        }
        if self.max_batch == 0 || self.max_batch > 10_000 {
            return Err(Error::validation("max_batch", "must be 1 to 10,000"));
        }
        if self.max_attempts == 0 {
            return Err(Error::validation("max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) policies: PolicyRegistry,
    pub(crate) notifiers: Vec<Arc<dyn Notifier>>,
    /// Where workers take jobs from when it is not the store's own queue (see [`Evently::relay_jobs`]).
    pub(crate) work_queue: Option<Arc<dyn JobQueue>>,
    pub(crate) config: EngineConfig,
    pub(crate) combiner: combiner::Combiner,
}

/// The booking engine. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Evently {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Evently {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evently")
            .field("store", &self.inner.store.backend())
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Assembles an [`Evently`]; only the store is required.
#[derive(Default)]
pub struct EventlyBuilder {
    store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn IdGenerator>>,
    pricing: Option<Arc<dyn PricingPolicy>>,
    waitlist: Option<Arc<dyn WaitlistPolicy>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    work_queue: Option<Arc<dyn JobQueue>>,
    config: EngineConfig,
}

impl EventlyBuilder {
    /// The store (required).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// The id generator (default: UUIDv7 and random ticket numbers).
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = Some(ids);
        self
    }
    /// The default pricing policy (default: [`FixedPrice`](crate::ports::FixedPrice)).
    pub fn pricing(mut self, policy: Arc<dyn PricingPolicy>) -> Self {
        self.pricing = Some(policy);
        self
    }
    /// The default waitlist policy (default: [`FifoWaitlist`](crate::ports::FifoWaitlist)).
    pub fn waitlist(mut self, policy: Arc<dyn WaitlistPolicy>) -> Self {
        self.waitlist = Some(policy);
        self
    }
    /// Adds a delivery channel used by [`Evently::run_jobs`].
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }
    /// The queue workers take jobs from, when it is not the store's own (a Redis queue, say). Jobs are
    /// still written in the store's transactions, as an outbox: no committed change without its job, no
    /// job for a rolled-back one. [`Evently::relay_jobs`] (which the worker runs each pass) hands them
    /// over to this queue; [`Evently::run_jobs`] then claims from it.
    pub fn queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.work_queue = Some(queue);
        self
    }

    /// Tunables.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Evently> {
        let store = self
            .store
            .ok_or_else(|| Error::validation("store", "an engine needs a store"))?;
        self.config.validate()?;
        Ok(Evently {
            inner: Arc::new(Inner {
                store,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                ids: self.ids.unwrap_or_else(|| Arc::new(DefaultIdGenerator)),
                policies: PolicyRegistry::new(
                    self.pricing.unwrap_or_else(|| Arc::new(FixedPrice)),
                    self.waitlist.unwrap_or_else(|| Arc::new(FifoWaitlist)),
                ),
                notifiers: self.notifiers,
                work_queue: self.work_queue,
                config: self.config,
                combiner: combiner::Combiner::default(),
            }),
        })
    }
}

impl Evently {
    /// Starts assembling an engine. Only the store is required; the clock, ids, pricing and waitlist
    /// policies and the configuration have defaults, and notifiers are optional. `build` checks the
    /// configuration once.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// use evently_core::ports::{FifoWaitlist, FixedPrice};
    /// use evently_core::{EngineConfig, Evently};
    ///
    /// let engine = Evently::builder()
    ///     .store(Arc::new(evently_storage::MemoryStore::new()))
    ///     .pricing(Arc::new(FixedPrice))
    ///     .waitlist(Arc::new(FifoWaitlist))
    ///     .config(EngineConfig {
    ///         default_hold_ttl: Duration::from_secs(5 * 60),
    ///         ..EngineConfig::default()
    ///     })
    ///     .build()?;
    /// # let _ = engine;
    ///
    /// // Without a store, or with a configuration that cannot work, `build` says why.
    /// assert!(Evently::builder().build().is_err());
    /// # Ok::<(), evently_core::Error>(())
    /// ```
    pub fn builder() -> EventlyBuilder {
        EventlyBuilder::default()
    }

    /// The engine's current time, to the microsecond.
    pub fn now(&self) -> DateTime<Utc> {
        // Microseconds: what PostgreSQL and the SQLite codec keep, so a record read back from any
        // store equals the one the engine returned when it wrote it (an idempotent replay included).
        use chrono::Timelike;
        let t = self.inner.clock.now();
        let nanos = t.nanosecond();
        // `trunc_subsecs(6)`, without its general rounding arithmetic (this runs in every transaction).
        t.with_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Per-event and default policies, replaceable at run time.
    pub fn policies(&self) -> &PolicyRegistry {
        &self.inner.policies
    }

    /// Runs `op` (one whole transaction) again while it fails transiently, with exponential backoff and
    /// jitter, at most `max_attempts` times.
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.inner.config.max_attempts => {
                    let base =
                        self.inner.config.retry_base_delay * 2u32.saturating_pow(attempt - 1);
                    let jitter = (self.inner.ids.uuid().as_u128() % 1000) as u32;
                    let delay = base + base * jitter / 1000;
                    tracing::warn!(operation = what, attempt, error = %e, ?delay, "retrying transaction");
                    metrics::counter!("evently_tx_retries_total", "operation" => what).increment(1);
                    self.inner.clock.sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A new notification of `kind` for `user_id` at `now`; the caller sets the facts it reports.
    pub(crate) fn notification(
        &self,
        user_id: UserId,
        kind: NotificationKind,
        now: DateTime<Utc>,
    ) -> Notification {
        Notification::new(NotificationId(self.inner.ids.uuid()), user_id, kind, now)
    }
}

/// Records a built notification and enqueues its delivery in the same transaction.
pub(crate) fn record_notification(work: &mut Work, n: Notification, now: DateTime<Utc>) {
    work.changes.new_jobs.push(NewJob::now(
        JobPayload::DeliverNotification {
            notification_id: n.id,
        },
        now,
    ));
    work.changes.new_notifications.push(n);
}

/// Moves a booking's seats between the event's counters for a status change (`from = None` for a new booking).
pub(crate) fn account(
    event: &mut Event,
    booking: &Booking,
    from: Option<BookingStatus>,
) -> Result<()> {
    let q = booking.quantity;
    let corrupt = || {
        Error::Store(StoreError::Corrupt {
            message: format!("seat counters of event {} are out of step", event.id),
        })
    };
    match from {
        Some(BookingStatus::Held) => {
            event.seats_held = event.seats_held.checked_sub(q).ok_or_else(corrupt)?
        }
        Some(BookingStatus::Confirmed) => {
            event.seats_confirmed = event.seats_confirmed.checked_sub(q).ok_or_else(corrupt)?
        }
        Some(_) | None => {}
    }
    match booking.status {
        BookingStatus::Held => {
            event.seats_held = event.seats_held.checked_add(q).ok_or_else(corrupt)?
        }
        BookingStatus::Confirmed => {
            event.seats_confirmed = event.seats_confirmed.checked_add(q).ok_or_else(corrupt)?
        }
        _ => {}
    }
    if u64::from(event.seats_held) + u64::from(event.seats_confirmed) > u64::from(event.capacity) {
        return Err(corrupt());
    }
    Ok(())
}

/// Turns a `Duration` into a chrono one, saturating.
pub(crate) fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
