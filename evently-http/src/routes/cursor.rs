//! Page cursors: the `(created_at, id)` of a page's last record, opaque to clients (base64url). The
//! next page starts strictly after it, so records added meanwhile never shift pages already read.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ApiError;

/// The cursor naming `(created_at, id)`.
pub(crate) fn encode((at, id): (DateTime<Utc>, Uuid)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}/{id}", at.timestamp_micros()))
}

/// The `(created_at, id)` a cursor names; one this server did not issue is a 422 on `cursor`.
pub(crate) fn decode(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::validation("cursor", "not a cursor this server issued");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&text).map_err(|_| bad())?;
    let (micros, id) = text.split_once('/').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, id))
}
