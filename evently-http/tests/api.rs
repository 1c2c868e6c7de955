//! The HTTP slice end to end, on the embedded SQLite store (in memory): health, auth, events,
//! bookings, cancel, idempotent retries and the error bodies clients match on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use evently_core::Evently;
use evently_http::{AppState, AuthSettings, PasswordParams, app};
use evently_storage::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";

struct Api {
    router: Router,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Api {
    async fn new() -> Self {
        let store = SqliteStore::open_in_memory().await.expect("sqlite store");
        let engine = Evently::builder()
            .store(Arc::new(store))
            .build()
            .expect("engine");
        let auth = AuthSettings::new(AuthSettings::random_secret(), Duration::from_secs(600))
            .and_then(|a| a.password_params(PasswordParams::insecure_fast()))
            .expect("auth settings");
        let state = AppState::new(engine, auth);
        state
            .ensure_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .expect("admin");
        Self { router: app(state) }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let (status, body) = common::call(&self.router, method, uri, token, headers, body).await;
        Reply { status, body }
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .call(
                "POST",
                "/auth/login",
                None,
                &[],
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_string()
    }

    async fn user(&self, email: &str) -> String {
        let r = self
            .call(
                "POST",
                "/auth/register",
                None,
                &[],
                Some(json!({"email": email, "name": "Buyer", "password": "a-good-password"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["role"], "user");
        self.login(email, "a-good-password").await
    }

    async fn event(&self, admin: &str, capacity: u32) -> String {
        let r = self
            .call(
                "POST",
                "/events",
                Some(admin),
                &[],
                Some(json!({
                    "name": "Gig", "venue": "Club", "category": "music",
                    "starts_at": "2099-06-01T20:00:00Z", "ends_at": "2099-06-01T23:00:00Z",
                    "capacity": capacity, "price": {"minor": 1500, "currency": "EUR"}
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("event id").to_string()
    }

    async fn book(&self, token: &str, event: &str, quantity: u32, key: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        self.call(
            "POST",
            &format!("/events/{event}/bookings"),
            Some(token),
            &headers,
            Some(json!({ "quantity": quantity })),
        )
        .await
    }
}

fn code(r: &Reply) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let api = Api::new().await;
    let r = api.call("GET", "/healthz", None, &[], None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let r = api.call("GET", "/readyz", None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn book_sell_out_cancel_and_see_availability() {
    let api = Api::new().await;
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ev = api.event(&admin, 2).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;

    let listed = api
        .call("GET", "/events?category=music", None, &[], None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"][0]["id"], ev.as_str());
    assert_eq!(listed.body["items"][0]["seats_available"], 2);

    let a = api.book(&alice, &ev, 2, None).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["status"], "confirmed");
    assert_eq!(
        a.body["total_price"],
        json!({"minor": 3000, "currency": "EUR"})
    );
    let booking = a.body["id"].as_str().unwrap().to_string();

    let b = api.book(&bob, &ev, 1, None).await;
    assert_eq!(b.status, StatusCode::CONFLICT, "{}", b.body);
    assert_eq!(code(&b), "sold_out");
    assert_eq!(b.body["error"]["available"], 0);

    // Bob cannot see or cancel Alice's booking: it does not exist for him.
    let r = api
        .call(
            "GET",
            &format!("/bookings/{booking}"),
            Some(&bob),
            &[],
            None,
        )
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let r = api
        .call(
            "POST",
            &format!("/bookings/{booking}/cancel"),
            Some(&bob),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    for _ in 0..2 {
        let r = api
            .call(
                "POST",
                &format!("/bookings/{booking}/cancel"),
                Some(&alice),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "cancelled");
    }
    let detail = api
        .call("GET", &format!("/events/{ev}"), None, &[], None)
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(
        detail.body["availability"]["available"], 2,
        "{}",
        detail.body
    );
    assert_eq!(detail.body["availability"]["confirmed"], 0);

    let b = api.book(&bob, &ev, 1, None).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
}

#[tokio::test]
async fn a_hold_confirms_through_its_own_endpoint() {
    let api = Api::new().await;
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ev = api.event(&admin, 5).await;
    let alice = api.user("alice@example.com").await;
    let r = api
        .call(
            "POST",
            &format!("/events/{ev}/bookings"),
            Some(&alice),
            &[],
            Some(json!({"quantity": 2, "mode": "hold", "hold_seconds": 120})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "held");
    assert!(r.body["held_until"].is_string());
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = api
        .call(
            "POST",
            &format!("/bookings/{id}/confirm"),
            Some(&alice),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "confirmed");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_booking() {
    let api = Api::new().await;
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ev = api.event(&admin, 10).await;
    let alice = api.user("alice@example.com").await;

    let first = api.book(&alice, &ev, 3, Some("order-42")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = api.book(&alice, &ev, 3, Some("order-42")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(
        again.body, first.body,
        "a replay answers with the same booking, field for field"
    );
    // The same key for another quantity is not the same request.
    let other = api.book(&alice, &ev, 1, Some("order-42")).await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.body);

    let detail = api
        .call("GET", &format!("/events/{ev}"), None, &[], None)
        .await;
    assert_eq!(
        detail.body["availability"]["confirmed"], 3,
        "{}",
        detail.body
    );
}

#[tokio::test]
async fn bad_requests_get_typed_json_errors() {
    let api = Api::new().await;
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ev = api.event(&admin, 10).await;
    let alice = api.user("alice@example.com").await;

    // No token, a bad token.
    let r = api
        .call(
            "POST",
            &format!("/events/{ev}/bookings"),
            None,
            &[],
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let r = api.book("not-a-token", &ev, 1, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A user may not create events.
    let r = api
        .call(
            "POST",
            "/events",
            Some(&alice),
            &[],
            Some(json!({
                "name": "Mine", "venue": "Home", "category": "x",
                "starts_at": "2099-06-01T20:00:00Z", "ends_at": "2099-06-01T23:00:00Z",
                "capacity": 5, "price": {"minor": 100, "currency": "EUR"}
            })),
        )
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));

    // Body problems.
    let r = api.book(&alice, &ev, 0, None).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    assert_eq!(r.body["error"]["field"], "quantity");
    let req = Request::post(format!("/events/{ev}/bookings"))
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"quantity\": "))
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let r = api
        .call(
            "POST",
            &format!("/events/{ev}/bookings"),
            Some(&alice),
            &[],
            Some(json!({"quantity": -3})),
        )
        .await;
    assert!(r.status.is_client_error(), "{}: {}", r.status, r.body);

    // Path and route problems.
    let r = api.book(&alice, "not-a-uuid", 1, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = api
        .book(&alice, &uuid::Uuid::now_v7().to_string(), 1, None)
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let r = api.call("GET", "/no/such/route", None, &[], None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));

    // Nothing above changed the event.
    let detail = api
        .call("GET", &format!("/events/{ev}"), None, &[], None)
        .await;
    assert_eq!(
        detail.body["availability"]["available"], 10,
        "{}",
        detail.body
    );

    // A wrong password and an unknown e-mail look the same.
    for email in [ADMIN_EMAIL, "nobody@example.com"] {
        let r = api
            .call(
                "POST",
                "/auth/login",
                None,
                &[],
                Some(json!({"email": email, "password": "wrong-password"})),
            )
            .await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
}
