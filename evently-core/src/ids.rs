//! Newtype identifiers, so a booking id can never be passed where an event id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $label:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|e| crate::Error::Validation {
                    field: $label,
                    reason: format!("not a valid id: {e}"),
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// Identifies a [`User`](crate::User).
    UserId,
    "user_id"
);
id_type!(
    /// Identifies an [`Event`](crate::Event).
    EventId,
    "event_id"
);
id_type!(
    /// Identifies a [`Booking`](crate::Booking).
    BookingId,
    "booking_id"
);
id_type!(
    /// Identifies a [`WaitlistEntry`](crate::WaitlistEntry).
    WaitlistEntryId,
    "waitlist_entry_id"
);
id_type!(
    /// Identifies a [`Ticket`](crate::Ticket).
    TicketId,
    "ticket_id"
);
id_type!(
    /// Identifies a [`Notification`](crate::Notification).
    NotificationId,
    "notification_id"
);
id_type!(
    /// Identifies a [`PushSubscription`](crate::PushSubscription).
    PushSubscriptionId,
    "push_subscription_id"
);
id_type!(
    /// Identifies a [`Job`](crate::Job).
    JobId,
    "job_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings() {
        let id = EventId::new();
        let parsed: EventId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
    }

    #[test]
    fn a_bad_id_is_a_validation_error_naming_the_field() {
        let err = "nope".parse::<BookingId>().unwrap_err();
        assert!(matches!(
            err,
            crate::Error::Validation {
                field: "booking_id",
                ..
            }
        ));
    }
}
