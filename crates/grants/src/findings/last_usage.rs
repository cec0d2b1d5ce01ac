//! KMS's own record of a key's last use (`aws kms get-key-last-usage`), compared with the logs:
//! a use KMS reports that the logs do not hold, or a use later than the latest logged call,
//! shows the logs are incomplete for that key (rule GT105).
//!
//! Accepted: the `GetKeyLastUsage` response as the AWS CLI prints it, `{"KeyId",
//! "KeyCreationDate", "TrackingStartDate", "KeyLastUsage": {"CloudTrailEventId",
//! "KmsRequestId", "Operation", "Timestamp"}}`, times as RFC 3339 text or as seconds since the
//! epoch (`cli_timestamp_format = none`). `KeyLastUsage` is absent or empty when the key has
//! not been used since tracking began.

use serde_json::Value;

use crate::findings::{Finding, Rule, Severity, stable_id};
use crate::timestamp;

pub const USE_NOT_LOGGED: Rule = Rule {
    id: "GT105",
    severity: Severity::Medium,
    title: "KMS reports a use of the key that the logs do not show",
    why: "KMS's own record of the key's last successful cryptographic call names a call the ingested logs do not hold, or one later than any they hold: the logs are incomplete for this key, so grants and uses seen here may not be all there were.",
};

/// The operations whose use KMS records as a key's last use.
pub const TRACKED_OPERATIONS: &[&str] = &[
    "Decrypt",
    "DeriveSharedSecret",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "ReEncrypt",
    "Sign",
    "Verify",
    "VerifyMac",
];

/// The last successful cryptographic use KMS recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUse {
    pub at: i64,
    pub operation: Option<String>,
    pub event_id: Option<String>,
    pub request_id: Option<String>,
}

/// One `get-key-last-usage` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLastUsage {
    pub key_creation: Option<i64>,
    /// From when KMS recorded uses of the key.
    pub tracking_start: Option<i64>,
    pub last_use: Option<LastUse>,
}

fn time(value: Option<&Value>, field: &str) -> Result<Option<i64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            timestamp::parse(text).map(Some).ok_or_else(|| format!("{field} {text:?} is not a time"))
        }
        Some(Value::Number(n)) => {
            n.as_f64().map(|s| Some(s.floor() as i64)).ok_or_else(|| format!("{field} {n} is not a time"))
        }
        Some(other) => Err(format!("{field} is {other}, not a time")),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Parses `aws kms get-key-last-usage` output.
pub fn parse(json: &str) -> Result<KeyLastUsage, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let Some(top) = value.as_object() else {
        return Err("not a get-key-last-usage answer (an object)".into());
    };
    if !top.contains_key("TrackingStartDate") && !top.contains_key("KeyLastUsage") {
        return Err("not a get-key-last-usage answer: no TrackingStartDate or KeyLastUsage".into());
    }
    let last_use = match top.get("KeyLastUsage") {
        None | Some(Value::Null) => None,
        Some(Value::Object(used)) if used.is_empty() => None,
        Some(Value::Object(used)) => match time(used.get("Timestamp"), "KeyLastUsage.Timestamp")? {
            Some(at) => Some(LastUse {
                at,
                operation: text(used.get("Operation")),
                event_id: text(used.get("CloudTrailEventId")),
                request_id: text(used.get("KmsRequestId")),
            }),
            None => return Err("KeyLastUsage has no Timestamp".into()),
        },
        Some(other) => return Err(format!("KeyLastUsage is {other}, not an object")),
    };
    Ok(KeyLastUsage {
        key_creation: time(top.get("KeyCreationDate"), "KeyCreationDate")?,
        tracking_start: time(top.get("TrackingStartDate"), "TrackingStartDate")?,
        last_use,
    })
}

/// What the logs hold about the use KMS reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    /// A successful KMS call with the reported eventID is stored (on this key).
    pub event_stored: bool,
    /// The time of the latest logged successful KMS call on the key.
    pub latest_call: Option<i64>,
}

/// GT105 for `key`, when KMS's record of its last use (`usage`, imported from `source`) shows
/// the logs are incomplete.
pub fn check(key: &str, usage: &KeyLastUsage, logged: Logged, source: &str) -> Option<Finding> {
    let used = usage.last_use.as_ref()?;
    let when = timestamp::format(used.at);
    let what = used.operation.as_deref().unwrap_or("a cryptographic operation");
    let detail = match (used.event_id.as_deref(), logged.event_stored, logged.latest_call) {
        (Some(id), false, _) => {
            format!("KMS reports {what} at {when} (eventID {id}), which the logs do not hold")
        }
        (_, _, Some(latest)) if used.at > latest => format!(
            "KMS reports {what} at {when}, after the latest logged call on the key ({})",
            timestamp::format(latest)
        ),
        (None, _, None) => format!("KMS reports {what} at {when}; the logs hold no call on the key"),
        _ => return None,
    };
    Some(Finding {
        id: stable_id(&[USE_NOT_LOGGED.id, key, ""]),
        rule: USE_NOT_LOGGED,
        key_arn: key.to_string(),
        grant_id: String::new(),
        grantee_principal: None,
        detail,
        remediation: format!(
            "ingest the trail's logs up to {when} (and those of every trail that logs this key's account and region), then look again; get-key-last-usage read from {source}"
        ),
        event_ids: used.event_id.iter().cloned().collect(),
        observed_at: Some(used.at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn answer(last: &str) -> String {
        format!(
            r#"{{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","KeyCreationDate":"2024-01-01T00:00:00+00:00",
                "TrackingStartDate":1714521600.5{last}}}"#
        )
    }

    #[test]
    fn the_cli_answer_reads_with_times_as_text_or_numbers() {
        let used = parse(&answer(
            r#","KeyLastUsage":{"CloudTrailEventId":"e-1","KmsRequestId":"r-1","Operation":"Decrypt","Timestamp":"2024-05-01T12:00:00.123000+00:00"}"#,
        ))
        .unwrap();
        assert_eq!(used.tracking_start, Some(1_714_521_600));
        assert_eq!(used.key_creation, timestamp::parse("2024-01-01T00:00:00Z"));
        let last = used.last_use.unwrap();
        assert_eq!(
            (last.at, last.operation.as_deref(), last.event_id.as_deref()),
            (1_714_564_800, Some("Decrypt"), Some("e-1"))
        );
        assert_eq!(parse(&answer(r#","KeyLastUsage":{}"#)).unwrap().last_use, None);
        assert_eq!(parse(&answer("")).unwrap().last_use, None);
        for bad in [
            r#"{"Grants":[]}"#,
            "[]",
            r#"{"KeyLastUsage":{"Operation":"Decrypt"}}"#,
            r#"{"TrackingStartDate":"soon"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_use_the_logs_do_not_hold_or_after_them_is_gt105() {
        let used = |event_id: Option<&str>, at: i64| KeyLastUsage {
            key_creation: None,
            tracking_start: Some(0),
            last_use: Some(LastUse {
                at,
                operation: Some("Decrypt".into()),
                event_id: event_id.map(str::to_string),
                request_id: None,
            }),
        };
        let logged = |event_stored, latest_call| Logged { event_stored, latest_call };
        let missing = check(KEY, &used(Some("e-9"), 500), logged(false, Some(900)), "u.json").unwrap();
        assert_eq!(missing.rule.id, "GT105");
        assert!(
            missing.detail.contains("e-9") && missing.detail.contains("do not hold"),
            "{}",
            missing.detail
        );
        assert_eq!(missing.event_ids, ["e-9"]);
        assert!(check(KEY, &used(Some("e-9"), 500), logged(true, Some(900)), "u.json").is_none(), "logged");
        let later = check(KEY, &used(None, 1000), logged(false, Some(900)), "u.json").unwrap();
        assert!(later.detail.contains("after the latest logged call"), "{}", later.detail);
        assert!(
            check(KEY, &used(None, 800), logged(false, Some(900)), "u.json").is_none(),
            "no id, not later"
        );
        let none = KeyLastUsage { key_creation: None, tracking_start: Some(0), last_use: None };
        assert!(check(KEY, &none, logged(false, None), "u.json").is_none(), "not used: nothing to compare");
        assert_eq!(
            check(KEY, &used(Some("e-9"), 500), logged(false, None), "a.json").unwrap().id,
            check(KEY, &used(Some("e-7"), 700), logged(false, None), "b.json").unwrap().id,
            "one finding per key, whichever import"
        );
    }
}
