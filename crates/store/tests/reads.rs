//! Listings come in a stable order, whether held or streamed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use granttrail_grants::{Grant, normalise};
use granttrail_store::{GrantFilter, Store, StoreError};

const KEYS: [&str; 2] = [
    "arn:aws:kms:us-east-1:111122223333:key/2222bbbb-2222-2222-2222-222222222222",
    "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111",
];

fn record(event_id: &str, name: &str, key: &str, grant: &str, hour: u32) -> String {
    let time = format!("2024-01-01T{hour:02}:00:00Z");
    match name {
        "CreateGrant" => format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"{event_id}","eventName":"CreateGrant",
                "eventTime":"{time}","resources":[{{"ARN":"{key}"}}],
                "requestParameters":{{"granteePrincipal":"arn:aws:iam::111122223333:role/r","operations":["Decrypt"]}},
                "responseElements":{{"grantId":"{grant}"}}}}"#
        ),
        _ => format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"{event_id}","eventName":"RetireGrant",
                "eventTime":"{time}","resources":[{{"ARN":"{key}"}}],"additionalEventData":{{"grantId":"{grant}"}}}}"#
        ),
    }
}

/// The grants `filter` lists, one at a time ([`Store::for_each_grant`]).
fn streamed(store: &Store, filter: &GrantFilter) -> Vec<Grant> {
    let mut listed = Vec::new();
    store
        .for_each_grant(filter, |g| {
            listed.push(g);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    listed
}

fn order(grants: &[Grant]) -> Vec<(&str, Option<i64>, &str)> {
    grants.iter().map(|g| (g.key_arn.as_str(), g.created_at, g.grant_id.as_str())).collect()
}

#[test]
fn grants_are_listed_by_key_then_creation_then_id_held_or_streamed() {
    let mut store = Store::open_in_memory().unwrap();
    let mut writer = store.begin_object("a").unwrap().unwrap();
    // Written in no particular order; "g0" on each key is known only from its end.
    let events = [
        ("e1", "CreateGrant", 0, "g3", 5),
        ("e2", "CreateGrant", 1, "g9", 2),
        ("e3", "RetireGrant", 0, "g0", 9),
        ("e4", "CreateGrant", 0, "g1", 5),
        ("e5", "CreateGrant", 1, "g2", 7),
        ("e6", "CreateGrant", 0, "g2", 1),
        ("e7", "RetireGrant", 1, "g0", 8),
    ];
    for (id, name, key, grant, hour) in events {
        let raw = record(id, name, KEYS[key], grant, hour);
        writer.add(&normalise(raw.as_bytes()).unwrap().unwrap(), &raw).unwrap();
    }
    writer.commit("LogFile", 1, events.len() as u64, 0).unwrap();
    let at = |hour: i64| 1_704_067_200 + hour * 3600;
    let (a, b) = (KEYS[1], KEYS[0]);
    let all = store.grants(&GrantFilter::default()).unwrap();
    assert_eq!(
        order(&all),
        [
            (a, None, "g0"),
            (a, Some(at(2)), "g9"),
            (a, Some(at(7)), "g2"),
            (b, None, "g0"),
            (b, Some(at(1)), "g2"),
            (b, Some(at(5)), "g1"),
            (b, Some(at(5)), "g3"),
        ]
    );
    let active = GrantFilter { active_at: Some(at(6)), ..GrantFilter::default() };
    let alive = store.grants(&active).unwrap();
    assert_eq!(
        order(&alive),
        [
            (a, None, "g0"),
            (a, Some(at(2)), "g9"),
            (b, None, "g0"),
            (b, Some(at(1)), "g2"),
            (b, Some(at(5)), "g1"),
            (b, Some(at(5)), "g3")
        ]
    );
    for (filter, held) in [(GrantFilter::default(), all), (active, alive)] {
        assert_eq!(streamed(&store, &filter), held);
    }
}

/// A listing looks the texts of its grants up a batch at a time: across more grants than a
/// batch, and more distinct texts than one lookup, each grant gets its own texts back.
#[test]
fn grants_of_many_distinct_principals_read_back_their_own() {
    let mut store = Store::open_in_memory().unwrap();
    let mut writer = store.begin_object("a").unwrap().unwrap();
    let grantee = |i: usize| format!("arn:aws:iam::111122223333:role/grantee-{i:04}");
    let n = 700;
    for i in 0..n {
        let raw = format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"e{i}","eventName":"CreateGrant",
                "eventTime":"2024-01-01T00:00:00Z","resources":[{{"ARN":"{}"}}],
                "userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/maker-{i}/s"}},
                "requestParameters":{{"granteePrincipal":"{}","operations":["Decrypt","Op{i}"]}},
                "responseElements":{{"grantId":"g{i:04}"}}}}"#,
            KEYS[0],
            grantee(i)
        );
        writer.add(&normalise(raw.as_bytes()).unwrap().unwrap(), &raw).unwrap();
    }
    writer.commit("LogFile", 1, n as u64, 0).unwrap();
    let held = store.grants(&GrantFilter::default()).unwrap();
    assert_eq!(held.len(), n);
    assert_eq!(held, streamed(&store, &GrantFilter::default()));
    for (i, grant) in held.iter().enumerate() {
        assert_eq!(grant.grant_id, format!("g{i:04}"));
        assert_eq!(grant.spec.grantee_principal.as_deref(), Some(grantee(i).as_str()));
        let operations: Vec<String> = grant.spec.operations.clone().unwrap_or_default();
        assert_eq!(operations, ["Decrypt".to_string(), format!("Op{i}")]);
        let maker = grant.created_by.as_ref().and_then(|a| a.principal.as_deref()).unwrap_or_default();
        assert!(maker.contains(&format!("maker-{i}/")), "{maker}");
    }
    // One grant alone is read with its texts in one statement: the same grant.
    for i in [0, 255, 256, n - 1] {
        let alone = store.grant(KEYS[0], &format!("g{i:04}")).unwrap();
        assert_eq!(alone.as_ref(), Some(&held[i]));
    }
    assert_eq!(store.grant(KEYS[1], "g0000").unwrap(), None);
}
