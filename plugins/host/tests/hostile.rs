//! Hostile and broken plugins: each is contained with a typed error, and the same host keeps serving
//! a well-behaved plugin afterwards.

mod common;

use std::time::Duration;

use common::*;
use evently_plugins::{HostConfig, Limit, Limits, PluginError, PluginHost};

/// Default limits but a generous deadline, so that CPU contention from the tests running in parallel
/// cannot fire it; the deadline itself is tested alone in `tests/deadline.rs`.
fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    }
}

fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        limits: limits(),
        ..HostConfig::default()
    })
    .expect("host")
}

fn pricing(host: &PluginHost, core: &str) -> std::sync::Arc<evently_plugins::WasmPricingPolicy> {
    let wasm = wat::parse_str(pricing_component(core)).expect("valid WAT");
    host.load_pricing("hostile", &wasm).expect("loads")
}

fn waitlist(host: &PluginHost, core: &str) -> std::sync::Arc<evently_plugins::WasmWaitlistPolicy> {
    let wasm = wat::parse_str(waitlist_component(core)).expect("valid WAT");
    host.load_waitlist("hostile", &wasm).expect("loads")
}

/// The host still serves: a good plugin loaded now, and the reference plugin, answer correctly.
pub fn still_serving(host: &PluginHost) {
    let good = pricing(host, FIXED_QUOTE);
    let q = good
        .call(&quote_req(2, event(100, 0, 1000, 10)))
        .expect("good plugin");
    assert_eq!((q.unit_price, q.total), (100, 200));
    let reference = host
        .load_pricing("group-discount", &reference_plugin("group-discount"))
        .expect("reference plugin loads");
    let q = reference
        .call(&quote_req(5, event(100, 0, 1000, 10)))
        .expect("reference plugin answers");
    assert_eq!(q.total, 4500);
}

fn assert_limit(err: PluginError, want: Limit) {
    match err {
        PluginError::LimitExceeded { limit, .. } => assert_eq!(limit, want),
        other => panic!("expected the {want} limit, got {other:?}"),
    }
}

const INFINITE_LOOP: &str = r#"
    (func (export "price") (param i32) (result i32)
      (loop $l (br $l))
      (i32.const 0))
"#;

#[test]
fn infinite_loop_runs_out_of_fuel_with_a_small_budget() {
    let host = PluginHost::new(HostConfig {
        limits: Limits {
            fuel: Some(100_000),
            ..limits()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let p = pricing(&host, INFINITE_LOOP);
    let report = p.call_with_report(&quote_req(1, event(100, 0, 1000, 10)));
    assert_limit(report.answer.unwrap_err(), Limit::Fuel);
    assert_eq!(report.fuel_used, Some(100_000));
    still_serving(&host);
}

#[test]
fn unbounded_memory_growth_hits_the_memory_cap() {
    let host = host();
    let p = pricing(
        &host,
        r#"
    (func (export "price") (param i32) (result i32)
      (loop $l (drop (memory.grow (i32.const 16))) (br $l))
      (i32.const 0))
"#,
    );
    assert_limit(
        p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err(),
        Limit::Memory,
    );
    still_serving(&host);
}

#[test]
fn huge_error_message_hits_the_output_cap() {
    let host = host();
    let p = pricing(
        &host,
        r#"
    (func (export "price") (param i32) (result i32)
      (drop (memory.grow (i32.const 17)))
      (memory.fill (i32.const 65536) (i32.const 65) (i32.const 1048576))
      (i32.store8 (i32.const 0) (i32.const 1))
      (i32.store8 (i32.const 8) (i32.const 2))
      (i32.store (i32.const 12) (i32.const 65536))
      (i32.store (i32.const 16) (i32.const 1048576))
      (i32.const 0))
"#,
    );
    assert_limit(
        p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err(),
        Limit::Output,
    );
    still_serving(&host);
}

#[test]
fn huge_waitlist_answer_hits_the_output_cap() {
    let host = host();
    // 200,000 indices (800 KB) of zeros.
    let p = waitlist(
        &host,
        r#"
    (func (export "choose") (param i32) (result i32)
      (drop (memory.grow (i32.const 13)))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (i32.const 65536))
      (i32.store (i32.const 8) (i32.const 200000))
      (i32.const 0))
"#,
    );
    let req = offer_req(2, vec![waiting(1, 1, None), waiting(1, 2, None)]);
    assert_limit(p.call(&req).unwrap_err(), Limit::Output);
    still_serving(&host);
}

#[test]
fn stack_overflow_hits_the_stack_limit() {
    let host = host();
    let p = pricing(
        &host,
        r#"
    (func $r (param i32) (result i32)
      (i32.add (call $r (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
    (func (export "price") (param i32) (result i32)
      (drop (call $r (i32.const 0)))
      (i32.const 0))
"#,
    );
    assert_limit(
        p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err(),
        Limit::Stack,
    );
    still_serving(&host);
}

#[test]
fn trap_is_a_typed_error() {
    let host = host();
    let p = pricing(
        &host,
        r#"
    (func (export "price") (param i32) (result i32) unreachable)
"#,
    );
    match p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err() {
        PluginError::Trap { plugin, message } => {
            assert_eq!(plugin, "hostile");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // Integer division by zero is a trap too.
    let p = pricing(
        &host,
        r#"
    (func (export "price") (param i32) (result i32)
      (drop (i32.div_u (i32.const 1) (i32.sub (local.get 0) (local.get 0))))
      (i32.const 0))
"#,
    );
    assert!(matches!(
        p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err(),
        PluginError::Trap { .. }
    ));
    still_serving(&host);
}

#[test]
fn capability_imports_are_refused_at_load() {
    let host = host();
    let clock = r#"(import "wasi:clocks/wall-clock@0.2.0" (instance $clock
        (export "now" (func (result u64)))))"#;
    let wasm = wat::parse_str(pricing_component_with(clock, FIXED_QUOTE)).unwrap();
    match host.load_pricing("clock", &wasm).unwrap_err() {
        PluginError::ForbiddenImport { plugin, import } => {
            assert_eq!(plugin, "clock");
            assert_eq!(import, "wasi:clocks/wall-clock@0.2.0");
        }
        other => panic!("expected ForbiddenImport, got {other:?}"),
    }
    // A function smuggled in under the name of the (type-only) shared interface is refused too.
    let smuggled = r#"(import "evently:policy/types@1.0.0" (instance $t
        (export "leak" (func (result u64)))))"#;
    let wasm = wat::parse_str(pricing_component_with(smuggled, FIXED_QUOTE)).unwrap();
    assert!(matches!(
        host.load_pricing("smuggled", &wasm).unwrap_err(),
        PluginError::ForbiddenImport { .. }
    ));
    // A bare function import.
    let func = r#"(import "log" (func (param "msg" string)))"#;
    let wasm = wat::parse_str(pricing_component_with(func, FIXED_QUOTE)).unwrap();
    assert!(matches!(
        host.load_pricing("log", &wasm).unwrap_err(),
        PluginError::ForbiddenImport { .. }
    ));
    still_serving(&host);
}

#[test]
fn bytes_that_are_not_a_component_are_refused_at_load() {
    let host = host();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"hello, I am not wasm".to_vec()),
        ("empty", Vec::new()),
        ("wat-source", pricing_component(FIXED_QUOTE).into_bytes()),
        (
            "core-module",
            wat::parse_str(r#"(module (func (export "price")))"#).unwrap(),
        ),
        ("bad-version", b"\0asm\x07\x00\x00\x00".to_vec()),
    ];
    for (name, bytes) in cases {
        match host.load_pricing(name, &bytes).unwrap_err() {
            PluginError::NotAComponent { plugin, .. } => assert_eq!(plugin, name),
            other => panic!("{name}: expected NotAComponent, got {other:?}"),
        }
    }
    // A component header followed by garbage, and a truncated component.
    let mut garbage = b"\0asm\x0d\x00\x01\x00".to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    assert!(matches!(
        host.load_pricing("garbage", &garbage).unwrap_err(),
        PluginError::Compile { .. }
    ));
    let good = reference_plugin("group-discount");
    assert!(matches!(
        host.load_pricing("truncated", &good[..good.len() / 2])
            .unwrap_err(),
        PluginError::Compile { .. }
    ));
    still_serving(&host);
}

#[test]
fn wrong_interface_is_refused_at_load() {
    let host = host();
    // Another version of the interface.
    let v2 = pricing_component(FIXED_QUOTE).replace("pricing@1.0.0", "pricing@2.0.0");
    assert!(matches!(
        host.load_pricing("v2", &wat::parse_str(v2).unwrap())
            .unwrap_err(),
        PluginError::Interface { .. }
    ));
    // A waitlist plugin loaded as pricing, and the other way round.
    assert!(matches!(
        host.load_pricing("tiered", &reference_plugin("tiered-waitlist"))
            .unwrap_err(),
        PluginError::Interface { .. }
    ));
    assert!(matches!(
        host.load_waitlist("surge", &reference_plugin("early-bird-surge"))
            .unwrap_err(),
        PluginError::Interface { .. }
    ));
    // The right name with another signature.
    let wrong = r#"(component
      (core module $m (func (export "price") (result i32) (i32.const 7)))
      (core instance $i (instantiate $m))
      (func $f (result u32) (canon lift (core func $i "price")))
      (instance $inst (export "price" (func $f)))
      (export "evently:policy/pricing@1.0.0" (instance $inst)))"#;
    let e = host
        .load_pricing("wrong", &wat::parse_str(wrong).unwrap())
        .unwrap_err();
    assert!(matches!(e, PluginError::Interface { .. }), "{e:?}");
    still_serving(&host);
}

#[test]
fn modules_that_cannot_fit_the_limits_are_refused_at_load() {
    let host = host();
    // 1,000 pages (62.5 MiB) of initial memory, over the 16 MiB cap.
    let wasm = wat::parse_str(pricing_component_pages(1000, FIXED_QUOTE)).unwrap();
    assert!(matches!(
        host.load_pricing("fat", &wasm).unwrap_err(),
        PluginError::TooLarge { .. } | PluginError::Compile { .. }
    ));
    // A start function that never returns.
    let spin = format!("(func $spin (loop $l (br $l))) (start $spin) {FIXED_QUOTE}");
    let wasm = wat::parse_str(pricing_component(&spin)).unwrap();
    match host.load_pricing("spin", &wasm).unwrap_err() {
        PluginError::TooLarge { message, .. } => assert!(
            message.contains("time") || message.contains("fuel"),
            "{message}"
        ),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    still_serving(&host);
}

#[test]
fn malformed_output_is_invalid_output() {
    let host = host();
    let cases = [
        (
            "discriminant",
            r#"(func (export "price") (param i32) (result i32)
                 (i32.store8 (i32.const 0) (i32.const 7)) (i32.const 0))"#,
        ),
        (
            "string out of bounds",
            r#"(func (export "price") (param i32) (result i32)
                 (i32.store8 (i32.const 0) (i32.const 1))
                 (i32.store (i32.const 12) (i32.const 0x7fff0000))
                 (i32.store (i32.const 16) (i32.const 100)) (i32.const 0))"#,
        ),
        (
            "invalid utf-8",
            r#"(data (i32.const 1024) "\ff\fe\fd")
               (func (export "price") (param i32) (result i32)
                 (i32.store8 (i32.const 0) (i32.const 1))
                 (i32.store (i32.const 12) (i32.const 1024))
                 (i32.store (i32.const 16) (i32.const 3)) (i32.const 0))"#,
        ),
        (
            "return pointer out of bounds",
            r#"(func (export "price") (param i32) (result i32) (i32.const -8))"#,
        ),
    ];
    for (name, core) in cases {
        match pricing(&host, core)
            .call(&quote_req(1, event(100, 0, 1000, 10)))
            .unwrap_err()
        {
            PluginError::InvalidOutput { message, .. } => eprintln!("{name}: {message}"),
            other => panic!("{name}: expected InvalidOutput, got {other:?}"),
        }
    }
    still_serving(&host);
}

#[test]
fn out_of_range_answers_are_invalid_output() {
    let host = host();
    let negative = pricing(
        &host,
        r#"(func (export "price") (param i32) (result i32)
             (i32.store8 (i32.const 0) (i32.const 0))
             (i64.store (i32.const 8) (i64.const -1))
             (i64.store (i32.const 16) (i64.const -2)) (i32.const 0))"#,
    );
    assert!(matches!(
        negative
            .call(&quote_req(2, event(100, 0, 1000, 10)))
            .unwrap_err(),
        PluginError::InvalidOutput { .. }
    ));

    // Waitlist answers: two entries wanting 2 seats each, 3 seats free.
    let req = offer_req(3, vec![waiting(2, 1, None), waiting(2, 2, None)]);
    let answer = |list: &str| {
        format!(
            r#"(data (i32.const 1024) "{list}")
               (func (export "choose") (param i32) (result i32)
                 (i32.store8 (i32.const 0) (i32.const 0))
                 (i32.store (i32.const 4) (i32.const 1024))
                 (i32.store (i32.const 8) (i32.const {n})) (i32.const 0))"#,
            n = list.len() / 12
        )
    };
    for (name, list) in [
        ("unknown entry", r"\07\00\00\00"),
        ("chosen twice", r"\00\00\00\00\00\00\00\00"),
        ("more seats than freed", r"\00\00\00\00\01\00\00\00"),
    ] {
        match waitlist(&host, &answer(list)).call(&req).unwrap_err() {
            PluginError::InvalidOutput { message, .. } => {
                eprintln!("{name}: {message}")
            }
            other => panic!("{name}: expected InvalidOutput, got {other:?}"),
        }
    }
    // The same shape with a valid answer is accepted.
    assert_eq!(
        waitlist(&host, &answer(r"\01\00\00\00"))
            .call(&req)
            .unwrap(),
        vec![1]
    );
    still_serving(&host);
}

#[test]
fn a_plugin_declining_is_a_typed_error() {
    let host = host();
    let p = pricing(
        &host,
        r#"(data (i32.const 1024) "sold elsewhere")
           (func (export "price") (param i32) (result i32)
             (i32.store8 (i32.const 0) (i32.const 1))
             (i32.store8 (i32.const 8) (i32.const 1))
             (i32.store (i32.const 12) (i32.const 1024))
             (i32.store (i32.const 16) (i32.const 14)) (i32.const 0))"#,
    );
    match p.call(&quote_req(1, event(100, 0, 1000, 10))).unwrap_err() {
        PluginError::Declined { code, message, .. } => {
            assert_eq!(code, "unsupported");
            assert_eq!(message, "sold elsewhere");
        }
        other => panic!("expected Declined, got {other:?}"),
    }
}

#[test]
fn errors_convert_into_the_core_policy_error() {
    use evently_core::PolicyError;
    let host = host();
    let p = pricing(&host, INFINITE_LOOP);
    let e: PolicyError = p
        .call(&quote_req(1, event(100, 0, 1000, 10)))
        .unwrap_err()
        .into();
    match e {
        PolicyError::LimitExceeded { policy, limit } => {
            assert_eq!(policy, "hostile");
            assert!(limit == "time" || limit == "fuel", "{limit}");
        }
        other => panic!("{other:?}"),
    }
}
