//! Pricing and waitlist policies. The built-ins are [`FixedPrice`] and [`FifoWaitlist`]; plugins
//! (WebAssembly or native) implement the same traits. The engine validates every answer.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{Event, Role, WaitlistEntry};
use crate::{Money, PolicyError, UserId, WaitlistEntryId};

/// Who is buying, as a pricing policy sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// Their attributes; empty unless the policy asked for them ([`PricingPolicy::needs_buyer_attributes`]).
    pub attributes: BTreeMap<String, String>,
}

/// Input to [`PricingPolicy::quote`].
#[derive(Debug, Clone, Copy)]
pub struct QuoteRequest<'a> {
    /// The event, with its current seat counters.
    pub event: &'a Event,
    /// Seats asked for.
    pub quantity: u32,
    /// The buyer.
    pub buyer: &'a Buyer,
    /// The engine's current time.
    pub now: DateTime<Utc>,
}

/// A policy's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Price of one seat.
    pub unit_price: Money,
    /// Price of all seats (the amount charged). Must be ≥ 0 and in the event's currency.
    pub total: Money,
}

/// Decides what a booking costs.
#[async_trait]
pub trait PricingPolicy: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &str;
    /// Whether the engine should load the buyer's attributes (costs one read per booking).
    fn needs_buyer_attributes(&self) -> bool {
        false
    }
    /// Prices a request.
    async fn quote(&self, req: &QuoteRequest<'_>) -> Result<Quote, PolicyError>;
}

/// The event's price times the quantity.
#[derive(Debug, Default, Clone, Copy)]
pub struct FixedPrice;

impl FixedPrice {
    /// The quote, without a future: what [`PricingPolicy::quote`] answers.
    pub fn quote_at_once(&self, req: &QuoteRequest<'_>) -> Result<Quote, PolicyError> {
        fixed_price(self.name(), req)
    }
}

fn fixed_price(name: &str, req: &QuoteRequest<'_>) -> Result<Quote, PolicyError> {
    let total =
        req.event
            .price
            .checked_mul(req.quantity)
            .map_err(|e| PolicyError::InvalidOutput {
                policy: name.to_string(),
                message: e.to_string(),
            })?;
    Ok(Quote {
        unit_price: req.event.price,
        total,
    })
}

#[async_trait]
impl PricingPolicy for FixedPrice {
    fn name(&self) -> &str {
        "builtin:fixed-price"
    }

    async fn quote(&self, req: &QuoteRequest<'_>) -> Result<Quote, PolicyError> {
        fixed_price(self.name(), req)
    }
}

/// A waiting entry offered to a [`WaitlistPolicy`].
#[derive(Debug, Clone)]
pub struct WaitlistCandidate<'a> {
    /// The entry (with its position filled in).
    pub entry: &'a WaitlistEntry,
    /// The user's attributes; empty unless the policy asked for them.
    pub attributes: BTreeMap<String, String>,
}

/// Input to [`WaitlistPolicy::choose`].
#[derive(Debug, Clone, Copy)]
pub struct OfferRequest<'a> {
    /// The event.
    pub event: &'a Event,
    /// Seats free to offer now.
    pub free_seats: u32,
    /// Entries still waiting, in join order.
    pub waiting: &'a [WaitlistCandidate<'a>],
    /// The engine's current time.
    pub now: DateTime<Utc>,
}

/// Decides which waiting entries are offered freed seats, in what order.
#[async_trait]
pub trait WaitlistPolicy: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &str;
    /// Whether the engine should load the waiting users' attributes.
    fn needs_user_attributes(&self) -> bool {
        false
    }
    /// Returns the entries to offer, in order. Every id must be one of `req.waiting`, at most once, and
    /// their quantities together must not exceed `req.free_seats`; otherwise the answer is refused.
    async fn choose(&self, req: &OfferRequest<'_>) -> Result<Vec<WaitlistEntryId>, PolicyError>;
}

/// First come, first served, strictly: offers go down the queue in join order and stop at the first entry
/// that wants more seats than are left, so a large party is never overtaken by later arrivals.
#[derive(Debug, Default, Clone, Copy)]
pub struct FifoWaitlist;

#[async_trait]
impl WaitlistPolicy for FifoWaitlist {
    fn name(&self) -> &str {
        "builtin:fifo"
    }

    async fn choose(&self, req: &OfferRequest<'_>) -> Result<Vec<WaitlistEntryId>, PolicyError> {
        Ok(fifo_choice(
            req.waiting.iter().map(|c| c.entry),
            req.free_seats,
        ))
    }
}

pub(crate) fn fifo_choice<'a>(
    entries: impl Iterator<Item = &'a WaitlistEntry>,
    mut free: u32,
) -> Vec<WaitlistEntryId> {
    let mut out = Vec::new();
    for e in entries {
        if e.quantity > free {
            break;
        }
        free -= e.quantity;
        out.push(e.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{Role, UserId};

    #[test]
    fn fixed_price_answers_the_same_with_and_without_waiting() {
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        let mut event = Event::sample(at);
        let buyer = Buyer {
            user_id: UserId::new(),
            role: Role::User,
            attributes: BTreeMap::new(),
        };
        for (minor, quantity) in [(1500, 3), (i64::MAX, 2)] {
            event.price.minor = minor;
            let req = QuoteRequest {
                event: &event,
                quantity,
                buyer: &buyer,
                now: at,
            };
            let waited = futures_executor::block_on(FixedPrice.quote(&req));
            let now = FixedPrice.quote_at_once(&req);
            assert_eq!(format!("{now:?}"), format!("{waited:?}"));
            assert_eq!(waited.is_ok(), minor == 1500, "{waited:?}");
        }
    }
}
