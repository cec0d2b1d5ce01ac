//! How far the logs can be trusted: what CloudTrail's signed digests say of the log files the
//! events were read from (`granttrail verify`), and the findings that follow.
//!
//! - GT106: an event that creates or ends a grant, or a call that succeeded only through a
//!   grant, was read from a log file no trusted digest lists, or one whose content changed;
//! - GT107: a log file's content changed after CloudTrail delivered it;
//! - GT108: a log file a digest lists is missing.
//!
//! Log files are known by their file name: CloudTrail's names are unique (account, region,
//! time and a random part), so a verdict reached on `s3://…` holds for a downloaded copy too.

use serde::Serialize;

use crate::findings::{Finding, Rule, Severity, stable_id};
use crate::lifecycle::Grant;
use crate::timestamp;

/// What the digests say of one log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogVerdict {
    /// Listed by a trusted digest with this content's SHA-256.
    Verified,
    /// Listed with another SHA-256, or unreadable.
    Altered,
    /// Not listed by any trusted digest although digests cover its delivery.
    Unlisted,
    /// Delivered when no digest covers: validation off, a gap, or after the newest digest.
    NotCovered,
}

impl LogVerdict {
    pub const ALL: [LogVerdict; 4] =
        [LogVerdict::Verified, LogVerdict::Altered, LogVerdict::Unlisted, LogVerdict::NotCovered];

    pub fn as_str(self) -> &'static str {
        match self {
            LogVerdict::Verified => "verified",
            LogVerdict::Altered => "altered",
            LogVerdict::Unlisted => "unlisted",
            LogVerdict::NotCovered => "not covered",
        }
    }

    /// Does this verdict say the file is not what CloudTrail delivered (or not delivered by it)?
    pub fn is_untrusted(self) -> bool {
        matches!(self, LogVerdict::Altered | LogVerdict::Unlisted)
    }
}

/// The verdict on one log file, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVerdict {
    pub file_name: String,
    pub verdict: LogVerdict,
    /// Why, for a file that failed.
    pub reason: Option<String>,
    /// Where `verify` read it (a path or `s3://bucket/key`).
    pub object: String,
    pub verified_at: i64,
}

/// A log file a digest lists that `verify` did not find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingLogFile {
    pub file_name: String,
    /// `s3://bucket/key` as the digest lists it.
    pub object: String,
    pub account: String,
    pub region: String,
    /// The digest that lists it, and the period of deliveries that digest covers.
    pub listed_by: String,
    pub period_start: i64,
    pub period_end: i64,
}

/// The last component of a path or key: how log files are matched.
pub fn file_name(object: &str) -> &str {
    object.rsplit(['/', '\\']).next().unwrap_or(object)
}

pub const UNVERIFIED_GRANT_EVIDENCE: Rule = Rule {
    id: "GT106",
    severity: Severity::High,
    title: "A grant rests on a log file CloudTrail does not vouch for",
    why: "An event that creates or ends the grant, or a call that succeeded only through it, was read from a log file that no digest lists or whose content changed after delivery: someone who can write to the log bucket can plant or rewrite such a file, so this part of the grant's story may be invented.",
};

pub const LOG_FILE_ALTERED: Rule = Rule {
    id: "GT107",
    severity: Severity::High,
    title: "A log file was altered after delivery",
    why: "The file's content does not have the SHA-256 CloudTrail's digest lists for it: the events read from it may have been changed, added or removed by whoever could write to the log bucket.",
};

pub const LOG_FILE_MISSING: Rule = Rule {
    id: "GT108",
    severity: Severity::Medium,
    title: "A log file CloudTrail delivered is missing",
    why: "A digest lists a log file that is not among the files verified: grants created, retired or used in the hour it covers may be absent from this history.",
};

/// The integrity rules, for listings of every rule.
pub const RULES: [Rule; 3] = [UNVERIFIED_GRANT_EVIDENCE, LOG_FILE_ALTERED, LOG_FILE_MISSING];

/// What an event is to a grant, for GT106's sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Creates,
    Ends,
    GrantOnlyCall,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Role::Creates => "creates the grant",
            Role::Ends => "ends the grant",
            Role::GrantOnlyCall => "is a call that succeeded only through the grant",
        }
    }
}

/// An event behind a grant and the verdict on the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub event_id: String,
    pub role: Role,
    /// The object it was read from.
    pub object: String,
    pub verdict: Option<LogVerdict>,
}

/// GT106 for `grant` when any event behind it was read from an altered or unlisted file.
pub fn unverified_grant_evidence(grant: &Grant, sources: &[EventSource]) -> Option<Finding> {
    let bad: Vec<&EventSource> =
        sources.iter().filter(|s| s.verdict.is_some_and(LogVerdict::is_untrusted)).collect();
    let first = bad.first()?;
    let verdict = first.verdict.map_or("", |v| v.as_str());
    let more = match bad.len() {
        1 => String::new(),
        n => format!(" (and {} more event(s) from such files)", n - 1),
    };
    Some(Finding {
        id: stable_id(&[UNVERIFIED_GRANT_EVIDENCE.id, &grant.key_arn, &grant.grant_id]),
        rule: UNVERIFIED_GRANT_EVIDENCE,
        key_arn: grant.key_arn.clone(),
        grant_id: grant.grant_id.clone(),
        grantee_principal: grant.spec.grantee_principal.clone(),
        detail: format!(
            "event {}, which {}, was read from {} ({verdict} by `granttrail verify`){more}",
            first.event_id,
            first.role.describe(),
            first.object
        ),
        remediation: "confirm the event from a source the bucket's writers cannot touch (CloudTrail Lake, \
                      `aws cloudtrail lookup-events` within 90 days, another trail) before acting on the grant; \
                      find who could write to the log bucket"
            .to_string(),
        event_ids: bad.iter().map(|s| s.event_id.clone()).collect(),
        observed_at: grant.created_at.or(grant.ended_at),
    })
}

/// GT107 for a file whose content changed.
pub fn altered(file: &FileVerdict) -> Option<Finding> {
    (file.verdict == LogVerdict::Altered).then(|| Finding {
        id: stable_id(&[LOG_FILE_ALTERED.id, &file.file_name, ""]),
        rule: LOG_FILE_ALTERED,
        key_arn: String::new(),
        grant_id: String::new(),
        grantee_principal: None,
        detail: format!(
            "{}: {}",
            file.object,
            file.reason.as_deref().unwrap_or("its content does not have the SHA-256 its digest lists")
        ),
        remediation: "treat every event read from this file as unproven: compare it with another copy (a \
                      versioned or replicated bucket, an organization trail, CloudTrail Lake) and review who \
                      could write to the log bucket (S3 data events, the bucket policy)"
            .to_string(),
        event_ids: Vec::new(),
        observed_at: Some(file.verified_at),
    })
}

/// GT108 for a file a digest lists that was not found.
pub fn missing(file: &MissingLogFile) -> Finding {
    let (from, to) = (timestamp::format(file.period_start), timestamp::format(file.period_end));
    Finding {
        id: stable_id(&[LOG_FILE_MISSING.id, &file.file_name, ""]),
        rule: LOG_FILE_MISSING,
        key_arn: String::new(),
        grant_id: String::new(),
        grantee_principal: None,
        detail: format!(
            "{} is listed by {} but missing: it held events of account {} in {} delivered between {from} and \
             {to}, which may include grants created, retired, revoked or used",
            file.object, file.listed_by, file.account, file.region
        ),
        remediation: format!(
            "recover the file (a versioned or replicated bucket, an organization trail) and ingest it, or query \
             CloudTrail Lake or `aws cloudtrail lookup-events` for account {} in {} between {from} and {to}",
            file.account, file.region
        ),
        event_ids: Vec::new(),
        observed_at: Some(file.period_start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::GrantState;

    fn grant() -> Grant {
        Grant {
            key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            grant_id: "g".repeat(64),
            state: GrantState::Active,
            creation_seen: true,
            spec: crate::GrantSpec::default(),
            issuing_account: None,
            created_at: Some(0),
            created_by: None,
            ended_at: None,
            ended_by: None,
            create_event_ids: vec!["e1".into()],
            end_event_ids: Vec::new(),
            anomalies: Vec::new(),
        }
    }

    fn source(event_id: &str, role: Role, verdict: Option<LogVerdict>) -> EventSource {
        EventSource { event_id: event_id.into(), role, object: format!("/copy/{event_id}.json.gz"), verdict }
    }

    #[test]
    fn only_altered_or_unlisted_files_make_a_grant_unverified() {
        let g = grant();
        for quiet in [None, Some(LogVerdict::Verified), Some(LogVerdict::NotCovered)] {
            assert_eq!(
                unverified_grant_evidence(&g, &[source("e1", Role::Creates, quiet)]),
                None,
                "{quiet:?}"
            );
        }
        let f = unverified_grant_evidence(
            &g,
            &[
                source("e1", Role::Creates, Some(LogVerdict::Verified)),
                source("e2", Role::Ends, Some(LogVerdict::Unlisted)),
                source("e3", Role::GrantOnlyCall, Some(LogVerdict::Altered)),
            ],
        )
        .expect("GT106");
        assert_eq!(f.rule.id, "GT106");
        assert_eq!(f.event_ids, ["e2", "e3"]);
        assert!(
            f.detail.starts_with("event e2, which ends the grant, was read from /copy/e2.json.gz (unlisted"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("1 more"), "{}", f.detail);
        assert!(!f.remediation.contains("revoke"), "evidence in doubt is no reason to revoke");
    }

    #[test]
    fn file_findings_keep_their_ids_whatever_the_copy() {
        let verdict = |object: &str| FileVerdict {
            file_name: file_name(object).into(),
            verdict: LogVerdict::Altered,
            reason: None,
            object: object.into(),
            verified_at: 0,
        };
        let a = altered(&verdict("s3://b/AWSLogs/x/f.json.gz")).unwrap();
        let b = altered(&verdict("/copy/AWSLogs/x/f.json.gz")).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.rule.id, "GT107");
        assert!(altered(&FileVerdict { verdict: LogVerdict::Unlisted, ..verdict("/f") }).is_none());
        let m = missing(&MissingLogFile {
            file_name: "f.json.gz".into(),
            object: "s3://b/f.json.gz".into(),
            account: "111122223333".into(),
            region: "us-east-1".into(),
            listed_by: "/copy/d.json.gz".into(),
            period_start: 0,
            period_end: 3600,
        });
        assert_eq!(m.rule.severity, Severity::Medium);
        assert!(m.detail.contains("1970-01-01T00:00:00Z and 1970-01-01T01:00:00Z"), "{}", m.detail);
    }
}
