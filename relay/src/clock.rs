//! Wall-clock helpers: the store and the wire speak RFC 3339 and epoch ms.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn rfc3339_from_millis(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339_from_millis(now_millis())
}
