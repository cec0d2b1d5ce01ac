//! The standard formats `granttrail findings` writes besides its own JSON: SARIF 2.1.0, the
//! AWS Security Finding Format (input of Security Hub's BatchImportFindings) and the OCSF
//! Detection Finding class. Each is a plain mapping of the same findings and their evidence;
//! nothing here reads the database.

use std::collections::BTreeMap;

pub use granttrail_grants::findings::Evidence;
use granttrail_grants::findings::{self, Finding, Rule, Severity};
use granttrail_grants::reconcile;
use granttrail_grants::timestamp;
use serde_json::{Value, json};

/// A finding with its evidence resolved.
#[derive(Debug, Clone)]
pub struct Reported<'a> {
    pub finding: &'a Finding,
    pub evidence: Vec<Evidence>,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every rule granttrail has, in id order, plus any rule a finding names that is not listed.
fn all_rules(reported: &[Reported<'_>]) -> Vec<Rule> {
    let mut rules: BTreeMap<&str, Rule> = BTreeMap::new();
    for r in findings::RULES.iter().chain(reconcile::RULES.iter()) {
        rules.insert(r.id, *r);
    }
    for r in reported {
        rules.entry(r.finding.rule.id).or_insert(r.finding.rule);
    }
    rules.into_values().collect()
}

/// What to do about a rule's findings in general; each finding carries its exact command.
fn rule_help(rule: &Rule) -> String {
    let action = match rule.id {
        "GT104" => {
            "Usually none: the service retires its grant when the resource goes. If the resource the grant was made for (see its constraints) no longer exists, revoke the grant."
        }
        "GT101" => {
            "Find out who needs the grant; older logs, or the logs of other trails, regions or accounts, show who created it. If nobody needs it, revoke it."
        }
        "GT102" => {
            "The grant is already gone: ingest the logs that hold its end (other regions, accounts or trails) to complete the key's history."
        }
        "GT103" => {
            "The grant in force is the one KMS lists: check its attributes, and revoke it if its permissions are not intended."
        }
        _ => {
            "If the grant is not needed, revoke it (aws kms revoke-grant --key-id KEY_ARN --grant-id GRANT_ID) or have its retiring principal retire it; otherwise add it to an allowlist in granttrail.toml."
        }
    };
    format!("{}\n\nRemediation: {action}", rule.why)
}

/// The key ARN's partition, region and account.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some(_service), Some(region), Some(account)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!partition.is_empty()
        && !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit()))
    .then_some((partition, region, account))
}

fn key_id(key_arn: &str) -> &str {
    key_arn.rsplit_once("key/").map_or(key_arn, |(_, id)| id)
}

/// At most `max` characters, ending in `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An object's name as a URI reference: absolute paths become `file://` URIs, `s3://` and other
/// URIs keep their scheme; every character outside the unreserved set and `/` is %-encoded.
fn object_uri(source: &str) -> String {
    fn encode(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    if source.starts_with('/') {
        return format!("file://{}", encode(source));
    }
    let scheme_len = source
        .find(':')
        .filter(|&n| n > 0 && source[..n].bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)));
    match scheme_len {
        Some(n) if source[n..].starts_with("://") => {
            let rest = &source[n + 3..];
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            format!("{}://{}/{}", &source[..n], encode(host), encode(path))
        }
        Some(n) => format!("{}:{}", &source[..n], encode(&source[n + 1..])),
        None => encode(source),
    }
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning's numeric severity (`security-severity`), from ours.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// One SARIF 2.1.0 log with one run: every rule as a reporting descriptor, every finding as a
/// result located at its grant (a logical location whose parent is the key), with the events
/// and the objects they came from as related locations.
pub fn sarif(reported: &[Reported<'_>]) -> Value {
    let rules = all_rules(reported);
    let descriptors: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "shortDescription": {"text": r.title},
                "fullDescription": {"text": r.why},
                "help": {"text": rule_help(r)},
                "defaultConfiguration": {"level": sarif_level(r.severity)},
                "properties": {
                    "tags": ["security", "aws-kms", "kms-grant"],
                    "security-severity": security_severity(r.severity),
                    "granttrail-severity": r.severity.as_str(),
                },
            })
        })
        .collect();
    let rule_index: BTreeMap<&str, usize> = rules.iter().enumerate().map(|(i, r)| (r.id, i)).collect();

    // Logical locations: each key once, each grant once under its key.
    let mut logical: Vec<Value> = Vec::new();
    let mut key_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut grant_index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    // Artifacts: each object once.
    let mut artifacts: Vec<Value> = Vec::new();
    let mut artifact_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = Vec::new();
    for r in reported {
        let f = r.finding;
        let parent = if f.key_arn.is_empty() {
            None
        } else {
            Some(*key_index.entry(f.key_arn.as_str()).or_insert_with(|| {
                logical.push(json!({
                    "name": key_id(&f.key_arn),
                    "fullyQualifiedName": f.key_arn,
                    "kind": "resource",
                }));
                logical.len() - 1
            }))
        };
        let grant_name = format!("{}/grant/{}", f.key_arn, f.grant_id);
        let grant = *grant_index.entry((f.key_arn.as_str(), f.grant_id.as_str())).or_insert_with(|| {
            let mut location =
                json!({"name": f.grant_id, "fullyQualifiedName": grant_name, "kind": "object"});
            if let Some(p) = parent {
                location["parentIndex"] = json!(p);
            }
            logical.push(location);
            logical.len() - 1
        });
        let mut related = Vec::new();
        for e in &r.evidence {
            let Some(object) = &e.object else { continue };
            let uri = object_uri(object);
            let index = *artifact_index.entry(uri.clone()).or_insert_with(|| {
                artifacts.push(json!({"location": {"uri": uri}}));
                artifacts.len() - 1
            });
            let text = match (&e.event_id, &e.listed_at) {
                (Some(id), _) => format!(
                    "CloudTrail event {id} ({}, {})",
                    e.event_name.as_deref().unwrap_or("unknown event"),
                    e.event_time.as_deref().unwrap_or("unknown time")
                ),
                (None, Some(at)) => format!("aws kms list-grants output taken at {at}"),
                (None, None) => "evidence".to_string(),
            };
            related.push(json!({
                "id": related.len(),
                "physicalLocation": {"artifactLocation": {"uri": uri, "index": index}},
                "message": {"text": text},
            }));
        }
        let mut result = json!({
            "ruleId": f.rule.id,
            "ruleIndex": rule_index.get(f.rule.id).copied().unwrap_or_default(),
            "level": sarif_level(f.rule.severity),
            "message": {"text": format!("{}: {}", f.rule.title, f.detail)},
            "locations": [{"logicalLocations": [{
                "index": grant,
                "name": f.grant_id,
                "fullyQualifiedName": grant_name,
                "kind": "object",
            }]}],
            "partialFingerprints": {"granttrailFindingId/v1": f.id},
            "properties": {
                "findingId": f.id,
                "keyArn": f.key_arn,
                "grantId": f.grant_id,
                "granteePrincipal": f.grantee_principal,
                "remediation": f.remediation,
                "observedAt": f.observed_at.map(timestamp::format),
                "evidence": r.evidence,
            },
        });
        if !related.is_empty() {
            result["relatedLocations"] = Value::Array(related);
        }
        results.push(result);
    }
    let mut run = json!({
        "tool": {"driver": {
            "name": "granttrail",
            "version": VERSION,
            "semanticVersion": VERSION,
            "rules": descriptors,
        }},
        "results": results,
        "columnKind": "unicodeCodePoints",
    });
    if !logical.is_empty() {
        run["logicalLocations"] = Value::Array(logical);
    }
    if !artifacts.is_empty() {
        run["artifacts"] = Value::Array(artifacts);
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

fn asff_label(s: Severity) -> &'static str {
    match s {
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Info => "INFORMATIONAL",
    }
}

/// ASFF finding types (`namespace/category/classifier`).
fn asff_type(rule: &Rule) -> String {
    let category = match rule.id {
        "GT012" => "TTPs/Privilege Escalation",
        _ => "Software and Configuration Checks/AWS Security Best Practices",
    };
    format!("{category}/granttrail {} {}", rule.id, rule.title)
}

/// Security Hub's documented limits.
const ASFF_TITLE_MAX: usize = 256;
const ASFF_DESCRIPTION_MAX: usize = 1024;
const ASFF_RECOMMENDATION_MAX: usize = 512;
const ASFF_PRODUCT_FIELD_VALUE_MAX: usize = 2048;
const ASFF_OTHER_VALUE_MAX: usize = 1024;
/// Security Hub adds a few product fields of its own to the 50 allowed.
const ASFF_EVIDENCE_FIELDS: usize = 30;

/// An array of AWS Security Finding Format findings, usable as it is as the `--findings`
/// argument of `aws securityhub batch-import-findings` (which takes at most 100 per call).
/// The product is the account's own (`product/ACCOUNT/default`). `now` is the time of this
/// report (`UpdatedAt`).
pub fn asff(reported: &[Reported<'_>], now: i64) -> Asff {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for r in reported {
        let f = r.finding;
        let Some((partition, region, account)) = arn_parts(&f.key_arn) else {
            // One finding ASFF cannot hold must not cost the others.
            skipped.push(format!(
                "finding {} ({} on grant {}) left out of the ASFF batch: its key ARN {:?} has no partition, \
                 region and 12-digit account, which ASFF needs",
                f.id, f.rule.id, f.grant_id, f.key_arn
            ));
            continue;
        };
        let updated = timestamp::format(now);
        let created = f.observed_at.map_or_else(|| updated.clone(), timestamp::format);
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        fields.insert("granttrail/RuleId".into(), f.rule.id.into());
        fields.insert("granttrail/Severity".into(), f.rule.severity.as_str().into());
        fields.insert("granttrail/KeyArn".into(), f.key_arn.clone());
        fields.insert("granttrail/GrantId".into(), f.grant_id.clone());
        if let Some(g) = &f.grantee_principal {
            fields.insert("granttrail/GranteePrincipal".into(), g.clone());
        }
        fields.insert("granttrail/EvidenceCount".into(), r.evidence.len().to_string());
        for (i, e) in r.evidence.iter().take(ASFF_EVIDENCE_FIELDS / 2).enumerate() {
            let n = i + 1;
            match (&e.event_id, &e.listed_at) {
                (Some(id), _) => {
                    let what = [Some(id.as_str()), e.event_name.as_deref(), e.event_time.as_deref()];
                    let text: Vec<&str> = what.into_iter().flatten().collect();
                    fields.insert(format!("granttrail/Evidence/{n}/Event"), text.join(" "));
                }
                (None, Some(at)) => {
                    fields.insert(format!("granttrail/Evidence/{n}/ListGrantsAt"), at.clone());
                }
                (None, None) => {}
            }
            if let Some(object) = &e.object {
                fields.insert(format!("granttrail/Evidence/{n}/Object"), object.clone());
            }
        }
        let fields: BTreeMap<String, String> =
            fields.into_iter().map(|(k, v)| (k, truncate(&v, ASFF_PRODUCT_FIELD_VALUE_MAX))).collect();
        let mut grant_details = BTreeMap::new();
        grant_details.insert("GrantId", truncate(&f.grant_id, ASFF_OTHER_VALUE_MAX));
        if let Some(g) = &f.grantee_principal {
            grant_details.insert("GranteePrincipal", truncate(g, ASFF_OTHER_VALUE_MAX));
        }
        let mut finding = json!({
            "SchemaVersion": "2018-10-08",
            "Id": f.id,
            "ProductArn": format!("arn:{partition}:securityhub:{region}:{account}:product/{account}/default"),
            "GeneratorId": format!("granttrail/{}", f.rule.id),
            "AwsAccountId": account,
            "Region": region,
            "Types": [truncate(&asff_type(&f.rule), 128)],
            "CreatedAt": created,
            "UpdatedAt": updated,
            "Severity": {"Label": asff_label(f.rule.severity), "Original": f.rule.severity.as_str()},
            "Title": truncate(f.rule.title, ASFF_TITLE_MAX),
            "Description": truncate(&format!("{}. {}", f.detail, f.rule.why), ASFF_DESCRIPTION_MAX),
            "Remediation": {"Recommendation": {"Text": truncate(&f.remediation, ASFF_RECOMMENDATION_MAX)}},
            "ProductFields": fields,
            "ProductName": "granttrail",
            "CompanyName": "granttrail",
            "Resources": [
                {
                    "Type": "AwsKmsKey",
                    "Id": f.key_arn,
                    "Partition": partition,
                    "Region": region,
                    "Details": {"AwsKmsKey": {"KeyId": key_id(&f.key_arn), "AWSAccountId": account}},
                },
                {
                    "Type": "Other",
                    "Id": truncate(&format!("{}/grant/{}", f.key_arn, f.grant_id), 512),
                    "Partition": partition,
                    "Region": region,
                    "Details": {"Other": grant_details},
                },
            ],
            "RecordState": "ACTIVE",
            "Workflow": {"Status": "NEW"},
        });
        if let Some(t) = f.observed_at {
            finding["FirstObservedAt"] = json!(timestamp::format(t));
        }
        out.push(finding);
    }
    Asff { findings: Value::Array(out), skipped }
}

/// An ASFF batch, and why any finding was left out of it.
pub struct Asff {
    pub findings: Value,
    pub skipped: Vec<String>,
}

/// The OCSF version these events follow.
pub const OCSF_VERSION: &str = "1.5.0";

fn ocsf_severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::High => (4, "High"),
        Severity::Medium => (3, "Medium"),
        Severity::Low => (2, "Low"),
        Severity::Info => (1, "Informational"),
    }
}

/// An array of OCSF Detection Finding events (class 2004, activity Create), one per finding,
/// with the cloud profile (the key's account and region). Times are milliseconds; `now` is the
/// time of this report.
pub fn ocsf(reported: &[Reported<'_>], now: i64) -> Value {
    let events: Vec<Value> = reported
        .iter()
        .map(|r| {
            let f = r.finding;
            let (severity_id, severity) = ocsf_severity(f.rule.severity);
            let parts = arn_parts(&f.key_arn);
            let mut key = json!({
                "uid": f.key_arn,
                "name": key_id(&f.key_arn),
                "type": "AWS::KMS::Key",
            });
            let mut grant = json!({
                "uid": f.grant_id,
                "type": "AWS::KMS::Grant",
                "data": {"key_arn": f.key_arn, "grantee_principal": f.grantee_principal},
            });
            if let Some((partition, region, _)) = parts {
                for resource in [&mut key, &mut grant] {
                    resource["cloud_partition"] = json!(partition);
                    resource["region"] = json!(region);
                }
            }
            let mut observables = vec![
                json!({"name": "resources[0].uid", "type": "Resource UID", "type_id": 10, "value": f.key_arn}),
                json!({"name": "resources[1].uid", "type": "Resource UID", "type_id": 10, "value": f.grant_id}),
            ];
            if let Some(g) = &f.grantee_principal {
                observables.push(json!({
                    "name": "resources[1].data.grantee_principal", "type": "Other", "type_id": 99, "value": g,
                }));
            }
            let evidences: Vec<Value> = r
                .evidence
                .iter()
                .map(|e| {
                    let mut evidence = json!({"data": e});
                    if let Some(name) = &e.event_name {
                        evidence["api"] = json!({"operation": name});
                    }
                    evidence
                })
                .collect();
            let related: Vec<Value> = r
                .evidence
                .iter()
                .filter_map(|e| e.event_id.as_ref())
                .map(|id| json!({"uid": id, "type": "AWS CloudTrail event"}))
                .collect();
            let mut info = json!({
                "uid": f.id,
                "title": f.rule.title,
                "desc": format!("{}. {}", f.detail, f.rule.why),
                "types": [format!("granttrail {}", f.rule.id), "AWS KMS grant"],
                "analytic": {"uid": f.rule.id, "name": f.rule.title, "type": "Rule", "type_id": 1},
                "data_sources": ["AWS CloudTrail"],
            });
            if let Some(t) = f.observed_at {
                info["first_seen_time"] = json!(t * 1000);
            }
            if !related.is_empty() {
                info["related_events"] = Value::Array(related);
            }
            let mut event = json!({
                "class_uid": 2004,
                "class_name": "Detection Finding",
                "category_uid": 2,
                "category_name": "Findings",
                "activity_id": 1,
                "activity_name": "Create",
                "type_uid": 200401,
                "type_name": "Detection Finding: Create",
                "severity_id": severity_id,
                "severity": severity,
                "status_id": 1,
                "status": "New",
                "time": now * 1000,
                "message": format!("{}: {}", f.rule.title, f.detail),
                "metadata": {
                    "version": OCSF_VERSION,
                    "uid": f.id,
                    "product": {"name": "granttrail", "vendor_name": "granttrail", "version": VERSION},
                    "profiles": ["cloud"],
                },
                "finding_info": info,
                "resources": [key, grant],
                "remediation": {"desc": f.remediation},
                "observables": observables,
            });
            if !evidences.is_empty() {
                event["evidences"] = Value::Array(evidences);
            }
            if let Some(t) = f.observed_at {
                event["start_time"] = json!(t * 1000);
            }
            if let Some((_, region, account)) = parts {
                event["cloud"] = json!({
                    "provider": "AWS",
                    "region": region,
                    "account": {"uid": account, "name": account, "type": "AWS Account", "type_id": 10},
                });
            }
            event
        })
        .collect();
    Value::Array(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_become_uri_references() {
        assert_eq!(object_uri("/logs/a b/x.json.gz"), "file:///logs/a%20b/x.json.gz");
        assert_eq!(object_uri("s3://bucket/AWSLogs/1/x y.gz"), "s3://bucket/AWSLogs/1/x%20y.gz");
        assert_eq!(object_uri("stdin:123"), "stdin:123");
        assert_eq!(object_uri("relative/#x"), "relative/%23x");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate(&"é".repeat(300), 256).chars().count(), 256);
    }

    #[test]
    fn arns_give_partition_region_and_account() {
        assert_eq!(
            arn_parts("arn:aws:kms:us-east-1:111122223333:key/k"),
            Some(("aws", "us-east-1", "111122223333"))
        );
        assert_eq!(arn_parts(""), None);
        assert_eq!(arn_parts("arn:aws:kms::111122223333:key/k"), None);
    }
}
