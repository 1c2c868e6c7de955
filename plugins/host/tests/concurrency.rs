//! 10,000 calls from 64 concurrent tasks: every answer right, no state carried between calls, and
//! resident memory stable. Alone in its binary so that other tests do not disturb the RSS figures.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use evently_plugins::{HostConfig, Limits, PluginHost, WasmPricingPolicy};

/// A plugin that counts its calls in a global and in linear memory and returns both counts.
const COUNTER: &str = r#"
    (global $n (mut i64) (i64.const 0))
    (func (export "price") (param i32) (result i32)
      (global.set $n (i64.add (global.get $n) (i64.const 1)))
      (i64.store (i32.const 4096) (i64.add (i64.load (i32.const 4096)) (i64.const 1)))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i64.store (i32.const 8) (global.get $n))
      (i64.store (i32.const 16) (i64.load (i32.const 4096)))
      (i32.const 0))
"#;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

async fn round(
    pricing: &Arc<WasmPricingPolicy>,
    counter: &Arc<WasmPricingPolicy>,
    tasks: usize,
    calls: usize,
) {
    let per_task = calls.div_ceil(tasks);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let pricing = pricing.clone();
        let counter = counter.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                // Vary the input: the answer must depend on it and on nothing else.
                let quantity = 1 + ((t + i) % 10) as u32;
                let q = pricing
                    .call(&quote_req(quantity, event(100, 0, 1000, 40)))
                    .expect("pricing call");
                assert_eq!(q.total, 800 * i64::from(quantity));
                let c = counter
                    .call(&quote_req(1, event(100, 0, 1000, 40)))
                    .expect("counter call");
                assert_eq!(
                    (c.unit_price, c.total),
                    (1, 1),
                    "state carried between calls"
                );
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_from_64_tasks_keep_memory_stable_and_carry_no_state() {
    let host = PluginHost::new(HostConfig {
        limits: Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let pricing = host
        .load_pricing("early-bird-surge", &reference_plugin("early-bird-surge"))
        .unwrap();
    let counter = host
        .load_pricing(
            "counter",
            &wat::parse_str(pricing_component(COUNTER)).unwrap(),
        )
        .unwrap();

    round(&pricing, &counter, 64, 1_000).await; // warm-up
    let warm = rss_bytes();
    let started = Instant::now();
    round(&pricing, &counter, 64, 10_000).await;
    let first = rss_bytes();
    let elapsed = started.elapsed();
    round(&pricing, &counter, 64, 10_000).await;
    let second = rss_bytes();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "RSS after warm-up {:.1} MiB, after 10,000 calls {:.1} MiB, after 20,000 {:.1} MiB; \
         10,000 calls (x2 plugins) in {elapsed:?}",
        mib(warm),
        mib(first),
        mib(second)
    );
    // Stable: no growth with the number of calls beyond allocator noise.
    assert!(
        first.saturating_sub(warm) < 8 << 20,
        "RSS grew by {:.1} MiB over 10,000 calls",
        mib(first.saturating_sub(warm))
    );
    assert!(
        second.saturating_sub(first) < 4 << 20,
        "RSS grew by {:.1} MiB over the next 10,000 calls",
        mib(second.saturating_sub(first))
    );
}
