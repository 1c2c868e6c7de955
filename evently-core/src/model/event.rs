use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, EventId, Money, Result};

/// An event people book seats for.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Identifier.
    pub id: EventId,
    /// Name, 1 to 200 characters.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Where it takes place.
    pub venue: String,
    /// Free-form category used for filtering (e.g. `"concert"`).
    pub category: String,
    /// Start time.
    pub starts_at: DateTime<Utc>,
    /// End time, after the start.
    pub ends_at: DateTime<Utc>,
    /// Seats in total.
    pub capacity: u32,
    /// Price of one seat.
    pub price: Money,
    /// Inactive events take no bookings.
    pub active: bool,
    /// Bumped on every admin edit; edits carry the version they saw.
    pub version: u64,
    /// Seats currently held (including waitlist offers).
    pub seats_held: u32,
    /// Seats confirmed.
    pub seats_confirmed: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last admin edit.
    pub updated_at: DateTime<Utc>,
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            name: self.name.clone(),
            description: self.description.clone(),
            venue: self.venue.clone(),
            category: self.category.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            capacity: self.capacity,
            price: self.price,
            active: self.active,
            version: self.version,
            seats_held: self.seats_held,
            seats_confirmed: self.seats_confirmed,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Field by field, so the texts reuse this event's buffers where they fit (a store reading an
    /// event into one the engine already has allocates nothing).
    fn clone_from(&mut self, source: &Self) {
        let Self {
            id,
            name,
            description,
            venue,
            category,
            starts_at,
            ends_at,
            capacity,
            price,
            active,
            version,
            seats_held,
            seats_confirmed,
            created_at,
            updated_at,
        } = source;
        self.id = *id;
        self.name.clone_from(name);
        self.description.clone_from(description);
        self.venue.clone_from(venue);
        self.category.clone_from(category);
        self.starts_at = *starts_at;
        self.ends_at = *ends_at;
        self.capacity = *capacity;
        self.price = *price;
        self.active = *active;
        self.version = *version;
        self.seats_held = *seats_held;
        self.seats_confirmed = *seats_confirmed;
        self.created_at = *created_at;
        self.updated_at = *updated_at;
    }
}

#[cfg(test)]
impl Event {
    /// For unit tests: "Gig" at "Club", 10 seats at 15.00 EUR, starting (and ending) at `at`.
    pub(crate) fn sample(at: DateTime<Utc>) -> Self {
        Self {
            id: EventId::new(),
            name: "Gig".into(),
            description: String::new(),
            venue: "Club".into(),
            category: "music".into(),
            starts_at: at,
            ends_at: at,
            capacity: 10,
            price: Money::new(1500, crate::Currency::new("EUR").expect("a currency")),
            active: true,
            version: 1,
            seats_held: 0,
            seats_confirmed: 0,
            created_at: at,
            updated_at: at,
        }
    }
}

impl Event {
    /// Seats neither held nor confirmed.
    pub fn seats_free(&self) -> u32 {
        self.capacity
            .saturating_sub(self.seats_held.saturating_add(self.seats_confirmed))
    }

    /// The availability summary.
    pub fn availability(&self, waitlist_waiting: u32) -> Availability {
        Availability {
            event_id: self.id,
            capacity: self.capacity,
            held: self.seats_held,
            confirmed: self.seats_confirmed,
            available: self.seats_free(),
            waitlist_waiting,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_text("name", &self.name, 1, 200)?;
        check_text("description", &self.description, 0, 10_000)?;
        check_text("venue", &self.venue, 0, 500)?;
        check_text("category", &self.category, 0, 100)?;
        if self.ends_at <= self.starts_at {
            return Err(Error::validation("ends_at", "must be after starts_at"));
        }
        if self.price.minor < 0 {
            return Err(Error::validation("price", "must not be negative"));
        }
        if self.capacity > 10_000_000 {
            return Err(Error::validation("capacity", "at most 10,000,000"));
        }
        let taken = u64::from(self.seats_held) + u64::from(self.seats_confirmed);
        if u64::from(self.capacity) < taken {
            return Err(Error::validation(
                "capacity",
                format!("{taken} seats are already held or confirmed"),
            ));
        }
        Ok(())
    }
}

pub(crate) fn check_text(field: &'static str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(Error::validation(
            field,
            format!("must be {min} to {max} characters, got {n}"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::validation(field, "contains control characters"));
    }
    Ok(())
}

/// Input for [`Evently::create_event`](crate::Evently::create_event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Venue.
    pub venue: String,
    /// Category.
    pub category: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Seats.
    pub capacity: u32,
    /// Price of one seat.
    pub price: Money,
}

/// A partial update of an event. `expected_version` must equal the stored version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPatch {
    /// The version the editor saw; a different stored version gives [`Error::Conflict`].
    pub expected_version: u64,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New venue.
    pub venue: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New start.
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    pub ends_at: Option<DateTime<Utc>>,
    /// New capacity; not below the seats already held or confirmed.
    pub capacity: Option<u32>,
    /// New price (existing bookings keep theirs).
    pub price: Option<Money>,
    /// Activate or deactivate.
    pub active: Option<bool>,
}

impl EventPatch {
    pub(crate) fn apply(self, e: &mut Event) {
        if let Some(v) = self.name {
            e.name = v;
        }
        if let Some(v) = self.description {
            e.description = v;
        }
        if let Some(v) = self.venue {
            e.venue = v;
        }
        if let Some(v) = self.category {
            e.category = v;
        }
        if let Some(v) = self.starts_at {
            e.starts_at = v;
        }
        if let Some(v) = self.ends_at {
            e.ends_at = v;
        }
        if let Some(v) = self.capacity {
            e.capacity = v;
        }
        if let Some(v) = self.price {
            e.price = v;
        }
        if let Some(v) = self.active {
            e.active = v;
        }
    }
}

/// Which events to list. Results are ordered by start time, then id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only active events.
    pub active_only: bool,
    /// Only this category.
    pub category: Option<String>,
    /// Only events starting at or after this time.
    pub starts_after: Option<DateTime<Utc>>,
    /// Only events starting before this time.
    pub starts_before: Option<DateTime<Utc>>,
    /// Only events whose name, venue or description contains this text, ASCII letters compared
    /// without case (other characters exactly).
    pub text: Option<String>,
    /// Only events after this `(starts_at, id)` in the list's order: the last event of the previous
    /// page (keyset paging: events added meanwhile never shift the pages).
    pub after: Option<(DateTime<Utc>, EventId)>,
    /// Page size, 1 to 500.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self {
            active_only: true,
            category: None,
            starts_after: None,
            starts_before: None,
            text: None,
            after: None,
            limit: 100,
            offset: 0,
        }
    }
}

impl EventFilter {
    /// True when `e` passes the filter (ignoring paging). Stores may use it; SQL stores use WHERE clauses.
    pub fn matches(&self, e: &Event) -> bool {
        (!self.active_only || e.active)
            && self.category.as_ref().is_none_or(|c| &e.category == c)
            && self.starts_after.is_none_or(|t| e.starts_at >= t)
            && self.starts_before.is_none_or(|t| e.starts_at < t)
            && self.after.is_none_or(|a| (e.starts_at, e.id) > a)
            && self.text.as_deref().is_none_or(|t| {
                let t = t.to_ascii_lowercase();
                [&e.name, &e.venue, &e.description]
                    .iter()
                    .any(|f| f.to_ascii_lowercase().contains(&t))
            })
    }
}

/// Seats of an event at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// The event.
    pub event_id: EventId,
    /// Seats in total.
    pub capacity: u32,
    /// Seats held (including waitlist offers).
    pub held: u32,
    /// Seats confirmed.
    pub confirmed: u32,
    /// Seats free now.
    pub available: u32,
    /// Waitlist entries still waiting.
    pub waitlist_waiting: u32,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::Currency;

    #[test]
    fn clone_from_copies_every_field_into_existing_buffers() {
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        let a = Event {
            description: "A night out".into(),
            ends_at: at + chrono::Duration::hours(3),
            version: 4,
            seats_held: 1,
            seats_confirmed: 2,
            ..Event::sample(at)
        };
        let mut b = Event {
            id: EventId::new(),
            name: "A longer name than the source's".into(),
            description: String::new(),
            venue: "Hall".into(),
            category: "talk".into(),
            starts_at: at + chrono::Duration::days(1),
            ends_at: at + chrono::Duration::days(2),
            capacity: 99,
            price: Money::new(1, Currency::new("USD").unwrap()),
            active: false,
            version: 1,
            seats_held: 0,
            seats_confirmed: 0,
            created_at: at + chrono::Duration::days(1),
            updated_at: at + chrono::Duration::days(1),
        };
        let name_buffer = b.name.as_ptr();
        b.clone_from(&a);
        assert_eq!(b, a);
        assert_eq!(b.name.as_ptr(), name_buffer, "the name's buffer was reused");
        assert_eq!(a.clone(), a);
    }
}
