//! Conversions between domain values and PostgreSQL columns: encoders here, and how a PostgreSQL row
//! holds each kind of value ([`Columns`]) for the shared decoders of [`crate::sql_codec`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use evently_core::{BookingSource, JobPayload, StoreError};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Row, Type, TypeInfo, ValueRef};
use uuid::Uuid;

use super::error::{Phase, classify};
use crate::sql_codec::Columns;
pub(crate) use crate::sql_codec::*;

type R<T> = Result<T, StoreError>;

/// A `u64` that must fit a bigint column.
pub(crate) fn bigint_u64(field: &str, v: u64) -> R<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend {
        message: format!("{field} {v} does not fit a PostgreSQL bigint"),
    })
}

/// A job payload as a JSON value (stored as jsonb).
pub(crate) fn json_payload(payload: &JobPayload) -> R<serde_json::Value> {
    serde_json::to_value(payload).map_err(|e| StoreError::Backend {
        message: format!("cannot encode job payload as JSON: {e}"),
    })
}

/// The two stored columns of a [`BookingSource`]: kind and waitlist entry id.
pub(crate) fn source_columns(source: &BookingSource) -> (&'static str, Option<Uuid>) {
    match source {
        BookingSource::Direct => ("direct", None),
        BookingSource::WaitlistOffer(entry) => ("waitlist_offer", Some(entry.0)),
    }
}

fn get<'r, T>(row: &'r PgRow, col: &str) -> R<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(col).map_err(|e| classify(e, Phase::Statement))
}

impl Columns for PgRow {
    fn text(&self, col: &str) -> R<String> {
        get(self, col)
    }
    fn opt_text(&self, col: &str) -> R<Option<String>> {
        get(self, col)
    }
    fn int(&self, col: &str) -> R<i64> {
        // bigint throughout, but `jobs.priority` is a smallint.
        let width = self
            .try_get_raw(col)
            .map_err(|e| classify(e, Phase::Statement))?
            .type_info()
            .name()
            .to_string();
        match width.as_str() {
            "INT2" => get::<i16>(self, col).map(i64::from),
            "INT4" => get::<i32>(self, col).map(i64::from),
            _ => get(self, col),
        }
    }
    fn flag(&self, col: &str) -> R<bool> {
        get(self, col)
    }
    fn uuid(&self, col: &str) -> R<Uuid> {
        get(self, col)
    }
    fn opt_uuid(&self, col: &str) -> R<Option<Uuid>> {
        get(self, col)
    }
    fn ts(&self, col: &str) -> R<DateTime<Utc>> {
        get(self, col)
    }
    fn opt_ts(&self, col: &str) -> R<Option<DateTime<Utc>>> {
        get(self, col)
    }
    fn json(&self, col: &str) -> R<serde_json::Value> {
        get(self, col)
    }
}

/// A string map as a jsonb parameter.
pub(crate) fn json_map(map: &BTreeMap<String, String>) -> Json<&BTreeMap<String, String>> {
    Json(map)
}

/// The latest instant PostgreSQL's timestamptz holds comfortably; leases past it are clamped.
pub(crate) fn clamp_far_future(t: DateTime<Utc>) -> DateTime<Utc> {
    // 9999-12-31T23:59:59Z: far beyond any lease, well inside timestamptz's range.
    let max =
        DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    t.min(max)
}
