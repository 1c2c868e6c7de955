//! # evently-plugin-sdk
//!
//! Write Evently pricing and waitlist policies in Rust and build them as WebAssembly components.
//! The interface is `plugins/wit/policy.wit` (package `evently:policy@1.0.0`); this crate carries the
//! generated bindings, an export macro per hook and a few helpers for integer money arithmetic.
//!
//! A plugin crate (`crate-type = ["cdylib"]`) implements one hook and exports it with one macro:
//! [`export_pricing!`] or [`export_waitlist!`]. Only the exported hook ends up in the component.
//!
//! ```ignore
//! use evently_plugin_sdk::pricing::{Guest, PolicyError, Quote, QuoteRequest};
//!
//! struct HalfPrice;
//!
//! impl Guest for HalfPrice {
//!     fn price(req: QuoteRequest) -> Result<Quote, PolicyError> {
//!         let unit = evently_plugin_sdk::pricing::percent(req.event.price.minor, 50)?;
//!         Ok(Quote { unit_price: unit, total: evently_plugin_sdk::pricing::times(unit, req.quantity)? })
//!     }
//! }
//!
//! evently_plugin_sdk::export_pricing!(HalfPrice);
//! ```
//!
//! Build with `scripts/build-plugins` (see `docs/plugins.md`): the component imports nothing, so the
//! policy cannot read files, the network, a clock or randomness. Everything it may use is in the request.
#![warn(missing_docs)]

extern crate self as evently_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Exports a type implementing [`pricing::Guest`] as the plugin's pricing hook.
#[macro_export]
macro_rules! export_pricing {
    ($ty:ident) => {
        $crate::pricing::__bindings::export_pricing!($ty);
    };
}

/// Exports a type implementing [`waitlist::Guest`] as the plugin's waitlist hook.
#[macro_export]
macro_rules! export_waitlist {
    ($ty:ident) => {
        $crate::waitlist::__bindings::export_waitlist!($ty);
    };
}

/// Milliseconds in a minute, hour and day, for comparing [`timestamp`](pricing::Timestamp)s.
pub mod time {
    /// Milliseconds in a minute.
    pub const MINUTE_MS: i64 = 60 * 1000;
    /// Milliseconds in an hour.
    pub const HOUR_MS: i64 = 60 * MINUTE_MS;
    /// Milliseconds in a day.
    pub const DAY_MS: i64 = 24 * HOUR_MS;
}

/// Helpers shared by both hooks, generated into each hook's module (each has its own WIT types).
macro_rules! helpers {
    () => {
        /// A policy error with a code and a message.
        pub fn error(code: ErrorCode, message: impl Into<String>) -> PolicyError {
            PolicyError {
                code,
                message: message.into(),
            }
        }

        /// The value of attribute `key`, if the user has it.
        pub fn attribute<'a>(attributes: &'a [Attribute], key: &str) -> Option<&'a str> {
            attributes
                .iter()
                .find(|a| a.key == key)
                .map(|a| a.value.as_str())
        }

        /// `amount * percent / 100`, rounded half away from zero, or an error on overflow.
        pub fn percent(amount: i64, percent: u32) -> Result<i64, PolicyError> {
            let p = i128::from(amount) * i128::from(percent);
            let rounded = if p >= 0 { (p + 50) / 100 } else { (p - 50) / 100 };
            i64::try_from(rounded)
                .map_err(|_| error(ErrorCode::InvalidRequest, "amount overflows"))
        }

        /// `amount * quantity`, or an error on overflow.
        pub fn times(amount: i64, quantity: u32) -> Result<i64, PolicyError> {
            amount
                .checked_mul(i64::from(quantity))
                .ok_or_else(|| error(ErrorCode::InvalidRequest, "amount overflows"))
        }

        /// Seats taken (held or confirmed) per thousand seats of capacity; 1000 when capacity is 0.
        pub fn occupancy_permille(event: &EventInfo) -> u32 {
            if event.capacity == 0 {
                return 1000;
            }
            let taken = u64::from(event.seats_held) + u64::from(event.seats_confirmed);
            (taken * 1000 / u64::from(event.capacity)).min(1000) as u32
        }
    };
}

/// The pricing hook: implement [`pricing::Guest`] and export it with [`export_pricing!`].
pub mod pricing {
    #![allow(missing_docs)]
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "pricing-policy",
            pub_export_macro: true,
            export_macro_name: "export_pricing",
            default_bindings_module: "evently_plugin_sdk::pricing::__bindings",
            runtime_path: "evently_plugin_sdk::__wit_bindgen::rt",
        });
    }
    #[doc(hidden)]
    pub use bindings as __bindings;
    pub use bindings::evently::policy::types::{
        Attribute, ErrorCode, EventInfo, Money, PolicyError, Role, Timestamp,
    };
    pub use bindings::exports::evently::policy::pricing::{Buyer, Guest, Quote, QuoteRequest};

    helpers!();
}

/// The waitlist hook: implement [`waitlist::Guest`] and export it with [`export_waitlist!`].
pub mod waitlist {
    #![allow(missing_docs)]
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "waitlist-policy",
            pub_export_macro: true,
            export_macro_name: "export_waitlist",
            default_bindings_module: "evently_plugin_sdk::waitlist::__bindings",
            runtime_path: "evently_plugin_sdk::__wit_bindgen::rt",
        });
    }
    #[doc(hidden)]
    pub use bindings as __bindings;
    pub use bindings::evently::policy::types::{
        Attribute, ErrorCode, EventInfo, Money, PolicyError, Role, Timestamp,
    };
    pub use bindings::exports::evently::policy::waitlist::{Guest, OfferRequest, WaitingEntry};

    helpers!();

    /// Walks `order` (indices into `req.waiting`) and keeps entries while their seats fit in
    /// `req.free_seats`, stopping at the first that does not fit, so no one is overtaken by a
    /// smaller party behind them in the same order.
    pub fn take_while_fits(req: &OfferRequest, order: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let mut free = req.free_seats;
        let mut out = Vec::new();
        for i in order {
            let Some(entry) = req.waiting.get(i as usize) else {
                break;
            };
            if entry.quantity > free {
                break;
            }
            free -= entry.quantity;
            out.push(i);
        }
        out
    }
}
