//! Reference pricing plugin: early-bird discount plus occupancy surge.
//!
//! The unit price is the event's list price times `(100 - early_bird + surge)` percent, rounded to the
//! nearest minor unit:
//! - early bird: 20 points off when the booking is made at least 30 days before the event starts;
//! - surge, from the seats already taken (held or confirmed) before this booking:
//!   at least 50% taken adds 10 points, at least 75% adds 25, at least 90% adds 50.
//!
//! The total is the unit price times the quantity.

use evently_plugin_sdk::pricing::{
    error, occupancy_permille, percent, times, ErrorCode, Guest, PolicyError, Quote, QuoteRequest,
};
use evently_plugin_sdk::time::DAY_MS;

/// Points off the list price for an early booking.
const EARLY_BIRD_POINTS: u32 = 20;
/// How long before the start a booking counts as early.
const EARLY_BIRD_LEAD_MS: i64 = 30 * DAY_MS;
/// (occupancy in permille at or above which, surcharge points), highest first.
const SURGE: [(u32, u32); 3] = [(900, 50), (750, 25), (500, 10)];

struct EarlyBirdSurge;

impl Guest for EarlyBirdSurge {
    fn price(req: QuoteRequest) -> Result<Quote, PolicyError> {
        if req.quantity == 0 {
            return Err(error(ErrorCode::InvalidRequest, "quantity must be at least 1"));
        }
        let early = if req.event.starts_at.saturating_sub(req.now) >= EARLY_BIRD_LEAD_MS {
            EARLY_BIRD_POINTS
        } else {
            0
        };
        let occupancy = occupancy_permille(&req.event);
        let surge = SURGE
            .iter()
            .find(|(at, _)| occupancy >= *at)
            .map_or(0, |(_, points)| *points);
        let unit = percent(req.event.price.minor, 100 - early + surge)?;
        Ok(Quote {
            unit_price: unit,
            total: times(unit, req.quantity)?,
        })
    }
}

evently_plugin_sdk::export_pricing!(EarlyBirdSurge);
