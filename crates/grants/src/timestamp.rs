//! CloudTrail times as whole seconds since the Unix epoch (UTC). `eventTime` has second
//! precision, so nothing finer is kept.

use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339, macros::format_description,
};

/// Parses `eventTime` values: RFC 3339 (`2022-09-01T19:39:33Z`, with or without fractions or an
/// offset), and the `2025-03-05 21:19:44.000000000` form some exporters write (taken as UTC).
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let spaced =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(text.trim_end_matches('Z'), spaced).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// Formats seconds since the epoch as RFC 3339 UTC, `2022-09-01T19:39:33Z`.
pub fn format(seconds: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_else(|| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_variants() {
        let t = parse("2022-09-01T19:39:33Z").unwrap();
        assert_eq!(t, 1_662_061_173);
        assert_eq!(format(t), "2022-09-01T19:39:33Z");
        assert_eq!(parse("2022-09-01T19:39:33.123Z"), Some(t));
        assert_eq!(parse("2022-09-01T21:39:33+02:00"), Some(t));
        assert_eq!(parse("2022-09-01 19:39:33.000000000"), Some(t));
        assert_eq!(parse("2022-09-01 19:39:33"), Some(t));
        assert_eq!(parse("Sep 1, 2022"), None);
        assert_eq!(parse(""), None);
    }
}
