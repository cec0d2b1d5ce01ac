//! `granttrail findings --format sarif|asff|ocsf` on the bundled example (with list-grants
//! snapshots, so reconciliation findings and their evidence are included), validated by the
//! official SARIF 2.1.0 schema, botocore's Security Hub model and the OCSF models; and
//! `granttrail import list-grants` through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Workspace, fixtures, stderr, stdout, tool};
use serde_json::{Value, json};

const AS_OF: &str = "2024-05-02T00:00:00Z";
const AUDIT_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const PARTNER_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/5e4d3c2b-1a09-8f7e-6d5c-4b3a29180706";

fn listing(name: &str) -> String {
    fixtures().join("list-grants").join(name).to_str().unwrap().to_string()
}

/// The example, with a listing of each key: two grants never seen created, one changed grant.
fn example_with_listings() -> Workspace {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let at = "2024-05-01T12:00:00Z";
    ws.ok(&["import", "list-grants", &listing("audit-key-two-pages.json"), "--key", AUDIT_KEY, "--at", at]);
    ws.ok(&["import", "list-grants", &listing("partner-key-changed.json"), "--key", PARTNER_KEY, "--at", at]);
    ws
}

fn findings(ws: &Workspace, format: &str) -> Value {
    serde_json::from_str(&ws.ok(&["findings", "--as-of", AS_OF, "--format", format])).unwrap()
}

/// Runs the validator on `doc`; Ok when valid, Err with its report when not.
fn validate(python: &Path, args: &[&str], doc: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats/validate.py");
    let out = Command::new(python).arg(script).args(args).arg(&file).output().unwrap();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(stdout(&out)),
        _ => panic!("the validator failed to run: {}", stderr(&out)),
    }
}

fn python() -> Option<PathBuf> {
    tool("formats/bin/python")
}

#[test]
fn sarif_is_valid_against_the_sarif_2_1_0_schema() {
    let ws = example_with_listings();
    let sarif = findings(&ws, "sarif");
    let plain = findings(&ws, "json");

    // The mapping, checked here whatever tools are installed.
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "granttrail");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rules: Vec<&str> =
        driver["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in ["GT001", "GT005", "GT101", "GT102", "GT103", "GT104"] {
        assert!(rules.contains(&id), "{id} has a reporting descriptor: {rules:?}");
    }
    for r in driver["rules"].as_array().unwrap() {
        assert!(r["help"]["text"].as_str().unwrap().contains("Remediation:"), "{r}");
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), plain.as_array().unwrap().len());
    for (result, finding) in results.iter().zip(plain.as_array().unwrap()) {
        assert_eq!(result["ruleId"], finding["rule_id"]);
        assert_eq!(rules[result["ruleIndex"].as_u64().unwrap() as usize], finding["rule_id"]);
        assert_eq!(result["partialFingerprints"]["granttrailFindingId/v1"], finding["id"]);
        let level = match finding["severity"].as_str().unwrap() {
            "high" => "error",
            "medium" => "warning",
            _ => "note",
        };
        assert_eq!(result["level"], level);
        let location = &result["locations"][0]["logicalLocations"][0];
        assert_eq!(location["name"], finding["grant_id"]);
        let index = location["index"].as_u64().unwrap() as usize;
        let grant = &run["logicalLocations"][index];
        assert_eq!(grant["name"], finding["grant_id"]);
        let key = &run["logicalLocations"][grant["parentIndex"].as_u64().unwrap() as usize];
        assert_eq!(key["fullyQualifiedName"], finding["key_arn"]);
        assert_eq!(result["properties"]["evidence"], finding["evidence"]);
    }
    let gt101 = results.iter().find(|r| r["ruleId"] == "GT101").unwrap();
    let uri = gt101["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
    assert!(uri.starts_with("file:///") && uri.ends_with("audit-key-two-pages.json"), "{uri}");
    let gt001 = results.iter().find(|r| r["ruleId"] == "GT001").unwrap();
    let uri = gt001["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
    assert!(uri.ends_with(".json.gz"), "the CloudTrail object of the event: {uri}");

    let (Some(python), Some(schema)) = (python(), tool("sarif/sarif-2.1.0-rtm.5.json")) else { return };
    let schema = schema.to_str().unwrap();
    validate(&python, &["sarif", schema], &sarif).unwrap_or_else(|e| panic!("invalid SARIF:\n{e}"));
    // The validation has teeth: broken documents fail.
    let mut broken = sarif.clone();
    broken.as_object_mut().unwrap().remove("version");
    assert!(validate(&python, &["sarif", schema], &broken).is_err());
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = json!("fatal");
    assert!(validate(&python, &["sarif", schema], &broken).is_err());
    let mut broken = sarif;
    // (-1 means "no index" in SARIF; -2 is out of range.)
    broken["runs"][0]["results"][0]["locations"][0]["logicalLocations"][0]["index"] = json!(-2);
    assert!(validate(&python, &["sarif", schema], &broken).is_err());
}

#[test]
fn asff_is_accepted_by_the_security_hub_model() {
    let ws = example_with_listings();
    let asff = findings(&ws, "asff");
    let plain = findings(&ws, "json");
    let list = asff.as_array().unwrap();
    assert_eq!(list.len(), plain.as_array().unwrap().len());
    for (f, p) in list.iter().zip(plain.as_array().unwrap()) {
        assert_eq!(f["Id"], p["id"]);
        assert_eq!(f["SchemaVersion"], "2018-10-08");
        assert_eq!(f["AwsAccountId"], "111122223333");
        assert_eq!(
            f["ProductArn"],
            "arn:aws:securityhub:us-east-1:111122223333:product/111122223333/default"
        );
        let label = match p["severity"].as_str().unwrap() {
            "info" => "INFORMATIONAL".to_string(),
            other => other.to_uppercase(),
        };
        assert_eq!(f["Severity"]["Label"], label);
        assert_eq!(f["Resources"][0]["Type"], "AwsKmsKey");
        assert_eq!(f["Resources"][0]["Id"], p["key_arn"]);
        assert_eq!(f["UpdatedAt"], AS_OF);
        assert_eq!(f["Remediation"]["Recommendation"]["Text"], p["remediation"]);
    }
    let gt001 = list.iter().find(|f| f["GeneratorId"] == "granttrail/GT001").unwrap();
    assert!(gt001["ProductFields"]["granttrail/Evidence/1/Object"].as_str().unwrap().ends_with(".json.gz"));

    let Some(python) = python() else { return };
    validate(&python, &["asff"], &asff).unwrap_or_else(|e| panic!("invalid ASFF:\n{e}"));
    for (what, breaks) in [
        (
            "no Title",
            Box::new(|f: &mut Value| drop(f.as_object_mut().unwrap().remove("Title")))
                as Box<dyn Fn(&mut Value)>,
        ),
        ("a long Description", Box::new(|f: &mut Value| f["Description"] = json!("x".repeat(1025)))),
        ("an unknown label", Box::new(|f: &mut Value| f["Severity"]["Label"] = json!("SEVERE"))),
        ("an unknown field", Box::new(|f: &mut Value| f["Grant"] = json!("x"))),
        ("a number for a string", Box::new(|f: &mut Value| f["AwsAccountId"] = json!(111122223333u64))),
        ("a blank Id", Box::new(|f: &mut Value| f["Id"] = json!(" "))),
    ] {
        let mut broken = asff.clone();
        breaks(&mut broken[0]);
        assert!(validate(&python, &["asff"], &broken).is_err(), "{what} must be refused");
    }
}

#[test]
fn ocsf_is_a_valid_detection_finding() {
    let ws = example_with_listings();
    let ocsf = findings(&ws, "ocsf");
    let plain = findings(&ws, "json");
    let events = ocsf.as_array().unwrap();
    assert_eq!(events.len(), plain.as_array().unwrap().len());
    // The class's required attributes and enumerations (OCSF 1.5.0, Detection Finding).
    let severity = |s: &str| match s {
        "high" => (4, "High"),
        "medium" => (3, "Medium"),
        "low" => (2, "Low"),
        _ => (1, "Informational"),
    };
    let ms = |t: &str| 1000 * granttrail_grants::timestamp::parse(t).unwrap();
    for (e, p) in events.iter().zip(plain.as_array().unwrap()) {
        for attribute in [
            "activity_id",
            "category_uid",
            "class_uid",
            "type_uid",
            "severity_id",
            "time",
            "metadata",
            "finding_info",
        ] {
            assert!(!e[attribute].is_null(), "required {attribute} missing: {e}");
        }
        assert_eq!((e["class_uid"].as_u64(), e["category_uid"].as_u64()), (Some(2004), Some(2)));
        assert_eq!((e["activity_id"].as_u64(), e["type_uid"].as_u64()), (Some(1), Some(200_401)));
        let (id, caption) = severity(p["severity"].as_str().unwrap());
        assert_eq!((e["severity_id"].as_u64(), e["severity"].as_str()), (Some(id), Some(caption)));
        assert_eq!((e["status_id"].as_u64(), e["status"].as_str()), (Some(1), Some("New")));
        assert_eq!(e["time"].as_i64(), Some(ms(AS_OF)));
        assert_eq!(e["metadata"]["version"], "1.5.0");
        let product = &e["metadata"]["product"];
        assert_eq!(
            (product["name"].as_str(), product["vendor_name"].as_str()),
            (Some("granttrail"), Some("granttrail"))
        );
        assert_eq!(product["version"], env!("CARGO_PKG_VERSION"));
        let info = &e["finding_info"];
        assert_eq!(info["uid"], p["id"]);
        assert_eq!(info["title"], p["title"]);
        assert!(info["desc"].as_str().unwrap().starts_with(p["detail"].as_str().unwrap()));
        assert!(
            info["types"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str().unwrap().contains(p["rule_id"].as_str().unwrap()))
        );
        assert_eq!(e["resources"][0]["uid"], p["key_arn"]);
        assert_eq!(e["resources"][1]["uid"], p["grant_id"]);
        assert_eq!(e["cloud"]["account"]["uid"], "111122223333");
        let evidence: Vec<&Value> = e["evidences"].as_array().unwrap().iter().map(|x| &x["data"]).collect();
        assert_eq!(evidence, p["evidence"].as_array().unwrap().iter().collect::<Vec<_>>());
    }

    let Some(python) = python() else { return };
    validate(&python, &["ocsf"], &ocsf).unwrap_or_else(|e| panic!("invalid OCSF:\n{e}"));
    for (what, breaks) in [
        (
            "no finding uid",
            Box::new(|e: &mut Value| drop(e["finding_info"].as_object_mut().unwrap().remove("uid")))
                as Box<dyn Fn(&mut Value)>,
        ),
        ("an unknown severity", Box::new(|e: &mut Value| e["severity_id"] = json!(7))),
        ("another class", Box::new(|e: &mut Value| e["class_uid"] = json!(2001))),
        ("a wrong type_uid", Box::new(|e: &mut Value| e["type_uid"] = json!(200402))),
        ("an unknown attribute", Box::new(|e: &mut Value| e["grant"] = json!("x"))),
        ("seconds for milliseconds", Box::new(|e: &mut Value| e["time"] = json!(1_714_608_000))),
    ] {
        let mut broken = ocsf.clone();
        breaks(&mut broken[0]);
        assert!(validate(&python, &["ocsf"], &broken).is_err(), "{what} must be refused");
    }
}

#[test]
fn fail_on_works_for_every_format() {
    let ws = example_with_listings();
    for format in ["table", "json", "jsonl", "sarif", "asff", "ocsf"] {
        let gated = ws.run(&["findings", "--as-of", AS_OF, "--format", format, "--fail-on", "high"]);
        assert_eq!(gated.status.code(), Some(3), "{format}");
        assert!(!stdout(&gated).is_empty(), "{format}: the findings are still written");
        let passed = ws.run(&["findings", "--as-of", AS_OF, "--format", format, "--severity", "high"]);
        assert_eq!(passed.status.code(), Some(0), "{format}");
        if !["table", "jsonl"].contains(&format) {
            serde_json::from_str::<Value>(&stdout(&gated)).unwrap();
        }
    }
    // Nothing at or above the threshold: success, and an empty but valid document.
    let none = ws.run(&[
        "findings",
        "--as-of",
        AS_OF,
        "--format",
        "sarif",
        "--since",
        "2030-01-01T00:00:00Z",
        "--fail-on",
        "info",
    ]);
    assert_eq!(none.status.code(), Some(0));
    let doc: Value = serde_json::from_str(&stdout(&none)).unwrap();
    assert_eq!(doc["runs"][0]["results"], json!([]));
}

fn reconciliation(listing_file: &str, key: &str) -> Vec<(String, String)> {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let out = ws.ok(&[
        "import",
        "list-grants",
        &listing(listing_file),
        "--key",
        key,
        "--at",
        "2024-05-01T12:00:00Z",
    ]);
    assert!(out.contains("imported"), "{out}");
    findings(&ws, "json")
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule_id"].as_str().unwrap().starts_with("GT1"))
        .map(|f| (f["rule_id"].as_str().unwrap().to_string(), f["detail"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn list_grants_is_reconciled_with_the_rebuilt_history() {
    // The partner grant exactly as logged: nothing to report (the close variant).
    assert_eq!(reconciliation("partner-key-matches.json", PARTNER_KEY), vec![]);

    // Two pages: a hand-made grant and an RDS grant from before the logs.
    let unseen = reconciliation("audit-key-two-pages.json", AUDIT_KEY);
    let rules: Vec<&str> = unseen.iter().map(|(rule, _)| rule.as_str()).collect();
    assert_eq!(rules, vec!["GT101", "GT104"], "the RDS grant is only information: {unseen:?}");
    assert!(unseen[0].1.contains("OpsBreakGlass") && unseen[0].1.contains("2023-11-02T16:20:41Z"));
    assert!(unseen[1].1.contains("rds.us-east-1.amazonaws.com"));

    let changed = reconciliation("partner-key-changed.json", PARTNER_KEY);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, "GT103");
    assert!(changed[0].1.contains(
        "operations: logged Decrypt,DescribeKey, listed Decrypt,DescribeKey,Encrypt,GenerateDataKey"
    ));
    assert!(changed[0].1.contains("retiring principal: logged none"));

    let gone = reconciliation("partner-key-empty.json", PARTNER_KEY);
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0].0, "GT102");
}

#[test]
fn the_latest_listing_counts_and_evidence_names_it() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let import = |file: &str, at: &str| {
        ws.ok(&["import", "list-grants", &listing(file), "--key", PARTNER_KEY, "--at", at]);
    };
    import("partner-key-empty.json", "2024-05-01T12:00:00Z");
    import("partner-key-matches.json", "2024-05-01T13:00:00Z");
    let rules = |ws: &Workspace| -> Vec<String> {
        findings(ws, "json")
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!rules(&ws).iter().any(|r| r.starts_with("GT1")));
    import("partner-key-changed.json", "2024-05-01T14:00:00Z");
    let found = findings(&ws, "json");
    let gt103 = found.as_array().unwrap().iter().find(|f| f["rule_id"] == "GT103").unwrap();
    let evidence = gt103["evidence"].as_array().unwrap();
    assert!(
        evidence
            .iter()
            .any(|e| e["event_name"] == "CreateGrant" && e["object"].as_str().unwrap().ends_with(".json.gz"))
    );
    let snapshot = evidence.iter().find(|e| e["listed_at"].is_string()).unwrap();
    assert_eq!(snapshot["listed_at"], "2024-05-01T14:00:00Z");
    assert!(snapshot["object"].as_str().unwrap().ends_with("partner-key-changed.json"));

    // Disabled like any rule.
    let config = ws.path("granttrail.toml");
    std::fs::write(&config, "[findings]\ndisabled_rules = [\"GT103\"]\n").unwrap();
    let out = ws.ok(&["--config", config.to_str().unwrap(), "findings", "--format", "json"]);
    assert!(!out.contains("\"GT103\""));
}

#[test]
fn bad_listings_are_refused_with_the_file_named() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let wrong_key =
        ws.run(&["import", "list-grants", &listing("partner-key-matches.json"), "--key", AUDIT_KEY]);
    assert_eq!(wrong_key.status.code(), Some(1));
    assert!(
        stderr(&wrong_key).contains("partner-key-matches.json")
            && stderr(&wrong_key).contains("not on --key")
    );
    let file = ws.path("policy.json");
    std::fs::write(&file, r#"{"Policy": "{}"}"#).unwrap();
    let not_grants = ws.run(&["import", "list-grants", file.to_str().unwrap(), "--key", AUDIT_KEY]);
    assert_eq!(not_grants.status.code(), Some(1));
    assert!(
        stderr(&not_grants).contains("policy.json") && stderr(&not_grants).contains("no \"Grants\" list")
    );
    let alias = ws.run(&["import", "list-grants", file.to_str().unwrap(), "--key", "alias/app"]);
    assert!(stderr(&alias).contains("full key ARN"));

    // A truncated page alone: imported with a warning, and nothing is reported as gone.
    std::fs::write(&file, r#"{"Grants": [], "NextMarker": "m", "Truncated": true}"#).unwrap();
    let partial = ws.run(&["import", "list-grants", file.to_str().unwrap(), "--key", PARTNER_KEY]);
    assert!(partial.status.success());
    assert!(stderr(&partial).contains("truncated"));
    assert!(!ws.ok(&["findings", "--format", "json"]).contains("\"GT102\""));
}
