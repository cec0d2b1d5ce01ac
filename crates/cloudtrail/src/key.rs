//! Object keys (S3 keys or local paths) in the CloudTrail bucket layout:
//! `[prefix/]AWSLogs/[o-org/]<account>/<CloudTrail|CloudTrail-Digest|CloudTrail-Insight>/<region>/YYYY/MM/DD/<file>`.

/// What an object is, judged from its key alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// A CloudTrail log file (`..._CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz`).
    Log,
    /// A log-file integrity digest (`CloudTrail-Digest` folder or file name).
    Digest,
    /// A CloudTrail Insights file (`CloudTrail-Insight` folder or file name).
    Insight,
    /// Anything else: other services' logs, Lake query results, unrelated files.
    Other,
}

/// The parts of a CloudTrail object key that matter for filtering and pruning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub class: KeyClass,
    /// Organization id (`o-...`) when the key has the organization-trail layout.
    pub org_id: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    /// Delivery date from the `YYYY/MM/DD` folders.
    pub date: Option<(u16, u8, u8)>,
    /// Delivery time from the file name, `YYYYMMDDTHHmmZ`, as (date, hour, minute).
    pub delivered: Option<((u16, u8, u8), u8, u8)>,
}

impl ObjectKey {
    /// Classifies a key or path. Works on `/`-separated S3 keys and on local paths alike.
    pub fn parse(key: &str) -> ObjectKey {
        let parts: Vec<&str> = key.split(['/', '\\']).collect();
        let file = parts.last().copied().unwrap_or_default();
        let mut out = ObjectKey {
            class: class_of_file(file),
            org_id: None,
            account: None,
            region: None,
            date: None,
            delivered: None,
        };
        if let Some(i) = parts.iter().rposition(|p| *p == "AWSLogs") {
            let mut rest = &parts[i + 1..];
            if let Some(first) = rest.first().filter(|p| p.starts_with("o-")) {
                out.org_id = Some((*first).to_string());
                rest = &rest[1..];
            }
            if let [account, service, region, y, m, d, ..] = rest {
                if is_account(account) {
                    out.account = Some((*account).to_string());
                }
                out.class = match *service {
                    "CloudTrail-Digest" => KeyClass::Digest,
                    "CloudTrail-Insight" => KeyClass::Insight,
                    _ => out.class,
                };
                out.region = Some((*region).to_string());
                out.date = parse_date(y, m, d);
            }
        }
        if out.class == KeyClass::Log {
            out.delivered = delivery_time(file);
            if out.account.is_none() {
                out.account = file.split('_').next().filter(|a| is_account(a)).map(str::to_string);
            }
        }
        out
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn class_of_file(file: &str) -> KeyClass {
    if file.contains("_CloudTrail-Digest_") {
        KeyClass::Digest
    } else if file.contains("_CloudTrail-Insight_") {
        KeyClass::Insight
    } else if file.contains("_CloudTrail_") && delivery_time(file).is_some() {
        KeyClass::Log
    } else {
        KeyClass::Other
    }
}

fn parse_date(y: &str, m: &str, d: &str) -> Option<(u16, u8, u8)> {
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let date = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    (1..=12).contains(&date.1).then_some(())?;
    (1..=31).contains(&date.2).then_some(())?;
    Some(date)
}

/// Finds `_YYYYMMDDTHHmmZ_` in a log file name. The trail's unique string is ignored.
fn delivery_time(file: &str) -> Option<((u16, u8, u8), u8, u8)> {
    file.split('_').find_map(|part| {
        let b = part.as_bytes();
        // ASCII only: the slices below would cut a character of another script in two.
        if b.len() != 14 || !part.is_ascii() || b[8] != b'T' || b[13] != b'Z' {
            return None;
        }
        let date = parse_date(&part[0..4], &part[4..6], &part[6..8])?;
        let hour: u8 = part[9..11].parse().ok()?;
        let minute: u8 = part[11..13].parse().ok()?;
        (hour < 24 && minute < 60).then_some((date, hour, minute))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_log_key() {
        let k = ObjectKey::parse(
            "myprefix/AWSLogs/123456789012/CloudTrail/us-east-1/2014/03/09/123456789012_CloudTrail_us-east-1_20140309T2015Z_996mpJdKNLd1Yvzl.json.gz",
        );
        assert_eq!(k.class, KeyClass::Log);
        assert_eq!(k.account.as_deref(), Some("123456789012"));
        assert_eq!(k.region.as_deref(), Some("us-east-1"));
        assert_eq!(k.date, Some((2014, 3, 9)));
        assert_eq!(k.delivered, Some(((2014, 3, 9), 20, 15)));
        assert_eq!(k.org_id, None);
    }

    #[test]
    fn org_trail_key_with_org_prefix_twice() {
        let k = ObjectKey::parse(
            "o-fxozgwu6rc/AWSLogs/o-fxozgwu6rc/123456789016/CloudTrail/ca-central-1/2020/08/30/123456789016_CloudTrail_ca-central-1_20200830T0115Z_3YQJxwt5qUaOzMtL.json.gz",
        );
        assert_eq!(k.class, KeyClass::Log);
        assert_eq!(k.org_id.as_deref(), Some("o-fxozgwu6rc"));
        assert_eq!(k.account.as_deref(), Some("123456789016"));
        assert_eq!(k.region.as_deref(), Some("ca-central-1"));
    }

    #[test]
    fn digest_and_insight_keys() {
        let digest = ObjectKey::parse(
            "AWSLogs/o-abc/111122223333/CloudTrail-Digest/us-east-1/2024/01/02/111122223333_CloudTrail-Digest_us-east-1_my_trail-name_us-east-1_20240102T010203Z.json.gz",
        );
        assert_eq!(digest.class, KeyClass::Digest);
        let insight = ObjectKey::parse(
            "o-fxozgwu6rc/AWSLogs/o-fxozgwu6rc/123456789015/CloudTrail-Insight/ca-central-1/2020/09/23/123456789015_CloudTrail-Insight_ca-central-1_20200923T0516Z_KL5e9VCV2SS7IqzB.json.gz",
        );
        assert_eq!(insight.class, KeyClass::Insight);
    }

    #[test]
    fn other_objects() {
        for key in [
            "AWSLogs/111122223333/CloudTrail-Lake/Query/2023/01/01/q1/result_1.csv.gz",
            "AWSLogs/111122223333/Config/us-east-1/2023/1/1/ConfigSnapshot/x.json.gz",
            "notes/readme.txt",
        ] {
            assert_eq!(ObjectKey::parse(key).class, KeyClass::Other, "{key}");
        }
    }

    /// A name is anything a bucket or a disk holds: a character of another script where the
    /// delivery time goes is no time, not a crash (each of these is 14 bytes, T and Z in place).
    #[test]
    fn a_delivery_time_with_other_characters_is_none() {
        for time in ["202é051T1234Z", "20240501T1é4Z"] {
            assert_eq!(time.len(), 14);
            let key = format!(
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_{time}_x.json.gz"
            );
            assert_eq!(ObjectKey::parse(&key).delivered, None, "{time}");
        }
        let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T1234Z_x.json.gz";
        assert_eq!(ObjectKey::parse(key).delivered, Some(((2024, 5, 1), 12, 34)));
    }
}
