//! Sample inputs in JSON, as read by `evently-plugin check --input FILE`.
//!
//! A sample is one request in the WIT shapes, under the name of its hook; field names are the WIT
//! names with `_` for `-`, enum cases are capitalised (`"User"`, `"InvalidRequest"`), timestamps are
//! milliseconds since the Unix epoch:
//!
//! ```
//! let json = r#"{"pricing": {
//!   "event": {"id": "0196f0d2-0000-7000-8000-000000000001", "name": "RustConf", "category": "conference",
//!             "venue": "Hall A", "starts_at": 1767225600000, "ends_at": 1767312000000,
//!             "capacity": 100, "seats_held": 0, "seats_confirmed": 10, "seats_free": 90,
//!             "price": {"minor": 10000, "currency": "EUR"}},
//!   "quantity": 2,
//!   "buyer": {"user_id": "0196f0d2-0000-7000-8000-000000000002", "role": "User",
//!             "attributes": [{"key": "tier", "value": "member"}]},
//!   "now": 1764547200000}}"#;
//! let sample: evently_plugins::sample::SampleInput = serde_json::from_str(json).unwrap();
//! assert!(matches!(sample, evently_plugins::sample::SampleInput::Pricing(_)));
//! ```

use serde::{Deserialize, Serialize};

use crate::bindings::{OfferRequest, QuoteRequest};

/// One request for either hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SampleInput {
    /// A request for the pricing hook.
    Pricing(QuoteRequest),
    /// A request for the waitlist hook.
    Waitlist(OfferRequest),
}

impl SampleInput {
    /// Which hook the sample is for: `"pricing"` or `"waitlist"`.
    pub fn hook(&self) -> &'static str {
        match self {
            SampleInput::Pricing(_) => "pricing",
            SampleInput::Waitlist(_) => "waitlist",
        }
    }
}
