//! Keys relabelled whole are read and classified on a second connection while the first writes
//! (a database file in WAL mode), in one pass or in windows: the labels must be exactly those
//! one connection gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use granttrail_grants::normalise;
use granttrail_store::{CallFilter, Store};

const ACCOUNT: &str = "111122223333";

fn key(n: usize) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{n:08}-1111-1111-1111-111111111111")
}

/// A KMS record on key `n` at minute `minute`.
fn record(event_id: &str, name: &str, n: usize, minute: usize, caller: &str, extra: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventSource":"kms.amazonaws.com","eventID":"{event_id}","eventName":"{name}",
            "eventTime":"2024-01-01T00:{minute:02}:00Z","awsRegion":"us-east-1","recipientAccountId":"{ACCOUNT}",
            "userIdentity":{{"type":"AssumedRole","accountId":"{ACCOUNT}",
              "arn":"arn:aws:sts::{ACCOUNT}:assumed-role/{caller}/s",
              "sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::{ACCOUNT}:role/{caller}"}}}}}},
            "resources":[{{"ARN":"{key}","accountId":"{ACCOUNT}"}}]{extra}}}"#,
        key = key(n)
    )
}

/// Key `n` gets a grant to role `app` for Decrypt, `n + 1` Decrypts by `app` and one by
/// `other`, and on even keys a revoke before the last Decrypt: keys of different lengths, so
/// that with short windows some keys are read in one pass and some in windows.
fn objects(keys: usize) -> Vec<Vec<String>> {
    (0..keys)
        .map(|n| {
            let grant = format!("{n:064}");
            let mut records = vec![record(
                &format!("create-{n}"),
                "CreateGrant",
                n,
                0,
                "admin",
                &format!(
                    r#","requestParameters":{{"keyId":"{key}","granteePrincipal":"arn:aws:iam::{ACCOUNT}:role/app","operations":["Decrypt"]}},
                       "responseElements":{{"grantId":"{grant}"}}"#,
                    key = key(n)
                ),
            )];
            for d in 0..=n {
                records.push(record(&format!("decrypt-{n}-{d}"), "Decrypt", n, 2 + 2 * d, "app", ""));
            }
            records.push(record(&format!("other-{n}"), "Decrypt", n, 1, "other", ""));
            if n % 2 == 0 {
                records.push(record(
                    &format!("revoke-{n}"),
                    "RevokeGrant",
                    n,
                    1 + 2 * n,
                    "admin",
                    &format!(r#","requestParameters":{{"keyId":"{key}","grantId":"{grant}"}}"#, key = key(n)),
                ));
            }
            records
        })
        .collect()
}

fn ingest(store: &mut Store, objects: &[Vec<String>]) {
    for (i, records) in objects.iter().enumerate() {
        let mut writer = store.begin_object(&format!("object-{i}")).unwrap().unwrap();
        for raw in records {
            writer.add(&normalise(raw.as_bytes()).unwrap().unwrap(), raw).unwrap();
        }
        writer.commit("LogFile", 1, records.len() as u64, 0).unwrap();
    }
}

#[test]
fn labels_classified_ahead_are_those_one_connection_gives() {
    let objects = objects(8);
    let dir = tempfile::tempdir().unwrap();
    let mut file = Store::open(&dir.path().join("read-ahead.db")).unwrap();
    let mut memory = Store::open_in_memory().unwrap();
    for store in [&mut file, &mut memory] {
        // Keys of more than 5 events are read in windows, by the writing connection.
        store.relabel_in_windows_of(5);
        ingest(store, &objects);
    }
    let ahead = file.refresh_labels().unwrap();
    let alone = memory.refresh_labels().unwrap();
    assert_eq!((ahead.whole_keys, alone.whole_keys), (8, 8));
    assert_eq!(alone.read_ahead_keys, 0, "an in-memory database has one connection");
    // A second thread only reads ahead where there is a second core to run it on.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let expected = if cores > 1 { 8 } else { 0 };
    assert_eq!(ahead.read_ahead_keys, expected, "every key, read in one pass or in windows: {ahead:?}");
    let calls = file.calls(&CallFilter::default()).unwrap();
    assert!(calls.len() >= 8 * 3, "every call is labelled: {}", calls.len());
    assert_eq!(calls, memory.calls(&CallFilter::default()).unwrap());
    assert!(
        calls.iter().any(|c| c.label.is_grant_only() || c.label == granttrail_grants::Label::GrantCovered)
    );
    // And a rebuild, which writes grants in its own transaction and so reads on one connection.
    file.rebuild().unwrap();
    assert_eq!(file.calls(&CallFilter::default()).unwrap(), calls);
}
