//! Loaded plugins: one fresh instance per call, limits, answer validation, and the core policy traits.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{self, PricingPolicy, WaitlistPolicy};
use evently_core::{Event, Money, PolicyError, WaitlistEntryId};

use crate::bindings::{
    self, Attribute, EventInfo, GuestError, PRICING_INTERFACE, Quote, QuoteRequest,
    WAITLIST_INTERFACE, pricing::PricingPolicyPre, waitlist::WaitlistPolicyPre,
};
use crate::call::{CallState, Phase, Runtime, classify};
use crate::error::{Limit, PluginError, Result};

pub(crate) enum Hook {
    Pricing(PricingPolicyPre<CallState>),
    Waitlist(WaitlistPolicyPre<CallState>),
}

/// What every loaded plugin has: its name, module hash, host and pre-instantiated component.
pub(crate) struct Plugin {
    name: String,
    hash: String,
    runtime: Arc<Runtime>,
    hook: Hook,
}

/// The outcome of one call with what it cost, from [`WasmPricingPolicy::call_with_report`] and
/// [`WasmWaitlistPolicy::call_with_report`].
#[derive(Debug)]
pub struct CallReport<T> {
    /// The validated answer, or why there is none.
    pub answer: Result<T>,
    /// Fuel consumed, when a fuel budget is configured.
    pub fuel_used: Option<u64>,
    /// Wall-clock time of the call, instantiation included.
    pub elapsed: Duration,
}

enum Raw {
    Quote(std::result::Result<Quote, GuestError>),
    Choice(std::result::Result<Vec<u32>, GuestError>),
}

impl Plugin {
    pub(crate) fn new(name: &str, hash: [u8; 32], runtime: Arc<Runtime>, hook: Hook) -> Self {
        Self {
            name: name.to_string(),
            hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
            runtime,
            hook,
        }
    }

    /// Instantiates once at load time, so that a component that cannot fit the limits (or traps or
    /// loops while starting) is refused at load rather than failing every call.
    pub(crate) fn trial(&self) -> Result<()> {
        let mut store = self.runtime.store();
        let (instance, interface) = match &self.hook {
            Hook::Pricing(pre) => (
                pre.instance_pre().instantiate(&mut store),
                PRICING_INTERFACE,
            ),
            Hook::Waitlist(pre) => (
                pre.instance_pre().instantiate(&mut store),
                WAITLIST_INTERFACE,
            ),
        };
        let instance = instance.map_err(|e| {
            match classify(&self.name, store.data().hit, Phase::Instantiate, e) {
                PluginError::LimitExceeded { plugin, limit } => PluginError::TooLarge {
                    plugin,
                    message: format!("instantiating it exceeds the {limit} limit"),
                },
                PluginError::Instantiate { plugin, message } => {
                    PluginError::TooLarge { plugin, message }
                }
                other => other,
            }
        })?;
        // Looks the export up with its Rust types: a signature that differs from `policy.wit` fails here.
        let typed = match &self.hook {
            Hook::Pricing(_) => {
                bindings::pricing::PricingPolicy::new(&mut store, &instance).map(drop)
            }
            Hook::Waitlist(_) => {
                bindings::waitlist::WaitlistPolicy::new(&mut store, &instance).map(drop)
            }
        };
        typed.map_err(|e| PluginError::Interface {
            plugin: self.name.clone(),
            interface,
            message: format!("{e:#}"),
        })
    }

    /// One call in a fresh store and instance; the store (and the instance's memory) is dropped
    /// before returning, so nothing carries over to the next call.
    fn run(&self, input: Input<'_>) -> (Result<Raw>, Option<u64>, Duration) {
        let started = Instant::now();
        let mut store = self.runtime.store();
        let result = (|| -> Result<Raw> {
            let fail = |store: &wasmtime::Store<CallState>, phase, e| {
                classify(&self.name, store.data().hit, phase, e)
            };
            match (&self.hook, input) {
                (Hook::Pricing(pre), Input::Quote(req)) => {
                    let inst = pre
                        .instantiate(&mut store)
                        .map_err(|e| fail(&store, Phase::Instantiate, e))?;
                    let out = inst
                        .evently_policy_pricing()
                        .call_price(&mut store, req)
                        .map_err(|e| fail(&store, Phase::Call, e))?;
                    Ok(Raw::Quote(out))
                }
                (Hook::Waitlist(pre), Input::Offer(req)) => {
                    let inst = pre
                        .instantiate(&mut store)
                        .map_err(|e| fail(&store, Phase::Instantiate, e))?;
                    let out = inst
                        .evently_policy_waitlist()
                        .call_choose(&mut store, req)
                        .map_err(|e| fail(&store, Phase::Call, e))?;
                    Ok(Raw::Choice(out))
                }
                _ => Err(PluginError::Instantiate {
                    plugin: self.name.clone(),
                    message: "input of the other hook".to_string(),
                }),
            }
        })();
        let fuel_used = self
            .runtime
            .limits
            .fuel
            .and_then(|budget| store.get_fuel().ok().map(|left| budget - left));
        drop(store);
        (result, fuel_used, started.elapsed())
    }

    fn declined(&self, e: GuestError) -> PluginError {
        if e.message.len() > self.runtime.limits.output_bytes {
            return PluginError::LimitExceeded {
                plugin: self.name.clone(),
                limit: Limit::Output,
            };
        }
        PluginError::Declined {
            plugin: self.name.clone(),
            code: e.code.as_str(),
            message: e.message,
        }
    }

    fn invalid(&self, message: String) -> PluginError {
        PluginError::InvalidOutput {
            plugin: self.name.clone(),
            message,
        }
    }

    /// Logs and counts a failed call; the engine's failure mode decides what happens next.
    fn record<T>(&self, r: &Result<T>, hook: &'static str) {
        match r {
            Ok(_) => {
                metrics::counter!("evently_plugin_calls_total", "hook" => hook, "outcome" => "ok")
                    .increment(1)
            }
            Err(e) => {
                tracing::warn!(plugin = %self.name, module = %self.hash, hook, error = %e, "plugin call failed");
                metrics::counter!("evently_plugin_calls_total", "hook" => hook, "outcome" => e.kind())
                    .increment(1);
            }
        }
    }
}

enum Input<'a> {
    Quote(&'a QuoteRequest),
    Offer(&'a bindings::OfferRequest),
}

/// A pricing policy implemented by a WebAssembly component. Implements [`PricingPolicy`]; give it to
/// the engine as the default ([`EventlyBuilder::pricing`](evently_core::EventlyBuilder::pricing),
/// [`PolicyRegistry::set_default_pricing`](evently_core::PolicyRegistry::set_default_pricing)) or for
/// one event ([`PolicyRegistry::set_event_pricing`](evently_core::PolicyRegistry::set_event_pricing)).
pub struct WasmPricingPolicy {
    pub(crate) plugin: Plugin,
}

impl std::fmt::Debug for WasmPricingPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPricingPolicy")
            .field("name", &self.plugin.name)
            .field("module_sha256", &self.plugin.hash)
            .finish()
    }
}

impl WasmPricingPolicy {
    /// SHA-256 of the module's bytes, lower-case hex.
    pub fn module_sha256(&self) -> &str {
        &self.plugin.hash
    }

    /// Calls the plugin on a request in WIT form and validates the answer (prices must be ≥ 0).
    pub fn call(&self, req: &QuoteRequest) -> Result<Quote> {
        self.call_with_report(req).answer
    }

    /// [`call`](Self::call), with the fuel and time it took.
    pub fn call_with_report(&self, req: &QuoteRequest) -> CallReport<Quote> {
        let p = &self.plugin;
        let (raw, fuel_used, elapsed) = p.run(Input::Quote(req));
        let answer = raw.and_then(|raw| match raw {
            Raw::Quote(Ok(q)) if q.unit_price < 0 || q.total < 0 => Err(p.invalid(format!(
                "negative price (unit {}, total {})",
                q.unit_price, q.total
            ))),
            Raw::Quote(Ok(q)) => Ok(q),
            Raw::Quote(Err(e)) => Err(p.declined(e)),
            Raw::Choice(_) => Err(p.invalid("answer of the other hook".into())),
        });
        p.record(&answer, "pricing");
        CallReport {
            answer,
            fuel_used,
            elapsed,
        }
    }
}

#[async_trait]
impl PricingPolicy for WasmPricingPolicy {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    /// Always true: the interface hands the buyer's attributes to the plugin.
    fn needs_buyer_attributes(&self) -> bool {
        true
    }

    async fn quote(&self, req: &ports::QuoteRequest<'_>) -> Result<ports::Quote, PolicyError> {
        let q = self.call(&quote_request(req))?;
        let currency = req.event.price.currency;
        Ok(ports::Quote {
            unit_price: Money::new(q.unit_price, currency),
            total: Money::new(q.total, currency),
        })
    }
}

/// A waitlist policy implemented by a WebAssembly component. Implements [`WaitlistPolicy`]; give it to
/// the engine like a [`WasmPricingPolicy`].
pub struct WasmWaitlistPolicy {
    pub(crate) plugin: Plugin,
}

impl std::fmt::Debug for WasmWaitlistPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmWaitlistPolicy")
            .field("name", &self.plugin.name)
            .field("module_sha256", &self.plugin.hash)
            .finish()
    }
}

impl WasmWaitlistPolicy {
    /// SHA-256 of the module's bytes, lower-case hex.
    pub fn module_sha256(&self) -> &str {
        &self.plugin.hash
    }

    /// Calls the plugin on a request in WIT form and validates the answer: indices into
    /// `req.waiting`, each at most once, their seats together at most `req.free_seats`.
    pub fn call(&self, req: &bindings::OfferRequest) -> Result<Vec<u32>> {
        self.call_with_report(req).answer
    }

    /// [`call`](Self::call), with the fuel and time it took.
    pub fn call_with_report(&self, req: &bindings::OfferRequest) -> CallReport<Vec<u32>> {
        let p = &self.plugin;
        let (raw, fuel_used, elapsed) = p.run(Input::Offer(req));
        let answer = raw.and_then(|raw| match raw {
            Raw::Choice(Ok(chosen)) => self.validate(req, chosen),
            Raw::Choice(Err(e)) => Err(p.declined(e)),
            Raw::Quote(_) => Err(p.invalid("answer of the other hook".into())),
        });
        p.record(&answer, "waitlist");
        CallReport {
            answer,
            fuel_used,
            elapsed,
        }
    }

    fn validate(&self, req: &bindings::OfferRequest, chosen: Vec<u32>) -> Result<Vec<u32>> {
        let p = &self.plugin;
        if chosen.len().saturating_mul(4) > p.runtime.limits.output_bytes {
            return Err(PluginError::LimitExceeded {
                plugin: p.name.clone(),
                limit: Limit::Output,
            });
        }
        let mut seen = HashSet::with_capacity(chosen.len());
        let mut seats: u64 = 0;
        for &i in &chosen {
            let Some(entry) = req.waiting.get(i as usize) else {
                return Err(p.invalid(format!(
                    "index {i} is not a waiting entry (there are {})",
                    req.waiting.len()
                )));
            };
            if !seen.insert(i) {
                return Err(p.invalid(format!("entry {i} chosen twice")));
            }
            seats += u64::from(entry.quantity);
        }
        if seats > u64::from(req.free_seats) {
            return Err(p.invalid(format!(
                "offers {seats} seats but only {} are free",
                req.free_seats
            )));
        }
        Ok(chosen)
    }
}

#[async_trait]
impl WaitlistPolicy for WasmWaitlistPolicy {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    /// Always true: the interface hands the waiting users' attributes to the plugin.
    fn needs_user_attributes(&self) -> bool {
        true
    }

    async fn choose(
        &self,
        req: &ports::OfferRequest<'_>,
    ) -> Result<Vec<WaitlistEntryId>, PolicyError> {
        let chosen = self.call(&offer_request(req))?;
        Ok(chosen
            .into_iter()
            .map(|i| req.waiting[i as usize].entry.id)
            .collect())
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn attributes(map: &BTreeMap<String, String>) -> Vec<Attribute> {
    map.iter()
        .map(|(k, v)| Attribute {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// The WIT view of an event with its seat counters.
pub fn event_info(e: &Event) -> EventInfo {
    EventInfo {
        id: e.id.to_string(),
        name: e.name.clone(),
        category: e.category.clone(),
        venue: e.venue.clone(),
        starts_at: millis(e.starts_at),
        ends_at: millis(e.ends_at),
        capacity: e.capacity,
        seats_held: e.seats_held,
        seats_confirmed: e.seats_confirmed,
        seats_free: e.seats_free(),
        price: bindings::Money {
            minor: e.price.minor,
            currency: e.price.currency.as_str().to_string(),
        },
    }
}

/// The WIT form of the engine's pricing request.
pub fn quote_request(req: &ports::QuoteRequest<'_>) -> QuoteRequest {
    QuoteRequest {
        event: event_info(req.event),
        quantity: req.quantity,
        buyer: bindings::Buyer {
            user_id: req.buyer.user_id.to_string(),
            role: match req.buyer.role {
                evently_core::Role::Admin => bindings::Role::Admin,
                evently_core::Role::User => bindings::Role::User,
            },
            attributes: attributes(&req.buyer.attributes),
        },
        now: millis(req.now),
    }
}

/// The WIT form of the engine's waitlist request.
pub fn offer_request(req: &ports::OfferRequest<'_>) -> bindings::OfferRequest {
    bindings::OfferRequest {
        event: event_info(req.event),
        free_seats: req.free_seats,
        waiting: req
            .waiting
            .iter()
            .enumerate()
            .map(|(i, c)| bindings::WaitingEntry {
                id: c.entry.id.to_string(),
                user_id: c.entry.user_id.to_string(),
                quantity: c.entry.quantity,
                position: c.entry.position.unwrap_or(i as u32 + 1),
                joined_at: millis(c.entry.joined_at),
                attributes: attributes(&c.attributes),
            })
            .collect(),
        now: millis(req.now),
    }
}
