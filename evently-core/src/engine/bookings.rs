use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{Draft, Evently, Work, account, chrono_dur};
use crate::model::{
    Booking, BookingSource, BookingStatus, Event, Notification, NotificationData, NotificationKind,
    Ticket, WaitlistStatus,
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

/// The tickets and the confirmation of a booking, built before its transaction: ids, ticket numbers,
/// QR payloads and the notification's data need neither the event's lock nor its current state, so
/// this work runs in the requesting task, in parallel with the transaction that holds the event's lock.
/// The transaction fills in the times and the texts (which name the event and the price).
#[derive(Debug)]
pub(crate) struct Prepared {
    tickets: Vec<Ticket>,
    notification: Notification,
    /// When this thread had texts for the event: the texts the notification's title and message were
    /// written with, for the price they assumed. The transaction keeps them if the event still has
    /// those texts and the booking that price; otherwise it writes them again.
    written: Option<(Arc<ConfirmationTexts>, crate::Money)>,
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
        let mut texts: Option<Arc<ConfirmationTexts>> = None;
        let mut results = Vec::with_capacity(batch.len());
        for p in batch {
            match self
                .reserve_in_tx(&mut work, &mut event, p, now, &mut dirty, &mut texts)
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
        texts: &mut Option<Arc<ConfirmationTexts>>,
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
            self.on_confirmed(work, event, &booking, now, p.take_prepared(), texts);
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
            self.on_confirmed(&mut work, &event, &booking, now, None, &mut None);
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
                self.notify(
                    &mut work,
                    Draft {
                        user_id: booking.user_id,
                        kind: NotificationKind::BookingCancelled,
                        title: format!("Booking cancelled: {}", event.name),
                        message: format!(
                            "Your booking of {} seat(s) for {} is cancelled.",
                            booking.quantity, event.name
                        ),
                        data: vec![
                            ("booking_id", booking.id.to_string()),
                            ("event_id", event.id.to_string()),
                        ],
                    },
                    now,
                );
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
                    self.notify(
                        work,
                        Draft {
                            user_id: b.user_id,
                            kind: NotificationKind::HoldExpired,
                            title: ["Hold expired: ", &event.name].concat(),
                            message: format!(
                                "Your hold on {} seat(s) for {} ran out before it was confirmed; \
                                 the seats are released.",
                                b.quantity, event.name
                            ),
                            data: vec![
                                ("booking_id", b.id.to_string()),
                                ("event_id", event.id.to_string()),
                            ],
                        },
                        now,
                    );
                } else if let BookingSource::WaitlistOffer(entry_id) = b.source
                    && let Some(mut entry) = work.read().await?.waitlist_entry(entry_id).await?
                    && entry.status == WaitlistStatus::Offered
                {
                    entry.transition(WaitlistStatus::Expired)?;
                    work.changes.updated_waitlist_entries.push(entry);
                    self.notify(
                        work,
                        Draft {
                            user_id: b.user_id,
                            kind: NotificationKind::WaitlistOfferExpired,
                            title: format!("Offer expired: {}", event.name),
                            message: format!(
                                "The seats offered to you for {} were not confirmed in time.",
                                event.name
                            ),
                            data: vec![("event_id", event.id.to_string())],
                        },
                        now,
                    );
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

    /// Issues tickets and queues the confirmation for a booking that just became confirmed (see
    /// [`Evently::confirmation`]).
    fn on_confirmed(
        &self,
        work: &mut Work,
        event: &Event,
        booking: &Booking,
        now: DateTime<Utc>,
        prepared: Option<Prepared>,
        texts: &mut Option<Arc<ConfirmationTexts>>,
    ) {
        let Prepared {
            mut tickets,
            mut notification,
            written,
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
        let still_right =
            written.is_some_and(|(t, total)| total == booking.total_price && t.fits(event));
        if !still_right {
            let texts = match texts {
                Some(t) if t.fits(event) => t,
                _ => texts.insert(ConfirmationTexts::for_event(event)),
            };
            notification.title = texts.title.clone();
            notification.message = texts.message(booking.quantity, booking.total_price);
        }
        notification.created_at = now;
        work.changes.new_tickets.append(&mut tickets);
        super::record_notification(work, notification, now);
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
    // This thread's texts for the event, if it has booked it before: they also hold the event id
    // as text, so only the booking id is written out here.
    let cached = ConfirmationTexts::cached(event_id);
    let mut event_buf = uuid::Uuid::encode_buffer();
    let event_text: &str = match &cached {
        Some(t) => &t.event_text,
        None => event_id.0.hyphenated().encode_lower(&mut event_buf),
    };
    let mut booking_buf = uuid::Uuid::encode_buffer();
    let booking_text: &str = booking_id.0.hyphenated().encode_lower(&mut booking_buf);
    let tickets = (0..quantity)
        .map(|_| {
            let number = ids.ticket_number();
            Ticket {
                id: TicketId(ids.uuid()),
                booking_id,
                event_id,
                qr_payload: qr_payload(event_text, booking_text, &number),
                number,
                issued_at: DateTime::UNIX_EPOCH,
            }
        })
        .collect();
    let data = NotificationData::from([
        ("booking_id", booking_text.to_owned()),
        ("event_id", event_text.to_owned()),
    ]);
    let mut notification = Notification {
        id: NotificationId(ids.uuid()),
        user_id,
        kind: NotificationKind::BookingConfirmed,
        title: String::new(),
        message: String::new(),
        data,
        created_at: DateTime::UNIX_EPOCH,
        sent_at: None,
    };
    // With the event's texts at hand (this thread confirmed a booking of it before), write the title
    // and the message now, assuming the event's fixed price; the transaction checks both assumptions.
    let written = cached.and_then(|t| {
        let total = t.price.checked_mul(quantity).ok()?;
        notification.title = t.title.clone();
        notification.message = t.message(quantity, total);
        Some((t, total))
    });
    Prepared {
        tickets,
        notification,
        written,
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

/// `evently:v1:<event id>:<booking id>:<ticket number>`, the payload a ticket's QR code carries, from
/// the ids already written out as hyphenated lower-case text.
fn qr_payload(event: &str, booking: &str, number: &str) -> String {
    let parts = ["evently:v1:", event, ":", booking, ":", number];
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// The parts of a booking confirmation's texts that depend only on the event (its name, venue and
/// start), and what they were built from. Built once per event and thread, and kept in a small
/// per-thread cache, so that most bookings write their texts before their transaction; a transaction
/// checks that the event still has these texts (see [`ConfirmationTexts::fits`]).
#[derive(Debug)]
pub(crate) struct ConfirmationTexts {
    event_id: EventId,
    /// The event id as hyphenated lower-case text, as the QR payload and the notification's data
    /// carry it.
    event_text: String,
    name: String,
    venue: String,
    starts_at: DateTime<Utc>,
    /// The event's price when these were built: what a booking is assumed to cost per seat.
    price: crate::Money,
    /// "Booking confirmed: Gig".
    title: String,
    /// " seat(s) for Gig at Club, starting 2030-01-08T09:00:00Z. Total ".
    middle: String,
}

/// Events whose texts one thread keeps.
const CACHED_TEXTS: usize = 16;

thread_local! {
    static TEXTS: std::cell::RefCell<Vec<Arc<ConfirmationTexts>>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

impl ConfirmationTexts {
    fn new(event: &Event) -> Self {
        let mut starts = [0u8; 32];
        let chrono_starts;
        let starts = match write_rfc3339(&mut starts, event.starts_at) {
            Some(s) => s,
            None => {
                chrono_starts = event
                    .starts_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                chrono_starts.as_str()
            }
        };
        Self {
            event_id: event.id,
            event_text: event.id.0.hyphenated().to_string(),
            name: event.name.clone(),
            venue: event.venue.clone(),
            starts_at: event.starts_at,
            price: event.price,
            title: ["Booking confirmed: ", &event.name].concat(),
            middle: [
                " seat(s) for ",
                &event.name,
                " at ",
                &event.venue,
                ", starting ",
                starts,
                ". Total ",
            ]
            .concat(),
        }
    }

    /// The texts of `event` as it is now: this thread's cached ones if they still fit, else new ones
    /// (which replace them in the cache).
    fn for_event(event: &Event) -> Arc<Self> {
        if let Some(t) = Self::cached(event.id)
            && t.fits(event)
        {
            return t;
        }
        let t = Arc::new(Self::new(event));
        TEXTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            cache.retain(|c| c.event_id != event.id);
            if cache.len() == CACHED_TEXTS {
                cache.remove(0);
            }
            cache.push(t.clone());
        });
        t
    }

    /// This thread's texts for an event, as last built (maybe out of date).
    fn cached(event_id: EventId) -> Option<Arc<Self>> {
        TEXTS.with(|cache| {
            cache
                .borrow()
                .iter()
                .rev()
                .find(|c| c.event_id == event_id)
                .cloned()
        })
    }

    /// Whether these are the texts of `event` as it is now: same event, name, venue and start.
    fn fits(&self, event: &Event) -> bool {
        self.event_id == event.id
            && self.starts_at == event.starts_at
            && self.name == event.name
            && self.venue == event.venue
    }

    /// "2 seat(s) for Gig at Club, starting 2030-01-08T09:00:00Z. Total 3000 EUR."
    /// Written by hand (no `format!`, numbers into stack buffers): this runs once per confirmed
    /// booking.
    fn message(&self, quantity: u32, total: crate::Money) -> String {
        let mut q = [0u8; 24];
        let q = write_int(&mut q, i64::from(quantity));
        let mut t = [0u8; 24];
        let t = write_int(&mut t, total.minor);
        let parts = [q, &self.middle, t, " ", total.currency.as_str(), "."];
        let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            out.push_str(p);
        }
        out
    }
}

#[cfg(test)]
fn confirmation_message(event: &Event, booking: &Booking) -> String {
    ConfirmationTexts::new(event).message(booking.quantity, booking.total_price)
}

/// Writes `n` in decimal, as `Display` does, at the end of `buf`; returns the text.
fn write_int(buf: &mut [u8; 24], n: i64) -> &str {
    let mut v = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// Writes `t` as `t.to_rfc3339_opts(SecondsFormat::AutoSi, true)` does (`2030-01-08T09:00:00Z`,
/// with 3, 6 or 9 fraction digits when the time has a fraction); returns the text. `None` for years
/// outside 0 to 9999 and leap seconds, which the caller leaves to chrono.
fn write_rfc3339(buf: &mut [u8; 32], t: DateTime<Utc>) -> Option<&str> {
    use chrono::{Datelike, Timelike};
    let t = t.naive_utc();
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn put(buf: &mut [u8; 32], at: usize, mut v: u32, width: usize) -> usize {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        at + width
    }
    let mut at = put(buf, 0, year.unsigned_abs(), 4);
    for (sep, v) in [
        (b'-', t.month()),
        (b'-', t.day()),
        (b'T', t.hour()),
        (b':', t.minute()),
        (b':', t.second()),
    ] {
        buf[at] = sep;
        at = put(buf, at + 1, v, 2);
    }
    if nanos != 0 {
        buf[at] = b'.';
        at = if nanos % 1_000_000 == 0 {
            put(buf, at + 1, nanos / 1_000_000, 3)
        } else if nanos % 1_000 == 0 {
            put(buf, at + 1, nanos / 1_000, 6)
        } else {
            put(buf, at + 1, nanos, 9)
        };
    }
    buf[at] = b'Z';
    std::str::from_utf8(&buf[..at + 1]).ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// A confirmed direct booking of `quantity` seats for `total` (EUR minor units) made at `at`.
    fn confirmed(event_id: EventId, quantity: u32, total: i64, at: DateTime<Utc>) -> Booking {
        Booking {
            id: BookingId::new(),
            user_id: UserId::new(),
            event_id,
            quantity,
            total_price: Money::new(total, Currency::new("EUR").unwrap()),
            status: BookingStatus::Confirmed,
            held_until: None,
            idempotency_key: None,
            source: BookingSource::Direct,
            created_at: at,
            updated_at: at,
        }
    }
    use crate::model::Event;
    use crate::{Currency, Money, UserId};

    #[test]
    fn the_qr_payload_and_the_confirmation_text_have_their_documented_shape() {
        let (event_id, booking_id) = (EventId::new(), BookingId::new());
        assert_eq!(
            qr_payload(
                &event_id.to_string(),
                &booking_id.to_string(),
                "EVT-AAAA-BBBB-CCCC"
            ),
            format!("evently:v1:{event_id}:{booking_id}:EVT-AAAA-BBBB-CCCC")
        );
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        let event = Event {
            id: event_id,
            ..Event::sample(at)
        };
        let booking = Booking {
            id: booking_id,
            ..confirmed(event_id, 2, 3000, at)
        };
        assert_eq!(
            confirmation_message(&event, &booking),
            "2 seat(s) for Gig at Club, starting 2030-01-08T09:00:00Z. Total 3000 EUR."
        );
        assert_eq!(
            ConfirmationTexts::new(&event).title,
            "Booking confirmed: Gig"
        );
    }

    #[test]
    fn hand_written_numbers_and_times_match_display_and_chrono() {
        for n in [0i64, 7, 10, 99, 1500, -1, -3000, i64::MIN, i64::MAX] {
            assert_eq!(write_int(&mut [0; 24], n), n.to_string());
        }
        let base = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        let far = Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0).unwrap();
        let times = [
            base,
            Utc.with_ymd_and_hms(1, 2, 3, 4, 5, 6).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            base + chrono::Duration::milliseconds(120),
            base + chrono::Duration::microseconds(123_456),
            base + chrono::Duration::microseconds(5),
            base + chrono::Duration::nanoseconds(1),
            base + chrono::Duration::nanoseconds(999_999_999),
        ];
        for t in times {
            assert_eq!(
                write_rfc3339(&mut [0; 32], t),
                Some(
                    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                        .as_str()
                )
            );
        }
        // Years outside 0 to 9999 are left to chrono.
        assert_eq!(write_rfc3339(&mut [0; 32], far), None);
        assert_eq!(
            write_rfc3339(
                &mut [0; 32],
                Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap()
            ),
            None
        );
        let event = Event {
            created_at: base,
            updated_at: base,
            ..Event::sample(far)
        };
        let booking = confirmed(event.id, 1, -5, base);
        assert_eq!(
            confirmation_message(&event, &booking),
            format!(
                "1 seat(s) for Gig at Club, starting {}. Total -5 EUR.",
                far.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            )
        );
    }

    #[test]
    fn prepared_records_are_used_only_for_the_booking_they_were_built_for() {
        let (event_id, booking_id, user_id) = (EventId::new(), BookingId::new(), UserId::new());
        let build = || {
            prepare(
                &crate::ports::DefaultIdGenerator,
                event_id,
                booking_id,
                user_id,
                3,
            )
        };
        // Once without texts of the event on this thread, once with them (which carry the event id
        // as text): the same records either way.
        let p = build();
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        ConfirmationTexts::for_event(&Event {
            id: event_id,
            ..Event::sample(at)
        });
        let cached = build();
        assert!(p.written.is_none() && cached.written.is_some());
        for p in [&p, &cached] {
            assert_eq!(p.tickets.len(), 3);
            for t in &p.tickets {
                assert_eq!(
                    t.qr_payload,
                    format!("evently:v1:{event_id}:{booking_id}:{}", t.number)
                );
            }
            assert_eq!(p.notification.data["booking_id"], booking_id.to_string());
            assert_eq!(p.notification.data["event_id"], event_id.to_string());
        }
        let booking = Booking {
            id: booking_id,
            user_id,
            ..confirmed(event_id, 3, 0, at)
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
