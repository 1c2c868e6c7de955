//! [`CachedStore`]: a [`Store`] whose event and availability reads can be served from Redis, and
//! whose every committed write invalidates what it changed.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::*;
use evently_core::{
    Availability, BookingId, EventId, NotificationId, StoreError, UserId, WaitlistEntryId,
};
use evently_core::{
    Booking, Event, EventFilter, Notification, PushSubscription, Ticket, User, WaitlistEntry,
    WaitlistStatus,
};

use super::RedisConnection;

type R<T> = Result<T, StoreError>;

/// Sets an entry only if the event's generation is still the one seen before the store was read:
/// a fill racing with a write (which bumps the generation after its commit) is dropped, so an
/// entry read before a commit never lands after that commit's invalidation.
static FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local gen = redis.call('GET', KEYS[2]) or '0'
if gen == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
",
    )
});

/// Drops an event's entries and bumps its generation. KEYS: per event, entry, availability,
/// generation. ARGV[1]: the generation's lifetime in ms.
static INVALIDATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
for i = 1, #KEYS, 3 do
  redis.call('DEL', KEYS[i], KEYS[i + 1])
  redis.call('INCR', KEYS[i + 2])
  redis.call('PEXPIRE', KEYS[i + 2], ARGV[1])
end
return #KEYS / 3
",
    )
});

/// How long cached entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Lifetime of a cached event (default 30 s). Bounds how long a missed invalidation (Redis
    /// unreachable at commit time, from another process) can be seen.
    pub event_ttl: Duration,
    /// Lifetime of a cached availability (default 2 s): seat counts change with every booking, and
    /// this bounds their staleness in the worst case.
    pub availability_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            event_ttl: Duration::from_secs(30),
            availability_ttl: Duration::from_secs(2),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<T> {
    /// The value.
    pub value: T,
    /// Served from Redis (true) or read from the store (false: a miss, or Redis unavailable).
    pub from_cache: bool,
}

/// A [`Store`] with a Redis read cache for events ([`CachedStore::event`]) and availability
/// ([`CachedStore::availability`]).
///
/// Everything else passes through to the wrapped store: transactions, locks, the job queue. A
/// write transaction remembers the events it touched (the event itself, its bookings, its
/// waitlist) and, after `commit`, deletes their entries and bumps their generation, which also
/// stops fills that read the store before the commit from landing after it.
///
/// **Seat counts from the cache are for display.** The engine never reads the cache: every booking
/// decides under the store's event lock. A cached availability is at most
/// [`CacheConfig::availability_ttl`] old even when an invalidation was missed, and normally gone
/// the moment the write commits. When Redis is unavailable, reads go to the store; invalidations
/// that failed are kept and sent before this process reads from Redis again.
#[derive(Clone)]
pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<Cache>,
}

struct Cache {
    redis: RedisConnection,
    config: CacheConfig,
    /// Events whose invalidation Redis did not take.
    pending: Mutex<HashSet<EventId>>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("backend", &self.inner.backend())
            .field("redis", &self.cache.redis)
            .field("config", &self.cache.config)
            .finish()
    }
}

impl CachedStore {
    /// Wraps `inner` with the default [`CacheConfig`].
    pub fn new(inner: Arc<dyn Store>, redis: RedisConnection) -> Self {
        Self::with_config(inner, redis, CacheConfig::default())
    }

    /// Wraps `inner`.
    pub fn with_config(inner: Arc<dyn Store>, redis: RedisConnection, config: CacheConfig) -> Self {
        Self {
            inner,
            cache: Arc::new(Cache {
                redis,
                config,
                pending: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// An event: from Redis when cached, else from the store (and then cached). `None` when the
    /// store has no such event (not cached).
    pub async fn event(&self, id: EventId) -> R<Lookup<Option<Event>>> {
        self.read_through(id, Kind::Event, self.cache.config.event_ttl, async || {
            let mut tx = self.inner.begin_read().await?;
            tx.event(id, LockMode::None).await
        })
        .await
    }

    /// An event's seats, computed as [`Evently::availability`](evently_core::Evently::availability)
    /// does: from Redis when cached, else from the store (and then cached for
    /// [`CacheConfig::availability_ttl`]). For display: see the type's documentation.
    pub async fn availability(&self, id: EventId) -> R<Lookup<Option<Availability>>> {
        self.read_through(
            id,
            Kind::Availability,
            self.cache.config.availability_ttl,
            async || {
                let mut tx = self.inner.begin_read().await?;
                let Some(event) = tx.event(id, LockMode::None).await? else {
                    return Ok(None);
                };
                let waiting = tx.waitlist(id, &[WaitlistStatus::Waiting]).await?.len();
                Ok(Some(
                    event.availability(u32::try_from(waiting).unwrap_or(u32::MAX)),
                ))
            },
        )
        .await
    }

    /// Drops the cached entries of `events` now (also done after every committed write).
    pub async fn invalidate(&self, events: impl IntoIterator<Item = EventId>) {
        self.cache.invalidate(events.into_iter().collect()).await;
    }

    /// How many invalidations wait for Redis to come back.
    pub fn pending_invalidations(&self) -> usize {
        self.cache.pending().len()
    }

    async fn read_through<T, F>(
        &self,
        id: EventId,
        kind: Kind,
        ttl: Duration,
        load: F,
    ) -> R<Lookup<Option<T>>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: AsyncFnOnce() -> R<Option<T>>,
    {
        let keys = self.cache.keys(id);
        let entry_key = match kind {
            Kind::Event => keys.event.clone(),
            Kind::Availability => keys.availability.clone(),
        };
        // Redis is used only once no invalidation of this process is outstanding.
        let usable = self.cache.flush_pending().await;
        let seen = if usable {
            let got = self
                .cache
                .redis
                .run(|mut c| {
                    let (e, g) = (entry_key.clone(), keys.generation.clone());
                    async move {
                        redis::cmd("MGET")
                            .arg(e)
                            .arg(g)
                            .query_async::<(Option<String>, Option<String>)>(&mut c)
                            .await
                    }
                })
                .await;
            match got {
                Ok((Some(json), _)) => match serde_json::from_str::<T>(&json) {
                    Ok(v) => {
                        return Ok(Lookup {
                            value: Some(v),
                            from_cache: true,
                        });
                    }
                    Err(e) => {
                        // Not ours (an older format): read the store and overwrite it.
                        tracing::warn!(event_id = %id, error = %e, "undecodable cache entry");
                        None
                    }
                },
                Ok((None, generation)) => Some(generation.unwrap_or_else(|| "0".into())),
                Err(e) => {
                    tracing::debug!(event_id = %id, error = %e, "cache bypassed");
                    None
                }
            }
        } else {
            None
        };
        let value = load().await?;
        if let (Some(generation), Some(v)) = (seen, value.as_ref())
            && let Ok(json) = serde_json::to_string(v)
        {
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let filled = self
                .cache
                .redis
                .run(|mut c| async move {
                    FILL.key(entry_key)
                        .key(keys.generation)
                        .arg(generation)
                        .arg(json)
                        .arg(ttl_ms)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
            if let Err(e) = filled {
                tracing::debug!(event_id = %id, error = %e, "cache fill failed");
            }
        }
        Ok(Lookup {
            value,
            from_cache: false,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Event,
    Availability,
}

struct Keys {
    event: String,
    availability: String,
    generation: String,
}

impl Cache {
    fn keys(&self, id: EventId) -> Keys {
        // One hash tag per event: its keys share a cluster slot, as a script needs.
        let base = self.redis.key(&format!("cache:{{{id}}}:"));
        Keys {
            event: format!("{base}event"),
            availability: format!("{base}availability"),
            generation: format!("{base}generation"),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<EventId>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends outstanding invalidations; true when none is left.
    async fn flush_pending(&self) -> bool {
        let ids: Vec<EventId> = self.pending().iter().copied().collect();
        if ids.is_empty() {
            return true;
        }
        self.invalidate(ids).await;
        self.pending().is_empty()
    }

    async fn invalidate(&self, ids: Vec<EventId>) {
        self.send(Unsent { cache: self, ids }).await;
    }

    /// Sends `unsent`'s invalidations. Until Redis has taken them, the guard keeps them: a caller
    /// that goes away meanwhile (its future dropped) leaves them pending, as a failure does.
    async fn send(&self, mut unsent: Unsent<'_>) {
        let ids = &unsent.ids;
        if ids.is_empty() {
            return;
        }
        let generation_ms = {
            let longest = self.config.event_ttl.max(self.config.availability_ttl);
            u64::try_from(longest.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(10)
                .max(60_000)
        };
        let mut invocation = INVALIDATE.prepare_invoke();
        for id in ids {
            let k = self.keys(*id);
            invocation
                .key(k.event)
                .key(k.availability)
                .key(k.generation);
        }
        invocation.arg(generation_ms);
        let done = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await;
        let ids = std::mem::take(&mut unsent.ids);
        let mut pending = self.pending();
        match done {
            Ok(_) => {
                for id in &ids {
                    pending.remove(id);
                }
            }
            Err(e) => {
                tracing::warn!(events = ids.len(), error = %e, "cache invalidation deferred: Redis unavailable");
                pending.extend(ids);
            }
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn begin(&self) -> R<Box<dyn Transaction>> {
        Ok(Box::new(CachedTx {
            inner: self.inner.begin().await?,
            cache: self.cache.clone(),
            touched: HashSet::new(),
        }))
    }

    async fn begin_read(&self) -> R<Box<dyn Transaction>> {
        Ok(Box::new(CachedTx {
            inner: self.inner.begin_read().await?,
            cache: self.cache.clone(),
            touched: HashSet::new(),
        }))
    }

    fn job_queue(&self) -> Arc<dyn JobQueue> {
        self.inner.job_queue()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> R<()> {
        self.inner.ping().await
    }
}

/// A transaction of the wrapped store that records the events its writes touch.
struct CachedTx {
    inner: Box<dyn Transaction>,
    cache: Arc<Cache>,
    touched: HashSet<EventId>,
}

#[async_trait]
impl UserRepository for CachedTx {
    async fn user(&mut self, id: UserId) -> R<Option<User>> {
        self.inner.user(id).await
    }
    async fn user_by_email(&mut self, email: &str) -> R<Option<User>> {
        self.inner.user_by_email(email).await
    }
    async fn users(&mut self, ids: &[UserId]) -> R<Vec<User>> {
        self.inner.users(ids).await
    }
}

#[async_trait]
impl EventRepository for CachedTx {
    async fn event(&mut self, id: EventId, lock: LockMode) -> R<Option<Event>> {
        self.inner.event(id, lock).await
    }
    async fn list_events(&mut self, filter: &EventFilter) -> R<Vec<Event>> {
        self.inner.list_events(filter).await
    }
    async fn events_with_expired_holds(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<EventId>> {
        self.inner.events_with_expired_holds(now, limit).await
    }
}

#[async_trait]
impl BookingRepository for CachedTx {
    async fn booking(&mut self, id: BookingId) -> R<Option<Booking>> {
        self.inner.booking(id).await
    }
    async fn booking_by_idempotency_key(&mut self, user: UserId, key: &str) -> R<Option<Booking>> {
        self.inner.booking_by_idempotency_key(user, key).await
    }
    async fn bookings_for_user(&mut self, user: UserId) -> R<Vec<Booking>> {
        self.inner.bookings_for_user(user).await
    }
    async fn bookings_for_event(&mut self, event: EventId) -> R<Vec<Booking>> {
        self.inner.bookings_for_event(event).await
    }
    async fn expired_holds(
        &mut self,
        event: EventId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> R<Vec<Booking>> {
        self.inner.expired_holds(event, now, limit).await
    }
}

#[async_trait]
impl WaitlistRepository for CachedTx {
    async fn waitlist_entry(&mut self, id: WaitlistEntryId) -> R<Option<WaitlistEntry>> {
        self.inner.waitlist_entry(id).await
    }
    async fn live_waitlist_entry(
        &mut self,
        event: EventId,
        user: UserId,
    ) -> R<Option<WaitlistEntry>> {
        self.inner.live_waitlist_entry(event, user).await
    }
    async fn waitlist(
        &mut self,
        event: EventId,
        statuses: &[WaitlistStatus],
    ) -> R<Vec<WaitlistEntry>> {
        self.inner.waitlist(event, statuses).await
    }
}

#[async_trait]
impl TicketRepository for CachedTx {
    async fn tickets_for_booking(&mut self, booking: BookingId) -> R<Vec<Ticket>> {
        self.inner.tickets_for_booking(booking).await
    }
    async fn ticket_by_number(&mut self, number: &str) -> R<Option<Ticket>> {
        self.inner.ticket_by_number(number).await
    }
}

#[async_trait]
impl NotificationRepository for CachedTx {
    async fn notification(&mut self, id: NotificationId) -> R<Option<Notification>> {
        self.inner.notification(id).await
    }
    async fn notification_deliveries(&mut self, id: NotificationId) -> R<Vec<String>> {
        self.inner.notification_deliveries(id).await
    }

    async fn notifications_for_user(
        &mut self,
        user: UserId,
        query: &NotificationQuery,
    ) -> R<Vec<Notification>> {
        self.inner.notifications_for_user(user, query).await
    }
}

#[async_trait]
impl PushSubscriptionRepository for CachedTx {
    async fn push_subscriptions_for_user(&mut self, user: UserId) -> R<Vec<PushSubscription>> {
        self.inner.push_subscriptions_for_user(user).await
    }
}

/// Invalidations not yet taken by Redis; dropped with some left (the future that was sending them
/// was dropped), it records them as pending, so they are sent before this process trusts the cache
/// again.
struct Unsent<'a> {
    cache: &'a Cache,
    ids: Vec<EventId>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.cache.pending().extend(self.ids.drain(..));
        }
    }
}

#[async_trait]
impl Transaction for CachedTx {
    /// Forwarded; the events the change set touches are dropped from the cache at commit.
    async fn apply(&mut self, changes: Changes) -> R<()> {
        self.touched.extend(changes.touched_events());
        self.inner.apply(changes).await
    }

    async fn commit(self: Box<Self>) -> R<()> {
        let CachedTx {
            inner,
            cache,
            touched,
        } = *self;
        // Held from before COMMIT: a commit whose caller goes away may still have happened.
        let unsent = Unsent {
            cache: &cache,
            ids: touched.into_iter().collect(),
        };
        let committed = inner.commit().await;
        // Also after a failed commit: a lost answer to COMMIT may hide a commit that happened.
        cache.send(unsent).await;
        committed
    }

    async fn rollback(self: Box<Self>) -> R<()> {
        self.inner.rollback().await
    }
}
