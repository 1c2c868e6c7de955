//! Ports: the traits adapters implement. Core calls them; it never names a database, HTTP or wasm crate.

mod clock;
mod ids;
mod jobs;
mod notify;
mod policy;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{DefaultIdGenerator, IdGenerator};
pub use jobs::{JobQueue, JobStats, lease_end};
pub use notify::{Delivery, Notifier, NotifyError};
pub use policy::{
    Buyer, FifoWaitlist, FixedPrice, OfferRequest, PricingPolicy, Quote, QuoteRequest,
    WaitlistCandidate, WaitlistPolicy,
};
pub use store::{
    BookingRepository, Changes, DeliveryRecord, EventRepository, LockMode, NotificationQuery,
    NotificationRepository, PushSubscriptionRepository, Store, TicketRepository, Transaction,
    UserRepository, WaitlistRepository,
};
