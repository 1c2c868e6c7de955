//! Engine throughput on the in-memory store: confirmed bookings per second on one hot event, with
//! 2, 8 and 64 concurrent tasks booking one seat each in a loop.
//!
//! ```text
//! # the figures in docs/benchmarks.md: whole-program optimisation (profile bench-lto), warm heap
//! MIMALLOC_PURGE_DELAY=-1 cargo bench --profile bench-lto -p evently-storage --bench booking_throughput
//! cargo bench -p evently-storage --bench booking_throughput -- --bookings 400000 --threads 2
//! cargo bench -p evently-storage --bench booking_throughput -- --mode hold   # holds: no tickets, no notification
//! cargo bench -p evently-storage --bench booking_throughput -- --cold        # fresh memory
//! cargo bench -p evently-storage --bench booking_throughput -- --max-batch 1 --tasks 64 --threads 1
//! ```
//!
//! Prints one line per task count: bookings, seconds, bookings/s, how many of the cores the run kept
//! busy, and how long a cache line took to move between the two cores just before and just after the
//! run (see `line_transfer_ns`); every run checks that the event sold exactly what was booked.
//! Figures go to docs/benchmarks.md.

use std::sync::Arc;

// mimalloc, as we recommend to integrators for allocation-heavy services (glibc figures are in
// docs/benchmarks.md too), called the way the standard library calls the system allocator: plain
// `mi_malloc` when the alignment is one every block has. The `mimalloc` crate's allocator always calls
// `mi_malloc_aligned`, about 30 instructions more per allocation, and a booking makes about 28.
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

struct Mimalloc;

/// Every mimalloc block of at least this size is aligned to it.
const MIN_ALIGN: usize = 16;

// SAFETY: each method hands the request to mimalloc, which returns blocks of at least the requested
// size and alignment (`mi_malloc` aligns blocks of `MIN_ALIGN` bytes or more to `MIN_ALIGN`, and
// smaller blocks to their size class, which the `align <= size` test covers), and frees with `mi_free`
// whatever it allocated.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: see the impl.
        unsafe {
            if l.align() <= MIN_ALIGN && l.align() <= l.size() {
                mi_malloc(l.size()).cast()
            } else {
                mi_malloc_aligned(l.size(), l.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: see the impl.
        unsafe {
            if l.align() <= MIN_ALIGN && l.align() <= l.size() {
                mi_zalloc(l.size()).cast()
            } else {
                mi_zalloc_aligned(l.size(), l.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _l: std::alloc::Layout) {
        // SAFETY: see the impl.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, l: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: see the impl.
        unsafe {
            if l.align() <= MIN_ALIGN && l.align() <= new_size {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, l.align()).cast()
            }
        }
    }
}
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Duration;
use evently_core::*;
use evently_storage::MemoryStore;

/// Bookings a task makes between two yields to the scheduler.
const YIELD_EVERY: u64 = 16;

struct Args {
    hold: bool,
    bookings: u64,
    threads: usize,
    tasks: Vec<usize>,
    max_batch: u32,
    cold: bool,
}

fn args() -> Args {
    let mut a = Args {
        hold: false,
        bookings: 400_000,
        threads: 2,
        tasks: vec![2, 8, 64],
        max_batch: EngineConfig::default().max_batch,
        cold: false,
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
            "--cold" => a.cold = true,
            "--max-batch" => a.max_batch = value().parse().expect("--max-batch: a number"),
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
async fn run(tasks: usize, bookings: u64, hold: bool, max_batch: u32) -> (f64, u64, f64) {
    let engine = Evently::builder()
        .store(Arc::new(MemoryStore::new()))
        .config(EngineConfig {
            max_batch,
            ..EngineConfig::default()
        })
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
    let cpu_start = cpu_seconds();
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
                    // Let other tasks run now and then. A booking on the memory store need not wait
                    // at all (its lock is taken by spinning), so without this a task would keep its
                    // thread to itself, and the 2-task run could leave both tasks on one thread.
                    // Not after every booking: a thread whose only task yields polls the runtime's
                    // I/O driver (a system call) before running it again.
                    if done.is_multiple_of(YIELD_EVERY) {
                        tokio::task::yield_now().await;
                    }
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
    let cores = (cpu_seconds() - cpu_start) / secs;
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
    (secs, booked, cores)
}

/// How long moving one cache line from one core to the other takes now, in nanoseconds: half the
/// round trip of a value two threads hand back and forth 20,000 times. Printed before and after each
/// run. On the 2-vCPU benchmark VM it swings between about 45 and 470 ns from one second to the
/// next, as the host moves the virtual CPUs between nearby and distant cores; every booking of one
/// event moves the event's lines (and the store's lock) between the cores, so this figure decides
/// most of a run's speed.
fn line_transfer_ns() -> f64 {
    const ROUNDS: u64 = 20_000;
    /// Ends the hand-off early (under valgrind, which runs one thread at a time, each hand-off
    /// waits for a thread switch).
    const STOP: u64 = u64::MAX;
    let flag = Arc::new(AtomicU64::new(0));
    let other = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            for i in 0..ROUNDS {
                loop {
                    match flag.load(Ordering::Acquire) {
                        STOP => return,
                        v if v == 2 * i + 1 => break,
                        _ => std::hint::spin_loop(),
                    }
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < ROUNDS {
        flag.store(2 * rounds + 1, Ordering::Release);
        while flag.load(Ordering::Acquire) != 2 * rounds + 2 {
            std::hint::spin_loop();
        }
        rounds += 1;
        if rounds % 256 == 0 && start.elapsed() > std::time::Duration::from_millis(50) {
            break;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64 / 2.0;
    flag.store(STOP, Ordering::Release);
    other.join().expect("ping-pong thread");
    ns
}

/// CPU time used by the whole process so far (user and system, all threads), from /proc/self/stat
/// in clock ticks of 10 ms: how many of the cores a run kept busy.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
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
    // Warm-up: allocator, runtime, code paths. At full size unless --cold: with
    // MIMALLOC_PURGE_DELAY=-1 the allocator keeps the memory a run frees, so the measured runs reuse it
    // instead of faulting in fresh pages (on this VM, touching fresh memory costs about 1 s per GiB).
    let purge = std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_default();
    let warm = !a.cold && purge == "-1";
    println!(
        "heap: {}",
        if warm {
            "warm (a full-size warm-up run, MIMALLOC_PURGE_DELAY=-1)"
        } else if a.cold {
            "cold (--cold)"
        } else {
            "cold: set MIMALLOC_PURGE_DELAY=-1 for warm-heap figures, or pass --cold"
        }
    );
    rt.block_on(run(
        a.tasks.first().copied().unwrap_or(2),
        if warm { a.bookings } else { 20_000 },
        a.hold,
        a.max_batch,
    ));
    for &tasks in &a.tasks {
        let before = line_transfer_ns();
        let (secs, booked, cores) = rt.block_on(run(tasks, a.bookings, a.hold, a.max_batch));
        let after = line_transfer_ns();
        println!(
            "tasks={tasks:>3}  bookings={booked}  secs={secs:.3}  bookings/s={:.0}  cores busy={cores:.2}  \
             line transfer ns={before:.0}/{after:.0}",
            booked as f64 / secs
        );
    }
}
