//! Notification channels: [`Notifier`](evently_core::Notifier) adapters the engine's job runner
//! delivers through. See `docs/notifications.md` for templates, transports and configuration.

pub mod email;

pub use email::{
    DefaultTemplates, EmailConfig, EmailContext, EmailNotifier, EmailTemplates, MailTransport,
    RenderedEmail,
};
