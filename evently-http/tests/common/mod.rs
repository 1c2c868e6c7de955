//! Fixtures shared by the HTTP and notification tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use evently_core::{Actor, Currency, Evently, Money, NewEvent, NewUser, Role, User};

/// Registers a user (the password hash is never read by the engine).
pub async fn user(engine: &Evently, email: &str, name: &str, role: Role) -> (User, Actor) {
    let u = engine
        .register_user(NewUser {
            email: email.into(),
            name: name.into(),
            password_hash: "unused".into(),
            role,
            attributes: BTreeMap::new(),
        })
        .await
        .expect("register");
    let actor = Actor::new(u.id, u.role);
    (u, actor)
}

/// A 100-seat conference a month ahead at 49.00 EUR, created by `admin`.
pub async fn event(engine: &Evently, admin: &Actor) -> evently_core::Event {
    let now = engine.now();
    engine
        .create_event(
            admin,
            NewEvent {
                name: "RustConf".into(),
                description: "Talks".into(),
                venue: "Hall A".into(),
                category: "conference".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(31),
                capacity: 100,
                price: Money::new(4900, Currency::new("EUR").expect("currency")),
            },
        )
        .await
        .expect("event")
}

/// Sends one request to `router` (a bearer `token`, extra `headers`, a JSON `body` if given) and
/// returns the status and the JSON body (`Null` when empty).
pub async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use axum::body::Body;
    use axum::http::{Request, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = router.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {bytes:?}"))
    };
    (status, body)
}
