//! Wall-clock helpers: the store and the wire speak RFC 3339 and epoch ms.

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// Always three fractional digits and `Z`, as JavaScript's `toISOString()`
/// writes (and so pi): fixed-width stamps sort as strings, and a trimmed
/// fraction (`.1Z` after `.15Z`) would not.
const ISO_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn rfc3339_from_millis(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(ISO_MILLIS).ok())
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339_from_millis(now_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_have_fixed_width_and_sort_as_strings() {
        let whole = rfc3339_from_millis(1_700_000_001_000);
        let tenth = rfc3339_from_millis(1_700_000_001_100);
        let later = rfc3339_from_millis(1_700_000_001_150);
        assert_eq!(whole, "2023-11-14T22:13:21.000Z");
        assert_eq!(tenth, "2023-11-14T22:13:21.100Z");
        assert!(whole < tenth && tenth < later, "{whole} {tenth} {later}");
    }
}
