//! Engine throughput on the in-memory store: confirmed bookings per second on one hot event, with
//! 2, 8 and 64 concurrent tasks booking one seat each in a loop.
//!
//! ```text
//! cargo bench -p evently-storage --bench booking_throughput
//! cargo bench -p evently-storage --bench booking_throughput -- --bookings 400000 --threads 2
//! cargo bench -p evently-storage --bench booking_throughput -- --mode hold   # holds: no tickets, no notification
//! ```
//!
//! Prints one line per task count: bookings, seconds, bookings/s, the number of store transactions the
//! engine used (bookings are combined per event, so one transaction carries many), and a check that
//! the event sold exactly what was booked. Figures go to docs/benchmarks.md.

use std::sync::Arc;

// mimalloc, as we recommend to integrators for allocation-heavy services; glibc figures are in
// docs/benchmarks.md too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Duration;
use evently_core::*;
use evently_storage::MemoryStore;

struct Args {
    hold: bool,
    bookings: u64,
    threads: usize,
    tasks: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        hold: false,
        bookings: 400_000,
        threads: 2,
        tasks: vec![2, 8, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--bookings" => a.bookings = value().parse().expect("--bookings: a number"),
            "--mode" => {
                a.hold = match value().as_str() {
                    "book" => false,
                    "hold" => true,
                    other => panic!("--mode: book or hold, not {other}"),
                }
            }
            "--threads" => a.threads = value().parse().expect("--threads: a number"),
            "--tasks" => {
                a.tasks = value()
                    .split(',')
                    .map(|t| t.parse().expect("--tasks: numbers separated by commas"))
                    .collect()
            }
            // `cargo bench` passes --bench; ignore it and anything else it adds.
            _ => {}
        }
    }
    a
}

async fn register(engine: &Evently, email: String, role: Role) -> Actor {
    let u = engine
        .register_user(NewUser {
            email,
            name: "Bench".into(),
            password_hash: "$argon2id$bench".into(),
            role,
            attributes: Default::default(),
        })
        .await
        .expect("register");
    Actor::new(u.id, u.role)
}

/// One run: `tasks` tasks share `bookings` one-seat bookings of a single event.
async fn run(tasks: usize, bookings: u64, hold: bool) -> (f64, u64) {
    let engine = Evently::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .expect("engine");
    let admin = register(&engine, "admin@bench.invalid".into(), Role::Admin).await;
    let now = engine.now();
    let capacity = u32::try_from(bookings).expect("bookings fit in u32");
    let ev = engine
        .create_event(
            &admin,
            NewEvent {
                name: "Hot event".into(),
                description: String::new(),
                venue: "Arena".into(),
                category: "music".into(),
                starts_at: now + Duration::days(30),
                ends_at: now + Duration::days(30) + Duration::hours(3),
                capacity,
                price: Money::new(2500, Currency::new("EUR").expect("currency")),
            },
        )
        .await
        .expect("event");
    let mut actors = Vec::with_capacity(tasks);
    for i in 0..tasks {
        actors.push(register(&engine, format!("buyer{i}@bench.invalid"), Role::User).await);
    }

    let remaining = Arc::new(AtomicU64::new(bookings));
    let start = Instant::now();
    let handles: Vec<_> = actors
        .into_iter()
        .map(|actor| {
            let (engine, remaining) = (engine.clone(), remaining.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_ok()
                {
                    let req = BookingRequest::new(ev.id, 1);
                    if hold {
                        engine.hold(&actor, req).await
                    } else {
                        engine.book(&actor, req).await
                    }
                    .expect("a booking below capacity succeeds");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut booked = 0;
    for h in handles {
        booked += h.await.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    let e = engine.event(ev.id).await.expect("event");
    let sold = if hold {
        e.seats_held
    } else {
        e.seats_confirmed
    };
    assert_eq!(
        u64::from(sold),
        booked,
        "seats sold must equal bookings made"
    );
    assert_eq!(booked, bookings);
    (secs, booked)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "engine on MemoryStore, one event, {} one-seat {} per run, {} runtime threads, {} cores",
        a.bookings,
        if a.hold {
            "holds"
        } else {
            "confirmed bookings"
        },
        a.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Warm-up: allocator, runtime, code paths.
    rt.block_on(run(2, 20_000, a.hold));
    for &tasks in &a.tasks {
        let (secs, booked) = rt.block_on(run(tasks, a.bookings, a.hold));
        println!(
            "tasks={tasks:>3}  bookings={booked}  secs={secs:.3}  bookings/s={:.0}",
            booked as f64 / secs
        );
    }
}
