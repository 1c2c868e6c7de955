//! `evently-plugin check` on the reference plugins, the sample inputs and refused modules.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/samples")
}

/// Runs `evently-plugin check` with `args`. Unless the test sets its own, the call gets a generous
/// `--timeout-ms`: the first call includes instantiation and these tests run in parallel with others
/// on a small machine, so the default deadline could fire for want of a CPU (the deadline itself is
/// tested in `tests/deadline.rs`).
fn check(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evently-plugin"));
    cmd.arg("check").args(args);
    if !args.iter().any(|a| *a == "--timeout-ms") {
        cmd.args(["--timeout-ms", "2000"]);
    }
    let out = cmd.output().expect("run evently-plugin");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_runs_a_pricing_plugin_on_the_sample() {
    let wasm = common::reference_plugin_path("early-bird-surge");
    let input = samples().join("pricing.json");
    let (code, out, err) = check(&[wasm.as_os_str(), "--input".as_ref(), input.as_os_str()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("hook:    pricing (evently:policy/pricing@1.0.0)"),
        "{out}"
    );
    // 59 days ahead (early bird, -20) at 55% occupancy (+10): 90% of 100.00, five seats.
    assert!(
        out.contains(r#"answer:  {"unit_price":9000,"total":45000}"#),
        "{out}"
    );
}

#[test]
fn check_runs_a_waitlist_plugin_on_the_sample() {
    let wasm = common::reference_plugin_path("tiered-waitlist");
    let input = samples().join("waitlist.json");
    let (code, out, err) = check(&[wasm.as_os_str(), "--input".as_ref(), input.as_os_str()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("answer:  [2,1]"), "{out}");
}

#[test]
fn check_without_input_only_validates() {
    let wasm = common::reference_plugin_path("group-discount");
    let (code, out, _) = check(&[wasm.as_os_str()]);
    assert_eq!(code, 0);
    assert!(out.contains("not run"), "{out}");
}

#[test]
fn check_fails_on_refused_modules_and_mismatched_samples() {
    let not_wasm = samples().join("pricing.json");
    let (code, _, err) = check(&[not_wasm.as_os_str()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a WebAssembly component"), "{err}");

    let wasm = common::reference_plugin_path("tiered-waitlist");
    let input = samples().join("pricing.json");
    let (code, _, err) = check(&[wasm.as_os_str(), "--input".as_ref(), input.as_os_str()]);
    assert_eq!(code, 1);
    assert!(err.contains("is a waitlist plugin"), "{err}");

    // A fuel budget too small for the plugin: a typed limit error.
    let wasm = common::reference_plugin_path("early-bird-surge");
    let input = samples().join("pricing.json");
    let (code, _, err) = check(&[
        wasm.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--fuel".as_ref(),
        "100".as_ref(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("exceeded its fuel limit"), "{err}");

    let (code, _, err) = check(&["--bogus".as_ref()]);
    assert_eq!(code, 2, "{err}");
}
