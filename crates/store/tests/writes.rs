//! Per-object transactions: all or nothing, idempotent, duplicates ignored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use granttrail_grants::{GrantState, normalise};
use granttrail_store::{GrantFilter, Store};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111";

fn create(event_id: &str, grant: &str) -> (granttrail_grants::KmsEvent, String) {
    let raw = format!(
        r#"{{"eventSource":"kms.amazonaws.com","eventID":"{event_id}","eventName":"CreateGrant",
            "eventTime":"2024-01-01T00:00:00Z","resources":[{{"ARN":"{KEY}"}}],
            "requestParameters":{{"granteePrincipal":"arn:aws:iam::111122223333:role/r","operations":["Decrypt"]}},
            "responseElements":{{"grantId":"{grant}"}}}}"#
    );
    (normalise(raw.as_bytes()).unwrap().unwrap(), raw)
}

#[test]
fn an_object_dropped_before_commit_leaves_nothing() {
    let mut store = Store::open_in_memory().unwrap();
    {
        let mut writer = store.begin_object("s3://b/k1").unwrap().unwrap();
        let (e, raw) = create("e1", "g1");
        writer.add(&e, &raw).unwrap();
    }
    assert_eq!(store.totals().unwrap(), (0, 0, 0));
    assert!(!store.is_ingested("s3://b/k1").unwrap());
}

#[test]
fn committed_objects_are_not_begun_again_and_duplicates_are_ignored() {
    let mut store = Store::open_in_memory().unwrap();
    let (e, raw) = create("e1", "g1");
    let mut writer = store.begin_object("a").unwrap().unwrap();
    assert!(writer.add(&e, &raw).unwrap());
    assert!(!writer.add(&e, &raw).unwrap(), "same eventID twice in one object");
    let counts = writer.commit("LogFile", 10, 2, 0).unwrap();
    assert_eq!((counts.kms_events, counts.new_events, counts.grant_events), (2, 1, 1));
    assert!(store.begin_object("a").unwrap().is_none());

    let mut writer = store.begin_object("b").unwrap().unwrap();
    assert!(!writer.add(&e, &raw).unwrap(), "same eventID in another object");
    assert_eq!(writer.commit("LogFile", 10, 1, 0).unwrap().new_events, 0);
    let grants = store.grants(&GrantFilter::default()).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].state, GrantState::Active);
    assert_eq!(store.totals().unwrap(), (2, 1, 1));
}

#[test]
fn a_file_database_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    {
        let mut store = Store::open(&path).unwrap();
        let (e, raw) = create("e1", "g1");
        let mut writer = store.begin_object("a").unwrap().unwrap();
        writer.add(&e, &raw).unwrap();
        writer.commit("LogFile", 1, 1, 0).unwrap();
        store.record_rejection("bad", "not JSON", 0).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert!(store.is_ingested("a").unwrap());
    assert_eq!(store.grants_by_id("g").unwrap().len(), 1, "a prefix finds the grant");
    let story = store.grant_events(KEY, "g1").unwrap();
    assert_eq!(story.len(), 1);
    assert_eq!(story[0].object, "a");
}
