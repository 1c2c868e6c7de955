//! An in-memory store. One lock guards all data for the length of a transaction, so transactions are
//! serialisable; an undo log rolls back a transaction that is dropped without commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{
    BookingRepository, BookingStep, Confirmation, EventRepository, JobSink, JobStats,
    NotificationRepository, PushSubscriptionRepository, StepWrites, TicketRepository,
    UserRepository, WaitlistRepository,
};
use evently_core::{
    Booking, BookingId, BookingStatus, Event, EventFilter, EventId, Job, JobId, JobQueue,
    JobStatus, LockMode, NewJob, Notification, NotificationId, PushSubscription, Store, StoreError,
    Ticket, Transaction, User, UserId, WaitlistEntry, WaitlistEntryId, WaitlistStatus,
};

mod lock;
use lock::{SpinGuard, SpinLock};

type R<T> = Result<T, StoreError>;

/// Maps keyed by ids and strings. foldhash: several times faster than SipHash on 16-byte ids, and
/// seeded per process, so keys chosen by users (emails) cannot be aimed at one bucket.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A booking and its tickets, which are inserted together and read together: kept with the booking
/// (as the engine handed them over) instead of in a table of their own, one hash-table insert less per
/// confirmed booking.
struct BookingRow {
    booking: Booking,
    tickets: Vec<Ticket>,
}

#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    users_by_email: HashMap<String, UserId>,
    events: HashMap<EventId, Event>,
    /// Boxed, like the other large records: the table stays small, so growing it copies and touches
    /// less memory (page faults were a third of the CPU time of a booking run).
    bookings: HashMap<BookingId, Box<BookingRow>>,
    bookings_by_key: HashMap<(UserId, String), BookingId>,
    bookings_by_user: HashMap<UserId, Vec<BookingId>>,
    bookings_by_event: HashMap<EventId, Vec<BookingId>>,
    holds: HashMap<EventId, BTreeSet<(DateTime<Utc>, BookingId)>>,
    waitlist: HashMap<WaitlistEntryId, WaitlistEntry>,
    waitlist_by_event: HashMap<EventId, Vec<WaitlistEntryId>>,
    next_seq: i64,
    /// Ticket numbers, by their hash: the booking holding the number. A number whose hash another
    /// number already has goes to `ticket_numbers_extra` instead.
    ticket_numbers: HashMap<u64, BookingId>,
    ticket_numbers_extra: HashMap<String, BookingId>,
    number_hasher: foldhash::fast::RandomState,
    notifications: HashMap<NotificationId, Box<Notification>>,
    notifications_by_user: HashMap<UserId, Vec<NotificationId>>,
    deliveries: HashMap<NotificationId, BTreeMap<String, DateTime<Utc>>>,
    push: HashMap<String, PushSubscription>,
    jobs: HashMap<JobId, Box<Job>>,
    job_dedupe: HashMap<String, JobId>,
    job_ids: JobIds,
}

/// Makes job ids: UUIDv7 (a time in milliseconds, then a sequence number, then random bits), strictly
/// increasing within the store, without the shared clock-sequence context and random-number calls of
/// `Uuid::now_v7` (a job is enqueued in every confirmation transaction, under the store's lock). The
/// time is the job's creation time, which the store records as its `run_at` (the transaction's time
/// for the engine's jobs), so making an id reads no clock.
#[derive(Default)]
struct JobIds {
    last_ms: u64,
    seq: u64,
    rng: u64,
}

impl JobIds {
    fn next(&mut self, at: DateTime<Utc>) -> JobId {
        let now = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        // Never backwards, even if the wall clock is.
        self.last_ms = self.last_ms.max(now);
        self.seq += 1;
        if self.rng == 0 {
            // Seeded once from the system's random source; xorshift64 after that (never 0 again).
            self.rng = (uuid::Uuid::new_v4().as_u64_pair().0) | 1;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // 48 bits of sequence (rand_a and the top of rand_b), then 32 random bits.
        let mut bytes = [0u8; 10];
        bytes[..6].copy_from_slice(&self.seq.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&self.rng.to_be_bytes()[..4]);
        JobId(uuid::Builder::from_unix_timestamp_millis(self.last_ms, &bytes).into_uuid())
    }
}

fn unique(c: &str) -> StoreError {
    StoreError::UniqueViolation {
        constraint: c.to_string(),
    }
}

fn fk(c: &str) -> StoreError {
    StoreError::ForeignKeyViolation {
        constraint: c.to_string(),
    }
}

/// The events table's check: seats held plus confirmed within the capacity.
fn seats_within_capacity(event: &Event) -> R<()> {
    if u64::from(event.seats_held) + u64::from(event.seats_confirmed) > u64::from(event.capacity) {
        return Err(StoreError::CheckViolation {
            constraint: "events_seats_within_capacity".into(),
        });
    }
    Ok(())
}

fn missing(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("{what} does not exist"),
    }
}

impl State {
    fn ticket_by_number(&self, number: &str) -> Option<&Ticket> {
        use std::hash::BuildHasher as _;
        let find = |b: &BookingId| {
            self.bookings
                .get(b)?
                .tickets
                .iter()
                .find(|t| t.number == number)
        };
        self.ticket_numbers
            .get(&self.number_hasher.hash_one(number))
            .and_then(find)
            .or_else(|| self.ticket_numbers_extra.get(number).and_then(find))
    }

    /// Whether the number of `tickets[i]` is stored already, or taken by an earlier ticket of
    /// `tickets` (the tickets_number_key constraint).
    fn number_taken(&self, tickets: &[Ticket], i: usize) -> bool {
        let number = &tickets[i].number;
        self.ticket_by_number(number).is_some() || tickets[..i].iter().any(|o| &o.number == number)
    }

    fn add_ticket_number(&mut self, number: &str, booking: BookingId) {
        use std::collections::hash_map::Entry;
        use std::hash::BuildHasher as _;
        match self
            .ticket_numbers
            .entry(self.number_hasher.hash_one(number))
        {
            Entry::Vacant(e) => {
                e.insert(booking);
            }
            Entry::Occupied(_) => {
                self.ticket_numbers_extra.insert(number.to_owned(), booking);
            }
        }
    }

    fn remove_ticket_number(&mut self, number: &str, booking: BookingId) {
        use std::hash::BuildHasher as _;
        if self.ticket_numbers_extra.get(number) == Some(&booking) {
            self.ticket_numbers_extra.remove(number);
            return;
        }
        let h = self.number_hasher.hash_one(number);
        if self.ticket_numbers.get(&h) == Some(&booking) {
            self.ticket_numbers.remove(&h);
        }
    }

    fn set_hold_index(&mut self, b: &Booking, on: bool) {
        if let Some(t) = b.held_until {
            let set = self.holds.entry(b.event_id).or_default();
            if on && b.status == BookingStatus::Held {
                set.insert((t, b.id));
            } else {
                set.remove(&(t, b.id));
            }
        }
    }

    fn job_stats(&self) -> JobStats {
        let mut s = JobStats::default();
        for j in self.jobs.values() {
            match j.status {
                JobStatus::Queued => {
                    s.queued += 1;
                    if j.last_error.is_some() {
                        s.retrying += 1;
                    }
                }
                JobStatus::Running => s.running += 1,
                JobStatus::Done => s.done += 1,
                JobStatus::Dead => s.dead += 1,
            }
        }
        s
    }

    fn release_dedupe(&mut self, job: &Job) {
        if let Some(k) = &job.dedupe_key
            && self.job_dedupe.get(k) == Some(&job.id)
        {
            self.job_dedupe.remove(k);
        }
    }
}

/// How to take back one change of a transaction. The hot writes of a booking have their own variants
/// (no boxed closure, no copy of the record: the stored record says what to remove); the rest use a
/// closure.
enum Undo {
    /// Remove an inserted booking and its index entries.
    InsertBooking(BookingId),
    /// Remove the last `count` tickets inserted for a booking.
    InsertTickets { booking: BookingId, count: usize },
    /// Remove an inserted notification.
    InsertNotification { id: NotificationId, user: UserId },
    /// Remove an enqueued job.
    InsertJob(JobId),
    /// Restore an event whose text fields were replaced.
    UpdateEvent(Box<Event>),
    /// Restore an event's other fields (its text fields were kept): no allocation on the hot path.
    UpdateEventScalars(EventScalars),
    /// Anything else.
    Other(Box<dyn FnOnce(&mut State) + Send>),
}

impl Undo {
    fn apply(self, s: &mut State) {
        match self {
            Undo::InsertBooking(id) => {
                let Some(row) = s.bookings.remove(&id) else {
                    return;
                };
                let BookingRow {
                    booking: b,
                    tickets,
                } = *row;
                // Its tickets were undone first (the undo log runs backwards); any left go too.
                for t in tickets {
                    s.remove_ticket_number(&t.number, id);
                }
                s.set_hold_index(&b, false);
                if let Some(k) = b.idempotency_key {
                    s.bookings_by_key.remove(&(b.user_id, k));
                }
                if let Some(v) = s.bookings_by_user.get_mut(&b.user_id) {
                    v.retain(|x| *x != id);
                }
                if let Some(v) = s.bookings_by_event.get_mut(&b.event_id) {
                    v.retain(|x| *x != id);
                }
            }
            Undo::InsertTickets { booking, count } => {
                let Some(row) = s.bookings.get_mut(&booking) else {
                    return;
                };
                // Undone in reverse order, so this booking's newest tickets are the ones to go.
                let keep = row.tickets.len().saturating_sub(count);
                let gone: Vec<Ticket> = row.tickets.drain(keep..).collect();
                for t in gone {
                    s.remove_ticket_number(&t.number, booking);
                }
            }
            Undo::InsertNotification { id, user } => {
                s.notifications.remove(&id);
                s.deliveries.remove(&id);
                if let Some(v) = s.notifications_by_user.get_mut(&user) {
                    v.retain(|x| *x != id);
                }
            }
            Undo::InsertJob(id) => {
                if let Some(j) = s.jobs.remove(&id) {
                    s.release_dedupe(&j);
                }
            }
            Undo::UpdateEvent(prev) => {
                s.events.insert(prev.id, *prev);
            }
            Undo::UpdateEventScalars(prev) => {
                if let Some(slot) = s.events.get_mut(&prev.id) {
                    prev.restore(slot);
                }
            }
            Undo::Other(f) => f(s),
        }
    }
}

/// The fields of an event besides its texts (and its id and creation time, which never change).
struct EventScalars {
    id: EventId,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    capacity: u32,
    price: evently_core::Money,
    active: bool,
    version: u64,
    seats_held: u32,
    seats_confirmed: u32,
    updated_at: DateTime<Utc>,
}

impl EventScalars {
    fn of(e: &Event) -> Self {
        // Every field named, so a new one cannot be forgotten here.
        let Event {
            id,
            name: _,
            description: _,
            venue: _,
            category: _,
            starts_at,
            ends_at,
            capacity,
            price,
            active,
            version,
            seats_held,
            seats_confirmed,
            created_at: _,
            updated_at,
        } = *e;
        Self {
            id,
            starts_at,
            ends_at,
            capacity,
            price,
            active,
            version,
            seats_held,
            seats_confirmed,
            updated_at,
        }
    }

    fn restore(&self, e: &mut Event) {
        e.starts_at = self.starts_at;
        e.ends_at = self.ends_at;
        e.capacity = self.capacity;
        e.price = self.price;
        e.active = self.active;
        e.version = self.version;
        e.seats_held = self.seats_held;
        e.seats_confirmed = self.seats_confirmed;
        e.updated_at = self.updated_at;
    }
}

/// The in-memory store. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: SpinLock<State>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn begin(&self) -> R<Box<dyn Transaction>> {
        // This thread's spare undo log, taken before the lock: the store's state stays untouched
        // by it (another core's writes to a shared spare would move its cache line on every booking).
        // The transaction's box too: no allocation while holding the lock.
        let mut tx = Box::new(MemoryTx {
            guard: None,
            undo: SPARE_UNDO.take(),
        });
        tx.guard = Some(self.state.lock().await);
        Ok(tx)
    }

    fn job_queue(&self) -> Arc<dyn JobQueue> {
        Arc::new(self.clone())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> R<()> {
        Ok(())
    }

    /// No: a transaction here is a few microseconds under the store's lock, which a waiting task
    /// takes by spinning briefly (see `lock`); sharing transactions would add queueing and wake-ups.
    fn combines_bookings(&self) -> bool {
        false
    }
}

thread_local! {
    /// The undo log's allocation, kept between this thread's transactions.
    static SPARE_UNDO: std::cell::Cell<Vec<Undo>> = const { std::cell::Cell::new(Vec::new()) };
}

struct MemoryTx {
    guard: Option<SpinGuard<State>>,
    undo: Vec<Undo>,
}

impl MemoryTx {
    fn st(&mut self) -> &mut State {
        // The guard is taken out only by commit/rollback, which consume the transaction.
        self.guard.as_mut().expect("transaction already ended")
    }

    fn on_rollback(&mut self, f: impl FnOnce(&mut State) + Send + 'static) {
        self.undo.push(Undo::Other(Box::new(f)));
    }

    fn roll_back(&mut self) {
        if let Some(mut g) = self.guard.take() {
            while let Some(u) = self.undo.pop() {
                u.apply(&mut g);
            }
            drop(g);
            SPARE_UNDO.set(std::mem::take(&mut self.undo));
        }
    }

    /// Stores tickets (moved in) after checking them; see [`TicketRepository::insert_tickets`].
    fn put_tickets(&mut self, tickets: Vec<Ticket>) -> R<()> {
        let st = self.st();
        for (i, t) in tickets.iter().enumerate() {
            if !st.bookings.contains_key(&t.booking_id) {
                return Err(fk("tickets_booking_id_fkey"));
            }
            if st.number_taken(&tickets, i) {
                return Err(unique("tickets_number_key"));
            }
        }
        let Some(first) = tickets.first().map(|t| t.booking_id) else {
            return Ok(());
        };
        if tickets.iter().all(|t| t.booking_id == first) {
            // The engine's case: one booking's tickets, kept as handed over.
            for t in &tickets {
                st.add_ticket_number(&t.number, first);
            }
            let count = tickets.len();
            let Some(row) = st.bookings.get_mut(&first) else {
                return Err(fk("tickets_booking_id_fkey"));
            };
            if row.tickets.is_empty() {
                row.tickets = tickets;
            } else {
                row.tickets.extend(tickets);
            }
            self.undo.push(Undo::InsertTickets {
                booking: first,
                count,
            });
            return Ok(());
        }
        // Grouped by booking, so each group can be undone as "the newest `count` of this booking".
        let mut undo: Vec<Undo> = Vec::new();
        for t in tickets {
            st.add_ticket_number(&t.number, t.booking_id);
            match undo.last_mut() {
                Some(Undo::InsertTickets { booking, count }) if *booking == t.booking_id => {
                    *count += 1;
                }
                _ => undo.push(Undo::InsertTickets {
                    booking: t.booking_id,
                    count: 1,
                }),
            }
            // Checked above: every ticket's booking exists.
            if let Some(row) = st.bookings.get_mut(&t.booking_id) {
                row.tickets.push(t);
            }
        }
        self.undo.extend(undo);
        Ok(())
    }

    /// Stores a booking (moved in); see [`BookingRepository::insert_booking`].
    fn put_booking(&mut self, b: Booking) -> R<()> {
        let st = self.st();
        if !st.users.contains_key(&b.user_id) {
            return Err(fk("bookings_user_id_fkey"));
        }
        if !st.events.contains_key(&b.event_id) {
            return Err(fk("bookings_event_id_fkey"));
        }
        if st.bookings.contains_key(&b.id) {
            return Err(unique("bookings_pkey"));
        }
        let key = b.idempotency_key.as_ref().map(|k| (b.user_id, k.clone()));
        if key
            .as_ref()
            .is_some_and(|k| st.bookings_by_key.contains_key(k))
        {
            return Err(unique("bookings_user_idempotency_key"));
        }
        if let Some(k) = key {
            st.bookings_by_key.insert(k, b.id);
        }
        self.store_booking(b, Vec::new());
        Ok(())
    }

    /// Stores a checked booking (its id free, its user and event there, its idempotency key, if
    /// any, already indexed) with its tickets (their numbers already recorded), and its other index
    /// entries. The undo entry takes all of them back.
    fn store_booking(&mut self, b: Booking, tickets: Vec<Ticket>) {
        let st = self.st();
        st.set_hold_index(&b, true);
        let (id, user, event) = (b.id, b.user_id, b.event_id);
        st.bookings.insert(
            id,
            Box::new(BookingRow {
                booking: b,
                tickets,
            }),
        );
        st.bookings_by_user.entry(user).or_default().push(id);
        st.bookings_by_event.entry(event).or_default().push(id);
        self.undo.push(Undo::InsertBooking(id));
    }

    /// Stores what a booking step decided (see [`Transaction::book_in_step`]). The engine's shape (a
    /// confirmed booking without idempotency key, its tickets, and a notification for its user) is
    /// stored in one pass: every check first, the inserts after. The checks probe the big tables
    /// (bookings, ticket numbers, notifications, jobs), each probe a likely cache miss once the
    /// tables outgrow the cache; made one after the other with little in between, the processor
    /// waits for them together instead of in turn, and the inserts then find the lines in its cache.
    /// The checks, and the errors they give, are those of `put_booking` and `put_confirmation`,
    /// which store any other shape.
    fn put_step(&mut self, w: StepWrites) -> R<()> {
        let StepWrites {
            booking: b,
            confirmation,
        } = w;
        let Some(c) = confirmation else {
            return self.put_booking(b);
        };
        if b.idempotency_key.is_some()
            || c.tickets.iter().any(|t| t.booking_id != b.id)
            || c.job.dedupe_key.is_some()
        {
            self.put_booking(b)?;
            return self.put_confirmation(c.tickets, c.notification, c.job);
        }
        let Confirmation {
            tickets,
            notification: n,
            job,
        } = c;
        let st = self.st();
        let booking_taken = st.bookings.contains_key(&b.id);
        let number_taken = (0..tickets.len()).any(|i| st.number_taken(&tickets, i));
        let notification_taken = st.notifications.contains_key(&n.id);
        let job_id = st.job_ids.next(job.run_at);
        let job_taken = st.jobs.contains_key(&job_id);
        if !st.users.contains_key(&b.user_id) {
            return Err(fk("bookings_user_id_fkey"));
        }
        if !st.events.contains_key(&b.event_id) {
            return Err(fk("bookings_event_id_fkey"));
        }
        if booking_taken {
            return Err(unique("bookings_pkey"));
        }
        if number_taken {
            return Err(unique("tickets_number_key"));
        }
        if n.user_id != b.user_id && !st.users.contains_key(&n.user_id) {
            return Err(fk("notifications_user_id_fkey"));
        }
        if notification_taken {
            return Err(unique("notifications_pkey"));
        }
        if job_taken {
            // The store makes job ids strictly increasing, so this would take a corrupt id
            // sequence; refused rather than replacing a job.
            return Err(unique("jobs_pkey"));
        }
        // Undone by `InsertBooking`, which takes the tickets' numbers with the booking.
        for t in &tickets {
            st.add_ticket_number(&t.number, b.id);
        }
        self.store_booking(b, tickets);
        self.put_notification_checked(n);
        let st = self.st();
        st.jobs.insert(job_id, Box::new(job.queued(job_id)));
        self.undo.push(Undo::InsertJob(job_id));
        Ok(())
    }

    /// Stores a booking's confirmation records; see [`Transaction::insert_confirmation`].
    fn put_confirmation(
        &mut self,
        tickets: Vec<Ticket>,
        notification: Box<Notification>,
        job: NewJob,
    ) -> R<()> {
        self.put_tickets(tickets)?;
        self.put_notification(notification)?;
        if let Some(id) = insert_job(self.st(), &job) {
            self.undo.push(Undo::InsertJob(id));
        }
        Ok(())
    }

    /// Stores a notification (moved in); see [`NotificationRepository::insert_notification`].
    fn put_notification(&mut self, n: Box<Notification>) -> R<()> {
        let st = self.st();
        if !st.users.contains_key(&n.user_id) {
            return Err(fk("notifications_user_id_fkey"));
        }
        if st.notifications.contains_key(&n.id) {
            return Err(unique("notifications_pkey"));
        }
        self.put_notification_checked(n);
        Ok(())
    }

    /// Stores a checked notification (its id free, its user there).
    fn put_notification_checked(&mut self, n: Box<Notification>) {
        let st = self.st();
        let (id, user) = (n.id, n.user_id);
        st.notifications.insert(id, n);
        st.notifications_by_user.entry(user).or_default().push(id);
        self.undo.push(Undo::InsertNotification { id, user });
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        self.roll_back();
    }
}

#[async_trait]
impl Transaction for MemoryTx {
    /// In one step: one call (and one boxed future) instead of three on the booking path.
    async fn insert_confirmation(
        &mut self,
        tickets: Vec<Ticket>,
        notification: Box<Notification>,
        job: NewJob,
    ) -> R<()> {
        self.put_confirmation(tickets, notification, job)
    }

    /// In place, under the store's lock: the step sees the stored event itself (no copy of its
    /// texts), and the booking and its records are moved in.
    async fn book_in_step(
        &mut self,
        event_id: EventId,
        step: &mut (dyn BookingStep + Send),
    ) -> R<bool> {
        let Some(event) = self.st().events.get_mut(&event_id) else {
            return Ok(false);
        };
        let before = EventScalars::of(event);
        let Some(w) = step.decide(event) else {
            before.restore(event);
            return Ok(true);
        };
        if let Err(e) = seats_within_capacity(event) {
            before.restore(event);
            return Err(e);
        }
        self.undo.push(Undo::UpdateEventScalars(before));
        self.put_step(w)?;
        Ok(true)
    }

    async fn commit(mut self: Box<Self>) -> R<()> {
        self.undo.clear();
        drop(self.guard.take());
        SPARE_UNDO.set(std::mem::take(&mut self.undo));
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) -> R<()> {
        self.roll_back();
        Ok(())
    }
}

#[async_trait]
impl UserRepository for MemoryTx {
    async fn insert_user(&mut self, user: &User) -> R<()> {
        let st = self.st();
        if st.users_by_email.contains_key(&user.email) {
            return Err(unique("users_email_key"));
        }
        if st.users.contains_key(&user.id) {
            return Err(unique("users_pkey"));
        }
        st.users.insert(user.id, user.clone());
        st.users_by_email.insert(user.email.clone(), user.id);
        let (id, email) = (user.id, user.email.clone());
        self.on_rollback(move |s| {
            s.users.remove(&id);
            s.users_by_email.remove(&email);
        });
        Ok(())
    }

    async fn update_user(&mut self, user: &User) -> R<()> {
        let st = self.st();
        let Some(old) = st.users.get_mut(&user.id) else {
            return Err(missing("user"));
        };
        let prev = std::mem::replace(
            old,
            User {
                email: old.email.clone(),
                created_at: old.created_at,
                ..user.clone()
            },
        );
        self.on_rollback(move |s| {
            s.users.insert(prev.id, prev);
        });
        Ok(())
    }

    async fn user(&mut self, id: UserId) -> R<Option<User>> {
        Ok(self.st().users.get(&id).cloned())
    }

    async fn user_by_email(&mut self, email: &str) -> R<Option<User>> {
        let st = self.st();
        Ok(st
            .users_by_email
            .get(email)
            .and_then(|id| st.users.get(id))
            .cloned())
    }

    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>> {
        let st = self.st();
        Ok(ids
            .iter()
            .filter_map(|id| st.users.get(id))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl EventRepository for MemoryTx {
    async fn insert_event(&mut self, event: &Event) -> R<()> {
        let st = self.st();
        if st.events.contains_key(&event.id) {
            return Err(unique("events_pkey"));
        }
        st.events.insert(event.id, event.clone());
        let id = event.id;
        self.on_rollback(move |s| {
            s.events.remove(&id);
        });
        Ok(())
    }

    async fn event(&mut self, id: EventId, _lock: LockMode) -> R<Option<Event>> {
        // The whole store is locked for the transaction, so ForUpdate needs nothing more.
        Ok(self.st().events.get(&id).cloned())
    }

    async fn event_into(&mut self, id: EventId, _lock: LockMode, out: &mut Event) -> R<bool> {
        Ok(match self.st().events.get(&id) {
            Some(e) => {
                out.clone_from(e);
                true
            }
            None => false,
        })
    }

    async fn update_event(&mut self, event: &Event) -> R<()> {
        seats_within_capacity(event)?;
        let st = self.st();
        let Some(slot) = st.events.get_mut(&event.id) else {
            return Err(missing("event"));
        };
        // Most updates change only counters: copy the other fields, and the text fields only when
        // one changed.
        let texts = slot.name != event.name
            || slot.description != event.description
            || slot.venue != event.venue
            || slot.category != event.category;
        if texts {
            let prev = std::mem::replace(
                slot,
                Event {
                    created_at: slot.created_at,
                    ..event.clone()
                },
            );
            self.undo.push(Undo::UpdateEvent(Box::new(prev)));
        } else {
            let prev = EventScalars::of(slot);
            EventScalars::of(event).restore(slot);
            self.undo.push(Undo::UpdateEventScalars(prev));
        }
        Ok(())
    }

    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>> {
        let mut v: Vec<Event> = self
            .st()
            .events
            .values()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        v.sort_by_key(|a| (a.starts_at, a.id));
        Ok(v.into_iter()
            .skip(filter.offset as usize)
            .take(filter.limit as usize)
            .collect())
    }

    async fn events_with_expired_holds(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<EventId>> {
        let st = self.st();
        let mut ids: Vec<EventId> = st
            .holds
            .iter()
            .filter(|(_, set)| set.first().is_some_and(|(t, _)| *t <= now))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids.truncate(limit as usize);
        Ok(ids)
    }
}

#[async_trait]
impl BookingRepository for MemoryTx {
    async fn insert_booking(&mut self, b: &Booking) -> R<()> {
        self.put_booking(b.clone())
    }

    async fn update_booking(&mut self, b: &Booking) -> R<()> {
        let st = self.st();
        let Some(slot) = st.bookings.get_mut(&b.id) else {
            return Err(missing("booking"));
        };
        let mut next = slot.booking.clone();
        next.status = b.status;
        next.held_until = b.held_until;
        next.updated_at = b.updated_at;
        let prev = std::mem::replace(&mut slot.booking, next.clone());
        st.set_hold_index(&prev, false);
        st.set_hold_index(&next, true);
        self.on_rollback(move |s| {
            s.set_hold_index(&next, false);
            s.set_hold_index(&prev, true);
            if let Some(row) = s.bookings.get_mut(&prev.id) {
                row.booking = prev;
            }
        });
        Ok(())
    }

    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        Ok(self.st().bookings.get(&id).map(|r| r.booking.clone()))
    }

    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        let st = self.st();
        Ok(st
            .bookings_by_key
            .get(&(user, key.to_string()))
            .and_then(|id| st.bookings.get(id))
            .map(|r| r.booking.clone()))
    }

    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        let st = self.st();
        let mut v: Vec<Booking> = st
            .bookings_by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| st.bookings.get(id))
            .map(|r| r.booking.clone())
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
        Ok(v)
    }

    async fn bookings_for_event(&mut self, event: EventId) -> R<Vec<Booking>> {
        let st = self.st();
        let mut v: Vec<Booking> = st
            .bookings_by_event
            .get(&event)
            .into_iter()
            .flatten()
            .filter_map(|id| st.bookings.get(id))
            .map(|r| r.booking.clone())
            .collect();
        v.sort_by_key(|a| (a.created_at, a.id));
        Ok(v)
    }

    async fn expired_holds(
        &mut self,
        event: EventId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<Booking>> {
        let st = self.st();
        let Some(set) = st.holds.get(&event) else {
            return Ok(vec![]);
        };
        Ok(set
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit as usize)
            .filter_map(|(_, id)| st.bookings.get(id))
            .map(|r| r.booking.clone())
            .collect())
    }
}

#[async_trait]
impl WaitlistRepository for MemoryTx {
    async fn insert_waitlist_entry(&mut self, e: &WaitlistEntry) -> R<i64> {
        let st = self.st();
        if !st.users.contains_key(&e.user_id) {
            return Err(fk("waitlist_entries_user_id_fkey"));
        }
        if !st.events.contains_key(&e.event_id) {
            return Err(fk("waitlist_entries_event_id_fkey"));
        }
        let live_exists = st
            .waitlist_by_event
            .get(&e.event_id)
            .into_iter()
            .flatten()
            .filter_map(|id| st.waitlist.get(id))
            .any(|x| x.user_id == e.user_id && x.status.is_live());
        if live_exists && e.status.is_live() {
            return Err(unique("waitlist_entries_one_live_per_user"));
        }
        st.next_seq += 1;
        let seq = st.next_seq;
        let mut stored = e.clone();
        stored.seq = seq;
        stored.position = None;
        st.waitlist.insert(e.id, stored);
        st.waitlist_by_event
            .entry(e.event_id)
            .or_default()
            .push(e.id);
        let (id, event) = (e.id, e.event_id);
        self.on_rollback(move |s| {
            s.waitlist.remove(&id);
            if let Some(v) = s.waitlist_by_event.get_mut(&event) {
                v.retain(|x| *x != id);
            }
        });
        Ok(seq)
    }

    async fn update_waitlist_entry(&mut self, e: &WaitlistEntry) -> R<()> {
        let st = self.st();
        let Some(slot) = st.waitlist.get_mut(&e.id) else {
            return Err(missing("waitlist entry"));
        };
        let mut next = slot.clone();
        next.status = e.status;
        next.notified_at = e.notified_at;
        next.offer_expires_at = e.offer_expires_at;
        next.offer_booking_id = e.offer_booking_id;
        let prev = std::mem::replace(slot, next);
        self.on_rollback(move |s| {
            s.waitlist.insert(prev.id, prev);
        });
        Ok(())
    }

    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>> {
        Ok(self.st().waitlist.get(&id).cloned())
    }

    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>> {
        let st = self.st();
        Ok(st
            .waitlist_by_event
            .get(&event)
            .into_iter()
            .flatten()
            .filter_map(|id| st.waitlist.get(id))
            .find(|x| x.user_id == user && x.status.is_live())
            .cloned())
    }

    async fn waitlist(
        &mut self,
        event: EventId,
        statuses: &[WaitlistStatus],
    ) -> R<Vec<WaitlistEntry>> {
        let st = self.st();
        // Entries are appended in seq order.
        Ok(st
            .waitlist_by_event
            .get(&event)
            .into_iter()
            .flatten()
            .filter_map(|id| st.waitlist.get(id))
            .filter(|x| statuses.contains(&x.status))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl TicketRepository for MemoryTx {
    async fn insert_tickets(&mut self, tickets: &[Ticket]) -> R<()> {
        self.put_tickets(tickets.to_vec())
    }

    async fn insert_tickets_owned(&mut self, tickets: Vec<Ticket>) -> R<()> {
        self.put_tickets(tickets)
    }

    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        let st = self.st();
        let mut v: Vec<Ticket> = st
            .bookings
            .get(&booking)
            .map(|r| r.tickets.clone())
            .unwrap_or_default();
        v.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(v)
    }

    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        Ok(self.st().ticket_by_number(number).cloned())
    }
}

#[async_trait]
impl NotificationRepository for MemoryTx {
    async fn insert_notification(&mut self, n: &Notification) -> R<()> {
        self.put_notification(Box::new(n.clone()))
    }

    async fn insert_notification_owned(&mut self, n: Notification) -> R<()> {
        self.put_notification(Box::new(n))
    }

    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        Ok(self.st().notifications.get(&id).map(|n| (**n).clone()))
    }

    async fn mark_notification_sent(&mut self, id: NotificationId, at: DateTime<Utc>) -> R<bool> {
        let st = self.st();
        let Some(n) = st.notifications.get_mut(&id) else {
            return Ok(false);
        };
        if n.sent_at.is_some() {
            return Ok(false);
        }
        n.sent_at = Some(at);
        self.on_rollback(move |s| {
            if let Some(n) = s.notifications.get_mut(&id) {
                n.sent_at = None;
            }
        });
        Ok(true)
    }

    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>> {
        Ok(self
            .st()
            .deliveries
            .get(&id)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn record_notification_delivery(
        &mut self,
        id: NotificationId,
        channel: &str,
        at: DateTime<Utc>,
    ) -> R<bool> {
        if channel.is_empty() || channel.chars().count() > 64 {
            return Err(StoreError::CheckViolation {
                constraint: "notification_deliveries_channel_check".into(),
            });
        }
        let st = self.st();
        if !st.notifications.contains_key(&id) {
            return Err(fk("notification_deliveries_notification_id_fkey"));
        }
        let channels = st.deliveries.entry(id).or_default();
        if channels.contains_key(channel) {
            return Ok(false);
        }
        channels.insert(channel.to_owned(), at);
        let channel = channel.to_owned();
        self.on_rollback(move |s| {
            if let Some(m) = s.deliveries.get_mut(&id) {
                m.remove(&channel);
            }
        });
        Ok(true)
    }

    async fn notifications_for_user(&mut self, user: UserId, limit: u32) -> R<Vec<Notification>> {
        let st = self.st();
        let mut v: Vec<Notification> = st
            .notifications_by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| st.notifications.get(id))
            .map(|n| (**n).clone())
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
        v.truncate(limit as usize);
        Ok(v)
    }
}

#[async_trait]
impl PushSubscriptionRepository for MemoryTx {
    async fn upsert_push_subscription(&mut self, sub: &PushSubscription) -> R<()> {
        let st = self.st();
        if !st.users.contains_key(&sub.user_id) {
            return Err(fk("push_subscriptions_user_id_fkey"));
        }
        let prev = st.push.insert(sub.endpoint.clone(), sub.clone());
        let endpoint = sub.endpoint.clone();
        self.on_rollback(move |s| match prev {
            Some(p) => {
                s.push.insert(endpoint, p);
            }
            None => {
                s.push.remove(&endpoint);
            }
        });
        Ok(())
    }

    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>> {
        let mut v: Vec<PushSubscription> = self
            .st()
            .push
            .values()
            .filter(|s| s.user_id == user)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.endpoint).cmp(&(b.created_at, &b.endpoint)));
        Ok(v)
    }

    async fn delete_push_subscription(&mut self, endpoint: &str) -> R<bool> {
        let Some(prev) = self.st().push.remove(endpoint) else {
            return Ok(false);
        };
        self.on_rollback(move |s| {
            s.push.insert(prev.endpoint.clone(), prev);
        });
        Ok(true)
    }
}

fn insert_job(st: &mut State, job: &NewJob) -> Option<JobId> {
    if let Some(k) = &job.dedupe_key
        && st.job_dedupe.contains_key(k)
    {
        return None;
    }
    let j = job.queued(st.job_ids.next(job.run_at));
    let id = j.id;
    if let Some(k) = &j.dedupe_key {
        st.job_dedupe.insert(k.clone(), id);
    }
    st.jobs.insert(id, Box::new(j));
    Some(id)
}

#[async_trait]
impl JobSink for MemoryTx {
    async fn enqueue_job(&mut self, job: &NewJob) -> R<Option<JobId>> {
        let Some(id) = insert_job(self.st(), job) else {
            return Ok(None);
        };
        self.undo.push(Undo::InsertJob(id));
        Ok(Some(id))
    }
}

#[async_trait]
impl JobQueue for MemoryStore {
    fn queue_name(&self) -> &str {
        "memory"
    }

    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>> {
        Ok(insert_job(&mut *self.state.lock().await, job))
    }

    async fn accept(&self, job: &Job) -> R<bool> {
        let mut st = self.state.lock().await;
        if st.jobs.contains_key(&job.id)
            || job
                .dedupe_key
                .as_ref()
                .is_some_and(|k| st.job_dedupe.contains_key(k))
        {
            return Ok(false);
        }
        let j = Job {
            status: JobStatus::Queued,
            locked_until: None,
            ..job.clone()
        };
        if let Some(k) = &j.dedupe_key {
            st.job_dedupe.insert(k.clone(), j.id);
        }
        st.jobs.insert(j.id, Box::new(j));
        Ok(true)
    }

    async fn claim(&self, limit: u32, now: DateTime<Utc>, lease: Duration) -> R<Vec<Job>> {
        let mut st = self.state.lock().await;
        let mut due: Vec<&Job> = st
            .jobs
            .values()
            .map(|j| &**j)
            .filter(|j| match j.status {
                JobStatus::Queued => j.run_at <= now,
                JobStatus::Running => j.locked_until.is_some_and(|t| t <= now),
                _ => false,
            })
            .collect();
        due.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
        let ids: Vec<JobId> = due.iter().take(limit as usize).map(|j| j.id).collect();
        let until = evently_core::ports::lease_end(now, lease);
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let j = st.jobs.get_mut(&id)?;
                j.status = JobStatus::Running;
                j.attempts += 1;
                j.locked_until = Some(until);
                Some((**j).clone())
            })
            .collect())
    }

    async fn complete(&self, id: JobId) -> R<()> {
        self.complete_many(&[id]).await
    }

    async fn complete_many(&self, ids: &[JobId]) -> R<()> {
        let mut st = self.state.lock().await;
        for id in ids {
            let Some(j) = st.jobs.get_mut(id) else {
                return Err(missing("job"));
            };
            j.status = JobStatus::Done;
            j.locked_until = None;
            let j = j.clone();
            st.release_dedupe(&j);
        }
        Ok(())
    }

    async fn fail(&self, id: JobId, error: &str, retry_at: Option<DateTime<Utc>>) -> R<()> {
        let mut st = self.state.lock().await;
        let Some(j) = st.jobs.get_mut(&id) else {
            return Err(missing("job"));
        };
        j.last_error = Some(error.to_string());
        j.locked_until = None;
        match retry_at {
            Some(t) => {
                j.status = JobStatus::Queued;
                j.run_at = t;
            }
            None => {
                j.status = JobStatus::Dead;
                let j = j.clone();
                st.release_dedupe(&j);
            }
        }
        Ok(())
    }

    async fn job(&self, id: JobId) -> R<Option<Job>> {
        Ok(self.state.lock().await.jobs.get(&id).map(|j| (**j).clone()))
    }

    async fn stats(&self) -> R<JobStats> {
        Ok(self.state.lock().await.job_stats())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).expect("a valid time")
    }

    fn ticket(booking: &Booking, number: &str) -> Ticket {
        Ticket {
            id: evently_core::TicketId::new(),
            booking_id: booking.id,
            event_id: booking.event_id,
            number: number.to_owned(),
            qr_payload: format!("qr:{number}"),
            issued_at: at(5),
        }
    }

    /// A user, an event and a confirmed booking of it, committed.
    async fn seeded() -> (MemoryStore, Event, Booking) {
        let store = MemoryStore::new();
        let user = User {
            id: UserId::new(),
            email: "a@example.test".into(),
            name: "A".into(),
            password_hash: "x".into(),
            role: evently_core::Role::User,
            attributes: BTreeMap::new(),
            created_at: at(0),
        };
        let eur = evently_core::Currency::new("EUR").expect("currency");
        let event = Event {
            id: EventId::new(),
            name: "Gig".into(),
            description: "d".into(),
            venue: "Club".into(),
            category: "music".into(),
            starts_at: at(100),
            ends_at: at(200),
            capacity: 10,
            price: evently_core::Money::new(100, eur),
            active: true,
            version: 1,
            seats_held: 0,
            seats_confirmed: 0,
            created_at: at(0),
            updated_at: at(0),
        };
        let booking = Booking {
            id: BookingId::new(),
            user_id: user.id,
            event_id: event.id,
            quantity: 2,
            total_price: evently_core::Money::new(200, eur),
            status: BookingStatus::Confirmed,
            held_until: None,
            idempotency_key: Some("k".into()),
            source: evently_core::BookingSource::Direct,
            created_at: at(1),
            updated_at: at(1),
        };
        let mut tx = store.begin().await.expect("begin");
        tx.insert_user(&user).await.expect("user");
        tx.insert_event(&event).await.expect("event");
        tx.insert_booking(&booking).await.expect("booking");
        tx.commit().await.expect("commit");
        (store, event, booking)
    }

    #[tokio::test]
    async fn a_rolled_back_booking_transaction_leaves_nothing_behind() {
        let (store, event, old) = seeded().await;
        let mut tx = store.begin().await.expect("begin");
        // What a booking transaction writes: counters only, a new booking, its tickets by value.
        let counted = Event {
            seats_confirmed: 2,
            ..event.clone()
        };
        tx.update_event(&counted).await.expect("update");
        let new = Booking {
            id: BookingId::new(),
            idempotency_key: Some("k2".into()),
            ..old.clone()
        };
        tx.insert_booking(&new).await.expect("booking");
        let tickets = vec![ticket(&new, "EVT-1"), ticket(&new, "EVT-2")];
        tx.insert_tickets_owned(tickets.clone())
            .await
            .expect("tickets");
        assert_eq!(tx.tickets_for_booking(new.id).await.expect("read"), tickets);
        assert_eq!(
            tx.event(event.id, LockMode::None).await.expect("read"),
            Some(counted)
        );
        // A taken number, also within one insert, is refused without writing anything.
        for dup in [
            vec![ticket(&old, "EVT-3"), ticket(&old, "EVT-1")],
            vec![ticket(&old, "EVT-4"), ticket(&old, "EVT-4")],
        ] {
            assert!(matches!(
                tx.insert_tickets_owned(dup).await,
                Err(StoreError::UniqueViolation { .. })
            ));
        }
        assert!(tx.ticket_by_number("EVT-3").await.expect("read").is_none());
        tx.rollback().await.expect("rollback");

        let mut tx = store.begin().await.expect("begin");
        assert_eq!(
            tx.event(event.id, LockMode::None).await.expect("read"),
            Some(event.clone())
        );
        assert!(tx.booking(new.id).await.expect("read").is_none());
        assert!(
            tx.booking_by_idempotency_key(new.user_id, "k2")
                .await
                .expect("read")
                .is_none()
        );
        assert_eq!(
            tx.bookings_for_event(event.id).await.expect("read"),
            vec![old.clone()]
        );
        assert!(tx.ticket_by_number("EVT-1").await.expect("read").is_none());
        // The numbers are free again; tickets of one booking in two inserts are kept together.
        tx.insert_tickets(&[ticket(&old, "EVT-2")])
            .await
            .expect("tickets");
        tx.insert_tickets_owned(vec![ticket(&old, "EVT-1")])
            .await
            .expect("tickets");
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        let numbers: Vec<String> = tx
            .tickets_for_booking(old.id)
            .await
            .expect("read")
            .into_iter()
            .map(|t| t.number)
            .collect();
        assert_eq!(numbers, ["EVT-1", "EVT-2"]);
        assert_eq!(
            tx.ticket_by_number("EVT-2")
                .await
                .expect("read")
                .map(|t| t.booking_id),
            Some(old.id)
        );
    }

    #[test]
    fn ticket_numbers_whose_hashes_collide_are_found_and_removed() {
        use std::hash::BuildHasher as _;
        let mut st = State::default();
        let (a, b) = (BookingId::new(), BookingId::new());
        let t = |booking: BookingId, number: &str| Ticket {
            id: evently_core::TicketId::new(),
            booking_id: booking,
            event_id: EventId::new(),
            number: number.to_owned(),
            qr_payload: String::new(),
            issued_at: at(0),
        };
        let row = |id: BookingId, tickets: Vec<Ticket>| {
            let eur = evently_core::Currency::new("EUR").expect("currency");
            Box::new(BookingRow {
                booking: Booking {
                    id,
                    user_id: UserId::new(),
                    event_id: EventId::new(),
                    quantity: 1,
                    total_price: evently_core::Money::new(100, eur),
                    status: BookingStatus::Confirmed,
                    held_until: None,
                    idempotency_key: None,
                    source: evently_core::BookingSource::Direct,
                    created_at: at(0),
                    updated_at: at(0),
                },
                tickets,
            })
        };
        st.bookings.insert(a, row(a, vec![t(a, "A-1")]));
        st.add_ticket_number("A-1", a);
        // Pretend "B-1" hashes like a number of booking `a`: it goes to the overflow map.
        let h = st.number_hasher.hash_one("B-1");
        st.ticket_numbers.insert(h, a);
        st.bookings.insert(b, row(b, vec![t(b, "B-1")]));
        st.add_ticket_number("B-1", b);
        assert_eq!(st.ticket_numbers_extra.get("B-1"), Some(&b));
        assert_eq!(st.ticket_by_number("B-1").map(|t| t.booking_id), Some(b));
        assert_eq!(st.ticket_by_number("A-1").map(|t| t.booking_id), Some(a));
        assert!(st.ticket_by_number("C-1").is_none());
        st.remove_ticket_number("B-1", b);
        assert!(st.ticket_numbers_extra.is_empty());
        assert_eq!(st.ticket_numbers.get(&h), Some(&a), "the other entry stays");
        st.remove_ticket_number("A-1", a);
        assert!(st.ticket_by_number("A-1").is_none());
    }

    #[test]
    fn job_ids_are_version_7_carry_the_time_and_strictly_increase() {
        let mut ids = JobIds::default();
        let t = at(0);
        let mut last = ids.next(t);
        assert_eq!(last.0.get_version_num(), 7);
        let (secs, _) = last
            .0
            .get_timestamp()
            .expect("a v7 id has a time")
            .to_unix();
        assert_eq!(i64::try_from(secs).unwrap(), t.timestamp());
        for i in 0..10_000 {
            // Times that go back and forth do not make an id go back.
            let next = ids.next(at(i % 7 - 3));
            assert_eq!(next.0.get_version_num(), 7);
            assert_eq!(next.0.get_variant(), uuid::Variant::RFC4122);
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }
}
