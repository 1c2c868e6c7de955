use super::{Evently, Work};
use crate::model::{Availability, Event, EventFilter, EventPatch, NewEvent, WaitlistStatus};
use crate::ports::LockMode;
use crate::{Actor, Entity, Error, EventId, Result};

fn require_admin(actor: &Actor) -> Result<()> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(Error::forbidden("only administrators manage events"))
    }
}

impl Evently {
    /// Creates an event (admins only).
    pub async fn create_event(&self, actor: &Actor, new: NewEvent) -> Result<Event> {
        require_admin(actor)?;
        let now = self.now();
        let event = Event {
            id: EventId(self.inner.ids.uuid()),
            name: new.name,
            description: new.description,
            venue: new.venue,
            category: new.category,
            starts_at: new.starts_at,
            ends_at: new.ends_at,
            capacity: new.capacity,
            price: new.price,
            active: true,
            version: 1,
            seats_held: 0,
            seats_confirmed: 0,
            created_at: now,
            updated_at: now,
        };
        event.validate()?;
        self.retrying("create_event", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            work.changes.new_events.push(event.clone());
            work.commit().await?;
            Ok(event.clone())
        })
        .await
    }

    /// Applies a patch (admins only). The patch's `expected_version` must match, or the edit is a
    /// [`Error::Conflict`]: a stale edit never overwrites. Raising the capacity offers the new seats to the
    /// waitlist.
    pub async fn update_event(
        &self,
        actor: &Actor,
        id: EventId,
        patch: EventPatch,
    ) -> Result<Event> {
        require_admin(actor)?;
        self.retrying("update_event", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let now = self.now();
            let mut event = work
                .read()
                .await?
                .event(id, LockMode::ForUpdate)
                .await?
                .ok_or_else(|| Error::not_found(Entity::Event, id))?;
            if event.version != patch.expected_version {
                return Err(Error::conflict(format!(
                    "event {id} is at version {}, the edit was made against version {}",
                    event.version, patch.expected_version
                )));
            }
            patch.clone().apply(&mut event);
            event.validate()?;
            event.version += 1;
            event.updated_at = now;
            if event.active {
                self.promote(&mut work, &mut event, now).await?;
            }
            work.changes.updated_events.push(event.clone());
            work.commit().await?;
            Ok(event)
        })
        .await
    }

    /// Deactivates an event (admins only): it takes no new bookings; existing ones stand.
    pub async fn deactivate_event(
        &self,
        actor: &Actor,
        id: EventId,
        expected_version: u64,
    ) -> Result<Event> {
        self.update_event(
            actor,
            id,
            EventPatch {
                expected_version,
                active: Some(false),
                ..Default::default()
            },
        )
        .await
    }

    /// An event by id.
    pub async fn event(&self, id: EventId) -> Result<Event> {
        let mut tx = self.inner.store.begin_read().await?;
        tx.event(id, LockMode::None)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Event, id))
    }

    /// Events passing the filter, by start time.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        if filter.limit == 0 || filter.limit > 500 {
            return Err(Error::validation("limit", "must be 1 to 500"));
        }
        if let Some(t) = &filter.text
            && (t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control))
        {
            return Err(Error::validation(
                "text",
                "must be 1 to 200 characters without control characters",
            ));
        }
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.list_events(filter).await?)
    }

    /// Seats of an event now, as the store has them.
    pub async fn availability(&self, id: EventId) -> Result<Availability> {
        let mut tx = self.inner.store.begin_read().await?;
        let event = tx
            .event(id, LockMode::None)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Event, id))?;
        let waiting = tx.waitlist(id, &[WaitlistStatus::Waiting]).await?.len();
        Ok(event.availability(u32::try_from(waiting).unwrap_or(u32::MAX)))
    }
}
