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

/// A Decrypt on KEY by role `r`, the grantee of [`create`]'s grants.
fn decrypt(event_id: &str, time: &str) -> (granttrail_grants::KmsEvent, String) {
    let raw = format!(
        r#"{{"eventSource":"kms.amazonaws.com","eventID":"{event_id}","eventName":"Decrypt",
            "eventTime":"{time}","resources":[{{"ARN":"{KEY}"}}],"recipientAccountId":"111122223333",
            "userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/r/s",
              "accountId":"111122223333","sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/r"}}}}}},
            "requestParameters":{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}}}}"#
    );
    (normalise(raw.as_bytes()).unwrap().unwrap(), raw)
}

/// Each labelled call side with each grant it names, as `call_grants_readable` shows them.
fn links(conn: &rusqlite::Connection) -> Vec<(String, String, String)> {
    let mut stmt =
        conn.prepare("SELECT grant_id, event_id, side FROM call_grants_readable ORDER BY 1, 2, 3").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
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

/// SQL that turns a current database's grants back into the table versions 1 to 14 kept (the
/// `grants` view's rows, with that table's indexes), on either engine.
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

/// Version 5 keyed the call-grant links by grant and time, version 7 stores them compact and
/// relabels an older database whole. A version 4 database (links keyed by grant and event id,
/// records as text) comes out with the same links, and calls are still found by grant and
/// relabelled without leaving stale links.
#[test]
fn a_version_4_database_keeps_its_call_grant_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let linked = {
        let mut store = Store::open(&path).unwrap();
        let mut writer = store.begin_object("a").unwrap().unwrap();
        let mut records = Vec::new();
        for (e, raw) in
            [create("e1", "g1"), decrypt("d1", "2024-01-02T00:00:00Z"), decrypt("d2", "2024-01-03T00:00:00Z")]
        {
            writer.add(&e, &raw).unwrap();
            records.push((e.event_id, raw));
        }
        writer.commit("LogFile", 1, 3, 0).unwrap();
        store.refresh_labels().unwrap();
        drop(store);
        // Back to the version 4 shape.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let linked = links(&conn);
        conn.execute_batch(GRANTS_AS_BEFORE_15).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             CREATE TABLE events_as_text AS SELECT * FROM events;
             CREATE TABLE old_links (grant_id TEXT NOT NULL, event_id TEXT NOT NULL, side TEXT NOT NULL,
                 PRIMARY KEY (grant_id, event_id, side)) WITHOUT ROWID;
             INSERT INTO old_links SELECT grant_id, event_id, side FROM call_grants_readable;
             CREATE TABLE old_labels (event_id TEXT NOT NULL, side TEXT NOT NULL, event_time INTEGER NOT NULL,
                 PRIMARY KEY (event_id, side));
             INSERT INTO old_labels SELECT event_id, side, unixepoch(event_time) FROM calls_readable;
             DROP VIEW calls_readable;
             DROP VIEW call_grants_readable;
             DROP TABLE grant_list_members;
             DROP TABLE call_labels;
             DROP TABLE observations;
             DROP VIEW events_readable;
             DROP VIEW events;
             DROP TABLE event_rows;
             DROP TABLE texts;
             DROP TABLE imported_key_last_usage;
             DROP TABLE event_id_collisions;
             DROP TABLE verified_log_files;
             DROP TABLE missing_log_files;
             DROP TABLE verification_summaries;
             ALTER TABLE objects DROP COLUMN content_sha256;
             DROP TABLE event_copies;
             DROP TABLE new_calls;
             CREATE TABLE labelled_through (id INTEGER PRIMARY KEY CHECK (id = 1), event_id INTEGER NOT NULL);
             INSERT INTO labelled_through SELECT 1, max(id) FROM events_as_text;
             ALTER TABLE events_as_text RENAME TO events;
             CREATE INDEX events_by_destination_key ON events (destination_key_arn);
             CREATE VIEW events_readable AS SELECT * FROM events;
             ALTER TABLE old_links RENAME TO call_label_grants;
             ALTER TABLE old_labels RENAME TO call_labels;
             CREATE TABLE observations (key_arn TEXT);
             CREATE VIEW calls_readable AS SELECT * FROM call_labels;
             DROP TABLE record_blocks;
             DROP TABLE record_dictionaries;
             CREATE TABLE event_records (event_rowid INTEGER PRIMARY KEY REFERENCES events(id), raw TEXT NOT NULL);
             PRAGMA user_version = 4;",
        )
        .unwrap();
        // Records as text, as version 4 kept them.
        for (event_id, raw) in records {
            conn.execute(
                "INSERT INTO event_records (event_rowid, raw) SELECT id, ?2 FROM events WHERE event_id = ?1",
                [event_id, raw],
            )
            .unwrap();
        }
        linked
    };
    assert_eq!(linked.len(), 2, "both calls name the grant: {linked:?}");

    let mut store = Store::open(&path).unwrap();
    // Version 7 relabels an older database at the next refresh, as every query does first.
    store.refresh_labels().unwrap();
    let by_grant = granttrail_store::CallFilter { grant_id: Some("g1".into()), ..Default::default() };
    assert_eq!(store.calls(&by_grant).unwrap().len(), 2);
    // A revoke before the second call relabels it: its link must go, the first must stay.
    let revoke = r#"{"eventSource":"kms.amazonaws.com","eventID":"r1","eventName":"RevokeGrant",
        "eventTime":"2024-01-02T12:00:00Z","resources":[{"ARN":"KEY"}],
        "requestParameters":{"keyId":"KEY","grantId":"g1"}}"#
        .replace("KEY", KEY);
    let mut writer = store.begin_object("b").unwrap().unwrap();
    writer.add(&normalise(revoke.as_bytes()).unwrap().unwrap(), &revoke).unwrap();
    writer.commit("LogFile", 1, 1, 0).unwrap();
    store.refresh_labels().unwrap();
    let calls: Vec<String> = store.calls(&by_grant).unwrap().into_iter().map(|c| c.event_id).collect();
    assert_eq!(calls, ["d1"]);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(links(&conn), linked[..1]);
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, granttrail_store::SCHEMA_VERSION);
    let records: i64 = conn
        .query_row(
            "SELECT count(*) FROM event_rows e JOIN record_blocks b ON b.id = e.record_block WHERE e.record_slot = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(records, 4, "every record survives the migrations, each a block of its own");
}

/// Version 16 finds calls by grant through their grant lists. A version 15 database (a link
/// row per call side and grant) comes out of the migration with every call found by each grant
/// it named, before anything is relabelled; a label that named no grant (`[]`) stores list 0.
#[test]
fn a_version_15_database_finds_its_calls_by_grant_through_their_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v15.db");
    let by_grant = |store: &Store, grant: &str| -> Vec<String> {
        let filter = granttrail_store::CallFilter { grant_id: Some(grant.into()), ..Default::default() };
        store.calls(&filter).unwrap().into_iter().map(|c| c.event_id).collect()
    };
    {
        let mut store = Store::open(&path).unwrap();
        let mut writer = store.begin_object("a").unwrap().unwrap();
        for (e, raw) in [
            create("c1", "g1"),
            create("c2", "g2"),
            decrypt("d0", "2023-12-31T00:00:00Z"),
            decrypt("d1", "2024-01-02T00:00:00Z"),
            decrypt("d2", "2024-01-03T00:00:00Z"),
        ] {
            writer.add(&e, &raw).unwrap();
        }
        writer.commit("LogFile", 1, 5, 0).unwrap();
        store.refresh_labels().unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let linked = links(&conn);
    assert_eq!(linked.len(), 4, "both calls name both grants: {linked:?}");
    conn.execute_batch(LINKS_AS_BEFORE_16).unwrap();
    conn.execute_batch("PRAGMA user_version = 15").unwrap();
    let old_links: i64 = conn.query_row("SELECT count(*) FROM call_label_grants", [], |r| r.get(0)).unwrap();
    assert_eq!(old_links, 4, "version 15's links");
    drop(conn);

    let mut store = Store::open(&path).unwrap();
    assert_eq!(by_grant(&store, "g1"), ["d1", "d2"]);
    assert_eq!(by_grant(&store, "g2"), ["d1", "d2"]);
    let named: Vec<(String, Vec<String>)> = store
        .calls(&granttrail_store::CallFilter::default())
        .unwrap()
        .into_iter()
        .map(|c| (c.event_id, c.grant_ids))
        .collect();
    let both = vec!["g1".to_string(), "g2".to_string()];
    let none = Vec::new();
    let expected = [("d0", &none), ("c1", &none), ("c2", &none), ("d1", &both), ("d2", &both)];
    assert_eq!(named, expected.map(|(e, g)| (e.to_string(), g.clone())));
    assert!(store.refresh_labels().unwrap().keys.is_empty(), "nothing was relabelled");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(links(&conn), linked);
    let members: i64 = conn.query_row("SELECT count(*) FROM grant_list_members", [], |r| r.get(0)).unwrap();
    assert_eq!(members, 2, "one list, naming two grants");
    let (list, readable): (i64, String) = conn
        .query_row(
            "SELECT c.grant_ids, r.grant_ids FROM call_labels c JOIN events e ON e.id = c.event
             JOIN calls_readable r ON r.event_id = e.event_id WHERE e.event_id = 'd0'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((list, readable.as_str()), (0, "[]"), "a label naming no grant stores list 0");
}

/// An object or batch rolled back takes the texts it added with it; the next object that uses
/// them must add them again, not refer to rows that are gone.
#[test]
fn a_rolled_back_object_or_batch_takes_its_texts_with_it() {
    let key_of_every_grant = |store: &Store| -> Vec<String> {
        store.grants(&GrantFilter::default()).unwrap().into_iter().map(|g| g.key_arn).collect()
    };
    let mut store = Store::open_in_memory().unwrap();
    {
        let mut alone = store.begin_object("rolled back").unwrap().unwrap();
        let (e, raw) = create("e1", "g1");
        alone.add(&e, &raw).unwrap();
    }
    {
        let mut batch = store.begin_batch().unwrap();
        {
            let mut inside = batch.begin_object("rolled back in a batch").unwrap().unwrap();
            let (e, raw) = create("e2", "g2");
            inside.add(&e, &raw).unwrap();
        }
        let mut kept = batch.begin_object("committed in a batch").unwrap().unwrap();
        let (e, raw) = create("e3", "g3");
        kept.add(&e, &raw).unwrap();
        kept.commit("LogFile", 1, 1, 0).unwrap();
        batch.commit().unwrap();
    }
    assert_eq!(key_of_every_grant(&store), [KEY]);
    {
        let mut batch = store.begin_batch().unwrap();
        let mut inside = batch.begin_object("in a batch rolled back").unwrap().unwrap();
        let other = create("e4", "g4").1.replace("1111aaaa", "2222bbbb");
        inside.add(&normalise(other.as_bytes()).unwrap().unwrap(), &other).unwrap();
        inside.commit("LogFile", 1, 1, 0).unwrap();
    }
    let mut last = store.begin_object("last").unwrap().unwrap();
    let other = create("e5", "g5").1.replace("1111aaaa", "2222bbbb");
    last.add(&normalise(other.as_bytes()).unwrap().unwrap(), &other).unwrap();
    last.commit("LogFile", 1, 1, 0).unwrap();
    assert_eq!(key_of_every_grant(&store), [KEY.to_string(), KEY.replace("1111aaaa", "2222bbbb")]);
}

/// An object written into a batch without a savepoint (its events all read) commits with the
/// batch; left half written, it takes the whole batch with it rather than commit part of it.
#[test]
fn a_whole_object_left_half_written_fails_its_batch() {
    let mut store = Store::open_in_memory().unwrap();
    {
        let mut batch = store.begin_batch().unwrap();
        let mut whole = batch.begin_whole_object("whole").unwrap().unwrap();
        let (e, raw) = create("e1", "g1");
        whole.add(&e, &raw).unwrap();
        whole.commit("LogFile", 1, 1, 0).unwrap();
        batch.commit().unwrap();
    }
    assert_eq!(store.totals().unwrap(), (1, 1, 1));
    assert!(store.begin_batch().unwrap().begin_whole_object("whole").unwrap().is_none());
    {
        let mut batch = store.begin_batch().unwrap();
        let mut kept = batch.begin_whole_object("before").unwrap().unwrap();
        let (e, raw) = create("e2", "g2");
        kept.add(&e, &raw).unwrap();
        kept.commit("LogFile", 1, 1, 0).unwrap();
        {
            let mut half = batch.begin_whole_object("half").unwrap().unwrap();
            let (e, raw) = create("e3", "g3");
            half.add(&e, &raw).unwrap();
        }
        assert!(batch.commit().is_err());
    }
    assert_eq!(store.totals().unwrap(), (1, 1, 1));
    assert!(!store.is_ingested("before").unwrap());
    assert!(!store.is_ingested("half").unwrap());
}

/// Version 13 records the calls awaiting labels per key and object instead of one watermark.
/// A version 12 database with calls after its watermark (an ingest cut short before it
/// relabelled) comes out with those calls awaiting labels, and a refresh labels them; and
/// (version 14) with its records, one frame each then, readable as blocks of one.
#[test]
fn a_version_12_database_keeps_the_calls_it_had_not_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v12.db");
    let decrypt = |event_id: &str| {
        let raw = format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"{event_id}","eventName":"Decrypt",
                "eventTime":"2024-01-02T00:00:00Z","resources":[{{"ARN":"{KEY}"}}],"recipientAccountId":"111122223333",
                "userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/r/s","accountId":"111122223333"}},
                "requestParameters":{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}}}}"#
        );
        (normalise(raw.as_bytes()).unwrap().unwrap(), raw)
    };
    let write = |store: &mut Store, object: &str, ids: &[&str]| {
        let mut writer = store.begin_object(object).unwrap().unwrap();
        for id in ids {
            let (e, raw) = decrypt(id);
            writer.add(&e, &raw).unwrap();
        }
        writer.commit("LogFile", 1, ids.len() as u64, 0).unwrap();
    };
    {
        let mut store = Store::open(&path).unwrap();
        write(&mut store, "a", &["d1", "d2"]);
        store.refresh_labels().unwrap();
        write(&mut store, "b", &["d3"]);
    }
    // Back to the version 12 shape: labelled through the first object's events, the key marked.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(LINKS_AS_BEFORE_16).unwrap();
    conn.execute_batch(GRANTS_AS_BEFORE_15).unwrap();
    conn.execute_batch(
        "DROP TABLE new_calls;
         CREATE TABLE labelled_through (id INTEGER PRIMARY KEY CHECK (id = 1), event_id INTEGER NOT NULL);
         INSERT INTO labelled_through SELECT 1, max(id) FROM events WHERE event_id <> 'd3';
         DROP TABLE stale_labels;
         CREATE TABLE stale_labels (
             kind TEXT NOT NULL
                 CHECK (kind = 'key' OR kind = 'key_context' OR kind = 'account' OR kind = 'all' OR kind = 'keyless'),
             value TEXT NOT NULL,
             PRIMARY KEY (kind, value)
         ) WITHOUT ROWID;
         CREATE TABLE event_records (
             event_rowid INTEGER PRIMARY KEY REFERENCES event_rows(id),
             dictionary  INTEGER NOT NULL REFERENCES record_dictionaries(id),
             record      BLOB NOT NULL
         );
         INSERT INTO event_records SELECT e.id, b.dictionary, b.records FROM event_rows e
             JOIN record_blocks b ON b.id = e.record_block;
         ALTER TABLE event_rows DROP COLUMN record_block;
         ALTER TABLE event_rows DROP COLUMN record_slot;
         DROP TABLE record_blocks;
         PRAGMA user_version = 12;",
    )
    .unwrap();
    conn.execute("INSERT INTO stale_labels (kind, value) VALUES ('key', ?1)", [KEY]).unwrap();
    drop(conn);

    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.calls(&Default::default()).unwrap().len(), 2);
    let relabelled = store.refresh_labels().unwrap();
    assert_eq!(
        (relabelled.keys, relabelled.whole_keys + relabelled.incremental_keys),
        (vec![KEY.to_string()], 1)
    );
    let ids: Vec<String> =
        store.calls(&Default::default()).unwrap().into_iter().map(|c| c.event_id).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"d3".to_string()));
    assert_eq!(store.refresh_labels().unwrap().keys, Vec::<String>::new(), "nothing is left waiting");
    // Version 14 keeps each frame of before as a block of one record.
    for id in ["d1", "d2", "d3"] {
        let record = store.event_record(id).unwrap().unwrap().record;
        assert_eq!(record, Some(decrypt(id).1), "the record of {id}");
    }
}

/// A record delivered again keeps no copy: its slot in the new block is emptied, and a block
/// of nothing but records stored before is not kept. The new records read back whole.
#[test]
fn a_duplicate_delivery_leaves_no_record_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.db");
    let mut store = Store::open(&path).unwrap();
    let write = |store: &mut Store, object: &str, records: &[(granttrail_grants::KmsEvent, String)]| {
        let mut writer = store.begin_object(object).unwrap().unwrap();
        let (events, raws): (Vec<_>, Vec<_>) = records.iter().cloned().unzip();
        let stored = granttrail_store::StoredRecords::compress(raws.iter().map(String::as_str)).unwrap();
        let added = writer.add_records(&events, &stored).unwrap();
        writer.commit("LogFile", 1, records.len() as u64, 0).unwrap();
        added
    };
    let blocks = |path: &std::path::Path| -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM record_blocks", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(write(&mut store, "a", &[create("e1", "g1"), create("e2", "g2")]), 2);
    assert_eq!(blocks(&path), 1);
    assert_eq!(write(&mut store, "b", &[create("e2", "g2"), create("e3", "g3")]), 1);
    assert_eq!(blocks(&path), 2);
    assert_eq!(write(&mut store, "c", &[create("e1", "g1"), create("e3", "g3")]), 0);
    assert_eq!(blocks(&path), 2, "a block of duplicates alone is not kept");
    for id in ["e1", "e2", "e3"] {
        let record = store.event_record(id).unwrap().unwrap().record;
        assert_eq!(record, Some(create(id, &id.replace('e', "g")).1), "the record of {id}");
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (block, slot): (i64, i64) = conn
        .query_row("SELECT record_block, record_slot FROM event_rows WHERE event_id = 'e3'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(slot, 1, "e3 keeps its place after the emptied slot");
    let frame: Vec<u8> =
        conn.query_row("SELECT records FROM record_blocks WHERE id = ?1", [block], |r| r.get(0)).unwrap();
    let alone = granttrail_store::StoredRecords::compress([create("e3", "g3").1.as_str()]).unwrap();
    assert!(
        frame.len() <= alone.compressed_bytes() + 8,
        "the block holds e3's record alone ({} bytes, e3 alone {})",
        frame.len(),
        alone.compressed_bytes()
    );
}
