//! The HTTP API end to end, over real HTTP (a server on a loopback port, a client), on the embedded
//! SQLite store and on PostgreSQL: every route, every role boundary, and the error bodies clients
//! match on. Each scenario runs once per store (see `on_every_store!` at the end).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use evently_core::{EngineConfig, Evently, Store};
use evently_http::{AppState, AuthSettings, PasswordParams, app};
use evently_storage::postgres::testing::TestDatabase;
use evently_storage::{PostgresStore, SqliteStore};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";
/// How long a waitlist offer stands in these tests.
const OFFER_TTL: Duration = Duration::from_secs(2);

/// A server on a loopback port, and how to reach it.
struct Api {
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
    /// Kept so the PostgreSQL database lives as long as the server.
    _db: Option<TestDatabase>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Reply {
    status: StatusCode,
    body: Value,
    headers: HeaderMap,
}

impl Api {
    async fn sqlite() -> Self {
        let store = SqliteStore::open_in_memory().await.expect("sqlite store");
        Self::serve(Arc::new(store), None).await
    }

    async fn postgres() -> Self {
        let db = TestDatabase::create().await.expect("test database");
        let store: PostgresStore = db.open(db.config()).await.expect("postgres store");
        Self::serve(Arc::new(store), Some(db)).await
    }

    async fn serve(store: Arc<dyn Store>, db: Option<TestDatabase>) -> Self {
        let engine = Evently::builder()
            .store(store)
            .config(EngineConfig {
                offer_ttl: OFFER_TTL,
                ..EngineConfig::default()
            })
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app(state)).await.expect("server");
        });
        Self {
            addr,
            server,
            _db: db,
        }
    }

    /// Sends one HTTP/1.1 request on a connection of its own; the status, headers and body.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, bytes)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("authorization", b));
        }
        if body.is_some() {
            all.push(("content-type", "application/json"));
        }
        let (status, headers, bytes) = self
            .raw(method, path, &all, body.map(|b| b.to_string()))
            .await;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {bytes:?}"))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    /// The text of a non-JSON answer that must be 200.
    async fn text(&self, path: &str) -> String {
        let (status, _, bytes) = self.raw("GET", path, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call("GET", path, token, &[], None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.call("POST", path, token, &[], body).await
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .post(
                "/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["access_token"].as_str().expect("token").to_string()
    }

    async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    async fn user(&self, email: &str) -> String {
        let r = self
            .post(
                "/auth/register",
                None,
                Some(json!({"email": email, "name": "Buyer", "password": "a-good-password"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["role"], "user");
        self.login(email, "a-good-password").await
    }

    async fn event(&self, admin: &str, capacity: u32) -> String {
        let r = self
            .post(
                "/events",
                Some(admin),
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

    /// Each query string in `bad` on `path` (with `token`) is answered 400 or 422.
    async fn refuses_queries(&self, path: &str, token: &str, bad: &[&str]) {
        for q in bad {
            let r = self.get(&format!("{path}?{q}"), Some(token)).await;
            assert!(
                matches!(
                    r.status,
                    StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                ),
                "{path}?{q}: {} {}",
                r.status,
                r.body
            );
        }
    }

    /// Holds and returns the booking's id.
    async fn held(&self, token: &str, event: &str, quantity: u32) -> String {
        let r = self
            .post(
                &format!("/events/{event}/bookings"),
                Some(token),
                Some(json!({"quantity": quantity, "mode": "hold"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("booking id").to_string()
    }

    /// Books and returns the booking's id.
    async fn booked(&self, token: &str, event: &str, quantity: u32) -> String {
        let r = self.book(token, event, quantity, None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("booking id").to_string()
    }
}

fn code(r: &Reply) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("<none>")
}

fn ids(r: &Reply) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {}", r.body))
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

async fn health_and_readiness_answer(api: Api) {
    let r = api.call("GET", "/healthz", None, &[], None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let r = api.call("GET", "/readyz", None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn book_sell_out_cancel_and_see_availability(api: Api) {
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

async fn a_hold_confirms_through_its_own_endpoint(api: Api) {
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

async fn an_idempotency_key_replays_the_first_booking(api: Api) {
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

async fn bad_requests_get_typed_json_errors(api: Api) {
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
    let auth = format!("Bearer {alice}");
    let (status, _, _) = api
        .raw(
            "POST",
            &format!("/events/{ev}/bookings"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some("{\"quantity\": ".into()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
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

/// Every operation of the document, as "METHOD /path".
fn operations(doc: &Value) -> Vec<String> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops.sort();
    ops
}

async fn the_openapi_document_describes_every_route_and_the_docs_need_no_network(api: Api) {
    let r = api.get("/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut expected = vec![
        "GET /healthz",
        "GET /readyz",
        "POST /auth/register",
        "POST /auth/login",
        "GET /events",
        "POST /events",
        "GET /events/{id}",
        "PATCH /events/{id}",
        "POST /events/{id}/deactivate",
        "POST /events/{id}/bookings",
        "GET /events/{id}/bookings",
        "POST /events/{id}/waitlist",
        "GET /events/{id}/waitlist",
        "GET /events/{id}/waitlist/me",
        "DELETE /events/{id}/waitlist/me",
        "POST /events/{id}/waitlist/me/accept",
        "GET /bookings/{id}",
        "POST /bookings/{id}/confirm",
        "POST /bookings/{id}/cancel",
        "GET /bookings/{id}/tickets",
        "GET /me",
        "GET /me/bookings",
        "GET /me/notifications",
        "POST /me/notifications/{id}/read",
        "GET /push/vapid-public-key",
        "POST /me/push-subscriptions",
        "DELETE /me/push-subscriptions",
    ];
    // QR codes and PDFs come with the renderers of the `server` feature.
    if cfg!(feature = "server") {
        expected.extend([
            "GET /bookings/{id}/tickets/{ticket_id}/qr.svg",
            "GET /bookings/{id}/tickets/{ticket_id}/qr.png",
            "GET /bookings/{id}/tickets.pdf",
        ]);
    }
    expected.sort();
    assert_eq!(operations(&doc), expected);
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            let has = |s: &str| responses.contains_key(s);
            let what = format!("{method} {path}");
            assert!(has("500") && has("503"), "{what}: {responses:?}");
            if op["security"].is_array() {
                assert!(has("401"), "{what} needs a token but documents no 401");
            }
            if op["requestBody"].is_object() {
                assert!(
                    has("400") && has("413") && has("415") && has("422"),
                    "{what}: body errors undocumented"
                );
            }
            if path.contains('{') {
                assert!(
                    has("400"),
                    "{what}: a malformed path parameter is undocumented"
                );
            }
        }
    }
    // Operation ids are unique, and every response link names one of them.
    let mut op_ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|op| op["operationId"].as_str().expect("an operationId"))
        .collect();
    let count = op_ids.len();
    op_ids.sort();
    op_ids.dedup();
    assert_eq!(op_ids.len(), count, "operation ids repeat: {op_ids:?}");
    let mut links = 0;
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            for response in op["responses"].as_object().expect("responses").values() {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: {link}"));
                    assert!(op_ids.contains(&target), "link {name} names {target}");
                    links += 1;
                }
            }
        }
    }
    assert!(links >= 10, "{links} links");
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the error codes are listed");
    for c in [
        "sold_out",
        "not_found",
        "validation_failed",
        "precondition_required",
    ] {
        assert!(codes.iter().any(|x| x == c), "{c} is not in {codes:?}");
    }

    // The docs page and everything it loads come from this server.
    let html = api.text("/docs/").await;
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .collect();
    assert!(!assets.is_empty(), "{html}");
    for asset in assets {
        assert!(
            !asset.contains("://"),
            "the docs page loads {asset} from elsewhere"
        );
        api.text(&format!("/docs/{}", asset.trim_start_matches("./")))
            .await;
    }
    let init = api.text("/docs/swagger-initializer.js").await;
    assert!(init.contains("/openapi.json"), "{init}");
}

async fn every_route_that_needs_a_token_refuses_a_request_without_one(api: Api) {
    let doc = api.get("/openapi.json", None).await.body;
    let some_id = uuid::Uuid::now_v7().to_string();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            // No security, or an optional one (an empty requirement: a token only adds rights).
            let security = op["security"].as_array();
            if security.is_none_or(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            }) {
                continue;
            }
            let uri = path
                .replace("{id}", &some_id)
                .replace("{ticket_id}", &some_id);
            let body = op["requestBody"].is_object().then(|| json!({}));
            for token in [None, Some("not-a-token")] {
                let r = api
                    .call(&method.to_uppercase(), &uri, token, &[], body.clone())
                    .await;
                assert_eq!(
                    (r.status, code(&r)),
                    (StatusCode::UNAUTHORIZED, "unauthorized"),
                    "{method} {path} with {token:?}"
                );
                assert_eq!(
                    r.headers.get("www-authenticate").map(|v| v.as_bytes()),
                    Some(&b"Bearer"[..])
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} operations need a token");
}

async fn users_never_reach_admin_routes(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 5).await;
    let alice = api.user("alice@example.com").await;
    let event_body = json!({
        "name": "Mine", "venue": "Home", "category": "x",
        "starts_at": "2099-06-01T20:00:00Z", "ends_at": "2099-06-01T23:00:00Z",
        "capacity": 5, "price": {"minor": 100, "currency": "EUR"}
    });
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/events".into(), Some(event_body)),
        (
            "PATCH",
            format!("/events/{ev}"),
            Some(json!({"version": 1, "name": "x"})),
        ),
        (
            "POST",
            format!("/events/{ev}/deactivate"),
            Some(json!({"version": 1})),
        ),
        ("GET", format!("/events/{ev}/bookings"), None),
        ("GET", format!("/events/{ev}/waitlist"), None),
    ];
    for (method, uri, body) in calls {
        let r = api.call(method, &uri, Some(&alice), &[], body).await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {uri}: {}",
            r.body
        );
    }
    // Nothing changed.
    let r = api.get(&format!("/events/{ev}"), None).await;
    assert_eq!(
        (r.body["name"].as_str(), r.body["active"].as_bool()),
        (Some("Gig"), Some(true))
    );
    let r = api
        .get(&format!("/events/{ev}/bookings"), Some(&admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn users_reach_only_their_own_records(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 2).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let carol = api.user("carol@example.com").await;
    let mine = api.booked(&alice, &ev, 2).await;

    // Alice's booking and tickets do not exist for Bob; they do for Alice and the admin.
    for (method, uri) in [
        ("GET", format!("/bookings/{mine}")),
        ("GET", format!("/bookings/{mine}/tickets")),
        ("POST", format!("/bookings/{mine}/confirm")),
        ("POST", format!("/bookings/{mine}/cancel")),
    ] {
        let r = api.call(method, &uri, Some(&bob), &[], None).await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {uri}"
        );
    }
    for token in [&alice, &admin] {
        let r = api
            .get(&format!("/bookings/{mine}/tickets"), Some(token))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(r.body["items"][0]["booking_id"], mine.as_str());
    }
    let r = api.get("/me/bookings", Some(&bob)).await;
    assert_eq!((r.status, ids(&r)), (StatusCode::OK, Vec::<String>::new()));
    let r = api.get("/me/bookings", Some(&alice)).await;
    assert_eq!(ids(&r), vec![mine.clone()]);

    // Waitlist entries: each sees their own, nobody can leave another's.
    for (who, pos) in [(&bob, 1), (&carol, 2)] {
        let r = api
            .post(
                &format!("/events/{ev}/waitlist"),
                Some(who),
                Some(json!({"quantity": 1})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(
            (r.body["status"].as_str(), r.body["position"].as_u64()),
            (Some("waiting"), Some(pos))
        );
    }
    let bobs = api
        .get(&format!("/events/{ev}/waitlist/me"), Some(&bob))
        .await;
    assert_eq!(bobs.body["position"], 1, "{}", bobs.body);
    let r = api
        .get(&format!("/events/{ev}/waitlist/me"), Some(&alice))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .call(
            "DELETE",
            &format!("/events/{ev}/waitlist/me"),
            Some(&alice),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .post(
            &format!("/events/{ev}/waitlist/me/accept"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .get(&format!("/events/{ev}/waitlist/me"), Some(&bob))
        .await;
    assert_eq!(r.body, bobs.body, "Bob's entry is untouched");

    // Notifications and profiles: one's own only.
    let r = api.get("/me/notifications", Some(&alice)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kinds: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"booking_confirmed"), "{kinds:?}");
    let confirmed = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|n| n["kind"] == "booking_confirmed")
        .expect("confirmation")
        .clone();
    assert_eq!(confirmed["booking_id"], mine.as_str());
    assert!(
        confirmed["message"]
            .as_str()
            .is_some_and(|m| m.contains("Gig")),
        "{confirmed}"
    );
    let r = api.get("/me/notifications", Some(&bob)).await;
    assert!(
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|n| n["booking_id"] != mine.as_str()),
        "{}",
        r.body
    );
    let r = api.get("/me", Some(&bob)).await;
    assert_eq!(r.body["email"], "bob@example.com");
    let r = api.get("/me/notifications?limit=0", Some(&bob)).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
}

async fn admins_edit_events_against_the_version_they_read(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 4).await;
    let alice = api.user("alice@example.com").await;
    api.booked(&alice, &ev, 3).await;

    let read = api.get(&format!("/events/{ev}"), None).await;
    let etag = read.headers["etag"].to_str().expect("etag").to_string();
    assert_eq!(etag, format!("\"{}\"", read.body["version"]));
    let patch = async |if_match: Option<&str>, body: Value| {
        let headers: Vec<(&str, &str)> = if_match.map(|v| ("If-Match", v)).into_iter().collect();
        api.call(
            "PATCH",
            &format!("/events/{ev}"),
            Some(&admin),
            &headers,
            Some(body),
        )
        .await
    };
    let r = patch(Some(&etag), json!({"name": "Gig (moved)", "venue": "Hall"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["name"].as_str(), r.body["venue"].as_str()),
        (Some("Gig (moved)"), Some("Hall"))
    );
    let new_etag = r.headers["etag"].to_str().expect("etag").to_string();
    assert_ne!(new_etag, etag);
    // The stale version, by header or in the body, is a conflict; none at all is a 428.
    let r = patch(Some(&etag), json!({"name": "lost update"})).await;
    assert_eq!((r.status, code(&r)), (StatusCode::CONFLICT, "conflict"));
    let old = read.body["version"].as_u64().expect("version");
    let r = patch(None, json!({"version": old, "name": "lost update"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = patch(None, json!({"name": "blind"})).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
    );
    for bad in ["3", "\"x\"", "*, \"1\""] {
        let r = patch(Some(bad), json!({"name": "x"})).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "If-Match {bad}: {}",
            r.body
        );
    }
    // Capacity below the seats sold is refused; at the seats sold it is fine.
    let r = patch(Some(&new_etag), json!({"capacity": 2})).await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("capacity"))
    );
    let r = patch(
        Some(&new_etag),
        json!({"capacity": 3, "price": {"minor": 2000, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["seats_available"], 0);
    let etag = r.headers["etag"].to_str().expect("etag").to_string();

    // Deactivated: off the public list, no more bookings; the sold seats stand.
    let r = api
        .call(
            "POST",
            &format!("/events/{ev}/deactivate"),
            Some(&admin),
            &[("If-Match", &etag)],
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{}",
        r.body
    );
    let r = api.get("/events", None).await;
    assert!(!ids(&r).contains(&ev));
    let r = api.book(&alice, &ev, 1, None).await;
    assert!(
        matches!(code(&r), "event_closed" | "sold_out"),
        "{}",
        r.body
    );
    let r = api.get(&format!("/events/{ev}"), None).await;
    assert_eq!(r.body["availability"]["confirmed"], 3);
}

async fn booking_lists_page_with_cursors_and_filter_by_status(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 50).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(api.booked(&alice, &ev, 1).await);
    }
    let held = api.held(&alice, &ev, 1).await;
    made.push(held.clone());
    api.booked(&bob, &ev, 1).await;

    // Newest first, two at a time; a booking made between pages does not shift them.
    let mut seen = Vec::new();
    let mut uri = "/me/bookings?limit=2".to_string();
    loop {
        let r = api.get(&uri, Some(&alice)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(ids(&r));
        if seen.len() == 2 {
            api.booked(&alice, &ev, 1).await;
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/me/bookings?limit=2&cursor={c}"),
            None => break,
        }
    }
    let mut expected = made.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let r = api.get("/me/bookings?status=held", Some(&alice)).await;
    assert_eq!(ids(&r), vec![held]);
    api.refuses_queries(
        "/me/bookings",
        &alice,
        &[
            "limit=0",
            "limit=101",
            "cursor=nonsense",
            "status=lost",
            "limit=-1",
            "colour=red",
        ],
    )
    .await;

    // The admin's list of the event: oldest first, everyone's.
    let r = api
        .get(&format!("/events/{ev}/bookings?limit=100"), Some(&admin))
        .await;
    let all = ids(&r);
    assert_eq!(all.len(), 8);
    assert_eq!(all[..6], made[..]);
    let r = api
        .get(&format!("/events/{ev}/bookings?limit=3"), Some(&admin))
        .await;
    assert_eq!(ids(&r), all[..3]);
    let c = r.body["next_cursor"].as_str().expect("cursor").to_string();
    let r = api
        .get(
            &format!("/events/{ev}/bookings?limit=3&cursor={c}"),
            Some(&admin),
        )
        .await;
    assert_eq!(ids(&r), all[3..6]);
    let none = uuid::Uuid::now_v7();
    let r = api
        .get(&format!("/events/{none}/bookings"), Some(&admin))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn a_waitlist_story_over_http_alone(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 1).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let carol = api.user("carol@example.com").await;
    let sold = api.booked(&alice, &ev, 1).await;

    // With seats free, the waitlist says to book instead.
    let r = api.book(&bob, &ev, 1, None).await;
    assert_eq!(code(&r), "sold_out");
    for who in [&bob, &carol] {
        let r = api
            .post(
                &format!("/events/{ev}/waitlist"),
                Some(who),
                Some(json!({"quantity": 1})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let r = api
        .post(
            &format!("/events/{ev}/waitlist"),
            Some(&bob),
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::CONFLICT, "conflict"),
        "joining twice"
    );
    let r = api
        .get(&format!("/events/{ev}/waitlist"), Some(&admin))
        .await;
    assert_eq!(
        r.body["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.body
    );

    // Alice cancels: Bob, first in line, gets the seat on offer.
    let r = api
        .post(&format!("/bookings/{sold}/cancel"), Some(&alice), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api
        .get(&format!("/events/{ev}/waitlist/me"), Some(&bob))
        .await;
    assert_eq!(r.body["status"], "offered", "{}", r.body);
    assert!(r.body["offer_expires_at"].is_string());
    let r = api
        .post(
            &format!("/events/{ev}/waitlist/me/accept"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::CONFLICT, "conflict"),
        "Carol has no offer yet"
    );

    // Bob lets it run out; his late accept is refused and the seat goes to Carol.
    tokio::time::sleep(OFFER_TTL + Duration::from_millis(300)).await;
    let r = api
        .post(
            &format!("/events/{ev}/waitlist/me/accept"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::GONE, "hold_expired"),
        "{}",
        r.body
    );
    let r = api
        .get(&format!("/events/{ev}/waitlist/me"), Some(&carol))
        .await;
    // An offered entry has left the queue: no position.
    assert_eq!(
        (r.body["status"].as_str(), r.body["position"].as_u64()),
        (Some("offered"), None),
        "{}",
        r.body
    );
    let r = api
        .post(
            &format!("/events/{ev}/waitlist/me/accept"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["status"].as_str(), r.body["source"].as_str()),
        (Some("confirmed"), Some("waitlist_offer"))
    );
    let r = api.get(&format!("/events/{ev}"), None).await;
    assert_eq!(r.body["availability"]["confirmed"], 1);
    let r = api.get("/me/notifications", Some(&carol)).await;
    let kinds: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"waitlist_offer") && kinds.contains(&"booking_confirmed"),
        "{kinds:?}"
    );

    // Leaving: Bob is gone from the list (his offer ended), so leaving finds nothing.
    let r = api
        .call(
            "DELETE",
            &format!("/events/{ev}/waitlist/me"),
            Some(&bob),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = api
        .get(&format!("/events/{ev}/waitlist"), Some(&admin))
        .await;
    assert_eq!(r.body["items"], json!([]));
}

async fn events_are_searched_and_paged_with_cursors(api: Api) {
    let admin = api.admin().await;
    let alice = api.user("alice@example.com").await;
    let create = async |name: &str, day: u32| {
        let r = api
            .post(
                "/events",
                Some(&admin),
                Some(json!({
                    "name": name, "venue": "Club", "category": "paging",
                    "starts_at": format!("2099-07-{day:02}T20:00:00Z"),
                    "ends_at": format!("2099-07-{day:02}T23:00:00Z"),
                    "capacity": 5, "price": {"minor": 100, "currency": "EUR"}
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    };
    let mut made = Vec::new();
    for (i, name) in [
        "Jazz Night",
        "Rock Night",
        "jazz brunch",
        "Folk",
        "Jazz 100%",
    ]
    .iter()
    .enumerate()
    {
        made.push(create(name, u32::try_from(i).expect("small") + 1).await);
    }
    // Pages of two, in start order; an event added between pages does not shift them.
    let mut seen = Vec::new();
    let mut uri = "/events?category=paging&limit=2".to_string();
    loop {
        let r = api.get(&uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(ids(&r));
        if seen.len() == 2 {
            create("Early bird", 1).await;
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/events?category=paging&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, made);
    let r = api.get("/events?category=paging&q=JAZZ", None).await;
    assert_eq!(
        ids(&r),
        vec![made[0].clone(), made[2].clone(), made[4].clone()]
    );
    let r = api.get("/events?category=paging&q=100%25", None).await;
    assert_eq!(ids(&r), vec![made[4].clone()]);
    let r = api
        .get("/events?category=paging&starts_after=2099-07-02T00:00:00Z&starts_before=2099-07-04T00:00:00Z", None)
        .await;
    assert_eq!(ids(&r), made[1..3]);

    // Inactive events: listed for admins who ask, refused to others.
    let r = api.get(&format!("/events/{}", made[3]), None).await;
    let etag = r.headers["etag"].to_str().expect("etag").to_string();
    let r = api
        .call(
            "POST",
            &format!("/events/{}/deactivate", made[3]),
            Some(&admin),
            &[("If-Match", &etag)],
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.get("/events?category=paging&limit=100", None).await;
    assert!(!ids(&r).contains(&made[3]));
    let r = api
        .get(
            "/events?category=paging&limit=100&include_inactive=true",
            Some(&admin),
        )
        .await;
    assert!(ids(&r).contains(&made[3]), "{}", r.body);
    let r = api.get("/events?include_inactive=true", Some(&alice)).await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));
    let r = api.get("/events?include_inactive=true", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api.get("/events", Some("not-a-token")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    api.refuses_queries(
        "/events",
        &alice,
        &[
            "limit=0",
            "limit=201",
            "cursor=abc",
            "q=",
            "starts_after=tomorrow",
            "offset=3",
            "colour=red",
        ],
    )
    .await;
}

async fn notifications_are_marked_read_and_paged(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 20).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    for _ in 0..4 {
        api.booked(&alice, &ev, 1).await;
    }
    // A welcome and four confirmations, newest first, two at a time.
    let mut seen = Vec::new();
    let mut uri = "/me/notifications?limit=2".to_string();
    loop {
        let r = api.get(&uri, Some(&alice)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(ids(&r));
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/me/notifications?limit=2&cursor={c}"),
            None => break,
        }
    }
    let all = ids(&api.get("/me/notifications?limit=100", Some(&alice)).await);
    assert_eq!(seen, all);
    assert_eq!(all.len(), 5);

    // Marking read: the owner only, the first time kept; unread=true leaves it out.
    let first = &all[0];
    let r = api
        .post(&format!("/me/notifications/{first}/read"), Some(&bob), None)
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let r = api
        .post(
            &format!("/me/notifications/{first}/read"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let read_at = r.body["read_at"].clone();
    assert!(read_at.is_string(), "{}", r.body);
    assert!(r.body["title"].is_string());
    let r = api
        .post(
            &format!("/me/notifications/{first}/read"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.body["read_at"], read_at, "the first read is kept");
    let unread = ids(&api.get("/me/notifications?unread=true", Some(&alice)).await);
    assert_eq!(unread, all[1..]);
    let r = api.get("/me/notifications?limit=100", Some(&alice)).await;
    assert_eq!(r.body["items"][0]["read_at"], read_at);
    assert!(r.body["items"][1]["read_at"].is_null());
    api.refuses_queries(
        "/me/notifications",
        &alice,
        &[
            "limit=0",
            "limit=101",
            "cursor=%%%",
            "unread=maybe",
            "colour=red",
        ],
    )
    .await;
    let r = api
        .post(
            &format!("/me/notifications/{}/read", uuid::Uuid::now_v7()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[cfg(feature = "server")]
async fn ticket_artefacts_are_served_to_the_owner_and_admins_only(api: Api) {
    let admin = api.admin().await;
    let ev = api.event(&admin, 5).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let booking = api.booked(&alice, &ev, 2).await;
    let tickets = ids(&api
        .get(&format!("/bookings/{booking}/tickets"), Some(&alice))
        .await);
    assert_eq!(tickets.len(), 2);
    let t = &tickets[1];
    let as_user = |token: &str| format!("Bearer {token}");
    for (path, content_type, magic) in [
        (
            format!("/bookings/{booking}/tickets/{t}/qr.svg"),
            "image/svg+xml",
            &b"<?xml"[..],
        ),
        (
            format!("/bookings/{booking}/tickets/{t}/qr.png"),
            "image/png",
            &b"\x89PNG"[..],
        ),
        (
            format!("/bookings/{booking}/tickets.pdf"),
            "application/pdf",
            &b"%PDF"[..],
        ),
    ] {
        for token in [&alice, &admin] {
            let (status, headers, body) = api
                .raw("GET", &path, &[("authorization", &as_user(token))], None)
                .await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers["content-type"], content_type, "{path}");
            assert!(
                body.starts_with(magic),
                "{path}: {:?}",
                &body[..16.min(body.len())]
            );
        }
        let (status, _, _) = api
            .raw("GET", &path, &[("authorization", &as_user(&bob))], None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "Bob reads {path}");
    }
    // One page per ticket.
    let (_, _, pdf) = api
        .raw(
            "GET",
            &format!("/bookings/{booking}/tickets.pdf"),
            &[("authorization", &as_user(&alice))],
            None,
        )
        .await;
    let text = String::from_utf8_lossy(&pdf);
    assert_eq!(
        text.matches("/Type /Page\n").count()
            + text.matches("/Type /Page ").count()
            + text.matches("/Type /Page>").count(),
        2,
        "{}",
        text.len()
    );
    // A ticket of another booking, or an unknown one, through this booking: 404.
    let other = api.booked(&alice, &ev, 1).await;
    let other_ticket = ids(&api
        .get(&format!("/bookings/{other}/tickets"), Some(&alice))
        .await)[0]
        .clone();
    let r = api
        .get(
            &format!("/bookings/{booking}/tickets/{other_ticket}/qr.svg"),
            Some(&alice),
        )
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    // A hold has no tickets yet.
    let held = api.held(&alice, &ev, 1).await;
    let r = api
        .get(&format!("/bookings/{held}/tickets.pdf"), Some(&alice))
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::CONFLICT, "conflict"));
}

#[cfg(feature = "server")]
#[tokio::test]
async fn ticket_artefacts_on_sqlite() {
    ticket_artefacts_are_served_to_the_owner_and_admins_only(Api::sqlite().await).await
}

#[cfg(feature = "server")]
#[tokio::test]
async fn ticket_artefacts_on_postgres() {
    ticket_artefacts_are_served_to_the_owner_and_admins_only(Api::postgres().await).await
}

/// Each scenario as a test on SQLite and one on PostgreSQL.
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Api::sqlite().await).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Api::postgres().await).await
            })*
        }
    };
}

on_every_store!(
    health_and_readiness_answer,
    book_sell_out_cancel_and_see_availability,
    a_hold_confirms_through_its_own_endpoint,
    an_idempotency_key_replays_the_first_booking,
    bad_requests_get_typed_json_errors,
    the_openapi_document_describes_every_route_and_the_docs_need_no_network,
    every_route_that_needs_a_token_refuses_a_request_without_one,
    users_never_reach_admin_routes,
    users_reach_only_their_own_records,
    admins_edit_events_against_the_version_they_read,
    booking_lists_page_with_cursors_and_filter_by_status,
    a_waitlist_story_over_http_alone,
    notifications_are_marked_read_and_paged,
    events_are_searched_and_paged_with_cursors,
);
