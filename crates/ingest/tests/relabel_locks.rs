//! On PostgreSQL, relabelling waits only for the keys it relabels, and a writer holds back the
//! relabelling of every key it marks until its events are committed (docs/reliability.md); a
//! version 12 database keeps, through the migration, the calls it had not labelled, and a version
//! 15 database finds its calls by grant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use granttrail_ingest::{Limits, ingest_object};
use granttrail_store::{CallFilter, Journal, Location, Store};
use granttrail_testkit::Postgres;
use serde_json::json;

const K1: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaa0000-0000-0000-0000-000000000001";
const K2: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaa0000-0000-0000-0000-000000000002";

/// Long enough for anything that does not wait to finish on a loaded machine.
const FINISHES: Duration = Duration::from_secs(60);
/// How long something that waits is watched waiting.
const WAITS: Duration = Duration::from_millis(1500);

fn decrypt(id: &str, key: &str, minute: u32) -> serde_json::Value {
    json!({
        "eventVersion": "1.09", "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
        "eventTime": format!("2024-05-01T10:{minute:02}:00Z"), "eventID": id, "awsRegion": "us-east-1",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/App/s",
            "accountId": "111122223333"},
        "recipientAccountId": "111122223333", "resources": [{"type": "AWS::KMS::Key", "ARN": key}],
        "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, "responseElements": null,
    })
}

/// A CreateGrant on `key` for the caller of [`decrypt`].
fn create_grant(id: &str, key: &str, grant: &str) -> serde_json::Value {
    json!({
        "eventVersion": "1.09", "eventSource": "kms.amazonaws.com", "eventName": "CreateGrant",
        "eventTime": "2024-05-01T09:00:00Z", "eventID": id, "awsRegion": "us-east-1",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/Admin/s",
            "accountId": "111122223333"},
        "recipientAccountId": "111122223333", "resources": [{"type": "AWS::KMS::Key", "ARN": key}],
        "requestParameters": {"keyId": key, "granteePrincipal": "arn:aws:sts::111122223333:assumed-role/App/s",
            "operations": ["Decrypt"]},
        "responseElements": {"grantId": grant},
    })
}

fn write(store: &mut Store, name: &str, records: &[serde_json::Value]) {
    let bytes = serde_json::to_vec(&json!({ "Records": records })).unwrap();
    ingest_object(store, name, &bytes[..], &Limits::default(), 0).unwrap();
}

fn labelled(store: &mut Store) -> usize {
    store.calls(&CallFilter::default()).unwrap().len()
}

#[test]
fn relabelling_and_writing_wait_only_for_the_keys_they_share() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("relabel_locks");
    let open = || Store::open_at(&Location::Postgres(url.clone()), Journal::Wal, &mut |_| {}).unwrap();
    let (mut holder, mut other) = (open(), open());
    write(&mut other, "first", &[decrypt("a1", K1, 0), decrypt("b1", K2, 0)]);
    other.refresh_labels().unwrap();
    assert_eq!(labelled(&mut other), 2);

    // New calls on K2 only: relabelled while another writer holds K1.
    write(&mut other, "second", &[decrypt("b2", K2, 1)]);
    // Threads are joined only after the lock is let go: a relabelling that waited would
    // fail the test, not hang it.
    std::thread::scope(|scope| {
        let (go, start) = channel();
        let (done, finished) = channel();
        let other = &mut other;
        scope.spawn(move || {
            start.recv().unwrap();
            done.send(other.refresh_labels().map(|r| r.keys)).unwrap();
        });
        let relabelled = holder
            .holding_key_lock(K1, || {
                go.send(()).unwrap();
                finished.recv_timeout(FINISHES)
            })
            .unwrap();
        assert_eq!(relabelled.expect("relabelling K2 waited for K1").unwrap(), [K2.to_string()]);
    });
    assert_eq!(labelled(&mut other), 3);

    // A writer of calls on K1 waits for K1's lock before it marks K1 and commits: meanwhile
    // there is nothing to relabel. It finishes once the lock is let go.
    let (mut writer, mut relabeller) = (open(), open());
    std::thread::scope(|scope| {
        let (go, start) = channel();
        let (wrote, written) = channel();
        scope.spawn(move || {
            start.recv().unwrap();
            write(&mut writer, "third", &[decrypt("a3", K1, 2)]);
            wrote.send(()).unwrap();
        });
        holder
            .holding_key_lock(K1, || {
                go.send(()).unwrap();
                assert_eq!(
                    written.recv_timeout(WAITS),
                    Err(RecvTimeoutError::Timeout),
                    "the writer did not wait"
                );
                assert!(relabeller.refresh_labels().unwrap().keys.is_empty());
            })
            .unwrap();
        written.recv_timeout(FINISHES).expect("the writer finished once K1 was let go");
    });
    // Written, and waiting for a relabelling.
    assert_eq!(labelled(&mut holder), 3);

    // A relabelling of K1 waits for K1's lock too.
    write(&mut other, "fourth", &[decrypt("a4", K1, 3)]);
    std::thread::scope(|scope| {
        let (go, start) = channel();
        let (done, finished) = channel();
        scope.spawn(move || {
            start.recv().unwrap();
            done.send(relabeller.refresh_labels().map(|r| r.keys)).unwrap();
        });
        holder
            .holding_key_lock(K1, || {
                go.send(()).unwrap();
                assert!(
                    matches!(finished.recv_timeout(WAITS), Err(RecvTimeoutError::Timeout)),
                    "the relabelling did not wait"
                );
            })
            .unwrap();
        let keys = finished.recv_timeout(FINISHES).expect("the relabelling finished once K1 was let go");
        assert_eq!(keys.unwrap(), [K1.to_string()]);
    });
    assert_eq!(labelled(&mut other), 5);
}

/// SQL that turns a current database's grants back into the table versions 1 to 14 kept (the
/// `grants` view's rows, with that table's indexes), on PostgreSQL as on SQLite.
const GRANTS_AS_BEFORE_15: &str = "
    CREATE TABLE grants_table AS SELECT key_arn, grant_id, state, creation_seen, grantee_principal,
        retiring_principal, operations, constraints, name, issuing_account, created_at, created_by,
        created_by_service, created_from_ip, created_event_id, ended_at, ended_by, ended_by_service,
        ended_from_ip, end_event_id, create_event_ids, end_event_ids, anomalies FROM grants;
    DROP VIEW grants_readable;
    DROP VIEW grants;
    DROP TABLE grant_rows;
    ALTER TABLE grants_table RENAME TO grants;
    CREATE INDEX grants_by_grantee ON grants (grantee_principal);
    CREATE INDEX grants_by_grant_id ON grants (grant_id);
    CREATE INDEX grants_by_created ON grants (created_at);
    CREATE INDEX grants_by_key_ended ON grants (key_arn, ended_at);
    CREATE VIEW grants_readable AS SELECT * FROM grants;";

/// SQL that turns a current database's grant lists back into the call-grant links versions 5
/// to 15 kept, a row per call side and grant, on PostgreSQL as on SQLite.
const LINKS_AS_BEFORE_16: &str = "
    CREATE TABLE call_label_grants (grant_id BIGINT NOT NULL, event_time BIGINT NOT NULL,
        event BIGINT NOT NULL, side BIGINT NOT NULL, PRIMARY KEY (grant_id, event_time, event, side));
    INSERT INTO call_label_grants SELECT m.grant_ref, c.event_time, c.event, c.side
        FROM call_labels c JOIN grant_list_members m ON m.list = c.grant_ids;
    DROP VIEW call_grants_readable;
    DROP INDEX call_labels_by_grants;
    DROP TABLE grant_list_members;
    CREATE VIEW call_grants_readable AS SELECT * FROM call_label_grants;
    INSERT INTO texts (hash, text) SELECT 0, '[]' WHERE NOT EXISTS (SELECT 1 FROM texts WHERE text = '[]');
    UPDATE call_labels SET grant_ids = (SELECT min(id) FROM texts WHERE text = '[]') WHERE grant_ids = 0;";

/// A version 12 PostgreSQL database with calls after its watermark comes out of the migration
/// with those calls awaiting labels, and an older writer can no longer mark in the old form.
#[test]
fn a_version_12_postgres_database_keeps_the_calls_it_had_not_labelled() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("from_12");
    let open = || Store::open_at(&Location::Postgres(url.clone()), Journal::Wal, &mut |_| {}).unwrap();
    {
        let mut store = open();
        write(&mut store, "first", &[decrypt("a1", K1, 0), decrypt("b1", K2, 0)]);
        store.refresh_labels().unwrap();
        write(&mut store, "second", &[decrypt("a2", K1, 1)]);
    }
    // Back to the version 12 shape: labelled through the first object, K1 marked.
    pg.psql_in("from_12", LINKS_AS_BEFORE_16);
    pg.psql_in("from_12", GRANTS_AS_BEFORE_15);
    pg.psql_in(
        "from_12",
        &format!(
            "DROP TABLE new_calls;
             CREATE TABLE labelled_through (id BIGINT PRIMARY KEY CHECK (id = 1), event_id BIGINT NOT NULL);
             INSERT INTO labelled_through SELECT 1, max(id) FROM events WHERE event_id <> 'a2';
             ALTER TABLE stale_labels DROP CONSTRAINT stale_labels_kind_check;
             ALTER TABLE stale_labels ADD CONSTRAINT stale_labels_kind_check
                 CHECK (kind = 'key' OR kind = 'key_context' OR kind = 'account' OR kind = 'all' OR kind = 'keyless');
             INSERT INTO stale_labels (kind, value) VALUES ('key', '{K1}');
             CREATE TABLE event_records (
                 event_rowid BIGINT PRIMARY KEY REFERENCES event_rows(id),
                 dictionary  BIGINT NOT NULL REFERENCES record_dictionaries(id),
                 record      BYTEA NOT NULL
             );
             -- Each block's first record stands for a frame of its own (its block, read as one
             -- record, gives that record); the others are as if pruned.
             INSERT INTO event_records SELECT e.id, b.dictionary, b.records FROM event_rows e
                 JOIN record_blocks b ON b.id = e.record_block WHERE e.record_slot = 0;
             ALTER TABLE event_rows DROP COLUMN record_block, DROP COLUMN record_slot;
             DROP TABLE record_blocks;
             UPDATE granttrail_schema SET version = 12;"
        ),
    );
    let mut store = open();
    assert_eq!(labelled(&mut store), 2);
    assert_eq!(store.refresh_labels().unwrap().keys, [K1.to_string()]);
    assert_eq!(labelled(&mut store), 3);
    // psql fails, and `psql_in` panics, on the CHECK the migration put back.
    let old_mark = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pg.psql_in("from_12", "INSERT INTO stale_labels (kind, value) VALUES ('key', 'k')")
    }));
    assert!(old_mark.is_err(), "a mark in the old form is refused");
    // Version 14 reads each frame of before as a block of one record.
    let record = store.event_record("a1").unwrap().unwrap().record.expect("a1's record is kept");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&record).unwrap(), decrypt("a1", K1, 0));
}

/// A version 15 PostgreSQL database (a link row per call side and grant) comes out of the
/// migration with every call found by the grant it named, before anything is relabelled, and
/// the labels that named no grant store list 0.
#[test]
fn a_version_15_postgres_database_finds_its_calls_by_grant() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("from_15");
    let open = || Store::open_at(&Location::Postgres(url.clone()), Journal::Wal, &mut |_| {}).unwrap();
    let by_grant = |store: &Store| -> Vec<String> {
        let filter = CallFilter { grant_id: Some("g1".into()), ..CallFilter::default() };
        store.calls(&filter).unwrap().into_iter().map(|c| c.event_id).collect()
    };
    {
        let mut store = open();
        write(
            &mut store,
            "first",
            &[create_grant("c1", K1, "g1"), decrypt("a1", K1, 1), decrypt("a2", K1, 2), decrypt("b1", K2, 3)],
        );
        store.refresh_labels().unwrap();
        assert_eq!(by_grant(&store), ["a1", "a2"]);
    }
    pg.psql_in("from_15", LINKS_AS_BEFORE_16);
    pg.psql_in("from_15", "UPDATE granttrail_schema SET version = 15");
    let mut store = open();
    assert_eq!(by_grant(&store), ["a1", "a2"]);
    let named: Vec<(String, usize)> = store
        .calls(&CallFilter::default())
        .unwrap()
        .into_iter()
        .map(|c| (c.event_id, c.grant_ids.len()))
        .collect();
    assert_eq!(named, [("c1".into(), 0), ("a1".into(), 1), ("a2".into(), 1), ("b1".into(), 0)]);
    let readable = pg.psql_in(
        "from_15",
        "SELECT c.grant_ids || ' ' || r.grant_ids FROM call_labels c JOIN events e ON e.id = c.event
         JOIN calls_readable r ON r.event_id = e.event_id WHERE e.event_id = 'b1'",
    );
    assert_eq!(readable.trim(), "0 []", "a label naming no grant stores list 0");
    assert!(store.refresh_labels().unwrap().keys.is_empty(), "nothing was relabelled");
}
