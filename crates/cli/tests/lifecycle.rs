//! One scenario per lifecycle rule (fixtures/lifecycle/*), through the real binary. Each is
//! ingested in file-name order and again one file at a time in reverse order; both runs and a
//! rebuild must give the grants its expected.json lists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Workspace, fixtures};
use serde_json::Value;

fn check(name: &str) {
    let dir = fixtures().join("lifecycle").join(name);
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let logs = dir.join("logs");

    let forward = Workspace::new();
    forward.ok(&["ingest", "-q", logs.to_str().unwrap()]);
    let grants = forward.grants_json();
    assert_matches(name, &grants, &expected);

    let mut files: Vec<_> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.reverse();
    let reverse = Workspace::new();
    for file in &files {
        reverse.ok(&["ingest", "-q", file.to_str().unwrap()]);
    }
    assert_eq!(reverse.grants_json(), grants, "{name}: reverse file order changed the grants");

    forward.ok(&["rebuild"]);
    assert_eq!(forward.grants_json(), grants, "{name}: rebuild differs from incremental ingest");
}

/// Every field named in `expected` must equal the actual grant's, grant by grant.
fn assert_matches(name: &str, actual: &Value, expected: &[Value]) {
    let actual = actual.as_array().unwrap();
    assert_eq!(actual.len(), expected.len(), "{name}: grant count; got {actual:#?}");
    for (a, e) in actual.iter().zip(expected) {
        for (field, want) in e.as_object().unwrap() {
            assert_eq!(&a[field], want, "{name}: field {field} of grant {}", a["grant_id"]);
        }
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => { $( #[test] fn $name() { check(stringify!($name)); } )* };
}

scenarios!(
    out_of_order_end_before_create,
    duplicate_event_id,
    cross_account_twin_merge,
    name_retry_collapses,
    retry_without_name_stays_distinct,
    failed_and_dry_run_creates_make_no_grant,
    delete_key_ends_grants_disable_does_not,
    delete_key_service_event,
    retire_by_token_null_request_parameters,
    key_named_by_alias_or_bare_id,
    create_predates_logs,
    create_after_end_is_not_a_resurrection,
);

#[test]
fn every_scenario_folder_has_a_test() {
    let listed = include_str!("lifecycle.rs");
    for entry in std::fs::read_dir(fixtures().join("lifecycle")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(listed.contains(&format!("    {name},")), "fixtures/lifecycle/{name} has no test");
    }
}
