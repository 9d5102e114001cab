//! Time in one place: the clock every `*_ms` field is read from, and the RFC 3339 forms
//! lifeboat prints. Times travel as milliseconds since the Unix epoch (UTC).

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Milliseconds since the Unix epoch, as used in every `*_ms` field.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn datetime(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// RFC 3339 in UTC with the milliseconds when there are any (`2026-11-27T23:30:00.25Z`);
/// `None` beyond the representable range.
pub fn rfc3339(ms: i64) -> Option<String> {
    datetime(ms)?.format(&Rfc3339).ok()
}

/// RFC 3339 in UTC to the second (`2026-11-27T23:30:00Z`), for people.
pub fn rfc3339_seconds(ms: i64) -> Option<String> {
    datetime(ms)?
        .replace_nanosecond(0)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// RFC 3339 in UTC with exactly three fraction digits (`2026-11-27T23:30:00.000Z`), for
/// machine-read output where every value should have the same shape.
pub fn rfc3339_millis(ms: i64) -> Option<String> {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    datetime(ms)?
        .to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .ok()
}

/// Parses RFC 3339 (any offset) to milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_round_trip() {
        let ms = 1_764_286_200_250; // 2025-11-27T23:30:00.25Z
        assert_eq!(rfc3339(ms).as_deref(), Some("2025-11-27T23:30:00.25Z"));
        assert_eq!(rfc3339_seconds(ms).as_deref(), Some("2025-11-27T23:30:00Z"));
        assert_eq!(
            rfc3339_millis(ms).as_deref(),
            Some("2025-11-27T23:30:00.250Z")
        );
        for s in [rfc3339(ms), rfc3339_millis(ms)].into_iter().flatten() {
            assert_eq!(parse_rfc3339(&s), Some(ms), "{s}");
        }
        assert_eq!(parse_rfc3339("2025-11-28T00:30:00.25+01:00"), Some(ms));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339(i64::MAX), None);
        assert!(now_ms() > ms);
    }
}
