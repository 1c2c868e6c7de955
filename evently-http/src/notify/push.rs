//! Web push delivery: a [`PushNotifier`] sends each notification to every push subscription of its
//! recipient, encrypted for the browser (RFC 8291, `aes128gcm` content coding of RFC 8188) and signed
//! for the push service with the application's VAPID key (RFC 8292). The [web-push] crate encrypts and
//! signs; the request goes out through a [reqwest] client on Tokio (rustls), with a timeout.
//!
//! ## What the push service's answer means
//!
//! | answer | result |
//! | --- | --- |
//! | 2xx | delivered |
//! | 404, 410 | [`NotifyError::SubscriptionGone`]: the engine deletes the subscription |
//! | 408, 429, 5xx, network error, timeout | [`NotifyError::Transient`]: the job is retried |
//! | any other status | [`NotifyError::Permanent`]: the job is dead-lettered |
//!
//! A user with several subscriptions gets one push on each, every time. When some fail, the notify call
//! reports one error, in this order: a transient failure first (the whole delivery is retried), then a
//! permanent one, then the first gone subscription (the engine's contract has room for one; the others
//! are found again, and deleted, on later deliveries). A user without subscriptions is not an error.
//!
//! ## Idempotency
//!
//! Each push carries `Topic: <notification id>` (32 hex characters), so a push service that still holds
//! an undelivered message of a retried delivery replaces it rather than queueing a second. One that was
//! already shown can be shown again after a retry: the payload's `id` lets a service worker skip it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use evently_core::{Evently, Store};
//! use evently_http::notify::{PushConfig, PushNotifier};
//!
//! # async fn demo(store: Arc<dyn Store>) -> Result<(), Box<dyn std::error::Error>> {
//! let mut builder = Evently::builder().store(store);
//! // EVENTLY_VAPID_PRIVATE_KEY, EVENTLY_VAPID_SUBJECT, ...; `None` when push is not configured.
//! if let Some(config) = PushConfig::from_env()? {
//!     builder = builder.notifier(Arc::new(PushNotifier::new(&config)?));
//! }
//! let engine = builder.build()?;
//! engine.run_jobs(100).await?; // delivers what is due
//! # Ok(()) }
//! ```

use crate::texts::NotificationText;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use evently_core::ports::{Delivery, NotifyError};
use evently_core::{Notification, NotificationKind, Notifier, PushSubscription};
use reqwest::StatusCode;
use serde::Serialize;
use web_push::{
    ContentEncoding, PartialVapidSignatureBuilder, SubscriptionInfo, Urgency,
    VapidSignatureBuilder, WebPushError, WebPushMessageBuilder,
};

use crate::config::ConfigError;

/// VAPID private key variable: the raw P-256 private scalar, 32 bytes in base64url (what
/// [`VapidKeys::private_key_base64url`] and `evently vapid-keys` print).
pub const ENV_VAPID_PRIVATE_KEY: &str = "EVENTLY_VAPID_PRIVATE_KEY";
/// VAPID subject variable: a `mailto:` or `https:` URL where the push service can reach the operator.
pub const ENV_VAPID_SUBJECT: &str = "EVENTLY_VAPID_SUBJECT";
/// How long a push service keeps an undelivered message (seconds).
pub const ENV_PUSH_TTL_SECS: &str = "EVENTLY_PUSH_TTL_SECS";
/// Request timeout towards push services (seconds).
pub const ENV_PUSH_TIMEOUT_SECS: &str = "EVENTLY_PUSH_TIMEOUT_SECS";

const ALL_VARS: [&str; 4] = [
    ENV_VAPID_PRIVATE_KEY,
    ENV_VAPID_SUBJECT,
    ENV_PUSH_TTL_SECS,
    ENV_PUSH_TIMEOUT_SECS,
];

/// Default message lifetime at the push service: one day.
pub const DEFAULT_PUSH_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted message lifetime: 28 days (what the major push services keep at most).
pub const MAX_PUSH_TTL: Duration = Duration::from_secs(28 * 24 * 3600);
/// Default request timeout.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::webpush::{decode_base64url, is_loopback};

fn encode_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a VAPID key cannot be used. The key itself is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VapidKeyError {
    /// Not base64url.
    #[error("the key is not base64url")]
    NotBase64,
    /// Not 32 bytes long.
    #[error("the key is {len} bytes long; a P-256 private key is 32 bytes")]
    WrongLength {
        /// Its decoded length.
        len: usize,
    },
    /// 32 bytes, but zero or not below the order of the P-256 group.
    #[error("the key is not a valid P-256 private scalar")]
    NotOnCurve,
}

/// The application server's VAPID key pair (P-256). Browsers get the public key as the
/// `applicationServerKey` of `pushManager.subscribe`; push services check each request's signature
/// against it.
///
/// ```
/// use evently_http::notify::VapidKeys;
///
/// let keys = VapidKeys::generate();
/// let again = VapidKeys::from_base64url(&keys.private_key_base64url())?;
/// assert_eq!(again.public_key_base64url(), keys.public_key_base64url());
/// assert_eq!(keys.public_key_bytes().len(), 65); // uncompressed point
/// # Ok::<(), evently_http::notify::push::VapidKeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct VapidKeys {
    secret: p256::SecretKey,
}

impl fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public_key", &self.public_key_base64url())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl VapidKeys {
    /// A new random key pair (from the operating system's random source).
    pub fn generate() -> Self {
        Self {
            secret: p256::SecretKey::random(&mut rand_core::OsRng),
        }
    }

    /// The key pair of a private key given as 32 bytes of base64url (padded or not).
    pub fn from_base64url(private_key: &str) -> Result<Self, VapidKeyError> {
        let bytes = decode_base64url(private_key.trim()).map_err(|_| VapidKeyError::NotBase64)?;
        if bytes.len() != 32 {
            return Err(VapidKeyError::WrongLength { len: bytes.len() });
        }
        let secret = p256::SecretKey::from_slice(&bytes).map_err(|_| VapidKeyError::NotOnCurve)?;
        Ok(Self { secret })
    }

    /// The private scalar, 32 bytes in base64url without padding: the value of
    /// `EVENTLY_VAPID_PRIVATE_KEY`. Keep it secret.
    pub fn private_key_base64url(&self) -> String {
        encode_base64url(&self.secret.to_bytes())
    }

    /// The public key as an uncompressed point (65 bytes, starting with `0x04`).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The public key in base64url without padding, as browsers take it for `applicationServerKey`.
    pub fn public_key_base64url(&self) -> String {
        encode_base64url(&self.public_key_bytes())
    }
}

/// How web push is configured, read from the environment. Push is off unless both VAPID variables
/// are set.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `EVENTLY_VAPID_PRIVATE_KEY` | – | VAPID private key: the raw P-256 scalar, 32 bytes, base64url |
/// | `EVENTLY_VAPID_SUBJECT` | – | contact for push services: `mailto:ops@example.com` or an `https:` URL |
/// | `EVENTLY_PUSH_TTL_SECS` | `86400` | how long a push service keeps an undelivered message (0 to 2419200) |
/// | `EVENTLY_PUSH_TIMEOUT_SECS` | `10` | timeout of one request to a push service (1 to 300) |
#[derive(Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// The application server's key pair.
    pub keys: VapidKeys,
    /// The VAPID `sub` claim.
    pub subject: String,
    /// The `TTL` header of every push.
    pub ttl: Duration,
    /// Timeout of one request to a push service (connect to last byte).
    pub timeout: Duration,
}

impl fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushConfig")
            .field("keys", &self.keys)
            .field("subject", &self.subject)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PushConfig {
    /// A configuration with these keys and subject and the default TTL and timeout.
    pub fn new(keys: VapidKeys, subject: impl Into<String>) -> Self {
        Self {
            keys,
            subject: subject.into(),
            ttl: DEFAULT_PUSH_TTL,
            timeout: DEFAULT_PUSH_TIMEOUT,
        }
    }

    /// Reads the process environment (see the table above); `None` when push is not configured.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let vars = crate::config::env_snapshot(&ALL_VARS)?;
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads the variables through `lookup` (`None` = unset). Neither VAPID variable set: `Ok(None)`;
    /// one without the other, or a malformed value: an error naming the variable (the private key is
    /// never echoed).
    ///
    /// ```
    /// use evently_http::ConfigError;
    /// use evently_http::notify::{PushConfig, VapidKeys};
    ///
    /// assert!(PushConfig::from_lookup(|_| None)?.is_none());
    ///
    /// let key = VapidKeys::generate().private_key_base64url();
    /// let config = PushConfig::from_lookup(|v| match v {
    ///     "EVENTLY_VAPID_PRIVATE_KEY" => Some(key.clone()),
    ///     "EVENTLY_VAPID_SUBJECT" => Some("mailto:ops@example.com".into()),
    ///     _ => None,
    /// })?
    /// .expect("configured");
    /// assert_eq!(config.ttl.as_secs(), 86400);
    ///
    /// let bad = PushConfig::from_lookup(|v| (v == "EVENTLY_VAPID_SUBJECT").then(|| "mailto:a@b.c".into()));
    /// assert!(matches!(bad, Err(ConfigError::InvalidValue { var: "EVENTLY_VAPID_PRIVATE_KEY", .. })));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let key = lookup(ENV_VAPID_PRIVATE_KEY).filter(|v| !v.trim().is_empty());
        let subject = lookup(ENV_VAPID_SUBJECT).filter(|v| !v.trim().is_empty());
        let (key, subject) = match (key, subject) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ConfigError::InvalidValue {
                    var: ENV_VAPID_SUBJECT,
                    value: String::new(),
                    reason: format!("must be set too when {ENV_VAPID_PRIVATE_KEY} is set"),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::InvalidValue {
                    var: ENV_VAPID_PRIVATE_KEY,
                    value: String::new(),
                    reason: format!("must be set too when {ENV_VAPID_SUBJECT} is set"),
                });
            }
            (Some(k), Some(s)) => (k, s.trim().to_string()),
        };
        let keys = VapidKeys::from_base64url(&key).map_err(|e| ConfigError::InvalidValue {
            var: ENV_VAPID_PRIVATE_KEY,
            value: "<redacted>".into(),
            reason: format!(
                "{e}; expected the raw P-256 private key in base64url (generate one with `evently vapid-keys`)"
            ),
        })?;
        check_subject(&subject).map_err(|reason| ConfigError::InvalidValue {
            var: ENV_VAPID_SUBJECT,
            value: subject.clone(),
            reason,
        })?;
        let ttl = secs_var(&lookup, ENV_PUSH_TTL_SECS, 0, MAX_PUSH_TTL.as_secs())?
            .unwrap_or(DEFAULT_PUSH_TTL);
        let timeout =
            secs_var(&lookup, ENV_PUSH_TIMEOUT_SECS, 1, 300)?.unwrap_or(DEFAULT_PUSH_TIMEOUT);
        Ok(Some(PushConfig {
            keys,
            subject,
            ttl,
            timeout,
        }))
    }
}

/// `mailto:<address>` or an `https:` URL with a host (RFC 8292 section 2.1).
fn check_subject(subject: &str) -> Result<(), String> {
    if let Some(address) = subject.strip_prefix("mailto:") {
        let ok = address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
            && !address.contains(char::is_whitespace);
        if ok {
            return Ok(());
        }
        return Err("expected mailto:<e-mail address>".into());
    }
    match reqwest::Url::parse(subject) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(()),
        _ => Err(
            "expected a mailto: address or an https: URL, such as mailto:ops@example.com".into(),
        ),
    }
}

fn secs_var(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = lookup(var) else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(secs) if (min..=max).contains(&secs) => Ok(Some(Duration::from_secs(secs))),
        _ => Err(ConfigError::InvalidValue {
            var,
            value: v,
            reason: format!("expected a whole number of seconds from {min} to {max}"),
        }),
    }
}

/// The decrypted body of every push: the notification as compact JSON. A service worker reads it with
/// `event.data.json()`.
///
/// ```json
/// {"id":"…","kind":"booking_confirmed","title":"Booking confirmed: Gig","message":"…",
///  "event_id":"…","booking_id":"…","created_at":"2026-11-25T16:00:00Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushPayload<'a> {
    /// The notification id (the same in every retry of its delivery).
    pub id: String,
    /// [`NotificationKind::as_str`], e.g. `booking_confirmed`.
    pub kind: &'a str,
    /// Short title (rendered by [`NotificationText`]).
    pub title: &'a str,
    /// Body text (rendered by [`NotificationText`]).
    pub message: &'a str,
    /// The event the notification is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The booking it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

impl<'a> PushPayload<'a> {
    /// The payload of a notification, with its words.
    pub fn new(n: &'a Notification, text: &'a NotificationText) -> Self {
        Self {
            id: n.id.to_string(),
            kind: n.kind.as_str(),
            title: &text.title,
            message: &text.message,
            event_id: n.event_id.map(|e| e.to_string()),
            booking_id: n.booking_id.map(|b| b.to_string()),
            created_at: n
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings and a string map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The `Urgency` header (RFC 8030 section 5.3) of a kind: an offer that runs out is `high`, a
/// welcome `low`, the rest `normal`.
pub fn urgency_of(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::WaitlistOffer => "high",
        NotificationKind::Welcome => "low",
        _ => "normal",
    }
}

fn web_push_urgency(kind: NotificationKind) -> Urgency {
    match urgency_of(kind) {
        "high" => Urgency::High,
        "low" => Urgency::Low,
        _ => Urgency::Normal,
    }
}

/// A [`Notifier`] sending web push messages. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct PushNotifier {
    client: reqwest::Client,
    keys: VapidKeys,
    signer: PartialVapidSignatureBuilder,
    subject: String,
    ttl: Duration,
}

impl fmt::Debug for PushNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushNotifier")
            .field("public_key", &self.keys.public_key_base64url())
            .field("subject", &self.subject)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PushNotifier {
    /// A notifier as `config` describes, with its own HTTP client (no redirects followed, the
    /// configured timeout).
    pub fn new(config: &PushConfig) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("evently/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::InvalidValue {
                var: ENV_PUSH_TIMEOUT_SECS,
                value: config.timeout.as_secs().to_string(),
                reason: format!("building the HTTP client: {e}"),
            })?;
        let signer =
            VapidSignatureBuilder::from_base64_no_sub(&config.keys.private_key_base64url())
                .map_err(|e| ConfigError::InvalidValue {
                    var: ENV_VAPID_PRIVATE_KEY,
                    value: "<redacted>".into(),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            client,
            keys: config.keys.clone(),
            signer,
            subject: config.subject.clone(),
            ttl: config.ttl,
        })
    }

    /// The application server's public key in base64url (`applicationServerKey`).
    pub fn public_key_base64url(&self) -> String {
        self.keys.public_key_base64url()
    }

    /// Encrypts and signs one push of `notification` (in the words of `text`) for `sub`: the
    /// request's URL, headers and body, not sent.
    pub fn build_request(
        &self,
        sub: &PushSubscription,
        notification: &Notification,
        text: &NotificationText,
    ) -> Result<PushRequest, NotifyError> {
        let url = reqwest::Url::parse(&sub.endpoint).map_err(|e| {
            NotifyError::Permanent(format!("endpoint {:?} is not a URL: {e}", sub.endpoint))
        })?;
        // The JWT audience is the endpoint's origin, with its port when not the default (web-push's
        // own default leaves the port out).
        let audience = url.origin().ascii_serialization();
        let info = SubscriptionInfo::new(
            sub.endpoint.as_str(),
            sub.p256dh.as_str(),
            sub.auth.as_str(),
        );
        let mut vapid = self.signer.clone().add_sub_info(&info);
        vapid.add_claim("sub", self.subject.as_str());
        vapid.add_claim("aud", audience.as_str());
        let signature = vapid
            .build()
            .map_err(|e| web_push_error(&sub.endpoint, e))?;

        let payload = PushPayload::new(notification, text).to_json();
        let mut message = WebPushMessageBuilder::new(&info);
        message.set_ttl(u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX));
        message.set_urgency(web_push_urgency(notification.kind));
        message.set_topic(notification.id.0.simple().to_string());
        message.set_vapid_signature(signature);
        message.set_payload(ContentEncoding::Aes128Gcm, &payload);
        let message = message
            .build()
            .map_err(|e| web_push_error(&sub.endpoint, e))?;
        let request = web_push::request_builder::build_request::<Vec<u8>>(message);
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        Ok(PushRequest {
            url,
            headers,
            body: request.into_body(),
        })
    }

    /// Sends one push and classifies the push service's answer.
    async fn push(
        &self,
        sub: &PushSubscription,
        notification: &Notification,
        text: &NotificationText,
    ) -> Result<(), NotifyError> {
        let request = self.build_request(sub, notification, text)?;
        let mut builder = self.client.post(request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = match builder.body(request.body).send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Err(NotifyError::Transient(format!(
                    "push to {} {what}: {e}",
                    sub.endpoint
                )));
            }
        };
        let status = response.status();
        if status.is_success() {
            metrics::counter!("evently_push_total", "outcome" => "ok").increment(1);
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A short excerpt of the service's explanation, for the job's last_error.
        let body = response.text().await.unwrap_or_default();
        let excerpt: String = body.chars().take(200).collect();
        let outcome = classify(status);
        metrics::counter!("evently_push_total", "outcome" => outcome.as_str()).increment(1);
        let detail = format!(
            "push service answered {status} for {}: {excerpt}",
            sub.endpoint
        );
        Err(match outcome {
            Outcome::Gone => NotifyError::SubscriptionGone {
                endpoint: sub.endpoint.clone(),
            },
            Outcome::Transient => match retry_after {
                Some(after) => NotifyError::Transient(format!("{detail} (Retry-After: {after})")),
                None => NotifyError::Transient(detail),
            },
            Outcome::Permanent => NotifyError::Permanent(detail),
        })
    }
}

/// A push ready to send: where, which headers (`TTL`, `Urgency`, `Topic`, `Content-Encoding`,
/// `Content-Type`, `Content-Length`, `Authorization: vapid t=…, k=…`) and the encrypted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// The subscription's endpoint.
    pub url: reqwest::Url,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The `aes128gcm` body.
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Gone,
    Transient,
    Permanent,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Gone => "gone",
            Outcome::Transient => "transient",
            Outcome::Permanent => "permanent",
        }
    }
}

/// What a non-success status means (see the module docs).
fn classify(status: StatusCode) -> Outcome {
    match status.as_u16() {
        404 | 410 => Outcome::Gone,
        408 | 429 | 500..=599 => Outcome::Transient,
        _ => Outcome::Permanent,
    }
}

fn web_push_error(endpoint: &str, e: WebPushError) -> NotifyError {
    NotifyError::Permanent(format!(
        "cannot build the push for {endpoint}: {}",
        match e {
            WebPushError::InvalidCryptoKeys => "the subscription's keys are not valid".to_string(),
            WebPushError::PayloadTooLarge => "the payload is too large".to_string(),
            other => other.to_string(),
        }
    ))
}

#[async_trait]
impl Notifier for PushNotifier {
    fn name(&self) -> &str {
        "push"
    }

    async fn notify(&self, delivery: Delivery<'_>) -> Result<(), NotifyError> {
        let n = delivery.notification;
        if delivery.push_subscriptions.is_empty() {
            return Ok(());
        }
        let mut transient = None;
        let mut permanent = None;
        let mut gone = None;
        let mut delivered = 0usize;
        let text = NotificationText::render(n, &delivery.user.name, delivery.event);
        for sub in delivery.push_subscriptions {
            match self.push(sub, n, &text).await {
                Ok(()) => delivered += 1,
                Err(e) => {
                    tracing::warn!(notification_id = %n.id, endpoint = %sub.endpoint, error = %e, "push failed");
                    let slot = match e {
                        NotifyError::Transient(_) => &mut transient,
                        NotifyError::SubscriptionGone { .. } => &mut gone,
                        _ => &mut permanent,
                    };
                    slot.get_or_insert(e);
                }
            }
        }
        tracing::debug!(notification_id = %n.id, delivered, of = delivery.push_subscriptions.len(), "push sent");
        match transient.or(permanent).or(gone) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> Result<Option<PushConfig>, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PushConfig::from_lookup(|k| map.get(k).cloned())
    }

    fn bad_var(r: Result<Option<PushConfig>, ConfigError>) -> &'static str {
        match r {
            Err(ConfigError::InvalidValue { var, .. }) => var,
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn unset_means_off() {
        assert!(lookup(&[]).unwrap().is_none());
        assert!(lookup(&[(ENV_PUSH_TTL_SECS, "60")]).unwrap().is_none());
    }

    #[test]
    fn full_configuration() {
        let keys = VapidKeys::generate();
        let private = keys.private_key_base64url();
        let c = lookup(&[
            (ENV_VAPID_PRIVATE_KEY, &private),
            (ENV_VAPID_SUBJECT, "https://evently.example/contact"),
            (ENV_PUSH_TTL_SECS, "0"),
            (ENV_PUSH_TIMEOUT_SECS, "3"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.keys, keys);
        assert_eq!(c.ttl, Duration::ZERO);
        assert_eq!(c.timeout, Duration::from_secs(3));
        let printed = format!("{c:?}");
        assert!(!printed.contains(&private), "{printed}");
        assert!(printed.contains(&keys.public_key_base64url()));
        // Padded base64url is accepted too.
        let padded = format!("{private}=");
        let c = lookup(&[
            (ENV_VAPID_PRIVATE_KEY, &padded),
            (ENV_VAPID_SUBJECT, "mailto:ops@example.com"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.keys, keys);
        assert_eq!((c.ttl, c.timeout), (DEFAULT_PUSH_TTL, DEFAULT_PUSH_TIMEOUT));
    }

    #[test]
    fn bad_values_are_typed_errors_without_the_key() {
        let key = VapidKeys::generate().private_key_base64url();
        let subject = "mailto:ops@example.com";
        assert_eq!(
            bad_var(lookup(&[(ENV_VAPID_PRIVATE_KEY, &key)])),
            ENV_VAPID_SUBJECT
        );
        assert_eq!(
            bad_var(lookup(&[(ENV_VAPID_SUBJECT, subject)])),
            ENV_VAPID_PRIVATE_KEY
        );
        let short = encode_base64url(&[7u8; 31]);
        let zero = encode_base64url(&[0u8; 32]);
        let above_order = encode_base64url(&[0xffu8; 32]);
        for bad_key in [
            "not base64!",
            short.as_str(),
            zero.as_str(),
            above_order.as_str(),
        ] {
            let err = lookup(&[
                (ENV_VAPID_PRIVATE_KEY, bad_key),
                (ENV_VAPID_SUBJECT, subject),
            ])
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidValue {
                        var: ENV_VAPID_PRIVATE_KEY,
                        ..
                    }
                ),
                "{bad_key}: {err}"
            );
            if bad_key.len() > 8 {
                assert!(!err.to_string().contains(bad_key), "{err}");
            }
        }
        for bad_subject in [
            "ops@example.com",
            "mailto:",
            "mailto:nobody",
            "http://example.com",
            "https://",
        ] {
            assert_eq!(
                bad_var(lookup(&[
                    (ENV_VAPID_PRIVATE_KEY, &key),
                    (ENV_VAPID_SUBJECT, bad_subject)
                ])),
                ENV_VAPID_SUBJECT,
                "{bad_subject}"
            );
        }
        for (var, value) in [
            (ENV_PUSH_TTL_SECS, "-1"),
            (ENV_PUSH_TTL_SECS, "2419201"),
            (ENV_PUSH_TTL_SECS, "1d"),
            (ENV_PUSH_TIMEOUT_SECS, "0"),
            (ENV_PUSH_TIMEOUT_SECS, "301"),
        ] {
            assert_eq!(
                bad_var(lookup(&[
                    (ENV_VAPID_PRIVATE_KEY, &key),
                    (ENV_VAPID_SUBJECT, subject),
                    (var, value)
                ])),
                var,
                "{var}={value}"
            );
        }
    }

    #[test]
    fn vapid_key_errors() {
        assert_eq!(
            VapidKeys::from_base64url("@@@"),
            Err(VapidKeyError::NotBase64)
        );
        assert_eq!(
            VapidKeys::from_base64url(&encode_base64url(&[1u8; 33])),
            Err(VapidKeyError::WrongLength { len: 33 })
        );
        assert_eq!(
            VapidKeys::from_base64url(&encode_base64url(&[0u8; 32])),
            Err(VapidKeyError::NotOnCurve)
        );
        let k = VapidKeys::generate();
        assert_ne!(k, VapidKeys::generate());
        assert_eq!(k.public_key_bytes()[0], 4);
        assert!(!format!("{k:?}").contains(&k.private_key_base64url()));
    }

    #[test]
    fn status_classes() {
        for (code, outcome) in [
            (404, Outcome::Gone),
            (410, Outcome::Gone),
            (408, Outcome::Transient),
            (429, Outcome::Transient),
            (500, Outcome::Transient),
            (503, Outcome::Transient),
            (400, Outcome::Permanent),
            (401, Outcome::Permanent),
            (403, Outcome::Permanent),
            (413, Outcome::Permanent),
            (301, Outcome::Permanent),
        ] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                outcome,
                "{code}"
            );
        }
    }
}
