//! Web push end to end: a push service on a loopback port (axum, started by the test) receives what the
//! engine's job runner delivers through [`PushNotifier`]. The test plays the browser: it holds the
//! subscription's private key and auth secret, decrypts the `aes128gcm` body itself (RFC 8291 / RFC 8188
//! with RustCrypto's p256, hkdf and aes-gcm, not the `ece` code the sender uses) and verifies the VAPID
//! JWT (RFC 8292) against the advertised public key. The HTTP routes are driven with tower's `oneshot`.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeZone, Utc};
use common::{event, user};
use evently_core::{Actor, BookingRequest, Evently, JobStatus, ManualClock, Role, Store};
use evently_http::notify::{PushConfig, PushNotifier, VapidKeys};
use evently_http::{AppState, AuthSettings, PasswordParams, app};
use evently_storage::{SqliteConfig, SqliteStore};
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::RngCore;
use serde_json::{Value, json};
use sha2::Sha256;

const SUBJECT: &str = "mailto:push-ops@example.com";

/// What the push service received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Default)]
struct PushServiceState {
    received: Mutex<Vec<Received>>,
    /// Status codes to answer with, in order; 201 once they are used up.
    script: Mutex<VecDeque<u16>>,
}

/// A push service on 127.0.0.1: records each request, answers as scripted.
struct PushService {
    state: Arc<PushServiceState>,
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl PushService {
    async fn start(script: &[u16]) -> Self {
        let state = Arc::new(PushServiceState {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(script.iter().copied().collect()),
        });
        async fn receive(
            State(s): State<Arc<PushServiceState>>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            s.received.lock().unwrap().push(Received {
                path: uri.path().to_owned(),
                headers,
                body: body.to_vec(),
            });
            let code = s.script.lock().unwrap().pop_front().unwrap_or(201);
            StatusCode::from_u16(code).unwrap()
        }
        let router = Router::new()
            .route("/push/{id}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the push service");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("push service");
        });
        Self { state, base, task }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The browser's side of a subscription: its key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        let mut auth = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut auth);
        Self {
            secret: p256::SecretKey::random(&mut rand_core::OsRng),
            auth,
        }
    }

    fn public_bytes(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn p256dh(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_bytes())
    }

    fn auth(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.auth)
    }

    /// RFC 8291 section 3.4 and RFC 8188 section 2: the plaintext of an `aes128gcm` push body.
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        assert!(body.len() > 21, "body too short: {} bytes", body.len());
        let salt = &body[..16];
        let rs = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
        let idlen = body[20] as usize;
        assert_eq!(idlen, 65, "keyid is the sender's uncompressed public key");
        let as_public_bytes = &body[21..21 + idlen];
        let ciphertext = &body[21 + idlen..];
        assert!(
            ciphertext.len() <= rs,
            "one record expected (rs {rs}, {} bytes)",
            ciphertext.len()
        );

        let as_public = p256::PublicKey::from_sec1_bytes(as_public_bytes).expect("sender key");
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), as_public.as_affine());
        // IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" || 0 || ua_public || as_public, 32)
        let mut key_info = b"WebPush: info\0".to_vec();
        key_info.extend_from_slice(&self.public_bytes());
        key_info.extend_from_slice(as_public_bytes);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes())
            .expand(&key_info, &mut ikm)
            .expect("ikm");
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let mut cek = [0u8; 16];
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .expect("cek");
        let mut nonce = [0u8; 12];
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .expect("nonce");
        let padded = Aes128Gcm::new_from_slice(&cek)
            .expect("key")
            .decrypt(Nonce::from_slice(&nonce), ciphertext)
            .expect("the body decrypts with the subscription's keys");
        // The last record: data || 0x02 || zero padding.
        let end = padded.iter().rposition(|&b| b != 0).expect("a delimiter");
        assert_eq!(padded[end], 2, "last-record delimiter");
        padded[..end].to_vec()
    }
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("{s:?} is not base64url: {e}"))
}

/// Checks `Authorization: vapid t=<jwt>, k=<key>` (RFC 8292) and returns the JWT's claims.
fn verify_vapid(headers: &HeaderMap, keys: &VapidKeys, audience: &str, now: i64) -> Value {
    let value = headers
        .get(header::AUTHORIZATION)
        .expect("an Authorization header")
        .to_str()
        .expect("ASCII");
    let rest = value.strip_prefix("vapid ").expect("the vapid scheme");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let (name, v) = part.trim().split_once('=').expect("name=value");
        match name {
            "t" => t = Some(v.to_owned()),
            "k" => k = Some(v.to_owned()),
            other => panic!("unexpected parameter {other}"),
        }
    }
    let (t, k) = (t.expect("t="), k.expect("k="));
    assert_eq!(k, keys.public_key_base64url(), "k is the advertised key");

    let segments: Vec<&str> = t.split('.').collect();
    assert_eq!(segments.len(), 3, "a compact JWS");
    let jwt_header: Value = serde_json::from_slice(&b64(segments[0])).expect("JWT header");
    assert_eq!(jwt_header["alg"], "ES256");
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&b64(&k)).expect("public key");
    let signature = p256::ecdsa::Signature::from_slice(&b64(segments[2])).expect("r || s");
    verifying
        .verify(
            format!("{}.{}", segments[0], segments[1]).as_bytes(),
            &signature,
        )
        .expect("the JWT signature verifies with the VAPID public key");

    let claims: Value = serde_json::from_slice(&b64(segments[1])).expect("JWT claims");
    assert_eq!(claims["aud"], audience, "{claims}");
    assert_eq!(claims["sub"], SUBJECT, "{claims}");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(
        exp > now && exp <= now + 24 * 3600,
        "exp {exp} within a day of {now}"
    );
    claims
}

struct Setup {
    engine: Evently,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    keys: VapidKeys,
    _dir: tempfile::TempDir,
}

/// The engine on an SQLite file in a temp dir, with a manual clock and only the push notifier.
async fn setup(ttl: Duration) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("evently.db").display());
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(SqliteConfig::new(url))
            .await
            .expect("sqlite"),
    );
    let keys = VapidKeys::generate();
    let mut config = PushConfig::new(keys.clone(), SUBJECT);
    config.ttl = ttl;
    config.timeout = Duration::from_secs(5);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let engine = Evently::builder()
        .store(store.clone())
        .clock(clock.clone())
        .notifier(Arc::new(PushNotifier::new(&config).expect("notifier")))
        .build()
        .expect("engine");
    Setup {
        engine,
        store,
        clock,
        keys,
        _dir: dir,
    }
}

impl Setup {
    /// Subscribes `who` at `endpoint` with `browser`'s keys.
    async fn subscribe(&self, who: &Actor, endpoint: String, browser: &Browser) {
        self.engine
            .subscribe_push(who, endpoint, browser.p256dh(), browser.auth())
            .await
            .expect("subscribe");
    }

    /// Books one seat of `ev` for `who` (a confirmation to deliver).
    async fn book_one(&self, who: &Actor, ev: &evently_core::Event) {
        self.engine
            .book(who, BookingRequest::new(ev.id, 1))
            .await
            .expect("book");
    }
}

/// A user and an admin with an event, their welcomes delivered (before any subscription exists).
async fn people(s: &Setup) -> (Actor, evently_core::Event) {
    let (_, admin) = user(&s.engine, "admin@example.com", "Ada", Role::Admin).await;
    let (_, ada) = user(&s.engine, "ada@example.com", "Ada", Role::User).await;
    let ev = event(&s.engine, &admin).await;
    let summary = s.engine.run_jobs(10).await.expect("welcomes");
    assert_eq!(summary.succeeded, 2, "{summary:?}");
    (ada, ev)
}

async fn subscriptions(store: &Arc<dyn Store>, actor: &Actor) -> Vec<String> {
    let mut tx = store.begin_read().await.expect("read");
    tx.push_subscriptions_for_user(actor.user_id)
        .await
        .expect("subscriptions")
        .into_iter()
        .map(|s| s.endpoint)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_arrives_encrypted_and_signed_on_every_subscription() {
    let service = PushService::start(&[]).await;
    let s = setup(Duration::from_secs(3600)).await;
    let (ada, ev) = people(&s).await;
    let phone = Browser::new();
    let laptop = Browser::new();
    for (browser, path) in [(&phone, "phone"), (&laptop, "laptop")] {
        s.subscribe(&ada, format!("{}/push/{path}", service.base), browser)
            .await;
    }
    let booking = s
        .engine
        .book(&ada, BookingRequest::new(ev.id, 2))
        .await
        .expect("book");

    let summary = s.engine.run_jobs(10).await.expect("run jobs");
    assert_eq!((summary.claimed, summary.succeeded), (1, 1), "{summary:?}");
    let received = service.received();
    assert_eq!(received.len(), 2, "one push per subscription");
    let notification = s
        .engine
        .notifications(&ada, evently_core::NotificationQuery::newest(10))
        .await
        .expect("notifications")
        .into_iter()
        .find(|n| n.kind == evently_core::NotificationKind::BookingConfirmed)
        .expect("a confirmation");
    assert!(notification.sent_at.is_some(), "marked sent");

    let now = Utc::now().timestamp();
    for (browser, path) in [(&phone, "/push/phone"), (&laptop, "/push/laptop")] {
        let push = received
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("nothing arrived at {path}"));
        let h = |name: &str| {
            push.headers
                .get(name)
                .unwrap_or_else(|| panic!("no {name} header"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(h("content-encoding"), "aes128gcm");
        assert_eq!(h("ttl"), "3600");
        assert_eq!(h("urgency"), "normal");
        assert_eq!(h("topic"), notification.id.0.simple().to_string());
        verify_vapid(&push.headers, &s.keys, &service.base, now);

        let plain = browser.decrypt(&push.body);
        let payload: Value = serde_json::from_slice(&plain).expect("JSON payload");
        assert_eq!(payload["id"], notification.id.to_string());
        assert_eq!(payload["kind"], "booking_confirmed");
        // The words are rendered here, at the edge, from the notification's data and its event.
        assert_eq!(payload["title"], format!("Booking confirmed: {}", ev.name));
        let message = payload["message"].as_str().expect("a message");
        assert!(
            message.starts_with(&format!("{} seat(s) for {}", booking.quantity, ev.name)),
            "{message}"
        );
        assert_eq!(payload["booking_id"], booking.id.to_string());
        assert_eq!(payload["event_id"], ev.id.to_string());
        let created = chrono::DateTime::parse_from_rfc3339(payload["created_at"].as_str().unwrap())
            .expect("RFC 3339");
        assert_eq!(created.timestamp(), notification.created_at.timestamp());
        // Compact: no whitespace between tokens.
        assert!(!plain.starts_with(b"{ ") && !plain.windows(2).any(|w| w == b"\": "));
    }
    // A push for the wrong subscription does not decrypt with the other's keys.
    let phone_push = received.iter().find(|r| r.path == "/push/phone").unwrap();
    let wrong = std::panic::catch_unwind(|| laptop.decrypt(&phone_push.body));
    assert!(
        wrong.is_err(),
        "the laptop's keys must not open the phone's push"
    );

    // Delivered: running again sends nothing more.
    assert_eq!(s.engine.run_jobs(10).await.expect("again").claimed, 0);
    assert_eq!(service.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_subscription_is_deleted_and_the_job_completes() {
    let service = PushService::start(&[410]).await;
    let s = setup(Duration::from_secs(60)).await;
    let (ada, ev) = people(&s).await;
    let browser = Browser::new();
    let endpoint = format!("{}/push/gone", service.base);
    s.subscribe(&ada, endpoint.clone(), &browser).await;
    assert_eq!(subscriptions(&s.store, &ada).await, vec![endpoint.clone()]);
    s.book_one(&ada, &ev).await;

    let summary = s.engine.run_jobs(10).await.expect("run jobs");
    assert_eq!(
        (
            summary.claimed,
            summary.succeeded,
            summary.retried,
            summary.dead
        ),
        (1, 1, 0, 0),
        "{summary:?}"
    );
    assert_eq!(service.received().len(), 1);
    assert!(
        subscriptions(&s.store, &ada).await.is_empty(),
        "the gone subscription is deleted"
    );
    // Nothing is left to retry.
    s.clock.advance(chrono::Duration::hours(2));
    assert_eq!(s.engine.run_jobs(10).await.expect("again").claimed, 0);
    assert_eq!(service.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_push_service_is_retried_then_delivered() {
    let service = PushService::start(&[503]).await;
    let s = setup(Duration::from_secs(60)).await;
    let (ada, ev) = people(&s).await;
    let browser = Browser::new();
    s.subscribe(&ada, format!("{}/push/busy", service.base), &browser)
        .await;
    s.book_one(&ada, &ev).await;

    let first = s.engine.run_jobs(10).await.expect("first run");
    assert_eq!((first.claimed, first.retried), (1, 1), "{first:?}");
    assert_eq!(service.received().len(), 1);
    assert_eq!(subscriptions(&s.store, &ada).await.len(), 1, "kept");

    // The job is queued again with the push service's answer as its last error. Peek at it by
    // claiming it with a one-second lease, then let the lease lapse.
    s.clock.advance(chrono::Duration::hours(2));
    let queue = s.store.job_queue();
    let peeked = queue
        .claim(10, s.engine.now(), Duration::from_secs(1))
        .await
        .expect("claim");
    assert_eq!(peeked.len(), 1);
    let job_id = peeked[0].id;
    let last_error = peeked[0].last_error.clone().unwrap_or_default();
    assert!(
        last_error.contains("503") && last_error.contains("push"),
        "{last_error}"
    );
    s.clock.advance(chrono::Duration::seconds(5));

    let second = s.engine.run_jobs(10).await.expect("second run");
    assert_eq!((second.claimed, second.succeeded), (1, 1), "{second:?}");
    let received = service.received();
    assert_eq!(received.len(), 2);
    let payload: Value = serde_json::from_slice(&browser.decrypt(&received[1].body)).expect("JSON");
    assert_eq!(payload["kind"], "booking_confirmed");
    let job = queue.job(job_id).await.expect("job").expect("exists");
    assert_eq!(job.status, JobStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_fail_for_good_and_no_subscription_is_fine() {
    let service = PushService::start(&[400]).await;
    let s = setup(Duration::from_secs(60)).await;
    let (ada, ev) = people(&s).await;
    // No subscription: the confirmation is delivered (nothing to push).
    s.book_one(&ada, &ev).await;
    let summary = s.engine.run_jobs(10).await.expect("run");
    assert_eq!((summary.claimed, summary.succeeded), (1, 1), "{summary:?}");
    assert!(service.received().is_empty());

    let browser = Browser::new();
    s.subscribe(&ada, format!("{}/push/bad", service.base), &browser)
        .await;
    s.book_one(&ada, &ev).await;
    let summary = s.engine.run_jobs(10).await.expect("run");
    assert_eq!((summary.claimed, summary.dead), (1, 1), "{summary:?}");
    assert_eq!(
        subscriptions(&s.store, &ada).await.len(),
        1,
        "a 400 keeps it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_push_service_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let s = setup(Duration::from_secs(60)).await;
    let (ada, ev) = people(&s).await;
    let browser = Browser::new();
    s.subscribe(&ada, format!("http://127.0.0.1:{port}/push/x"), &browser)
        .await;
    s.book_one(&ada, &ev).await;
    let summary = s.engine.run_jobs(10).await.expect("run");
    assert_eq!((summary.claimed, summary.retried), (1, 1), "{summary:?}");
}

// ---- HTTP routes ----

struct Api {
    router: Router,
    token: String,
    engine: Evently,
    actor: Actor,
}

async fn api(push: Option<&VapidKeys>) -> Api {
    let store = SqliteStore::open_in_memory().await.expect("sqlite store");
    let engine = Evently::builder()
        .store(Arc::new(store))
        .clock(Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap(),
        )))
        .build()
        .expect("engine");
    let auth = AuthSettings::new(AuthSettings::random_secret(), Duration::from_secs(600))
        .and_then(|a| a.password_params(PasswordParams::insecure_fast()))
        .expect("auth settings");
    let mut state = AppState::new(engine.clone(), auth);
    if let Some(keys) = push {
        state = state.with_push(keys);
    }
    let user = state
        .register(
            "ada@example.com".into(),
            "Ada".into(),
            "correct horse".into(),
            Role::User,
        )
        .await
        .expect("register");
    let actor = Actor::new(user.id, user.role);
    let token = state.issue_token(&actor).expect("token");
    Api {
        router: app(state),
        token,
        engine,
        actor,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: bool,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = auth.then_some(self.token.as_str());
        common::call(&self.router, method, uri, token, &[], body).await
    }

    async fn endpoints(&self) -> Vec<String> {
        let mut tx = self.engine.store().begin_read().await.expect("read");
        tx.push_subscriptions_for_user(self.actor.user_id)
            .await
            .expect("subscriptions")
            .into_iter()
            .map(|s| s.endpoint)
            .collect()
    }
}

#[tokio::test]
async fn the_public_key_route_serves_the_configured_key_or_404() {
    let keys = VapidKeys::generate();
    let with = api(Some(&keys)).await;
    let (status, body) = with
        .call("GET", "/push/vapid-public-key", false, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["public_key"], keys.public_key_base64url());
    assert_eq!(b64(body["public_key"].as_str().unwrap()).len(), 65);

    let without = api(None).await;
    let (status, body) = without
        .call("GET", "/push/vapid-public-key", false, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "push_not_configured", "{body}");
}

#[tokio::test]
async fn subscribing_and_unsubscribing_through_the_api() {
    let a = api(None).await;
    let browser = Browser::new();
    let endpoint = "https://push.example.net/wpush/v2/abc";
    // As PushSubscription.toJSON() gives it.
    let sub = json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": {"p256dh": browser.p256dh(), "auth": browser.auth()}
    });
    let (status, _) = a
        .call("POST", "/me/push-subscriptions", false, Some(sub.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = a
        .call("POST", "/me/push-subscriptions", true, Some(sub.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["endpoint"], endpoint);
    assert!(body.get("keys").is_none(), "keys are not echoed");
    // Subscribing again refreshes rather than duplicates.
    let (status, _) = a
        .call("POST", "/me/push-subscriptions", true, Some(sub))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(a.endpoints().await, vec![endpoint.to_string()]);

    let (status, body) = a
        .call(
            "DELETE",
            "/me/push-subscriptions",
            true,
            Some(json!({"endpoint": "https://push.example.net/other"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = a
        .call(
            "DELETE",
            "/me/push-subscriptions",
            true,
            Some(json!({"endpoint": endpoint})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(a.endpoints().await.is_empty());
}

#[tokio::test]
async fn unusable_subscriptions_are_422_naming_the_field() {
    let a = api(None).await;
    let browser = Browser::new();
    let p256dh = browser.p256dh();
    let auth = browser.auth();
    let compressed = URL_SAFE_NO_PAD.encode(
        browser
            .secret
            .public_key()
            .to_encoded_point(true)
            .as_bytes(),
    );
    // 65 bytes starting with 4, but not a point on the curve.
    let mut off_curve = vec![4u8];
    off_curve.extend_from_slice(&[1u8; 64]);
    let off_curve = URL_SAFE_NO_PAD.encode(off_curve);
    let short_auth = URL_SAFE_NO_PAD.encode([9u8; 15]);
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("http://push.example.net/x", &p256dh, &auth, "endpoint"),
        ("push.example.net/x", &p256dh, &auth, "endpoint"),
        (
            "https://user:pw@push.example.net/x",
            &p256dh,
            &auth,
            "endpoint",
        ),
        (
            "https://push.example.net/x",
            "not*base64",
            &auth,
            "keys.p256dh",
        ),
        (
            "https://push.example.net/x",
            &compressed,
            &auth,
            "keys.p256dh",
        ),
        (
            "https://push.example.net/x",
            &off_curve,
            &auth,
            "keys.p256dh",
        ),
        (
            "https://push.example.net/x",
            &p256dh,
            &short_auth,
            "keys.auth",
        ),
        ("https://push.example.net/x", &p256dh, "", "keys.auth"),
    ];
    for (endpoint, p, au, field) in cases {
        let body = json!({"endpoint": endpoint, "keys": {"p256dh": p, "auth": au}});
        let (status, reply) = a
            .call("POST", "/me/push-subscriptions", true, Some(body))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{endpoint} {p} {au}: {reply}"
        );
        assert_eq!(reply["error"]["code"], "validation_failed");
        assert_eq!(reply["error"]["field"], field, "{reply}");
    }
    // A body of the wrong shape: the JSON extractor's 422.
    let (status, reply) = a
        .call(
            "POST",
            "/me/push-subscriptions",
            true,
            Some(json!({"endpoint": "https://push.example.net/x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_body");
    // Plain http is fine on loopback (development).
    let body =
        json!({"endpoint": "http://127.0.0.1:9999/push", "keys": {"p256dh": p256dh, "auth": auth}});
    let (status, reply) = a
        .call("POST", "/me/push-subscriptions", true, Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(
        a.endpoints().await,
        vec!["http://127.0.0.1:9999/push".to_string()]
    );
}
