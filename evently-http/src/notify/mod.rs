//! Notification channels: [`Notifier`](evently_core::Notifier) adapters the engine's job runner
//! delivers through: e-mail ([`email`]) and web push ([`push`]). See `docs/notifications.md` for templates, transports and configuration.

pub mod email;
pub mod push;

pub use email::{
    DefaultTemplates, EmailConfig, EmailContext, EmailNotifier, EmailTemplates, MailTransport,
    RenderedEmail,
};
pub use push::{PushConfig, PushNotifier, PushPayload, VapidKeys};
