//! What a new fact makes stale: which keys' labels a new event or a changed grant can change,
//! and from which time. Storage engines persist an [`Invalidation`] and relabel what it names;
//! the rules are here so that every engine, and the incremental path beside the whole-key one,
//! follows the same ones as [`crate::matching`] and [`crate::classify`].

use std::collections::{BTreeMap, BTreeSet};

use crate::event::{KmsEvent, ORGANIZATIONS_SOURCE};
use crate::lifecycle::Grant;
use crate::settings::Settings;

/// The KMS calls that set a key's context: its type (`CreateKey`) and what can change the key
/// policy's outcome for every caller (the policy, and the tags and aliases a policy condition
/// can test). A change to one relabels the whole key. Storage engines that select these events
/// by name build the selection from this list.
pub const KEY_CONTEXT_EVENTS: &[&str] = &[
    "CreateKey",
    "PutKeyPolicy",
    "TagResource",
    "UntagResource",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
];

/// The key context events that can change the key policy's outcome (all but `CreateKey`).
pub const KEY_POLICY_CHANGES: &[&str] = match KEY_CONTEXT_EVENTS.split_first() {
    Some((_create_key, changes)) => changes,
    None => &[],
};

/// Does this event shape how every call on its key is classified? Other calls only add
/// observations ([`crate::Observation`]).
pub fn sets_key_context(e: &KmsEvent) -> bool {
    KEY_CONTEXT_EVENTS.contains(&e.event_name.as_str())
}

/// Does this non-KMS event change what principals may do (an IAM change in its account, or an
/// Organizations policy everywhere)? Trail configuration changes are coverage evidence only.
pub fn changes_permissions(e: &KmsEvent) -> bool {
    !e.is_kms() && !e.is_trail_configuration()
}

/// The calls a set of new facts added to one key (its own, and the ReEncrypts into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewCalls {
    /// The time of the earliest.
    pub earliest: i64,
    pub count: i64,
}

/// The labels a set of new facts can change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// Keys that gained calls: those calls are labelled, and the labels their observations
    /// (as a behaviour group's nearest success or denial) change.
    pub new_calls: BTreeMap<String, NewCalls>,
    /// Keys whose context ([`sets_key_context`]) changed, or one of whose grants changed in a
    /// way that can change any of their labels: relabelled whole.
    pub context_keys: BTreeSet<String>,
    /// Keys whose grants changed only from a time on (a new grant, a grant that ended): the
    /// calls from [`recheck_from`] that time on are rechecked.
    pub since: BTreeMap<String, i64>,
    /// Accounts whose principals' permissions changed (IAM events or IAM imports).
    pub accounts: BTreeSet<String>,
    /// An Organizations policy changed: every key.
    pub everything: bool,
    /// A call with no identifiable key arrived.
    pub keyless: bool,
}

impl Invalidation {
    pub fn is_empty(&self) -> bool {
        self.new_calls.is_empty()
            && self.context_keys.is_empty()
            && self.since.is_empty()
            && self.accounts.is_empty()
            && !self.everything
            && !self.keyless
    }

    /// Records what a new event can change.
    pub fn add_event(&mut self, e: &KmsEvent) {
        if e.is_kms() {
            if e.key_arn.is_none() && e.destination_key_arn.is_none() {
                self.keyless = true;
            }
            // A ReEncrypt within one key is one call on it.
            let destination = e.destination_key_arn.as_ref().filter(|d| e.key_arn.as_ref() != Some(*d));
            for key in e.key_arn.iter().chain(destination) {
                // Called for every new event: clone a key only the first time it is seen.
                match self.new_calls.get_mut(key) {
                    Some(calls) => {
                        calls.earliest = calls.earliest.min(e.event_time);
                        calls.count += 1;
                    }
                    None => {
                        self.new_calls.insert(key.clone(), NewCalls { earliest: e.event_time, count: 1 });
                    }
                }
            }
            if sets_key_context(e)
                && let Some(key) = &e.key_arn
            {
                self.context_keys.insert(key.clone());
            }
        } else if e.event_source == ORGANIZATIONS_SOURCE {
            self.everything = true;
        } else if changes_permissions(e) {
            self.accounts.extend(e.recipient_account_id.iter().chain(e.caller.account_id.iter()).cloned());
        }
    }

    /// Records what a grant's change (from `old` to `new`, as stored) can change on its key.
    pub fn grant_changed(&mut self, key: &str, old: Option<&Grant>, new: Option<&Grant>) {
        if old == new {
            return;
        }
        match changed_from(old, new) {
            Some(t) => {
                let earliest = self.since.entry(key.to_string()).or_insert(t);
                *earliest = (*earliest).min(t);
            }
            None => {
                self.context_keys.insert(key.to_string());
            }
        }
    }
}

/// The time from which a grant's change can change labels, or `None` when it can change any
/// label on its key.
fn changed_from(old: Option<&Grant>, new: Option<&Grant>) -> Option<i64> {
    match (old, new) {
        // A new grant whose creation was seen covers nothing before its creation.
        (None, Some(n)) if n.creation_seen => n.created_at,
        // An end that came or moved changes coverage from the earlier end on only, as long as
        // everything a label cites of the grant (its creation and terms) is unchanged.
        (Some(o), Some(n)) if o.creation_seen && n.creation_seen && same_creation(o, n) => {
            match (o.ended_at, n.ended_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        // A grant known only from its end may have covered any call before it.
        _ => None,
    }
}

/// Do two states of a grant differ only in how it ended?
fn same_creation(old: &Grant, new: &Grant) -> bool {
    let mut ended_like_new = old.clone();
    ended_like_new.state = new.state;
    ended_like_new.ended_at = new.ended_at;
    ended_like_new.ended_by = new.ended_by.clone();
    ended_like_new.end_event_ids = new.end_event_ids.clone();
    ended_like_new.anomalies = new.anomalies.clone();
    ended_like_new == *new
}

/// The earliest call a grant change at `changed_at` (a creation or an end) can relabel: a
/// grant covers calls from its creation less the clock tolerance (R-EC2), and an end is
/// rechecked from a consistency window earlier too, so that the draining window's start is
/// never missed.
pub fn recheck_from(changed_at: i64, settings: &Settings) -> i64 {
    changed_at
        .saturating_sub(settings.clock_tolerance_seconds)
        .saturating_sub(settings.consistency_window_seconds)
}

/// Grants that ended before this time cover none of the calls at or after `earliest_call`
/// ([`crate::matching`]'s time rule: nothing after the end and the consistency window), so a
/// relabelling of those calls need not read them.
pub fn grants_ended_before_are_dead(earliest_call: i64, settings: &Settings) -> i64 {
    earliest_call.saturating_sub(settings.consistency_window_seconds)
}

/// A stored label of group `group` timed in `[from, to]` may have a different nearest
/// observation when an observation between its stored neighbours `from` and `to` came or went.
/// Overlapping spans of one group are merged, so that each label is read once. `spans` must be
/// sorted.
pub fn merge_spans(spans: impl IntoIterator<Item = (i64, i64, i64)>) -> Vec<(i64, i64, i64)> {
    let mut merged: Vec<(i64, i64, i64)> = Vec::new();
    for (group, from, to) in spans {
        match merged.last_mut() {
            Some(last) if last.0 == group && from <= last.2 => last.2 = last.2.max(to),
            _ => merged.push((group, from, to)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::GrantSpec;
    use crate::lifecycle::GrantState;
    use crate::matching::outside_lifetime;

    const ACCOUNT: &str = "111122223333";

    fn event(source: &str, name: &str, key: Option<&str>) -> KmsEvent {
        let resources = key.map(|k| format!(r#","resources":[{{"ARN":"{k}"}}]"#)).unwrap_or_default();
        let record = format!(
            r#"{{"eventSource":"{source}","eventName":"{name}","eventID":"e","eventTime":"2024-01-01T00:00:00Z",
                "recipientAccountId":"{ACCOUNT}"{resources}}}"#
        );
        crate::normalise(record.as_bytes()).unwrap().unwrap()
    }

    fn key(n: u8) -> String {
        format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{n}{n}{n}{n}aaaa-1111-1111-1111-111111111111")
    }

    fn grant(created_at: i64, ended_at: Option<i64>) -> Grant {
        Grant {
            key_arn: key(1),
            grant_id: "g".to_string(),
            state: if ended_at.is_some() { GrantState::Retired } else { GrantState::Active },
            creation_seen: true,
            spec: GrantSpec::default(),
            issuing_account: None,
            created_at: Some(created_at),
            created_by: None,
            ended_at,
            ended_by: None,
            create_event_ids: vec!["c".to_string()],
            end_event_ids: Vec::new(),
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn a_call_marks_its_key_and_a_key_context_change_the_whole_key() {
        let mut stale = Invalidation::default();
        stale.add_event(&event("kms.amazonaws.com", "Decrypt", Some(&key(1))));
        assert_eq!(stale.new_calls.keys().collect::<Vec<_>>(), [&key(1)]);
        assert!(stale.context_keys.is_empty());
        for name in KEY_CONTEXT_EVENTS {
            stale.add_event(&event("kms.amazonaws.com", name, Some(&key(2))));
        }
        assert_eq!(stale.context_keys, [key(2)].into());
        assert!(!stale.keyless && !stale.everything && stale.accounts.is_empty());
    }

    #[test]
    fn new_calls_count_per_key_from_the_earliest_and_a_reencrypt_counts_on_both_keys() {
        let mut stale = Invalidation::default();
        let at = |t: i64, mut e: KmsEvent| {
            e.event_time = t;
            e
        };
        stale.add_event(&at(50, event("kms.amazonaws.com", "Decrypt", Some(&key(1)))));
        stale.add_event(&at(20, event("kms.amazonaws.com", "Encrypt", Some(&key(1)))));
        let mut across = at(30, event("kms.amazonaws.com", "ReEncrypt", Some(&key(1))));
        across.destination_key_arn = Some(key(2));
        stale.add_event(&across);
        let mut within = at(10, event("kms.amazonaws.com", "ReEncrypt", Some(&key(3))));
        within.destination_key_arn = Some(key(3));
        stale.add_event(&within);
        let expected = [
            (key(1), NewCalls { earliest: 20, count: 3 }),
            (key(2), NewCalls { earliest: 30, count: 1 }),
            (key(3), NewCalls { earliest: 10, count: 1 }),
        ];
        assert_eq!(stale.new_calls, expected.into());
    }

    #[test]
    fn a_call_without_a_key_is_keyless() {
        let mut stale = Invalidation::default();
        stale.add_event(&event("kms.amazonaws.com", "Decrypt", None));
        assert!(stale.keyless && stale.new_calls.is_empty());
    }

    #[test]
    fn iam_changes_mark_their_account_organizations_everything_and_trail_changes_nothing() {
        let mut stale = Invalidation::default();
        stale.add_event(&event("iam.amazonaws.com", "PutRolePolicy", None));
        assert_eq!(stale.accounts, [ACCOUNT.to_string()].into());
        assert!(!stale.everything);
        stale.add_event(&event(ORGANIZATIONS_SOURCE, "UpdatePolicy", None));
        assert!(stale.everything);

        let mut trail = Invalidation::default();
        trail.add_event(&event("cloudtrail.amazonaws.com", "PutEventSelectors", None));
        assert!(trail.is_empty(), "{trail:?}");
    }

    #[test]
    fn a_new_grant_rechecks_from_its_creation_and_one_known_from_its_end_relabels_the_key() {
        let mut stale = Invalidation::default();
        stale.grant_changed("k", None, Some(&grant(500, None)));
        stale.grant_changed("k", None, Some(&grant(300, None)));
        assert_eq!(stale.since.get("k"), Some(&300));

        let end_only = Grant { creation_seen: false, created_at: None, ..grant(0, Some(900)) };
        stale.grant_changed("k2", None, Some(&end_only));
        assert!(stale.context_keys.contains("k2") && !stale.since.contains_key("k2"));
    }

    #[test]
    fn an_end_rechecks_from_the_earlier_end_unless_the_creation_changed() {
        let mut stale = Invalidation::default();
        stale.grant_changed("k", Some(&grant(100, Some(800))), Some(&grant(100, Some(600))));
        assert_eq!(stale.since.get("k"), Some(&600));

        let mut terms = grant(100, Some(700));
        terms.spec.grantee_principal = Some("arn:aws:iam::111122223333:role/Other".to_string());
        stale.grant_changed("k3", Some(&grant(100, None)), Some(&terms));
        assert!(stale.context_keys.contains("k3"));

        let unchanged = grant(100, None);
        stale.grant_changed("k4", Some(&unchanged), Some(&unchanged));
        assert!(!stale.since.contains_key("k4") && !stale.context_keys.contains("k4"));
    }

    #[test]
    fn no_call_before_the_recheck_time_is_inside_a_new_grants_life() {
        let s = Settings::default();
        let created = 10_000;
        let g = grant(created, None);
        let from = recheck_from(created, &s);
        assert!(outside_lifetime(&g, from - 1, &s));
        assert!(!outside_lifetime(&g, created - s.clock_tolerance_seconds, &s));
    }

    #[test]
    fn a_grant_ended_before_the_bound_is_outside_its_life_at_the_earliest_call() {
        let s = Settings::default();
        let earliest = 50_000;
        let bound = grants_ended_before_are_dead(earliest, &s);
        assert!(outside_lifetime(&grant(0, Some(bound - 1)), earliest, &s));
        assert!(!outside_lifetime(&grant(0, Some(bound + 1)), earliest, &s));
    }

    #[test]
    fn overlapping_spans_of_a_group_merge_and_other_groups_stay_apart() {
        let spans = [(1, 0, 10), (1, 5, 20), (1, 30, 40), (2, 0, 100)];
        assert_eq!(merge_spans(spans), vec![(1, 0, 20), (1, 30, 40), (2, 0, 100)]);
    }
}
