//! The grant state is a function of the set of events: any split of a generated event set into
//! objects, ingested in any order, with duplicate deliveries and cross-account twins, gives the
//! same grants and call labels as one clean ingest, as a rebuild, and (for grants) as the pure
//! fold over the events. Each property runs on SQLite and, with fewer cases, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use granttrail_grants::{Grant, KmsEvent, Label, fold_all, normalise};
use granttrail_ingest::{Limits, Outcome, ingest_object};
use granttrail_store::{CallFilter, GrantFilter, Store, StoredCall};
use proptest::prelude::*;
use serde_json::{Value, json};

const KEYS: [&str; 2] = [
    "arn:aws:kms:us-east-1:111122223333:key/aaaa0000-0000-0000-0000-000000000001",
    "arn:aws:kms:eu-west-1:111122223333:key/bbbb0000-0000-0000-0000-000000000002",
];

#[derive(Debug, Clone)]
enum Kind {
    Create { named: bool },
    FailedCreate,
    Retire { key_known: bool },
    Revoke,
    DeleteKey,
    Decrypt { denied: bool },
    PutKeyPolicy { admin_only: bool },
}

#[derive(Debug, Clone)]
struct Spec {
    kind: Kind,
    key: usize,
    grant: usize,
    time: i64,
    twin: bool,
    /// Which of two roles makes a call or is a grant's grantee.
    who: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    let kind = prop_oneof![
        4 => any::<bool>().prop_map(|named| Kind::Create { named }),
        1 => Just(Kind::FailedCreate),
        2 => any::<bool>().prop_map(|key_known| Kind::Retire { key_known }),
        2 => Just(Kind::Revoke),
        1 => Just(Kind::DeleteKey),
        3 => any::<bool>().prop_map(|denied| Kind::Decrypt { denied }),
        1 => any::<bool>().prop_map(|admin_only| Kind::PutKeyPolicy { admin_only }),
    ];
    (kind, 0..KEYS.len(), 0..4usize, 0..2000i64, prop::bool::weighted(0.2), 0..2usize)
        .prop_map(|(kind, key, grant, time, twin, who)| Spec { kind, key, grant, time, twin, who })
}

fn time(t: i64) -> String {
    granttrail_grants::timestamp::format(1_714_550_400 + t)
}

/// The CloudTrail records for one generated event: one, or two for a cross-account twin.
fn records(i: usize, s: &Spec) -> Vec<Value> {
    let key = KEYS[s.key];
    let grant = format!("{:064x}", s.grant + 1);
    let role = format!("arn:aws:iam::111122223333:role/app/R{}", s.who);
    let session = json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::111122223333:assumed-role/R{}/s", s.who),
        "principalId": format!("AROAEXAMPLE{}:s", s.who), "accountId": "111122223333",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role, "accountId": "111122223333"}}});
    let caller = json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/admin", "accountId": "111122223333"});
    let mut r = json!({
        "eventVersion": "1.09", "eventSource": "kms.amazonaws.com", "eventTime": time(s.time),
        "eventID": format!("ev-{i}"), "userIdentity": caller, "awsRegion": "us-east-1",
        "recipientAccountId": "111122223333", "resources": [{"type": "AWS::KMS::Key", "ARN": key}],
    });
    let (name, request, response) = match &s.kind {
        Kind::Create { named } => {
            let mut req = json!({"keyId": key, "granteePrincipal": role, "operations": ["Decrypt"]});
            if *named {
                req["name"] = json!("nightly");
            }
            ("CreateGrant", req, json!({"grantId": grant}))
        }
        Kind::FailedCreate => {
            r["errorCode"] = json!("AccessDenied");
            (
                "CreateGrant",
                json!({"keyId": key, "granteePrincipal": "x", "operations": ["Decrypt"]}),
                Value::Null,
            )
        }
        Kind::Retire { key_known } => {
            r["additionalEventData"] = json!({"grantId": grant});
            if !key_known {
                r.as_object_mut().unwrap().remove("resources");
            }
            ("RetireGrant", Value::Null, Value::Null)
        }
        Kind::Revoke => ("RevokeGrant", json!({"keyId": key, "grantId": grant}), Value::Null),
        Kind::DeleteKey => {
            r["eventType"] = json!("AwsServiceEvent");
            r["userIdentity"] = json!({"accountId": "111122223333", "invokedBy": "AWS Internal"});
            ("DeleteKey", Value::Null, Value::Null)
        }
        Kind::Decrypt { denied } => {
            r["userIdentity"] = session;
            if *denied {
                r["errorCode"] = json!("AccessDenied");
            }
            ("Decrypt", json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}), Value::Null)
        }
        Kind::PutKeyPolicy { admin_only } => {
            let principal = if *admin_only {
                "arn:aws:iam::111122223333:role/Admin"
            } else {
                "arn:aws:iam::111122223333:root"
            };
            let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:*", "Resource": "*"}]});
            (
                "PutKeyPolicy",
                json!({"keyId": key, "policyName": "default", "policy": policy.to_string()}),
                Value::Null,
            )
        }
    };
    r["eventName"] = json!(name);
    r["requestParameters"] = request;
    r["responseElements"] = response;
    with_twin(r, s.twin)
}

/// The record, and with `twin` the copy logged in a second account (same sharedEventID).
fn with_twin(mut r: Value, twin: bool) -> Vec<Value> {
    if !twin {
        return vec![r];
    }
    let id = r["eventID"].as_str().unwrap().to_string();
    r["sharedEventID"] = json!(format!("shared-{id}"));
    let mut other = r.clone();
    other["eventID"] = json!(format!("{id}-twin"));
    other["recipientAccountId"] = json!("444455556666");
    vec![r, other]
}

fn log_file(records: &[&Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"Records": records})).unwrap()
}

fn ingest(store: &mut Store, name: &str, bytes: &[u8]) {
    match ingest_object(store, name, bytes, &Limits::default(), 0).unwrap() {
        Outcome::Ingested { .. } | Outcome::AlreadyIngested => {}
        Outcome::Rejected(e) => panic!("{name} rejected: {e}"),
    }
}

fn grants(store: &Store) -> Vec<Grant> {
    store.grants(&GrantFilter::default()).unwrap()
}

fn calls(store: &mut Store) -> Vec<StoredCall> {
    store.refresh_labels().unwrap();
    store.calls(&CallFilter::default()).unwrap()
}

/// Each property is checked on stores of either engine: opened by this, or by [`on_postgres`].
fn sqlite() -> Store {
    Store::open_in_memory().unwrap()
}

/// Events, the objects (and second objects) each record goes to, and the objects' order.
type ArrivalCase = (Vec<Spec>, Vec<(usize, Option<usize>)>, Vec<usize>);

fn arrival_cases() -> impl Strategy<Value = ArrivalCase> {
    (
        prop::collection::vec(spec(), 1..30),
        prop::collection::vec((0..4usize, prop::option::weighted(0.3, 0..4usize)), 60),
        Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn grants_do_not_depend_on_split_order_or_duplicates(
        (specs, assignment, order) in arrival_cases(),
    ) {
        grants_independent_of_arrival(&sqlite, (specs, assignment, order))?;
    }
}

fn grants_independent_of_arrival(
    open: &dyn Fn() -> Store,
    (specs, assignment, order): ArrivalCase,
) -> Result<(), TestCaseError> {
    let all: Vec<Value> = specs.iter().enumerate().flat_map(|(i, s)| records(i, s)).collect();

    // One clean ingest of everything.
    let mut clean = open();
    ingest(&mut clean, "all", &log_file(&all.iter().collect::<Vec<_>>()));
    let expected = grants(&clean);
    let expected_calls = calls(&mut clean);
    let labelled: usize = specs
        .iter()
        .map(|s| usize::from(!matches!(s.kind, Kind::FailedCreate | Kind::Decrypt { denied: true })))
        .sum();
    prop_assert_eq!(expected_calls.len(), labelled, "every successful call is labelled once, twins included");

    // The pure fold over the normalised events agrees with the store.
    let events: Vec<KmsEvent> =
        all.iter().map(|r| normalise(r.to_string().as_bytes()).unwrap().unwrap()).collect();
    let mut oracle = fold_all(&events);
    oracle.sort_by(|a, b| {
        (&a.key_arn, a.created_at.is_some(), a.created_at, &a.grant_id).cmp(&(
            &b.key_arn,
            b.created_at.is_some(),
            b.created_at,
            &b.grant_id,
        ))
    });
    prop_assert_eq!(&oracle, &expected);

    // Split into four objects, some records delivered twice, objects read in any order.
    let files = split_into_four(&all, &assignment);
    let mut split = open();
    for &f in &order {
        ingest(&mut split, &format!("file-{f}"), &log_file(&files[f]));
    }
    let got = grants(&split);

    // The same objects with the labels refreshed after each one: later objects relabel
    // calls that already have labels, and only the rows that change are rewritten.
    let mut stepwise = open();
    for &f in &order {
        ingest(&mut stepwise, &format!("file-{f}"), &log_file(&files[f]));
        stepwise.refresh_labels().unwrap();
    }
    prop_assert_eq!(&calls(&mut stepwise), &expected_calls);

    prop_assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&expected).unwrap());
    prop_assert_eq!(&calls(&mut split), &expected_calls);

    // A full rebuild agrees with the incremental result.
    split.rebuild().unwrap();
    prop_assert_eq!(grants(&split), expected);
    prop_assert_eq!(calls(&mut split), expected_calls);
    Ok(())
}

/// `all` split into four objects as `assignment` says, some records in two of them.
fn split_into_four<'a>(all: &'a [Value], assignment: &[(usize, Option<usize>)]) -> Vec<Vec<&'a Value>> {
    let mut files: Vec<Vec<&Value>> = vec![Vec::new(); 4];
    for (i, record) in all.iter().enumerate() {
        let (home, copy) = assignment[i % assignment.len()];
        files[home].push(record);
        if let Some(copy) = copy {
            files[copy].push(record);
        }
    }
    files
}

/// Events, the time skews of twins, which object each record goes to, and the window size.
type WindowCase = (Vec<Spec>, Vec<i64>, Vec<bool>, usize);

fn window_cases() -> impl Strategy<Value = WindowCase> {
    (
        prop::collection::vec(spec(), 1..40),
        prop::collection::vec(prop_oneof![3 => Just(0i64), 1 => -3..4i64], 40),
        prop::collection::vec(any::<bool>(), 40),
        1..5usize,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// A key relabelled in windows of a few events gets the labels one pass over its history
    /// gives, also over labels stored before, and when the copies of a call were logged at
    /// different times (CloudTrail logs them at one time; the logs are not trusted to).
    #[test]
    fn windows_label_as_one_pass_does(
        (specs, skews, first_object, window) in window_cases(),
    ) {
        windows_label_as_one_pass(&sqlite, (specs, skews, first_object, window))?;
    }
}

fn windows_label_as_one_pass(
    open: &dyn Fn() -> Store,
    (specs, skews, first_object, window): WindowCase,
) -> Result<(), TestCaseError> {
    let all: Vec<Value> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let mut copies = records(i, s);
            if let [_, twin] = copies.as_mut_slice() {
                twin["eventTime"] = json!(time(s.time + skews[i]));
            }
            copies
        })
        .collect();
    let mut one_pass = open();
    ingest(&mut one_pass, "all", &log_file(&all.iter().collect::<Vec<_>>()));
    let expected = calls(&mut one_pass);

    // Two objects, labelled after each: the second relabelling replaces stored labels.
    let mut windowed = open();
    windowed.relabel_in_windows_of(window);
    for (name, early) in [("early", true), ("late", false)] {
        let part: Vec<&Value> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| first_object[i % first_object.len()] == early)
            .map(|(_, r)| r)
            .collect();
        ingest(&mut windowed, name, &log_file(&part));
        windowed.refresh_labels().unwrap();
    }
    prop_assert_eq!(&calls(&mut windowed), &expected);
    windowed.rebuild().unwrap();
    prop_assert_eq!(&calls(&mut windowed), &expected);
    Ok(())
}

/// A call that adds only an observation or a label: no grant, policy or key event.
#[derive(Debug, Clone)]
struct NewCall {
    key: usize,
    who: usize,
    time: i64,
    denied: bool,
    /// Which of two encryption contexts (or none) and source addresses: separate behaviour groups.
    context: Option<usize>,
    address: Option<usize>,
    twin: bool,
}

fn new_call() -> impl Strategy<Value = NewCall> {
    (
        0..KEYS.len(),
        0..3usize,
        0..2000i64,
        prop::bool::weighted(0.4),
        prop::option::of(0..2usize),
        prop::option::of(0..2usize),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(key, who, time, denied, context, address, twin)| NewCall {
            key,
            who,
            time,
            denied,
            context,
            address,
            twin,
        })
}

fn call_records(id: &str, c: &NewCall) -> Vec<Value> {
    let session = json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::111122223333:assumed-role/R{}/s", c.who),
        "principalId": format!("AROAEXAMPLE{}:s", c.who), "accountId": "111122223333",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::111122223333:role/app/R{}", c.who), "accountId": "111122223333"}}});
    let mut request = json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT"});
    if let Some(n) = c.context {
        request["encryptionContext"] = json!({"app": format!("c{n}")});
    }
    let mut r = json!({
        "eventVersion": "1.09", "eventSource": "kms.amazonaws.com", "eventTime": time(c.time),
        "eventID": id, "eventName": "Decrypt", "userIdentity": session, "awsRegion": "us-east-1",
        "recipientAccountId": "111122223333",
        "resources": [{"type": "AWS::KMS::Key", "ARN": KEYS[c.key]}], "requestParameters": request,
        "responseElements": null,
    });
    if let Some(n) = c.address {
        r["sourceIPAddress"] = json!(format!("10.0.0.{n}"));
    }
    if c.denied {
        r["errorCode"] = json!("AccessDenied");
    }
    with_twin(r, c.twin)
}

/// What a later object adds: calls, new grants, ends of known grants, copies of known calls.
#[derive(Debug, Clone)]
enum Step {
    Call(NewCall),
    Grant {
        key: usize,
        who: usize,
        time: i64,
    },
    /// Ends the n-th grant created so far (modulo), retired or revoked.
    End {
        nth: usize,
        time: i64,
        revoke: bool,
    },
    /// One more account's copy of the n-th call sent so far with a sharedEventID (modulo).
    Copy {
        nth: usize,
    },
    Policy {
        key: usize,
        admin_only: bool,
        time: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => new_call().prop_map(Step::Call),
        1 => (0..KEYS.len(), 0..3usize, 0..2000i64).prop_map(|(key, who, time)| Step::Grant { key, who, time }),
        2 => (0..3usize, 0..2000i64, any::<bool>()).prop_map(|(nth, time, revoke)| Step::End { nth, time, revoke }),
        1 => (0..8usize).prop_map(|nth| Step::Copy { nth }),
        1 => (0..KEYS.len(), any::<bool>(), 0..2000i64).prop_map(|(key, admin_only, time)| Step::Policy { key, admin_only, time }),
    ]
}

/// The events first ingested, then objects of steps (with the records delivered again).
type IncrementalCase = (Vec<Spec>, Vec<Vec<(Step, Option<usize>)>>);

fn incremental_cases() -> impl Strategy<Value = IncrementalCase> {
    (
        prop::collection::vec(spec(), 0..20),
        prop::collection::vec(
            prop::collection::vec((step(), prop::option::weighted(0.15, 0..40usize)), 1..8),
            1..6,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Later objects that add calls and grants (or end them) are relabelled incrementally (the
    /// new calls, the calls from a changed grant's time on, and stored labels whose nearest
    /// observations moved), and end exactly where a rebuild does.
    #[test]
    fn incremental_relabelling_equals_a_rebuild(
        (base, steps) in incremental_cases(),
    ) {
        incremental_equals_rebuild(&sqlite, (base, steps))?;
    }
}

fn incremental_equals_rebuild(
    open: &dyn Fn() -> Store,
    (base, steps): IncrementalCase,
) -> Result<(), TestCaseError> {
    // A grant for R0 on the first key alive from 0 to 1000: its calls are covered before,
    // observed after.
    let lived = [
        Spec { kind: Kind::Create { named: false }, key: 0, grant: 9, time: 0, twin: false, who: 0 },
        Spec { kind: Kind::Revoke, key: 0, grant: 9, time: 1000, twin: false, who: 0 },
    ];
    let base_records: Vec<Value> =
        base.iter().chain(&lived).enumerate().flat_map(|(i, s)| records(i, s)).collect();
    let mut store = open();
    store.always_relabel_incrementally();
    let mut everything: Vec<Value> = base_records.clone();
    ingest(&mut store, "base", &log_file(&base_records.iter().collect::<Vec<_>>()));
    store.refresh_labels().unwrap();
    let mut sent: Vec<Value> = Vec::new();
    // Grants created by the steps: (key, grant index).
    let mut created: Vec<(usize, usize)> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let mut object: Vec<Value> = Vec::new();
        let mut whole_expected = 0;
        for (i, (step, redeliver)) in step.iter().enumerate() {
            let id = 100 * (n + 1) + i;
            let fresh = match step {
                Step::Call(call) => call_records(&format!("call-{id}"), call),
                Step::Grant { key, who, time } => {
                    created.push((*key, 10 + created.len()));
                    let kind = Kind::Create { named: false };
                    records(
                        id,
                        &Spec {
                            kind,
                            key: *key,
                            grant: 10 + created.len() - 1,
                            time: *time,
                            twin: false,
                            who: *who,
                        },
                    )
                }
                Step::End { nth, time, revoke } => match created.get(nth % created.len().max(1)) {
                    Some(&(key, grant)) => {
                        let kind = if *revoke { Kind::Revoke } else { Kind::Retire { key_known: true } };
                        records(id, &Spec { kind, key, grant, time: *time, twin: false, who: 0 })
                    }
                    None => Vec::new(),
                },
                Step::Policy { key, admin_only, time } => {
                    // A key policy change relabels its key whole.
                    whole_expected += 1;
                    let kind = Kind::PutKeyPolicy { admin_only: *admin_only };
                    records(id, &Spec { kind, key: *key, grant: 0, time: *time, twin: false, who: 0 })
                }
                Step::Copy { nth } => {
                    let shared: Vec<&Value> =
                        sent.iter().filter(|r| r.get("sharedEventID").is_some()).collect();
                    match shared.get(nth % shared.len().max(1)) {
                        Some(&original) => {
                            let mut copy = original.clone();
                            copy["eventID"] = json!(format!("copy-{id}"));
                            copy["recipientAccountId"] = json!("777788889999");
                            whole_expected += 1;
                            vec![copy]
                        }
                        None => Vec::new(),
                    }
                }
            };
            everything.extend(fresh.iter().cloned());
            sent.extend(fresh.iter().cloned());
            object.extend(fresh);
            // Sometimes a record delivered before comes again: it changes nothing.
            if let Some(old) = redeliver.and_then(|k| sent.get(k)) {
                object.push(old.clone());
            }
        }
        ingest(&mut store, &format!("step-{n}"), &log_file(&object.iter().collect::<Vec<_>>()));
        let relabelled = store.refresh_labels().unwrap();
        // Another copy of a stored call or a key policy change relabels its key whole;
        // nothing else does.
        if whole_expected == 0 {
            prop_assert_eq!(relabelled.whole_keys, 0, "no key is relabelled whole");
        }
    }
    let incremental = calls(&mut store);

    let mut clean = open();
    ingest(&mut clean, "all", &log_file(&everything.iter().collect::<Vec<_>>()));
    clean.rebuild().unwrap();
    prop_assert_eq!(&incremental, &calls(&mut clean));
    store.rebuild().unwrap();
    prop_assert_eq!(&incremental, &calls(&mut store));
    Ok(())
}

/// A grant-less success long after a grant ended is evidence for a call the grant covered
/// long before: relabelling that old call needs the grant, though the new call cannot use it.
#[test]
fn a_new_observation_relabels_a_call_covered_by_a_grant_long_ended() {
    let lived = [
        Spec { kind: Kind::Create { named: false }, key: 0, grant: 9, time: 0, twin: false, who: 0 },
        Spec { kind: Kind::Revoke, key: 0, grant: 9, time: 1000, twin: false, who: 0 },
    ];
    let covered =
        NewCall { key: 0, who: 0, time: 500, denied: false, context: None, address: None, twin: false };
    let mut base: Vec<Value> = lived.iter().enumerate().flat_map(|(i, s)| records(i, s)).collect();
    base.extend(call_records("covered", &covered));
    let later = call_records("later", &NewCall { time: 1900, ..covered.clone() });

    let mut store = Store::open_in_memory().unwrap();
    store.always_relabel_incrementally();
    ingest(&mut store, "base", &log_file(&base.iter().collect::<Vec<_>>()));
    let before = calls(&mut store);
    let label_of = |calls: &[StoredCall], id: &str| calls.iter().find(|c| c.event_id == id).unwrap().label;
    assert_eq!(label_of(&before, "covered"), Label::GrantCovered);

    ingest(&mut store, "later", &log_file(&later.iter().collect::<Vec<_>>()));
    let relabelled = store.refresh_labels().unwrap();
    assert_eq!((relabelled.whole_keys, relabelled.incremental_keys), (0, 1));
    let after = calls(&mut store);
    assert_eq!(label_of(&after, "covered"), Label::GrantAndPolicy, "the later success shows a policy path");
    assert_eq!(label_of(&after, "later"), Label::NoGrant);
    store.rebuild().unwrap();
    assert_eq!(after, calls(&mut store));
}

/// An incremental relabelling reads only the grants its callers could match. A stored call
/// relabelled because another session of its role made a grant-less call must still find the
/// grant made for its own session, which the new call's caller does not match.
#[test]
fn a_relabelled_call_keeps_the_grant_made_for_its_own_session() {
    let create = Spec { kind: Kind::Create { named: false }, key: 0, grant: 9, time: 0, twin: false, who: 0 };
    let mut grant = records(0, &create);
    grant[0]["requestParameters"]["granteePrincipal"] = json!("AROAEXAMPLE0:s");
    let covered =
        NewCall { key: 0, who: 0, time: 500, denied: false, context: None, address: None, twin: false };
    let mut base = grant;
    base.extend(call_records("covered", &covered));
    let mut later = call_records("other-session", &NewCall { time: 900, ..covered.clone() });
    later[0]["userIdentity"]["arn"] = json!("arn:aws:sts::111122223333:assumed-role/R0/t");
    later[0]["userIdentity"]["principalId"] = json!("AROAEXAMPLE0:t");

    let mut store = Store::open_in_memory().unwrap();
    store.always_relabel_incrementally();
    ingest(&mut store, "base", &log_file(&base.iter().collect::<Vec<_>>()));
    let grants_of = |calls: &[StoredCall], id: &str| -> usize {
        calls.iter().find(|c| c.event_id == id).unwrap().grant_ids.len()
    };
    assert_eq!(grants_of(&calls(&mut store), "covered"), 1);

    ingest(&mut store, "later", &log_file(&later.iter().collect::<Vec<_>>()));
    let relabelled = store.refresh_labels().unwrap();
    assert_eq!((relabelled.whole_keys, relabelled.incremental_keys), (0, 1));
    let after = calls(&mut store);
    assert_eq!(grants_of(&after, "covered"), 1, "the session's own grant is still found");
    assert_eq!(grants_of(&after, "other-session"), 0);
    store.rebuild().unwrap();
    assert_eq!(after, calls(&mut store));
}

/// Events, the two whose eventIDs collide, which object each goes to, and the objects' order.
type CollisionCase = (Vec<Spec>, (usize, usize), Vec<usize>, Vec<usize>);

fn collision_cases() -> impl Strategy<Value = CollisionCase> {
    (
        prop::collection::vec(spec(), 2..20),
        (0..20usize, 0..20usize),
        prop::collection::vec(0..3usize, 40),
        Just((0..3usize).collect::<Vec<_>>()).prop_shuffle(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// A different record that carries an earlier record's eventID (a collision) is kept: the
    /// grants and labels are those of one clean ingest, and of the pure fold, whichever file
    /// holds which record and whatever the order the files arrive in.
    #[test]
    fn an_event_id_collision_does_not_depend_on_arrival(
        (specs, pair, assignment, order) in collision_cases(),
    ) {
        collision_independent_of_arrival(&sqlite, (specs, pair, assignment, order))?;
    }
}

fn collision_independent_of_arrival(
    open: &dyn Fn() -> Store,
    (specs, pair, assignment, order): CollisionCase,
) -> Result<(), TestCaseError> {
    let mut all: Vec<Value> = specs.iter().enumerate().flat_map(|(i, s)| records(i, s)).collect();
    let (from, to) = (pair.0 % all.len(), pair.1 % all.len());
    prop_assume!(from != to && all[from] != all[to] && all[to]["sharedEventID"].is_null());
    let id = all[from]["eventID"].clone();
    all[to]["eventID"] = id;

    let mut clean = open();
    ingest(&mut clean, "all", &log_file(&all.iter().collect::<Vec<_>>()));
    let expected = grants(&clean);
    let expected_calls = calls(&mut clean);

    let events: Vec<KmsEvent> =
        all.iter().map(|r| normalise(r.to_string().as_bytes()).unwrap().unwrap()).collect();
    let mut oracle = fold_all(&events);
    oracle.sort_by(|a, b| {
        (&a.key_arn, a.created_at.is_some(), a.created_at, &a.grant_id).cmp(&(
            &b.key_arn,
            b.created_at.is_some(),
            b.created_at,
            &b.grant_id,
        ))
    });
    prop_assert_eq!(&oracle, &expected);

    let mut files: Vec<Vec<&Value>> = vec![Vec::new(); 3];
    for (i, record) in all.iter().enumerate() {
        files[assignment[i % assignment.len()]].push(record);
    }
    let mut split = open();
    for &f in &order {
        ingest(&mut split, &format!("file-{f}"), &log_file(&files[f]));
        split.refresh_labels().unwrap();
    }
    prop_assert_eq!(&grants(&split), &expected);
    prop_assert_eq!(&calls(&mut split), &expected_calls);
    split.rebuild().unwrap();
    prop_assert_eq!(grants(&split), expected);
    prop_assert_eq!(calls(&mut split), expected_calls);
    Ok(())
}

/// The properties above, on PostgreSQL: every store a case opens is a database of its own on
/// one server. Fewer cases than on SQLite (a database takes a moment to create); the same
/// strategies, so a failure shrinks the same way.
/// An import relabels the way ingest's marks do: a call whose object is still marked new when a
/// key policy or an IAM snapshot is imported (an ingest stopped before relabelling) is
/// labelled once, whichever copy of it arrives after, as a rebuild labels it.
#[test]
fn an_import_among_pending_marks_labels_each_call_once() {
    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
    const IAM: &str = r#"{"UserDetailList":[],"GroupDetailList":[],"RoleDetailList":[],"Policies":[]}"#;
    for import in ["key policy", "IAM"] {
        let decrypt =
            Spec { kind: Kind::Decrypt { denied: false }, key: 0, grant: 0, time: 100, twin: true, who: 0 };
        // The owner's copy of the call, and the one logged in the caller's other account.
        let copies = records(0, &decrypt);
        let mut store = sqlite();
        store.always_relabel_incrementally();
        ingest(&mut store, "the other account's copy", &log_file(&[&copies[1]]));
        match import {
            "key policy" => store.import_key_policy(KEYS[0], 50, POLICY, "test").unwrap(),
            _ => drop(store.import_iam("111122223333", 50, IAM, "test").unwrap()),
        }
        ingest(&mut store, "the owner's copy", &log_file(&[&copies[0]]));
        let incremental = calls(&mut store);
        store.rebuild().unwrap();
        let rebuilt = calls(&mut store);
        assert_eq!(rebuilt.len(), 1, "{import}: one call, one label: {rebuilt:?}");
        assert_eq!(format!("{incremental:?}"), format!("{rebuilt:?}"), "{import}");
    }
}

/// Two different records under one eventID (a collision) that are calls on two keys at the
/// same second: each key's call keeps a label of its own, whichever arrives first, as a
/// rebuild gives (both labels were written on the first record's row, one over the other).
#[test]
fn colliding_calls_on_two_keys_at_one_second_keep_a_label_each() {
    let records_of: Vec<Value> = (0..KEYS.len())
        .map(|key| {
            let spec =
                Spec { kind: Kind::Decrypt { denied: false }, key, grant: 0, time: 100, twin: false, who: 0 };
            let mut record = records(key, &spec).remove(0);
            record["eventID"] = json!("ev-collision");
            record
        })
        .collect();
    for order in [[0, 1], [1, 0]] {
        let mut store = sqlite();
        store.always_relabel_incrementally();
        for i in order {
            ingest(&mut store, &format!("the call on key {i}"), &log_file(&[&records_of[i]]));
            store.refresh_labels().unwrap();
        }
        let incremental = calls(&mut store);
        let keys: std::collections::BTreeSet<&str> = incremental.iter().map(|c| c.key_arn.as_str()).collect();
        assert_eq!(
            (incremental.len(), keys),
            (2, KEYS.into_iter().collect()),
            "{order:?}: a label on each key: {incremental:?}"
        );
        store.rebuild().unwrap();
        assert_eq!(format!("{incremental:?}"), format!("{:?}", calls(&mut store)), "{order:?}");
    }
}

/// The two accounts' copies of one call a second apart (the logs are not trusted to agree),
/// and a grant created later whose recheck starts between them: the call is rechecked whole,
/// with both copies, and labelled once, as a rebuild labels it.
#[test]
fn a_recheck_starting_between_a_calls_copies_reads_the_call_whole() {
    let decrypt =
        Spec { kind: Kind::Decrypt { denied: false }, key: 0, grant: 0, time: 1000, twin: true, who: 0 };
    let mut copies = records(0, &decrypt);
    copies[1]["eventTime"] = json!(time(1001));
    for created_at in 1290..1315 {
        let mut store = sqlite();
        store.always_relabel_incrementally();
        ingest(&mut store, "the call", &log_file(&copies.iter().collect::<Vec<_>>()));
        store.refresh_labels().unwrap();
        let create = Spec {
            kind: Kind::Create { named: false },
            key: 0,
            grant: 1,
            time: created_at,
            twin: false,
            who: 0,
        };
        ingest(&mut store, "the grant", &log_file(&records(1, &create).iter().collect::<Vec<_>>()));
        let incremental = calls(&mut store);
        store.rebuild().unwrap();
        assert_eq!(
            format!("{incremental:?}"),
            format!("{:?}", calls(&mut store)),
            "grant created at {created_at}"
        );
    }
}

mod on_postgres {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use granttrail_store::{Journal, Location};
    use granttrail_testkit::Postgres;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    const CASES: u32 = 8;

    /// A property checked on the stores it opens.
    type Property<Case> = fn(&dyn Fn() -> Store, Case) -> Result<(), TestCaseError>;

    /// Runs `property` on `CASES` cases of `strategy`, each store a new database on `pg`.
    fn check<S: Strategy>(strategy: S, property: Property<S::Value>)
    where
        S::Value: std::fmt::Debug,
    {
        let Some(pg) = Postgres::start() else { return };
        let databases = AtomicUsize::new(0);
        let open = || {
            let name = format!("case_{}", databases.fetch_add(1, Ordering::Relaxed));
            let location = Location::Postgres(pg.database(&name));
            Store::open_at(&location, Journal::Wal, &mut |_| {}).unwrap()
        };
        let mut runner =
            TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
        if let Err(e) = runner.run(&strategy, |case| property(&open, case)) {
            panic!("on PostgreSQL: {e}");
        }
    }

    #[test]
    fn grants_do_not_depend_on_split_order_or_duplicates() {
        check(arrival_cases(), grants_independent_of_arrival);
    }

    #[test]
    fn windows_label_as_one_pass_does() {
        check(window_cases(), windows_label_as_one_pass);
    }

    #[test]
    fn incremental_relabelling_equals_a_rebuild() {
        check(incremental_cases(), incremental_equals_rebuild);
    }

    #[test]
    fn an_event_id_collision_does_not_depend_on_arrival() {
        check(collision_cases(), collision_independent_of_arrival);
    }

    /// Four writers at once, each writing one of the four objects of a split record by record
    /// (an object each), into one database: the grants and labels one writer of everything
    /// gives. The writers meet on keys, grants, texts and, through the records delivered
    /// twice, eventIDs; work a deadlock undid is written again, as ingest does. Two of them
    /// relabel after every object, so relabelling runs while the others write.
    #[test]
    fn writers_at_once_give_one_writers_answer() {
        let Some(pg) = Postgres::start() else { return };
        let cases = AtomicUsize::new(0);
        let open = |url: &str| {
            Store::open_at(&Location::Postgres(url.to_string()), Journal::Wal, &mut |_| {}).unwrap()
        };
        let mut runner =
            TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
        let result = runner.run(&arrival_cases(), |(specs, assignment, _)| {
            let case = cases.fetch_add(1, Ordering::Relaxed);
            let all: Vec<Value> = specs.iter().enumerate().flat_map(|(i, s)| records(i, s)).collect();
            let mut one = open(&pg.database(&format!("one_{case}")));
            ingest(&mut one, "all", &log_file(&all.iter().collect::<Vec<_>>()));
            let (expected, expected_calls) = (grants(&one), calls(&mut one));

            let many = pg.database(&format!("many_{case}"));
            drop(open(&many));
            let files = split_into_four(&all, &assignment);
            let start = Barrier::new(files.len());
            let undone = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for (f, file) in files.iter().enumerate() {
                    let (start, undone, many) = (&start, &undone, &many);
                    scope.spawn(move || {
                        let mut store = open(many);
                        start.wait();
                        for (r, record) in file.iter().enumerate() {
                            let bytes = log_file(&[record]);
                            while let Err(e) = ingest_object(
                                &mut store,
                                &format!("file-{f}-{r}"),
                                &bytes[..],
                                &Limits::default(),
                                0,
                            ) {
                                assert!(e.is_conflict(), "file-{f}-{r}: {e}");
                                undone.fetch_add(1, Ordering::Relaxed);
                            }
                            // Half the writers relabel after every object, as the Lambda
                            // does, while the others write: relabelling locks only its keys.
                            if f % 2 == 0 {
                                store.refresh_labels().unwrap();
                            }
                        }
                        store.refresh_labels_unless_busy().unwrap();
                    });
                }
            });
            let mut together = open(&many);
            prop_assert_eq!(grants(&together), expected, "{} object(s) written again", undone.into_inner());
            prop_assert_eq!(calls(&mut together), expected_calls);
            Ok(())
        });
        if let Err(e) = result {
            panic!("on PostgreSQL: {e}");
        }
    }
}
