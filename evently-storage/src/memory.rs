//! An in-memory store: ordinary maps behind one ordinary (asynchronous) lock.
//!
//! A transaction holds the lock from `begin` to `commit` or `rollback`, so transactions run one at a
//! time and are serialisable; `LockMode::ForUpdate` needs nothing more. Every change a transaction
//! applies records how to take it back, and dropping the transaction without `commit` takes them
//! back, newest first. A change set that fails part-way is taken back at once, so a failed
//! [`Transaction::apply`] leaves nothing behind.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{
    BookingRepository, Changes, DeliveryRecord, EventRepository, JobStats, NotificationQuery,
    NotificationRepository, PushSubscriptionRepository, TicketRepository, UserRepository,
    WaitlistRepository,
};
use evently_core::{
    Booking, BookingId, BookingStatus, Event, EventFilter, EventId, Job, JobId, JobQueue,
    JobStatus, LockMode, NewJob, Notification, NotificationId, PushSubscription, Store, StoreError,
    Ticket, Transaction, User, UserId, WaitlistEntry, WaitlistEntryId, WaitlistStatus,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

type R<T> = Result<T, StoreError>;

/// The standard hash map with foldhash: several times faster than SipHash on 16-byte ids, and
/// seeded per process, so keys chosen by users (e-mails, idempotency keys) cannot be aimed at one
/// bucket.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Every table, with the indexes the reads need. The large records are boxed, so a table that grows
/// moves pointers, not records (a booking run fills tables of hundreds of thousands of entries).
#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    users_by_email: HashMap<String, UserId>,
    events: HashMap<EventId, Event>,
    /// Each booking with its tickets, which are inserted after it and read with it.
    bookings: HashMap<BookingId, Box<BookingRow>>,
    bookings_by_key: HashMap<(UserId, String), BookingId>,
    bookings_by_user: HashMap<UserId, Vec<BookingId>>,
    bookings_by_event: HashMap<EventId, Vec<BookingId>>,
    /// Held bookings by event, ordered by `held_until`.
    holds: HashMap<EventId, BTreeSet<(DateTime<Utc>, BookingId)>>,
    waitlist: HashMap<WaitlistEntryId, WaitlistEntry>,
    /// In join order.
    waitlist_by_event: HashMap<EventId, Vec<WaitlistEntryId>>,
    next_seq: i64,
    /// The booking holding each ticket number.
    ticket_numbers: HashMap<String, BookingId>,
    notifications: HashMap<NotificationId, Box<Notification>>,
    notifications_by_user: HashMap<UserId, Vec<NotificationId>>,
    deliveries: HashMap<NotificationId, BTreeMap<String, DateTime<Utc>>>,
    push: HashMap<String, PushSubscription>,
    jobs: HashMap<JobId, Box<Job>>,
    /// The live (queued or running) job holding each dedupe key.
    job_dedupe: HashMap<String, JobId>,
}

fn missing(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("{what} does not exist"),
    }
}

/// Removes `id` from an index list; the newest entry (the usual one to take back) is found first.
fn unlist<T: PartialEq>(list: Option<&mut Vec<T>>, id: &T) {
    if let Some(v) = list
        && let Some(i) = v.iter().rposition(|x| x == id)
    {
        v.remove(i);
    }
}

/// A booking and its tickets, in the order they were inserted.
struct BookingRow {
    booking: Booking,
    tickets: Vec<Ticket>,
}

/// One change, as the way to take it back: the record's previous value (`None`: it did not exist).
enum Undo {
    User(UserId, Option<Box<User>>),
    Event(EventId, Option<Box<Event>>),
    Booking(BookingId, Option<Box<Booking>>),
    Waitlist(WaitlistEntryId, Option<Box<WaitlistEntry>>),
    /// The newest ticket of a booking.
    Ticket(BookingId),
    Notification(NotificationId, Option<Box<Notification>>),
    Delivery(NotificationId, String),
    Push(String, Option<Box<PushSubscription>>),
    Job(JobId),
}

impl State {
    /// Sets user `id` to `new` (`None` removes it), keeping the e-mail index; returns the old value.
    fn put_user(&mut self, id: UserId, new: Option<User>) -> Option<User> {
        let old = match new {
            Some(u) => {
                self.users_by_email.insert(u.email.clone(), id);
                self.users.insert(id, u)
            }
            None => self.users.remove(&id),
        };
        if let Some(o) = &old
            && self.users.get(&id).is_none_or(|u| u.email != o.email)
        {
            self.users_by_email.remove(&o.email);
        }
        old
    }

    /// Inserts booking `id`, replaces it (its tickets stay) or (`None`) removes it with its tickets,
    /// keeping every index; returns the old value.
    fn put_booking(&mut self, id: BookingId, new: Option<Booking>) -> Option<Booking> {
        fn hold(b: &Booking) -> Option<(EventId, (DateTime<Utc>, BookingId))> {
            let until = b.held_until.filter(|_| b.status == BookingStatus::Held)?;
            Some((b.event_id, (until, b.id)))
        }
        let new_hold = new.as_ref().and_then(hold);
        let old = match (new, self.bookings.get_mut(&id)) {
            (Some(b), Some(row)) => Some(std::mem::replace(&mut row.booking, b)),
            (Some(b), None) => {
                // User, event and idempotency key never change: the indexes change on insert and
                // removal only.
                if let Some(k) = &b.idempotency_key {
                    self.bookings_by_key.insert((b.user_id, k.clone()), id);
                }
                self.bookings_by_user.entry(b.user_id).or_default().push(id);
                self.bookings_by_event
                    .entry(b.event_id)
                    .or_default()
                    .push(id);
                let row = BookingRow {
                    booking: b,
                    tickets: Vec::new(),
                };
                self.bookings.insert(id, Box::new(row));
                None
            }
            (None, Some(_)) => {
                let row = self.bookings.remove(&id)?;
                let BookingRow {
                    booking: b,
                    tickets,
                } = *row;
                for t in tickets {
                    self.ticket_numbers.remove(&t.number);
                }
                if let Some(k) = &b.idempotency_key {
                    self.bookings_by_key.remove(&(b.user_id, k.clone()));
                }
                unlist(self.bookings_by_user.get_mut(&b.user_id), &id);
                unlist(self.bookings_by_event.get_mut(&b.event_id), &id);
                Some(b)
            }
            (None, None) => None,
        };
        if let Some((event, key)) = old.as_ref().and_then(hold)
            && let Some(set) = self.holds.get_mut(&event)
        {
            set.remove(&key);
        }
        if let Some((event, key)) = new_hold {
            self.holds.entry(event).or_default().insert(key);
        }
        old
    }

    /// Sets waitlist entry `id` to `new` (`None` removes it); returns the old value.
    fn put_waitlist(
        &mut self,
        id: WaitlistEntryId,
        new: Option<WaitlistEntry>,
    ) -> Option<WaitlistEntry> {
        match new {
            Some(e) => {
                let event = e.event_id;
                let old = self.waitlist.insert(id, e);
                if old.is_none() {
                    self.waitlist_by_event.entry(event).or_default().push(id);
                }
                old
            }
            None => {
                let old = self.waitlist.remove(&id);
                if let Some(o) = &old {
                    unlist(self.waitlist_by_event.get_mut(&o.event_id), &id);
                }
                old
            }
        }
    }

    fn remove_newest_ticket(&mut self, booking: BookingId) {
        if let Some(row) = self.bookings.get_mut(&booking)
            && let Some(t) = row.tickets.pop()
        {
            self.ticket_numbers.remove(&t.number);
        }
    }

    fn put_notification(
        &mut self,
        id: NotificationId,
        new: Option<Box<Notification>>,
    ) -> Option<Box<Notification>> {
        match new {
            Some(n) => {
                let user = n.user_id;
                let old = self.notifications.insert(id, n);
                if old.is_none() {
                    self.notifications_by_user.entry(user).or_default().push(id);
                }
                old
            }
            None => {
                let old = self.notifications.remove(&id);
                if let Some(o) = &old {
                    unlist(self.notifications_by_user.get_mut(&o.user_id), &id);
                }
                old
            }
        }
    }

    /// Queues a job unless a live job holds its dedupe key.
    fn enqueue(&mut self, job: &NewJob) -> Option<JobId> {
        if let Some(k) = &job.dedupe_key
            && self.job_dedupe.contains_key(k)
        {
            return None;
        }
        // Version 7, with the job's creation time (its `run_at`): no clock read.
        let at = job.run_at;
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(at.timestamp()).unwrap_or(0),
            at.timestamp_subsec_nanos(),
        );
        let j = Box::new(job.queued(JobId(uuid::Uuid::new_v7(ts))));
        let id = j.id;
        if let Some(k) = &j.dedupe_key {
            self.job_dedupe.insert(k.clone(), id);
        }
        self.jobs.insert(id, j);
        Some(id)
    }

    fn remove_job(&mut self, id: JobId) {
        if let Some(j) = self.jobs.remove(&id) {
            self.release_dedupe(&j);
        }
    }

    fn release_dedupe(&mut self, job: &Job) {
        if let Some(k) = &job.dedupe_key
            && self.job_dedupe.get(k) == Some(&job.id)
        {
            self.job_dedupe.remove(k);
        }
    }

    fn undo(&mut self, u: Undo) {
        match u {
            Undo::User(id, old) => {
                self.put_user(id, old.map(|u| *u));
            }
            Undo::Event(id, old) => match old {
                Some(e) => {
                    self.events.insert(id, *e);
                }
                None => {
                    self.events.remove(&id);
                }
            },
            Undo::Booking(id, old) => {
                self.put_booking(id, old.map(|b| *b));
            }
            Undo::Waitlist(id, old) => {
                self.put_waitlist(id, old.map(|e| *e));
            }
            Undo::Ticket(booking) => self.remove_newest_ticket(booking),
            Undo::Notification(id, old) => {
                self.put_notification(id, old);
            }
            Undo::Delivery(id, channel) => {
                if let Some(m) = self.deliveries.get_mut(&id) {
                    m.remove(&channel);
                }
            }
            Undo::Push(endpoint, old) => match old {
                Some(p) => {
                    self.push.insert(endpoint, *p);
                }
                None => {
                    self.push.remove(&endpoint);
                }
            },
            Undo::Job(id) => self.remove_job(id),
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
}

/// The in-memory store. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
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
        Ok(Box::new(MemoryTx {
            st: self.state.clone().lock_owned().await,
            // Room for a booking batch's changes without growing.
            undo: Vec::with_capacity(32),
        }))
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
}

/// A transaction: the store's lock, and how to take back what it changed.
struct MemoryTx {
    st: OwnedMutexGuard<State>,
    undo: Vec<Undo>,
}

impl MemoryTx {
    /// Whether another entry of `e`'s user and event is live (waiting or offered).
    fn live_entry_of(&self, e: &WaitlistEntry) -> bool {
        let st = &self.st;
        st.waitlist_by_event
            .get(&e.event_id)
            .into_iter()
            .flatten()
            .filter_map(|id| st.waitlist.get(id))
            .any(|x| x.id != e.id && x.user_id == e.user_id && x.status.is_live())
    }

    /// Takes back the changes recorded after the first `keep`, newest first.
    fn undo_to(&mut self, keep: usize) {
        while self.undo.len() > keep {
            if let Some(u) = self.undo.pop() {
                self.st.undo(u);
            }
        }
    }

    fn apply_all(&mut self, c: Changes) -> R<()> {
        for u in c.new_users {
            if self.st.users_by_email.contains_key(&u.email) {
                return Err(StoreError::unique("users_email_key"));
            }
            if self.st.users.contains_key(&u.id) {
                return Err(StoreError::unique("users_pkey"));
            }
            let id = u.id;
            self.st.put_user(id, Some(u));
            self.undo.push(Undo::User(id, None));
        }
        for u in c.updated_users {
            let Some(old) = self.st.users.get(&u.id) else {
                return Err(missing("user"));
            };
            // E-mail and creation time never change.
            let next = User {
                email: old.email.clone(),
                created_at: old.created_at,
                ..u
            };
            let id = next.id;
            let old = self.st.put_user(id, Some(next));
            self.undo.push(Undo::User(id, old.map(Box::new)));
        }
        for e in c.new_events {
            if self.st.events.contains_key(&e.id) {
                return Err(StoreError::unique("events_pkey"));
            }
            self.undo.push(Undo::Event(e.id, None));
            self.st.events.insert(e.id, e);
        }
        for e in c.updated_events {
            if u64::from(e.seats_held) + u64::from(e.seats_confirmed) > u64::from(e.capacity) {
                return Err(StoreError::check("events_seats_within_capacity"));
            }
            let Some(slot) = self.st.events.get_mut(&e.id) else {
                return Err(missing("event"));
            };
            let next = Event {
                created_at: slot.created_at,
                ..e
            };
            let old = std::mem::replace(slot, next);
            self.undo.push(Undo::Event(old.id, Some(Box::new(old))));
        }
        for mut e in c.new_waitlist_entries {
            if !self.st.users.contains_key(&e.user_id) {
                return Err(StoreError::foreign_key("waitlist_entries_user_id_fkey"));
            }
            if !self.st.events.contains_key(&e.event_id) {
                return Err(StoreError::foreign_key("waitlist_entries_event_id_fkey"));
            }
            if self.st.waitlist.contains_key(&e.id) {
                return Err(StoreError::unique("waitlist_entries_id_key"));
            }
            if e.status.is_live() && self.live_entry_of(&e) {
                return Err(StoreError::unique("waitlist_entries_one_live_per_user"));
            }
            let st = &mut *self.st;
            st.next_seq += 1;
            e.seq = st.next_seq;
            e.position = None;
            let id = e.id;
            st.put_waitlist(id, Some(e));
            self.undo.push(Undo::Waitlist(id, None));
        }
        for b in c.new_bookings {
            let st = &mut *self.st;
            if !st.users.contains_key(&b.user_id) {
                return Err(StoreError::foreign_key("bookings_user_id_fkey"));
            }
            if !st.events.contains_key(&b.event_id) {
                return Err(StoreError::foreign_key("bookings_event_id_fkey"));
            }
            if let Some(k) = &b.idempotency_key
                && st.bookings_by_key.contains_key(&(b.user_id, k.clone()))
            {
                return Err(StoreError::unique("bookings_user_idempotency_key"));
            }
            let id = b.id;
            if let Some(taken) = st.put_booking(id, Some(b)) {
                // Probed by the insert itself: one lookup of the big table, not two.
                st.put_booking(id, Some(taken));
                return Err(StoreError::unique("bookings_pkey"));
            }
            self.undo.push(Undo::Booking(id, None));
        }
        for b in c.updated_bookings {
            let Some(row) = self.st.bookings.get(&b.id) else {
                return Err(missing("booking"));
            };
            let next = Booking {
                status: b.status,
                held_until: b.held_until,
                updated_at: b.updated_at,
                ..row.booking.clone()
            };
            let old = self.st.put_booking(b.id, Some(next));
            self.undo.push(Undo::Booking(b.id, old.map(Box::new)));
        }
        for e in c.updated_waitlist_entries {
            let Some(old) = self.st.waitlist.get(&e.id) else {
                return Err(missing("waitlist entry"));
            };
            let next = WaitlistEntry {
                status: e.status,
                notified_at: e.notified_at,
                offer_expires_at: e.offer_expires_at,
                offer_booking_id: e.offer_booking_id,
                ..old.clone()
            };
            if next.status.is_live() && !old.status.is_live() && self.live_entry_of(&next) {
                return Err(StoreError::unique("waitlist_entries_one_live_per_user"));
            }
            let old = self.st.put_waitlist(e.id, Some(next));
            self.undo.push(Undo::Waitlist(e.id, old.map(Box::new)));
        }
        for t in c.new_tickets {
            let st = &mut *self.st;
            let Some(row) = st.bookings.get_mut(&t.booking_id) else {
                return Err(StoreError::foreign_key("tickets_booking_id_fkey"));
            };
            match st.ticket_numbers.entry(t.number.clone()) {
                Entry::Occupied(_) => return Err(StoreError::unique("tickets_number_key")),
                Entry::Vacant(v) => v.insert(t.booking_id),
            };
            self.undo.push(Undo::Ticket(t.booking_id));
            row.tickets.push(t);
        }
        for n in c.new_notifications {
            if !self.st.users.contains_key(&n.user_id) {
                return Err(StoreError::foreign_key("notifications_user_id_fkey"));
            }
            let id = n.id;
            if let Some(taken) = self.st.put_notification(id, Some(Box::new(n))) {
                self.st.put_notification(id, Some(taken));
                return Err(StoreError::unique("notifications_pkey"));
            }
            self.undo.push(Undo::Notification(id, None));
        }
        for (id, at) in c.notifications_sent {
            if let Some(n) = self.st.notifications.get_mut(&id)
                && n.sent_at.is_none()
            {
                let old = n.clone();
                n.sent_at = Some(at);
                self.undo.push(Undo::Notification(id, Some(old)));
            }
        }
        for (id, at) in c.notifications_read {
            if let Some(n) = self.st.notifications.get_mut(&id)
                && n.read_at.is_none()
            {
                let old = n.clone();
                n.read_at = Some(at);
                self.undo.push(Undo::Notification(id, Some(old)));
            }
        }
        for DeliveryRecord {
            notification_id: id,
            channel,
            at,
        } in c.deliveries
        {
            if channel.is_empty() || channel.chars().count() > 64 {
                return Err(StoreError::check("notification_deliveries_channel_check"));
            }
            if !self.st.notifications.contains_key(&id) {
                return Err(StoreError::foreign_key(
                    "notification_deliveries_notification_id_fkey",
                ));
            }
            let channels = self.st.deliveries.entry(id).or_default();
            if !channels.contains_key(&channel) {
                channels.insert(channel.clone(), at);
                self.undo.push(Undo::Delivery(id, channel));
            }
        }
        for sub in c.push_subscriptions {
            if !self.st.users.contains_key(&sub.user_id) {
                return Err(StoreError::foreign_key("push_subscriptions_user_id_fkey"));
            }
            let endpoint = sub.endpoint.clone();
            let old = self.st.push.insert(endpoint.clone(), sub);
            self.undo.push(Undo::Push(endpoint, old.map(Box::new)));
        }
        for endpoint in c.removed_push_subscriptions {
            if let Some(old) = self.st.push.remove(&endpoint) {
                self.undo.push(Undo::Push(endpoint, Some(Box::new(old))));
            }
        }
        for job in &c.new_jobs {
            if let Some(id) = self.st.enqueue(job) {
                self.undo.push(Undo::Job(id));
            }
        }
        Ok(())
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        self.undo_to(0);
    }
}

#[async_trait]
impl Transaction for MemoryTx {
    async fn apply(&mut self, changes: Changes) -> R<()> {
        let keep = self.undo.len();
        let applied = self.apply_all(changes);
        if applied.is_err() {
            self.undo_to(keep);
        }
        applied
    }

    async fn commit(mut self: Box<Self>) -> R<()> {
        self.undo.clear();
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> R<()> {
        // Dropping takes every change back.
        Ok(())
    }
}

#[async_trait]
impl UserRepository for MemoryTx {
    async fn user(&mut self, id: UserId) -> R<Option<User>> {
        Ok(self.st.users.get(&id).cloned())
    }

    async fn user_by_email(&mut self, email: &str) -> R<Option<User>> {
        let st = &self.st;
        Ok(st
            .users_by_email
            .get(email)
            .and_then(|id| st.users.get(id))
            .cloned())
    }

    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>> {
        Ok(ids
            .iter()
            .filter_map(|id| self.st.users.get(id))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl EventRepository for MemoryTx {
    async fn event(&mut self, id: EventId, _lock: LockMode) -> R<Option<Event>> {
        // The whole store is locked for the transaction, so ForUpdate needs nothing more.
        Ok(self.st.events.get(&id).cloned())
    }

    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>> {
        let mut v: Vec<Event> = self
            .st
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
        let mut ids: Vec<EventId> = self
            .st
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
    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        Ok(self.st.bookings.get(&id).map(|r| r.booking.clone()))
    }

    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        let st = &self.st;
        Ok(st
            .bookings_by_key
            .get(&(user, key.to_string()))
            .and_then(|id| st.bookings.get(id))
            .map(|r| r.booking.clone()))
    }

    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        let st = &self.st;
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
        let st = &self.st;
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
        let st = &self.st;
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
    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>> {
        Ok(self.st.waitlist.get(&id).cloned())
    }

    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>> {
        let st = &self.st;
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
        let st = &self.st;
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
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        let mut v = self
            .st
            .bookings
            .get(&booking)
            .map(|r| r.tickets.clone())
            .unwrap_or_default();
        v.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(v)
    }

    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        let st = &self.st;
        Ok(st
            .ticket_numbers
            .get(number)
            .and_then(|b| st.bookings.get(b))
            .and_then(|r| r.tickets.iter().find(|t| t.number == number))
            .cloned())
    }
}

#[async_trait]
impl NotificationRepository for MemoryTx {
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        Ok(self.st.notifications.get(&id).map(|n| (**n).clone()))
    }

    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>> {
        Ok(self
            .st
            .deliveries
            .get(&id)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn notifications_for_user(
        &mut self,
        user: UserId,
        query: &NotificationQuery,
    ) -> R<Vec<Notification>> {
        let st = &self.st;
        let mut v: Vec<Notification> = st
            .notifications_by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| st.notifications.get(id))
            .filter(|n| !query.unread_only || n.read_at.is_none())
            .filter(|n| query.before.is_none_or(|b| (n.created_at, n.id) < b))
            .map(|n| (**n).clone())
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
        v.truncate(query.limit as usize);
        Ok(v)
    }
}

#[async_trait]
impl PushSubscriptionRepository for MemoryTx {
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>> {
        let mut v: Vec<PushSubscription> = self
            .st
            .push
            .values()
            .filter(|s| s.user_id == user)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.endpoint).cmp(&(b.created_at, &b.endpoint)));
        Ok(v)
    }
}

#[async_trait]
impl JobQueue for MemoryStore {
    fn queue_name(&self) -> &str {
        "memory"
    }

    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>> {
        Ok(self.state.lock().await.enqueue(job))
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
