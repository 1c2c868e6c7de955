//! The reference plugins built from source by `scripts/build-plugins`, called directly, and the
//! compiled-code cache.

mod common;

use std::time::Duration;

use common::*;
use evently_plugins::{HostConfig, Limits, LoadedPlugin, PluginError, PluginHost};

fn config() -> HostConfig {
    HostConfig {
        limits: Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..HostConfig::default()
    }
}

#[test]
fn early_bird_surge_prices() {
    let host = PluginHost::new(config()).unwrap();
    let p = host
        .load_pricing("early-bird-surge", &reference_plugin("early-bird-surge"))
        .unwrap();
    let total = |q, ev| p.call(&quote_req(q, ev)).unwrap().total;
    assert_eq!(total(2, event(100, 0, 1000, 40)), 1600); // early bird
    assert_eq!(total(2, event(100, 0, 1000, 30)), 1600); // exactly 30 days
    assert_eq!(total(2, event(100, 0, 1000, 29)), 2000);
    assert_eq!(total(1, event(100, 49, 1000, 10)), 1000);
    assert_eq!(total(1, event(100, 50, 1000, 10)), 1100);
    assert_eq!(total(1, event(100, 75, 1000, 10)), 1250);
    assert_eq!(total(1, event(100, 90, 1000, 10)), 1500);
    assert_eq!(total(1, event(100, 90, 1000, 40)), 1300);
    assert_eq!(total(3, event(100, 0, 999, 40)), 3 * 799); // rounded half up
    // Quantity 0 is the plugin's own `invalid-request` error.
    match p.call(&quote_req(0, event(100, 0, 1000, 10))).unwrap_err() {
        PluginError::Declined { code, .. } => assert_eq!(code, "invalid-request"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_discount_prices() {
    let host = PluginHost::new(config()).unwrap();
    let p = host
        .load_pricing("group-discount", &reference_plugin("group-discount"))
        .unwrap();
    let q = |n| p.call(&quote_req(n, event(100, 0, 1000, 10))).unwrap();
    assert_eq!((q(4).unit_price, q(4).total), (1000, 4000));
    assert_eq!((q(5).unit_price, q(5).total), (900, 4500));
    assert_eq!((q(9).unit_price, q(9).total), (900, 8100));
    assert_eq!((q(10).unit_price, q(10).total), (850, 8500));
}

#[test]
fn tiered_waitlist_orders_by_tier_then_join_order() {
    let host = PluginHost::new(config()).unwrap();
    let p = host
        .load_waitlist("tiered-waitlist", &reference_plugin("tiered-waitlist"))
        .unwrap();
    let entries = || {
        vec![
            waiting(1, 1, None),
            waiting(1, 2, Some("member")),
            waiting(2, 3, Some("vip")),
            waiting(1, 4, Some("member")),
            waiting(1, 5, Some("gold")), // unknown tier: like no tier
        ]
    };
    assert_eq!(p.call(&offer_req(3, entries())).unwrap(), vec![2, 1]);
    assert_eq!(p.call(&offer_req(4, entries())).unwrap(), vec![2, 1, 3]);
    assert_eq!(
        p.call(&offer_req(6, entries())).unwrap(),
        vec![2, 1, 3, 0, 4]
    );
    // The vip wants 2 and only 1 is free: nobody overtakes them.
    assert_eq!(p.call(&offer_req(1, entries())).unwrap(), Vec::<u32>::new());
    assert_eq!(p.call(&offer_req(1, vec![])).unwrap(), Vec::<u32>::new());
}

#[test]
fn load_detects_the_hook() {
    let host = PluginHost::new(config()).unwrap();
    assert!(matches!(
        host.load_file(reference_plugin_path("tiered-waitlist"))
            .unwrap(),
        LoadedPlugin::Waitlist(_)
    ));
    match host
        .load_file(reference_plugin_path("group-discount"))
        .unwrap()
    {
        LoadedPlugin::Pricing(p) => {
            assert_eq!(
                evently_core::PricingPolicy::name(&*p),
                "wasm:group-discount"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        host.load_file("/nonexistent/plugin.wasm").unwrap_err(),
        PluginError::Io { .. }
    ));
}

#[test]
fn compiled_code_is_cached_on_disk_by_module_hash_and_wasmtime_version() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("plugin-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let wasm = reference_plugin("group-discount");
    let cfg = HostConfig {
        cache_dir: Some(dir.clone()),
        ..config()
    };

    // First host: compiles once, writes one file; loading again reuses it in memory.
    let first = PluginHost::new(cfg.clone()).unwrap();
    let p = first.load_pricing("g", &wasm).unwrap();
    first.load_pricing("g-again", &wasm).unwrap();
    assert_eq!(first.stats().compiled, 1);
    assert_eq!(first.stats().memory_hits, 1);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(p.module_sha256()), "{files:?}");
    assert!(files[0].contains("-wasmtime48-"), "{files:?}");

    // A second host (a restart): no compilation, the artifact comes from disk and works.
    let second = PluginHost::new(cfg.clone()).unwrap();
    let p = second.load_pricing("g", &wasm).unwrap();
    assert_eq!(second.stats().compiled, 0);
    assert_eq!(second.stats().disk_hits, 1);
    assert_eq!(
        p.call(&quote_req(5, event(100, 0, 1000, 10)))
            .unwrap()
            .total,
        4500
    );

    // A corrupt cache file is ignored and replaced.
    let path = dir.join(&files[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let third = PluginHost::new(cfg.clone()).unwrap();
    let p = third.load_pricing("g", &wasm).unwrap();
    assert_eq!(third.stats().compiled, 1);
    assert_eq!(
        p.call(&quote_req(5, event(100, 0, 1000, 10)))
            .unwrap()
            .total,
        4500
    );
    let fourth = PluginHost::new(cfg).unwrap();
    fourth.load_pricing("g", &wasm).unwrap();
    assert_eq!(fourth.stats().disk_hits, 1);

    // Other limits give another engine configuration, hence another cache key.
    let other = PluginHost::new(HostConfig {
        cache_dir: Some(dir.clone()),
        limits: Limits {
            fuel: None,
            ..config().limits
        },
        ..HostConfig::default()
    })
    .unwrap();
    other.load_pricing("g", &wasm).unwrap();
    assert_eq!(other.stats().compiled, 1);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_configuration_is_refused() {
    for limits in [
        Limits {
            timeout: Duration::from_micros(500),
            ..Limits::default()
        },
        Limits {
            memory_bytes: 1024,
            ..Limits::default()
        },
        Limits {
            fuel: Some(0),
            ..Limits::default()
        },
    ] {
        assert!(matches!(
            PluginHost::new(HostConfig {
                limits,
                ..HostConfig::default()
            })
            .unwrap_err(),
            PluginError::Config { .. }
        ));
    }
}
