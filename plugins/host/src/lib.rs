//! # evently-plugins
//!
//! The WebAssembly policy host of Evently: pricing and waitlist policies written as WebAssembly
//! components against `plugins/wit/policy.wit` (package `evently:policy@1.0.0`), run under wasmtime
//! with no capabilities and hard per-call limits.
//!
//! - [`PluginHost`] compiles each module once (and caches the compiled code on disk, keyed by the
//!   module's SHA-256 and the wasmtime version and settings), refuses modules that are not components,
//!   import anything or do not implement the interface, and pre-instantiates them.
//! - Every call gets a fresh instance from the pooling allocator, under a wall-clock deadline, a fuel
//!   budget, a linear-memory cap, a stack cap, table and instance limits and an output-size cap
//!   ([`Limits`]). Nothing survives from one call to the next.
//! - [`WasmPricingPolicy`] and [`WasmWaitlistPolicy`] implement the core's
//!   [`PricingPolicy`](evently_core::PricingPolicy) and [`WaitlistPolicy`](evently_core::WaitlistPolicy):
//!   register them per event or as the default in the engine's
//!   [`PolicyRegistry`](evently_core::PolicyRegistry), and replace them at run time.
//! - Every failure is a typed [`PluginError`] that converts into the core's
//!   [`PolicyError`](evently_core::PolicyError); the engine's
//!   [`PolicyFailureMode`](evently_core::PolicyFailureMode) then rejects the operation or falls back to
//!   the built-in policy. Failures are logged (`tracing`) and counted (`evently_plugin_calls_total`).
//!
//! The plugin author's guide is `docs/plugins.md`; the `evently-plugin check` command validates a
//! module and runs it on a sample input.
#![warn(missing_docs)]

pub mod bindings;
mod call;
mod config;
mod error;
mod host;
mod policy;
pub mod sample;

pub use config::{HostConfig, Limits};
pub use error::{Limit, PluginError, Result};
pub use host::{HostStats, LoadedPlugin, PluginHost};
pub use policy::{
    CallReport, WasmPricingPolicy, WasmWaitlistPolicy, event_info, offer_request, quote_request,
};
