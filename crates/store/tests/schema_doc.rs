//! docs/schema.md is the schema's public description: it must name every table, view and
//! column the database has, and its example queries must run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use granttrail_store::Store;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema.md")).unwrap()
}

fn database() -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    (dir, conn)
}

#[test]
fn every_table_view_and_column_is_documented() {
    let doc = doc();
    let (_dir, conn) = database();
    let mut stmt =
        conn.prepare("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").unwrap();
    let objects: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert!(objects.len() >= 6);
    for (name, kind) in &objects {
        assert!(doc.contains(&format!("`{name}`")), "{kind} {name} is not in docs/schema.md");
        if kind != "table" {
            continue;
        }
        let mut cols = conn.prepare(&format!("PRAGMA table_info({name})")).unwrap();
        let columns: Vec<String> = cols.query_map([], |r| r.get(1)).unwrap().map(Result::unwrap).collect();
        for column in columns {
            assert!(doc.contains(&format!("`{column}`")), "column {name}.{column} is not in docs/schema.md");
        }
    }
}

#[test]
fn documented_schema_version_is_current() {
    let (_dir, conn) = database();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert!(doc().contains(&format!("currently **{version}**")));
}

#[test]
fn example_queries_run() {
    let doc = doc();
    let (_dir, conn) = database();
    let start = doc.find("```sql\n").expect("an sql block") + "```sql\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let mut ran = 0;
    for statement in block.split(';') {
        let code: String =
            statement.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        if code.trim().is_empty() {
            continue;
        }
        let mut stmt = conn.prepare(&code).unwrap_or_else(|e| panic!("{e}\n{code}"));
        stmt.query([]).unwrap().next().unwrap();
        ran += 1;
    }
    assert!(ran >= 6, "only {ran} example queries found");
}

#[test]
fn a_version_1_database_is_brought_up_to_date_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../src/schema.sql")).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO imported_iam (account, at, document, source) VALUES ('111122223333', 1, '{}', 'x')",
            [],
        )
        .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    let listing =
        granttrail_grants::reconcile::parse_list_grants(r#"{"Grants": [{"GrantId": "g"}]}"#).unwrap();
    store.import_grant_list("arn:aws:kms:us-east-1:111122223333:key/k", 5, &listing, "l.json").unwrap();
    store.import_grant_list("arn:aws:kms:us-east-1:111122223333:key/k", 4, &listing, "older.json").unwrap();
    let lists = store.grant_lists().unwrap();
    assert_eq!(lists.len(), 1);
    assert_eq!((lists[0].at, lists[0].source.as_str()), (5, "l.json"), "the latest snapshot counts");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, granttrail_store::SCHEMA_VERSION);
    let published: i64 = conn.query_row("SELECT count(*) FROM published_findings", [], |r| r.get(0)).unwrap();
    assert_eq!(published, 0);
    let kept: i64 = conn.query_row("SELECT count(*) FROM imported_iam", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 1);
}

#[test]
fn snapshots_are_consistent_copies_and_findings_are_published_once() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open_with_journal(&dir.path().join("efs.db"), granttrail_store::Journal::Rollback).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("efs.db")).unwrap();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "no WAL on a network file system");
    assert_eq!(store.unpublished(&["a", "b"]).unwrap(), ["a", "b"]);
    store.mark_published("a", 10).unwrap();
    store.mark_published("a", 11).unwrap();
    assert_eq!(store.unpublished(&["a", "b"]).unwrap(), ["b"]);
    let copy = dir.path().join("snapshot.db");
    store.snapshot_to(&copy).unwrap();
    assert!(store.snapshot_to(&copy).is_err(), "a snapshot never overwrites a file");
    let snapshot = Store::open(&copy).unwrap();
    assert_eq!(snapshot.unpublished(&["a", "b"]).unwrap(), ["b"], "the copy holds the same data");
}
