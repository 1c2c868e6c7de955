use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::{Evently, Work};
use crate::model::{Actor, Event, WaitlistEntry};
use crate::ports::{
    Buyer, FifoWaitlist, FixedPrice, OfferRequest, PricingPolicy, QuoteRequest, WaitlistCandidate,
    WaitlistPolicy,
};
use crate::{Error, EventId, Money, PolicyError, Result, WaitlistEntryId};

/// What the engine does when a policy fails (trap, limit, bad answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyFailureMode {
    /// Fail the operation with [`Error::Policy`].
    #[default]
    Reject,
    /// Use the built-in policy ([`FixedPrice`] or [`FifoWaitlist`]) for this call.
    FallbackToBuiltin,
}

/// The default policies and per-event overrides. Replace any of them at run time; calls already
/// running finish with the policy they started with.
pub struct PolicyRegistry {
    default_pricing: RwLock<Arc<dyn PricingPolicy>>,
    default_waitlist: RwLock<Arc<dyn WaitlistPolicy>>,
    pricing: RwLock<HashMap<EventId, Arc<dyn PricingPolicy>>>,
    waitlist: RwLock<HashMap<EventId, Arc<dyn WaitlistPolicy>>>,
}

impl std::fmt::Debug for PolicyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRegistry").finish_non_exhaustive()
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl PolicyRegistry {
    pub(crate) fn new(pricing: Arc<dyn PricingPolicy>, waitlist: Arc<dyn WaitlistPolicy>) -> Self {
        Self {
            default_pricing: RwLock::new(pricing),
            default_waitlist: RwLock::new(waitlist),
            pricing: RwLock::new(HashMap::new()),
            waitlist: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces the default pricing policy.
    pub fn set_default_pricing(&self, p: Arc<dyn PricingPolicy>) {
        *self
            .default_pricing
            .write()
            .unwrap_or_else(|e| e.into_inner()) = p;
    }
    /// Replaces the default waitlist policy.
    pub fn set_default_waitlist(&self, p: Arc<dyn WaitlistPolicy>) {
        *self
            .default_waitlist
            .write()
            .unwrap_or_else(|e| e.into_inner()) = p;
    }
    /// Assigns a pricing policy to one event (`None` returns it to the default).
    pub fn set_event_pricing(&self, event: EventId, p: Option<Arc<dyn PricingPolicy>>) {
        let mut m = self.pricing.write().unwrap_or_else(|e| e.into_inner());
        match p {
            Some(p) => m.insert(event, p),
            None => m.remove(&event),
        };
    }
    /// Assigns a waitlist policy to one event (`None` returns it to the default).
    pub fn set_event_waitlist(&self, event: EventId, p: Option<Arc<dyn WaitlistPolicy>>) {
        let mut m = self.waitlist.write().unwrap_or_else(|e| e.into_inner());
        match p {
            Some(p) => m.insert(event, p),
            None => m.remove(&event),
        };
    }
    /// The pricing policy in force for an event.
    pub fn pricing_for(&self, event: EventId) -> Arc<dyn PricingPolicy> {
        {
            let m = self.pricing.read().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = m.get(&event) {
                return p.clone();
            }
        }
        read(&self.default_pricing)
    }
    /// The waitlist policy in force for an event.
    pub fn waitlist_for(&self, event: EventId) -> Arc<dyn WaitlistPolicy> {
        {
            let m = self.waitlist.read().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = m.get(&event) {
                return p.clone();
            }
        }
        read(&self.default_waitlist)
    }
}

impl Evently {
    fn policy_failed(&self, kind: &'static str, name: &str, e: &PolicyError) -> Result<()> {
        tracing::warn!(policy = name, error = %e, kind, "policy failed");
        metrics::counter!("evently_policy_failures_total", "kind" => kind).increment(1);
        match self.inner.config.policy_failure_mode {
            PolicyFailureMode::Reject => Err(Error::Policy(e.clone())),
            PolicyFailureMode::FallbackToBuiltin => Ok(()),
        }
    }

    /// Prices `quantity` seats of `event` for `actor`, validating the policy's answer.
    pub(crate) async fn price(
        &self,
        work: &mut Work,
        actor: &Actor,
        event: &Event,
        quantity: u32,
        now: DateTime<Utc>,
    ) -> Result<Money> {
        let policy = self.inner.policies.pricing_for(event.id);
        self.price_with(&*policy, work, actor, event, quantity, now)
            .await
    }

    /// [`Evently::price`] with the policy already looked up (a booking request looks it up before its
    /// transaction).
    pub(crate) async fn price_with(
        &self,
        policy: &dyn PricingPolicy,
        work: &mut Work,
        actor: &Actor,
        event: &Event,
        quantity: u32,
        now: DateTime<Utc>,
    ) -> Result<Money> {
        let attributes = if policy.needs_buyer_attributes() {
            // The engine never changes a user in the transactions that price: no changes to apply.
            work.read_stored()
                .user(actor.user_id)
                .await?
                .map(|u| u.attributes)
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let buyer = Buyer {
            user_id: actor.user_id,
            role: actor.role,
            attributes,
        };
        let req = QuoteRequest {
            event,
            quantity,
            buyer: &buyer,
            now,
        };
        let quoted = policy.quote(&req).await;
        self.checked_total(policy, &req, quoted)
    }

    /// The total of a policy's answer once checked (same currency as the event, not negative); on a
    /// failed or invalid answer, as the configured [`PolicyFailureMode`] says: an error, or the
    /// event's fixed price.
    fn checked_total(
        &self,
        policy: &dyn PricingPolicy,
        req: &QuoteRequest<'_>,
        quoted: std::result::Result<crate::ports::Quote, PolicyError>,
    ) -> Result<Money> {
        let event = req.event;
        let answer = quoted.and_then(|q| {
            let bad = |m: String| PolicyError::InvalidOutput {
                policy: policy.name().to_string(),
                message: m,
            };
            if q.total.currency != event.price.currency {
                return Err(bad(format!(
                    "currency {} differs from the event's {}",
                    q.total.currency, event.price.currency
                )));
            }
            if q.total.minor < 0 || q.unit_price.minor < 0 {
                return Err(bad(format!("negative price {}", q.total.minor)));
            }
            Ok(q.total)
        });
        match answer {
            Ok(total) => Ok(total),
            Err(e) => {
                self.policy_failed("pricing", policy.name(), &e)?;
                Ok(FixedPrice.quote_at_once(req)?.total)
            }
        }
    }

    /// Asks the waitlist policy which of `waiting` get offers of `free` seats, validating the answer.
    pub(crate) async fn choose_offers(
        &self,
        work: &mut Work,
        event: &Event,
        waiting: &[WaitlistEntry],
        free: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<WaitlistEntryId>> {
        let policy = self.inner.policies.waitlist_for(event.id);
        let mut attrs: HashMap<_, _> = HashMap::new();
        if policy.needs_user_attributes() {
            let ids: Vec<_> = waiting.iter().map(|e| e.user_id).collect();
            // As in pricing: users are not among the changes of the transactions that choose.
            for u in work.read_stored().users(&ids).await? {
                attrs.insert(u.id, u.attributes);
            }
        }
        let candidates: Vec<WaitlistCandidate<'_>> = waiting
            .iter()
            .map(|entry| WaitlistCandidate {
                entry,
                attributes: attrs.remove(&entry.user_id).unwrap_or_default(),
            })
            .collect();
        let req = OfferRequest {
            event,
            free_seats: free,
            waiting: &candidates,
            now,
        };
        let answer = policy.choose(&req).await.and_then(|ids| {
            let bad = |m: String| PolicyError::InvalidOutput {
                policy: policy.name().to_string(),
                message: m,
            };
            let mut seen = HashSet::new();
            let mut seats: u64 = 0;
            for id in &ids {
                let Some(e) = waiting.iter().find(|e| e.id == *id) else {
                    return Err(bad(format!("{id} is not a waiting entry of this event")));
                };
                if !seen.insert(*id) {
                    return Err(bad(format!("{id} chosen twice")));
                }
                seats += u64::from(e.quantity);
            }
            if seats > u64::from(free) {
                return Err(bad(format!(
                    "offers {seats} seats but only {free} are free"
                )));
            }
            Ok(ids)
        });
        match answer {
            Ok(ids) => Ok(ids),
            Err(e) => {
                self.policy_failed("waitlist", policy.name(), &e)?;
                Ok(FifoWaitlist.choose(&req).await?)
            }
        }
    }
}
