//! An account shaped like a real one: the grants AWS services make for themselves (EBS,
//! DynamoDB, Fargate, DataZone, Forecast, VPC Lattice, HealthLake, Omics, Location, Managed
//! Blockchain, Keyspaces; from the AWS documentation records in ../shared) beside hand-made risky
//! grants (fixtures/scenarios). By default no finding names a service-made grant and each risky
//! grant gets its rule; `service_grants = "report"` brings the service grants back at low
//! severity, never with advice to revoke them.
//!
//! shared/ sits beside the repository in development and CI but not in a user's clone: the test
//! then skips with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{Workspace, fixtures};
use serde_json::Value;

fn shared() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent (shared/ is not part of a user's clone)", dir.display());
        None
    }
}

/// The AWS documentation records of grants that services made.
fn service_files(shared: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared.join("realworld/awsdocs-service-grants"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    for sample in [
        "kms-creategrant-assumedrole-invokedby-datazone-awsdocs.json",
        "kms-creategrant-assumedrole-invokedby-dynamodb-awsdocs.json",
        "kms-creategrant-awsservice-fargate-awsdocs.json",
        "kms-creategrant-encryptioncontextequals-acm-vpclattice-awsdocs.json",
        "kms-creategrant-granteeprincipal-awsinternal-forecast-awsdocs.json",
        "kms-logfile-ec2-volume-grant-awsdocs-2021.json",
    ] {
        files.push(shared.join("samples").join(sample));
    }
    files
}

/// Hand-made risky grants, and the rule each must raise.
const RISKY: &[(&str, &str)] = &[
    ("F01_retiring_principal_in_another_account", "GT001"),
    ("T13_delegation_chain", "GT002"),
    ("F03_every_operation_of_the_key", "GT003"),
    ("T15_self_grant_escalation", "GT012"),
];

/// The service grants, and the grants of one scenario of hand-made ones.
fn account_with(shared: &std::path::Path, scenario: &str) -> Workspace {
    let ws = Workspace::new();
    for file in service_files(shared) {
        ws.ok(&["ingest", "-q", file.to_str().unwrap()]);
    }
    let logs = fixtures().join("scenarios").join(scenario).join("logs");
    ws.ok(&["ingest", "-q", logs.to_str().unwrap()]);
    ws
}

fn grant_ids(ws: &Workspace) -> BTreeSet<String> {
    let grants = ws.grants_json();
    grants.as_array().unwrap().iter().map(|g| g["grant_id"].as_str().unwrap().to_string()).collect()
}

/// Findings long after every record, so that age rules would fire.
fn findings(ws: &Workspace, config: Option<&str>) -> Vec<Value> {
    let mut args = Vec::new();
    if let Some(config) = config {
        args.extend(["--config", config]);
    }
    args.extend(["findings", "--format", "json", "--as-of", "2026-01-01"]);
    serde_json::from_str::<Value>(&ws.ok(&args)).unwrap().as_array().unwrap().clone()
}

#[test]
fn service_made_grants_raise_no_findings_unless_asked_and_risky_ones_keep_theirs() {
    let Some(shared) = shared() else { return };
    let services = Workspace::new();
    for file in service_files(&shared) {
        services.ok(&["ingest", "-q", file.to_str().unwrap()]);
    }
    let service_grants = grant_ids(&services);
    assert!(service_grants.len() >= 9, "{service_grants:?}");

    // One account per risky scenario: the scenarios reuse grant ids among themselves.
    for (scenario, rule) in RISKY {
        let ws = account_with(&shared, scenario);
        let risky: BTreeSet<String> = grant_ids(&ws).difference(&service_grants).cloned().collect();
        let quiet = findings(&ws, None);
        let on_service: Vec<&Value> =
            quiet.iter().filter(|f| service_grants.contains(f["grant_id"].as_str().unwrap())).collect();
        assert!(on_service.is_empty(), "{scenario}: findings on service-made grants: {on_service:#?}");
        assert!(
            quiet.iter().any(|f| f["rule_id"] == *rule && risky.contains(f["grant_id"].as_str().unwrap())),
            "{scenario}: {rule} missing on {risky:?}: {quiet:#?}"
        );
    }

    let ws = account_with(&shared, RISKY[1].0);
    let quiet = findings(&ws, None);
    // The report lists the same findings, measured from the same time.
    let report: Value =
        serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-", "--as-of", "2026-01-01"]))
            .unwrap();
    let ids = |listing: &[Value]| -> BTreeSet<String> {
        listing.iter().map(|f| f["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&quiet), ids(report["findings"].as_array().unwrap()));
    let config = ws.path("granttrail.toml");
    std::fs::write(&config, "[findings]\nservice_grants = \"report\"\n").unwrap();
    let inventory = findings(&ws, Some(config.to_str().unwrap()));
    let on_service: Vec<&Value> =
        inventory.iter().filter(|f| service_grants.contains(f["grant_id"].as_str().unwrap())).collect();
    let rules: BTreeSet<&str> = on_service.iter().map(|f| f["rule_id"].as_str().unwrap()).collect();
    assert!(rules.contains("GT006") && rules.contains("GT002"), "{rules:?}");
    for f in &on_service {
        assert_eq!(f["severity"], "low", "{f:#}");
        let remediation = f["remediation"].as_str().unwrap();
        assert!(remediation.starts_with("do not revoke"), "{remediation}");
    }
    // Reporting them changes nothing else.
    let others = |listing: &[Value]| -> Vec<Value> {
        listing
            .iter()
            .filter(|f| !service_grants.contains(f["grant_id"].as_str().unwrap()))
            .cloned()
            .collect()
    };
    assert_eq!(others(&inventory), others(&quiet));
}

/// The Keyspaces guide's CreateGrant names a key in a 13-digit account, the Fargate one in
/// `account-id`: ASFF cannot hold a finding on them, and says so, but the batch keeps every
/// other finding.
#[test]
fn asff_leaves_out_only_the_finding_it_cannot_express() {
    let Some(shared) = shared() else { return };
    let ws = account_with(&shared, "T13_delegation_chain");
    let config = ws.path("granttrail.toml");
    std::fs::write(&config, "[findings]\nservice_grants = \"report\"\n").unwrap();
    let config = config.to_str().unwrap();
    let all = findings(&ws, Some(config));
    let account = |f: &Value| f["key_arn"].as_str().unwrap().split(':').nth(4).unwrap().to_string();
    let odd: Vec<&Value> = all
        .iter()
        .filter(|f| account(f).len() != 12 || !account(f).bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(odd.iter().any(|f| account(f) == "5555555555555"), "a finding on the Keyspaces key");

    let out = ws.run(&["--config", config, "findings", "--format", "asff", "--as-of", "2026-01-01"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let batch: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(batch.as_array().unwrap().len(), all.len() - odd.len());
    let err = common::stderr(&out);
    for f in odd {
        let id = f["id"].as_str().unwrap();
        assert!(err.contains(&format!("finding {id} ")), "{err}");
        assert!(!batch.as_array().unwrap().iter().any(|a| a["Id"] == id));
    }
    assert!(err.contains("12-digit account"), "{err}");
}
