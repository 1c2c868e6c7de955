//! Clients that go away mid-request, over real HTTP on SQLite and PostgreSQL: thousands of connections
//! to one hot event are closed at random moments (half-way through the request, or a random few
//! microseconds to milliseconds after sending it, some with a reset), while the in-process worker
//! runs. The server must then answer the next thousand requests for that event (bookings and reads)
//! without one 5xx and without one request waiting longer than a second, and the event's seat
//! counters must equal its bookings (on PostgreSQL, no connection may be left inside a transaction).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evently_conformance::assert_counters_match_bookings;
use evently_core::{Actor, Evently, Role, Store};
use evently_http::worker::Worker;
use evently_http::{AppState, AuthSettings, PasswordParams, app};
use evently_storage::postgres::testing::TestDatabase;
use evently_storage::{PostgresStore, SqliteStore};
use tokio::io::AsyncWriteExt;

/// Connections closed early, and how many are open at once.
const ABORTED: usize = 3_000;
const ABORTING_AT_ONCE: usize = 48;
/// Requests after the storm, and how many are in flight at once.
const AFTER: usize = 1_000;
const AFTER_AT_ONCE: usize = 16;

struct Server {
    addr: SocketAddr,
    tokens: Vec<String>,
    event: evently_core::EventId,
    engine: Evently,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn serve(store: Arc<dyn Store>) -> Server {
    let engine = Evently::builder().store(store).build().expect("engine");
    let auth = AuthSettings::new(AuthSettings::random_secret(), Duration::from_secs(3600))
        .and_then(|a| a.password_params(PasswordParams::insecure_fast()))
        .expect("auth");
    let state = AppState::new(engine.clone(), auth);
    let (_, admin) = common::user(&engine, "admin@example.com", "Admin", Role::Admin).await;
    let mut event = common::event(&engine, &admin).await;
    event = engine
        .update_event(
            &admin,
            event.id,
            evently_core::EventPatch {
                expected_version: event.version,
                capacity: Some(1_000_000),
                ..Default::default()
            },
        )
        .await
        .expect("a roomy event");
    let mut tokens = Vec::new();
    for i in 0..32 {
        let (_, actor): (_, Actor) =
            common::user(&engine, &format!("u{i}@example.com"), "User", Role::User).await;
        tokens.push(state.issue_token(&actor).expect("token"));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let mut worker_stop = stop.subscribe();
    let router = app(state);
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .expect("server");
    });
    // The in-process worker, as `evently serve` runs it.
    Worker::new(engine.clone())
        .poll_interval(Duration::from_millis(50))
        .spawn(async move {
            let _ = worker_stop.wait_for(|s| *s).await;
        });
    Server {
        addr,
        tokens,
        event: event.id,
        engine,
        stop,
    }
}

/// SplitMix64, seeded per connection.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn booking_request(s: &Server, token: &str, key: Option<&str>) -> String {
    let body = r#"{"quantity":1}"#;
    let key = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /events/{}/bookings HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{key}\r\n{body}",
        s.event,
        s.addr,
        body.len()
    )
}

/// Opens a connection, sends (part of) a request and closes it at a random moment.
async fn abort_one(s: &Server, n: u64) {
    let r = mix(n);
    let token = &s.tokens[(r % s.tokens.len() as u64) as usize];
    let request = match (r >> 8) % 4 {
        0 => format!(
            "GET /events/{} HTTP/1.1\r\nHost: {}\r\n\r\n",
            s.event, s.addr
        ),
        1 => booking_request(s, token, Some(&format!("key-{}", (r >> 16) % 500))),
        _ => booking_request(s, token, None),
    };
    let Ok(mut stream) = tokio::net::TcpStream::connect(s.addr).await else {
        return;
    };
    let bytes = request.as_bytes();
    // One in eight stops half-way through the request; the rest send it whole.
    let cut = if (r >> 20).is_multiple_of(8) {
        bytes.len() / 2
    } else {
        bytes.len()
    };
    if stream.write_all(&bytes[..cut]).await.is_err() {
        return;
    }
    tokio::time::sleep(Duration::from_micros((r >> 24) % 3_000)).await;
    // Half close with a reset, half with a FIN.
    if (r >> 40).is_multiple_of(2) {
        // A zero linger time sends the reset at once and never blocks the thread.
        #[allow(deprecated)]
        let _ = stream.set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

async fn storm(s: &Arc<Server>) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("disconnect storm seed: {seed}");
    let tasks: Vec<_> = (0..ABORTING_AT_ONCE)
        .map(|_| {
            let (s, next) = (s.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n as usize >= ABORTED {
                        return;
                    }
                    abort_one(&s, seed ^ n).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("storm task");
    }
}

/// The next `AFTER` requests: bookings (some with idempotency keys) and reads of the event. Returns
/// the bookings made.
async fn after_storm(s: &Arc<Server>) -> usize {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..AFTER_AT_ONCE)
        .map(|_| {
            let (s, next, client) = (s.clone(), next.clone(), client.clone());
            tokio::spawn(async move {
                let mut booked = 0;
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= AFTER {
                        return booked;
                    }
                    let token = &s.tokens[n % s.tokens.len()];
                    let started = Instant::now();
                    let request = if n % 3 == 0 {
                        client.get(format!("http://{}/events/{}", s.addr, s.event))
                    } else {
                        let mut r = client
                            .post(format!("http://{}/events/{}/bookings", s.addr, s.event))
                            .bearer_auth(token)
                            .header("Content-Type", "application/json")
                            .body(r#"{"quantity":1}"#);
                        if n % 3 == 2 {
                            r = r.header("Idempotency-Key", format!("after-{n}"));
                        }
                        r
                    };
                    let response = request.send().await.unwrap_or_else(|e| {
                        let why = if e.is_timeout() {
                            " (no answer within 10 s)"
                        } else {
                            ""
                        };
                        panic!("request {n} after the storm failed{why}: {e}")
                    });
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    let took = started.elapsed();
                    assert!(
                        !status.is_server_error(),
                        "request {n} after the storm: {status} {body}"
                    );
                    assert!(
                        took < Duration::from_secs(1),
                        "request {n} after the storm took {took:?} ({status})"
                    );
                    if n % 3 != 0 {
                        assert_eq!(status.as_u16(), 201, "booking {n}: {body}");
                        booked += 1;
                    }
                }
            })
        })
        .collect();
    let mut booked = 0;
    for t in tasks {
        booked += t.await.expect("a request after the storm failed");
    }
    booked
}

/// One backend at a time: the two tests share the machine's two cores, and each holds its requests
/// to a one-second bound.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(store: Arc<dyn Store>) -> Arc<Server> {
    let s = Arc::new(serve(store).await);
    storm(&s).await;
    let booked = after_storm(&s).await;
    assert_eq!(booked, AFTER - AFTER.div_ceil(3));
    assert_counters_match_bookings(&**s.engine.store(), &[s.event]).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_go_away_leave_sqlite_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(evently_storage::SqliteConfig::new(format!(
        "sqlite://{}",
        dir.path().join("evently.db").display()
    )))
    .await
    .expect("store");
    let _serial = ONE_AT_A_TIME.lock().await;
    let s = run(Arc::new(store.clone())).await;
    let _ = s.stop.send(true);
    // Not even the pools' last line of defence had to close a connection.
    assert_eq!(store.connections_discarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_go_away_leave_postgres_serving() {
    let db = TestDatabase::create().await.expect("test database");
    let mut cfg = db.config();
    // A stranded transaction must stay visible to the check below, not be ended by the server.
    cfg.statement_timeout = Duration::from_secs(120);
    let store = PostgresStore::open(cfg).await.expect("store");
    let _serial = ONE_AT_A_TIME.lock().await;
    let s = run(Arc::new(store.clone())).await;
    let _ = s.stop.send(true);
    // Connections still on their way back to the pool get up to 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stranded: Vec<(i32, String)> = sqlx::query_as(
            "SELECT pid, state FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_all(store.pool())
        .await
        .expect("pg_stat_activity");
        if stranded.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections inside a transaction: {stranded:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not even the pool's last line of defence had to close one.
    assert_eq!(store.connections_discarded(), 0);
    drop(db);
}
