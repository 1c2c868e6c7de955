//! The storage port: a transaction that reads through repositories and writes one change set
//! ([`Changes`]) at a time.
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
use crate::{BookingId, EventId, NotificationId, StoreError, UserId, WaitlistEntryId};

type R<T> = std::result::Result<T, StoreError>;

/// Everything one step of the engine writes, handed to the store in one call
/// ([`Transaction::apply`]). The engine decides in plain code; the store only stores.
///
/// A store applies the parts in the order the fields are listed (so a ticket may name a booking
/// inserted by the same change set, and an update may follow an insert of the same record), or in
/// any other order with the same outcome. Every check the store makes is the schema's: a change
/// that breaks a constraint fails the whole call with the matching [`StoreError`] kind, named as in
/// `migrations/` (`bookings_user_idempotency_key`, `tickets_number_key`, …). An update of a record
/// that does not exist fails the call too ([`StoreError::Backend`]); so may any change handed to a
/// transaction from [`Store::begin_read`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// New users; a taken e-mail is `users_email_key`.
    pub new_users: Vec<User>,
    /// Users whose name, password hash, role and attributes change (by id).
    pub updated_users: Vec<User>,
    /// New events.
    pub new_events: Vec<Event>,
    /// Events whose every mutable field is written (by id), seat counters and version included. Seats
    /// held plus confirmed above the capacity is `events_seats_within_capacity`.
    pub updated_events: Vec<Event>,
    /// New waitlist entries. The store assigns each its join sequence number (strictly increasing
    /// across the store; `seq` as given is ignored). A second live (waiting or offered) entry for one
    /// user and event is `waitlist_entries_one_live_per_user`, whether inserted or made live by an
    /// update.
    pub new_waitlist_entries: Vec<WaitlistEntry>,
    /// New bookings; a second booking with one user and idempotency key is
    /// `bookings_user_idempotency_key`.
    pub new_bookings: Vec<Booking>,
    /// Bookings whose status, `held_until` and `updated_at` change (by id).
    pub updated_bookings: Vec<Booking>,
    /// Waitlist entries whose status, `notified_at`, `offer_expires_at` and `offer_booking_id`
    /// change (by id).
    pub updated_waitlist_entries: Vec<WaitlistEntry>,
    /// New tickets; a taken number is `tickets_number_key`.
    pub new_tickets: Vec<Ticket>,
    /// New notification records.
    pub new_notifications: Vec<Notification>,
    /// Notifications delivered: `sent_at` is set to the time given, unless it is already set.
    pub notifications_sent: Vec<(NotificationId, DateTime<Utc>)>,
    /// Notifications their recipient read: `read_at` is set to the time given, unless it is already
    /// set (the first read counts).
    pub notifications_read: Vec<(NotificationId, DateTime<Utc>)>,
    /// Channels that delivered a notification, each recorded once (a second record of one channel
    /// keeps the first). A notification that does not exist is a foreign-key violation.
    pub deliveries: Vec<DeliveryRecord>,
    /// Push subscriptions inserted, or replacing the one with the same endpoint (every field: id,
    /// owner, keys, creation time).
    pub push_subscriptions: Vec<PushSubscription>,
    /// Push subscriptions deleted, by endpoint (an endpoint that has none is no error).
    pub removed_push_subscriptions: Vec<String>,
    /// Jobs enqueued: they exist if and only if the transaction commits. A job whose dedupe key a
    /// queued or running job already has is left out (no error).
    pub new_jobs: Vec<NewJob>,
}

/// A channel's delivery of a notification (see [`Changes::deliveries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The notification.
    pub notification_id: NotificationId,
    /// The notifier's name.
    pub channel: String,
    /// When it delivered.
    pub at: DateTime<Utc>,
}

impl Changes {
    /// No changes at all.
    pub fn is_empty(&self) -> bool {
        self.new_users.is_empty()
            && self.updated_users.is_empty()
            && self.new_events.is_empty()
            && self.updated_events.is_empty()
            && self.new_waitlist_entries.is_empty()
            && self.new_bookings.is_empty()
            && self.updated_bookings.is_empty()
            && self.updated_waitlist_entries.is_empty()
            && self.new_tickets.is_empty()
            && self.new_notifications.is_empty()
            && self.notifications_sent.is_empty()
            && self.notifications_read.is_empty()
            && self.deliveries.is_empty()
            && self.push_subscriptions.is_empty()
            && self.removed_push_subscriptions.is_empty()
            && self.new_jobs.is_empty()
    }

    /// The events whose records the change set writes: the events themselves, and the events of
    /// the bookings and waitlist entries it writes (a cache of events and their availability drops
    /// these). May name an event more than once.
    pub fn touched_events(&self) -> impl Iterator<Item = EventId> + '_ {
        let events = self.new_events.iter().chain(&self.updated_events);
        let bookings = self.new_bookings.iter().chain(&self.updated_bookings);
        let entries = self
            .new_waitlist_entries
            .iter()
            .chain(&self.updated_waitlist_entries);
        events
            .map(|e| e.id)
            .chain(bookings.map(|b| b.event_id))
            .chain(entries.map(|e| e.event_id))
    }
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
///
/// A store may run one read-write transaction at a time (the memory store and an embedded
/// key-value store do): a task holding one must not begin another, nor call its job queue, before
/// it ends. The engine never does.
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
}

/// Users.
#[async_trait]
pub trait UserRepository: Send {
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
    /// By id, optionally locking it until the transaction ends.
    async fn event(&mut self, id: EventId, lock: LockMode) -> R<Option<Event>>;
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
    /// A booking's tickets, in number order.
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>>;
    /// By ticket number.
    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>>;
}

/// Which of a user's notifications [`NotificationRepository::notifications_for_user`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationQuery {
    /// At most this many.
    pub limit: u32,
    /// Only those with no `read_at`.
    pub unread_only: bool,
    /// Only those older than this `(created_at, id)`: strictly before it in the list's order (the
    /// last one of the previous page, so pages never repeat or skip a notification).
    pub before: Option<(DateTime<Utc>, NotificationId)>,
}

impl NotificationQuery {
    /// The newest `limit`, read or not.
    pub fn newest(limit: u32) -> Self {
        Self {
            limit,
            unread_only: false,
            before: None,
        }
    }
}

/// Notification records.
#[async_trait]
pub trait NotificationRepository: Send {
    /// By id.
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>>;
    /// A user's notifications, newest first (by creation time, then id, both descending), as
    /// `query` narrows them.
    async fn notifications_for_user(
        &mut self,
        user: UserId,
        query: &NotificationQuery,
    ) -> R<Vec<Notification>>;
    /// The channels (notifier names) that have delivered the notification, in name order.
    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>>;
}

/// Web Push subscriptions.
#[async_trait]
pub trait PushSubscriptionRepository: Send {
    /// A user's subscriptions.
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>>;
}

/// One unit of work: the reads of every repository, and one write call, [`Transaction::apply`].
#[async_trait]
pub trait Transaction:
    UserRepository
    + EventRepository
    + BookingRepository
    + WaitlistRepository
    + TicketRepository
    + NotificationRepository
    + PushSubscriptionRepository
    + Send
{
    /// Writes a change set, all of it or (on an error) none that will ever commit: after an error
    /// the engine only drops the transaction or calls [`Transaction::rollback`]. (A store may take a
    /// failed change set back and let the transaction go on, as the memory and SQLite stores do, or
    /// refuse everything after it, as PostgreSQL does.) Reads later in the
    /// transaction see the changes. May be called more than once before [`Transaction::commit`].
    ///
    /// How a store writes is its own business (one statement, a batch, prepared statements, a map
    /// insert); the outcome is as if the [`Changes`] were applied field by field, in order.
    async fn apply(&mut self, changes: Changes) -> R<()>;

    /// Makes every change durable and visible.
    async fn commit(self: Box<Self>) -> R<()>;
    /// Discards every change (dropping the transaction does the same).
    async fn rollback(self: Box<Self>) -> R<()>;
}
