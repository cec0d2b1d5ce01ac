//! The times people type on the command line, and the one "now" that ages, "never used" and
//! relative windows are measured from.

use crate::timestamp;

/// A time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A moment: RFC 3339, or a date (its first second, UTC).
    At(i64),
    /// A duration back from the reference time (`30d`, `12h`, `90m`), in seconds.
    Ago(i64),
}

impl When {
    /// The moment this names, given the reference time.
    pub fn resolve(self, reference: i64) -> i64 {
        match self {
            When::At(t) => t,
            When::Ago(seconds) => reference.saturating_sub(seconds),
        }
    }
}

/// An RFC 3339 time (`2024-05-01T12:00:00Z`) or a date (`2024-05-01`, its first second UTC).
pub fn parse_moment(text: &str) -> Option<i64> {
    let text = text.trim();
    let is_date = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    if is_date {
        return timestamp::parse(&format!("{text}T00:00:00Z"));
    }
    timestamp::parse(text)
}

/// A moment ([`parse_moment`]) or a whole number of days, hours or minutes back from the
/// reference time (`30d`, `12h`, `90m`).
pub fn parse_when(text: &str) -> Option<When> {
    if let Some(t) = parse_moment(text) {
        return Some(When::At(t));
    }
    let text = text.trim();
    let unit = match text.chars().last()? {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()?.checked_mul(unit).map(When::Ago)
}

/// Where the reference time of a listing came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceSource {
    /// `--as-of`.
    AsOf,
    /// The end of the period asked for (`--until`).
    Until,
    /// The latest event in the database.
    LatestEvent,
    /// The database holds no KMS event: the reference means nothing.
    NoEvents,
}

impl ReferenceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceSource::AsOf => "option",
            ReferenceSource::Until => "until",
            ReferenceSource::LatestEvent => "latest_event",
            ReferenceSource::NoEvents => "no_events",
        }
    }

    /// The source in words, for table and report headers.
    pub fn describe(self) -> &'static str {
        match self {
            ReferenceSource::AsOf => "as given by --as-of",
            ReferenceSource::Until => "the end of the period",
            ReferenceSource::LatestEvent => "the latest event in the database",
            ReferenceSource::NoEvents => "no event in the database",
        }
    }
}

/// The time ages, "never used" and relative windows are measured from: what `--as-of` says,
/// else the end of the period asked for, else the latest logged event. Not the wall clock: a
/// database of last year's logs answers as of last year, and `findings` and `report` agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    pub at: i64,
    pub source: ReferenceSource,
}

impl Reference {
    pub fn new(as_of: Option<i64>, until: Option<i64>, latest_event: Option<i64>) -> Reference {
        let (at, source) = match (as_of, until, latest_event) {
            (Some(t), _, _) => (t, ReferenceSource::AsOf),
            (None, Some(t), _) => (t, ReferenceSource::Until),
            (None, None, Some(t)) => (t, ReferenceSource::LatestEvent),
            (None, None, None) => (0, ReferenceSource::NoEvents),
        };
        Reference { at, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn moments_are_rfc3339_times_or_dates() {
        let day = timestamp::parse("2025-02-01T00:00:00Z").unwrap();
        assert_eq!(parse_moment("2025-02-01"), Some(day));
        assert_eq!(parse_moment("2025-02-01T12:00:00Z"), Some(day + DAY / 2));
        assert_eq!(parse_moment("2025-02-30"), None, "no such day");
        assert_eq!(parse_moment("02/01/2025"), None);
    }

    #[test]
    fn durations_count_back_from_the_reference() {
        assert_eq!(parse_when("30d"), Some(When::Ago(30 * DAY)));
        assert_eq!(parse_when("12h"), Some(When::Ago(12 * 3_600)));
        assert_eq!(parse_when("90m"), Some(When::Ago(90 * 60)));
        assert_eq!(parse_when("30d").unwrap().resolve(100 * DAY), 70 * DAY);
        assert_eq!(parse_when("2025-02-01").unwrap().resolve(0), parse_moment("2025-02-01").unwrap());
        for nonsense in ["30x", "d", "-3d", "3.5h", "1e3m", "", "99999999999999999999d", "30 d"] {
            assert_eq!(parse_when(nonsense), None, "{nonsense:?}");
        }
    }

    #[test]
    fn the_reference_is_as_of_then_until_then_the_latest_event() {
        let r = |a, u, l| Reference::new(a, u, l);
        assert_eq!(r(Some(1), Some(2), Some(3)), Reference { at: 1, source: ReferenceSource::AsOf });
        assert_eq!(r(None, Some(2), Some(3)), Reference { at: 2, source: ReferenceSource::Until });
        assert_eq!(r(None, None, Some(3)), Reference { at: 3, source: ReferenceSource::LatestEvent });
        assert_eq!(r(None, None, None).source, ReferenceSource::NoEvents);
    }
}
