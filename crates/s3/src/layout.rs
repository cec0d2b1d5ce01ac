//! Pruning a listing by the CloudTrail bucket layout,
//! `[prefix/]AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>`, so that a
//! time window, accounts and regions cost listing calls only for the folders they select, and
//! no object outside them is downloaded.

use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_grants::timestamp;

/// Objects delivered up to this long after `until` are still read: CloudTrail delivers a
/// record some minutes after the call (usually within 15), sometimes later.
pub const DELIVERY_SLACK_SECONDS: i64 = 3600;

const DAY: i64 = 86_400;

/// Which objects of a bucket to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// Only objects delivered at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// Only objects that can hold records from before this time.
    pub until: Option<i64>,
    /// Only these accounts (empty: all).
    pub accounts: Vec<String>,
    /// Only these regions (empty: all).
    pub regions: Vec<String>,
    /// Also the digest files (for `verify`); log files only otherwise.
    pub digests: bool,
}

impl Window {
    /// Can some object under the folder `prefix` (ending in `/`) be wanted?
    pub fn may_hold(&self, prefix: &str) -> bool {
        let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        // Above the AWSLogs folder nothing is known yet.
        let Some(i) = parts.iter().rposition(|p| *p == "AWSLogs") else { return true };
        let mut rest = &parts[i + 1..];
        if rest.first().is_some_and(|p| p.starts_with("o-")) {
            rest = &rest[1..];
        }
        let mut rest = rest.iter();
        if let Some(account) = rest.next()
            && !self.accounts.is_empty()
            && !self.accounts.iter().any(|a| a == account)
        {
            return false;
        }
        match rest.next() {
            None => return true,
            Some(&"CloudTrail") => {}
            Some(&"CloudTrail-Digest") if self.digests => {}
            // CloudTrail-Digest, CloudTrail-Insight, other services' logs.
            Some(_) => return false,
        }
        if let Some(region) = rest.next()
            && !self.regions.is_empty()
            && !self.regions.iter().any(|r| r == region)
        {
            return false;
        }
        let date: Vec<&str> = rest.take(3).copied().collect();
        match self.date_span(&date) {
            Some((start, end)) => self.overlaps(start, end),
            // Not a date folder: nothing CloudTrail writes, but not ours to judge.
            None => true,
        }
    }

    /// Is the object `key` wanted? Digests only with [`Window::digests`] (their folders are
    /// pruned by date, the rest is for the verifier to judge); Insights and other files never.
    pub fn wants(&self, key: &str) -> bool {
        let k = ObjectKey::parse(key);
        match k.class {
            KeyClass::Log => {}
            KeyClass::Digest if self.digests => {
                let listed = |wanted: &[String], have: &Option<String>| {
                    wanted.is_empty() || have.as_ref().is_some_and(|h| wanted.contains(h))
                };
                return listed(&self.accounts, &k.account) && listed(&self.regions, &k.region);
            }
            _ => return false,
        }
        let listed = |wanted: &[String], have: &Option<String>| {
            wanted.is_empty() || have.as_ref().is_some_and(|h| wanted.contains(h))
        };
        if !listed(&self.accounts, &k.account) || !listed(&self.regions, &k.region) {
            return false;
        }
        match k.delivered.and_then(|((y, m, d), hh, mm)| {
            timestamp::parse(&format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:00Z"))
        }) {
            // The file name is to the minute: the file was delivered within [t, t + 60).
            Some(t) => self.overlaps(t, t + 60),
            None => true,
        }
    }

    /// Does delivery in `[start, end)` fall inside the window?
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.since.is_none_or(|s| end > s) && self.until.is_none_or(|u| start <= u + DELIVERY_SLACK_SECONDS)
    }

    /// The delivery times a year, month or day folder covers: `["2024"]`, `["2024","05"]`, ...
    fn date_span(&self, date: &[&str]) -> Option<(i64, i64)> {
        let number = |s: &str, len: usize| (s.len() == len).then(|| s.parse::<u32>().ok()).flatten();
        let start = |y: u32, m: u32, d: u32| timestamp::parse(&format!("{y:04}-{m:02}-{d:02}T00:00:00Z"));
        match *date {
            [] => None,
            [y] => {
                let y = number(y, 4)?;
                Some((start(y, 1, 1)?, start(y + 1, 1, 1)?))
            }
            [y, m] => {
                let (y, m) = (number(y, 4)?, number(m, 2)?);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some((start(y, m, 1)?, start(ny, nm, 1)?))
            }
            [y, m, d, ..] => {
                let day = start(number(y, 4)?, number(m, 2)?, number(d, 2)?)?;
                Some((day, day + DAY))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "AWSLogs/o-abc123/111122223333/CloudTrail/us-east-1/";

    fn t(text: &str) -> i64 {
        timestamp::parse(text).unwrap()
    }

    fn may_window() -> Window {
        Window {
            since: Some(t("2024-05-10T00:00:00Z")),
            until: Some(t("2024-05-12T12:00:00Z")),
            ..Window::default()
        }
    }

    fn log(day: &str, stamp: &str) -> String {
        format!("{ROOT}{day}/111122223333_CloudTrail_us-east-1_{stamp}_AbCd.json.gz")
    }

    #[test]
    fn folders_outside_the_window_are_pruned() {
        let w = may_window();
        for kept in [
            "",
            "logs/",
            "AWSLogs/",
            "AWSLogs/o-abc123/",
            ROOT,
            &format!("{ROOT}2024/"),
            &format!("{ROOT}2024/05/"),
            &format!("{ROOT}2024/05/10/"),
            &format!("{ROOT}2024/05/12/"),
            // 12:00 plus the delivery slack reaches 13:00 of the 12th, not the 13th.
            &format!("{ROOT}2024/05/11/"),
        ] {
            assert!(w.may_hold(kept), "{kept} must be listed");
        }
        for pruned in [
            &format!("{ROOT}2023/"),
            &format!("{ROOT}2024/04/"),
            &format!("{ROOT}2024/05/09/"),
            &format!("{ROOT}2024/05/13/"),
            &format!("{ROOT}2025/"),
            "AWSLogs/o-abc123/111122223333/CloudTrail-Digest/",
            "AWSLogs/111122223333/Config/",
        ] {
            assert!(!w.may_hold(pruned), "{pruned} must be pruned");
        }
    }

    #[test]
    fn an_open_window_keeps_every_cloudtrail_folder() {
        let w = Window::default();
        assert!(w.may_hold(&format!("{ROOT}1999/01/01/")));
        assert!(!w.may_hold("AWSLogs/111122223333/CloudTrail-Insight/"));
        let since_only = Window { since: Some(t("2024-05-10T00:00:00Z")), ..Window::default() };
        assert!(since_only.may_hold(&format!("{ROOT}2030/")));
        assert!(!since_only.may_hold(&format!("{ROOT}2024/05/09/")));
    }

    #[test]
    fn accounts_and_regions_prune_their_folders() {
        let w = Window {
            accounts: vec!["444455556666".into()],
            regions: vec!["eu-west-1".into()],
            ..Window::default()
        };
        assert!(!w.may_hold("AWSLogs/o-abc123/111122223333/"));
        assert!(w.may_hold("AWSLogs/o-abc123/444455556666/CloudTrail/"));
        assert!(w.may_hold("AWSLogs/444455556666/CloudTrail/eu-west-1/2024/"));
        assert!(!w.may_hold("AWSLogs/444455556666/CloudTrail/us-east-1/"));
        assert!(!w.wants(&log("2024/05/10", "20240510T0005Z")), "account and region of the key");
    }

    #[test]
    fn files_are_chosen_by_the_delivery_time_in_their_name() {
        let w = may_window();
        assert!(!w.wants(&log("2024/05/09", "20240509T2355Z")));
        assert!(w.wants(&log("2024/05/10", "20240510T0000Z")));
        assert!(w.wants(&log("2024/05/12", "20240512T1255Z")), "within the delivery slack");
        assert!(!w.wants(&log("2024/05/12", "20240512T1305Z")));
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/10/\
            111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20240510T0000Z.json.gz";
        assert!(!w.wants(digest));
        assert!(!w.wants("AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/10/notes.txt"));
    }
}
