//! # Bring your own store: Evently on redb
//!
//! A complete Evently [`Store`] and [`JobQueue`] on [redb](https://www.redb.org), an embedded
//! key-value database the project does not otherwise use. It passes the whole conformance suite
//! (`tests/conformance.rs`): the storage seam is the read repositories, one write call
//! ([`Transaction::apply`]) and commit.
//!
//! **Layout.** A record is JSON (the model types derive serde) in a table keyed by its id (a UUID, 16
//! bytes); tickets are keyed by number, push subscriptions by endpoint. Every other lookup has an
//! index table whose sorted keys give the order the port documents, e.g. `(event, held_until,
//! booking)` for expired holds. Times in keys are microseconds, as the SQL stores keep them.
//!
//! **Concurrency.** redb runs one write transaction at a time, and `begin_write` blocks the thread
//! while another is open, which would stall a tokio worker. So a writer (an Evently read-write
//! transaction, or one job-queue call) first waits its turn on a `tokio::sync::Mutex`, asynchronously,
//! and holds it for its whole life; in its turn redb's writer is free, and `try_begin_write` (which
//! never blocks) takes it. One writer at a time makes `LockMode::ForUpdate` free. A read-only
//! transaction is a redb snapshot: it never waits and never blocks a writer. Commit (an fsync, for a
//! file) runs on tokio's blocking pool; the other redb calls are short and run in place.
//!
//! **Atomicity.** redb aborts a write transaction dropped without commit. A change set that fails
//! part-way has written its first part into the redb transaction (redb takes no savepoint once a
//! table is open), so the transaction is marked failed: it refuses reads, writes and commit, and can
//! only be dropped or rolled back, as the port allows.

use std::borrow::Borrow;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{
    BookingRepository, Changes, EventRepository, JobStats, NotificationQuery,
    NotificationRepository, PushSubscriptionRepository, TicketRepository, UserRepository,
    WaitlistRepository, lease_end,
};
use evently_core::{
    Booking, BookingId, BookingStatus, Event, EventFilter, EventId, Job, JobId, JobPayload,
    JobQueue, JobStatus, LockMode, NewJob, Notification, NotificationId, PushSubscription, Store,
    StoreError, Ticket, Transaction, User, UserId, WaitlistEntry, WaitlistEntryId, WaitlistStatus,
};
use redb::backends::InMemoryBackend;
use redb::{
    Builder, Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, Table,
    TableDefinition, Value, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

type R<T> = Result<T, StoreError>;

// ---- Tables ------------------------------------------------------------------------------------

/// Records: a key, the record as JSON.
type Records<K> = TableDefinition<'static, K, &'static [u8]>;
/// An index key `(owner, time in µs, id)`; the value is empty.
type Trio = (Uuid, i64, Uuid);

const USERS: Records<Uuid> = TableDefinition::new("users");
const EMAILS: TableDefinition<&str, Uuid> = TableDefinition::new("users_by_email");
const EVENTS: Records<Uuid> = TableDefinition::new("events");
const BOOKINGS: Records<Uuid> = TableDefinition::new("bookings");
/// `(user, idempotency key)` → booking.
const BOOKING_KEYS: TableDefinition<(Uuid, &str), Uuid> = TableDefinition::new("booking_keys");
/// `(user, created_at, booking)`.
const BOOKINGS_BY_USER: TableDefinition<Trio, ()> = TableDefinition::new("bookings_by_user");
/// `(event, created_at, booking)`.
const BOOKINGS_BY_EVENT: TableDefinition<Trio, ()> = TableDefinition::new("bookings_by_event");
/// `(event, held_until, booking)` of held bookings only.
const HOLDS: TableDefinition<Trio, ()> = TableDefinition::new("holds");
const WAITLIST: Records<Uuid> = TableDefinition::new("waitlist");
/// `(event, seq)` → entry: an event's waitlist in join order.
const WAITLIST_BY_EVENT: TableDefinition<(Uuid, i64), Uuid> = TableDefinition::new("waitlist_seq");
/// `(event, user)` → their waiting or offered entry.
const LIVE_ENTRIES: TableDefinition<(Uuid, Uuid), Uuid> = TableDefinition::new("live_entries");
/// Ticket number → ticket.
const TICKETS: Records<&str> = TableDefinition::new("tickets");
/// `(booking, ticket number)`.
const TICKETS_BY_BOOKING: TableDefinition<(Uuid, &str), ()> = TableDefinition::new("tickets_of");
const NOTIFICATIONS: Records<Uuid> = TableDefinition::new("notifications");
/// `(user, created_at, notification)`.
const NOTIFICATIONS_BY_USER: TableDefinition<Trio, ()> = TableDefinition::new("notifications_of");
/// `(notification, channel)` → delivery time (µs).
const DELIVERIES: TableDefinition<(Uuid, &str), i64> = TableDefinition::new("deliveries");
/// Endpoint → push subscription.
const PUSH: Records<&str> = TableDefinition::new("push_subscriptions");
const JOBS: Records<Uuid> = TableDefinition::new("jobs");
/// Dedupe key → its queued or running job.
const JOB_KEYS: TableDefinition<&str, Uuid> = TableDefinition::new("job_keys");
/// Queued jobs, in claim order: `(-priority, run_at, job)`.
const QUEUE: TableDefinition<(i32, i64, Uuid), ()> = TableDefinition::new("job_queue");
/// Running jobs: `(locked_until, job)`.
const LEASES: TableDefinition<(i64, Uuid), ()> = TableDefinition::new("job_leases");
/// Named counters: the last waitlist `seq`.
const COUNTERS: TableDefinition<&str, i64> = TableDefinition::new("counters");

// ---- Errors and encoding -----------------------------------------------------------------------

/// Maps a redb error to the port's error kinds.
trait OrStoreError<T> {
    fn db(self) -> R<T>;
}

impl<T, E: Into<redb::Error>> OrStoreError<T> for Result<T, E> {
    fn db(self) -> R<T> {
        self.map_err(|e| {
            let e = e.into();
            let message = e.to_string();
            match e {
                redb::Error::Corrupted(_) => StoreError::Corrupt { message },
                redb::Error::WouldBlock => StoreError::Transient { message },
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
                    StoreError::Unavailable { message }
                }
                _ => StoreError::Backend { message },
            }
        })
    }
}

fn backend(message: impl Into<String>) -> StoreError {
    StoreError::Backend {
        message: message.into(),
    }
}

fn missing(what: &str) -> StoreError {
    backend(format!("{what} does not exist"))
}

const FAILED: &str = "a change set of this transaction failed: it can only be rolled back";

fn to_json<T: Serialize>(record: &T) -> R<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| backend(e.to_string()))
}

fn corrupt(message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        message: message.to_string(),
    }
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> R<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// `Job` derives no serde: serde's remote derive writes its (de)serializer from this copy of its
/// fields.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Job")]
struct JobJson {
    id: JobId,
    payload: JobPayload,
    priority: i16,
    status: JobStatus,
    run_at: DateTime<Utc>,
    attempts: u32,
    max_attempts: u32,
    dedupe_key: Option<String>,
    last_error: Option<String>,
    locked_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

fn job_to_json(job: &Job) -> R<Vec<u8>> {
    let mut json = Vec::new();
    JobJson::serialize(job, &mut serde_json::Serializer::new(&mut json))
        .map_err(|e| backend(e.to_string()))?;
    Ok(json)
}

fn job_from_json(bytes: &[u8]) -> R<Job> {
    JobJson::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(corrupt)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Every key of `owner` in a [`Trio`] index.
fn all_of(owner: Uuid) -> RangeInclusive<Trio> {
    (owner, i64::MIN, Uuid::nil())..=(owner, i64::MAX, Uuid::max())
}

fn hold_key(b: &Booking) -> Option<Trio> {
    let until = b.held_until.filter(|_| b.status == BookingStatus::Held)?;
    Some((b.event_id.0, micros(until), b.id.0))
}

fn queue_key(j: &Job) -> Option<(i32, i64, Uuid)> {
    (j.status == JobStatus::Queued).then(|| (-i32::from(j.priority), micros(j.run_at), j.id.0))
}

fn lease_key(j: &Job) -> Option<(i64, Uuid)> {
    let until = j.locked_until.filter(|_| j.status == JobStatus::Running)?;
    Some((micros(until), j.id.0))
}

// ---- Reading tables (of either kind of transaction) --------------------------------------------

fn has<'k, K: Key + 'static, V: Value + 'static>(
    table: &impl ReadableTable<K, V>,
    key: impl Borrow<K::SelfType<'k>>,
) -> R<bool> {
    Ok(table.get(key).db()?.is_some())
}

/// The record under `key`, if any.
fn get<'k, K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
) -> R<Option<T>> {
    table
        .get(key)
        .db()?
        .map(|v| from_json(v.value()))
        .transpose()
}

/// The record an index names (a missing one is corrupt data).
fn fetch<'k, K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
) -> R<T> {
    get(table, key)?.ok_or_else(|| corrupt("an index names a record that does not exist"))
}

fn fetch_all<T: DeserializeOwned>(
    table: &impl ReadableTable<Uuid, &'static [u8]>,
    ids: impl IntoIterator<Item = Uuid>,
) -> R<Vec<T>> {
    ids.into_iter().map(|id| fetch(table, id)).collect()
}

/// Every record of the table, in key order.
fn values<K: Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
) -> R<Vec<T>> {
    let rows = table.iter().db()?;
    rows.map(|row| from_json(row.db()?.1.value())).collect()
}

/// The ids (last parts) of the keys of `range`, in key order.
fn ids(index: &impl ReadableTable<Trio, ()>, range: RangeInclusive<Trio>) -> R<Vec<Uuid>> {
    let rows = index.range(range).db()?;
    rows.map(|row| Ok(row.db()?.0.value().2)).collect()
}

fn job_in(jobs: &impl ReadableTable<Uuid, &'static [u8]>, id: JobId) -> R<Option<Job>> {
    jobs.get(id.0)
        .db()?
        .map(|v| job_from_json(v.value()))
        .transpose()
}

// ---- The store ---------------------------------------------------------------------------------

/// An Evently store in a redb database. Clones share the database.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    /// Taken by every read-write transaction for its whole life.
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the database file at `path`, creating it if it is missing. One process at a time may
    /// open it.
    pub fn open(path: impl AsRef<Path>) -> R<Self> {
        Self::init(Database::create(path).db()?)
    }

    /// A new, empty store in memory (for tests).
    pub fn open_temporary() -> R<Self> {
        let db = Builder::new().create_with_backend(InMemoryBackend::new());
        Self::init(db.db()?)
    }

    fn init(db: Database) -> R<Self> {
        // Creates every table, so that read transactions find them.
        let txn = db.begin_write().db()?;
        Tables::open(&txn)?;
        txn.commit().db()?;
        Ok(Self {
            db: Arc::new(db),
            writer: Arc::default(),
        })
    }

    async fn begin_write(&self) -> R<RedbTx<WriteTransaction>> {
        let turn = self.writer.clone().lock_owned().await;
        // The previous writer's redb transaction ended before its turn did, so redb's writer slot is
        // free: `try_begin_write` (never blocks) rather than `begin_write` makes that explicit.
        let txn = self.db.try_begin_write().db()?;
        Ok(RedbTx {
            txn,
            _turn: Some(turn),
            failed: false,
        })
    }

    fn begin_snapshot(&self) -> R<RedbTx<ReadTransaction>> {
        Ok(RedbTx {
            txn: self.db.begin_read().db()?,
            _turn: None,
            failed: false,
        })
    }

    /// Runs `f` on the tables in a write transaction of its own, and commits.
    async fn write<T>(&self, f: impl FnOnce(&mut Tables<'_>) -> R<T> + Send) -> R<T> {
        let tx = self.begin_write().await?;
        let out = f(&mut Tables::open(&tx.txn)?)?;
        tx.finish().await?;
        Ok(out)
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn begin(&self) -> R<Box<dyn Transaction>> {
        Ok(Box::new(self.begin_write().await?))
    }

    async fn begin_read(&self) -> R<Box<dyn Transaction>> {
        Ok(Box::new(self.begin_snapshot()?))
    }

    fn job_queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.clone())
    }

    fn backend(&self) -> &'static str {
        "redb"
    }

    async fn ping(&self) -> R<()> {
        self.begin_snapshot().map(drop)
    }
}

// ---- Transactions ------------------------------------------------------------------------------

/// What the reads need of a redb transaction, a snapshot or a write transaction.
trait Snapshot: Send + Sync + 'static {
    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> R<impl ReadableTable<K, V> + '_>;
    /// The write transaction, if this is one.
    fn writer(&self) -> Option<&WriteTransaction>;
    fn commit(self) -> R<()>;
}

impl Snapshot for ReadTransaction {
    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> R<impl ReadableTable<K, V> + '_> {
        self.open_table(def).db()
    }

    fn writer(&self) -> Option<&WriteTransaction> {
        None
    }

    fn commit(self) -> R<()> {
        Ok(())
    }
}

impl Snapshot for WriteTransaction {
    fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> R<impl ReadableTable<K, V> + '_> {
        self.open_table(def).db()
    }

    fn writer(&self) -> Option<&WriteTransaction> {
        Some(self)
    }

    fn commit(self) -> R<()> {
        WriteTransaction::commit(self).db()
    }
}

/// An Evently transaction. Fields drop in order: the redb transaction (a write transaction aborts
/// unless committed) before the writer's turn, so the next writer finds redb free.
struct RedbTx<T: Snapshot> {
    txn: T,
    _turn: Option<OwnedMutexGuard<()>>,
    /// A change set failed part-way.
    failed: bool,
}

impl<T: Snapshot> RedbTx<T> {
    fn open<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> R<impl ReadableTable<K, V> + '_> {
        if self.failed {
            return Err(backend(FAILED));
        }
        self.txn.table(def)
    }

    /// Commits on the blocking pool; the writer's turn ends after the commit, even if the caller
    /// stops waiting.
    async fn finish(self) -> R<()> {
        if self.failed {
            return Err(backend(FAILED));
        }
        let RedbTx {
            txn, _turn: turn, ..
        } = self;
        let commit = tokio::task::spawn_blocking(move || {
            let done = txn.commit();
            drop(turn);
            done
        });
        commit.await.map_err(|e| backend(e.to_string()))?
    }
}

#[async_trait]
impl<T: Snapshot> Transaction for RedbTx<T> {
    async fn apply(&mut self, changes: Changes) -> R<()> {
        let Some(w) = self.txn.writer() else {
            return Err(backend("a read-only transaction cannot apply changes"));
        };
        if self.failed {
            return Err(backend(FAILED));
        }
        let applied = Tables::open(w).and_then(|mut t| t.apply(changes));
        self.failed = applied.is_err();
        applied
    }

    async fn commit(self: Box<Self>) -> R<()> {
        self.finish().await
    }

    async fn rollback(self: Box<Self>) -> R<()> {
        // Dropping aborts the redb transaction, then ends the writer's turn.
        Ok(())
    }
}

#[async_trait]
impl<T: Snapshot> UserRepository for RedbTx<T> {
    async fn user(&mut self, id: UserId) -> R<Option<User>> {
        get(&self.open(USERS)?, id.0)
    }

    async fn user_by_email(&mut self, email: &str) -> R<Option<User>> {
        let id = self.open(EMAILS)?.get(email).db()?.map(|g| g.value());
        match id {
            Some(id) => get(&self.open(USERS)?, id),
            None => Ok(None),
        }
    }

    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>> {
        let users = self.open(USERS)?;
        ids.iter()
            .filter_map(|id| get(&users, id.0).transpose())
            .collect()
    }
}

#[async_trait]
impl<T: Snapshot> EventRepository for RedbTx<T> {
    async fn event(&mut self, id: EventId, _lock: LockMode) -> R<Option<Event>> {
        // A read-write transaction is the only writer from begin to end: `ForUpdate` needs nothing more.
        get(&self.open(EVENTS)?, id.0)
    }

    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>> {
        // A scan, as the memory store does: events are few, and the filters need each one anyway.
        let mut events: Vec<Event> = values(&self.open(EVENTS)?)?;
        events.retain(|e| filter.matches(e));
        events.sort_by_key(|e| (e.starts_at, e.id));
        let page = events.into_iter().skip(filter.offset as usize);
        Ok(page.take(filter.limit as usize).collect())
    }

    async fn events_with_expired_holds(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<EventId>> {
        let mut due: Vec<EventId> = Vec::new();
        for row in self.open(HOLDS)?.iter().db()? {
            if due.len() >= limit as usize {
                break;
            }
            let (event, until, _) = row.db()?.0.value();
            if until <= micros(now) && due.last() != Some(&EventId(event)) {
                due.push(EventId(event));
            }
        }
        Ok(due)
    }
}

#[async_trait]
impl<T: Snapshot> BookingRepository for RedbTx<T> {
    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        get(&self.open(BOOKINGS)?, id.0)
    }

    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        let id = self
            .open(BOOKING_KEYS)?
            .get((user.0, key))
            .db()?
            .map(|g| g.value());
        match id {
            Some(id) => get(&self.open(BOOKINGS)?, id),
            None => Ok(None),
        }
    }

    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        let newest_first = ids(&self.open(BOOKINGS_BY_USER)?, all_of(user.0))?;
        fetch_all(&self.open(BOOKINGS)?, newest_first.into_iter().rev())
    }

    async fn bookings_for_event(&mut self, event: EventId) -> R<Vec<Booking>> {
        let oldest_first = ids(&self.open(BOOKINGS_BY_EVENT)?, all_of(event.0))?;
        fetch_all(&self.open(BOOKINGS)?, oldest_first)
    }

    async fn expired_holds(
        &mut self,
        event: EventId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<Booking>> {
        let due = (event.0, i64::MIN, Uuid::nil())..=(event.0, micros(now), Uuid::max());
        let earliest_first = ids(&self.open(HOLDS)?, due)?;
        let ids = earliest_first.into_iter().take(limit as usize);
        fetch_all(&self.open(BOOKINGS)?, ids)
    }
}

#[async_trait]
impl<T: Snapshot> WaitlistRepository for RedbTx<T> {
    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>> {
        get(&self.open(WAITLIST)?, id.0)
    }

    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>> {
        let id = self
            .open(LIVE_ENTRIES)?
            .get((event.0, user.0))
            .db()?
            .map(|g| g.value());
        match id {
            Some(id) => get(&self.open(WAITLIST)?, id),
            None => Ok(None),
        }
    }

    async fn waitlist(
        &mut self,
        event: EventId,
        statuses: &[WaitlistStatus],
    ) -> R<Vec<WaitlistEntry>> {
        let index = self.open(WAITLIST_BY_EVENT)?;
        let rows = index
            .range((event.0, i64::MIN)..=(event.0, i64::MAX))
            .db()?;
        let in_seq_order = rows
            .map(|row| Ok(row.db()?.1.value()))
            .collect::<R<Vec<Uuid>>>()?;
        let mut entries: Vec<WaitlistEntry> = fetch_all(&self.open(WAITLIST)?, in_seq_order)?;
        entries.retain(|e| statuses.contains(&e.status));
        Ok(entries)
    }
}

#[async_trait]
impl<T: Snapshot> TicketRepository for RedbTx<T> {
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        let tickets = self.open(TICKETS)?;
        let mut found = Vec::new();
        for row in self
            .open(TICKETS_BY_BOOKING)?
            .range((booking.0, "")..)
            .db()?
        {
            let (key, _) = row.db()?;
            let (of, number) = key.value();
            if of != booking.0 {
                break;
            }
            found.push(fetch(&tickets, number)?);
        }
        Ok(found)
    }

    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        get(&self.open(TICKETS)?, number)
    }
}

#[async_trait]
impl<T: Snapshot> NotificationRepository for RedbTx<T> {
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        get(&self.open(NOTIFICATIONS)?, id.0)
    }

    async fn notifications_for_user(
        &mut self,
        user: UserId,
        query: &NotificationQuery,
    ) -> R<Vec<Notification>> {
        // The index is in (created_at, id) order: newest first is its reverse. The filters read
        // each record (a user's notifications are few).
        let oldest_first = ids(&self.open(NOTIFICATIONS_BY_USER)?, all_of(user.0))?;
        let all: Vec<Notification> =
            fetch_all(&self.open(NOTIFICATIONS)?, oldest_first.into_iter().rev())?;
        Ok(all
            .into_iter()
            .filter(|n| !query.unread_only || n.read_at.is_none())
            .filter(|n| query.before.is_none_or(|b| (n.created_at, n.id) < b))
            .take(query.limit as usize)
            .collect())
    }

    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>> {
        let mut channels = Vec::new();
        for row in self.open(DELIVERIES)?.range((id.0, "")..).db()? {
            let (key, _) = row.db()?;
            let (of, channel) = key.value();
            if of != id.0 {
                break;
            }
            channels.push(channel.to_owned());
        }
        Ok(channels)
    }
}

#[async_trait]
impl<T: Snapshot> PushSubscriptionRepository for RedbTx<T> {
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>> {
        let mut subs: Vec<PushSubscription> = values(&self.open(PUSH)?)?;
        subs.retain(|s| s.user_id == user);
        subs.sort_by(|a, b| (a.created_at, &a.endpoint).cmp(&(b.created_at, &b.endpoint)));
        Ok(subs)
    }
}

// ---- Writing -----------------------------------------------------------------------------------

/// Every table, open for writing in one redb write transaction.
struct Tables<'t> {
    users: Table<'t, Uuid, &'static [u8]>,
    emails: Table<'t, &'static str, Uuid>,
    events: Table<'t, Uuid, &'static [u8]>,
    bookings: Table<'t, Uuid, &'static [u8]>,
    booking_keys: Table<'t, (Uuid, &'static str), Uuid>,
    bookings_by_user: Table<'t, Trio, ()>,
    bookings_by_event: Table<'t, Trio, ()>,
    holds: Table<'t, Trio, ()>,
    waitlist: Table<'t, Uuid, &'static [u8]>,
    waitlist_by_event: Table<'t, (Uuid, i64), Uuid>,
    live_entries: Table<'t, (Uuid, Uuid), Uuid>,
    tickets: Table<'t, &'static str, &'static [u8]>,
    tickets_by_booking: Table<'t, (Uuid, &'static str), ()>,
    notifications: Table<'t, Uuid, &'static [u8]>,
    notifications_by_user: Table<'t, Trio, ()>,
    deliveries: Table<'t, (Uuid, &'static str), i64>,
    push: Table<'t, &'static str, &'static [u8]>,
    jobs: Table<'t, Uuid, &'static [u8]>,
    job_keys: Table<'t, &'static str, Uuid>,
    queue: Table<'t, (i32, i64, Uuid), ()>,
    leases: Table<'t, (i64, Uuid), ()>,
    counters: Table<'t, &'static str, i64>,
}

impl<'t> Tables<'t> {
    fn open(w: &'t WriteTransaction) -> R<Self> {
        Ok(Self {
            users: w.open_table(USERS).db()?,
            emails: w.open_table(EMAILS).db()?,
            events: w.open_table(EVENTS).db()?,
            bookings: w.open_table(BOOKINGS).db()?,
            booking_keys: w.open_table(BOOKING_KEYS).db()?,
            bookings_by_user: w.open_table(BOOKINGS_BY_USER).db()?,
            bookings_by_event: w.open_table(BOOKINGS_BY_EVENT).db()?,
            holds: w.open_table(HOLDS).db()?,
            waitlist: w.open_table(WAITLIST).db()?,
            waitlist_by_event: w.open_table(WAITLIST_BY_EVENT).db()?,
            live_entries: w.open_table(LIVE_ENTRIES).db()?,
            tickets: w.open_table(TICKETS).db()?,
            tickets_by_booking: w.open_table(TICKETS_BY_BOOKING).db()?,
            notifications: w.open_table(NOTIFICATIONS).db()?,
            notifications_by_user: w.open_table(NOTIFICATIONS_BY_USER).db()?,
            deliveries: w.open_table(DELIVERIES).db()?,
            push: w.open_table(PUSH).db()?,
            jobs: w.open_table(JOBS).db()?,
            job_keys: w.open_table(JOB_KEYS).db()?,
            queue: w.open_table(QUEUE).db()?,
            leases: w.open_table(LEASES).db()?,
            counters: w.open_table(COUNTERS).db()?,
        })
    }

    /// Writes a change set field by field, in order, with the schema's checks.
    fn apply(&mut self, c: Changes) -> R<()> {
        for u in c.new_users {
            if has(&self.emails, u.email.as_str())? {
                return Err(StoreError::unique("users_email_key"));
            }
            if has(&self.users, u.id.0)? {
                return Err(StoreError::unique("users_pkey"));
            }
            self.emails.insert(u.email.as_str(), u.id.0).db()?;
            self.users.insert(u.id.0, to_json(&u)?.as_slice()).db()?;
        }
        for u in c.updated_users {
            let old: User = get(&self.users, u.id.0)?.ok_or_else(|| missing("user"))?;
            // E-mail and creation time never change.
            let next = User {
                email: old.email,
                created_at: old.created_at,
                ..u
            };
            self.users
                .insert(next.id.0, to_json(&next)?.as_slice())
                .db()?;
        }
        for e in c.new_events {
            if has(&self.events, e.id.0)? {
                return Err(StoreError::unique("events_pkey"));
            }
            self.events.insert(e.id.0, to_json(&e)?.as_slice()).db()?;
        }
        for e in c.updated_events {
            if u64::from(e.seats_held) + u64::from(e.seats_confirmed) > u64::from(e.capacity) {
                return Err(StoreError::check("events_seats_within_capacity"));
            }
            let old: Event = get(&self.events, e.id.0)?.ok_or_else(|| missing("event"))?;
            let next = Event {
                created_at: old.created_at,
                ..e
            };
            self.events
                .insert(next.id.0, to_json(&next)?.as_slice())
                .db()?;
        }
        for mut w in c.new_waitlist_entries {
            if !has(&self.users, w.user_id.0)? {
                return Err(StoreError::foreign_key("waitlist_entries_user_id_fkey"));
            }
            if !has(&self.events, w.event_id.0)? {
                return Err(StoreError::foreign_key("waitlist_entries_event_id_fkey"));
            }
            if has(&self.waitlist, w.id.0)? {
                return Err(StoreError::unique("waitlist_entries_id_key"));
            }
            // The join sequence, strictly increasing across the store.
            let last = self.counters.get("waitlist_seq").db()?.map(|g| g.value());
            w.seq = last.unwrap_or(0) + 1;
            w.position = None;
            self.counters.insert("waitlist_seq", w.seq).db()?;
            self.waitlist_by_event
                .insert((w.event_id.0, w.seq), w.id.0)
                .db()?;
            self.put_entry(None, &w)?;
        }
        for b in c.new_bookings {
            if !has(&self.users, b.user_id.0)? {
                return Err(StoreError::foreign_key("bookings_user_id_fkey"));
            }
            if !has(&self.events, b.event_id.0)? {
                return Err(StoreError::foreign_key("bookings_event_id_fkey"));
            }
            if let Some(key) = b.idempotency_key.as_deref() {
                if has(&self.booking_keys, (b.user_id.0, key))? {
                    return Err(StoreError::unique("bookings_user_idempotency_key"));
                }
                self.booking_keys.insert((b.user_id.0, key), b.id.0).db()?;
            }
            if has(&self.bookings, b.id.0)? {
                return Err(StoreError::unique("bookings_pkey"));
            }
            let created = micros(b.created_at);
            self.bookings_by_user
                .insert((b.user_id.0, created, b.id.0), ())
                .db()?;
            self.bookings_by_event
                .insert((b.event_id.0, created, b.id.0), ())
                .db()?;
            self.put_booking(None, &b)?;
        }
        for b in c.updated_bookings {
            let old: Booking = get(&self.bookings, b.id.0)?.ok_or_else(|| missing("booking"))?;
            let next = Booking {
                status: b.status,
                held_until: b.held_until,
                updated_at: b.updated_at,
                ..old.clone()
            };
            self.put_booking(Some(&old), &next)?;
        }
        for w in c.updated_waitlist_entries {
            let old: WaitlistEntry =
                get(&self.waitlist, w.id.0)?.ok_or_else(|| missing("waitlist entry"))?;
            let next = WaitlistEntry {
                status: w.status,
                notified_at: w.notified_at,
                offer_expires_at: w.offer_expires_at,
                offer_booking_id: w.offer_booking_id,
                ..old.clone()
            };
            self.put_entry(Some(&old), &next)?;
        }
        for t in c.new_tickets {
            if !has(&self.bookings, t.booking_id.0)? {
                return Err(StoreError::foreign_key("tickets_booking_id_fkey"));
            }
            if has(&self.tickets, t.number.as_str())? {
                return Err(StoreError::unique("tickets_number_key"));
            }
            self.tickets
                .insert(t.number.as_str(), to_json(&t)?.as_slice())
                .db()?;
            let key = (t.booking_id.0, t.number.as_str());
            self.tickets_by_booking.insert(key, ()).db()?;
        }
        for n in c.new_notifications {
            if !has(&self.users, n.user_id.0)? {
                return Err(StoreError::foreign_key("notifications_user_id_fkey"));
            }
            if has(&self.notifications, n.id.0)? {
                return Err(StoreError::unique("notifications_pkey"));
            }
            self.notifications
                .insert(n.id.0, to_json(&n)?.as_slice())
                .db()?;
            let key = (n.user_id.0, micros(n.created_at), n.id.0);
            self.notifications_by_user.insert(key, ()).db()?;
        }
        for (id, at) in c.notifications_sent {
            if let Some(mut n) = get::<_, Notification>(&self.notifications, id.0)?
                && n.sent_at.is_none()
            {
                n.sent_at = Some(at);
                self.notifications
                    .insert(id.0, to_json(&n)?.as_slice())
                    .db()?;
            }
        }
        for (id, at) in c.notifications_read {
            if let Some(mut n) = get::<_, Notification>(&self.notifications, id.0)?
                && n.read_at.is_none()
            {
                n.read_at = Some(at);
                self.notifications
                    .insert(id.0, to_json(&n)?.as_slice())
                    .db()?;
            }
        }
        for d in c.deliveries {
            if !(1..=64).contains(&d.channel.chars().count()) {
                return Err(StoreError::check("notification_deliveries_channel_check"));
            }
            if !has(&self.notifications, d.notification_id.0)? {
                return Err(StoreError::foreign_key(
                    "notification_deliveries_notification_id_fkey",
                ));
            }
            let key = (d.notification_id.0, d.channel.as_str());
            if !has(&self.deliveries, key)? {
                self.deliveries.insert(key, micros(d.at)).db()?;
            }
        }
        for s in c.push_subscriptions {
            if !has(&self.users, s.user_id.0)? {
                return Err(StoreError::foreign_key("push_subscriptions_user_id_fkey"));
            }
            self.push
                .insert(s.endpoint.as_str(), to_json(&s)?.as_slice())
                .db()?;
        }
        for endpoint in c.removed_push_subscriptions {
            self.push.remove(endpoint.as_str()).db()?;
        }
        for job in &c.new_jobs {
            self.enqueue(job)?;
        }
        Ok(())
    }

    /// Writes booking `b` (previously `old`) and its place among the holds.
    fn put_booking(&mut self, old: Option<&Booking>, b: &Booking) -> R<()> {
        self.bookings.insert(b.id.0, to_json(b)?.as_slice()).db()?;
        if let Some(key) = old.and_then(hold_key) {
            self.holds.remove(key).db()?;
        }
        if let Some(key) = hold_key(b) {
            self.holds.insert(key, ()).db()?;
        }
        Ok(())
    }

    /// Writes waitlist entry `w` (previously `old`) and the user's live entry for the event.
    fn put_entry(&mut self, old: Option<&WaitlistEntry>, w: &WaitlistEntry) -> R<()> {
        self.waitlist.insert(w.id.0, to_json(w)?.as_slice()).db()?;
        let live = (w.event_id.0, w.user_id.0);
        if w.status.is_live() {
            let holder = self.live_entries.insert(live, w.id.0).db()?;
            if holder.is_some_and(|h| h.value() != w.id.0) {
                return Err(StoreError::unique("waitlist_entries_one_live_per_user"));
            }
        } else if old.is_some_and(|o| o.status.is_live()) {
            self.live_entries.remove(live).db()?;
        }
        Ok(())
    }

    fn job(&self, id: JobId) -> R<Job> {
        job_in(&self.jobs, id)?.ok_or_else(|| missing("job"))
    }

    /// Writes job `j` (previously `old`), its place in the queue or among the leases, and its
    /// dedupe key, held while it is queued or running.
    fn put_job(&mut self, old: Option<&Job>, j: &Job) -> R<()> {
        self.jobs.insert(j.id.0, job_to_json(j)?.as_slice()).db()?;
        if let Some(key) = old.and_then(queue_key) {
            self.queue.remove(key).db()?;
        }
        if let Some(key) = queue_key(j) {
            self.queue.insert(key, ()).db()?;
        }
        if let Some(key) = old.and_then(lease_key) {
            self.leases.remove(key).db()?;
        }
        if let Some(key) = lease_key(j) {
            self.leases.insert(key, ()).db()?;
        }
        if let Some(key) = j.dedupe_key.as_deref() {
            if matches!(j.status, JobStatus::Queued | JobStatus::Running) {
                self.job_keys.insert(key, j.id.0).db()?;
            } else if self
                .job_keys
                .get(key)
                .db()?
                .is_some_and(|h| h.value() == j.id.0)
            {
                self.job_keys.remove(key).db()?;
            }
        }
        Ok(())
    }

    /// Queues a job unless a queued or running job holds its dedupe key.
    fn enqueue(&mut self, job: &NewJob) -> R<Option<JobId>> {
        if let Some(key) = job.dedupe_key.as_deref()
            && has(&self.job_keys, key)?
        {
            return Ok(None);
        }
        let j = job.queued(JobId::new());
        self.put_job(None, &j)?;
        Ok(Some(j.id))
    }

    fn accept(&mut self, job: &Job) -> R<bool> {
        let key_taken = match job.dedupe_key.as_deref() {
            Some(key) => has(&self.job_keys, key)?,
            None => false,
        };
        if key_taken || has(&self.jobs, job.id.0)? {
            return Ok(false);
        }
        let queued = Job {
            status: JobStatus::Queued,
            locked_until: None,
            ..job.clone()
        };
        self.put_job(None, &queued)?;
        Ok(true)
    }
}

// ---- The job queue -----------------------------------------------------------------------------

#[async_trait]
impl JobQueue for RedbStore {
    fn queue_name(&self) -> &str {
        "redb"
    }

    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>> {
        self.write(|t| t.enqueue(job)).await
    }

    async fn accept(&self, job: &Job) -> R<bool> {
        let taken = self.accept_many(std::slice::from_ref(job)).await?;
        Ok(taken == [true])
    }

    async fn accept_many(&self, jobs: &[Job]) -> R<Vec<bool>> {
        self.write(|t| jobs.iter().map(|j| t.accept(j)).collect())
            .await
    }

    async fn claim(&self, limit: u32, now: DateTime<Utc>, lease: Duration) -> R<Vec<Job>> {
        let limit = limit as usize;
        self.write(|t| {
            // The first `limit` due queued jobs, in claim order, and every lapsed lease.
            let mut due = Vec::new();
            for row in t.queue.iter().db()? {
                if due.len() == limit {
                    break;
                }
                let (_, run_at, id) = row.db()?.0.value();
                if run_at <= micros(now) {
                    due.push(id);
                }
            }
            for row in t.leases.range(..=(micros(now), Uuid::max())).db()? {
                due.push(row.db()?.0.value().1);
            }
            let mut jobs = (due.into_iter())
                .map(|id| t.job(JobId(id)))
                .collect::<R<Vec<Job>>>()?;
            jobs.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
            jobs.truncate(limit);
            for j in &mut jobs {
                let old = j.clone();
                j.status = JobStatus::Running;
                j.attempts += 1;
                j.locked_until = Some(lease_end(now, lease));
                t.put_job(Some(&old), j)?;
            }
            Ok(jobs)
        })
        .await
    }

    async fn complete(&self, id: JobId) -> R<()> {
        self.complete_many(&[id]).await
    }

    async fn complete_many(&self, ids: &[JobId]) -> R<()> {
        self.write(|t| {
            for &id in ids {
                let old = t.job(id)?;
                let done = Job {
                    status: JobStatus::Done,
                    locked_until: None,
                    ..old.clone()
                };
                t.put_job(Some(&old), &done)?;
            }
            Ok(())
        })
        .await
    }

    async fn fail(&self, id: JobId, error: &str, retry_at: Option<DateTime<Utc>>) -> R<()> {
        self.write(|t| {
            let old = t.job(id)?;
            let mut j = Job {
                last_error: Some(error.to_owned()),
                locked_until: None,
                ..old.clone()
            };
            match retry_at {
                Some(at) => (j.status, j.run_at) = (JobStatus::Queued, at),
                None => j.status = JobStatus::Dead,
            }
            t.put_job(Some(&old), &j)
        })
        .await
    }

    async fn job(&self, id: JobId) -> R<Option<Job>> {
        job_in(&self.begin_snapshot()?.open(JOBS)?, id)
    }

    async fn stats(&self) -> R<JobStats> {
        let mut s = JobStats::default();
        for row in self.begin_snapshot()?.open(JOBS)?.iter().db()? {
            let j = job_from_json(row.db()?.1.value())?;
            match j.status {
                JobStatus::Queued => {
                    s.queued += 1;
                    s.retrying += u64::from(j.last_error.is_some());
                }
                JobStatus::Running => s.running += 1,
                JobStatus::Done => s.done += 1,
                JobStatus::Dead => s.dead += 1,
            }
        }
        Ok(s)
    }
}
