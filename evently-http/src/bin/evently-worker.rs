//! `evently-worker`: runs Evently's background jobs (e-mail notifications with PDF tickets, hold and
//! offer expiry) against the configured store (SQLite by default, or PostgreSQL) and job queue (the
//! store's own, or Redis), next to or apart from the `evently` server.
//!
//! ```text
//! evently-worker [run]   poll for due jobs until SIGINT/SIGTERM (default)
//! evently-worker once    run everything due now, then exit
//! ```
//!
//! Configuration comes from the environment: the database as for the server
//! (`evently_http::config`), mail from `evently_http::notify::email::EmailConfig`, web push (when
//! `EVENTLY_VAPID_*` is set) from `evently_http::notify::push::PushConfig`, polling from
//! `evently_http::worker::WorkerConfig`; logging from `RUST_LOG` (default `info`).

use std::process::ExitCode;

use anyhow::Context;
use evently_http::Config;
use evently_http::backend::Backend;
use evently_http::cli;
use evently_http::worker::{Worker, WorkerConfig, shutdown_signal};

const USAGE: &str = "\
usage: evently-worker [COMMAND]

commands:
  run       poll for due jobs until SIGINT/SIGTERM (the default)
  once      run every job due now, then exit (non-zero status if a step failed)
  help      print this help

environment:
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Once,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    cli::parse_command(
        args,
        Command::Run,
        &[
            ("run", Command::Run),
            ("once", Command::Once),
            ("help", Command::Help),
        ],
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("evently-worker: {e}\n\n{USAGE}{}", cli::ENV_HELP);
            return ExitCode::from(2);
        }
    };
    if command == Command::Help {
        print!("{USAGE}{}", cli::ENV_HELP);
        return ExitCode::SUCCESS;
    }
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let config = Config::from_env().context("reading the configuration")?;
    let worker_config = WorkerConfig::from_env().context("reading the worker configuration")?;
    let backend = Backend::open(&config).await?;
    tracing::info!(backend = ?backend, "evently-worker starting");
    let engine = backend.engine_from_env(&worker_config)?.engine;
    let worker = Worker::new(engine).with_config(worker_config);
    let result = match command {
        Command::Once => {
            let pass = worker.run_once().await;
            tracing::info!(
                holds_expired = pass.holds_expired,
                relayed = pass.relayed,
                claimed = pass.jobs.claimed,
                succeeded = pass.jobs.succeeded,
                retried = pass.jobs.retried,
                dead = pass.jobs.dead,
                "pass done"
            );
            if pass.failures > 0 {
                Err(anyhow::anyhow!(
                    "{} step(s) of the pass failed (see the log)",
                    pass.failures
                ))
            } else {
                Ok(())
            }
        }
        Command::Run | Command::Help => {
            worker.run(shutdown_signal()).await;
            Ok(())
        }
    };
    backend.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands() {
        assert_eq!(parse_args(&args(&[])), Ok(Command::Run));
        assert_eq!(parse_args(&args(&["run"])), Ok(Command::Run));
        assert_eq!(parse_args(&args(&["once"])), Ok(Command::Once));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Command::Help));
        assert!(parse_args(&args(&["twice"])).is_err());
        assert!(parse_args(&args(&["run", "now"])).is_err());
    }
}
