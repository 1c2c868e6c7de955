//! The one place where sqlx and SQLite errors become [`StoreError`]s.

use evently_core::StoreError;
use sqlx::error::ErrorKind;

/// Primary SQLite result codes we classify (the low byte of an extended code).
mod code {
    pub const BUSY: i64 = 5;
    pub const LOCKED: i64 = 6;
    pub const NOMEM: i64 = 7;
    pub const INTERRUPT: i64 = 9;
    pub const IOERR: i64 = 10;
    pub const CORRUPT: i64 = 11;
    pub const FULL: i64 = 13;
    pub const CANTOPEN: i64 = 14;
    pub const PROTOCOL: i64 = 15;
    pub const NOTADB: i64 = 26;
}

/// SQLite names a unique violation by its columns (`UNIQUE constraint failed: users.email`); these are
/// the constraint or index names the schema gives them, which are also the names other stores report.
const UNIQUE_NAMES: &[(&str, &str)] = &[
    ("users.id", "users_pkey"),
    ("users.email", "users_email_key"),
    ("events.id", "events_pkey"),
    ("bookings.id", "bookings_pkey"),
    (
        "bookings.user_id, bookings.idempotency_key",
        "bookings_user_idempotency_key",
    ),
    ("waitlist_entries.seq", "waitlist_entries_pkey"),
    ("waitlist_entries.id", "waitlist_entries_id_key"),
    (
        "waitlist_entries.event_id, waitlist_entries.user_id",
        "waitlist_entries_one_live_per_user",
    ),
    ("tickets.id", "tickets_pkey"),
    ("tickets.number", "tickets_number_key"),
    ("notifications.id", "notifications_pkey"),
    ("push_subscriptions.id", "push_subscriptions_pkey"),
    (
        "push_subscriptions.endpoint",
        "push_subscriptions_endpoint_key",
    ),
    ("jobs.id", "jobs_pkey"),
    ("jobs.dedupe_key", "jobs_dedupe_key_live"),
];

/// The text after `"... constraint failed: "`, if the message has that shape.
fn constraint_detail(message: &str) -> Option<&str> {
    message
        .split_once("constraint failed: ")
        .map(|(_, rest)| rest.trim())
        .filter(|rest| !rest.is_empty())
}

/// The schema's name for a unique violation reported with `message`.
fn unique_name(message: &str) -> String {
    let Some(detail) = constraint_detail(message) else {
        return "unique".to_string();
    };
    // Unique indexes on expressions are reported as `index 'name'`.
    if let Some(index) = detail
        .strip_prefix("index '")
        .and_then(|s| s.strip_suffix('\''))
    {
        return index.to_string();
    }
    UNIQUE_NAMES
        .iter()
        .find(|(columns, _)| *columns == detail)
        .map_or_else(|| detail.to_string(), |(_, name)| (*name).to_string())
}

/// True for errors that undo only the failing statement, leaving the transaction usable: constraint
/// violations, and values we could not decode (nothing was changed by reading them).
pub(crate) fn is_statement_level(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => matches!(
            db.kind(),
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::CheckViolation
                | ErrorKind::NotNullViolation
        ),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => true,
        _ => false,
    }
}

/// Classifies a sqlx error. Constraint violations carry the schema's constraint name; a busy or locked
/// database is transient (retry the transaction); an unreachable one is unavailable; undecodable stored
/// values are corrupt.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    let classified = match err {
        sqlx::Error::Database(db) => {
            let message = db.message().to_string();
            match db.kind() {
                ErrorKind::UniqueViolation => StoreError::UniqueViolation {
                    constraint: unique_name(&message),
                },
                // SQLite does not say which foreign key failed; callers that know refine the name.
                ErrorKind::ForeignKeyViolation => StoreError::ForeignKeyViolation {
                    constraint: "foreign_key".to_string(),
                },
                ErrorKind::CheckViolation => StoreError::CheckViolation {
                    constraint: constraint_detail(&message).unwrap_or("check").to_string(),
                },
                ErrorKind::NotNullViolation => StoreError::CheckViolation {
                    constraint: constraint_detail(&message)
                        .map_or_else(|| "not_null".to_string(), |c| format!("{c} not null")),
                },
                _ => {
                    let extended = db
                        .code()
                        .and_then(|c| c.parse::<i64>().ok())
                        .unwrap_or_default();
                    let detail = format!("{message} (SQLite code {extended})");
                    match extended & 0xff {
                        code::BUSY | code::LOCKED | code::INTERRUPT | code::PROTOCOL => {
                            StoreError::Transient { message: detail }
                        }
                        code::IOERR | code::FULL | code::CANTOPEN | code::NOMEM => {
                            StoreError::Unavailable { message: detail }
                        }
                        code::CORRUPT | code::NOTADB => StoreError::Corrupt { message: detail },
                        _ => StoreError::Backend { message: detail },
                    }
                }
            }
        }
        sqlx::Error::PoolTimedOut => StoreError::Unavailable {
            message: "timed out waiting for a SQLite connection".to_string(),
        },
        sqlx::Error::PoolClosed => StoreError::Unavailable {
            message: "the SQLite store was closed".to_string(),
        },
        sqlx::Error::WorkerCrashed => StoreError::Unavailable {
            message: "the SQLite connection worker stopped".to_string(),
        },
        sqlx::Error::Io(e) => StoreError::Unavailable {
            message: format!("I/O error: {e}"),
        },
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
    match &classified {
        StoreError::Transient { message } | StoreError::Unavailable { message } => {
            tracing::warn!(backend = "sqlite", error = %message, "SQLite store error");
        }
        StoreError::Corrupt { message } | StoreError::Backend { message } => {
            tracing::error!(backend = "sqlite", error = %message, "SQLite store error");
        }
        _ => tracing::debug!(backend = "sqlite", error = %classified, "constraint violation"),
    }
    classified
}

/// Classifies a migration failure.
pub(crate) fn classify_migrate(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => match classify(e) {
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
    fn unique_violations_are_named_by_the_schema() {
        assert_eq!(
            unique_name("UNIQUE constraint failed: users.email"),
            "users_email_key"
        );
        assert_eq!(
            unique_name(
                "UNIQUE constraint failed: waitlist_entries.event_id, waitlist_entries.user_id"
            ),
            "waitlist_entries_one_live_per_user"
        );
        assert_eq!(
            unique_name("UNIQUE constraint failed: index 'by_expr'"),
            "by_expr"
        );
        assert_eq!(
            unique_name("UNIQUE constraint failed: other.col"),
            "other.col"
        );
        assert_eq!(unique_name("something else"), "unique");
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(sqlx::Error::PoolClosed),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(sqlx::Error::Io(std::io::Error::other("disk gone"))),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(sqlx::Error::ColumnNotFound("x".into())),
            StoreError::Corrupt { .. }
        ));
    }
}
