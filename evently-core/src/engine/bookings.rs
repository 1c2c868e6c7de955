use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{Evently, Work, account, chrono_dur, record_notification};
use crate::model::{
    Booking, BookingSource, BookingStatus, Event, Notification, NotificationKind, Ticket,
    WaitlistStatus,
};
use crate::ports::{IdGenerator, LockMode};
use crate::{
    Actor, BookingId, Entity, Error, EventId, NotificationId, Result, StoreError, TicketId, UserId,
};

/// A request for seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRequest {
    /// The event.
    pub event_id: EventId,
    /// Seats, 1 to [`EngineConfig::max_seats_per_booking`](crate::EngineConfig).
    pub quantity: u32,
    /// Makes retries safe: the same key (per user) returns the same booking instead of booking again.
    pub idempotency_key: Option<String>,
    /// For holds: how long to hold (default and maximum from the config).
    pub hold_for: Option<Duration>,
}

impl BookingRequest {
    /// `quantity` seats of `event_id`, no idempotency key, default hold time.
    pub fn new(event_id: EventId, quantity: u32) -> Self {
        Self {
            event_id,
            quantity,
            idempotency_key: None,
            hold_for: None,
        }
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the hold time.
    pub fn hold_for(mut self, d: Duration) -> Self {
        self.hold_for = Some(d);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Hold,
    Book,
}

/// What [`Evently::book_reporting_replay`] and [`Evently::hold_reporting_replay`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The booking: the new one, or the one an earlier request with the same key made.
    pub booking: Booking,
    /// Whether `booking` comes from an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// A validated booking request waiting for its transaction.
pub(crate) struct Pending {
    /// Assigned up front, so a request whose outcome was lost can find out whether it committed.
    pub(crate) booking_id: BookingId,
    pub(crate) actor: Actor,
    pub(crate) req: BookingRequest,
    pub(crate) mode: Mode,
    pub(crate) ttl: Duration,
    /// The event's pricing policy when the request arrived.
    pub(crate) pricing: Arc<dyn crate::ports::PricingPolicy>,
    /// For a direct booking: its records, built before it queues for the event (see [`Prepared`]).
    /// The first transaction that confirms the booking takes them; a retry builds new ones.
    pub(crate) prepared: Mutex<Option<Prepared>>,
}

impl Pending {
    fn take_prepared(&self) -> Option<Prepared> {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The tickets and the confirmation of a booking, built before its transaction: ids, ticket numbers
/// and QR payloads need neither the event's lock nor its current state, so this work runs in the
/// requesting task, in parallel with the transaction that holds the event's lock. The transaction
/// fills in the times and the total.
#[derive(Debug)]
pub(crate) struct Prepared {
    tickets: Vec<Ticket>,
    notification: Notification,
}

impl Prepared {
    /// Whether these records were built for `booking`.
    fn fits(&self, booking: &Booking) -> bool {
        self.tickets.len() == booking.quantity as usize
            && self
                .tickets
                .iter()
                .all(|t| t.booking_id == booking.id && t.event_id == booking.event_id)
            && self.notification.user_id == booking.user_id
    }
}

impl Evently {
    /// Holds seats until the hold time runs out; [`Evently::confirm`] turns the hold into a sale.
    /// Fails with [`Error::SoldOut`] when too few seats are free.
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
    /// let hold = engine.hold(&alice, BookingRequest::new(event.id, 2)).await?;
    /// assert_eq!(hold.status, BookingStatus::Held);
    /// // Held seats are taken: nobody else can book them until the hold ends.
    /// assert!(matches!(
    ///     engine.book(&bob, BookingRequest::new(event.id, 1)).await,
    ///     Err(Error::SoldOut { available: 0, .. })
    /// ));
    /// let sold = engine.confirm(&alice, hold.id).await?;
    /// assert_eq!(sold.status, BookingStatus::Confirmed);
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn hold(&self, actor: &Actor, req: BookingRequest) -> Result<Booking> {
        self.reserve(actor, req, Mode::Hold)
            .await
            .map(|r| r.booking)
    }

    /// Books seats directly (confirmed at once, tickets issued).
    /// Fails with [`Error::SoldOut`] when too few seats are free.
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
    /// // The same idempotency key books once: a retry returns the first booking.
    /// let request = BookingRequest::new(event.id, 2).idempotency_key("order-17");
    /// let booking = engine.book(&alice, request.clone()).await?;
    /// assert_eq!(booking.status, BookingStatus::Confirmed);
    /// assert_eq!(engine.book(&alice, request).await?.id, booking.id);
    /// assert_eq!(engine.tickets(&alice, booking.id).await?.len(), 2);
    ///
    /// match engine.book(&bob, BookingRequest::new(event.id, 1)).await {
    ///     Err(Error::SoldOut { requested, available, .. }) => assert_eq!((requested, available), (1, 0)),
    ///     other => panic!("expected SoldOut, got {other:?}"),
    /// }
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn book(&self, actor: &Actor, req: BookingRequest) -> Result<Booking> {
        self.reserve(actor, req, Mode::Book)
            .await
            .map(|r| r.booking)
    }

    /// [`Evently::hold`], also telling whether the answer replays an earlier request with the same
    /// idempotency key (an API answers a replay differently, e.g. 200 instead of 201).
    pub async fn hold_reporting_replay(
        &self,
        actor: &Actor,
        req: BookingRequest,
    ) -> Result<Reservation> {
        self.reserve(actor, req, Mode::Hold).await
    }

    /// [`Evently::book`], also telling whether the answer replays an earlier request with the same
    /// idempotency key.
    pub async fn book_reporting_replay(
        &self,
        actor: &Actor,
        req: BookingRequest,
    ) -> Result<Reservation> {
        self.reserve(actor, req, Mode::Book).await
    }

    fn check_request(&self, req: &BookingRequest) -> Result<Duration> {
        let cfg = &self.inner.config;
        if req.quantity == 0 || req.quantity > cfg.max_seats_per_booking {
            return Err(Error::validation(
                "quantity",
                format!("must be 1 to {}", cfg.max_seats_per_booking),
            ));
        }
        if let Some(k) = &req.idempotency_key
            && (k.is_empty() || k.len() > 200 || k.chars().any(char::is_control))
        {
            return Err(Error::validation(
                "idempotency_key",
                "must be 1 to 200 bytes without control characters",
            ));
        }
        let ttl = req.hold_for.unwrap_or(cfg.default_hold_ttl);
        if ttl < Duration::from_secs(1) || ttl > cfg.max_hold_ttl {
            return Err(Error::validation(
                "hold_for",
                format!("must be 1 s to {} s", cfg.max_hold_ttl.as_secs()),
            ));
        }
        Ok(ttl)
    }

    async fn reserve(&self, actor: &Actor, req: BookingRequest, mode: Mode) -> Result<Reservation> {
        let ttl = self.check_request(&req)?;
        let event_id = req.event_id;
        let booking_id = BookingId(self.inner.ids.uuid());
        let prepared = match mode {
            Mode::Book => Some(prepare(
                &*self.inner.ids,
                req.event_id,
                booking_id,
                actor.user_id,
                req.quantity,
            )),
            Mode::Hold => None,
        };
        let pending = Pending {
            booking_id,
            actor: *actor,
            req,
            mode,
            ttl,
            pricing: self.inner.policies.pricing_for(event_id),
            prepared: Mutex::new(prepared),
        };
        let span = tracing::debug_span!("reserve", event_id = %event_id, user_id = %actor.user_id);
        // Shared with the event's queue when requests are combined; on the caller's stack otherwise.
        let shared;
        let (result, pending) = if self.inner.config.max_batch > 1 {
            shared = Arc::new(pending);
            let r = self.reserve_combined(shared.clone()).instrument(span).await;
            (r, &*shared)
        } else {
            (self.reserve_one(&pending).instrument(span).await, &pending)
        };
        let req = &pending.req;
        match result {
            // Two requests with one key for different events raced past each other's lock: the loser
            // sees the unique constraint. Answer as an idempotent replay would.
            Err(Error::Store(StoreError::UniqueViolation { .. }))
                if req.idempotency_key.is_some() =>
            {
                let key = req.idempotency_key.as_deref().unwrap_or_default();
                let mut tx = self.inner.store.begin_read().await?;
                match tx.booking_by_idempotency_key(actor.user_id, key).await? {
                    Some(existing) => replay(existing, req),
                    None => Err(Error::conflict(
                        "idempotency key collision; retry the request",
                    )),
                }
            }
            other => {
                let outcome = match &other {
                    Ok(_) => "ok",
                    Err(Error::SoldOut { .. }) => "sold_out",
                    Err(_) => "error",
                };
                metrics::counter!("evently_bookings_total", "outcome" => outcome).increment(1);
                other
            }
        }
        .map(|booking| Reservation {
            // A new booking carries the id assigned above; a replay is the earlier one.
            replayed: booking.id != pending.booking_id,
            booking,
        })
    }

    /// One request in a transaction of its own, retried while it fails transiently.
    pub(crate) async fn reserve_one(&self, p: &Pending) -> Result<Booking> {
        self.retrying("reserve", || async {
            let mut results = self.reserve_batch_tx(&[p]).await.map_err(|e| match e {
                Error::Store(StoreError::ForeignKeyViolation { .. }) => {
                    Error::not_found(Entity::User, p.actor.user_id)
                }
                other => other,
            })?;
            results
                .pop()
                .unwrap_or_else(|| Err(Error::conflict("the booking request produced no outcome")))
        })
        .await
    }

    /// Runs every request of `batch` (all for one event) in ONE transaction under one lock of the event,
    /// in order, and commits once. Each request gets its own outcome (a booking, or a refusal such as
    /// [`Error::SoldOut`] decided before it wrote anything). A store failure aborts the whole
    /// transaction and is returned as the outer error; the caller then runs the requests one by one.
    pub(crate) async fn reserve_batch_tx(
        &self,
        batch: &[&Pending],
    ) -> Result<Vec<Result<Booking>>> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let event_id = first.req.event_id;
        // Read before the transaction begins: on a store with one lock, the clock is not read while
        // holding it. The time is a few microseconds early (a lock wait longer on a busy SQL store),
        // which no decision here notices.
        let now = self.now();
        let mut work = Work::begin(&*self.inner.store).await?;
        let Some(mut event) = work
            .read()
            .await?
            .event(event_id, LockMode::ForUpdate)
            .await?
        else {
            return Ok(batch
                .iter()
                .map(|_| Err(Error::not_found(Entity::Event, event_id)))
                .collect());
        };
        let mut dirty = false;
        let mut results = Vec::with_capacity(batch.len());
        for p in batch {
            match self
                .reserve_in_tx(&mut work, &mut event, p, now, &mut dirty)
                .await
            {
                Err(e @ Error::Store(_)) => return Err(e),
                outcome => results.push(outcome),
            }
        }
        if dirty {
            work.changes.updated_events.push(event);
            work.commit().await.map_err(|e| match e {
                // A booking's own constraints are reported as they are (the idempotency key's is
                // answered as a replay by the caller).
                StoreError::UniqueViolation { constraint }
                    if constraint.starts_with("bookings") =>
                {
                    Error::Store(StoreError::UniqueViolation { constraint })
                }
                other => confirmation_error(other),
            })?;
        }
        Ok(results)
    }

    /// One request inside a transaction that holds the event's lock. Sets `dirty` when it wrote anything.
    /// Refusals are decided before this request writes; store errors leave the transaction unusable.
    async fn reserve_in_tx(
        &self,
        work: &mut Work,
        event: &mut Event,
        p: &Pending,
        now: DateTime<Utc>,
        dirty: &mut bool,
    ) -> Result<Booking> {
        let (actor, req) = (&p.actor, &p.req);
        if let Some(key) = &req.idempotency_key {
            // An earlier request of this batch with the same key, or a stored booking.
            let batched = work.changes.new_bookings.iter().find(|b| {
                b.user_id == actor.user_id && b.idempotency_key.as_deref() == Some(key.as_str())
            });
            if let Some(existing) = batched {
                return replay(existing.clone(), req);
            }
            if let Some(existing) = work
                .read_stored()
                .booking_by_idempotency_key(actor.user_id, key)
                .await?
            {
                return replay(existing, req);
            }
        }
        check_open(event, now)?;
        if event.seats_free() < req.quantity {
            // Seats may be tied up by holds that already ran out: release them (and let the waitlist
            // have its turn) before saying no. What that changes is kept even if this request fails.
            *dirty |= self.expire_due(work, event, now).await?.changed();
            if event.seats_free() < req.quantity {
                return Err(Error::SoldOut {
                    event_id: event.id,
                    requested: req.quantity,
                    available: event.seats_free(),
                });
            }
        }
        let total_price = self
            .price_with(&*p.pricing, work, actor, event, req.quantity, now)
            .await?;
        let booking = new_booking(p, event, total_price, now)?;
        *dirty = true;
        work.changes.new_bookings.push(booking.clone());
        if booking.status == BookingStatus::Confirmed {
            self.on_confirmed(work, &booking, now, p.take_prepared());
        }
        Ok(booking)
    }

    /// Reads a booking and locks its event. The engine changes a booking only under its event's lock, so
    /// the booking is read again once the lock is held.
    async fn lock_booking(
        &self,
        work: &mut Work,
        actor: &Actor,
        id: BookingId,
    ) -> Result<(Booking, Event)> {
        let tx = work.read().await?;
        let first = tx
            .booking(id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Booking, id))?;
        if first.user_id != actor.user_id && !actor.is_admin() {
            return Err(Error::not_found(Entity::Booking, id));
        }
        let event = tx
            .event(first.event_id, LockMode::ForUpdate)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Event, first.event_id))?;
        let booking = tx
            .booking(id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Booking, id))?;
        Ok((booking, event))
    }

    /// Confirms a hold: seats sold, tickets issued, confirmation queued. Confirming a confirmed booking
    /// returns it unchanged. A hold that ran out is expired and [`Error::HoldExpired`] returned.
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
    /// let hold = engine.hold(&alice, BookingRequest::new(event.id, 1)).await?;
    /// let booking = engine.confirm(&alice, hold.id).await?;
    /// assert_eq!(booking.status, BookingStatus::Confirmed);
    /// assert_eq!(engine.tickets(&alice, booking.id).await?.len(), 1);
    /// // Confirming again changes nothing; someone else cannot confirm it at all.
    /// assert_eq!(engine.confirm(&alice, hold.id).await?, booking);
    /// assert!(engine.confirm(&bob, hold.id).await.is_err());
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn confirm(&self, actor: &Actor, id: BookingId) -> Result<Booking> {
        self.retrying("confirm", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let (mut booking, mut event) = self.lock_booking(&mut work, actor, id).await?;
            let now = self.now();
            if booking.status == BookingStatus::Confirmed {
                return Ok(booking);
            }
            if booking.hold_expired(now) {
                let held_until = booking.held_until.unwrap_or(now);
                self.expire_due(&mut work, &mut event, now).await?;
                work.changes.updated_events.push(event);
                work.commit().await?;
                return Err(Error::HoldExpired {
                    booking_id: id,
                    held_until,
                });
            }
            booking.confirm(now)?;
            account(&mut event, &booking, Some(BookingStatus::Held))?;
            work.changes.updated_bookings.push(booking.clone());
            if let BookingSource::WaitlistOffer(entry_id) = booking.source
                && let Some(mut entry) = work.read_stored().waitlist_entry(entry_id).await?
                && entry.status == WaitlistStatus::Offered
            {
                entry.transition(WaitlistStatus::Accepted)?;
                work.changes.updated_waitlist_entries.push(entry);
            }
            self.on_confirmed(&mut work, &booking, now, None);
            work.changes.updated_events.push(event);
            work.commit().await.map_err(confirmation_error)?;
            Ok(booking)
        })
        .await
    }

    /// Cancels a held or confirmed booking, frees its seats (once: cancelling a cancelled booking returns
    /// it unchanged) and offers them to the waitlist. Cancelling a waitlist offer declines it.
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
    /// let booking = engine.book(&alice, BookingRequest::new(event.id, 2)).await?;
    /// assert_eq!(engine.availability(event.id).await?.available, 0);
    /// let cancelled = engine.cancel(&alice, booking.id).await?;
    /// assert_eq!(cancelled.status, BookingStatus::Cancelled);
    /// assert_eq!(engine.availability(event.id).await?.available, 2);
    /// // Cancelling twice frees the seats once.
    /// assert_eq!(engine.cancel(&alice, booking.id).await?, cancelled);
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn cancel(&self, actor: &Actor, id: BookingId) -> Result<Booking> {
        self.retrying("cancel", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let (mut booking, mut event) = self.lock_booking(&mut work, actor, id).await?;
            let now = self.now();
            if booking.status == BookingStatus::Cancelled {
                return Ok(booking);
            }
            let from = booking.status;
            booking.cancel(now)?;
            account(&mut event, &booking, Some(from))?;
            work.changes.updated_bookings.push(booking.clone());
            if let BookingSource::WaitlistOffer(entry_id) = booking.source
                && let Some(mut entry) = work.read().await?.waitlist_entry(entry_id).await?
                && entry.status == WaitlistStatus::Offered
            {
                entry.transition(WaitlistStatus::Left)?;
                work.changes.updated_waitlist_entries.push(entry);
            }
            if from == BookingStatus::Confirmed {
                let mut n =
                    self.notification(booking.user_id, NotificationKind::BookingCancelled, now);
                n.event_id = Some(event.id);
                n.booking_id = Some(booking.id);
                n.seats = Some(booking.quantity);
                record_notification(&mut work, n, now);
            }
            self.promote(&mut work, &mut event, now).await?;
            work.changes.updated_events.push(event);
            work.commit().await?;
            Ok(booking)
        })
        .await
    }

    /// A booking (its owner or an admin).
    pub async fn booking(&self, actor: &Actor, id: BookingId) -> Result<Booking> {
        let mut tx = self.inner.store.begin_read().await?;
        match tx.booking(id).await? {
            Some(b) if b.user_id == actor.user_id || actor.is_admin() => Ok(b),
            _ => Err(Error::not_found(Entity::Booking, id)),
        }
    }

    /// The actor's bookings, newest first.
    pub async fn my_bookings(&self, actor: &Actor) -> Result<Vec<Booking>> {
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.bookings_for_user(actor.user_id).await?)
    }

    /// An event's bookings (admins only), oldest first.
    pub async fn event_bookings(&self, actor: &Actor, event: EventId) -> Result<Vec<Booking>> {
        if !actor.is_admin() {
            return Err(Error::forbidden(
                "only administrators list an event's bookings",
            ));
        }
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.bookings_for_event(event).await?)
    }

    /// The tickets of a booking (its owner or an admin).
    pub async fn tickets(&self, actor: &Actor, id: BookingId) -> Result<Vec<Ticket>> {
        let mut tx = self.inner.store.begin_read().await?;
        match tx.booking(id).await? {
            Some(b) if b.user_id == actor.user_id || actor.is_admin() => {
                Ok(tx.tickets_for_booking(id).await?)
            }
            _ => Err(Error::not_found(Entity::Booking, id)),
        }
    }

    /// Expires every hold and waitlist offer that has run out, across all events, and promotes their
    /// waitlists. Returns how many bookings were expired. Run it periodically (the reference server does).
    pub async fn expire_holds(&self) -> Result<u32> {
        let now = self.now();
        let mut total = 0;
        loop {
            let ids = {
                let mut tx = self.inner.store.begin_read().await?;
                tx.events_with_expired_holds(now, 100).await?
            };
            if ids.is_empty() {
                return Ok(total);
            }
            let mut progressed = 0;
            for id in ids {
                progressed += self.expire_event_holds(id, now).await?;
            }
            total += progressed;
            if progressed == 0 {
                return Ok(total);
            }
        }
    }

    pub(crate) async fn expire_event_holds(&self, id: EventId, now: DateTime<Utc>) -> Result<u32> {
        self.retrying("expire_holds", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let Some(mut event) = work.read().await?.event(id, LockMode::ForUpdate).await? else {
                return Ok(0);
            };
            let swept = self.expire_due(&mut work, &mut event, now).await?;
            if swept.changed() {
                work.changes.updated_events.push(event);
                work.commit().await?;
            }
            Ok(swept.expired)
        })
        .await
    }

    /// Inside a transaction holding the event's lock: expires its holds that ran out (waitlist offers too),
    /// then promotes its waitlist. The caller writes the event.
    pub(crate) async fn expire_due(
        &self,
        work: &mut Work,
        event: &mut Event,
        now: DateTime<Utc>,
    ) -> Result<Swept> {
        let mut n = 0;
        loop {
            let due = work.read().await?.expired_holds(event.id, now, 500).await?;
            if due.is_empty() {
                break;
            }
            for mut b in due {
                b.expire(now)?;
                account(event, &b, Some(BookingStatus::Held))?;
                work.changes.updated_bookings.push(b.clone());
                n += 1;
                if b.source == BookingSource::Direct {
                    let mut n = self.notification(b.user_id, NotificationKind::HoldExpired, now);
                    n.event_id = Some(event.id);
                    n.booking_id = Some(b.id);
                    n.seats = Some(b.quantity);
                    record_notification(work, n, now);
                } else if let BookingSource::WaitlistOffer(entry_id) = b.source
                    && let Some(mut entry) = work.read().await?.waitlist_entry(entry_id).await?
                    && entry.status == WaitlistStatus::Offered
                {
                    entry.transition(WaitlistStatus::Expired)?;
                    work.changes.updated_waitlist_entries.push(entry);
                    let mut n =
                        self.notification(b.user_id, NotificationKind::WaitlistOfferExpired, now);
                    n.event_id = Some(event.id);
                    n.seats = Some(b.quantity);
                    record_notification(work, n, now);
                }
            }
        }
        if n > 0 {
            tracing::debug!(event_id = %event.id, expired = n, "expired holds");
            metrics::counter!("evently_holds_expired_total").increment(u64::from(n));
        }
        let offered = self.promote(work, event, now).await?;
        Ok(Swept {
            expired: n,
            offered,
        })
    }

    /// Issues tickets and queues the confirmation for a booking that just became confirmed: from
    /// the records built beforehand when they fit the booking, with the times and the total filled
    /// in.
    fn on_confirmed(
        &self,
        work: &mut Work,
        booking: &Booking,
        now: DateTime<Utc>,
        prepared: Option<Prepared>,
    ) {
        let Prepared {
            mut tickets,
            mut notification,
        } = match prepared {
            Some(p) if p.fits(booking) => p,
            _ => prepare(
                &*self.inner.ids,
                booking.event_id,
                booking.id,
                booking.user_id,
                booking.quantity,
            ),
        };
        for t in &mut tickets {
            t.issued_at = now;
        }
        notification.created_at = now;
        notification.total = Some(booking.total_price);
        work.changes.new_tickets.append(&mut tickets);
        record_notification(work, notification, now);
    }
}

/// A store error from recording a confirmation. A ticket-number collision (or, vanishingly rarely,
/// of a fresh id) becomes transient: retrying the whole transaction draws new numbers and ids.
fn confirmation_error(e: StoreError) -> Error {
    match e {
        StoreError::UniqueViolation { constraint } => Error::Store(StoreError::Transient {
            message: format!("collision on {constraint} while issuing tickets"),
        }),
        other => other.into(),
    }
}

/// The booking `p` makes on `event` at `now` for `total_price`, its seats accounted in `event`.
fn new_booking(
    p: &Pending,
    event: &mut Event,
    total_price: crate::Money,
    now: DateTime<Utc>,
) -> Result<Booking> {
    let (status, held_until) = match p.mode {
        Mode::Hold => (BookingStatus::Held, Some(now + chrono_dur(p.ttl))),
        Mode::Book => (BookingStatus::Confirmed, None),
    };
    let booking = Booking {
        id: p.booking_id,
        user_id: p.actor.user_id,
        event_id: event.id,
        quantity: p.req.quantity,
        total_price,
        status,
        held_until,
        idempotency_key: p.req.idempotency_key.clone(),
        source: BookingSource::Direct,
        created_at: now,
        updated_at: now,
    };
    account(event, &booking, None)?;
    Ok(booking)
}

/// The records of a confirmed booking that do not depend on the event's state (see [`Prepared`]).
fn prepare(
    ids: &dyn IdGenerator,
    event_id: EventId,
    booking_id: BookingId,
    user_id: UserId,
    quantity: u32,
) -> Prepared {
    let tickets = (0..quantity)
        .map(|_| {
            let number = ids.ticket_number();
            Ticket {
                id: TicketId(ids.uuid()),
                booking_id,
                event_id,
                qr_payload: qr_payload(event_id, booking_id, &number),
                number,
                issued_at: DateTime::UNIX_EPOCH,
            }
        })
        .collect();
    let mut notification = Notification::new(
        NotificationId(ids.uuid()),
        user_id,
        NotificationKind::BookingConfirmed,
        DateTime::UNIX_EPOCH,
    );
    notification.event_id = Some(event_id);
    notification.booking_id = Some(booking_id);
    notification.seats = Some(quantity);
    Prepared {
        tickets,
        notification,
    }
}

pub(crate) fn check_open(event: &Event, now: DateTime<Utc>) -> Result<()> {
    if !event.active {
        return Err(Error::EventClosed {
            event_id: event.id,
            reason: "the event is not active",
        });
    }
    if event.starts_at <= now {
        return Err(Error::EventClosed {
            event_id: event.id,
            reason: "the event has already started",
        });
    }
    Ok(())
}

/// What [`Evently::expire_due`] changed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Swept {
    /// Holds (and offers) expired.
    pub(crate) expired: u32,
    /// Waitlist offers made with the freed seats.
    pub(crate) offered: u32,
}

impl Swept {
    pub(crate) fn changed(&self) -> bool {
        self.expired > 0 || self.offered > 0
    }
}

/// An idempotent replay: the stored booking (in whatever status it has reached), if the request names the
/// same event and quantity as the one that created it.
fn replay(existing: Booking, req: &BookingRequest) -> Result<Booking> {
    if existing.event_id != req.event_id || existing.quantity != req.quantity {
        return Err(Error::conflict(
            "idempotency key already used for a different booking request",
        ));
    }
    Ok(existing)
}

/// `evently:v1:<event id>:<booking id>:<ticket number>`, the payload a ticket's QR code carries.
fn qr_payload(event: EventId, booking: BookingId, number: &str) -> String {
    format!("evently:v1:{event}:{booking}:{number}")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{Currency, Money, UserId};

    #[test]
    fn the_qr_payload_has_its_documented_shape() {
        let (event_id, booking_id) = (EventId::new(), BookingId::new());
        assert_eq!(
            qr_payload(event_id, booking_id, "EVT-AAAA-BBBB-CCCC"),
            format!("evently:v1:{event_id}:{booking_id}:EVT-AAAA-BBBB-CCCC")
        );
    }

    #[test]
    fn prepared_records_are_used_only_for_the_booking_they_were_built_for() {
        let (event_id, booking_id, user_id) = (EventId::new(), BookingId::new(), UserId::new());
        let p = prepare(
            &crate::ports::DefaultIdGenerator,
            event_id,
            booking_id,
            user_id,
            3,
        );
        assert_eq!(p.tickets.len(), 3);
        for t in &p.tickets {
            assert_eq!(
                t.qr_payload,
                format!("evently:v1:{event_id}:{booking_id}:{}", t.number)
            );
        }
        assert_eq!(p.notification.kind, NotificationKind::BookingConfirmed);
        assert_eq!(p.notification.booking_id, Some(booking_id));
        assert_eq!(p.notification.event_id, Some(event_id));
        assert_eq!(p.notification.seats, Some(3));
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        let booking = Booking {
            id: booking_id,
            user_id,
            event_id,
            quantity: 3,
            total_price: Money::new(0, Currency::new("EUR").unwrap()),
            status: BookingStatus::Confirmed,
            held_until: None,
            idempotency_key: None,
            source: BookingSource::Direct,
            created_at: at,
            updated_at: at,
        };
        assert!(p.fits(&booking));
        assert!(!p.fits(&Booking {
            quantity: 2,
            ..booking.clone()
        }));
        assert!(!p.fits(&Booking {
            id: BookingId::new(),
            ..booking.clone()
        }));
        assert!(!p.fits(&Booking {
            user_id: UserId::new(),
            ..booking
        }));
    }
}
