//! The wall-clock deadline, alone in its own test binary so that no other test competes for the CPU.

mod common;

use std::time::{Duration, Instant};

use common::*;
use evently_plugins::{HostConfig, Limit, Limits, PluginError, PluginHost};

#[test]
fn infinite_loop_is_stopped_by_the_default_deadline_within_10_ms() {
    // Default limits (5 ms deadline) without a fuel budget: only the deadline can stop the loop.
    let host = PluginHost::new(HostConfig {
        limits: Limits {
            fuel: None,
            ..Limits::default()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let wasm = wat::parse_str(pricing_component(
        r#"(func (export "price") (param i32) (result i32) (loop $l (br $l)) (i32.const 0))"#,
    ))
    .unwrap();
    let p = host.load_pricing("spinner", &wasm).unwrap();
    let mut times = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        let err = p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err();
        times.push(started.elapsed());
        match err {
            PluginError::LimitExceeded { limit, .. } => assert_eq!(limit, Limit::Time),
            other => panic!("expected the time limit, got {other:?}"),
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!("infinite loop stopped after {times:?}");
    assert!(
        median < Duration::from_millis(10),
        "infinite loop stopped after {median:?} (median of {times:?}), expected < 10 ms"
    );
    assert!(
        times[0] >= Duration::from_millis(3),
        "stopped too early: {times:?}"
    );

    // The same host keeps serving.
    let good = host
        .load_pricing("early-bird-surge", &reference_plugin("early-bird-surge"))
        .unwrap();
    let q = good.call(&quote_req(2, event(100, 0, 1000, 40))).unwrap();
    assert_eq!((q.unit_price, q.total), (800, 1600));
}
