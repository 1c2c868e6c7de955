//! Reference pricing plugin: group discount.
//!
//! Bookings of 5 to 9 seats get 10% off every seat, bookings of 10 seats or more get 15% off.
//! Smaller bookings pay the list price. The unit price is rounded to the nearest minor unit and the
//! total is the unit price times the quantity.

use evently_plugin_sdk::pricing::{
    error, percent, times, ErrorCode, Guest, PolicyError, Quote, QuoteRequest,
};

/// (minimum seats, percent off), largest group first.
const TIERS: [(u32, u32); 2] = [(10, 15), (5, 10)];

struct GroupDiscount;

impl Guest for GroupDiscount {
    fn price(req: QuoteRequest) -> Result<Quote, PolicyError> {
        if req.quantity == 0 {
            return Err(error(ErrorCode::InvalidRequest, "quantity must be at least 1"));
        }
        let off = TIERS
            .iter()
            .find(|(min, _)| req.quantity >= *min)
            .map_or(0, |(_, off)| *off);
        let unit = percent(req.event.price.minor, 100 - off)?;
        Ok(Quote {
            unit_price: unit,
            total: times(unit, req.quantity)?,
        })
    }
}

evently_plugin_sdk::export_pricing!(GroupDiscount);
