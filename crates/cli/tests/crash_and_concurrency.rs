//! Killed processes and concurrent processes: the database stays intact, and finishing the
//! work gives exactly the state of one uninterrupted run.
//!
//! `GRANTTRAIL_CRASH_ITERATIONS` sets how many random kill points are tried (default 8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Workspace, crash_iterations as iterations, kill_delays as delays};
use serde_json::Value;

/// A corpus large enough that an ingest takes a while: 40 files, 16,000 records, 30 % KMS.
fn corpus(dir: &Path) {
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: dir.to_path_buf(),
        records: 16_000,
        kms_share: 0.3,
        grant_share: 0.01,
        files: 40,
        accounts: 2,
        regions: 2,
        seed: 11,
        gzip: true,
    })
    .unwrap();
}

fn state(ws: &Workspace) -> (Value, Value) {
    let grants = ws.grants_json();
    let calls = serde_json::from_str(&ws.ok(&["calls", "--format", "json"])).unwrap();
    (grants, calls)
}

fn integrity_ok(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(result, "ok");
}

#[test]
fn killing_ingest_or_rebuild_anywhere_loses_and_corrupts_nothing() {
    let data = Workspace::new();
    let logs = data.path("logs");
    corpus(&logs);
    let logs = logs.to_str().unwrap();

    let reference = Workspace::new();
    let started = Instant::now();
    reference.ok(&["ingest", "-q", logs]);
    let full = started.elapsed();
    let expected = state(&reference);
    assert!(expected.0.as_array().unwrap().len() > 20, "the corpus has grants");

    for (i, delay) in delays(iterations(), full).into_iter().enumerate() {
        let ws = Workspace::new();
        let mut child = ws.spawn(&["ingest", "-q", logs]);
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; the process may have finished already
        child.wait().unwrap();
        if ws.db().exists() {
            integrity_ok(&ws.db());
        }
        ws.ok(&["ingest", "-q", logs]);
        integrity_ok(&ws.db());
        assert_eq!(state(&ws), expected, "iteration {i}: killed after {delay:?}, then re-run");
    }

    // A rebuild killed part-way leaves the previous state (one transaction) or the new one.
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", logs]);
    let started = Instant::now();
    ws.ok(&["rebuild"]);
    let rebuild = started.elapsed();
    for delay in delays(iterations().div_ceil(2), rebuild) {
        let mut child = ws.spawn(&["rebuild"]);
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        integrity_ok(&ws.db());
        assert_eq!(state(&ws), expected, "rebuild killed after {delay:?}");
    }
}

#[test]
fn concurrent_ingests_and_readers_agree_with_one_run() {
    let data = Workspace::new();
    let logs = data.path("logs");
    corpus(&logs);
    let logs_text = logs.to_str().unwrap();

    let reference = Workspace::new();
    reference.ok(&["ingest", "-q", logs_text]);
    let expected = state(&reference);

    // Two writers over overlapping inputs (the whole bucket, and one account's part of it).
    let ws = Workspace::new();
    let account =
        std::fs::read_dir(logs.join("AWSLogs/o-exampleorg")).unwrap().next().unwrap().unwrap().path();
    let mut first = ws.spawn(&["ingest", "-q", logs_text]);
    let mut second = ws.spawn(&["ingest", "-q", account.to_str().unwrap()]);

    // Readers meanwhile: every answer is complete, valid JSON.
    let mut reads = 0;
    while first.try_wait().unwrap().is_none() || second.try_wait().unwrap().is_none() {
        if ws.db().exists() {
            for args in [
                &["grants", "--format", "json"][..],
                &["calls", "--grant-only", "--format", "json"][..],
                &["report", "--format", "json", "-o", "-"][..],
            ] {
                let out = ws.run(args);
                if out.status.success() {
                    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
                    if args[0] == "report" {
                        // Read in one transaction: the summary counts the inventory it shows.
                        let listed = answer["grants"].as_array().unwrap().len() as u64;
                        assert_eq!(
                            answer["summary"]["grants"].as_u64(),
                            Some(listed),
                            "{}",
                            answer["summary"]
                        );
                    }
                    reads += 1;
                } else {
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(err.contains("does not exist"), "reader failed: {err}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(reads > 0);
    integrity_ok(&ws.db());
    assert_eq!(state(&ws), expected);
}
