//! Notification delivery throughput: how fast one worker turns booking confirmations into e-mails
//! with PDF tickets, and what rendering a ticket costs.
//!
//! ```text
//! cargo bench -p evently-http --bench notifications
//! cargo bench -p evently-http --bench notifications -- --bookings 2000 --seats 2
//! ```
//!
//! Prints: the time to render one QR PNG, one QR SVG and one PDF ticket (mean over many), then, on an
//! SQLite database file with the directory mail transport, the confirmations delivered per second by
//! `Worker::run_once` (each one a store read of event and tickets, templates, one PDF per seat, MIME
//! encoding, an atomic file write and the `sent_at` update), and a check that every notification was
//! delivered exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use evently_core::{
    Actor, BookingRequest, Currency, Evently, Money, NewEvent, NewUser, Role, Store, Ticket,
    TicketId,
};
use evently_http::notify::{EmailNotifier, MailTransport};
use evently_http::tickets::{TicketSheet, qr_png, qr_svg, ticket_pdf};
use evently_http::worker::Worker;
use evently_storage::{SqliteConfig, SqliteStore};

struct Args {
    bookings: u32,
    seats: u32,
}

fn args() -> Args {
    let mut a = Args {
        bookings: 1000,
        seats: 1,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", argv[i]))
        };
        match argv[i].as_str() {
            "--bookings" => {
                a.bookings = value();
                i += 1;
            }
            "--seats" => {
                a.seats = value();
                i += 1;
            }
            // `cargo bench` passes --bench; ignore what is not ours.
            _ => {}
        }
        i += 1;
    }
    a
}

fn per_op<T>(n: u32, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    start.elapsed().as_secs_f64() / f64::from(n) * 1e6
}

fn main() -> anyhow::Result<()> {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let payload = format!(
        "evently:v1:{}:{}:EVT-7K2M-9QXD-AB3F",
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7()
    );
    let ticket = Ticket {
        id: TicketId(uuid::Uuid::now_v7()),
        booking_id: evently_core::BookingId(uuid::Uuid::now_v7()),
        event_id: evently_core::EventId(uuid::Uuid::now_v7()),
        number: "EVT-7K2M-9QXD-AB3F".into(),
        qr_payload: payload.clone(),
        issued_at: chrono::Utc::now(),
    };
    let png_us = per_op(500, || qr_png(&payload, 4).expect("png"));
    let svg_us = per_op(500, || qr_svg(&payload).expect("svg"));
    let sheet = TicketSheet {
        ticket: &ticket,
        event_name: "RustConf 2026",
        venue: "Hall A",
        starts_at: chrono::Utc::now(),
        holder: "Ada Lovelace",
    };
    let pdf_len = ticket_pdf(&sheet)?.len();
    let pdf_us = per_op(500, || ticket_pdf(&sheet).expect("pdf"));
    println!(
        "render: qr_png {png_us:.0} us, qr_svg {svg_us:.0} us, ticket_pdf {pdf_us:.0} us ({pdf_len} bytes)"
    );

    rt.block_on(deliver(args))
}

async fn deliver(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mail = dir.path().join("mail");
    let store = SqliteStore::open(SqliteConfig::new(url)).await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let email = EmailNotifier::new(
        MailTransport::Directory(mail.clone()),
        "Evently <noreply@example.com>".parse()?,
    );
    let engine = Evently::builder()
        .store(shared)
        .notifier(Arc::new(email))
        .build()?;

    let admin = engine
        .register_user(NewUser {
            email: "admin@example.com".into(),
            name: "Admin".into(),
            password_hash: "unused".into(),
            role: Role::Admin,
            attributes: BTreeMap::new(),
        })
        .await?;
    let admin = Actor::new(admin.id, admin.role);
    let now = engine.now();
    let event = engine
        .create_event(
            &admin,
            NewEvent {
                name: "RustConf 2026".into(),
                description: String::new(),
                venue: "Hall A".into(),
                category: "conference".into(),
                starts_at: now + chrono::Duration::days(30),
                ends_at: now + chrono::Duration::days(31),
                capacity: args.bookings * args.seats,
                price: Money::new(4900, Currency::new("EUR")?),
            },
        )
        .await?;
    for _ in 0..args.bookings {
        engine
            .book(&admin, BookingRequest::new(event.id, args.seats))
            .await?;
    }
    // Deliver the admin's welcome first so only confirmations are timed.
    engine.run_jobs(1).await?;

    let worker = Worker::new(engine.clone())
        .batch_size(100)
        .expire_holds(false);
    let start = Instant::now();
    let mut delivered = 0;
    while delivered < args.bookings {
        let pass = worker.run_once().await;
        anyhow::ensure!(pass.failures == 0 && pass.jobs.dead == 0, "{pass:?}");
        if pass.jobs.claimed == 0 {
            break;
        }
        delivered += pass.jobs.succeeded;
    }
    let secs = start.elapsed().as_secs_f64();
    let files = std::fs::read_dir(&mail)?.count();
    anyhow::ensure!(
        delivered == args.bookings && files == args.bookings as usize + 1,
        "delivered {delivered}, {files} files"
    );
    println!(
        "deliver: {} confirmations ({} PDF each) in {secs:.2} s = {:.0} notifications/s (sqlite file, directory transport, batch 100)",
        args.bookings,
        args.seats,
        f64::from(args.bookings) / secs
    );
    store.close().await;
    Ok(())
}
