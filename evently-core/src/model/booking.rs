use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BookingId, Error, EventId, Money, Result, UserId, WaitlistEntryId};

/// Where a booking is in its life. `Held → Confirmed → Cancelled`, `Held → Expired`, `Held → Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    /// Seats reserved until `held_until`.
    Held,
    /// Seats sold.
    Confirmed,
    /// Cancelled; its seats were freed once.
    Cancelled,
    /// The hold ran out; its seats were freed once.
    Expired,
}

impl BookingStatus {
    /// Lower-case name, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            BookingStatus::Held => "held",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => BookingStatus::Held,
            "confirmed" => BookingStatus::Confirmed,
            "cancelled" => BookingStatus::Cancelled,
            "expired" => BookingStatus::Expired,
            _ => return None,
        })
    }

    /// True while the booking occupies seats.
    pub fn occupies_seats(&self) -> bool {
        matches!(self, BookingStatus::Held | BookingStatus::Confirmed)
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a booking came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "entry_id")]
pub enum BookingSource {
    /// Booked or held directly by the user.
    Direct,
    /// A hold created as a waitlist offer for this entry.
    WaitlistOffer(WaitlistEntryId),
}

/// Seats of one event reserved or sold to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// Identifier.
    pub id: BookingId,
    /// Who booked.
    pub user_id: UserId,
    /// Which event.
    pub event_id: EventId,
    /// Seats, at least 1.
    pub quantity: u32,
    /// Price of all seats, fixed when the booking was made.
    pub total_price: Money,
    /// Status.
    pub status: BookingStatus,
    /// End of the hold, while held.
    pub held_until: Option<DateTime<Utc>>,
    /// The client's idempotency key, unique per user.
    pub idempotency_key: Option<String>,
    /// Direct or waitlist offer.
    pub source: BookingSource,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

impl Booking {
    fn transition(&mut self, to: BookingStatus, now: DateTime<Utc>) -> Result<()> {
        let allowed = matches!(
            (self.status, to),
            (BookingStatus::Held, BookingStatus::Confirmed)
                | (BookingStatus::Held, BookingStatus::Cancelled)
                | (BookingStatus::Held, BookingStatus::Expired)
                | (BookingStatus::Confirmed, BookingStatus::Cancelled)
        );
        if !allowed {
            return Err(Error::InvalidTransition {
                booking_id: self.id,
                from: self.status,
                to,
            });
        }
        self.status = to;
        self.updated_at = now;
        if to != BookingStatus::Held {
            self.held_until = None;
        }
        Ok(())
    }

    /// True when the hold has run out at `now`.
    pub fn hold_expired(&self, now: DateTime<Utc>) -> bool {
        self.status == BookingStatus::Held && self.held_until.is_some_and(|t| t <= now)
    }

    /// Held → Confirmed, if the hold has not run out.
    pub fn confirm(&mut self, now: DateTime<Utc>) -> Result<()> {
        if let (BookingStatus::Held, Some(held_until)) = (self.status, self.held_until)
            && held_until <= now
        {
            return Err(Error::HoldExpired {
                booking_id: self.id,
                held_until,
            });
        }
        self.transition(BookingStatus::Confirmed, now)
    }

    /// Held or Confirmed → Cancelled.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<()> {
        self.transition(BookingStatus::Cancelled, now)
    }

    /// Held → Expired, only once the hold has run out.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Result<()> {
        if !self.hold_expired(now) {
            return Err(Error::InvalidTransition {
                booking_id: self.id,
                from: self.status,
                to: BookingStatus::Expired,
            });
        }
        self.transition(BookingStatus::Expired, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;
    use chrono::{Duration, TimeZone};

    fn held(now: DateTime<Utc>) -> Booking {
        Booking {
            id: BookingId::new(),
            user_id: UserId::new(),
            event_id: EventId::new(),
            quantity: 2,
            total_price: Money::new(200, Currency::new("EUR").unwrap()),
            status: BookingStatus::Held,
            held_until: Some(now + Duration::minutes(5)),
            idempotency_key: None,
            source: BookingSource::Direct,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_hold_confirms_before_expiry_and_not_after() {
        let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut b = held(t0);
        b.confirm(t0 + Duration::minutes(4)).unwrap();
        assert_eq!(b.status, BookingStatus::Confirmed);
        assert_eq!(b.held_until, None);

        let mut late = held(t0);
        let err = late.confirm(t0 + Duration::minutes(5)).unwrap_err();
        assert!(matches!(err, Error::HoldExpired { .. }));
        assert_eq!(late.status, BookingStatus::Held);
    }

    #[test]
    fn terminal_states_refuse_every_transition() {
        let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut b = held(t0);
        b.cancel(t0).unwrap();
        assert!(b.cancel(t0).is_err(), "cancelled twice");
        assert!(b.confirm(t0).is_err());
        assert!(b.expire(t0 + Duration::hours(1)).is_err());
    }

    #[test]
    fn expiry_only_after_the_hold_ends() {
        let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut b = held(t0);
        assert!(b.expire(t0).is_err());
        b.expire(t0 + Duration::minutes(5)).unwrap();
        assert_eq!(b.status, BookingStatus::Expired);
    }
}
