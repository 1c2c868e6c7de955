//! `evently`: the reference server, on the embedded SQLite store by default or on PostgreSQL
//! (`EVENTLY_DATABASE_URL=postgres://…`), with its job queue in the database or in Redis
//! (`EVENTLY_QUEUE=redis`).
//!
//! ```text
//! evently [serve]    run the HTTP API (default)
//! evently migrate    apply the database migrations and exit
//! evently vapid-keys print a new VAPID key pair for web push and exit
//! ```
//!
//! `migrate` also takes a PostgreSQL URL (`postgres://…`) in `EVENTLY_DATABASE_URL` and applies
//! `migrations/postgres` there, with the pool settings of `evently_storage::postgres::env`.
//!
//! Configuration comes from the environment (see `evently_http::config`); logging from `RUST_LOG`
//! (default `info`).

use std::process::ExitCode;

use anyhow::Context;
use evently_http::backend::{Backend, EnvEngine};
use evently_http::cli;
use evently_http::notify::VapidKeys;
use evently_http::worker::{Worker, WorkerConfig, shutdown_signal};
use evently_http::{AppState, Config, app};
use evently_storage::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};
use tokio::sync::watch;

const USAGE: &str = "\
usage: evently [COMMAND]

commands:
  serve     run the HTTP API (the default)
  migrate   apply the database migrations and exit (SQLite, or PostgreSQL for a postgres:// URL)
  vapid-keys  print a new VAPID key pair for web push (EVENTLY_VAPID_PRIVATE_KEY and the public key)
  help      print this help

environment:
  EVENTLY_BIND                listen address (default 127.0.0.1:8080)
  EVENTLY_JWT_SECRET          token signing secret, >= 32 bytes (default: random per process)
  EVENTLY_JWT_TTL_SECS        token lifetime in seconds (default 3600)
  EVENTLY_ADMIN_EMAIL         with EVENTLY_ADMIN_PASSWORD: admin account created at start if missing
  EVENTLY_ADMIN_PASSWORD
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Serve,
    Migrate,
    VapidKeys,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    cli::parse_command(
        args,
        Command::Serve,
        &[
            ("serve", Command::Serve),
            ("migrate", Command::Migrate),
            ("vapid-keys", Command::VapidKeys),
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
            eprintln!("evently: {e}\n\n{USAGE}{}", cli::ENV_HELP);
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}{}", cli::ENV_HELP);
            Ok(())
        }
        Command::Migrate => migrate().await,
        Command::VapidKeys => {
            let keys = VapidKeys::generate();
            print!(
                "EVENTLY_VAPID_PRIVATE_KEY={}\n# public key (applicationServerKey, served at GET /push/vapid-public-key):\n# {}\n",
                keys.private_key_base64url(),
                keys.public_key_base64url()
            );
            Ok(())
        }
        Command::Serve => serve().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `url` names a PostgreSQL database.
fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

async fn migrate() -> anyhow::Result<()> {
    let url = std::env::var(evently_storage::postgres::env::URL).unwrap_or_default();
    if is_postgres_url(&url) {
        return migrate_postgres().await;
    }
    let config = Config::from_env().context("reading the configuration")?;
    // Opening applies the embedded migrations that have not run yet.
    let store = SqliteStore::open(SqliteConfig::new(config.database_url.clone()))
        .await
        .with_context(|| format!("opening the database {}", config.database_url))?;
    store.close().await;
    tracing::info!(database = %config.database_url, "migrations applied");
    Ok(())
}

/// `evently migrate` on PostgreSQL: the store's own configuration from the environment
/// (`EVENTLY_DATABASE_*`), migrations applied explicitly rather than at open.
async fn migrate_postgres() -> anyhow::Result<()> {
    let mut config = PostgresConfig::from_env().context("reading the PostgreSQL configuration")?;
    config.run_migrations = false;
    let store = PostgresStore::open(config)
        .await
        .context("opening the PostgreSQL database")?;
    let migrated = store
        .migrate()
        .await
        .context("applying migrations/postgres");
    store.close().await;
    migrated?;
    tracing::info!(backend = "postgres", "migrations applied");
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env().context("reading the configuration")?;
    if config.jwt_secret_generated {
        tracing::warn!(
            "EVENTLY_JWT_SECRET is not set: using a random secret; tokens will not survive a restart"
        );
    }
    let backend = Backend::open(&config).await?;
    let worker_config = WorkerConfig::from_env().context("reading the worker configuration")?;
    // Notifications are delivered from this process (the in-process worker runs the job queue); an
    // `evently-worker` on the same database can share the work: job leases keep two workers from
    // running one job.
    let EnvEngine { engine, push } = backend.engine_from_env(&worker_config)?;
    let mut state = AppState::new(
        engine.clone(),
        config.auth_settings().context("authentication settings")?,
    );
    if let Some(push) = &push {
        state = state.with_push(&push.keys);
    }
    if let Some(admin) = &config.admin {
        state
            .ensure_admin(&admin.email, &admin.password)
            .await
            .with_context(|| format!("ensuring the admin account {}", admin.email))?;
    }

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    tracing::info!(address = %listener.local_addr()?, backend = ?backend, "evently listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        // Err only when the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Hold expiry and the job queue run in this process (`EVENTLY_WORKER_*` tune it).
    let worker = Worker::new(engine)
        .with_config(worker_config)
        .spawn(stopped(stop_rx.clone()));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(stopped(stop_rx))
        .await
        .context("serving HTTP");
    if let Err(e) = worker.await {
        tracing::error!(error = %e, "worker task failed");
    }
    backend.close().await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands() {
        assert_eq!(parse_args(&args(&[])), Ok(Command::Serve));
        assert_eq!(parse_args(&args(&["serve"])), Ok(Command::Serve));
        assert_eq!(parse_args(&args(&["migrate"])), Ok(Command::Migrate));
        assert_eq!(parse_args(&args(&["vapid-keys"])), Ok(Command::VapidKeys));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Command::Help));
        assert!(parse_args(&args(&["serv"])).is_err());
        assert!(parse_args(&args(&["serve", "now"])).is_err());
    }

    #[test]
    fn postgres_urls_are_recognised() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite://evently.db"));
        assert!(!is_postgres_url(""));
    }
}
