//! The grant lifecycle (grant-semantics.md §3.4): one grant's state as a function of the set
//! of events that touch it.
//!
//! The fold never depends on input order: creates and ends are ranked by `(eventTime,
//! eventID)` and the earliest wins, so reading files in any order, twice, or from two accounts
//! gives the same grant.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::{GrantSpec, KmsEvent};

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Active,
    Retired,
    Revoked,
    /// Ended by the deletion of its key (a `DeleteKey` service event).
    KeyDeleted,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::Retired => "retired",
            GrantState::Revoked => "revoked",
            GrantState::KeyDeleted => "key_deleted",
        }
    }

    pub fn parse(text: &str) -> Option<GrantState> {
        [GrantState::Active, GrantState::Retired, GrantState::Revoked, GrantState::KeyDeleted]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Who created or ended a grant, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The caller (ARN, principal id, or the service for service principals).
    pub principal: Option<String>,
    /// The AWS service that acted for the caller (`invokedBy`), when one did.
    pub service: Option<String>,
    pub source_ip: Option<String>,
    pub event_id: String,
}

/// Something in a grant's history that should not happen and deserves a look.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// A later CreateGrant returned the same grant id with different attributes.
    CreateMismatch { event_id: String },
    /// A CreateGrant for the grant is timed after its end; the grant is not revived.
    CreateAfterEnd { event_id: String },
    /// The grant was ended again after it had already ended.
    DuplicateEnd { event_id: String },
    /// An event names the grant after its key was deleted.
    EventAfterKeyDeleted { event_id: String },
    /// Two different records carry this eventID (AWS documentation examples do; so can anyone
    /// who writes to the log bucket). Both count as evidence.
    EventIdCollision { event_id: String },
}

/// One grant's rebuilt history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub key_arn: String,
    pub grant_id: String,
    pub state: GrantState,
    /// False when the grant is known only from its end (created before the logs begin); its
    /// attributes are then unknown.
    pub creation_seen: bool,
    pub spec: GrantSpec,
    /// Account of the principal that created the grant (may differ from the key's account).
    pub issuing_account: Option<String>,
    pub created_at: Option<i64>,
    pub created_by: Option<Actor>,
    pub ended_at: Option<i64>,
    pub ended_by: Option<Actor>,
    /// Every successful CreateGrant that returned this grant id (Name retries share it).
    pub create_event_ids: Vec<String>,
    /// Every successful end (retire, revoke, key deletion) that named this grant.
    pub end_event_ids: Vec<String>,
    pub anomalies: Vec<Anomaly>,
}

/// Collapses cross-account copies of one call (same `sharedEventID`) into one event and drops
/// repeated `eventID`s. The copy kept is the key owner's when present, else the smallest
/// `eventID`; its caller identity is completed from a copy that names the caller's ARN. Of two
/// different records with one `eventID` (a collision), the one first in content order is the
/// call, whichever arrived first; [`fold_grant`] counts both.
pub fn logical_events<'a, I>(events: I) -> Vec<KmsEvent>
where
    I: IntoIterator<Item = &'a KmsEvent>,
{
    logical_event_refs(events).into_iter().map(Cow::into_owned).collect()
}

/// [`logical_events`] without copying the events that are kept as they are: only a copy whose
/// caller is completed from another copy is a new value.
pub fn logical_event_refs<'a, I>(events: I) -> Vec<Cow<'a, KmsEvent>>
where
    I: IntoIterator<Item = &'a KmsEvent>,
{
    let mut groups: BTreeMap<&str, Vec<&KmsEvent>> = BTreeMap::new();
    for e in events {
        let id = e.shared_event_id.as_deref().unwrap_or(e.event_id.as_str());
        groups.entry(id).or_default().push(e);
    }
    groups
        .into_values()
        .map(|mut copies| {
            copies.sort_by(|a, b| a.event_id.cmp(&b.event_id).then_with(|| content_order(a, b)));
            copies.dedup_by(|a, b| a.event_id == b.event_id);
            let owner_copy = copies.iter().find(|e| {
                e.recipient_account_id.is_some() && e.recipient_account_id.as_deref() == e.key_account()
            });
            let chosen: &'a KmsEvent = owner_copy.unwrap_or(&copies[0]);
            if chosen.caller.arn.is_none()
                && let Some(full) = copies.iter().find(|e| e.caller.arn.is_some())
            {
                let mut chosen = chosen.clone();
                chosen.caller = full.caller.clone();
                chosen.source_ip = full.source_ip.clone().or(chosen.source_ip);
                chosen.user_agent = full.user_agent.clone().or(chosen.user_agent);
                return Cow::Owned(chosen);
            }
            Cow::Borrowed(chosen)
        })
        .collect()
}

/// How a grant names a service that CloudTrail logs as `AWS Internal` (it redacts which).
pub const UNNAMED_SERVICE: &str = "an AWS service (not named)";

fn actor(e: &KmsEvent) -> Actor {
    Actor {
        principal: e.caller.principal().map(str::to_string),
        service: e
            .caller
            .invoked_by
            .as_deref()
            .map(|s| if s == "AWS Internal" { UNNAMED_SERVICE.to_string() } else { s.to_string() }),
        source_ip: e.source_ip.clone(),
        event_id: e.event_id.clone(),
    }
}

/// An order of events by what they say, not by when they arrived: for the rare records that
/// share an eventID.
fn content_order(a: &KmsEvent, b: &KmsEvent) -> std::cmp::Ordering {
    if a == b { std::cmp::Ordering::Equal } else { format!("{a:?}").cmp(&format!("{b:?}")) }
}

/// The events a grant is rebuilt from: one per call ([`logical_events`]), plus every other
/// distinct record that carries the eventID of one of them (a collision), so that a CreateGrant
/// is never hidden behind a different record of its eventID, whichever arrived first. Returns
/// the events and the eventIDs that collide.
fn with_colliding_records<'a>(
    events: impl Iterator<Item = &'a KmsEvent> + Clone,
) -> (Vec<KmsEvent>, BTreeSet<String>) {
    let mut all = logical_events(events.clone());
    let mut colliding = BTreeSet::new();
    for e in events.filter(|e| e.shared_event_id.is_none()) {
        let same_id = |l: &KmsEvent| l.event_id == e.event_id && l.shared_event_id.is_none();
        if all.iter().any(same_id) && !all.iter().any(|l| l == e) {
            colliding.insert(e.event_id.clone());
            all.push(e.clone());
        }
    }
    (all, colliding)
}

/// The eventIDs that two different records carry (collisions), among `events`. Cross-account
/// copies (a `sharedEventID`) are one call, not a collision.
pub fn colliding_event_ids<'a>(events: impl IntoIterator<Item = &'a KmsEvent>) -> BTreeSet<String> {
    let mut by_id: BTreeMap<&str, Vec<&KmsEvent>> = BTreeMap::new();
    for e in events.into_iter().filter(|e| e.shared_event_id.is_none()) {
        let records = by_id.entry(e.event_id.as_str()).or_default();
        if !records.contains(&e) {
            records.push(e);
        }
    }
    by_id.into_iter().filter(|(_, records)| records.len() > 1).map(|(id, _)| id.to_string()).collect()
}

fn rank(e: &KmsEvent) -> (i64, &str) {
    (e.event_time, e.event_id.as_str())
}

/// Rebuilds grant `grant_id` on `key_arn` from the events that touch it: its CreateGrant,
/// RetireGrant and RevokeGrant events and the key's DeleteKey events. Events for other grants
/// or keys, and failed events, are ignored. Returns `None` when no successful event creates or
/// ends the grant (failed attempts alone make no grant).
pub fn fold_grant(key_arn: &str, grant_id: &str, events: &[KmsEvent]) -> Option<Grant> {
    let (events, colliding) = with_colliding_records(events.iter().filter(|e| e.succeeded()));
    let names_grant = |e: &&KmsEvent| e.grant_id.as_deref() == Some(grant_id);
    let on_key = |e: &&KmsEvent| e.key_arn.as_deref().is_none_or(|k| k == key_arn);

    let mut creates: Vec<&KmsEvent> =
        events.iter().filter(|e| e.event_name == "CreateGrant").filter(names_grant).filter(on_key).collect();
    let mut ends: Vec<(&KmsEvent, GrantState)> = events
        .iter()
        .filter(names_grant)
        .filter(on_key)
        .filter_map(|e| match e.event_name.as_str() {
            "RetireGrant" => Some((e, GrantState::Retired)),
            "RevokeGrant" => Some((e, GrantState::Revoked)),
            _ => None,
        })
        .collect();
    if creates.is_empty() && ends.is_empty() {
        return None;
    }
    creates.sort_by(|a, b| rank(a).cmp(&rank(b)));
    let first_create = creates.first().copied();
    let mut deletions: Vec<&KmsEvent> = events
        .iter()
        .filter(|e| e.event_name == "DeleteKey" && e.key_arn.as_deref() == Some(key_arn))
        .filter(|e| first_create.is_none_or(|c| e.event_time >= c.event_time))
        .collect();
    deletions.sort_by(|a, b| rank(a).cmp(&rank(b)));
    ends.extend(deletions.iter().map(|e| (*e, GrantState::KeyDeleted)));
    ends.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)));

    let mut anomalies = Vec::new();
    let spec = first_create.and_then(|c| c.grant_spec.clone()).unwrap_or_default();
    for later in creates.iter().skip(1) {
        if later.grant_spec.as_ref().is_some_and(|s| *s != spec) {
            anomalies.push(Anomaly::CreateMismatch { event_id: later.event_id.clone() });
        }
    }
    let first_end = ends.first().copied();
    if let Some((end, _)) = first_end {
        for create in creates.iter().filter(|c| c.event_time > end.event_time) {
            anomalies.push(Anomaly::CreateAfterEnd { event_id: create.event_id.clone() });
        }
        let deleted_at = deletions.first().map(|d| d.event_time);
        for (later, state) in ends.iter().skip(1) {
            if *state == GrantState::KeyDeleted {
                continue;
            }
            anomalies.push(match deleted_at {
                Some(t) if later.event_time > t => {
                    Anomaly::EventAfterKeyDeleted { event_id: later.event_id.clone() }
                }
                _ => Anomaly::DuplicateEnd { event_id: later.event_id.clone() },
            });
        }
    }
    let cited = |id: &String| {
        creates.iter().map(|c| &c.event_id).chain(ends.iter().map(|(e, _)| &e.event_id)).any(|c| c == id)
    };
    anomalies.extend(
        colliding.iter().filter(|id| cited(id)).map(|id| Anomaly::EventIdCollision { event_id: id.clone() }),
    );
    anomalies.sort();
    anomalies.dedup();

    Some(Grant {
        key_arn: key_arn.to_string(),
        grant_id: grant_id.to_string(),
        state: first_end.map_or(GrantState::Active, |(_, s)| s),
        creation_seen: first_create.is_some(),
        spec,
        // A 12-digit account id or nothing: documentation examples put key ARNs and `xx` there.
        issuing_account: first_create
            .and_then(|c| c.caller.account_id.clone())
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())),
        created_at: first_create.map(|c| c.event_time),
        created_by: first_create.map(actor),
        ended_at: first_end.map(|(e, _)| e.event_time),
        ended_by: first_end.map(|(e, _)| actor(e)),
        create_event_ids: creates.iter().map(|c| c.event_id.clone()).collect(),
        end_event_ids: ends.iter().map(|(e, _)| e.event_id.clone()).collect(),
        anomalies,
    })
}

/// Every grant the events describe, one per `(key ARN, grant id)`, in that order. Events whose
/// key is unknown attach to the grant of the same id on a known key.
pub fn fold_all(events: &[KmsEvent]) -> Vec<Grant> {
    let mut ids: BTreeMap<(String, String), ()> = BTreeMap::new();
    let mut keys_of_grant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.succeeded()) {
        if let (Some(k), Some(g)) = (e.key_arn.as_deref(), e.grant_id.as_deref()) {
            keys_of_grant.entry(g).or_default().push(k);
        }
    }
    for e in events.iter().filter(|e| e.succeeded() && e.is_grant_event()) {
        let Some(g) = e.grant_id.as_deref() else { continue };
        match e.key_arn.as_deref() {
            Some(k) => {
                ids.insert((k.to_string(), g.to_string()), ());
            }
            None => {
                let known = keys_of_grant.get(g).cloned().unwrap_or_default();
                if known.is_empty() {
                    ids.insert((String::new(), g.to_string()), ());
                }
                for k in known {
                    ids.insert((k.to_string(), g.to_string()), ());
                }
            }
        }
    }
    ids.into_keys().filter_map(|(k, g)| fold_grant(&k, &g, events)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Caller, Constraints};

    const K: &str = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa";
    const K2: &str = "arn:aws:kms:us-east-1:111122223333:key/2222bbbb";
    const ROLE: &str = "arn:aws:iam::111122223333:role/app/Svc";

    fn base(id: &str, name: &str, t: i64) -> KmsEvent {
        KmsEvent {
            event_id: id.into(),
            event_source: crate::event::KMS_SOURCE.into(),
            shared_event_id: None,
            event_time: t,
            event_name: name.into(),
            event_type: Some("AwsApiCall".into()),
            aws_region: Some("us-east-1".into()),
            recipient_account_id: Some("111122223333".into()),
            error_code: None,
            error_message: None,
            caller: Caller {
                kind: Some("IAMUser".into()),
                arn: Some("arn:aws:iam::111122223333:user/Admin".into()),
                account_id: Some("111122223333".into()),
                ..Caller::default()
            },
            source_ip: Some("192.0.2.1".into()),
            user_agent: None,
            key_arn: Some(K.into()),
            destination_key_arn: None,
            request_key_id: None,
            grant_id: None,
            grant_spec: None,
            dry_run: false,
            details: Default::default(),
        }
    }

    fn create(id: &str, grant: &str, t: i64) -> KmsEvent {
        KmsEvent {
            grant_id: Some(grant.into()),
            grant_spec: Some(GrantSpec {
                grantee_principal: Some(ROLE.into()),
                operations: Some(vec!["Decrypt".into()]),
                ..GrantSpec::default()
            }),
            ..base(id, "CreateGrant", t)
        }
    }

    fn end(id: &str, name: &str, grant: &str, t: i64) -> KmsEvent {
        KmsEvent { grant_id: Some(grant.into()), ..base(id, name, t) }
    }

    fn failed(mut e: KmsEvent, code: &str) -> KmsEvent {
        e.error_code = Some(code.into());
        if e.event_name == "CreateGrant" {
            e.grant_id = None;
        }
        e
    }

    #[test]
    fn end_before_create_in_input_order_gives_the_same_grant() {
        let events = [end("e2", "RevokeGrant", "G1", 3600), create("e1", "G1", 0)];
        let mut reversed = events.clone();
        reversed.reverse();
        let g = fold_grant(K, "G1", &events).unwrap();
        assert_eq!(g, fold_grant(K, "G1", &reversed).unwrap());
        assert_eq!(g.state, GrantState::Revoked);
        assert_eq!((g.created_at, g.ended_at), (Some(0), Some(3600)));
        assert!(g.creation_seen && g.anomalies.is_empty());
    }

    #[test]
    fn end_without_create_is_a_grant_that_predates_the_logs() {
        let g = fold_grant(K, "G9", &[end("e1", "RevokeGrant", "G9", 500)]).unwrap();
        assert_eq!(g.state, GrantState::Revoked);
        assert!(!g.creation_seen);
        assert_eq!(g.created_at, None);
        assert_eq!(g.spec, GrantSpec::default());
    }

    #[test]
    fn duplicate_event_ids_are_no_ops() {
        let c = create("e1", "G1", 0);
        let once = fold_grant(K, "G1", std::slice::from_ref(&c)).unwrap();
        let twice = fold_grant(K, "G1", &[c.clone(), c]).unwrap();
        assert_eq!(once, twice);
        assert_eq!(twice.create_event_ids, vec!["e1"]);
    }

    #[test]
    fn cross_account_twins_are_one_event() {
        let mut owner = end("a-copy", "RevokeGrant", "G1", 100);
        owner.shared_event_id = Some("s1".into());
        let mut other = owner.clone();
        other.event_id = "b-copy".into();
        other.recipient_account_id = Some("444455556666".into());
        let g = fold_grant(K, "G1", &[create("e1", "G1", 0), other, owner]).unwrap();
        assert_eq!(g.end_event_ids, vec!["a-copy"], "the key owner's copy stands for the call");
        assert!(g.anomalies.is_empty(), "a twin is not a second end: {:?}", g.anomalies);
    }

    #[test]
    fn name_retries_collapse_into_one_grant() {
        let mut first = create("e1", "G1", 0);
        let mut retry = create("e2", "G1", 2);
        for e in [&mut first, &mut retry] {
            if let Some(spec) = e.grant_spec.as_mut() {
                spec.name = Some("n1".into());
            }
        }
        let all = fold_all(&[retry, first, end("e3", "RetireGrant", "G1", 900)]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].created_at, Some(0));
        assert_eq!(all[0].create_event_ids, vec!["e1", "e2"]);
        assert_eq!(all[0].state, GrantState::Retired);
        assert!(all[0].anomalies.is_empty());
    }

    #[test]
    fn retries_without_a_name_stay_distinct_grants() {
        let all =
            fold_all(&[create("e1", "G1", 0), create("e2", "G2", 2), end("e3", "RetireGrant", "G1", 900)]);
        let states: Vec<_> = all.iter().map(|g| (g.grant_id.as_str(), g.state)).collect();
        assert_eq!(states, vec![("G1", GrantState::Retired), ("G2", GrantState::Active)]);
    }

    #[test]
    fn failed_and_dry_run_creates_make_no_grant() {
        for code in
            ["AccessDenied", "DryRunOperationException", "ValidationException", "LimitExceededException"]
        {
            let mut e = failed(create("e1", "G1", 0), code);
            e.grant_id = Some("G1".into()); // even if an id were logged
            assert_eq!(fold_grant(K, "G1", &[e.clone()]), None, "{code}");
            assert!(fold_all(&[e]).is_empty());
        }
    }

    #[test]
    fn failed_end_changes_nothing() {
        let g = fold_grant(
            K,
            "G1",
            &[create("e1", "G1", 0), failed(end("e2", "RetireGrant", "G1", 10), "AccessDeniedException")],
        )
        .unwrap();
        assert_eq!(g.state, GrantState::Active);
    }

    #[test]
    fn delete_key_ends_open_grants_but_disable_and_schedule_do_not() {
        let events = [
            create("e1", "G1", 0),
            create("e2", "G2", 0),
            end("e3", "RevokeGrant", "G2", 50),
            base("e4", "DisableKey", 100),
            base("e5", "ScheduleKeyDeletion", 110),
        ];
        let before: Vec<_> = fold_all(&events).iter().map(|g| g.state).collect();
        assert_eq!(before, vec![GrantState::Active, GrantState::Revoked]);
        let mut deleted = events.to_vec();
        deleted.push(base("e6", "DeleteKey", 700));
        let after = fold_all(&deleted);
        assert_eq!(after[0].state, GrantState::KeyDeleted);
        assert_eq!(after[0].ended_at, Some(700));
        assert_eq!(after[1].state, GrantState::Revoked, "an ended grant keeps its end");
        assert_eq!(after[1].ended_at, Some(50));
    }

    #[test]
    fn delete_key_on_another_key_changes_nothing() {
        let mut other = base("e9", "DeleteKey", 10);
        other.key_arn = Some(K2.into());
        assert_eq!(fold_grant(K, "G1", &[create("e1", "G1", 0), other]).unwrap().state, GrantState::Active);
    }

    #[test]
    fn end_after_key_deletion_is_an_anomaly() {
        let g = fold_grant(
            K,
            "G1",
            &[create("e1", "G1", 0), base("e2", "DeleteKey", 100), end("e3", "RetireGrant", "G1", 200)],
        )
        .unwrap();
        assert_eq!(g.state, GrantState::KeyDeleted);
        assert_eq!(g.anomalies, vec![Anomaly::EventAfterKeyDeleted { event_id: "e3".into() }]);
    }

    #[test]
    fn create_after_end_never_resurrects() {
        let g = fold_grant(K, "G1", &[end("e1", "RevokeGrant", "G1", 100), create("e2", "G1", 200)]).unwrap();
        assert_eq!(g.state, GrantState::Revoked);
        assert_eq!(g.anomalies, vec![Anomaly::CreateAfterEnd { event_id: "e2".into() }]);
    }

    #[test]
    fn second_end_is_kept_as_evidence() {
        let g = fold_grant(
            K,
            "G1",
            &[create("e1", "G1", 0), end("e2", "RetireGrant", "G1", 10), end("e3", "RevokeGrant", "G1", 20)],
        )
        .unwrap();
        assert_eq!(g.state, GrantState::Retired);
        assert_eq!(g.end_event_ids, vec!["e2", "e3"]);
        assert_eq!(g.anomalies, vec![Anomaly::DuplicateEnd { event_id: "e3".into() }]);
    }

    #[test]
    fn mismatching_create_keeps_the_earliest_attributes() {
        let mut other = create("e2", "G1", 5);
        if let Some(s) = other.grant_spec.as_mut() {
            s.constraints = Some(Constraints::default());
        }
        let g = fold_grant(K, "G1", &[other, create("e1", "G1", 0)]).unwrap();
        assert_eq!(g.spec.constraints, None);
        assert_eq!(g.anomalies, vec![Anomaly::CreateMismatch { event_id: "e2".into() }]);
    }

    #[test]
    fn retire_without_key_attaches_to_the_grant_on_its_key() {
        let mut retire = end("e2", "RetireGrant", "G1", 10);
        retire.key_arn = None;
        let all = fold_all(&[retire.clone(), create("e1", "G1", 0)]);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].key_arn.as_str(), all[0].state), (K, GrantState::Retired));
        let alone = fold_all(&[retire]);
        assert_eq!((alone[0].key_arn.as_str(), alone[0].creation_seen), ("", false));
    }

    #[test]
    fn creator_and_ender_are_recorded() {
        let mut c = create("e1", "G1", 0);
        c.caller.invoked_by = Some("ec2.amazonaws.com".into());
        let mut r = end("e2", "RetireGrant", "G1", 10);
        r.caller = Caller {
            kind: Some("AWSService".into()),
            invoked_by: Some("ec2.amazonaws.com".into()),
            ..Caller::default()
        };
        r.source_ip = Some("ec2.amazonaws.com".into());
        let g = fold_grant(K, "G1", &[c, r]).unwrap();
        let created = g.created_by.unwrap();
        assert_eq!(created.principal.as_deref(), Some("arn:aws:iam::111122223333:user/Admin"));
        assert_eq!(created.service.as_deref(), Some("ec2.amazonaws.com"));
        assert_eq!(created.source_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(g.ended_by.unwrap().principal.as_deref(), Some("ec2.amazonaws.com"));
        assert_eq!(g.issuing_account.as_deref(), Some("111122223333"));
    }

    #[test]
    fn a_redacted_service_and_an_account_that_is_not_one_are_not_shown_as_such() {
        let mut c = create("e1", "G1", 0);
        c.caller.invoked_by = Some("AWS Internal".into());
        c.caller.account_id = Some("arn:aws:kms:eu-west-1:5555555555555:key/1".into());
        let g = fold_grant(K, "G1", &[c.clone()]).unwrap();
        assert_eq!(g.created_by.unwrap().service.as_deref(), Some(UNNAMED_SERVICE));
        assert_eq!(g.issuing_account, None);
        for odd in ["xx", "5555555555555", "11112222333a"] {
            c.caller.account_id = Some(odd.into());
            assert_eq!(fold_grant(K, "G1", &[c.clone()]).unwrap().issuing_account, None, "{odd}");
        }
    }

    #[test]
    fn two_records_of_one_event_id_both_count_whichever_arrives_first() {
        // A CreateGrant and a RetireGrant carrying one eventID, as an edited documentation
        // example or a forged file can.
        let create = create("x", "G1", 0);
        let retire = end("x", "RetireGrant", "G1", 10);
        let one = fold_grant(K, "G1", &[create.clone(), retire.clone()]).unwrap();
        let other = fold_grant(K, "G1", &[retire.clone(), create.clone()]).unwrap();
        assert_eq!(one, other);
        assert!(one.creation_seen, "the CreateGrant is not hidden by the other record");
        assert_eq!(one.state, GrantState::Retired);
        assert_eq!(one.anomalies, vec![Anomaly::EventIdCollision { event_id: "x".into() }]);

        assert_eq!(colliding_event_ids([&create, &retire, &create]), ["x".to_string()].into());
        assert!(colliding_event_ids([&create, &create]).is_empty());
        // The same record twice is a duplicate, not a collision.
        let twice = fold_grant(K, "G1", &[create.clone(), create.clone()]).unwrap();
        assert!(twice.anomalies.is_empty());
        // The call a colliding eventID stands for does not depend on arrival either.
        let decrypt = base("y", "Decrypt", 5);
        let encrypt = base("y", "Encrypt", 5);
        assert_eq!(logical_events([&decrypt, &encrypt]), logical_events([&encrypt, &decrypt]));
    }
}
