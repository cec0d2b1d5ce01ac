//! Reconciliation: the grants `aws kms list-grants` shows on a key, compared with the grants
//! rebuilt from the logs. Differences are findings (rules GT1xx): a grant that exists but was
//! never seen created (GT101, or GT104 for AWS service grants), a grant the history says is
//! active that no longer exists (GT102), and a grant whose attributes or state differ (GT103).
//!
//! Pure functions: the listing is parsed from its JSON text, the comparison takes the listing,
//! the rebuilt grants of the key and the rules configuration.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Constraints, GrantSpec, arn_account};
use crate::findings::{Finding, Rule, RulesConfig, Severity, stable_id};
use crate::lifecycle::{Grant, GrantState};
use crate::timestamp;

pub const UNSEEN_CREATION: Rule = Rule {
    id: "GT101",
    severity: Severity::Medium,
    title: "Grant exists but its creation is not in the logs",
    why: "The key's list of grants shows a grant no logged CreateGrant made: it predates the logs or was created where no trail records, so nobody here knows who made it or why.",
};
pub const UNSEEN_SERVICE_CREATION: Rule = Rule {
    id: "GT104",
    severity: Severity::Info,
    title: "AWS service grant exists but its creation is not in the logs",
    why: "A grant to an AWS service or its infrastructure that predates the logs is usually the service's own, for a resource made earlier; it is listed so that the inventory is complete.",
};
pub const MISSING_END: Rule = Rule {
    id: "GT102",
    severity: Severity::Low,
    title: "Grant the history says is active no longer exists",
    why: "The logs show the grant created and never ended, yet KMS no longer lists it: the events that ended it are missing, so the history of this key is incomplete.",
};
pub const MISMATCH: Rule = Rule {
    id: "GT103",
    severity: Severity::Medium,
    title: "Grant differs from what the logs say",
    why: "The grant KMS lists has other attributes (or another state) than the one rebuilt from the logs: the permissions in force are not the ones the history shows.",
};

/// The reconciliation rules.
pub const RULES: [Rule; 4] = [UNSEEN_CREATION, MISSING_END, MISMATCH, UNSEEN_SERVICE_CREATION];

/// Is this rule one of the reconciliation rules (whose evidence includes a list-grants snapshot)?
pub fn is_reconciliation_rule(rule_id: &str) -> bool {
    RULES.iter().any(|r| r.id == rule_id)
}

/// One grant as `aws kms list-grants` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedGrant {
    /// `KeyId`: the key's ARN.
    pub key_id: Option<String>,
    pub grant_id: String,
    pub name: Option<String>,
    /// `CreationDate`, seconds since the epoch.
    pub creation_date: Option<i64>,
    pub grantee_principal: Option<String>,
    pub retiring_principal: Option<String>,
    /// `IssuingAccount`: `arn:aws:iam::ACCOUNT:root`.
    pub issuing_account: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<Constraints>,
}

/// A parsed list-grants output: every grant of every page, and whether the listing is whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub grants: Vec<ListedGrant>,
    /// False when every page says `"Truncated": true`: more grants exist than were listed.
    pub complete: bool,
}

fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

fn string_map(v: Option<&Value>) -> Result<Option<BTreeMap<String, String>>, String> {
    let Some(v) = v else { return Ok(None) };
    let Some(map) = v.as_object() else {
        return Err("an encryption-context constraint is not an object".into());
    };
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => Err(format!("the encryption-context value of {k:?} is not a string")),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn listed_grant(v: &Value) -> Result<ListedGrant, String> {
    let Some(g) = v.as_object() else { return Err("a grant is not an object".into()) };
    let grant_id = string(g.get("GrantId")).ok_or("a grant has no GrantId")?;
    let creation_date = match g.get("CreationDate") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            timestamp::parse(s)
                .ok_or_else(|| format!("grant {grant_id}: CreationDate {s:?} is not a time"))?,
        ),
        // The AWS CLI prints epoch seconds with `cli_timestamp_format = none`.
        Some(Value::Number(n)) => n.as_f64().map(|f| f.floor() as i64),
        Some(_) => return Err(format!("grant {grant_id}: CreationDate is not a time")),
    };
    let operations = match g.get("Operations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ops)) => ops
            .iter()
            .map(|o| o.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("grant {grant_id}: Operations holds a non-string"))?,
        Some(_) => return Err(format!("grant {grant_id}: Operations is not a list")),
    };
    let constraints = match g.get("Constraints") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            let c = Constraints {
                encryption_context_equals: string_map(c.get("EncryptionContextEquals"))
                    .map_err(|e| format!("grant {grant_id}: {e}"))?,
                encryption_context_subset: string_map(c.get("EncryptionContextSubset"))
                    .map_err(|e| format!("grant {grant_id}: {e}"))?,
                source_arn: None,
            };
            Some(c).filter(|c| *c != Constraints::default())
        }
        Some(_) => return Err(format!("grant {grant_id}: Constraints is not an object")),
    };
    Ok(ListedGrant {
        key_id: string(g.get("KeyId")),
        grant_id,
        name: string(g.get("Name")),
        creation_date,
        grantee_principal: string(g.get("GranteePrincipal")),
        retiring_principal: string(g.get("RetiringPrincipal")),
        issuing_account: string(g.get("IssuingAccount")),
        operations,
        constraints,
    })
}

/// Parses `aws kms list-grants` output: one page (`{"Grants": [...]}`), several pages one after
/// the other, or a JSON list of pages.
pub fn parse_list_grants(text: &str) -> Result<Listing, String> {
    let mut pages = Vec::new();
    for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match doc.map_err(|e| format!("not JSON: {e}"))? {
            Value::Array(items) => pages.extend(items),
            other => pages.push(other),
        }
    }
    if pages.is_empty() {
        return Err("empty: expected the output of aws kms list-grants".into());
    }
    let mut grants = Vec::new();
    let mut complete = false;
    let mut seen = BTreeSet::new();
    for page in &pages {
        let Some(list) = page.get("Grants").and_then(Value::as_array) else {
            return Err("not list-grants output: no \"Grants\" list".into());
        };
        for g in list {
            let g = listed_grant(g)?;
            if seen.insert(g.grant_id.clone()) {
                grants.push(g);
            }
        }
        complete |= page.get("Truncated").and_then(Value::as_bool) != Some(true);
    }
    Ok(Listing { grants, complete })
}

/// A list-grants snapshot of one key, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub key_arn: String,
    /// When the listing was taken.
    pub at: i64,
    /// The file it was imported from.
    pub source: String,
    pub listing: Listing,
}

fn sorted(ops: &[String]) -> Vec<&str> {
    let set: BTreeSet<&str> = ops.iter().map(String::as_str).collect();
    set.into_iter().collect()
}

fn show(v: Option<&str>) -> String {
    v.map_or_else(|| "none".to_string(), |s| format!("{s:?}"))
}

fn show_constraints(c: Option<&Constraints>) -> String {
    let Some(c) = c else { return "none".into() };
    let mut parts = Vec::new();
    if let Some(m) = &c.encryption_context_equals {
        parts.push(format!("EncryptionContextEquals {}", serde_json::to_string(m).unwrap_or_default()));
    }
    if let Some(m) = &c.encryption_context_subset {
        parts.push(format!("EncryptionContextSubset {}", serde_json::to_string(m).unwrap_or_default()));
    }
    if parts.is_empty() { "none".into() } else { parts.join(" and ") }
}

/// The encryption-context part of logged constraints (list-grants shows no `SourceArn`), `None`
/// when empty.
fn context_constraints(c: Option<&Constraints>) -> Option<Constraints> {
    c.map(|c| Constraints { source_arn: None, ..c.clone() }).filter(|c| *c != Constraints::default())
}

/// The differences between a grant's logged creation and its listing, as readable phrases.
fn differences(logged: &GrantSpec, issuing_account: Option<&str>, listed: &ListedGrant) -> Vec<String> {
    let mut out = Vec::new();
    // A creation whose request was not logged says nothing about the attributes.
    if logged.grantee_principal.is_none() && logged.operations.is_none() {
        return out;
    }
    if let Some(ops) = &logged.operations
        && sorted(ops) != sorted(&listed.operations)
    {
        out.push(format!(
            "operations: logged {}, listed {}",
            sorted(ops).join(","),
            sorted(&listed.operations).join(",")
        ));
    }
    let pairs = [
        ("grantee", logged.grantee_principal.as_deref(), listed.grantee_principal.as_deref()),
        ("retiring principal", logged.retiring_principal.as_deref(), listed.retiring_principal.as_deref()),
        ("name", logged.name.as_deref(), listed.name.as_deref()),
    ];
    for (what, a, b) in pairs {
        if a != b {
            out.push(format!("{what}: logged {}, listed {}", show(a), show(b)));
        }
    }
    let logged_c = context_constraints(logged.constraints.as_ref());
    if logged_c != listed.constraints {
        out.push(format!(
            "constraints: logged {}, listed {}",
            show_constraints(logged_c.as_ref()),
            show_constraints(listed.constraints.as_ref())
        ));
    }
    let listed_account = listed.issuing_account.as_deref().and_then(arn_account);
    if let (Some(a), Some(b)) = (issuing_account, listed_account)
        && a != b
    {
        out.push(format!("issuing account: logged {a}, listed {b}"));
    }
    out
}

/// A grant as far as the listing tells, for the allowlists.
fn as_grant(key_arn: &str, l: &ListedGrant) -> Grant {
    Grant {
        key_arn: key_arn.to_string(),
        grant_id: l.grant_id.clone(),
        state: GrantState::Active,
        creation_seen: false,
        spec: GrantSpec {
            grantee_principal: l.grantee_principal.clone(),
            retiring_principal: l.retiring_principal.clone(),
            operations: Some(l.operations.clone()),
            constraints: l.constraints.clone(),
            name: l.name.clone(),
        },
        issuing_account: l.issuing_account.as_deref().and_then(arn_account).map(str::to_string),
        created_at: l.creation_date,
        created_by: None,
        ended_at: None,
        ended_by: None,
        create_event_ids: Vec::new(),
        end_event_ids: Vec::new(),
        anomalies: Vec::new(),
    }
}

/// Compares a snapshot with the grants rebuilt for its key. `grants` may hold grants of other
/// keys (they are ignored). A grant created or ended within `window` seconds of the snapshot
/// may legitimately be listed or not (KMS is eventually consistent) and is not reported.
pub fn reconcile(snapshot: &Snapshot, grants: &[Grant], config: &RulesConfig, window: i64) -> Vec<Finding> {
    let key = snapshot.key_arn.as_str();
    let at = snapshot.at;
    let rebuilt: BTreeMap<&str, &Grant> =
        grants.iter().filter(|g| g.key_arn == key).map(|g| (g.grant_id.as_str(), g)).collect();
    let listed: BTreeMap<&str, &ListedGrant> =
        snapshot.listing.grants.iter().map(|g| (g.grant_id.as_str(), g)).collect();
    let taken = timestamp::format(at);
    let revoke = |id: &str| format!("aws kms revoke-grant --key-id {key} --grant-id {id}");
    let mut out = Vec::new();
    let mut push = |rule: Rule, g: &Grant, detail: String, remediation: String, observed_at: Option<i64>| {
        if config.disabled_rules.iter().any(|d| d == rule.id) || config.allowed(g) {
            return;
        }
        out.push(Finding {
            id: stable_id(&[rule.id, key, &g.grant_id]),
            rule,
            key_arn: key.to_string(),
            grant_id: g.grant_id.clone(),
            grantee_principal: g.spec.grantee_principal.clone(),
            detail,
            remediation,
            event_ids: g.create_event_ids.iter().chain(&g.end_event_ids).cloned().collect(),
            observed_at,
        });
    };
    for l in listed.values() {
        let listed_grant = as_grant(key, l);
        match rebuilt.get(l.grant_id.as_str()) {
            None => {
                let created =
                    l.creation_date.map_or_else(|| "at an unknown time".to_string(), timestamp::format);
                let grantee = show(l.grantee_principal.as_deref());
                // A listing says nothing of who created the grant: the one test of a service-made
                // grant reads its grantee and retiring principal.
                let rule = if super::service::service_made(&listed_grant) {
                    UNSEEN_SERVICE_CREATION
                } else {
                    UNSEEN_CREATION
                };
                push(
                    rule,
                    &listed_grant,
                    format!(
                        "list-grants at {taken} shows a grant for {grantee} ({}) created {created}, and no CreateGrant for it is in the logs",
                        sorted(&l.operations).join(",")
                    ),
                    if rule == UNSEEN_SERVICE_CREATION {
                        format!(
                            "usually none: the service retires it with its resource; if that resource is gone: {}",
                            revoke(&l.grant_id)
                        )
                    } else {
                        format!(
                            "find out who needs it (older or other trails' logs show who created it); if nobody does: {}",
                            revoke(&l.grant_id)
                        )
                    },
                    l.creation_date.or(Some(at)),
                );
            }
            Some(g) => {
                let mut diffs = Vec::new();
                if let Some(ended) = g.ended_at
                    && ended + window <= at
                {
                    diffs.push(format!(
                        "state: logged {} at {}, listed as existing",
                        g.state.as_str(),
                        timestamp::format(ended)
                    ));
                }
                if g.creation_seen {
                    diffs.extend(differences(&g.spec, g.issuing_account.as_deref(), l));
                }
                if !diffs.is_empty() {
                    // Report what is in force: the listed attributes.
                    let mut subject = (*g).clone();
                    subject.spec.grantee_principal =
                        l.grantee_principal.clone().or(subject.spec.grantee_principal);
                    push(
                        MISMATCH,
                        &subject,
                        format!("list-grants at {taken} differs from the logs: {}", diffs.join("; ")),
                        format!(
                            "the grant in force is the listed one; if its permissions are not intended: {}",
                            revoke(&g.grant_id)
                        ),
                        g.created_at.or(g.ended_at),
                    );
                }
            }
        }
    }
    if snapshot.listing.complete {
        for g in rebuilt.values() {
            let active_then =
                g.created_at.is_none_or(|c| c + window <= at) && g.ended_at.is_none_or(|e| e > at);
            if g.creation_seen && active_then && !listed.contains_key(g.grant_id.as_str()) {
                push(
                    MISSING_END,
                    g,
                    format!(
                        "created at {} and never ended in the logs, but list-grants at {taken} does not list it",
                        g.created_at.map_or_else(|| "an unknown time".to_string(), timestamp::format)
                    ),
                    "none needed on the key: the grant is gone; ingest the logs that hold its end (other regions, accounts or trails) to complete the history".to_string(),
                    g.created_at,
                );
            }
        }
    }
    out.sort_by(|a, b| {
        (b.rule.severity, a.rule.id, &a.grant_id).cmp(&(a.rule.severity, b.rule.id, &b.grant_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Actor;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k";
    const HOUR: i64 = 3_600;

    fn rebuilt(id: &str, created: i64, ended: Option<i64>) -> Grant {
        Grant {
            key_arn: KEY.into(),
            grant_id: id.into(),
            state: if ended.is_some() { GrantState::Revoked } else { GrantState::Active },
            creation_seen: true,
            spec: GrantSpec {
                grantee_principal: Some("arn:aws:iam::111122223333:role/app".into()),
                retiring_principal: None,
                operations: Some(vec!["Decrypt".into(), "Encrypt".into()]),
                constraints: Some(Constraints {
                    encryption_context_subset: Some([("app".to_string(), "x".to_string())].into()),
                    ..Constraints::default()
                }),
                name: Some("n".into()),
            },
            issuing_account: Some("111122223333".into()),
            created_at: Some(created),
            created_by: Some(Actor {
                principal: Some("arn:aws:iam::111122223333:user/a".into()),
                service: None,
                source_ip: None,
                event_id: format!("create-{id}"),
            }),
            ended_at: ended,
            ended_by: None,
            create_event_ids: vec![format!("create-{id}")],
            end_event_ids: ended.map(|_| format!("end-{id}")).into_iter().collect(),
            anomalies: Vec::new(),
        }
    }

    fn page(grants: &[Value]) -> String {
        serde_json::json!({ "Grants": grants }).to_string()
    }

    fn listed(id: &str) -> Value {
        serde_json::json!({
            "KeyId": KEY, "GrantId": id, "Name": "n", "CreationDate": "1970-01-01T00:00:00+00:00",
            "GranteePrincipal": "arn:aws:iam::111122223333:role/app",
            "IssuingAccount": "arn:aws:iam::111122223333:root",
            "Operations": ["Encrypt", "Decrypt"],
            "Constraints": {"EncryptionContextSubset": {"app": "x"}}
        })
    }

    fn run(text: &str, grants: &[Grant], at: i64) -> Vec<(&'static str, String)> {
        let snapshot = Snapshot {
            key_arn: KEY.into(),
            at,
            source: "list.json".into(),
            listing: parse_list_grants(text).unwrap(),
        };
        reconcile(&snapshot, grants, &RulesConfig::default(), 300)
            .into_iter()
            .map(|f| (f.rule.id, f.grant_id))
            .collect()
    }

    #[test]
    fn parses_pages_lists_and_concatenations() {
        let one = format!(r#"{{"Grants": [{}], "NextMarker": "m", "Truncated": true}}"#, listed("a"));
        let two = page(&[listed("b"), listed("a")]);
        let l = parse_list_grants(&format!("{one}\n{two}")).unwrap();
        assert_eq!(l.grants.len(), 2, "a grant on two pages counts once");
        assert!(l.complete);
        assert!(!parse_list_grants(&one).unwrap().complete, "a truncated page alone is not the whole list");
        let list = format!("[{one}, {two}]");
        assert_eq!(parse_list_grants(&list).unwrap(), l);
        let g = &l.grants[0];
        assert_eq!(g.creation_date, Some(0));
        assert_eq!(g.operations, vec!["Encrypt", "Decrypt"]);
        assert_eq!(g.constraints.as_ref().unwrap().encryption_context_subset.as_ref().unwrap()["app"], "x");
        let epoch = r#"{"Grants": [{"GrantId": "x", "CreationDate": 1714554300.0}]}"#;
        assert_eq!(parse_list_grants(epoch).unwrap().grants[0].creation_date, Some(1_714_554_300));
        for bad in [
            "",
            "{}",
            r#"{"Grants": [{"Name": "x"}]}"#,
            r#"{"Grants": [{"GrantId": "x", "Operations": "Decrypt"}]}"#,
            "nope",
        ] {
            assert!(parse_list_grants(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn agreement_raises_nothing() {
        assert!(run(&page(&[listed("g")]), &[rebuilt("g", 0, None)], 10 * HOUR).is_empty());
    }

    #[test]
    fn a_grant_never_seen_created_is_reported() {
        assert_eq!(run(&page(&[listed("old")]), &[], HOUR), vec![("GT101", "old".to_string())]);
        // Another key's grant of the same id does not count as seen.
        let mut other = rebuilt("old", 0, None);
        other.key_arn = "arn:aws:kms:us-east-1:111122223333:key/other".into();
        assert_eq!(run(&page(&[listed("old")]), &[other], HOUR), vec![("GT101", "old".to_string())]);
    }

    #[test]
    fn a_service_grant_never_seen_created_is_only_information() {
        for grantee in ["rds.us-east-1.amazonaws.com", "111122223333:aws:ec2-infrastructure:i-0abc"] {
            let mut l = listed("svc");
            l["GranteePrincipal"] = serde_json::json!(grantee);
            assert_eq!(run(&page(&[l]), &[], HOUR), vec![("GT104", "svc".to_string())], "{grantee}");
        }
    }

    #[test]
    fn a_grant_active_in_the_history_but_not_listed_is_reported() {
        assert_eq!(run(&page(&[]), &[rebuilt("gone", 0, None)], HOUR), vec![("GT102", "gone".to_string())]);
        assert!(run(&page(&[]), &[rebuilt("gone", 0, Some(60))], HOUR).is_empty(), "its end is logged");
        assert!(run(&page(&[]), &[rebuilt("new", HOUR - 10, None)], HOUR).is_empty(), "too new to be listed");
        assert!(
            run(&page(&[]), &[rebuilt("later", 2 * HOUR, None)], HOUR).is_empty(),
            "created after the listing"
        );
        let truncated = r#"{"Grants": [], "NextMarker": "m", "Truncated": true}"#;
        assert!(run(truncated, &[rebuilt("gone", 0, None)], HOUR).is_empty(), "the list is partial");
    }

    #[test]
    fn attribute_and_state_mismatches_are_reported() {
        let g = rebuilt("g", 0, None);
        for change in [
            ("Operations", serde_json::json!(["Decrypt"])),
            ("GranteePrincipal", serde_json::json!("arn:aws:iam::111122223333:role/other")),
            ("RetiringPrincipal", serde_json::json!("arn:aws:iam::111122223333:role/admin")),
            ("Constraints", serde_json::json!({"EncryptionContextEquals": {"app": "x"}})),
            ("Name", serde_json::json!("other")),
            ("IssuingAccount", serde_json::json!("arn:aws:iam::444455556666:root")),
        ] {
            let mut l = listed("g");
            l[change.0] = change.1;
            assert_eq!(
                run(&page(&[l]), std::slice::from_ref(&g), HOUR),
                vec![("GT103", "g".to_string())],
                "{}",
                change.0
            );
        }
        let mut unlogged = g.clone();
        unlogged.spec = GrantSpec::default();
        assert!(run(&page(&[listed("g")]), &[unlogged], HOUR).is_empty(), "nothing logged to compare");
        let ended = rebuilt("g", 0, Some(60));
        assert_eq!(
            run(&page(&[listed("g")]), std::slice::from_ref(&ended), HOUR),
            vec![("GT103", "g".to_string())]
        );
        assert!(
            run(&page(&[listed("g")]), &[ended], 200).is_empty(),
            "listed just before its end took effect"
        );
    }

    #[test]
    fn allowlists_and_disabled_rules_apply() {
        let snapshot = Snapshot {
            key_arn: KEY.into(),
            at: HOUR,
            source: "list.json".into(),
            listing: parse_list_grants(&page(&[listed("old")])).unwrap(),
        };
        let off = RulesConfig { disabled_rules: vec!["GT101".into()], ..RulesConfig::default() };
        assert!(reconcile(&snapshot, &[], &off, 0).is_empty());
        let allowed = RulesConfig { allow_grant_names: vec!["n".into()], ..RulesConfig::default() };
        assert!(reconcile(&snapshot, &[], &allowed, 0).is_empty());
        let found = reconcile(&snapshot, &[], &RulesConfig::default(), 0);
        assert_eq!(found[0].id, reconcile(&snapshot, &[], &RulesConfig::default(), 0)[0].id, "stable ids");
        assert!(found[0].remediation.contains("aws kms revoke-grant --key-id"));
    }
}
