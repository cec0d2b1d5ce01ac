//! Databases written by the schema-6 and schema-7 granttrail (fixtures/v6, fixtures/v7), opened
//! by this one: the schema is migrated and every command answers exactly as the schema-6 binary
//! did (the schema-7 one answered the same). A database newer than this binary is refused and
//! left alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Workspace, fixtures, stderr};
use rusqlite::Connection;
use serde_json::Value;

/// The schema versions of the fixtures.
const V6: i64 = 6;
const V7: i64 = 7;

/// After every event of the example, so that age-based findings do not depend on the clock.
const AS_OF: &str = "2024-06-01T00:00:00Z";

/// Bob's grant, revoked by alice.
const REVOKED_GRANT: &str = "bc2e8470281aa7b6f185c041b7aec9846659cc0f338481453d8a4a4b1cb847a9";
/// The partner account's grant, still active.
const ACTIVE_GRANT: &str = "88cb469dfcce7c10673725a664229f609e7ed5019ce2a4c666aab545a5cdd864";
/// A grant created before the logs begin, known only from its RetireGrant.
const END_ONLY_GRANT: &str = "a4cf3a591d0df078d3b62ffc46b29b4516aa25ce1b684ae40ab5b7125355a7d0";

/// Each command the schema-6 binary was run with, and the file in fixtures/v6/expected holding
/// its standard output. No field of these outputs depends on the time or on paths of the test
/// run (the report and findings take --as-of; the paths they show are stored object sources),
/// so the outputs are compared whole.
const COMMANDS: &[(&str, &[&str])] = &[
    ("grants.json", &["grants", "--format", "json"]),
    ("calls.json", &["calls", "--format", "json"]),
    ("findings.json", &["findings", "--format", "json", "--as-of", AS_OF]),
    ("report.json", &["report", "--format", "json", "--as-of", AS_OF, "--output", "-"]),
    ("grant-revoked.json", &["grant", REVOKED_GRANT, "--format", "json"]),
    ("grant-active.json", &["grant", ACTIVE_GRANT, "--format", "json"]),
    ("grant-end-only.json", &["grant", END_ONLY_GRANT, "--format", "json"]),
];

/// Writes the database of fixtures/v{version}/example.sql to `path` (a new file), laid out as
/// granttrail left its databases: 16 KiB pages, write-ahead log.
fn load_database(path: &Path, version: i64) {
    let file = format!("v{version}/example.sql");
    let dump = std::fs::read_to_string(fixtures().join(&file))
        .unwrap_or_else(|e| panic!("read fixtures/{file}: {e}"));
    let conn = Connection::open(path).expect("create the database file");
    // Page size first: it only takes effect before anything is written.
    conn.pragma_update(None, "page_size", 16 * 1024).expect("set the page size");
    conn.pragma_update(None, "journal_mode", "WAL").expect("switch to WAL");
    conn.execute_batch(&dump).unwrap_or_else(|e| panic!("load fixtures/{file}: {e}"));
    assert_eq!(user_version(path), version, "fixtures/{file} must set user_version {version}");
}

/// Every record of the schema-6 fixture as delivered (schema 6 kept them as text), by eventID.
fn delivered_records() -> Vec<(String, String)> {
    let ws = Workspace::new();
    load_database(&ws.db(), V6);
    let conn = Connection::open(ws.db()).expect("open the database");
    let mut stmt = conn
        .prepare("SELECT e.event_id, r.raw FROM events e JOIN event_records r ON r.event_rowid = e.id")
        .expect("version 6 keeps records as text");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("records").map(Result::unwrap).collect()
}

fn user_version(path: &Path) -> i64 {
    let conn = Connection::open(path).expect("open the database");
    conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("read user_version")
}

fn expected_output(file: &str) -> Value {
    let path = fixtures().join("v6/expected").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Where `expected` and `actual` first differ (a path of keys and indexes, and both values
/// there), or `None` when they are equal: a whole report printed twice hides a one-field change.
fn first_difference(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(expected_fields), Value::Object(actual_fields)) => {
            let extra = actual_fields.keys().filter(|k| !expected_fields.contains_key(*k));
            for key in expected_fields.keys().chain(extra) {
                let here = format!("{at}/{key}");
                match (expected_fields.get(key), actual_fields.get(key)) {
                    (Some(e), Some(a)) => {
                        if let Some(found) = first_difference(e, a, &here) {
                            return Some(found);
                        }
                    }
                    (Some(e), None) => return Some(format!("{here}: expected {e}, missing")),
                    (None, a) => {
                        return Some(format!("{here}: not expected, got {}", a.unwrap_or(&Value::Null)));
                    }
                }
            }
            None
        }
        (Value::Array(expected_items), Value::Array(actual_items)) => {
            for (i, (e, a)) in expected_items.iter().zip(actual_items).enumerate() {
                if let Some(found) = first_difference(e, a, &format!("{at}/{i}")) {
                    return Some(found);
                }
            }
            let (want, got) = (expected_items.len(), actual_items.len());
            (want != got).then(|| format!("{at}: expected {want} element(s), got {got}"))
        }
        _ => (expected != actual).then(|| format!("{at}: expected {expected}, got {actual}")),
    }
}

/// Fields the JSON outputs gained after schema 6 (the interface only ever adds fields): they
/// are taken out of each finding, and of each key of the report, before the output is compared
/// with what the schema-6 binary printed.
const FINDING_FIELDS_SINCE_V6: &[&str] = &["grant_name", "event_ids", "as_of"];
const REPORT_KEY_FIELDS_SINCE_V6: &[&str] = &["kms_last_use"];
const REPORT_FINDING_FIELDS_SINCE_V6: &[&str] = &["grantee_principal", "evidence", "as_of"];

/// Takes `fields` out of every object of the array `items`, each of which must have them.
fn drop_added_fields(items: Option<&mut Vec<Value>>, fields: &[&str], pass: &str) {
    for item in items.into_iter().flatten() {
        for field in fields {
            let added = item.as_object_mut().and_then(|f| f.remove(*field));
            assert!(added.is_some(), "{pass}: no {field} in {item}");
        }
    }
}

/// Runs every command of [`COMMANDS`] on the workspace's database and compares its output with
/// the schema-6 binary's.
fn assert_v6_answers(ws: &Workspace, pass: &str) {
    for (file, args) in COMMANDS {
        let stdout = ws.ok(args);
        let mut actual: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{pass}: granttrail {args:?} printed no JSON ({e}): {stdout}"));
        match *file {
            "findings.json" => drop_added_fields(actual.as_array_mut(), FINDING_FIELDS_SINCE_V6, pass),
            "report.json" => {
                drop_added_fields(actual["keys"].as_array_mut(), REPORT_KEY_FIELDS_SINCE_V6, pass);
                drop_added_fields(actual["findings"].as_array_mut(), REPORT_FINDING_FIELDS_SINCE_V6, pass);
            }
            _ => {}
        }
        if let Some(difference) = first_difference(&expected_output(file), &actual, "") {
            panic!("{pass}: granttrail {args:?} differs from fixtures/v6/expected/{file} at {difference}");
        }
    }
}

#[test]
fn a_v6_database_gives_the_v6_answers_after_migration() {
    let ws = Workspace::new();
    load_database(&ws.db(), V6);
    // The first command migrates the database; the second pass reads the migrated one.
    assert_v6_answers(&ws, "first pass");
    assert_v6_answers(&ws, "second pass");
}

#[test]
fn a_v7_database_gives_the_same_answers_after_migration() {
    let ws = Workspace::new();
    load_database(&ws.db(), V7);
    assert_v6_answers(&ws, "first pass");
    assert_v6_answers(&ws, "second pass");
}

/// Opens the fixture of `version` with the current granttrail and checks that it was migrated
/// and that every record still comes back byte for byte as delivered.
fn assert_migrated_with_every_record(version: i64) {
    let delivered = delivered_records();
    assert!(delivered.len() >= 20, "the fixture holds the example's records");
    let ws = Workspace::new();
    load_database(&ws.db(), version);
    let out = ws.run(&["grants", "--format", "json"]);
    assert!(out.status.success(), "granttrail grants on the version {version} fixture: {}", stderr(&out));
    let current = granttrail_store::SCHEMA_VERSION;
    assert!(
        stderr(&out).contains(&format!("to schema {current}")),
        "the migration names the schema it ends at: {}",
        stderr(&out)
    );
    let migrated = user_version(&ws.db());
    assert!(migrated > version, "the schema is still version {migrated} after granttrail opened it");
    for (event_id, record) in delivered {
        assert_eq!(
            ws.ok(&["event", &event_id, "--format", "json"]),
            format!("{record}\n"),
            "event {event_id}"
        );
    }
}

#[test]
fn opening_a_v6_database_migrates_it() {
    assert_migrated_with_every_record(V6);
}

#[test]
fn opening_a_v7_database_migrates_it() {
    assert_migrated_with_every_record(V7);
}

#[test]
fn a_database_newer_than_the_binary_is_refused_and_left_untouched() {
    let ws = Workspace::new();
    load_database(&ws.db(), V6);
    {
        let conn = Connection::open(ws.db()).expect("open the copy");
        conn.pragma_update(None, "user_version", 999).expect("set user_version 999");
        // A rollback journal, as the Lambda keeps on EFS: switching it to WAL would change the
        // file's header, so the refusal must come before any setting is applied.
        conn.pragma_update(None, "journal_mode", "DELETE").expect("leave WAL");
    }
    // Closing the last connection checkpointed the WAL: the file alone holds the database.
    let before = std::fs::read(ws.db()).expect("read the database before");

    let example = fixtures().join("example");
    let reader = ["grants", "--format", "json"];
    let writer = ["ingest", "-q", example.to_str().expect("UTF-8 fixture path")];
    for args in [&reader[..], &writer[..]] {
        let out = ws.run(args);
        assert_eq!(out.status.code(), Some(1), "granttrail {args:?} on a version-999 database");
        assert!(
            stderr(&out).contains("schema version 999"),
            "granttrail {args:?}: the refusal names the version: {}",
            stderr(&out)
        );
    }

    let after = std::fs::read(ws.db()).expect("read the database after");
    assert!(before == after, "the refused database file changed");
    assert_eq!(user_version(&ws.db()), 999, "no write-ahead log changes the refused database either");
}
