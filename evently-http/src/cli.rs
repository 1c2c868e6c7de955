//! What the `evently` and `evently-worker` binaries share (feature `server`): logging set-up, the
//! one optional command word they take, and the help text of the environment variables both read.

use tracing_subscriber::EnvFilter;

/// The environment both binaries read (database, queue, mail, web push, worker, logging), as help
/// text lines, each indented by two spaces; each binary prints its own variables before these.
pub const ENV_HELP: &str = "  EVENTLY_DATABASE_URL        sqlite://path (default sqlite://evently.db) or postgres://user@host/db
  EVENTLY_QUEUE               store (the database's job table, default) or redis
  EVENTLY_REDIS_URL           redis://host:port[/db], with EVENTLY_QUEUE=redis
  EVENTLY_MAIL_TRANSPORT      smtp, file or log (default: smtp if EVENTLY_SMTP_URL is set, else file)
  EVENTLY_SMTP_URL            smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://...
  EVENTLY_SMTP_TIMEOUT_SECS   SMTP command timeout (default 30)
  EVENTLY_MAIL_DIR            directory of the file transport (default evently-mail)
  EVENTLY_MAIL_FROM           sender (default \"Evently <noreply@localhost>\")
  EVENTLY_VAPID_PRIVATE_KEY   web push: VAPID private key, 32 bytes base64url (push is off when unset)
  EVENTLY_VAPID_SUBJECT       web push: contact for push services, mailto:... or https://...
  EVENTLY_PUSH_TTL_SECS       web push: how long push services keep a message (default 86400)
  EVENTLY_PUSH_TIMEOUT_SECS   web push: request timeout (default 10)
  EVENTLY_WORKER_POLL_MS      pause between polls of an empty queue (default 1000)
  EVENTLY_WORKER_BATCH        jobs claimed at a time (default 100)
  EVENTLY_WORKER_LEASE_SECS   job lease: a crashed worker's jobs run again after it (default 300)
  EVENTLY_OFFER_TTL_SECS      how long a waitlist offer stands (default 1800)
  RUST_LOG                    log filter (default info)
";

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The command named by `args` (the arguments after the program name): `default` when there are
/// none, else the value of the matching word in `commands` (`-h` and `--help` stand for `help`). More
/// than one argument, or an unknown word, is an error message.
///
/// ```
/// use evently_http::cli::parse_command;
///
/// let commands = [("run", 1), ("once", 2), ("help", 0)];
/// assert_eq!(parse_command(&[], 1, &commands), Ok(1));
/// assert_eq!(parse_command(&["once".into()], 1, &commands), Ok(2));
/// assert_eq!(parse_command(&["--help".into()], 1, &commands), Ok(0));
/// assert!(parse_command(&["twice".into()], 1, &commands).is_err());
/// assert!(parse_command(&["run".into(), "now".into()], 1, &commands).is_err());
/// ```
pub fn parse_command<T: Copy>(
    args: &[String],
    default: T,
    commands: &[(&str, T)],
) -> Result<T, String> {
    match args {
        [] => Ok(default),
        [one] => {
            let word = match one.as_str() {
                "-h" | "--help" => "help",
                other => other,
            };
            commands
                .iter()
                .find(|(name, _)| *name == word)
                .map(|(_, command)| *command)
                .ok_or_else(|| format!("unknown command {one:?}"))
        }
        [_, extra, ..] => Err(format!("unexpected argument {extra:?}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_env_help_line_is_indented() {
        for line in super::ENV_HELP.lines() {
            assert!(
                line.starts_with("  EVENTLY_") || line.starts_with("  RUST_LOG"),
                "{line:?}"
            );
        }
    }
}
