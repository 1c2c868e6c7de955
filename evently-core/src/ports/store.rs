//! The storage port: repositories behind one transaction.
//!
//! Contract every adapter keeps (the conformance suite, crate `evently-conformance`, checks it):
//! - Everything done through one [`Transaction`] commits atomically or not at all; dropping a
//!   transaction without [`Transaction::commit`] rolls it back.
//! - [`EventRepository::event`] with [`LockMode::ForUpdate`] serialises: no other transaction may read the
//!   same event `ForUpdate`, or change it, until this one ends. The engine locks an event before it reads
//!   or changes any booking or waitlist entry of that event, so this lock is what makes seat accounting safe
//!   across tasks and processes.
//! - Unique, foreign-key and check constraints are reported as the matching [`StoreError`] kinds.
//! - Failures after which the whole transaction may be retried are [`StoreError::Transient`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{
    Booking, Event, EventFilter, NewJob, Notification, PushSubscription, Ticket, User,
    WaitlistEntry, WaitlistStatus,
};
use crate::ports::JobQueue;
use crate::{BookingId, EventId, JobId, NotificationId, StoreError, UserId, WaitlistEntryId};

type R<T> = std::result::Result<T, StoreError>;

/// The engine's decision about one booking request, made while [`Transaction::book_in_step`] holds
/// the event.
pub trait BookingStep {
    /// Checks the request against `event`. To book, accounts the booking's seats in `event` (its seat
    /// counters are the only fields it changes) and returns what to store. `None`: nothing to store,
    /// and `event` must be left as it was.
    fn decide(&mut self, event: &mut Event) -> Option<StepWrites>;
}

/// What a [`BookingStep`] stores.
#[derive(Debug)]
pub struct StepWrites {
    /// The new booking, as [`BookingRepository::insert_booking`] takes it.
    pub booking: Booking,
    /// For a confirmed booking: what [`Transaction::insert_confirmation`] takes.
    pub confirmation: Option<Confirmation>,
}

/// What confirming a booking creates besides the booking (see [`Transaction::insert_confirmation`]).
#[derive(Debug)]
pub struct Confirmation {
    /// Its tickets.
    pub tickets: Vec<Ticket>,
    /// Its confirmation notification.
    pub notification: Box<Notification>,
    /// The job that delivers the notification.
    pub job: NewJob,
}

/// How an event row is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A plain read.
    None,
    /// Lock the event until the transaction ends (`SELECT … FOR UPDATE`).
    ForUpdate,
}

/// A storage backend: hands out transactions and the job queue that shares its data.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Starts a read-write transaction.
    async fn begin(&self) -> R<Box<dyn Transaction>>;

    /// Starts a transaction the caller promises only to read through. Backends with a single writer
    /// (SQLite) serve it from a reader connection. Defaults to [`Store::begin`].
    async fn begin_read(&self) -> R<Box<dyn Transaction>> {
        self.begin().await
    }

    /// The job queue over the same data, so jobs enqueued in a transaction are seen by workers once it commits.
    fn job_queue(&self) -> Arc<dyn JobQueue>;

    /// A short backend name for logs and metrics (`"memory"`, `"sqlite"`, `"postgres"`).
    fn backend(&self) -> &'static str;

    /// Checks the backend answers (used by readiness probes).
    async fn ping(&self) -> R<()>;

    /// Whether concurrent booking requests for one event should share transactions (see
    /// [`EngineConfig::max_batch`](crate::EngineConfig)). Sharing pays off where a transaction costs
    /// round trips and a commit (every database); a store whose transaction is a few microseconds of
    /// computation under a lock (the in-memory store) answers `false`, because queueing the requests
    /// and waking their tasks would cost more than the transactions themselves. Defaults to `true`.
    fn combines_bookings(&self) -> bool {
        true
    }
}

/// Users.
#[async_trait]
pub trait UserRepository: Send {
    /// Inserts; a taken e-mail is [`StoreError::UniqueViolation`].
    async fn insert_user(&mut self, user: &User) -> R<()>;
    /// Updates name, password hash, role and attributes.
    async fn update_user(&mut self, user: &User) -> R<()>;
    /// By id.
    async fn user(&mut self, id: UserId) -> R<Option<User>>;
    /// By e-mail (already lower-cased by the engine).
    async fn user_by_email(&mut self, email: &str) -> R<Option<User>>;
    /// Several by id, in any order; missing ids are left out.
    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>>;
}

/// Events.
#[async_trait]
pub trait EventRepository: Send {
    /// Inserts.
    async fn insert_event(&mut self, event: &Event) -> R<()>;
    /// By id, optionally locking it until the transaction ends.
    async fn event(&mut self, id: EventId, lock: LockMode) -> R<Option<Event>>;
    /// [`EventRepository::event`] into an event the caller already has (overwritten; left as it was
    /// when there is no such event), for a store that can reuse its buffers (the in-memory store
    /// copies the texts into them instead of allocating). Returns whether the event exists. The
    /// default calls `event`.
    async fn event_into(&mut self, id: EventId, lock: LockMode, out: &mut Event) -> R<bool> {
        Ok(match self.event(id, lock).await? {
            Some(e) => {
                *out = e;
                true
            }
            None => false,
        })
    }
    /// Writes every mutable field (including version and seat counters) of an existing event.
    async fn update_event(&mut self, event: &Event) -> R<()>;
    /// Events passing `filter`, ordered by `starts_at`, then id, paged by `limit` and `offset`.
    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>>;
    /// Ids of events having at least one held booking with `held_until <= now`.
    async fn events_with_expired_holds(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<EventId>>;
}

/// Bookings.
#[async_trait]
pub trait BookingRepository: Send {
    /// Inserts; a second booking with the same user and idempotency key is [`StoreError::UniqueViolation`].
    async fn insert_booking(&mut self, booking: &Booking) -> R<()>;
    /// Writes status, `held_until` and `updated_at`.
    async fn update_booking(&mut self, booking: &Booking) -> R<()>;
    /// By id.
    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>>;
    /// By the user's idempotency key.
    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>>;
    /// A user's bookings, newest first.
    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>>;
    /// An event's bookings, oldest first.
    async fn bookings_for_event(&mut self, event: EventId) -> R<Vec<Booking>>;
    /// Held bookings of `event` with `held_until <= now`, earliest first, at most `limit`.
    async fn expired_holds(
        &mut self,
        event: EventId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<Booking>>;
}

/// Waitlist entries.
#[async_trait]
pub trait WaitlistRepository: Send {
    /// Inserts and returns the join sequence number the store assigned (strictly increasing).
    /// A second live (waiting or offered) entry for the same user and event is [`StoreError::UniqueViolation`].
    async fn insert_waitlist_entry(&mut self, entry: &WaitlistEntry) -> R<i64>;
    /// Writes status, `notified_at`, `offer_expires_at` and `offer_booking_id`.
    async fn update_waitlist_entry(&mut self, entry: &WaitlistEntry) -> R<()>;
    /// By id (`position` left `None`; the engine computes it).
    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>>;
    /// The user's waiting or offered entry for the event.
    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>>;
    /// Entries of the event with one of `statuses`, in join order (`seq`).
    async fn waitlist(
        &mut self,
        event: EventId,
        statuses: &[WaitlistStatus],
    ) -> R<Vec<WaitlistEntry>>;
}

/// Tickets.
#[async_trait]
pub trait TicketRepository: Send {
    /// Inserts; a taken ticket number is [`StoreError::UniqueViolation`].
    async fn insert_tickets(&mut self, tickets: &[Ticket]) -> R<()>;
    /// [`TicketRepository::insert_tickets`] with the tickets handed over, for a store that keeps the
    /// records themselves (the in-memory store) and would otherwise copy them. The default borrows
    /// them and calls `insert_tickets`.
    async fn insert_tickets_owned(&mut self, tickets: Vec<Ticket>) -> R<()> {
        self.insert_tickets(&tickets).await
    }
    /// A booking's tickets, in number order.
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>>;
    /// By ticket number.
    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>>;
}

/// Notification records.
#[async_trait]
pub trait NotificationRepository: Send {
    /// Inserts.
    async fn insert_notification(&mut self, n: &Notification) -> R<()>;
    /// [`NotificationRepository::insert_notification`] with the record handed over (see
    /// [`TicketRepository::insert_tickets_owned`]). The default borrows it and calls
    /// `insert_notification`.
    async fn insert_notification_owned(&mut self, n: Notification) -> R<()> {
        self.insert_notification(&n).await
    }
    /// By id.
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>>;
    /// Sets `sent_at` if it is still unset; returns false if it was already set.
    async fn mark_notification_sent(&mut self, id: NotificationId, at: DateTime<Utc>) -> R<bool>;
    /// A user's notifications, newest first, at most `limit`.
    async fn notifications_for_user(&mut self, user: UserId, limit: u32) -> R<Vec<Notification>>;
    /// The channels (notifier names) that have delivered the notification, in name order.
    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>>;
    /// Records that `channel` delivered the notification; false if that was already recorded. A
    /// notification that does not exist is [`StoreError::ForeignKeyViolation`].
    async fn record_notification_delivery(
        &mut self,
        id: NotificationId,
        channel: &str,
        at: DateTime<Utc>,
    ) -> R<bool>;
}

/// Web Push subscriptions.
#[async_trait]
pub trait PushSubscriptionRepository: Send {
    /// Inserts, or replaces the keys and owner of the subscription with the same endpoint.
    async fn upsert_push_subscription(&mut self, sub: &PushSubscription) -> R<()>;
    /// A user's subscriptions.
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>>;
    /// Deletes by endpoint; returns whether one existed.
    async fn delete_push_subscription(&mut self, endpoint: &str) -> R<bool>;
}

/// Enqueueing inside the transaction: the job exists if and only if the transaction commits.
#[async_trait]
pub trait JobSink: Send {
    /// Enqueues; returns `None` when a queued or running job already has the same dedupe key.
    async fn enqueue_job(&mut self, job: &NewJob) -> R<Option<JobId>>;
}

/// One unit of work over every repository.
#[async_trait]
pub trait Transaction:
    UserRepository
    + EventRepository
    + BookingRepository
    + WaitlistRepository
    + TicketRepository
    + NotificationRepository
    + PushSubscriptionRepository
    + JobSink
    + Send
{
    /// Records what confirming a booking creates besides the booking: its tickets, its confirmation
    /// notification and the job that delivers it (the engine calls this once per confirmed booking).
    /// The default calls [`TicketRepository::insert_tickets_owned`],
    /// [`NotificationRepository::insert_notification_owned`] and [`JobSink::enqueue_job`] in turn; a
    /// store may do it in one step (the in-memory store does, and keeps the boxed notification as
    /// it is). Errors as those methods'.
    async fn insert_confirmation(
        &mut self,
        tickets: Vec<Ticket>,
        notification: Box<Notification>,
        job: NewJob,
    ) -> R<()> {
        self.insert_tickets_owned(tickets).await?;
        self.insert_notification_owned(*notification).await?;
        self.enqueue_job(&job).await?;
        Ok(())
    }

    /// Books on one event in one step, the engine's path for a single booking request: reads the
    /// event for update, hands it to `step` (which checks the request against it and, to book,
    /// accounts the seats in it), and stores what `step` returns: the booking, its confirmation
    /// records when it is confirmed, and the event's new seat counters. When `step` returns `None`
    /// nothing is written (the step keeps its own answer). Returns whether the event exists.
    ///
    /// The default does this with [`EventRepository::event`], [`BookingRepository::insert_booking`],
    /// [`Transaction::insert_confirmation`] and [`EventRepository::update_event`]. A store that keeps
    /// its state in memory can do it in place: no copy of the event, one call instead of four (the
    /// in-memory store does; its transaction holds the store's one lock, so this is the part of a
    /// booking no other core can run at the same time). Errors as those methods'.
    async fn book_in_step(
        &mut self,
        event_id: EventId,
        step: &mut (dyn BookingStep + Send),
    ) -> R<bool> {
        let Some(mut event) = self.event(event_id, LockMode::ForUpdate).await? else {
            return Ok(false);
        };
        if let Some(w) = step.decide(&mut event) {
            self.insert_booking(&w.booking).await?;
            if let Some(c) = w.confirmation {
                self.insert_confirmation(c.tickets, c.notification, c.job)
                    .await?;
            }
            self.update_event(&event).await?;
        }
        Ok(true)
    }

    /// Makes every change durable and visible.
    async fn commit(self: Box<Self>) -> R<()>;
    /// Discards every change (dropping the transaction does the same).
    async fn rollback(self: Box<Self>) -> R<()>;
}
