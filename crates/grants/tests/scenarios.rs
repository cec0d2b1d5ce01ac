//! The classification scenarios (fixtures/scenarios/*) through the domain alone:
//! normalise → fold → classify, with no database. crates/cli/tests/scenarios.rs runs the same
//! fixtures through the binary and its store; both must give what each `expected.json` says,
//! so a rule's behaviour is pinned apart from how it is stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use granttrail_grants::event::arn_account;
use granttrail_grants::invalidation::changes_permissions;
use granttrail_grants::{
    CallLabel, Grant, IamSnapshot, ImportedIam, ImportedKeyPolicy, KeyInputs, KmsEvent, Policy, Settings,
    classify_key, classify_keyless, fold_all, normalise, timestamp,
};
use serde_json::{Value, json};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/scenarios")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The labelling settings of the scenario's config.toml (`[labels]`), or the defaults.
fn settings(dir: &Path) -> Settings {
    let Ok(text) = std::fs::read_to_string(dir.join("config.toml")) else { return Settings::default() };
    let config: toml::Table = toml::from_str(&text).unwrap();
    match config.get("labels") {
        Some(labels) => labels.clone().try_into().unwrap(),
        None => Settings::default(),
    }
}

/// Every KMS, IAM and Organizations event of the scenario's logs, files in name order; a
/// repeated eventID is kept once, as ingest keeps the first it stores.
fn events(dir: &Path) -> Vec<KmsEvent> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for file in files {
        for record in read_json(&file)["Records"].as_array().unwrap() {
            let Ok(Some(event)) = normalise(record.to_string().as_bytes()) else { continue };
            if seen.insert(event.event_id.clone()) {
                out.push(event);
            }
        }
    }
    out
}

/// The key policies and IAM snapshots of the scenario's imports.json.
fn imports(dir: &Path) -> (Vec<(String, ImportedKeyPolicy)>, Vec<ImportedIam>) {
    let (mut policies, mut iam) = (Vec::new(), Vec::new());
    let path = dir.join("imports.json");
    if !path.exists() {
        return (policies, iam);
    }
    for step in read_json(&path).as_array().unwrap() {
        let file = dir.join(step["file"].as_str().unwrap());
        let text = std::fs::read_to_string(&file).unwrap();
        let at = timestamp::parse(step["at"].as_str().unwrap()).unwrap();
        let source = file.display().to_string();
        match step["kind"].as_str().unwrap() {
            "key-policy" => {
                let document: Value = serde_json::from_str(&text).unwrap();
                let policy = Policy::parse(document["Policy"].as_str().unwrap()).unwrap();
                let key = step["key"].as_str().unwrap().to_string();
                policies.push((key, ImportedKeyPolicy { at, policy, source }));
            }
            "iam" => {
                let document: Value = serde_json::from_str(&text).unwrap();
                let account = document["RoleDetailList"][0]["Arn"].as_str().and_then(arn_account).unwrap();
                let snapshot = IamSnapshot::parse(&text).unwrap();
                iam.push(ImportedIam { account: account.to_string(), at, snapshot, source });
            }
            other => panic!("unknown import {other}"),
        }
    }
    (policies, iam)
}

/// The grants and the labels of every call, from the events and imports alone.
fn classify(dir: &Path) -> (Vec<Grant>, Vec<CallLabel>) {
    let events = events(dir);
    let (policies, iam) = imports(dir);
    let settings = settings(dir);
    let grants = fold_all(&events);
    let policy_changes: Vec<KmsEvent> = events.iter().filter(|e| changes_permissions(e)).cloned().collect();
    let keys: BTreeSet<&str> = events
        .iter()
        .flat_map(|e| e.key_arn.iter().chain(&e.destination_key_arn))
        .map(String::as_str)
        .collect();
    let mut labels = Vec::new();
    for key in keys {
        let on_key: Vec<KmsEvent> = events.iter().filter(|e| e.is_on_key(key)).cloned().collect();
        let key_grants: Vec<Grant> = grants.iter().filter(|g| g.key_arn == key).cloned().collect();
        let key_policies: Vec<ImportedKeyPolicy> =
            policies.iter().filter(|(k, _)| k == key).map(|(_, p)| p.clone()).collect();
        let inputs = KeyInputs {
            key_arn: key,
            grants: &key_grants,
            events: &on_key,
            policy_changes: &policy_changes,
            imported_key_policies: &key_policies,
            imported_iam: &iam,
            settings: &settings,
        };
        labels.extend(classify_key(&inputs).labels);
    }
    labels.extend(classify_keyless(&events));
    (grants, labels)
}

/// A label in the fields `calls --format json` names them by.
fn call_json(l: &CallLabel) -> Value {
    json!({
        "event_id": l.event_id,
        "shared_event_id": l.shared_event_id,
        "side": l.side.as_str(),
        "key_arn": l.key_arn,
        "principal": l.principal,
        "label": l.label.as_str(),
        "evidence": l.evidence.as_str(),
        "grant_ids": l.grant_ids,
        "flags": l.flags,
    })
}

/// A grant in the fields `grants --format json` names them by.
fn grant_json(g: &Grant) -> Value {
    json!({
        "key_arn": g.key_arn,
        "grant_id": g.grant_id,
        "state": g.state.as_str(),
        "creation_seen": g.creation_seen,
        "operations": g.spec.operations,
        "name": g.spec.name,
        "created_at": g.created_at.map(timestamp::format),
        "ended_at": g.ended_at.map(timestamp::format),
        "ended_by": g.ended_by.as_ref().and_then(|a| a.principal.as_deref()),
        "create_event_ids": g.create_event_ids,
        "anomalies": g.anomalies,
    })
}

fn check(name: &str) {
    let dir = scenarios().join(name);
    let expected = read_json(&dir.join("expected.json"));
    let (grants, labels) = classify(&dir);
    let calls: Vec<Value> = labels.iter().map(call_json).collect();

    let grants: Vec<Value> = grants.iter().map(grant_json).collect();
    granttrail_testkit::scenario::check_expected(name, &expected, &calls, &grants);
}

#[test]
fn every_scenario_gives_what_it_expects_without_a_database() {
    let mut names: Vec<String> = std::fs::read_dir(scenarios())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 50, "fixtures/scenarios holds {} scenarios", names.len());
    for name in &names {
        check(name);
    }
}
