//! Host bindings generated from `plugins/wit/policy.wit` by `wasmtime::component::bindgen!`.
//!
//! The types derive `serde` traits so that `evently-plugin check` can read sample inputs from JSON.

/// The `pricing-policy` world: the `evently:policy/pricing@1.0.0` export and the shared types.
pub mod pricing {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        world: "pricing-policy",
        path: "../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq],
    });
}

/// The `waitlist-policy` world: the `evently:policy/waitlist@1.0.0` export (shared types come from
/// [`pricing`]).
pub mod waitlist {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        world: "waitlist-policy",
        path: "../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq],
        with: {
            "evently:policy/types": super::pricing::evently::policy::types,
        },
    });
}

pub use pricing::evently::policy::types::{
    Attribute, ErrorCode, EventInfo, Money, PolicyError as GuestError, Role, Timestamp,
};
pub use pricing::exports::evently::policy::pricing::{Buyer, Quote, QuoteRequest};
pub use waitlist::exports::evently::policy::waitlist::{OfferRequest, WaitingEntry};

/// Name of the pricing export, with the interface version.
pub const PRICING_INTERFACE: &str = "evently:policy/pricing@1.0.0";
/// Name of the waitlist export, with the interface version.
pub const WAITLIST_INTERFACE: &str = "evently:policy/waitlist@1.0.0";
/// The one import a plugin may have: the type-only interface both hooks share.
pub const TYPES_INTERFACE: &str = "evently:policy/types@1.0.0";

impl ErrorCode {
    /// The WIT name of the code.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid-request",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
        }
    }
}
