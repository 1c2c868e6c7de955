use async_trait::async_trait;

use crate::model::{Event, Notification, PushSubscription, Ticket, User};

/// What a notifier is asked to deliver: everything a channel needs, read by the engine in one
/// transaction, so a notifier never reads the store.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Recipient.
    pub user: &'a User,
    /// The recorded notification.
    pub notification: &'a Notification,
    /// The event the notification is about (its `event_id` entry), if it names one that exists.
    pub event: Option<&'a Event>,
    /// For a booking confirmation: the booking's tickets, in number order (empty otherwise).
    pub tickets: &'a [Ticket],
    /// The recipient's push subscriptions.
    pub push_subscriptions: &'a [PushSubscription],
}

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// Worth retrying later (network, 5xx, rate limit).
    #[error("transient delivery failure: {0}")]
    Transient(String),
    /// Retrying will not help (bad address, rejected content).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
    /// The push service says the subscription no longer exists (HTTP 404/410): it is deleted.
    #[error("push subscription {endpoint} is gone")]
    SubscriptionGone {
        /// The dead endpoint.
        endpoint: String,
    },
}

/// A delivery channel: e-mail, web push, a webhook. Must be idempotent per notification id where it can.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Channel name for logs and metrics.
    fn name(&self) -> &str;
    /// Delivers one notification.
    async fn notify(&self, delivery: Delivery<'_>) -> Result<(), NotifyError>;
}
