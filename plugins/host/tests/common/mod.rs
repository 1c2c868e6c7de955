//! Shared helpers: the reference plugins built by `scripts/build-plugins`, sample requests, and WAT
//! components for hostile-plugin tests.
#![allow(dead_code)]

use std::path::PathBuf;

use evently_plugins::bindings::{
    Attribute, Buyer, EventInfo, Money, OfferRequest, QuoteRequest, Role, WaitingEntry,
};

/// Directory of the reference plugins: `$EVENTLY_PLUGIN_DIR`, else `<workspace>/target/plugins`.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("EVENTLY_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

/// Bytes of a reference plugin. Panics with instructions when it has not been built: these tests
/// never skip.
pub fn reference_plugin(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reference plugin {} is missing ({e}): run scripts/build-plugins first \
             (or set EVENTLY_PLUGIN_DIR to where it put them)",
            path.display()
        )
    })
}

pub fn reference_plugin_path(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "reference plugin {} is missing: run scripts/build-plugins first",
        path.display()
    );
    path
}

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
pub const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub fn event(capacity: u32, taken: u32, price: i64, starts_in_days: i64) -> EventInfo {
    EventInfo {
        id: "0196f0d2-0000-7000-8000-000000000001".into(),
        name: "RustConf".into(),
        category: "conference".into(),
        venue: "Hall A".into(),
        starts_at: NOW + starts_in_days * DAY_MS,
        ends_at: NOW + (starts_in_days + 1) * DAY_MS,
        capacity,
        seats_held: 0,
        seats_confirmed: taken,
        seats_free: capacity - taken,
        price: Money {
            minor: price,
            currency: "EUR".into(),
        },
    }
}

pub fn quote_req(quantity: u32, event: EventInfo) -> QuoteRequest {
    QuoteRequest {
        event,
        quantity,
        buyer: Buyer {
            user_id: "0196f0d2-0000-7000-8000-000000000002".into(),
            role: Role::User,
            attributes: vec![],
        },
        now: NOW,
    }
}

pub fn waiting(quantity: u32, position: u32, tier: Option<&str>) -> WaitingEntry {
    WaitingEntry {
        id: format!("0196f0d2-0000-7000-8000-{position:012}"),
        user_id: format!("0196f0d2-0000-7000-9000-{position:012}"),
        quantity,
        position,
        joined_at: NOW + i64::from(position),
        attributes: tier
            .map(|t| {
                vec![Attribute {
                    key: "tier".into(),
                    value: t.into(),
                }]
            })
            .unwrap_or_default(),
    }
}

pub fn offer_req(free_seats: u32, waiting: Vec<WaitingEntry>) -> OfferRequest {
    OfferRequest {
        event: event(10, 10 - free_seats, 1000, 10),
        free_seats,
        waiting,
        now: NOW,
    }
}

/// The WIT types of `policy.wit` in component-model text, shared by the WAT components below.
const TYPES: &str = r#"
  (type $money-t (record (field "minor" s64) (field "currency" string)))
  (export $money "money" (type $money-t))
  (type $attribute-t (record (field "key" string) (field "value" string)))
  (export $attribute "attribute" (type $attribute-t))
  (type $role-t (enum "admin" "user"))
  (export $role "role" (type $role-t))
  (type $event-info-t (record
    (field "id" string) (field "name" string) (field "category" string) (field "venue" string)
    (field "starts-at" s64) (field "ends-at" s64) (field "capacity" u32) (field "seats-held" u32)
    (field "seats-confirmed" u32) (field "seats-free" u32) (field "price" $money)))
  (export $event-info "event-info" (type $event-info-t))
  (type $error-code-t (enum "invalid-request" "unsupported" "internal"))
  (export $error-code "error-code" (type $error-code-t))
  (type $policy-error-t (record (field "code" $error-code) (field "message" string)))
  (export $policy-error "policy-error" (type $policy-error-t))
  (type $buyer-t (record (field "user-id" string) (field "role" $role) (field "attributes" (list $attribute))))
  (export $buyer "buyer" (type $buyer-t))
  (type $quote-request-t (record (field "event" $event-info) (field "quantity" u32) (field "buyer" $buyer) (field "now" s64)))
  (export $quote-request "quote-request" (type $quote-request-t))
  (type $quote-t (record (field "unit-price" s64) (field "total" s64)))
  (export $quote "quote" (type $quote-t))
  (type $waiting-entry-t (record
    (field "id" string) (field "user-id" string) (field "quantity" u32) (field "position" u32)
    (field "joined-at" s64) (field "attributes" (list $attribute))))
  (export $waiting-entry "waiting-entry" (type $waiting-entry-t))
  (type $offer-request-t (record (field "event" $event-info) (field "free-seats" u32)
    (field "waiting" (list $waiting-entry)) (field "now" s64)))
  (export $offer-request "offer-request" (type $offer-request-t))
"#;

/// The core module's memory and a bump allocator (`cabi_realloc`) for the host to write arguments.
const CORE_PRELUDE: &str = r#"
    (memory (export "memory") {pages})
    (global $bump (mut i32) (i32.const 8192))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (block $ok
        (br_if $ok (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
        (br_if $ok (i32.ne (i32.const -1) (memory.grow
          (i32.add (i32.const 1) (i32.shr_u
            (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536)))
            (i32.const 16))))))
        unreachable)
      (local.get $p))
"#;

/// A pricing component whose core module defines `(func (export "price") (param i32) (result i32))`
/// (and anything else) in `core`. The canonical ABI passes a pointer to the request and expects a
/// pointer to the result: byte 0 the result case (0 ok, 1 err), then at offset 8 either
/// `unit-price: s64, total: s64` or `code: u8` and at 12/16 the message's pointer and length.
pub fn pricing_component(core: &str) -> String {
    component(core, "price", "$price-ty", "pricing", "", 1)
}

/// Like [`pricing_component`] with `pages` 64-KiB pages of initial memory.
pub fn pricing_component_pages(pages: u32, core: &str) -> String {
    component(core, "price", "$price-ty", "pricing", "", pages)
}

/// A waitlist component whose core module defines `(func (export "choose") (param i32) (result i32))`.
/// The result: byte 0 the case, then at 4/8 the list's pointer and length (ok) or at 4 the code and
/// at 8/12 the message (err).
pub fn waitlist_component(core: &str) -> String {
    component(core, "choose", "$choose-ty", "waitlist", "", 1)
}

/// Like [`pricing_component`], with extra component-level items (e.g. an import) placed first.
pub fn pricing_component_with(prefix: &str, core: &str) -> String {
    component(core, "price", "$price-ty", "pricing", prefix, 1)
}

fn component(core: &str, func: &str, ty: &str, iface: &str, prefix: &str, pages: u32) -> String {
    let prelude = CORE_PRELUDE.replace("{pages}", &pages.to_string());
    format!(
        r#"(component
  {prefix}
  (core module $m
    {prelude}
    {core}
  )
  (core instance $i (instantiate $m))
  {TYPES}
  (type $price-ty (func (param "request" $quote-request) (result (result $quote (error $policy-error)))))
  (type $choose-ty (func (param "request" $offer-request) (result (result (list u32) (error $policy-error)))))
  (func $f (type {ty}) (canon lift (core func $i "{func}") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (instance $inst (export "{func}" (func $f)))
  (export "evently:policy/{iface}@1.0.0" (instance $inst))
)"#
    )
}

/// A well-behaved pricing component: always `unit-price = 100, total = 200`.
pub const FIXED_QUOTE: &str = r#"
    (func (export "price") (param i32) (result i32)
      (i32.store8 (i32.const 0) (i32.const 0))
      (i64.store (i32.const 8) (i64.const 100))
      (i64.store (i32.const 16) (i64.const 200))
      (i32.const 0))
"#;
