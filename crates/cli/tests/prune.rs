//! `granttrail prune`: old calls' records go, every answer stays, and what the evidence rests
//! on is kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{Workspace, fixtures, stderr};
use serde_json::Value;

/// After every event of the example: with one day kept, all its calls are old.
const AS_OF: &str = "2024-06-01T00:00:00Z";

const LIFECYCLE_AND_KEY_EVENTS: [&str; 13] = [
    "CreateGrant",
    "RetireGrant",
    "RevokeGrant",
    "DeleteKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateKey",
    "PutKeyPolicy",
    "TagResource",
    "UntagResource",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
];

/// Every answer a user can ask for, as JSON.
fn answers(ws: &Workspace) -> Vec<String> {
    let story = ws.ok(&["grant", "bc2e8470", "--format", "json"]);
    vec![
        ws.ok(&["grants", "--format", "json"]),
        ws.ok(&["calls", "--format", "json"]),
        ws.ok(&["findings", "--format", "json", "--as-of", AS_OF]),
        ws.ok(&["report", "--format", "json", "--as-of", AS_OF, "--output", "-"]),
        story,
    ]
}

/// (eventID, name, source, sharedEventID) of every stored event.
fn events(ws: &Workspace) -> Vec<(String, String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let mut stmt =
        conn.prepare("SELECT event_id, event_name, event_source, shared_event_id FROM events").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn pruning_keeps_every_answer_and_the_records_the_evidence_rests_on() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let before = answers(&ws);
    let findings: Value = serde_json::from_str(&before[2]).unwrap();
    let calls: Value = serde_json::from_str(&before[1]).unwrap();
    let mut cited: BTreeSet<String> = BTreeSet::new();
    for f in findings.as_array().unwrap() {
        cited.extend(
            f["evidence"].as_array().unwrap().iter().filter_map(|e| e["event_id"].as_str()).map(String::from),
        );
    }
    for c in calls.as_array().unwrap() {
        if c["label"] == "grant_only" || c["label"] == "grant_only_likely" {
            cited.insert(c["event_id"].as_str().unwrap().to_string());
            for reason in c["reasons"].as_array().unwrap() {
                cited.extend(
                    reason["event_ids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()),
                );
            }
        }
    }
    assert!(cited.len() >= 2, "the example has grant-only calls");
    // A cited call's copies in other accounts are kept with it: their records are its evidence too.
    let stored = events(&ws);
    let shared_cited: BTreeSet<&str> = stored
        .iter()
        .filter(|(id, ..)| cited.contains(id))
        .filter_map(|(.., shared)| shared.as_deref())
        .collect();
    let twins: BTreeSet<String> = stored
        .iter()
        .filter(|(.., shared)| shared.as_deref().is_some_and(|s| shared_cited.contains(s)))
        .map(|(id, ..)| id.clone())
        .collect();
    let always =
        |name: &str, source: &str| source != "kms.amazonaws.com" || LIFECYCLE_AND_KEY_EVENTS.contains(&name);
    // Every record of an eventID one of whose records is always kept (a collision) is kept.
    let always_kept: BTreeSet<&str> = stored
        .iter()
        .filter(|(_, name, source, _)| always(name, source))
        .map(|(id, ..)| id.as_str())
        .collect();

    let out = ws.ok(&["prune", "--keep-days", "1", "--as-of", AS_OF]);
    assert!(out.contains("dropped the records of"), "{out}");
    assert_eq!(answers(&ws), before, "pruning changed an answer");

    let mut dropped = 0;
    for (id, name, ..) in &stored {
        let record = ws.run(&["event", id, "--format", "json"]);
        let kept = always_kept.contains(id.as_str()) || cited.contains(id) || twins.contains(id);
        if record.status.success() {
            assert!(kept, "{name} {id} is old, uncited and kept");
        } else {
            dropped += 1;
            assert!(!kept, "{name} {id} was dropped");
            assert!(stderr(&record).contains("granttrail prune"), "{}", stderr(&record));
            let table = ws.ok(&["event", id]);
            assert!(
                table.contains(id.as_str()) && table.contains("dropped by `granttrail prune`"),
                "{table}"
            );
        }
    }
    assert!(dropped > 0, "nothing was old enough to drop");
}

#[test]
fn the_days_come_from_the_settings_file_and_must_be_given() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let refused = ws.run(&["prune", "--as-of", AS_OF]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("keep_call_records_days"), "{}", stderr(&refused));

    let config = ws.path("granttrail.toml");
    std::fs::write(&config, "[store]\nkeep_call_records_days = 1\n").unwrap();
    let out = ws.ok(&["--config", config.to_str().unwrap(), "prune", "--as-of", AS_OF]);
    assert!(!out.contains("records of 0 call"), "{out}");
    // Nothing from the last 10,000 days is dropped.
    let again = ws.ok(&["prune", "--keep-days", "10000", "--as-of", AS_OF]);
    assert!(again.contains("records of 0 call"), "{again}");
}

#[test]
fn the_file_shrinks() {
    let ws = Workspace::new();
    let logs = ws.path("logs");
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: logs.clone(),
        records: 6_000,
        kms_share: 0.5,
        grant_share: 0.01,
        files: 6,
        accounts: 1,
        regions: 1,
        seed: 9,
        gzip: true,
    })
    .unwrap();
    ws.ok(&["ingest", "-q", logs.to_str().unwrap()]);
    // A checkpoint first, so the comparison is of the file alone.
    // And the pages freed, which must all go back to the file system.
    let size = |ws: &Workspace| {
        let conn = rusqlite::Connection::open(ws.db()).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
        drop(conn);
        (std::fs::metadata(ws.db()).unwrap().len(), free)
    };
    let (before, _) = size(&ws);
    let out = ws.ok(&["prune", "--keep-days", "0", "--as-of", "2100-01-01T00:00:00Z"]);
    // The size it reports is the file's once it is closed.
    let printed: f64 =
        out.split(" is now ").nth(1).and_then(|t| t.split(' ').next()).unwrap().parse().unwrap();
    let on_disk = std::fs::metadata(ws.db()).unwrap().len() as f64 / 1e6;
    assert!((printed - on_disk).abs() < 0.051, "said {printed} MB, the file has {on_disk} MB: {out}");
    let (after, free) = size(&ws);
    assert!(after < before, "{before} bytes before, {after} after");
    assert_eq!(free, 0, "pages left free in the file after pruning");
}

#[test]
fn pruning_on_postgres_drops_what_it_drops_on_sqlite_and_keeps_every_answer() {
    let Some(pg) = granttrail_testkit::Postgres::start() else { return };
    let sqlite = Workspace::new();
    let postgres = Workspace::postgres(pg.database("pruned"));
    let example = fixtures().join("example");
    for ws in [&sqlite, &postgres] {
        ws.ok(&["ingest", "-q", example.to_str().unwrap()]);
    }
    let before = answers(&postgres);
    assert_eq!(before, answers(&sqlite), "the engines answer alike");
    // A reader in the middle of a long transaction on the events: the prune neither waits for
    // it nor makes other readers wait (no lock on the table beyond its rows).
    let mut reader = pg
        .psql_in_background("pruned", "BEGIN; SELECT count(*) FROM event_rows; SELECT pg_sleep(30); COMMIT;");
    let holding = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                   WHERE c.relname = 'event_rows' AND l.granted AND l.pid <> pg_backend_pid()";
    while pg.psql_in("pruned", holding) == "0" {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for ws in [&sqlite, &postgres] {
        let out = ws.ok(&["prune", "--keep-days", "1", "--as-of", AS_OF]);
        assert!(out.contains("dropped the records of"), "{out}");
    }
    assert!(reader.try_wait().unwrap().is_none(), "the prune waited for the reader");
    pg.psql_in(
        "pruned",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
    );
    let _ = reader.wait();
    assert_eq!(answers(&postgres), before, "pruning changed an answer");
    let mut dropped = 0;
    for (id, ..) in events(&sqlite) {
        let kept = |ws: &Workspace| ws.run(&["event", &id, "--format", "json"]).status.success();
        assert_eq!(kept(&postgres), kept(&sqlite), "{id}");
        dropped += usize::from(!kept(&sqlite));
    }
    assert!(dropped > 0, "nothing was old enough to drop");
    // The index prune makes for its deletes is gone with its transaction.
    let indexes = pg
        .psql_in("pruned", "SELECT count(*) FROM pg_indexes WHERE indexname = 'event_rows_by_record_block'");
    assert_eq!(indexes.trim(), "0", "{indexes}");
}
