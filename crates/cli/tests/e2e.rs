//! The real binary on the bundled example and on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;

use common::{Workspace, fixtures, stderr, stdout};
use serde_json::Value;

fn example() -> String {
    fixtures().join("example").to_str().unwrap().to_string()
}

fn grant<'a>(grants: &'a Value, grantee: &str) -> &'a Value {
    grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grantee_principal"] == grantee)
        .unwrap_or_else(|| panic!("no grant for {grantee}"))
}

#[test]
fn example_corpus_gives_the_expected_lifecycles() {
    let ws = Workspace::new();
    let out = ws.run(&["ingest", &example()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("ingested 10 object(s)"), "{summary}");
    assert!(summary.contains("1 skipped, 0 rejected"), "the digest file is skipped: {summary}");
    assert!(stderr(&out).contains("CloudTrail digest file"));

    let grants = ws.grants_json();
    assert_eq!(grants.as_array().unwrap().len(), 5, "{grants:#}");

    let bob = grant(&grants, "arn:aws:iam::111122223333:user/bob");
    assert_eq!(bob["state"], "revoked");
    assert_eq!(bob["operations"], serde_json::json!(["Encrypt"]));
    assert_eq!(bob["created_at"], "2024-05-01T09:05:00Z");
    assert_eq!(bob["ended_at"], "2024-05-01T09:16:00Z");
    assert_eq!(bob["ended_by"], "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice");

    let batch = grant(&grants, "arn:aws:iam::111122223333:role/app/BatchJob");
    assert_eq!(batch["name"], "batch-job-expires-2024-06-30");
    assert_eq!(batch["create_event_ids"].as_array().unwrap().len(), 2, "the Name retry is the same grant");
    assert_eq!(batch["state"], "revoked");
    assert_eq!(batch["constraints"], serde_json::json!({"encryption_context_subset": {"app": "batch"}}));

    let partner = grant(&grants, "arn:aws:iam::444455556666:role/PartnerReader");
    assert_eq!(partner["state"], "active");
    assert_eq!(partner["ended_at"], Value::Null);

    let ebs = grant(&grants, "111122223333:aws:ec2-infrastructure:i-0a1b2c3d4e5f60718");
    assert_eq!(ebs["state"], "retired");
    assert_eq!(ebs["created_by_service"], "ec2.amazonaws.com");
    assert_eq!(ebs["ended_by"], "ec2.amazonaws.com");

    let old: Vec<_> = grants.as_array().unwrap().iter().filter(|g| g["creation_seen"] == false).collect();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["state"], "retired");
    assert_eq!(old[0]["created_at"], Value::Null);

    // Re-ingesting is a no-op.
    let again = ws.ok(&["ingest", &example()]);
    assert!(again.contains("ingested 0 object(s) (10 already ingested"), "{again}");
    assert_eq!(ws.grants_json(), grants);
    ws.ok(&["rebuild"]);
    assert_eq!(ws.grants_json(), grants);
}

#[test]
fn grants_filters_and_formats() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let active_at = |t: &str| -> usize {
        let out = ws.ok(&["grants", "--active-at", t, "--format", "json"]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len()
    };
    // 09:10: bob's grant (09:05-09:16) and the grant created before the logs (ended 09:44).
    assert_eq!(active_at("2024-05-01T09:10:00Z"), 2);
    // 10:15: batch (until 10:38), partner, EBS (10:00:01-10:30).
    assert_eq!(active_at("2024-05-01T10:15:00Z"), 3);
    assert_eq!(active_at("2024-05-01T12:00:00Z"), 1);

    let revoked = ws.ok(&["grants", "--state", "revoked", "--format", "jsonl"]);
    assert_eq!(revoked.lines().count(), 2);
    for line in revoked.lines() {
        assert_eq!(serde_json::from_str::<Value>(line).unwrap()["state"], "revoked");
    }
    let key = "arn:aws:kms:us-east-1:111122223333:key/5e4d3c2b-1a09-8f7e-6d5c-4b3a29180706";
    let csv = ws.ok(&["grants", "--key", key, "--format", "csv"]);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("key_arn,grant_id,state"));
    assert!(lines.next().unwrap().contains("PartnerReader"));
    assert_eq!(lines.next(), None);

    let table = ws.ok(&["grants", "--grantee", "arn:aws:iam::111122223333:user/bob"]);
    assert!(table.contains("revoked") && table.contains("1 grant(s)"), "{table}");

    let bad = ws.run(&["grants", "--active-at", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("\"yesterday\" is not a time"), "{}", stderr(&bad));
}

#[test]
fn grant_story_lists_every_event_in_time_order() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let grants = ws.grants_json();
    let bob = grant(&grants, "arn:aws:iam::111122223333:user/bob");
    let id = bob["grant_id"].as_str().unwrap();

    let story: Value = serde_json::from_str(&ws.ok(&["grant", id, "--format", "json"])).unwrap();
    let events = story[0]["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["event_name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["CreateGrant", "RevokeGrant"]);
    assert!(events[0]["object"].as_str().unwrap().ends_with(".json.gz"));
    assert_eq!(events[1]["caller"], "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice");

    let table = ws.ok(&["grant", &id[..10]]);
    assert!(table.contains("RevokeGrant") && table.contains("203.0.113.10"), "{table}");

    let missing = ws.run(&["grant", "ffffffffffff"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no grant with id"));
}

#[test]
fn a_bad_object_among_good_ones_is_named_and_the_rest_go_in() {
    let ws = Workspace::new();
    let dir = ws.path("logs");
    std::fs::create_dir(&dir).unwrap();
    let good = fixtures().join("lifecycle/out_of_order_end_before_create/logs/2-create.json");
    std::fs::copy(&good, dir.join("a-good.json")).unwrap();
    // A gzip file cut in half.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(std::fs::read(&good).unwrap().repeat(50).as_slice()).unwrap();
    let full = gz.finish().unwrap();
    std::fs::write(dir.join("b-truncated.json.gz"), &full[..full.len() / 2]).unwrap();
    std::fs::write(dir.join("c-not-json.json"), "this is not json").unwrap();
    std::fs::write(dir.join("d-not-cloudtrail.json"), r#"{"Records": 5}"#).unwrap();

    let out = ws.run(&["ingest", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "any rejected object makes the exit status non-zero");
    let err = stderr(&out);
    assert!(err.contains("b-truncated.json.gz: gzip stream is corrupt or truncated"), "{err}");
    assert!(err.contains("c-not-json.json: not JSON"), "{err}");
    assert!(
        err.contains("d-not-cloudtrail.json: not a CloudTrail log: \"Records\" is not an array"),
        "{err}"
    );
    assert!(stdout(&out).contains("ingested 1 object(s) (0 already ingested, 0 skipped, 3 rejected)"));
    assert_eq!(ws.grants_json().as_array().unwrap().len(), 1, "the good object's grant is stored");

    let missing = ws.run(&["ingest", ws.path("nope.json").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nope.json"));
}

#[test]
fn stdin_lookup_events_and_json_lines() {
    let ws = Workspace::new();
    let record =
        std::fs::read_to_string(fixtures().join("lifecycle/create_predates_logs/logs/1.json")).unwrap();
    let parsed: Value = serde_json::from_str(&record).unwrap();
    let revoke = &parsed["Records"][0];
    let lookup = serde_json::json!({"Events": [{
        "EventId": revoke["eventID"], "EventName": "RevokeGrant", "ReadOnly": "false",
        "EventTime": 1714557000.0, "EventSource": "kms.amazonaws.com",
        "CloudTrailEvent": revoke.to_string(),
    }]});
    let out = ws.run_with_stdin(&["ingest", "-"], Some(lookup.to_string().as_bytes()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ws.grants_json()[0]["state"], "revoked");

    let ws = Workspace::new();
    let lines = format!("{}\n", revoke);
    let out = ws.run_with_stdin(&["ingest", "-"], Some(lines.as_bytes()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ws.grants_json()[0]["state"], "revoked");
}

#[test]
fn queries_need_an_existing_database() {
    let ws = Workspace::new();
    let out = ws.run(&["grants"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"));
    assert!(!ws.db().exists());
}

#[test]
fn sql_and_terminal_injection_in_names_is_inert() {
    let ws = Workspace::new();
    let text =
        std::fs::read_to_string(fixtures().join("lifecycle/name_retry_collapses/logs/1.json")).unwrap();
    let evil = text.replace("\"n1\"", r#""'); DROP TABLE grants;--\u001b[31m""#);
    let file = ws.path("evil.json");
    std::fs::write(&file, evil).unwrap();
    ws.ok(&["ingest", "-q", file.to_str().unwrap()]);
    let grants = ws.grants_json();
    assert_eq!(grants[0]["name"], "'); DROP TABLE grants;--\u{1b}[31m", "stored and shown verbatim in JSON");
    let table = ws.ok(&["grants"]);
    assert!(table.contains("'); DROP TABLE grants;--") && !table.contains('\u{1b}'), "{table}");
}

#[test]
fn grant_only_calls_of_the_example_carry_their_evidence() {
    let ws = Workspace::new();
    let summary = ws.ok(&["ingest", &example()]);
    assert!(summary.contains("2 call(s) in the database succeeded only through a grant"), "{summary}");
    let calls: Value = serde_json::from_str(&ws.ok(&["calls", "--grant-only", "--format", "json"])).unwrap();
    let calls = calls.as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = calls
        .iter()
        .map(|c| {
            (c["event_name"].as_str().unwrap(), c["label"].as_str().unwrap(), c["evidence"].as_str().unwrap())
        })
        .collect();
    assert_eq!(summary, vec![("Encrypt", "grant_only_likely", "L3"), ("Decrypt", "grant_only", "L4")]);
    for c in calls {
        assert_eq!(c["grant_ids"].as_array().unwrap().len(), 1);
        let reasons = c["reasons"].as_array().unwrap();
        assert!(
            reasons.len() >= 2
                && reasons.iter().all(|r| !r["event_ids"].as_array().unwrap().is_empty()
                    || r["text"].as_str().unwrap().contains("imported"))
        );
    }
    let partner = &calls[1];
    assert_eq!(
        partner["principal"], "arn:aws:sts::444455556666:assumed-role/PartnerReader/etl",
        "identity from the partner's copy"
    );
    assert!(partner["shared_event_id"].is_string());

    // Nothing weaker than L3 is called grant-only.
    let all: Value = serde_json::from_str(&ws.ok(&["calls", "--format", "json"])).unwrap();
    for c in all.as_array().unwrap() {
        if c["label"].as_str().unwrap().starts_with("grant_only") {
            assert!(["L3", "L4", "L5"].contains(&c["evidence"].as_str().unwrap()), "{c}");
        }
    }
    let uncertain = ws.ok(&["calls", "--label", "grant_covered_uncertain", "--format", "jsonl"]);
    assert_eq!(uncertain.lines().count(), 1, "the EBS decrypt two seconds after its grant: {uncertain}");

    // The grant story marks the call that depended on the grant.
    let grant = partner["grant_ids"][0].as_str().unwrap();
    let story: Value = serde_json::from_str(&ws.ok(&["grant", grant, "--format", "json"])).unwrap();
    let covered = story[0]["calls"].as_array().unwrap();
    assert_eq!(covered.len(), 1);
    assert_eq!(covered[0]["depended_on_grant"], true);
    let by_grant: Value =
        serde_json::from_str(&ws.ok(&["calls", "--grant", grant, "--format", "json"])).unwrap();
    assert_eq!(by_grant.as_array().unwrap().len(), 1);

    let bad = ws.run(&["calls", "--label", "grant_onyl"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("is not a label"));
}

#[test]
fn changed_settings_need_a_rebuild() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let config = ws.path("granttrail.toml");
    std::fs::write(&config, "[labels]\nconsistency_window_seconds = 1\n").unwrap();
    let config = config.to_str().unwrap();
    let refused = ws.run(&["--config", config, "ingest", &example()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("run `granttrail rebuild`"), "{}", stderr(&refused));
    ws.ok(&["--config", config, "rebuild"]);
    // With a 1-second window the EBS decrypt two seconds after its grant is certain.
    let uncertain =
        ws.ok(&["--config", config, "calls", "--label", "grant_covered_uncertain", "--format", "jsonl"]);
    assert_eq!(uncertain.lines().count(), 0, "{uncertain}");
    ws.ok(&["--config", config, "ingest", "-q", &example()]);

    std::fs::write(ws.path("bad.toml"), "[labels]\nconsistency_window = 1\n").unwrap();
    let bad = ws.run(&["--config", ws.path("bad.toml").to_str().unwrap(), "grants"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("bad.toml"), "{}", stderr(&bad));
}

#[test]
fn imports_name_the_file_when_they_fail() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let file = ws.path("policy.json");
    std::fs::write(&file, r#"{"PolicyName": "default"}"#).unwrap();
    let key = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let out = ws.run(&["import", "key-policy", file.to_str().unwrap(), "--key", key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("policy.json") && stderr(&out).contains("neither get-key-policy output"));
    let out = ws.run(&["import", "key-policy", file.to_str().unwrap(), "--key", "alias/app"]);
    assert!(stderr(&out).contains("full key ARN"));
    std::fs::write(&file, "{}").unwrap();
    let out = ws.run(&["import", "iam", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("policy.json"), "{}", stderr(&out));
}

#[test]
fn csv_cells_cannot_become_formulas() {
    let ws = Workspace::new();
    let text =
        std::fs::read_to_string(fixtures().join("lifecycle/name_retry_collapses/logs/1.json")).unwrap();
    let evil = text.replace("\"n1\"", r#""=HYPERLINK(\"http://x\")""#);
    let file = ws.path("evil.json");
    std::fs::write(&file, evil).unwrap();
    ws.ok(&["ingest", "-q", file.to_str().unwrap()]);
    let csv = ws.ok(&["grants", "--format", "csv"]);
    assert!(csv.contains(r#"'=HYPERLINK(""http://x"")"#), "{csv}");
    assert!(!csv.contains(",=HYPERLINK"), "{csv}");
}

#[test]
fn findings_flag_what_a_security_engineer_should_see() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let out = ws.ok(&["findings", "--as-of", "2024-05-02T00:00:00Z", "--format", "json"]);
    let findings: Value = serde_json::from_str(&out).unwrap();
    let rules: Vec<(&str, &str)> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule_id"].as_str().unwrap(), f["grantee_principal"].as_str().unwrap_or("")))
        .collect();
    assert!(rules.contains(&("GT001", "arn:aws:iam::444455556666:role/PartnerReader")), "{rules:?}");
    assert!(rules.contains(&("GT005", "arn:aws:iam::111122223333:user/bob")), "hand-made grant: {rules:?}");
    assert!(
        !rules.iter().any(|(rule, grantee)| *rule == "GT005" && grantee.contains("ec2-infrastructure")),
        "the EBS grant EC2 made is not hand-made: {rules:?}"
    );
    let first = &findings[0];
    assert_eq!(first["severity"], "high");
    assert!(first["remediation"].as_str().unwrap().starts_with("aws kms revoke-grant --key-id arn:aws:kms:"));
    assert!(first["evidence"][0]["object"].as_str().unwrap().ends_with(".json.gz"));
    let again: Value =
        serde_json::from_str(&ws.ok(&["findings", "--as-of", "2024-05-02T00:00:00Z", "--format", "json"]))
            .unwrap();
    assert_eq!(again, findings, "finding ids are stable");

    let gated = ws.run(&["findings", "--fail-on", "high"]);
    assert_eq!(gated.status.code(), Some(3));
    let only_low = ws.run(&["findings", "--severity", "high", "--fail-on", "high", "--format", "jsonl"]);
    assert_eq!(stdout(&only_low).lines().count(), 1);

    let deleted = Workspace::new();
    let logs = fixtures().join("scenarios/T30_role_deleted_and_recreated/logs");
    deleted.ok(&["ingest", "-q", logs.to_str().unwrap()]);
    let out = deleted.ok(&["findings", "--format", "json"]);
    assert!(out.contains("\"GT011\""), "grantee deleted while the grant stays: {out}");
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let ws = Workspace::new();
    ws.ok(&["ingest", &example()]);
    // Every command's output goes to a pipe whose reader has gone, as with `| head -0`.
    for args in [
        vec!["ingest", example().as_str()],
        vec!["grants"],
        vec!["calls", "--format", "csv"],
        vec!["findings"],
        vec!["findings", "--format", "jsonl"],
        vec!["grants", "--format", "jsonl"],
        vec!["rebuild"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_granttrail"))
            .arg("--db")
            .arg(ws.db())
            .args(&args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The finding ids of a `findings --format json` listing or of a report's `findings`.
fn finding_ids(listing: &Value) -> std::collections::BTreeSet<String> {
    listing.as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn findings_and_report_measure_from_one_reference_time() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let findings: Value = serde_json::from_str(&ws.ok(&["findings", "--format", "json"])).unwrap();
    let report: Value = serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-"])).unwrap();
    assert!(!finding_ids(&findings).is_empty());
    assert_eq!(finding_ids(&findings), finding_ids(&report["findings"]), "the same findings on one database");

    // The reference is the latest event, not the wall clock: the example's logs are from 2024.
    assert_eq!(report["scope"]["as_of_from"], "latest_event");
    let latest = report["scope"]["as_of"].as_str().unwrap();
    assert!(latest.starts_with("2024-"), "{latest}");
    assert!(findings.as_array().unwrap().iter().all(|f| f["as_of"] == latest), "{findings:#}");
    let table = ws.ok(&["findings"]);
    assert!(table.starts_with(&format!("as of {latest} (the latest event in the database)\n")), "{table}");

    let later: Value =
        serde_json::from_str(&ws.ok(&["findings", "--format", "json", "--as-of", "2026-01-01"])).unwrap();
    assert!(later.as_array().unwrap().iter().all(|f| f["as_of"] == "2026-01-01T00:00:00Z"));
    let report_later: Value =
        serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-", "--as-of", "2026-01-01"]))
            .unwrap();
    assert_eq!(finding_ids(&later), finding_ids(&report_later["findings"]));
}

#[test]
fn periods_take_dates_and_durations_back_from_the_latest_event() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let calls = |args: &[&str]| -> Vec<Value> {
        let out = ws.ok(&[&["calls", "--format", "json"], args].concat());
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    };
    let report: Value = serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-"])).unwrap();
    let latest = granttrail_grants::timestamp::parse(report["scope"]["as_of"].as_str().unwrap()).unwrap();
    let all = calls(&[]);
    let time = |c: &Value| granttrail_grants::timestamp::parse(c["event_time"].as_str().unwrap()).unwrap();

    let last_hour = calls(&["--since", "60m"]);
    let expected: Vec<&Value> = all.iter().filter(|c| time(c) >= latest - 3_600).collect();
    assert_eq!(last_hour.iter().collect::<Vec<_>>(), expected);
    assert!(last_hour.len() < all.len(), "the example spans more than an hour");
    assert_eq!(calls(&["--since", "1h"]), last_hour);
    assert_eq!(calls(&["--until", "60m"]).len() + last_hour.len(), all.len());

    let day = &report["scope"]["as_of"].as_str().unwrap()[..10];
    assert_eq!(calls(&["--since", day]), calls(&["--since", &format!("{day}T00:00:00Z")]));
    ws.ok(&["grants", "--active-at", day]);
    ws.ok(&["findings", "--since", "30d", "--as-of", day]);

    for (args, bad) in [
        (&["calls", "--since", "30x"][..], "\"30x\""),
        (&["findings", "--since=-3d"][..], "\"-3d\""),
        (&["report", "--format", "json", "-o", "-", "--until", "3.5h"][..], "\"3.5h\""),
        (&["grants", "--active-at", "30d"][..], "\"30d\""),
    ] {
        let out = ws.run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(&format!("{bad} is not a time")), "{args:?}: {err}");
        assert!(err.contains("2024-05-01"), "the message shows the forms it takes: {err}");
    }
}

#[test]
fn a_database_that_cannot_be_opened_is_explained_once() {
    let ws = Workspace::new();
    let not_a_database = ws.path("notes.db");
    std::fs::write(&not_a_database, "meeting notes, not SQLite\n").unwrap();
    let missing_folder = ws.path("no/such/folder/granttrail.db");
    for (db, cause) in
        [(&not_a_database, "file is not a database"), (&missing_folder, "unable to open database file")]
    {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_granttrail"))
            .arg("--db")
            .arg(db)
            .args(["ingest", &example()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.matches(cause).count(), 1, "{err}");
        assert!(err.contains(&db.display().to_string()), "names the file: {err}");
        assert!(!err.contains("Error code"), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(&not_a_database).unwrap(),
        "meeting notes, not SQLite\n",
        "left alone"
    );
}

/// `aws cloudtrail lookup-events > events.json` in Windows PowerShell writes UTF-16 with a
/// byte-order mark: the file reads as its UTF-8 twin does.
#[test]
fn a_utf16_lookup_events_file_reads_as_its_utf8_twin() {
    let logs = fixtures().join("scenarios/T13_delegation_chain/logs/1.json");
    let records: Value = serde_json::from_str(&std::fs::read_to_string(logs).unwrap()).unwrap();
    let events: Vec<Value> = records["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::json!({"EventId": r["eventID"], "CloudTrailEvent": r.to_string()}))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "Events": events })).unwrap();

    let utf8 = Workspace::new();
    let utf8_file = utf8.path("events.json");
    std::fs::write(&utf8_file, &text).unwrap();
    utf8.ok(&["ingest", "-q", utf8_file.to_str().unwrap()]);

    let utf16 = Workspace::new();
    let utf16_file = utf16.path("events.json");
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&utf16_file, bytes).unwrap();
    utf16.ok(&["ingest", "-q", utf16_file.to_str().unwrap()]);

    assert!(!utf8.grants_json().as_array().unwrap().is_empty());
    assert_eq!(utf16.grants_json(), utf8.grants_json());
    assert_eq!(utf16.ok(&["calls", "--format", "json"]), utf8.ok(&["calls", "--format", "json"]));
}

/// `import key-last-usage`: KMS's record of a key's last use against the logs (GT105), and the
/// last use per key in the report.
#[test]
fn kms_last_usage_the_logs_do_not_hold_is_gt105() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &example()]);
    let calls: Vec<Value> = serde_json::from_str(&ws.ok(&["calls", "--format", "json"])).unwrap();
    let logged = calls.iter().rev().find(|c| c["event_name"] == "Decrypt" && c["side"] == "key").unwrap();
    let key = logged["key_arn"].as_str().unwrap();
    let key_id = key.rsplit('/').next().unwrap();
    let answer = |event_id: &str, at: &str| {
        serde_json::json!({
            "KeyId": key_id,
            "KeyCreationDate": "2024-01-01T00:00:00+00:00",
            "TrackingStartDate": "2024-01-01T00:00:00+00:00",
            "KeyLastUsage": {"CloudTrailEventId": event_id, "KmsRequestId": "r-1", "Operation": "Decrypt", "Timestamp": at},
        })
        .to_string()
    };
    let import = |text: String| {
        let file = ws.path("last-usage.json");
        std::fs::write(&file, text).unwrap();
        ws.run(&["import", "key-last-usage", file.to_str().unwrap(), "--key", key, "--at", "2024-06-01"])
    };
    let gt105 = || -> Vec<Value> {
        let found: Vec<Value> = serde_json::from_str(&ws.ok(&["findings", "--format", "json"])).unwrap();
        found.into_iter().filter(|f| f["rule_id"] == "GT105").collect()
    };
    assert!(gt105().is_empty());

    let at = logged["event_time"].as_str().unwrap();
    assert!(import(answer(logged["event_id"].as_str().unwrap(), at)).status.success());
    assert!(gt105().is_empty(), "KMS's last use is in the logs");
    let report: Value = serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-"])).unwrap();
    let entry = report["keys"].as_array().unwrap().iter().find(|k| k["key_arn"] == key).unwrap();
    assert_eq!(entry["kms_last_use"]["in_logs"], true, "{entry:#}");

    assert!(import(answer("00000000-0000-0000-0000-00000000dead", "2024-05-31T23:00:00Z")).status.success());
    let found = gt105();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["key_arn"], key);
    assert!(found[0]["detail"].as_str().unwrap().contains("00000000-0000-0000-0000-00000000dead"));
    assert_eq!(found[0]["severity"], "medium");
    let markdown = ws.ok(&["report", "--format", "md", "-o", "-"]);
    assert!(markdown.contains("2024-05-31 23:00:00 Decrypt, not in the logs"), "{markdown}");

    let wrong_key = import(answer("x", at).replace(key_id, "ffffffff-0000-0000-0000-000000000000"));
    assert!(!wrong_key.status.success());
    assert!(stderr(&wrong_key).contains("not --key"), "{}", stderr(&wrong_key));
    let not_it = import(r#"{"Grants": []}"#.to_string());
    assert!(!not_it.status.success());
    assert!(stderr(&not_it).contains("last-usage.json") && stderr(&not_it).contains("get-key-last-usage"));
}

/// Two different records with one eventID (an edited documentation example, or a forged file):
/// both are kept, ingest names them, the grant shows the collision, and the result does not
/// depend on which file came first. The same record twice stays a duplicate.
#[test]
fn an_event_id_collision_is_kept_reported_and_order_independent() {
    let logs = fixtures().join("scenarios/T27_grantee_retires_its_own_grant/logs/1.json");
    let records: Value = serde_json::from_str(&std::fs::read_to_string(logs).unwrap()).unwrap();
    let records = records["Records"].as_array().unwrap();
    let create = records.iter().find(|r| r["eventName"] == "CreateGrant").unwrap().clone();
    let grant_id = create["responseElements"]["grantId"].as_str().unwrap().to_string();
    let mut retire = records
        .iter()
        .find(|r| {
            r["eventName"] == "RetireGrant" && r["errorCode"].is_null() && r.to_string().contains(&grant_id)
        })
        .unwrap()
        .clone();
    let shared_id = create["eventID"].clone();
    retire["eventID"] = shared_id.clone();

    let run = |first: &Value, second: &Value| {
        let ws = Workspace::new();
        let mut errs = String::new();
        for (name, record) in [("a.json", first), ("b.json", second)] {
            let file = ws.path(name);
            std::fs::write(&file, serde_json::json!({ "Records": [record] }).to_string()).unwrap();
            let out = ws.run(&["ingest", "-q", file.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
            errs.push_str(&stderr(&out));
        }
        let grants = ws.grants_json();
        let grant = grants.as_array().unwrap().iter().find(|g| g["grant_id"] == grant_id.as_str()).cloned();
        (grant, ws.ok(&["calls", "--format", "json"]), errs)
    };
    let (one, calls_one, warned) = run(&create, &retire);
    let (other, calls_other, _) = run(&retire, &create);
    let grant = one.clone().expect("the grant exists, whichever record came first");
    assert_eq!(one, other, "the same grant whichever record came first");
    assert_eq!(calls_one, calls_other);
    assert_eq!(grant["state"], "retired");
    assert_eq!(grant["creation_seen"], true, "the CreateGrant is not hidden by the other record");
    assert!(
        grant["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "event_id_collision" && a["event_id"] == shared_id),
        "{grant:#}"
    );
    let id = shared_id.as_str().unwrap();
    assert!(warned.contains(&format!("eventID {id} is also carried by a different record")), "{warned}");
    // The call's label says so too.
    let calls: Value = serde_json::from_str(&calls_one).unwrap();
    let call = calls.as_array().unwrap().iter().find(|c| c["event_id"] == shared_id).unwrap();
    assert!(call["flags"].as_array().unwrap().contains(&Value::from("event_id_collision")), "{call:#}");
    assert!(
        call["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["text"].as_str().unwrap().contains("same eventID"))
    );
    assert!(warned.contains("a.json") && warned.contains("b.json"), "names both objects: {warned}");

    // `granttrail event` shows the other record too.
    let ws = Workspace::new();
    for (name, record) in [("a.json", &create), ("b.json", &retire)] {
        let file = ws.path(name);
        std::fs::write(&file, serde_json::json!({ "Records": [record] }).to_string()).unwrap();
        ws.ok(&["ingest", "-q", file.to_str().unwrap()]);
    }
    let shown = ws.ok(&["event", id]);
    assert!(shown.contains("same eventID") && shown.contains("a different record: RetireGrant"), "{shown}");

    let (same, _, quiet) = run(&create, &create);
    assert!(quiet.is_empty(), "a duplicate is not a collision: {quiet}");
    assert!(same.unwrap()["anomalies"].as_array().unwrap().is_empty());
}
