use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BookingId, EventId, JobId, NotificationId, PushSubscriptionId, TicketId, UserId};

/// One admission: a booking of `n` seats has `n` tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Identifier.
    pub id: TicketId,
    /// The booking.
    pub booking_id: BookingId,
    /// The event (denormalised for scanning at the door).
    pub event_id: EventId,
    /// Unique human-readable number, e.g. `EVT-7K2M-9QXD-AB3F`.
    pub number: String,
    /// What the QR code encodes.
    pub qr_payload: String,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Account created.
    Welcome,
    /// Booking confirmed; tickets issued.
    BookingConfirmed,
    /// Booking cancelled.
    BookingCancelled,
    /// A hold ran out.
    HoldExpired,
    /// Seats are offered from the waitlist.
    WaitlistOffer,
    /// A waitlist offer ran out.
    WaitlistOfferExpired,
}

impl NotificationKind {
    /// Stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::Welcome => "welcome",
            NotificationKind::BookingConfirmed => "booking_confirmed",
            NotificationKind::BookingCancelled => "booking_cancelled",
            NotificationKind::HoldExpired => "hold_expired",
            NotificationKind::WaitlistOffer => "waitlist_offer",
            NotificationKind::WaitlistOfferExpired => "waitlist_offer_expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "welcome" => NotificationKind::Welcome,
            "booking_confirmed" => NotificationKind::BookingConfirmed,
            "booking_cancelled" => NotificationKind::BookingCancelled,
            "hold_expired" => NotificationKind::HoldExpired,
            "waitlist_offer" => NotificationKind::WaitlistOffer,
            "waitlist_offer_expired" => NotificationKind::WaitlistOfferExpired,
            _ => return None,
        })
    }
}

/// A message to a user, recorded when the engine decides to send it; `sent_at` is set once delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Identifier.
    pub id: NotificationId,
    /// Recipient.
    pub user_id: UserId,
    /// Kind.
    pub kind: NotificationKind,
    /// Short title.
    pub title: String,
    /// Body text.
    pub message: String,
    /// Structured data for templates and clients (ids as strings).
    pub data: NotificationData,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Delivery time; `None` while pending.
    pub sent_at: Option<DateTime<Utc>>,
}

/// A notification's structured data: text keys with text values, at most one value per key, kept in
/// key order. Serialised as a JSON object (`{"booking_id": "…", "event_id": "…"}`).
///
/// A sorted vector rather than a `BTreeMap`: a notification carries a handful of entries, and a
/// `BTreeMap` allocates a node of about half a kilobyte for even one, once per confirmed booking.
/// Keys given as `&'static str` are kept without a copy.
///
/// ```
/// use evently_core::NotificationData;
///
/// let mut data = NotificationData::from([("event_id", "e-1"), ("booking_id", "b-7")]);
/// assert_eq!(data.get("booking_id").map(String::as_str), Some("b-7"));
/// assert_eq!(data.insert("booking_id", "b-8"), Some("b-7".to_string()));
/// let keys: Vec<&str> = data.iter().map(|(k, _)| k).collect();
/// assert_eq!(keys, ["booking_id", "event_id"]);
/// assert_eq!(serde_json::to_string(&data).unwrap(), r#"{"booking_id":"b-8","event_id":"e-1"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NotificationData(Vec<(Cow<'static, str>, String)>);

impl NotificationData {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Option<String> {
        let (key, value) = (key.into(), value.into());
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0.remove(i).1)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<String>> FromIterator<(K, V)> for NotificationData {
    /// Later entries win over earlier ones with the same key, as with a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(Cow<'static, str>, String)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable, so entries with one key stay in order; keep the last of each.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        Self(entries)
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<String>, const N: usize> From<[(K, V); N]>
    for NotificationData
{
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for NotificationData {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already in key order, one value per key.
        Self(map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }
}

impl From<NotificationData> for BTreeMap<String, String> {
    fn from(data: NotificationData) -> Self {
        data.0
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    }
}

impl std::ops::Index<&str> for NotificationData {
    type Output = String;

    /// The value of `key`; panics when there is none, as a map's index does.
    fn index(&self, key: &str) -> &String {
        self.get(key)
            .unwrap_or_else(|| panic!("no notification data entry {key:?}"))
    }
}

impl Serialize for NotificationData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for NotificationData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Self::from)
    }
}

/// A browser's Web Push subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    /// Identifier.
    pub id: PushSubscriptionId,
    /// Owner.
    pub user_id: UserId,
    /// Push service URL; unique.
    pub endpoint: String,
    /// The client's P-256 public key (base64url).
    pub p256dh: String,
    /// The client's auth secret (base64url).
    pub auth: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Work for a background worker. Serialised as JSON by stores that persist jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobPayload {
    /// Deliver a recorded notification through every configured notifier.
    DeliverNotification {
        /// The notification.
        notification_id: NotificationId,
    },
    /// Expire the holds and offers of one event that ran out, then promote its waitlist.
    ExpireHolds {
        /// The event.
        event_id: EventId,
    },
}

impl JobPayload {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            JobPayload::DeliverNotification { .. } => "deliver_notification",
            JobPayload::ExpireHolds { .. } => "expire_holds",
        }
    }
}

/// Job lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for `run_at`.
    Queued,
    /// Claimed by a worker until `locked_until`.
    Running,
    /// Finished.
    Done,
    /// Gave up after `max_attempts`; `last_error` says why.
    Dead,
}

impl JobStatus {
    /// Stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "dead" => JobStatus::Dead,
            _ => return None,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// What to do.
    pub payload: JobPayload,
    /// Higher runs first.
    pub priority: i16,
    /// Not before this time.
    pub run_at: DateTime<Utc>,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
    /// At most one queued or running job with this key; a second enqueue is a no-op.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    /// A job due now with default priority (0) and 8 attempts.
    pub fn now(payload: JobPayload, now: DateTime<Utc>) -> Self {
        Self {
            payload,
            priority: 0,
            run_at: now,
            max_attempts: 8,
            dedupe_key: None,
        }
    }

    /// The stored job this becomes under `id`: queued, no attempts yet, created when first due
    /// (what every queue records).
    pub fn queued(&self, id: JobId) -> Job {
        Job {
            id,
            payload: self.payload.clone(),
            priority: self.priority,
            status: JobStatus::Queued,
            run_at: self.run_at,
            attempts: 0,
            max_attempts: self.max_attempts,
            dedupe_key: self.dedupe_key.clone(),
            last_error: None,
            locked_until: None,
            created_at: self.run_at,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Identifier.
    pub id: JobId,
    /// What to do.
    pub payload: JobPayload,
    /// Priority.
    pub priority: i16,
    /// Status.
    pub status: JobStatus,
    /// Earliest next run.
    pub run_at: DateTime<Utc>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempt limit.
    pub max_attempts: u32,
    /// Deduplication key.
    pub dedupe_key: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// While running: when the claim lapses and the job may be claimed again.
    pub locked_until: Option<DateTime<Utc>>,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod notification_data_tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_the_last_value_of_a_repeated_key() {
        let d: NotificationData = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
        assert_eq!(d.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        assert_eq!(d["b"], "3");
        assert_eq!(d.get("c"), None);
        let mut d = d;
        assert_eq!(d.remove("a"), Some("2".to_string()));
        assert_eq!(d.remove("a"), None);
        assert_eq!(d.len(), 1);
        assert!(!d.is_empty());
    }

    #[test]
    fn reads_back_from_json_and_converts_to_and_from_a_map() {
        let d: NotificationData =
            serde_json::from_str(r#"{"z":"","a":"1","ünï":"cødé"}"#).expect("a JSON object");
        assert_eq!(
            serde_json::to_string(&d).expect("JSON"),
            r#"{"a":"1","z":"","ünï":"cødé"}"#
        );
        let map: BTreeMap<String, String> = d.clone().into();
        assert_eq!(NotificationData::from(map), d);
        assert!(serde_json::from_str::<NotificationData>(r#"{"a":1}"#).is_err());
    }
}
