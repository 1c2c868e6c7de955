//! Conversions between domain values and SQLite columns: encoders here, and how an SQLite row holds
//! each kind of value ([`Columns`]) for the shared decoders of [`crate::sql_codec`].

use chrono::{DateTime, Utc};
use evently_core::{BookingSource, JobPayload, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};
use uuid::Uuid;

use super::error::classify;
pub(crate) use crate::sql_codec::*;
use crate::sql_codec::{Columns, corrupt};

type R<T> = Result<T, StoreError>;

/// A timestamp as stored: microseconds since the Unix epoch.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// An optional timestamp as stored.
pub(crate) fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

/// An identifier as stored: lower-case hyphenated text.
pub(crate) fn id_text(id: impl Into<Uuid>) -> String {
    id.into().hyphenated().to_string()
}

/// A `u64` that must fit an SQLite INTEGER.
pub(crate) fn int_u64(field: &str, v: u64) -> R<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend {
        message: format!("{field} {v} does not fit an SQLite INTEGER"),
    })
}

/// A string map as JSON text.
pub(crate) fn json_map(field: &str, map: &impl serde::Serialize) -> R<String> {
    serde_json::to_string(map).map_err(|e| StoreError::Backend {
        message: format!("cannot encode {field} as JSON: {e}"),
    })
}

/// A job payload as JSON text.
pub(crate) fn json_payload(payload: &JobPayload) -> R<String> {
    serde_json::to_string(payload).map_err(|e| StoreError::Backend {
        message: format!("cannot encode job payload as JSON: {e}"),
    })
}

/// The two stored columns of a [`BookingSource`]: kind and waitlist entry id.
pub(crate) fn source_columns(source: &BookingSource) -> (&'static str, Option<String>) {
    match source {
        BookingSource::Direct => ("direct", None),
        BookingSource::WaitlistOffer(entry) => ("waitlist_offer", Some(id_text(entry.0))),
    }
}

fn get<'r, T>(row: &'r SqliteRow, col: &str) -> R<T>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(col).map_err(classify)
}

fn micros_ts(col: &str, v: i64) -> R<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt(format!("{col} {v} is out of range")))
}

fn parse_uuid(col: &str, s: &str) -> R<Uuid> {
    Uuid::parse_str(s).map_err(|e| corrupt(format!("{col} {s:?} is not a UUID: {e}")))
}

/// Identifiers are text, timestamps microseconds, booleans 0/1, JSON text.
impl Columns for SqliteRow {
    fn text(&self, col: &str) -> R<String> {
        get(self, col)
    }
    fn opt_text(&self, col: &str) -> R<Option<String>> {
        get(self, col)
    }
    fn int(&self, col: &str) -> R<i64> {
        get(self, col)
    }
    fn flag(&self, col: &str) -> R<bool> {
        match get::<i64>(self, col)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(corrupt(format!("{col} {v} is not 0 or 1"))),
        }
    }
    fn uuid(&self, col: &str) -> R<Uuid> {
        parse_uuid(col, &get::<String>(self, col)?)
    }
    fn opt_uuid(&self, col: &str) -> R<Option<Uuid>> {
        get::<Option<String>>(self, col)?
            .map(|s| parse_uuid(col, &s))
            .transpose()
    }
    fn ts(&self, col: &str) -> R<DateTime<Utc>> {
        micros_ts(col, get(self, col)?)
    }
    fn opt_ts(&self, col: &str) -> R<Option<DateTime<Utc>>> {
        get::<Option<i64>>(self, col)?
            .map(|v| micros_ts(col, v))
            .transpose()
    }
    fn json(&self, col: &str) -> R<serde_json::Value> {
        let s: String = get(self, col)?;
        serde_json::from_str(&s).map_err(|e| corrupt(format!("{col} is not JSON: {e}")))
    }
}
