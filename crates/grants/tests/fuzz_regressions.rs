//! Replays fixtures/fuzz-regressions through the code each fuzz target exercises: inputs that
//! once crashed must now be handled (an `Err` is fine, a panic is not).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::PathBuf;

use granttrail_cloudtrail::{Limits, for_each_record, may_be_relevant};
use granttrail_grants::{
    Caller, IamSnapshot, KeyInputs, Policy, Settings, classify_key, fold_all, normalise, policy::Subject,
};

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz-regressions").join(target);
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "{target}: no regression inputs");
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn decode_object() {
    for data in inputs("decode_object") {
        let limits = Limits { max_object_bytes: 1 << 20, max_record_bytes: 64 << 10, max_depth: 64 };
        let _ = for_each_record(data.as_slice(), &limits, |record| {
            if may_be_relevant(record) {
                let _ = normalise(record);
            }
            Ok::<(), Infallible>(())
        });
    }
}

#[test]
fn normalise_record() {
    for data in inputs("normalise_record") {
        if let Ok(Some(event)) = normalise(&data) {
            let _ = granttrail_grants::matching::call_sides(&event);
            let _ = fold_all(std::slice::from_ref(&event));
        }
    }
}

#[test]
fn policy_documents() {
    let caller = Caller {
        arn: Some("arn:aws:sts::111122223333:assumed-role/Svc/s".into()),
        account_id: Some("111122223333".into()),
        ..Caller::default()
    };
    for data in inputs("policy_documents") {
        let Ok(text) = std::str::from_utf8(&data) else { continue };
        if let Ok(p) = Policy::parse(text) {
            let _ = p.key_policy_view(
                &Subject { caller: &caller },
                "kms:Decrypt",
                "arn:aws:kms:us-east-1:1:key/k",
            );
        }
        let _ = IamSnapshot::parse(text);
    }
}

#[test]
fn classify_events() {
    for data in inputs("classify_events") {
        let events: Vec<_> =
            data.split(|b| *b == b'\n').filter_map(|l| normalise(l).ok().flatten()).collect();
        let grants = fold_all(&events);
        for key in events.iter().filter_map(|e| e.key_arn.clone()) {
            let key_grants: Vec<_> = grants.iter().filter(|g| g.key_arn == key).cloned().collect();
            let settings = Settings::default();
            let _ = classify_key(&KeyInputs {
                key_arn: &key,
                grants: &key_grants,
                events: &events,
                policy_changes: &[],
                imported_key_policies: &[],
                imported_iam: &[],
                settings: &settings,
            });
        }
    }
}

#[test]
fn unwrap_envelope() {
    for data in inputs("unwrap_envelope") {
        let _ = granttrail_cloudtrail::envelope::unwrap_event(&data);
    }
}
