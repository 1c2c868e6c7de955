//! `evently-plugin`: checks a policy plugin before it is deployed.
//!
//! ```text
//! evently-plugin check FILE.wasm [--input SAMPLE.json] [--timeout-ms N] [--fuel N|none] [--memory-mib N]
//! ```
//!
//! Loads the component exactly as the host does (refusing non-components, imports and wrong
//! interfaces), prints which hook it implements, and with `--input` runs it once on the sample request
//! and prints the validated answer as JSON with the fuel and time it took. Exit status: 0 when
//! everything passed, 1 when the plugin was refused or failed, 2 on a usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use evently_plugins::sample::SampleInput;
use evently_plugins::{HostConfig, Limits, LoadedPlugin, PluginHost};

const USAGE: &str = "usage: evently-plugin check FILE.wasm [--input SAMPLE.json] [--timeout-ms N] \
                     [--fuel N|none] [--memory-mib N]";

struct Args {
    file: PathBuf,
    input: Option<PathBuf>,
    limits: Limits,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    match args.next().as_deref() {
        Some("check") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_string()),
        Some(other) => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    let mut file = None;
    let mut input = None;
    let mut limits = Limits::default();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a whole number"))
        };
        match a.as_str() {
            "--input" => input = Some(PathBuf::from(value("--input")?)),
            "--timeout-ms" => {
                limits.timeout =
                    Duration::from_millis(number("--timeout-ms", value("--timeout-ms")?)?)
            }
            "--fuel" => {
                let v = value("--fuel")?;
                limits.fuel = if v == "none" {
                    None
                } else {
                    Some(number("--fuel", v)?)
                };
            }
            "--memory-mib" => {
                let mib = number("--memory-mib", value("--memory-mib")?)?;
                limits.memory_bytes = usize::try_from(mib.saturating_mul(1 << 20))
                    .map_err(|_| "--memory-mib is too large".to_string())?;
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if file.is_none() => file = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        file: file.ok_or_else(|| format!("missing FILE.wasm\n{USAGE}"))?,
        input,
        limits,
    })
}

fn check(args: Args) -> Result<(), String> {
    let sample = match &args.input {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(
                serde_json::from_str::<SampleInput>(&text)
                    .map_err(|e| format!("{} is not a sample input: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let host = PluginHost::new(HostConfig {
        limits: args.limits,
        ..HostConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let plugin = host.load_file(&args.file).map_err(|e| e.to_string())?;
    let (hook, interface, sha) = match &plugin {
        LoadedPlugin::Pricing(p) => (
            "pricing",
            evently_plugins::bindings::PRICING_INTERFACE,
            p.module_sha256(),
        ),
        LoadedPlugin::Waitlist(p) => (
            "waitlist",
            evently_plugins::bindings::WAITLIST_INTERFACE,
            p.module_sha256(),
        ),
    };
    println!("module:  {}", args.file.display());
    println!("sha256:  {sha}");
    println!("hook:    {hook} ({interface})");
    println!("imports: no functions (plugins are granted no capabilities)");
    let Some(sample) = sample else {
        println!("ok: the module implements the interface (no --input given, not run)");
        return Ok(());
    };
    let (answer, fuel, elapsed) = match (&plugin, &sample) {
        (LoadedPlugin::Pricing(p), SampleInput::Pricing(req)) => {
            let r = p.call_with_report(req);
            (
                r.answer.map(|q| serde_json::to_string(&q)),
                r.fuel_used,
                r.elapsed,
            )
        }
        (LoadedPlugin::Waitlist(p), SampleInput::Waitlist(req)) => {
            let r = p.call_with_report(req);
            (
                r.answer.map(|q| serde_json::to_string(&q)),
                r.fuel_used,
                r.elapsed,
            )
        }
        _ => {
            return Err(format!(
                "the sample is a {} request but the module is a {hook} plugin",
                sample.hook()
            ));
        }
    };
    let fuel = fuel.map_or("not metered".to_string(), |f| f.to_string());
    println!("fuel:    {fuel}");
    println!("time:    {elapsed:?} (one cold call, instantiation included)");
    match answer {
        Ok(json) => {
            println!(
                "answer:  {}",
                json.map_err(|e| format!("cannot print the answer: {e}"))?
            );
            println!("ok");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match check(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
