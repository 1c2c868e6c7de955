use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BookingId, Error, EventId, Result, UserId, WaitlistEntryId};

/// Where a waitlist entry is. `Waiting → Offered → Accepted | Expired`; `Waiting | Offered → Left`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitlistStatus {
    /// In the queue.
    Waiting,
    /// Seats are held for this entry until `offer_expires_at`.
    Offered,
    /// The offer was confirmed.
    Accepted,
    /// The offer ran out.
    Expired,
    /// The user left the waitlist (or declined the offer).
    Left,
}

impl WaitlistStatus {
    /// Lower-case name, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            WaitlistStatus::Waiting => "waiting",
            WaitlistStatus::Offered => "offered",
            WaitlistStatus::Accepted => "accepted",
            WaitlistStatus::Expired => "expired",
            WaitlistStatus::Left => "left",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => WaitlistStatus::Waiting,
            "offered" => WaitlistStatus::Offered,
            "accepted" => WaitlistStatus::Accepted,
            "expired" => WaitlistStatus::Expired,
            "left" => WaitlistStatus::Left,
            _ => return None,
        })
    }

    /// Waiting or offered: at most one live entry per user and event.
    pub fn is_live(&self) -> bool {
        matches!(self, WaitlistStatus::Waiting | WaitlistStatus::Offered)
    }
}

impl fmt::Display for WaitlistStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user waiting for seats of a sold-out event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistEntry {
    /// Identifier.
    pub id: WaitlistEntryId,
    /// The event.
    pub event_id: EventId,
    /// The user.
    pub user_id: UserId,
    /// Seats wanted.
    pub quantity: u32,
    /// Join order, assigned by the store (strictly increasing per store).
    pub seq: i64,
    /// 1-based place among the entries still waiting, in join order; `None` once not waiting.
    /// Computed when read, so positions are always dense.
    pub position: Option<u32>,
    /// Status.
    pub status: WaitlistStatus,
    /// When the user joined.
    pub joined_at: DateTime<Utc>,
    /// When the user was told of an offer.
    pub notified_at: Option<DateTime<Utc>>,
    /// When the current offer runs out.
    pub offer_expires_at: Option<DateTime<Utc>>,
    /// The held booking that carries the offer.
    pub offer_booking_id: Option<BookingId>,
}

impl WaitlistEntry {
    pub(crate) fn transition(&mut self, to: WaitlistStatus) -> Result<()> {
        use WaitlistStatus::*;
        let ok = matches!(
            (self.status, to),
            (Waiting, Offered)
                | (Offered, Accepted)
                | (Offered, Expired)
                | (Waiting, Left)
                | (Offered, Left)
        );
        if !ok {
            return Err(Error::InvalidWaitlistTransition {
                from: self.status,
                to,
            });
        }
        self.status = to;
        if to != Waiting {
            self.position = None;
        }
        Ok(())
    }
}
