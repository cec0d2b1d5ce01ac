//! Which stored records `granttrail prune` may drop: the rule, without a database.
//!
//! A pruned record keeps its normalised event (grants, labels and findings are computed from
//! those), so pruning only loses the record as delivered, the evidence an investigator would
//! show. The records that evidence rests on are never pruned: every event that makes or ends
//! a grant or shapes how a key's calls are judged, every event outside KMS (permission
//! changes, trail configuration), and every event a finding or a grant-only label cites.

use std::collections::BTreeSet;

use crate::classify::{Label, Reason};
use crate::event::KmsEvent;
use crate::findings::Finding;
use crate::invalidation::sets_key_context;

/// The KMS events whose records are kept whatever their age: the grant lifecycle and the key
/// events that decide it.
pub const LIFECYCLE_EVENTS: [&str; 6] =
    ["CreateGrant", "RetireGrant", "RevokeGrant", "DeleteKey", "ScheduleKeyDeletion", "CancelKeyDeletion"];

/// Seconds in a day, for `keep_call_records_days`.
pub const DAY: i64 = 86_400;

/// May the record of `event` be dropped when records before `cutoff` are pruned? Cited
/// events ([`cited_events`]) are decided by the caller, which knows them.
pub fn prunable(event: &KmsEvent, cutoff: i64) -> bool {
    event.event_time < cutoff
        && event.is_kms()
        && !LIFECYCLE_EVENTS.contains(&event.event_name.as_str())
        && !sets_key_context(event)
}

/// The events the findings and the grant-only labels cite, and the grant-only calls
/// themselves: their records stay, whatever their age. `labels` gives each labelled call's
/// eventID, label and reasons.
pub fn cited_events<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
    labels: impl IntoIterator<Item = (&'a str, Label, &'a [Reason])>,
) -> BTreeSet<String> {
    let mut cited: BTreeSet<String> =
        findings.into_iter().flat_map(|f| f.event_ids.iter().cloned()).collect();
    for (event_id, label, reasons) in labels {
        if depends_on_grant(label) {
            cited.insert(event_id.to_string());
            cited.extend(reasons.iter().flat_map(|r| r.event_ids.iter().cloned()));
        }
    }
    cited
}

/// The labels that say a call depended on a grant.
pub fn depends_on_grant(label: Label) -> bool {
    matches!(label, Label::GrantOnly | Label::GrantOnlyLikely)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, source: &str, time: i64) -> KmsEvent {
        let record = format!(
            r#"{{"eventSource":"{source}","eventName":"{name}","eventID":"e","eventTime":"2024-01-01T00:00:00Z"}}"#
        );
        let mut event = crate::normalise(record.as_bytes()).unwrap().unwrap();
        event.event_time = time;
        event
    }

    #[test]
    fn only_old_kms_calls_outside_the_lifecycle_are_prunable() {
        let kms = "kms.amazonaws.com";
        assert!(prunable(&event("Decrypt", kms, 10), 11));
        assert!(!prunable(&event("Decrypt", kms, 11), 11), "not older than the cutoff");
        for kept in LIFECYCLE_EVENTS.iter().chain(&["PutKeyPolicy", "CreateKey", "CreateAlias"]) {
            assert!(!prunable(&event(kept, kms, 1), 11), "{kept}");
        }
        assert!(!prunable(&event("PutRolePolicy", "iam.amazonaws.com", 1), 11));
    }

    #[test]
    fn grant_only_labels_keep_their_call_and_what_they_cite() {
        let cites = |id: &str| vec![Reason { text: "t".into(), event_ids: vec![id.into()] }];
        let (denial, create) = (cites("denial"), cites("create"));
        let labels = [("a", Label::GrantOnlyLikely, &denial[..]), ("b", Label::GrantCovered, &create[..])];
        let cited = cited_events([], labels);
        assert_eq!(cited, ["a", "denial"].into_iter().map(String::from).collect());
    }
}
