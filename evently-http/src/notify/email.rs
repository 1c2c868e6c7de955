//! E-mail delivery: an [`EmailNotifier`] renders each notification with text and HTML templates and sends
//! it through a [`MailTransport`]: SMTP (with [lettre]), a directory of `.eml` files (the embedded
//! default) or the log. A booking confirmation carries one PDF ticket per seat.
//!
//! ## Idempotency
//!
//! The engine marks a notification sent only after every notifier succeeded, and skips notifications
//! already marked, so a job that runs again after success sends nothing. What remains is the window
//! between a successful send and that mark (a crash, a lost store connection): the job is then retried and
//! the message rendered again, byte for byte the same (`Message-ID: <notification-<id>@<from domain>>`,
//! `Date:` the notification's creation time). The directory transport writes `<notification id>.eml`, so a
//! retry replaces the file rather than adding one. SMTP itself cannot take a message back or refuse a
//! duplicate: a retry in that window may deliver a second copy, which mail clients that thread or
//! de-duplicate by `Message-ID` show as one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use evently_core::{Evently, Store};
//! use evently_http::notify::{EmailConfig, EmailNotifier};
//!
//! # async fn demo(store: Arc<dyn Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = EmailConfig::from_env()?; // EVENTLY_SMTP_URL, EVENTLY_MAIL_FROM, ...
//! let email = EmailNotifier::from_config(&config)?;
//! let engine = Evently::builder().store(store).notifier(Arc::new(email)).build()?;
//! engine.run_jobs(100).await?; // delivers what is due
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use evently_core::ports::{Delivery, NotifyError};
use evently_core::{Event, Notification, NotificationKind, Notifier, Ticket, User};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::ConfigError;
use crate::texts::NotificationText;
use crate::tickets::{TicketSheet, ticket_pdf};

/// Mail transport variable: `smtp`, `file` or `log`.
pub const ENV_MAIL_TRANSPORT: &str = "EVENTLY_MAIL_TRANSPORT";
/// SMTP server URL variable.
pub const ENV_SMTP_URL: &str = "EVENTLY_SMTP_URL";
/// SMTP timeout variable (seconds).
pub const ENV_SMTP_TIMEOUT_SECS: &str = "EVENTLY_SMTP_TIMEOUT_SECS";
/// Directory of the file transport.
pub const ENV_MAIL_DIR: &str = "EVENTLY_MAIL_DIR";
/// Sender mailbox variable.
pub const ENV_MAIL_FROM: &str = "EVENTLY_MAIL_FROM";

const ALL_VARS: [&str; 5] = [
    ENV_MAIL_TRANSPORT,
    ENV_SMTP_URL,
    ENV_SMTP_TIMEOUT_SECS,
    ENV_MAIL_DIR,
    ENV_MAIL_FROM,
];

/// Default sender.
pub const DEFAULT_FROM: &str = "Evently <noreply@localhost>";
/// Default directory of the file transport.
pub const DEFAULT_MAIL_DIR: &str = "evently-mail";
/// Default SMTP command timeout.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a template may use.
#[derive(Debug, Clone, Copy)]
pub struct EmailContext<'a> {
    /// The recipient.
    pub user: &'a User,
    /// The notification being delivered.
    pub notification: &'a Notification,
    /// The event the notification is about, when it names one that still exists.
    pub event: Option<&'a Event>,
    /// The booking's tickets (a confirmation only; empty otherwise).
    pub tickets: &'a [Ticket],
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Turns a notification into a subject, a text body and an HTML body. Implement it to brand the
/// messages; [`DefaultTemplates`] is used otherwise. Rendering must be deterministic (the same input
/// gives the same output) so that a retried delivery sends the same message.
pub trait EmailTemplates: Send + Sync + 'static {
    /// Renders one message.
    fn render(&self, ctx: &EmailContext<'_>) -> RenderedEmail;
}

/// The built-in templates: one per [`NotificationKind`], in English, text and HTML.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultTemplates;

/// The default message bodies (minijinja; `.html` templates escape every value they insert, and
/// `paragraph`, included in both, inserts nothing a user chose). The
/// context: `name`, `title`, `message` (from [`NotificationText`]), `kind`, `tickets` (how many are
/// attached) and `rows` (the details table: `label`, `value`).
const EMAIL_TEMPLATES: &[(&str, &str)] = &[
    (
        "paragraph",
        r#"{%- if kind == "welcome" -%}
You can now browse upcoming events and book seats with your account.
{%- elif kind == "booking_confirmed" and tickets == 1 -%}
Your ticket is attached as a PDF. Show it, printed or on screen, at the entrance.
{%- elif kind == "booking_confirmed" -%}
Your {{ tickets }} tickets are attached as PDF files, one per seat. Show them, printed or on screen, at the entrance.
{%- elif kind == "booking_cancelled" -%}
Your tickets for this booking are no longer valid. If you did not ask for this, reply to this message.
{%- elif kind == "hold_expired" -%}
The seats were held for you but not confirmed in time, so they were released.
{%- elif kind == "waitlist_offer" -%}
Confirm the booking before the offer runs out; after that the seats go to the next person waiting.
{%- else -%}
You have left the waitlist for this event; join it again to wait for new seats.
{%- endif -%}"#,
    ),
    (
        "body.txt",
        r#"Hello {{ name }},

{{ message }}

{% include "paragraph" %}

{% for row in rows -%}
{{ row.label }}: {{ row.value }}
{% endfor %}
-- 
Evently
"#,
    ),
    (
        "body.html",
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body style="font-family: sans-serif; line-height: 1.4">
<h1>{{ title }}</h1>
<p>Hello {{ name }},</p>
<p>{{ message }}</p>
<p>{% include "paragraph" %}</p>
{% if rows %}<table>
{% for row in rows %}<tr><th align="left">{{ row.label }}</th><td>{{ row.value }}</td></tr>
{% endfor %}</table>
{% endif %}<p>&mdash; Evently</p>
</body></html>
"#,
    ),
];

static EMAIL_ENV: std::sync::LazyLock<minijinja::Environment<'static>> =
    std::sync::LazyLock::new(|| crate::texts::environment(EMAIL_TEMPLATES));

#[derive(serde::Serialize)]
struct Row {
    label: &'static str,
    value: String,
}

impl EmailTemplates for DefaultTemplates {
    fn render(&self, ctx: &EmailContext<'_>) -> RenderedEmail {
        let n = ctx.notification;
        let words = NotificationText::render(n, &ctx.user.name, ctx.event);
        let row = |label, value| Row { label, value };
        let mut rows: Vec<Row> = Vec::new();
        if let Some(event) = ctx.event {
            rows.push(row("Event", event.name.clone()));
            rows.push(row("Venue", event.venue.clone()));
            rows.push(row("Starts", human_time(event.starts_at)));
        }
        if let Some(id) = n.booking_id {
            rows.push(row("Booking", id.to_string()));
        }
        if n.kind == NotificationKind::BookingConfirmed {
            rows.extend(ctx.tickets.iter().map(|t| row("Ticket", t.number.clone())));
        }
        if let (NotificationKind::WaitlistOffer, Some(until)) = (n.kind, n.offer_expires_at) {
            rows.push(row("Offer valid until", human_time(until)));
        }
        let context = minijinja::context! {
            name => &ctx.user.name,
            title => &words.title,
            message => &words.message,
            kind => n.kind.as_str(),
            tickets => ctx.tickets.len(),
            rows => rows,
        };
        let body = |name: &str| {
            EMAIL_ENV
                .get_template(name)
                .and_then(|t| t.render(&context))
                .unwrap_or_else(|e| {
                    tracing::error!(template = name, error = %e, "e-mail template failed");
                    escape_html(&words.message)
                })
        };
        RenderedEmail {
            text: body("body.txt"),
            html: body("body.html"),
            subject: words.title.clone(),
        }
    }
}

fn human_time(t: DateTime<Utc>) -> String {
    t.format("%a %e %b %Y, %H:%M UTC").to_string()
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where messages go.
#[derive(Clone)]
#[non_exhaustive]
pub enum MailTransport {
    /// An SMTP server (pooled connections).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `<notification id>.eml` file per message in this directory (created if missing); a retried
    /// message replaces its file. The embedded default: nothing leaves the machine.
    Directory(PathBuf),
    /// A log line per message (recipient, subject, size); the message itself is dropped.
    Log,
}

impl fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The SMTP transport's own Debug output may include credentials.
            MailTransport::Smtp(_) => f.write_str("Smtp"),
            MailTransport::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            MailTransport::Log => f.write_str("Log"),
        }
    }
}

impl MailTransport {
    /// An SMTP transport from a URL: `smtp://host:port` (plain), `smtp://host?tls=required` (STARTTLS),
    /// `smtps://host` (TLS from the start), with optional `user:password@` (percent-encoded).
    /// Must be called inside a Tokio runtime (the connection pool starts a task).
    pub fn smtp(url: &str, timeout: Duration) -> Result<Self, lettre::transport::smtp::Error> {
        Ok(MailTransport::Smtp(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                .timeout(Some(timeout))
                .build(),
        ))
    }

    /// The transport's short name.
    pub fn name(&self) -> &'static str {
        match self {
            MailTransport::Smtp(_) => "smtp",
            MailTransport::Directory(_) => "file",
            MailTransport::Log => "log",
        }
    }
}

/// How mail is configured, read from the environment.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `EVENTLY_MAIL_TRANSPORT` | `smtp` if `EVENTLY_SMTP_URL` is set, else `file` | `smtp`, `file` or `log` |
/// | `EVENTLY_SMTP_URL` | – | `smtp://[user:pass@]host[:port][?tls=required\|opportunistic]` or `smtps://…` |
/// | `EVENTLY_SMTP_TIMEOUT_SECS` | `30` | SMTP command timeout |
/// | `EVENTLY_MAIL_DIR` | `evently-mail` | directory of the file transport |
/// | `EVENTLY_MAIL_FROM` | `Evently <noreply@localhost>` | sender mailbox |
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// The transport to use.
    pub transport: TransportConfig,
    /// The sender.
    pub from: Mailbox,
}

/// Which transport, with its settings.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportConfig {
    /// SMTP.
    Smtp {
        /// Server URL (may hold credentials; never printed).
        url: String,
        /// Command timeout.
        timeout: Duration,
    },
    /// `.eml` files in a directory.
    Directory(PathBuf),
    /// Log lines only.
    Log,
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportConfig::Smtp { url, timeout } => f
                .debug_struct("Smtp")
                .field("url", &redact_url(url))
                .field("timeout", timeout)
                .finish(),
            TransportConfig::Directory(d) => f.debug_tuple("Directory").field(d).finish(),
            TransportConfig::Log => f.write_str("Log"),
        }
    }
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("transport", &self.transport)
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// `scheme://<redacted>@host…` when the URL carries a user part.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}<redacted>{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

impl EmailConfig {
    /// Reads the process environment (see the table above).
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars = crate::config::env_snapshot(&ALL_VARS)?;
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads the variables through `lookup` (`None` = unset).
    ///
    /// ```
    /// use evently_http::notify::email::{EmailConfig, TransportConfig};
    ///
    /// let c = EmailConfig::from_lookup(|_| None)?;
    /// assert_eq!(c.transport, TransportConfig::Directory("evently-mail".into()));
    /// let c = EmailConfig::from_lookup(|v| (v == "EVENTLY_SMTP_URL").then(|| "smtp://127.0.0.1:2525".into()))?;
    /// assert!(matches!(c.transport, TransportConfig::Smtp { .. }));
    /// # Ok::<(), evently_http::ConfigError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let from_raw = lookup(ENV_MAIL_FROM).unwrap_or_else(|| DEFAULT_FROM.into());
        let from: Mailbox = from_raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::InvalidValue {
                var: ENV_MAIL_FROM,
                value: from_raw.clone(),
                reason: format!(
                    "{e}; expected a mailbox such as \"Evently <noreply@example.com>\""
                ),
            })?;
        let url = lookup(ENV_SMTP_URL);
        let kind = match lookup(ENV_MAIL_TRANSPORT) {
            Some(v) => v.trim().to_ascii_lowercase(),
            None if url.is_some() => "smtp".into(),
            None => "file".into(),
        };
        let transport = match kind.as_str() {
            "smtp" => {
                let Some(url) = url else {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_SMTP_URL,
                        value: String::new(),
                        reason: "must be set when EVENTLY_MAIL_TRANSPORT=smtp".into(),
                    });
                };
                let url = url.trim().to_string();
                // Validates scheme, host, TLS mode and credentials without connecting.
                if let Err(e) = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url) {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_SMTP_URL,
                        value: redact_url(&url),
                        reason: format!(
                            "{e}; expected smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://…"
                        ),
                    });
                }
                let timeout = match lookup(ENV_SMTP_TIMEOUT_SECS) {
                    None => DEFAULT_SMTP_TIMEOUT,
                    Some(v) => match v.trim().parse::<u64>() {
                        Ok(secs @ 1..=3600) => Duration::from_secs(secs),
                        _ => {
                            return Err(ConfigError::InvalidValue {
                                var: ENV_SMTP_TIMEOUT_SECS,
                                value: v,
                                reason: "expected a whole number of seconds from 1 to 3600".into(),
                            });
                        }
                    },
                };
                TransportConfig::Smtp { url, timeout }
            }
            "file" => {
                let dir = lookup(ENV_MAIL_DIR).unwrap_or_else(|| DEFAULT_MAIL_DIR.into());
                if dir.trim().is_empty() {
                    return Err(ConfigError::InvalidValue {
                        var: ENV_MAIL_DIR,
                        value: dir,
                        reason: "must not be empty".into(),
                    });
                }
                TransportConfig::Directory(PathBuf::from(dir))
            }
            "log" => TransportConfig::Log,
            _ => {
                return Err(ConfigError::InvalidValue {
                    var: ENV_MAIL_TRANSPORT,
                    value: kind,
                    reason: "expected smtp, file or log".into(),
                });
            }
        };
        Ok(EmailConfig { transport, from })
    }

    /// Builds the transport (inside a Tokio runtime: the SMTP pool starts a task).
    pub fn build_transport(&self) -> Result<MailTransport, ConfigError> {
        Ok(match &self.transport {
            TransportConfig::Smtp { url, timeout } => {
                MailTransport::smtp(url, *timeout).map_err(|e| ConfigError::InvalidValue {
                    var: ENV_SMTP_URL,
                    value: redact_url(url),
                    reason: e.to_string(),
                })?
            }
            TransportConfig::Directory(dir) => MailTransport::Directory(dir.clone()),
            TransportConfig::Log => MailTransport::Log,
        })
    }
}

/// A [`Notifier`] sending e-mail. The event and, for a confirmation, the tickets come with the
/// [`Delivery`], so the message can show them and attach one PDF per ticket.
#[derive(Clone)]
pub struct EmailNotifier {
    transport: MailTransport,
    from: Mailbox,
    templates: Arc<dyn EmailTemplates>,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("transport", &self.transport)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// A notifier sending from `from` through `transport`, with the [`DefaultTemplates`].
    pub fn new(transport: MailTransport, from: Mailbox) -> Self {
        Self {
            transport,
            from,
            templates: Arc::new(DefaultTemplates),
        }
    }

    /// A notifier as `config` describes (inside a Tokio runtime).
    pub fn from_config(config: &EmailConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(config.build_transport()?, config.from.clone()))
    }

    /// Uses these templates instead of the default ones.
    pub fn with_templates(mut self, templates: Arc<dyn EmailTemplates>) -> Self {
        self.templates = templates;
        self
    }

    /// The transport.
    pub fn transport(&self) -> &MailTransport {
        &self.transport
    }

    /// The `Message-ID` of a notification's e-mail: `<notification-<id>@<sender's domain>>`.
    pub fn message_id(&self, notification: &Notification) -> String {
        format!(
            "<notification-{}@{}>",
            notification.id,
            self.from.email.domain()
        )
    }

    /// Builds the message for a delivery without sending it.
    pub async fn build_message(&self, delivery: Delivery<'_>) -> Result<Message, NotifyError> {
        let n = delivery.notification;
        let to_address: Address = delivery.user.email.parse().map_err(|e| {
            NotifyError::Permanent(format!(
                "recipient address {:?} is not valid: {e}",
                delivery.user.email
            ))
        })?;
        let to = Mailbox::new(Some(delivery.user.name.clone()), to_address);

        let booking_id = n.booking_id;
        let (event, tickets) = (delivery.event, delivery.tickets);
        if n.kind == NotificationKind::BookingConfirmed && booking_id.is_none() {
            return Err(NotifyError::Permanent(format!(
                "confirmation {} names no booking",
                n.id
            )));
        }
        if n.kind == NotificationKind::BookingConfirmed && tickets.is_empty() {
            return Err(NotifyError::Permanent(format!(
                "booking {} of confirmation {} has no tickets",
                booking_id.map(|b| b.to_string()).unwrap_or_default(),
                n.id
            )));
        }

        let rendered = self.templates.render(&EmailContext {
            user: delivery.user,
            notification: n,
            event,
            tickets,
        });
        // Boundaries derived from the notification id keep a re-rendered message byte-identical. A
        // boundary starting with "=_" cannot occur in quoted-printable or base64 content.
        let id = n.id.0.simple();
        let body = MultiPart::alternative()
            .boundary(format!("=_evently_alt_{id}"))
            .singlepart(SinglePart::plain(rendered.text))
            .singlepart(SinglePart::html(rendered.html));
        let body = if tickets.is_empty() {
            body
        } else {
            let event = event.as_ref().ok_or_else(|| {
                NotifyError::Permanent(format!("the event of confirmation {} is gone", n.id))
            })?;
            let pdf_type = ContentType::parse("application/pdf")
                .map_err(|e| NotifyError::Permanent(format!("content type: {e}")))?;
            let mut mixed = MultiPart::mixed()
                .boundary(format!("=_evently_mixed_{id}"))
                .multipart(body);
            for ticket in tickets {
                let pdf = ticket_pdf(&TicketSheet {
                    ticket,
                    event_name: &event.name,
                    venue: &event.venue,
                    starts_at: event.starts_at,
                    holder: &delivery.user.name,
                })
                .map_err(|e| {
                    NotifyError::Permanent(format!("rendering ticket {}: {e}", ticket.number))
                })?;
                mixed = mixed.singlepart(attachment(ticket, pdf, pdf_type.clone()));
            }
            mixed
        };

        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(self.message_id(n)))
            .date(SystemTime::from(n.created_at))
            .multipart(body)
            .map_err(|e| NotifyError::Permanent(format!("building the message: {e}")))
    }

    async fn send(&self, n: &Notification, message: Message) -> Result<(), NotifyError> {
        match &self.transport {
            MailTransport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(NotifyError::Permanent(format!("SMTP: {e}"))),
                Err(e) => Err(NotifyError::Transient(format!("SMTP: {e}"))),
            },
            MailTransport::Directory(dir) => {
                let dir = dir.clone();
                let name = format!("{}.eml", n.id);
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
                    .await
                    .map_err(|e| NotifyError::Transient(format!("mail writer task: {e}")))?
                    .map_err(|e| NotifyError::Transient(format!("writing the message: {e}")))
            }
            MailTransport::Log => {
                let bytes = message.formatted();
                tracing::info!(
                    notification_id = %n.id,
                    kind = n.kind.as_str(),
                    to = ?message.envelope().to(),
                    bytes = bytes.len(),
                    "e-mail (log transport, not sent)"
                );
                Ok(())
            }
        }
    }
}

fn attachment(ticket: &Ticket, pdf: Vec<u8>, content_type: ContentType) -> SinglePart {
    Attachment::new(format!("ticket-{}.pdf", ticket.number)).body(pdf, content_type)
}

/// Writes `dir/name` through a temporary file and a rename, so a reader never sees half a message and a
/// second write replaces the first.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        "email"
    }

    async fn notify(&self, delivery: Delivery<'_>) -> Result<(), NotifyError> {
        let n = delivery.notification;
        let message = self.build_message(delivery).await?;
        self.send(n, message).await?;
        tracing::debug!(notification_id = %n.id, transport = self.transport.name(), "e-mail sent");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> Result<EmailConfig, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EmailConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_the_file_transport() {
        let c = lookup(&[]).unwrap();
        assert_eq!(
            c.transport,
            TransportConfig::Directory(DEFAULT_MAIL_DIR.into())
        );
        assert_eq!(c.from.email.domain(), "localhost");
    }

    #[test]
    fn smtp_url_selects_smtp_and_is_redacted() {
        let c = lookup(&[
            (ENV_SMTP_URL, "smtp://bob:s3cret@mail.example.com:2525"),
            (ENV_SMTP_TIMEOUT_SECS, "5"),
        ])
        .unwrap();
        assert_eq!(
            c.transport,
            TransportConfig::Smtp {
                url: "smtp://bob:s3cret@mail.example.com:2525".into(),
                timeout: Duration::from_secs(5)
            }
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        // TLS modes are accepted (rustls with ring is compiled in).
        for url in [
            "smtps://mail.example.com",
            "smtp://mail.example.com?tls=required",
            "smtp://mail.example.com:587?tls=opportunistic",
        ] {
            assert!(
                matches!(
                    lookup(&[(ENV_SMTP_URL, url)]).unwrap().transport,
                    TransportConfig::Smtp { .. }
                ),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn tls_transports_build() {
        let c = lookup(&[(ENV_SMTP_URL, "smtps://u:p@mail.example.com")]).unwrap();
        let t = c.build_transport().unwrap();
        assert_eq!(t.name(), "smtp");
        assert_eq!(format!("{t:?}"), "Smtp", "no credentials in Debug");
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let bad = |pairs: &[(&str, &str)], var: &str| match lookup(pairs) {
            Err(ConfigError::InvalidValue { var: v, value, .. }) => {
                assert_eq!(v, var);
                assert!(!value.contains("s3cret"));
            }
            other => panic!("{pairs:?}: {other:?}"),
        };
        bad(&[(ENV_MAIL_TRANSPORT, "pigeon")], ENV_MAIL_TRANSPORT);
        bad(&[(ENV_MAIL_TRANSPORT, "smtp")], ENV_SMTP_URL);
        bad(&[(ENV_SMTP_URL, "ftp://u:s3cret@host")], ENV_SMTP_URL);
        bad(
            &[(ENV_SMTP_URL, "smtp://h"), (ENV_SMTP_TIMEOUT_SECS, "0")],
            ENV_SMTP_TIMEOUT_SECS,
        );
        bad(&[(ENV_MAIL_FROM, "not a mailbox")], ENV_MAIL_FROM);
        bad(&[(ENV_MAIL_DIR, " ")], ENV_MAIL_DIR);
        assert_eq!(
            lookup(&[(ENV_MAIL_TRANSPORT, "LOG")]).unwrap().transport,
            TransportConfig::Log
        );
    }

    #[test]
    fn every_kind_renders_text_and_escaped_html() {
        use evently_core::{
            BookingId, Currency, EventId, Money, NotificationId, Role, TicketId, UserId,
        };
        use uuid::Uuid;
        let now = Utc::now();
        let user = User {
            id: UserId(Uuid::nil()),
            email: "x@example.com".into(),
            name: "<script>Eve</script>".into(),
            password_hash: String::new(),
            role: Role::User,
            attributes: Default::default(),
            created_at: now,
        };
        let event = Event {
            id: EventId(Uuid::nil()),
            name: "Rock & <b>Roll</b>".into(),
            description: String::new(),
            venue: "Club".into(),
            category: "music".into(),
            starts_at: now,
            ends_at: now,
            capacity: 10,
            price: Money::new(1500, Currency::new("EUR").unwrap()),
            active: true,
            version: 1,
            seats_held: 0,
            seats_confirmed: 0,
            created_at: now,
            updated_at: now,
        };
        let ticket = Ticket {
            id: TicketId(Uuid::nil()),
            booking_id: BookingId(Uuid::nil()),
            event_id: event.id,
            number: "EVT-AAAA-BBBB-CCCC".into(),
            qr_payload: "evently:v1:x".into(),
            issued_at: now,
        };
        for kind in [
            NotificationKind::Welcome,
            NotificationKind::BookingConfirmed,
            NotificationKind::BookingCancelled,
            NotificationKind::HoldExpired,
            NotificationKind::WaitlistOffer,
            NotificationKind::WaitlistOfferExpired,
        ] {
            let mut n = Notification::new(NotificationId(Uuid::nil()), user.id, kind, now);
            if kind != NotificationKind::Welcome {
                n.event_id = Some(event.id);
                n.booking_id = Some(ticket.booking_id);
                n.seats = Some(1);
            }
            if kind == NotificationKind::WaitlistOffer {
                n.offer_expires_at = Some(now);
            }
            let tickets = [ticket.clone()];
            let ctx = EmailContext {
                user: &user,
                notification: &n,
                event: n.event_id.map(|_| &event),
                tickets: if kind == NotificationKind::BookingConfirmed {
                    &tickets
                } else {
                    &[]
                },
            };
            let r = DefaultTemplates.render(&ctx);
            let words = NotificationText::render(&n, &user.name, ctx.event);
            assert_eq!(r.subject, words.title);
            assert!(
                r.text.starts_with("Hello <script>Eve</script>,"),
                "{}",
                r.text
            );
            assert!(r.text.contains(&words.message), "{}", r.text);
            assert!(
                !r.html.contains("<script>") && !r.html.contains("<b>"),
                "{}",
                r.html
            );
            if kind != NotificationKind::Welcome {
                assert!(r.html.contains("Rock &amp; &lt;b&gt;Roll"), "{}", r.html);
            }
            assert_eq!(r, DefaultTemplates.render(&ctx), "deterministic");
            assert_eq!(
                r.text.contains("EVT-AAAA-BBBB-CCCC"),
                kind == NotificationKind::BookingConfirmed
            );
            assert_eq!(
                r.text.contains("Offer valid until"),
                kind == NotificationKind::WaitlistOffer
            );
        }
    }

    #[test]
    fn the_email_templates_parse_and_render() {
        for (name, source) in EMAIL_TEMPLATES {
            minijinja::Environment::new()
                .template_from_named_str(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for name in ["body.txt", "body.html"] {
            let rendered = EMAIL_ENV
                .get_template(name)
                .and_then(|t| {
                    t.render(minijinja::context! {
                        name => "Ada", title => "T", message => "M", kind => "welcome",
                        tickets => 0, rows => Vec::<Row>::new(),
                    })
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(rendered.contains("Hello Ada,"), "{rendered}");
            assert!(rendered.contains("browse upcoming events"), "{rendered}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }
}
