//! An in-memory store. One lock guards all data for the length of a transaction, so transactions are
//! serialisable; an undo log rolls back a transaction that is dropped without commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{
    BookingRepository, EventRepository, JobSink, JobStats, NotificationRepository,
    PushSubscriptionRepository, TicketRepository, UserRepository, WaitlistRepository,
};
use evently_core::{
    Booking, BookingId, BookingStatus, Event, EventFilter, EventId, Job, JobId, JobQueue,
    JobStatus, LockMode, NewJob, Notification, NotificationId, PushSubscription, Store, StoreError,
    Ticket, Transaction, User, UserId, WaitlistEntry, WaitlistEntryId, WaitlistStatus,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

type R<T> = Result<T, StoreError>;

/// Maps keyed by ids and strings. foldhash: several times faster than SipHash on 16-byte ids, and
/// seeded per process, so keys chosen by users (emails) cannot be aimed at one bucket.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    users_by_email: HashMap<String, UserId>,
    events: HashMap<EventId, Event>,
    bookings: HashMap<BookingId, Booking>,
    bookings_by_key: HashMap<(UserId, String), BookingId>,
    bookings_by_user: HashMap<UserId, Vec<BookingId>>,
    bookings_by_event: HashMap<EventId, Vec<BookingId>>,
    holds: HashMap<EventId, BTreeSet<(DateTime<Utc>, BookingId)>>,
    waitlist: HashMap<WaitlistEntryId, WaitlistEntry>,
    waitlist_by_event: HashMap<EventId, Vec<WaitlistEntryId>>,
    next_seq: i64,
    tickets: HashMap<String, Ticket>,
    tickets_by_booking: HashMap<BookingId, Vec<String>>,
    notifications: HashMap<NotificationId, Notification>,
    notifications_by_user: HashMap<UserId, Vec<NotificationId>>,
    deliveries: HashMap<NotificationId, BTreeMap<String, DateTime<Utc>>>,
    push: HashMap<String, PushSubscription>,
    jobs: HashMap<JobId, Job>,
    job_dedupe: HashMap<String, JobId>,
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

fn missing(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("{what} does not exist"),
    }
}

impl State {
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

type Undo = Box<dyn FnOnce(&mut State) + Send>;

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
            guard: Some(self.state.clone().lock_owned().await),
            undo: Vec::new(),
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

struct MemoryTx {
    guard: Option<OwnedMutexGuard<State>>,
    undo: Vec<Undo>,
}

impl MemoryTx {
    fn st(&mut self) -> &mut State {
        // The guard is taken out only by commit/rollback, which consume the transaction.
        self.guard.as_mut().expect("transaction already ended")
    }

    fn on_rollback(&mut self, f: impl FnOnce(&mut State) + Send + 'static) {
        self.undo.push(Box::new(f));
    }

    fn roll_back(&mut self) {
        if let Some(mut g) = self.guard.take() {
            while let Some(u) = self.undo.pop() {
                u(&mut g);
            }
        }
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        self.roll_back();
    }
}

#[async_trait]
impl Transaction for MemoryTx {
    async fn commit(mut self: Box<Self>) -> R<()> {
        self.undo.clear();
        self.guard = None;
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

    async fn update_event(&mut self, event: &Event) -> R<()> {
        if u64::from(event.seats_held) + u64::from(event.seats_confirmed)
            > u64::from(event.capacity)
        {
            return Err(StoreError::CheckViolation {
                constraint: "events_seats_within_capacity".into(),
            });
        }
        let st = self.st();
        let Some(slot) = st.events.get_mut(&event.id) else {
            return Err(missing("event"));
        };
        let prev = std::mem::replace(
            slot,
            Event {
                created_at: slot.created_at,
                ..event.clone()
            },
        );
        self.on_rollback(move |s| {
            s.events.insert(prev.id, prev);
        });
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
        let key = b.idempotency_key.clone().map(|k| (b.user_id, k));
        if let Some(k) = &key {
            if st.bookings_by_key.contains_key(k) {
                return Err(unique("bookings_user_idempotency_key"));
            }
            st.bookings_by_key.insert(k.clone(), b.id);
        }
        st.bookings.insert(b.id, b.clone());
        st.bookings_by_user.entry(b.user_id).or_default().push(b.id);
        st.bookings_by_event
            .entry(b.event_id)
            .or_default()
            .push(b.id);
        st.set_hold_index(b, true);
        let b = b.clone();
        self.on_rollback(move |s| {
            s.set_hold_index(&b, false);
            s.bookings.remove(&b.id);
            if let Some(k) = key {
                s.bookings_by_key.remove(&k);
            }
            if let Some(v) = s.bookings_by_user.get_mut(&b.user_id) {
                v.retain(|x| *x != b.id);
            }
            if let Some(v) = s.bookings_by_event.get_mut(&b.event_id) {
                v.retain(|x| *x != b.id);
            }
        });
        Ok(())
    }

    async fn update_booking(&mut self, b: &Booking) -> R<()> {
        let st = self.st();
        let Some(slot) = st.bookings.get_mut(&b.id) else {
            return Err(missing("booking"));
        };
        let mut next = slot.clone();
        next.status = b.status;
        next.held_until = b.held_until;
        next.updated_at = b.updated_at;
        let prev = std::mem::replace(slot, next.clone());
        st.set_hold_index(&prev, false);
        st.set_hold_index(&next, true);
        self.on_rollback(move |s| {
            s.set_hold_index(&next, false);
            s.set_hold_index(&prev, true);
            s.bookings.insert(prev.id, prev);
        });
        Ok(())
    }

    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        Ok(self.st().bookings.get(&id).cloned())
    }

    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        let st = self.st();
        Ok(st
            .bookings_by_key
            .get(&(user, key.to_string()))
            .and_then(|id| st.bookings.get(id))
            .cloned())
    }

    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        let st = self.st();
        let mut v: Vec<Booking> = st
            .bookings_by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| st.bookings.get(id))
            .cloned()
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
            .cloned()
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
            .cloned()
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
        let st = self.st();
        for (i, t) in tickets.iter().enumerate() {
            if !st.bookings.contains_key(&t.booking_id) {
                return Err(fk("tickets_booking_id_fkey"));
            }
            if st.tickets.contains_key(&t.number)
                || tickets[..i].iter().any(|o| o.number == t.number)
            {
                return Err(unique("tickets_number_key"));
            }
        }
        for t in tickets {
            st.tickets.insert(t.number.clone(), t.clone());
            st.tickets_by_booking
                .entry(t.booking_id)
                .or_default()
                .push(t.number.clone());
        }
        let added: Vec<(BookingId, String)> = tickets
            .iter()
            .map(|t| (t.booking_id, t.number.clone()))
            .collect();
        self.on_rollback(move |s| {
            for (b, n) in added {
                s.tickets.remove(&n);
                if let Some(v) = s.tickets_by_booking.get_mut(&b) {
                    v.retain(|x| *x != n);
                }
            }
        });
        Ok(())
    }

    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        let st = self.st();
        let mut v: Vec<Ticket> = st
            .tickets_by_booking
            .get(&booking)
            .into_iter()
            .flatten()
            .filter_map(|n| st.tickets.get(n))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(v)
    }

    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        Ok(self.st().tickets.get(number).cloned())
    }
}

#[async_trait]
impl NotificationRepository for MemoryTx {
    async fn insert_notification(&mut self, n: &Notification) -> R<()> {
        let st = self.st();
        if !st.users.contains_key(&n.user_id) {
            return Err(fk("notifications_user_id_fkey"));
        }
        if st.notifications.contains_key(&n.id) {
            return Err(unique("notifications_pkey"));
        }
        st.notifications.insert(n.id, n.clone());
        st.notifications_by_user
            .entry(n.user_id)
            .or_default()
            .push(n.id);
        let (id, user) = (n.id, n.user_id);
        self.on_rollback(move |s| {
            s.notifications.remove(&id);
            s.deliveries.remove(&id);
            if let Some(v) = s.notifications_by_user.get_mut(&user) {
                v.retain(|x| *x != id);
            }
        });
        Ok(())
    }

    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        Ok(self.st().notifications.get(&id).cloned())
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
            .cloned()
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

fn new_job(job: &NewJob) -> Job {
    Job {
        id: JobId::new(),
        payload: job.payload.clone(),
        priority: job.priority,
        status: JobStatus::Queued,
        run_at: job.run_at,
        attempts: 0,
        max_attempts: job.max_attempts,
        dedupe_key: job.dedupe_key.clone(),
        last_error: None,
        locked_until: None,
        created_at: job.run_at,
    }
}

fn insert_job(st: &mut State, job: &NewJob) -> Option<Job> {
    if let Some(k) = &job.dedupe_key
        && st.job_dedupe.contains_key(k)
    {
        return None;
    }
    let j = new_job(job);
    if let Some(k) = &j.dedupe_key {
        st.job_dedupe.insert(k.clone(), j.id);
    }
    st.jobs.insert(j.id, j.clone());
    Some(j)
}

#[async_trait]
impl JobSink for MemoryTx {
    async fn enqueue_job(&mut self, job: &NewJob) -> R<Option<JobId>> {
        let Some(j) = insert_job(self.st(), job) else {
            return Ok(None);
        };
        let id = j.id;
        self.on_rollback(move |s| {
            s.release_dedupe(&j);
            s.jobs.remove(&j.id);
        });
        Ok(Some(id))
    }
}

#[async_trait]
impl JobQueue for MemoryStore {
    fn queue_name(&self) -> &str {
        "memory"
    }

    async fn enqueue(&self, job: &NewJob) -> R<Option<JobId>> {
        Ok(insert_job(&mut *self.state.lock().await, job).map(|j| j.id))
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
        st.jobs.insert(j.id, j);
        Ok(true)
    }

    async fn claim(&self, limit: u32, now: DateTime<Utc>, lease: Duration) -> R<Vec<Job>> {
        let mut st = self.state.lock().await;
        let mut due: Vec<&Job> = st
            .jobs
            .values()
            .filter(|j| match j.status {
                JobStatus::Queued => j.run_at <= now,
                JobStatus::Running => j.locked_until.is_some_and(|t| t <= now),
                _ => false,
            })
            .collect();
        due.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
        let ids: Vec<JobId> = due.iter().take(limit as usize).map(|j| j.id).collect();
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let j = st.jobs.get_mut(&id)?;
                j.status = JobStatus::Running;
                j.attempts += 1;
                j.locked_until = Some(until);
                Some(j.clone())
            })
            .collect())
    }

    async fn complete(&self, id: JobId) -> R<()> {
        let mut st = self.state.lock().await;
        let Some(j) = st.jobs.get_mut(&id) else {
            return Err(missing("job"));
        };
        j.status = JobStatus::Done;
        j.locked_until = None;
        let j = j.clone();
        st.release_dedupe(&j);
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
        Ok(self.state.lock().await.jobs.get(&id).cloned())
    }

    async fn stats(&self) -> R<JobStats> {
        Ok(self.state.lock().await.job_stats())
    }
}
