use chrono::{DateTime, Utc};

use super::bookings::check_open;
use super::{Evently, Work, account, chrono_dur, record_notification};
use crate::model::{
    Booking, BookingSource, BookingStatus, Event, JobPayload, NewJob, NotificationKind,
    WaitlistEntry, WaitlistStatus,
};
use crate::ports::LockMode;
use crate::{Actor, BookingId, Entity, Error, EventId, Result, StoreError, WaitlistEntryId};

/// Fills `position` (1-based, dense) for waiting entries given in join order.
fn number(entries: &mut [WaitlistEntry]) {
    let mut pos = 0;
    for e in entries {
        if e.status == WaitlistStatus::Waiting {
            pos += 1;
            e.position = Some(pos);
        } else {
            e.position = None;
        }
    }
}

impl Evently {
    /// Joins the waitlist of a sold-out event for `quantity` seats. While seats are free the answer is
    /// [`Error::Conflict`] (book instead); a user has at most one live entry per event.
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
    /// engine.book(&bob, BookingRequest::new(event.id, 2)).await?;
    /// let entry = engine.join_waitlist(&alice, event.id, 1).await?;
    /// assert_eq!(entry.status, WaitlistStatus::Waiting);
    /// assert_eq!(entry.position, Some(1));
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn join_waitlist(
        &self,
        actor: &Actor,
        event_id: EventId,
        quantity: u32,
    ) -> Result<WaitlistEntry> {
        let max = self.inner.config.max_seats_per_booking;
        if quantity == 0 || quantity > max {
            return Err(Error::validation("quantity", format!("must be 1 to {max}")));
        }
        self.retrying("join_waitlist", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let tx = work.read().await?;
            let mut event = tx
                .event(event_id, LockMode::ForUpdate)
                .await?
                .ok_or_else(|| Error::not_found(Entity::Event, event_id))?;
            let now = self.now();
            check_open(&event, now)?;
            if tx
                .live_waitlist_entry(event_id, actor.user_id)
                .await?
                .is_some()
            {
                return Err(Error::conflict("already on the waitlist of this event"));
            }
            if self.expire_due(&mut work, &mut event, now).await?.changed() {
                work.changes.updated_events.push(event.clone());
            }
            let waiting = work
                .read()
                .await?
                .waitlist(event_id, &[WaitlistStatus::Waiting])
                .await?;
            if waiting.is_empty() && event.seats_free() >= quantity {
                work.commit().await?;
                return Err(Error::conflict(format!(
                    "{} seat(s) are free: book them instead of joining the waitlist",
                    event.seats_free()
                )));
            }
            let entry = WaitlistEntry {
                id: WaitlistEntryId(self.inner.ids.uuid()),
                event_id,
                user_id: actor.user_id,
                quantity,
                seq: 0,
                position: None,
                status: WaitlistStatus::Waiting,
                joined_at: now,
                notified_at: None,
                offer_expires_at: None,
                offer_booking_id: None,
            };
            work.changes.new_waitlist_entries.push(entry.clone());
            work.flush().await.map_err(|e| match e {
                StoreError::UniqueViolation { .. } => {
                    Error::conflict("already on the waitlist of this event")
                }
                StoreError::ForeignKeyViolation { .. } => {
                    Error::not_found(Entity::User, actor.user_id)
                }
                other => other.into(),
            })?;
            // Seats may be free but too few for the head of the queue; this entry may still fit.
            self.promote(&mut work, &mut event, now).await?;
            work.changes.updated_events.push(event.clone());
            let mut live = work
                .read()
                .await?
                .waitlist(
                    event_id,
                    &[WaitlistStatus::Waiting, WaitlistStatus::Offered],
                )
                .await?;
            number(&mut live);
            let entry = live.into_iter().find(|e| e.id == entry.id);
            work.commit().await?;
            entry.ok_or_else(|| Error::not_found(Entity::WaitlistEntry, event_id))
        })
        .await
    }

    /// Leaves the waitlist. Leaving while holding an offer declines it: its seats go to the next entries.
    pub async fn leave_waitlist(&self, actor: &Actor, event_id: EventId) -> Result<WaitlistEntry> {
        self.retrying("leave_waitlist", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let tx = work.read().await?;
            let mut event = tx
                .event(event_id, LockMode::ForUpdate)
                .await?
                .ok_or_else(|| Error::not_found(Entity::Event, event_id))?;
            let now = self.now();
            let mut entry = tx
                .live_waitlist_entry(event_id, actor.user_id)
                .await?
                .ok_or_else(|| Error::not_found(Entity::WaitlistEntry, event_id))?;
            if let Some(bid) = entry
                .offer_booking_id
                .filter(|_| entry.status == WaitlistStatus::Offered)
                && let Some(mut offer) = tx.booking(bid).await?
                && offer.status == BookingStatus::Held
            {
                offer.cancel(now)?;
                account(&mut event, &offer, Some(BookingStatus::Held))?;
                work.changes.updated_bookings.push(offer);
            }
            entry.transition(WaitlistStatus::Left)?;
            work.changes.updated_waitlist_entries.push(entry.clone());
            self.promote(&mut work, &mut event, now).await?;
            work.changes.updated_events.push(event.clone());
            work.commit().await?;
            Ok(entry)
        })
        .await
    }

    /// The actor's live entry on an event's waitlist, with its current position (while waiting).
    pub async fn waitlist_position(
        &self,
        actor: &Actor,
        event_id: EventId,
    ) -> Result<WaitlistEntry> {
        let mut tx = self.inner.store.begin_read().await?;
        let mut live = tx
            .waitlist(
                event_id,
                &[WaitlistStatus::Waiting, WaitlistStatus::Offered],
            )
            .await?;
        number(&mut live);
        live.into_iter()
            .find(|e| e.user_id == actor.user_id)
            .ok_or_else(|| Error::not_found(Entity::WaitlistEntry, event_id))
    }

    /// The live entries (waiting and offered) of an event's waitlist in join order, positions filled
    /// (admins only).
    pub async fn waitlist(&self, actor: &Actor, event_id: EventId) -> Result<Vec<WaitlistEntry>> {
        if !actor.is_admin() {
            return Err(Error::forbidden("only administrators list a waitlist"));
        }
        let mut tx = self.inner.store.begin_read().await?;
        let mut live = tx
            .waitlist(
                event_id,
                &[WaitlistStatus::Waiting, WaitlistStatus::Offered],
            )
            .await?;
        number(&mut live);
        Ok(live)
    }

    /// Accepts the actor's open offer on an event: confirms the held booking that carries it.
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
    /// let bobs = engine.book(&bob, BookingRequest::new(event.id, 2)).await?;
    /// engine.join_waitlist(&alice, event.id, 1).await?;
    /// // Bob cancels: the freed seat is offered to Alice as a held booking, until she accepts or the
    /// // offer runs out (`EngineConfig::offer_ttl`).
    /// engine.cancel(&bob, bobs.id).await?;
    /// let booking = engine.accept_offer(&alice, event.id).await?;
    /// assert_eq!(booking.status, BookingStatus::Confirmed);
    /// # Ok::<(), Error>(()) }).unwrap();
    /// ```
    pub async fn accept_offer(&self, actor: &Actor, event_id: EventId) -> Result<Booking> {
        let booking_id: BookingId = {
            let mut tx = self.inner.store.begin_read().await?;
            let entry = tx
                .live_waitlist_entry(event_id, actor.user_id)
                .await?
                .ok_or_else(|| Error::not_found(Entity::WaitlistEntry, event_id))?;
            match (entry.status, entry.offer_booking_id) {
                (WaitlistStatus::Offered, Some(b)) => b,
                _ => return Err(Error::conflict("no open offer: still waiting")),
            }
        };
        self.confirm(actor, booking_id).await
    }

    /// Inside a transaction holding the event's lock: offers free seats to the entries the waitlist policy
    /// picks. Each offer is a held booking for the entry's user, held until the offer expires.
    pub(crate) async fn promote(
        &self,
        work: &mut Work,
        event: &mut Event,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let free = event.seats_free();
        if free == 0 || !event.active || event.starts_at <= now {
            return Ok(0);
        }
        let mut waiting = work
            .read()
            .await?
            .waitlist(event.id, &[WaitlistStatus::Waiting])
            .await?;
        if waiting.is_empty() {
            return Ok(0);
        }
        number(&mut waiting);
        let chosen = self.choose_offers(work, event, &waiting, free, now).await?;
        let expires = now + chrono_dur(self.inner.config.offer_ttl);
        let mut offered = 0;
        for id in chosen {
            let Some(mut entry) = waiting.iter().find(|e| e.id == id).cloned() else {
                continue;
            };
            let buyer = Actor::new(entry.user_id, crate::Role::User);
            let total_price = self.price(work, &buyer, event, entry.quantity, now).await?;
            let offer = Booking {
                id: BookingId(self.inner.ids.uuid()),
                user_id: entry.user_id,
                event_id: event.id,
                quantity: entry.quantity,
                total_price,
                status: BookingStatus::Held,
                held_until: Some(expires),
                idempotency_key: None,
                source: BookingSource::WaitlistOffer(entry.id),
                created_at: now,
                updated_at: now,
            };
            account(event, &offer, None)?;
            entry.transition(WaitlistStatus::Offered)?;
            entry.offer_expires_at = Some(expires);
            entry.offer_booking_id = Some(offer.id);
            entry.notified_at = Some(now);
            work.changes.updated_waitlist_entries.push(entry.clone());
            let mut n = self.notification(entry.user_id, NotificationKind::WaitlistOffer, now);
            n.event_id = Some(event.id);
            n.booking_id = Some(offer.id);
            n.seats = Some(entry.quantity);
            n.total = Some(offer.total_price);
            n.offer_expires_at = Some(expires);
            record_notification(work, n, now);
            work.changes.new_bookings.push(offer);
            // Let a worker expire the offer on time even if no one books this event meanwhile.
            work.changes.new_jobs.push(NewJob {
                run_at: expires,
                dedupe_key: Some(format!("expire:{}:{}", event.id, expires.timestamp())),
                ..NewJob::now(JobPayload::ExpireHolds { event_id: event.id }, now)
            });
            tracing::debug!(event_id = %event.id, entry_id = %entry.id, "waitlist offer made");
            metrics::counter!("evently_waitlist_offers_total").increment(1);
            offered += 1;
        }
        Ok(offered)
    }
}
