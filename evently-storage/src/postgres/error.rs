//! The one place where sqlx and PostgreSQL errors become [`StoreError`]s.
//!
//! | What failed                                              | `StoreError`    |
//! |----------------------------------------------------------|-----------------|
//! | 23505 unique violation                                   | `UniqueViolation` (constraint name) |
//! | 23503 foreign key violation                              | `ForeignKeyViolation` (constraint name) |
//! | 23514 check violation                                    | `CheckViolation` (constraint name) |
//! | 40001 serialization failure, 40P01 deadlock, 55P03 lock not available | `Transient` |
//! | lost connection (I/O, 08xxx, 57P01/57P02 terminated) before `COMMIT` was sent | `Transient` |
//! | lost connection while `COMMIT` was in flight             | `Unavailable` (the outcome is unknown, so it must not be retried blindly) |
//! | 57014 statement timeout / cancelled                      | `Unavailable`   |
//! | pool timeout or closed, 57P03, 53xxx, no server at connect | `Unavailable` |
//! | undecodable values, XX001/XX002                          | `Corrupt`       |
//! | anything else                                            | `Backend`       |
//!
//! A statement timeout is `Unavailable`, not `Transient`: the engine retries transient failures
//! at once, and a statement that ran into the timeout (a lock held for seconds, an overloaded
//! server) would most likely run into it again while holding a connection for that long each time.

use evently_core::StoreError;

/// Where in a transaction's life an error happened; the same failure means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Getting a connection and starting the transaction: nothing was done yet.
    Acquire,
    /// A statement inside a transaction, or a single-statement operation: when the connection is lost,
    /// the server rolls the transaction back, so the whole of it may be retried.
    Statement,
    /// `COMMIT` was sent: a lost connection leaves the outcome unknown.
    Commit,
}

/// SQLSTATE codes we classify.
mod code {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const DATA_CORRUPTED: &str = "XX001";
    pub const INDEX_CORRUPTED: &str = "XX002";
}

fn lost_connection(phase: Phase, detail: String) -> StoreError {
    match phase {
        Phase::Acquire => StoreError::Unavailable { message: detail },
        Phase::Statement => StoreError::Transient {
            message: format!("connection lost: {detail}"),
        },
        Phase::Commit => StoreError::Unavailable {
            message: format!("connection lost while committing; the outcome is unknown: {detail}"),
        },
    }
}

/// True when `err` means the connection can no longer be used (so it must not go back to the pool).
pub(crate) fn is_connection_loss(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || c == code::ADMIN_SHUTDOWN || c == code::CRASH_SHUTDOWN
        }),
        _ => false,
    }
}

/// Classifies a sqlx error raised in `phase`.
pub(crate) fn classify(err: sqlx::Error, phase: Phase) -> StoreError {
    let loss = is_connection_loss(&err);
    let classified = match err {
        sqlx::Error::Database(db) => {
            let sqlstate = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let constraint = || db.constraint().unwrap_or("unknown").to_string();
            let detail = format!("{} (SQLSTATE {sqlstate})", db.message());
            match sqlstate.as_str() {
                code::UNIQUE_VIOLATION => StoreError::UniqueViolation {
                    constraint: constraint(),
                },
                code::FOREIGN_KEY_VIOLATION => StoreError::ForeignKeyViolation {
                    constraint: constraint(),
                },
                code::CHECK_VIOLATION => StoreError::CheckViolation {
                    constraint: constraint(),
                },
                // Reported before anything was committed, even in answer to COMMIT.
                code::SERIALIZATION_FAILURE
                | code::DEADLOCK_DETECTED
                | code::LOCK_NOT_AVAILABLE => StoreError::Transient { message: detail },
                code::QUERY_CANCELED => StoreError::Unavailable {
                    message: format!("statement timed out or was cancelled: {detail}"),
                },
                code::CANNOT_CONNECT_NOW => StoreError::Unavailable { message: detail },
                c if c.starts_with("53") => StoreError::Unavailable { message: detail },
                code::DATA_CORRUPTED | code::INDEX_CORRUPTED => {
                    StoreError::Corrupt { message: detail }
                }
                _ if loss => lost_connection(phase, detail),
                _ => StoreError::Backend { message: detail },
            }
        }
        sqlx::Error::PoolTimedOut => StoreError::Unavailable {
            message: "timed out waiting for a PostgreSQL connection".to_string(),
        },
        sqlx::Error::PoolClosed => StoreError::Unavailable {
            message: "the PostgreSQL store was closed".to_string(),
        },
        sqlx::Error::WorkerCrashed => StoreError::Unavailable {
            message: "a PostgreSQL connection worker stopped".to_string(),
        },
        e @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_)) => {
            lost_connection(phase, e.to_string())
        }
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }) => StoreError::Corrupt {
            message: e.to_string(),
        },
        other => StoreError::Backend {
            message: other.to_string(),
        },
    };
    log(&classified);
    classified
}

fn log(e: &StoreError) {
    match e {
        StoreError::Transient { message } | StoreError::Unavailable { message } => {
            tracing::warn!(backend = "postgres", error = %message, "PostgreSQL store error");
        }
        StoreError::Corrupt { message } | StoreError::Backend { message } => {
            tracing::error!(backend = "postgres", error = %message, "PostgreSQL store error");
        }
        _ => tracing::debug!(backend = "postgres", error = %e, "constraint violation"),
    }
}

/// A client-side deadline ran out: the server did not answer in time (it also enforces
/// `statement_timeout`, so this means it or the network is stuck).
pub(crate) fn timed_out(what: &str, phase: Phase) -> StoreError {
    let e = match phase {
        Phase::Commit => StoreError::Unavailable {
            message: format!("no answer to {what} in time; the outcome is unknown"),
        },
        Phase::Acquire | Phase::Statement => StoreError::Unavailable {
            message: format!("no answer to {what} in time"),
        },
    };
    log(&e);
    e
}

/// Classifies a migration failure.
pub(crate) fn classify_migrate(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => match classify(e, Phase::Statement) {
            StoreError::Backend { message } => StoreError::Backend {
                message: format!("migration failed: {message}"),
            },
            other => other,
        },
        other => StoreError::Backend {
            message: format!("migration failed: {other}"),
        },
    }
}

pub(crate) use crate::sql_codec::corrupt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_failures_are_unavailable_and_io_depends_on_the_phase() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut, Phase::Acquire),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(sqlx::Error::PoolClosed, Phase::Statement),
            StoreError::Unavailable { .. }
        ));
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            classify(io(), Phase::Acquire),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(io(), Phase::Statement),
            StoreError::Transient { .. }
        ));
        let at_commit = classify(io(), Phase::Commit);
        assert!(
            matches!(&at_commit, StoreError::Unavailable { message } if message.contains("unknown")),
            "{at_commit}"
        );
        assert!(matches!(
            classify(sqlx::Error::ColumnNotFound("x".into()), Phase::Statement),
            StoreError::Corrupt { .. }
        ));
    }
}
