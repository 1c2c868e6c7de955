//! The words of a notification. The engine records a notification as data (a kind and the facts it
//! reports: event, booking, seats, total, offer expiry); the edge turns it into text, here, with
//! templates (minijinja), one title and one message per kind. The e-mail and push notifiers use
//! them, and so can an API that shows notifications in an app.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use evently_core::{Notification, NotificationId, NotificationKind, UserId};
//! use evently_http::texts::NotificationText;
//!
//! let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
//! let welcome = Notification::new(NotificationId::new(), UserId::new(), NotificationKind::Welcome, at);
//! let text = NotificationText::render(&welcome, "Ada", None);
//! assert_eq!(text.title, "Welcome to Evently");
//! assert_eq!(text.message, "Hello Ada, your account is ready.");
//! ```

use std::sync::LazyLock;

use evently_core::{Event, Notification};
use minijinja::Environment;
use serde::Serialize;

/// A notification's title and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationText {
    /// Short title (an e-mail's subject, a push's title).
    pub title: String,
    /// One or two sentences.
    pub message: String,
}

/// The templates: `<kind>.title` and `<kind>.message` for every kind. Plain text: nothing is escaped
/// here (the HTML e-mail escapes what it puts in its markup).
const TEMPLATES: &[(&str, &str)] = &[
    ("welcome.title", "Welcome to Evently"),
    (
        "welcome.message",
        "Hello {{ name }}, your account is ready.",
    ),
    ("booking_confirmed.title", "Booking confirmed: {{ event }}"),
    (
        "booking_confirmed.message",
        "{{ seats }} seat(s) for {{ event }}{% if venue %} at {{ venue }}{% endif %}\
         {% if starts_at %}, starting {{ starts_at }}{% endif %}.\
         {% if total %} Total {{ total }}.{% endif %}",
    ),
    ("booking_cancelled.title", "Booking cancelled: {{ event }}"),
    (
        "booking_cancelled.message",
        "Your booking of {{ seats }} seat(s) for {{ event }} is cancelled.",
    ),
    ("hold_expired.title", "Hold expired: {{ event }}"),
    (
        "hold_expired.message",
        "Your hold on {{ seats }} seat(s) for {{ event }} ran out before it was confirmed; \
         the seats are released.",
    ),
    ("waitlist_offer.title", "Seats available: {{ event }}"),
    (
        "waitlist_offer.message",
        "{{ seats }} seat(s) for {{ event }} are held for you\
         {% if offer_expires_at %} until {{ offer_expires_at }}{% endif %}. Confirm to book them.",
    ),
    ("waitlist_offer_expired.title", "Offer expired: {{ event }}"),
    (
        "waitlist_offer_expired.message",
        "The seats offered to you for {{ event }} were not confirmed in time.",
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| environment(TEMPLATES));

/// An environment holding `templates` (name, source). minijinja escapes what a template inserts
/// when its name ends in `.html`, and nothing otherwise. The sources are constants, each checked by
/// a test: one that does not parse is logged and left out (rendering it then fails, and the caller
/// falls back).
pub(crate) fn environment(
    templates: &'static [(&'static str, &'static str)],
) -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in templates {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "template does not parse");
        }
    }
    env
}

/// What a template may use. Times as RFC 3339 (UTC), money as "<minor units> <currency>".
#[derive(Serialize)]
struct Context<'a> {
    name: &'a str,
    event: &'a str,
    venue: Option<&'a str>,
    starts_at: Option<String>,
    seats: u32,
    total: Option<String>,
    offer_expires_at: Option<String>,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl NotificationText {
    /// The title and message of `n` for a recipient called `name`, naming `event` (the event `n` is
    /// about, when it still exists; "your event" otherwise).
    pub fn render(n: &Notification, name: &str, event: Option<&Event>) -> Self {
        let ctx = Context {
            name,
            event: event.map_or("your event", |e| e.name.as_str()),
            venue: event.map(|e| e.venue.as_str()),
            starts_at: event.map(|e| rfc3339(e.starts_at)),
            seats: n.seats.unwrap_or(0),
            total: n.total.map(|t| t.to_string()),
            offer_expires_at: n.offer_expires_at.map(rfc3339),
        };
        let kind = n.kind.as_str();
        let render = |part: &str| {
            let name = format!("{kind}.{part}");
            ENV.get_template(&name)
                .and_then(|t| t.render(&ctx))
                .unwrap_or_else(|e| {
                    tracing::error!(template = name, error = %e, "notification template failed");
                    kind.replace('_', " ")
                })
        };
        Self {
            title: render("title"),
            message: render("message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use evently_core::{BookingId, Currency, EventId, Money, NotificationId, UserId};

    use super::*;
    use evently_core::NotificationKind;

    /// Every kind (the match makes a new kind a compile error here, so it gets its templates).
    fn name(kind: NotificationKind) -> &'static str {
        match kind {
            NotificationKind::Welcome
            | NotificationKind::BookingConfirmed
            | NotificationKind::BookingCancelled
            | NotificationKind::HoldExpired
            | NotificationKind::WaitlistOffer
            | NotificationKind::WaitlistOfferExpired => kind.as_str(),
        }
    }

    const KINDS: [NotificationKind; 6] = [
        NotificationKind::Welcome,
        NotificationKind::BookingConfirmed,
        NotificationKind::BookingCancelled,
        NotificationKind::HoldExpired,
        NotificationKind::WaitlistOffer,
        NotificationKind::WaitlistOfferExpired,
    ];

    #[test]
    fn every_template_parses_and_every_kind_has_a_title_and_a_message() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for kind in KINDS {
            for part in ["title", "message"] {
                let name = format!("{}.{part}", name(kind));
                assert!(env.get_template(&name).is_ok(), "{name} is missing");
            }
        }
    }

    #[test]
    fn the_texts_name_the_event_and_the_facts() {
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).unwrap();
        let event = Event {
            id: EventId::new(),
            name: "Gig".into(),
            description: String::new(),
            venue: "Club".into(),
            category: "music".into(),
            starts_at: at,
            ends_at: at + chrono::Duration::hours(3),
            capacity: 10,
            price: Money::new(1500, Currency::new("EUR").unwrap()),
            active: true,
            version: 1,
            seats_held: 0,
            seats_confirmed: 0,
            created_at: at,
            updated_at: at,
        };
        let mut n = Notification::new(
            NotificationId::new(),
            UserId::new(),
            NotificationKind::BookingConfirmed,
            at,
        );
        n.event_id = Some(EventId::new());
        n.booking_id = Some(BookingId::new());
        n.seats = Some(2);
        n.total = Some(Money::new(3000, Currency::new("EUR").unwrap()));
        let text = NotificationText::render(&n, "Ada", Some(&event));
        assert_eq!(text.title, "Booking confirmed: Gig");
        assert_eq!(
            text.message,
            "2 seat(s) for Gig at Club, starting 2030-01-08T09:00:00Z. Total 3000 EUR."
        );
        n.kind = NotificationKind::WaitlistOffer;
        n.offer_expires_at = Some(at);
        let offer = NotificationText::render(&n, "Ada", None);
        assert_eq!(offer.title, "Seats available: your event");
        assert_eq!(
            offer.message,
            "2 seat(s) for your event are held for you until 2030-01-08T09:00:00Z. Confirm to book them."
        );
        // User-chosen names go in as they are: no template syntax is interpreted in them.
        let odd = Event {
            name: "{{ 7 * 7 }} <b>".into(),
            ..event
        };
        n.kind = NotificationKind::BookingCancelled;
        assert_eq!(
            NotificationText::render(&n, "Ada", Some(&odd)).title,
            "Booking cancelled: {{ 7 * 7 }} <b>"
        );
    }
}
