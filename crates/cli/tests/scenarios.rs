//! The classification scenarios of grant-semantics.md §6 (fixtures/scenarios/*), through the
//! real binary: the labels, evidence and grants each expects, the findings it must and must not
//! raise (findings.json), the same result whatever the order files and imports arrive in, and
//! the same after a rebuild.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Workspace, fixtures, read_json, scenario_imports as imports};
use serde_json::Value;

/// `granttrail [--config dir/config.toml] args...`
fn run(ws: &Workspace, dir: &Path, args: &[&str]) -> String {
    let config = dir.join("config.toml");
    let mut full: Vec<&str> = Vec::new();
    let config_text = config.to_str().unwrap().to_string();
    if config.exists() {
        full.extend(["--config", &config_text]);
    }
    full.extend(args);
    ws.ok(&full)
}

/// The runs of `granttrail findings` a scenario asks for (findings.json): at each `as_of`, the
/// findings (`rule_id`, and `grant_id` when given) that must be `present` and `absent`. An
/// absent entry without a grant id means the rule must not fire on any grant.
fn findings_checks(dir: &Path) -> Vec<Value> {
    let path = dir.join("findings.json");
    if path.exists() { read_json(&path).as_array().unwrap().clone() } else { Vec::new() }
}

/// Calls, grants, and the findings at each `as_of` of findings.json.
fn state(ws: &Workspace, dir: &Path) -> (Value, Value, Vec<Value>) {
    let calls = serde_json::from_str(&run(ws, dir, &["calls", "--format", "json"])).unwrap();
    let grants = serde_json::from_str(&run(ws, dir, &["grants", "--format", "json"])).unwrap();
    let findings = findings_checks(dir)
        .iter()
        .map(|c| {
            let as_of = c["as_of"].as_str().unwrap();
            serde_json::from_str(&run(ws, dir, &["findings", "--format", "json", "--as-of", as_of])).unwrap()
        })
        .collect();
    (calls, grants, findings)
}

fn check_findings(name: &str, dir: &Path, found: &[Value]) {
    for (check, found) in findings_checks(dir).iter().zip(found) {
        let listed: Vec<(&str, &str)> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["rule_id"].as_str().unwrap(), f["grant_id"].as_str().unwrap()))
            .collect();
        let matches = |want: &Value| {
            let rule = want["rule_id"].as_str().unwrap();
            listed.iter().any(|(r, g)| *r == rule && want["grant_id"].as_str().is_none_or(|w| w == *g))
        };
        let as_of = &check["as_of"];
        for want in check["present"].as_array().unwrap() {
            assert!(matches(want), "{name}: finding {want} missing as of {as_of}; found {listed:?}");
        }
        for unwanted in check["absent"].as_array().unwrap() {
            assert!(
                !matches(unwanted),
                "{name}: finding {unwanted} must not appear as of {as_of}; found {listed:?}"
            );
        }
    }
}

fn check(name: &str) {
    let dir = fixtures().join("scenarios").join(name);
    let expected = read_json(&dir.join("expected.json"));
    let logs = dir.join("logs");

    let ws = Workspace::new();
    run(&ws, &dir, &["ingest", "-q", logs.to_str().unwrap()]);
    imports(&ws, &dir);
    let (calls, grants, findings) = state(&ws, &dir);
    check_findings(name, &dir, &findings);

    granttrail_testkit::scenario::check_expected(
        name,
        &expected,
        calls.as_array().unwrap(),
        grants.as_array().unwrap(),
    );

    // Imports first, then the files one at a time in reverse order: the same result.
    let reverse = Workspace::new();
    imports(&reverse, &dir);
    let mut files: Vec<_> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.reverse();
    for file in &files {
        run(&reverse, &dir, &["ingest", "-q", file.to_str().unwrap()]);
    }
    assert_eq!(
        state(&reverse, &dir),
        (calls.clone(), grants.clone(), findings.clone()),
        "{name}: order changed the result"
    );

    run(&ws, &dir, &["rebuild"]);
    assert_eq!(
        state(&ws, &dir),
        (calls, grants, findings),
        "{name}: rebuild differs from incremental ingest"
    );
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => { $( #[test] #[allow(non_snake_case)] fn $name() { check(stringify!($name)); } )* };
}

scenarios!(
    T01_role_session_covered_but_not_grant_only,
    T02_out_of_order_files,
    T03_duplicate_event_id,
    T04_cross_account_twins_are_one_call,
    T05_name_retry_and_draining,
    T06_retry_without_name_leaves_a_duplicate,
    T07_retire_by_token,
    T08_failed_creates_make_no_grant,
    T09_key_by_bare_id_alias_and_arn,
    T10_alias_repointed,
    T11_cross_account_grantee_needs_no_iam,
    T12_ebs_principal_id_grantee,
    T13_delegation_chain,
    T14_delegation_beyond_the_parent_proves_a_policy,
    T15_self_grant_escalation,
    T16_policy_change_breaks_the_chain,
    T17_key_state_cycle_keeps_the_grant,
    T18_role_path_matters,
    T19_grant_to_one_session,
    T20_account_root_grantee,
    T21_encryption_context_constraints,
    T21_encryption_context_case_sensitive_setting,
    T22_no_wildcards_in_grant_operations,
    T23_reencrypt_sides,
    T24_grant_token_in_the_propagation_window,
    T25_after_revocation,
    T26_describe_key_ignores_constraints,
    T27_grantee_retires_its_own_grant,
    T28_grant_from_before_the_logs,
    T29_multi_region_replica_is_another_key,
    T30_role_deleted_and_recreated,
    T31_imported_key_material_cycle,
    T32_both_constraint_types_fail,
    T33_same_second_tie,
    T34_service_grantee,
    T35_service_principal_grant_with_source_arn,
    T36_delete_key_ends_every_grant,
    T37_dry_run_decrypt_is_not_a_use,
    T38_create_after_end,
    T39_key_policy_proves_grant_only,
    T40_key_policy_names_the_caller,
    T40b_default_key_policy_leaves_iam_open,
    T41_cross_account_denials_are_in_the_other_trail,
    T42_operations_not_logged,
    L4_imported_key_policy,
    L5_iam_snapshot_decides,
    F01_retiring_principal_in_another_account,
    F01b_retiring_principal_in_a_trusted_account,
    F03_every_operation_of_the_key,
    F03b_all_but_one_operation,
    F05b_service_grants_are_not_hand_made,
    F07_name_says_it_expired,
    F08b_logs_too_short_to_call_a_grant_unused,
    F11b_grant_ended_before_the_role_was_deleted,
    F14_denied_then_granted_by_an_administrator,
    F14b_denied_another_operation,
    F15b_used_only_in_the_draining_window,
);

#[test]
fn every_scenario_folder_has_a_test() {
    let listed = include_str!("scenarios.rs");
    for entry in std::fs::read_dir(fixtures().join("scenarios")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(listed.contains(&format!("    {name},")), "fixtures/scenarios/{name} has no test");
    }
}
