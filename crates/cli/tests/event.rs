//! `granttrail event`: every stored record comes back as CloudTrail delivered it, from the
//! compressed store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{Workspace, fixtures, stderr};
use serde_json::Value;

/// Every CloudTrail record in the log files under `dir`, by eventID (a list: two different
/// records may carry one eventID).
fn records_by_event_id(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for file in files {
        let mut text = Vec::new();
        if file.extension().is_some_and(|e| e == "gz") {
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&file).unwrap())
                .read_to_end(&mut text)
                .unwrap();
        } else {
            text = std::fs::read(&file).unwrap();
        }
        let doc: Value = serde_json::from_slice(&text).unwrap();
        for record in doc["Records"].as_array().into_iter().flatten() {
            if let Some(id) = record["eventID"].as_str() {
                records.entry(id.to_string()).or_default().push(record.clone());
            }
        }
    }
    records
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Digest files list log files; they are not logs.
            if !path.ends_with("CloudTrail-Digest") {
                walk(&path, out);
            }
        } else if path.to_string_lossy().ends_with(".json.gz") || path.to_string_lossy().ends_with(".json") {
            out.push(path);
        }
    }
}

fn stored_event_ids(ws: &Workspace) -> Vec<String> {
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let mut stmt = conn.prepare("SELECT event_id FROM events ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Ingests `logs`, then checks that `event ID --format json` prints, for every stored event,
/// a record of the logs with that eventID, and that every KMS record of the logs is stored.
fn every_record_comes_back(logs: &Path) -> usize {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", logs.to_str().unwrap()]);
    let delivered = records_by_event_id(logs);
    let stored = stored_event_ids(&ws);
    let kms: Vec<&String> = delivered
        .iter()
        .filter(|(_, records)| records.iter().any(|r| r["eventSource"] == "kms.amazonaws.com"))
        .map(|(id, _)| id)
        .collect();
    assert!(!kms.is_empty());
    for id in kms {
        assert!(stored.contains(id), "KMS record {id} is not stored");
    }
    // Each record stored under an eventID, the second of a collision included, comes back.
    let mut printed_of: BTreeMap<&String, Vec<Value>> = BTreeMap::new();
    for id in &stored {
        let seen = printed_of.entry(id).or_default();
        let number = (seen.len() + 1).to_string();
        let printed = ws.ok(&["event", id, "--record", &number, "--format", "json"]);
        let record: Value = serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{id}: {e}\n{printed}"));
        let candidates = delivered.get(id).unwrap_or_else(|| panic!("{id} is in no log file"));
        assert!(candidates.contains(&record), "event {id} printed a record no log file holds:\n{printed}");
        assert!(!seen.contains(&record), "event {id} --record {number} printed an earlier record again");
        seen.push(record);
    }
    for (id, seen) in &printed_of {
        let next = (seen.len() + 1).to_string();
        let beyond = ws.run(&["event", id, "--record", &next, "--format", "json"]);
        assert!(
            !beyond.status.success() && stderr(&beyond).contains("there is no record"),
            "{id} --record {next}"
        );
    }
    stored.len()
}

#[test]
fn every_record_of_the_example_comes_back_as_delivered() {
    let checked = every_record_comes_back(&fixtures().join("example"));
    assert!(checked >= 20, "only {checked} events");
}

#[test]
fn every_record_of_a_generated_corpus_comes_back_as_delivered() {
    let ws = Workspace::new();
    let logs = ws.path("logs");
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: logs.clone(),
        records: 1_200,
        kms_share: 0.25,
        grant_share: 0.1,
        files: 6,
        accounts: 2,
        regions: 2,
        seed: 5,
        gzip: true,
    })
    .unwrap();
    let checked = every_record_comes_back(&logs);
    assert!(checked > 200, "only {checked} events");
}

#[test]
fn the_table_names_the_object_and_the_other_accounts_copy() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let (id, copy, object): (String, String, String) = conn
        .query_row(
            "SELECT a.event_id, b.event_id, o.source FROM events a JOIN events b
               ON b.shared_event_id = a.shared_event_id AND b.event_id <> a.event_id
             JOIN objects o ON o.id = a.object_id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the example logs a cross-account call in both accounts");
    let table = ws.ok(&["event", &id]);
    for expected in [&id, &copy, &object] {
        assert!(table.contains(expected.as_str()), "{expected} missing from:\n{table}");
    }
}

#[test]
fn an_unknown_event_id_is_an_error_naming_it() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let out = ws.run(&["event", "no-such-event", "--format", "json"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-event"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_record_delivered_again_names_every_object_it_came_in() {
    let ws = Workspace::new();
    let example = fixtures().join("example");
    ws.ok(&["ingest", "-q", example.to_str().unwrap()]);
    // One file of the example, delivered again under another name.
    let file = walk_files(&example).into_iter().find(|p| p.to_string_lossy().contains("T0935Z")).unwrap();
    let again = ws.path("again.json.gz");
    std::fs::copy(&file, &again).unwrap();
    ws.ok(&["ingest", "-q", again.to_str().unwrap()]);
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let id: String = conn
        .query_row(
            "SELECT e.event_id FROM events e JOIN objects o ON o.id = e.object_id WHERE o.source LIKE '%T0935Z%' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let table = ws.ok(&["event", &id]);
    // Listed under "also delivered in" (the example itself delivers some records twice).
    let block: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("also delivered in"))
        .take_while(|l| l.starts_with("also delivered in") || l.starts_with(' '))
        .collect();
    assert!(block.iter().any(|l| l.ends_with("again.json.gz")), "{table}");
    assert_eq!(stored_event_ids(&ws).iter().filter(|e| **e == id).count(), 1, "stored once");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// Two different records under one eventID (a collision): each is printed by its number, and
/// the table of either names the other's.
#[test]
fn each_record_of_a_collision_comes_back_by_its_number() {
    let ws = Workspace::new();
    let key = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111";
    let record = |name: &str, time: &str| {
        serde_json::json!({
            "eventVersion": "1.08", "eventSource": "kms.amazonaws.com", "eventID": "4c8f0d0e-0000-4000-8000-000000000001",
            "eventName": name, "eventTime": time, "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/r/s", "accountId": "111122223333"},
            "resources": [{"ARN": key, "accountId": "111122223333", "type": "AWS::KMS::Key"}],
            "requestParameters": {"keyId": key}
        })
    };
    let first = record("DescribeKey", "2024-05-01T09:00:00Z");
    let second = record("Decrypt", "2024-05-01T10:00:00Z");
    for (file, r) in [("a.json", &first), ("b.json", &second)] {
        std::fs::write(ws.path(file), serde_json::json!({ "Records": [r] }).to_string()).unwrap();
        ws.ok(&["ingest", "-q", ws.path(file).to_str().unwrap()]);
    }
    let id = "4c8f0d0e-0000-4000-8000-000000000001";
    let printed = |n: &str| -> Value {
        serde_json::from_str(&ws.ok(&["event", id, "--record", n, "--format", "json"])).unwrap()
    };
    assert_eq!(printed("1"), first);
    assert_eq!(printed("2"), second);
    let table = ws.ok(&["event", id]);
    assert!(table.contains("DescribeKey (kms.amazonaws.com)") && table.contains("Decrypt at"), "{table}");
    assert!(table.contains("(--record 2)"), "{table}");
    let table = ws.ok(&["event", id, "--record", "2"]);
    assert!(table.contains("Decrypt (kms.amazonaws.com)") && table.contains("DescribeKey at"), "{table}");
    assert!(
        table.contains("(--record 1)") && table.contains(&format!("{id} --record 2 --format json")),
        "{table}"
    );
    for beyond in ["3", "0"] {
        let out = ws.run(&["event", id, "--record", beyond, "--format", "json"]);
        assert!(!out.status.success() && out.stdout.is_empty(), "--record {beyond}");
    }
}
