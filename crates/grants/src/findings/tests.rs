//! The rules on plain values.

use super::service::service_made;
use super::*;
use crate::classify::Label;

#[test]
fn dates_in_names() {
    let day = timestamp::parse("2025-01-31T23:59:59Z");
    assert_eq!(date_in_name("ci-deploy-expires-2025-01-31"), day);
    assert_eq!(date_in_name("tmp_20250131_x"), day);
    assert_eq!(date_in_name("batch-job"), None);
    assert_eq!(date_in_name("build-12345678901"), None, "not a date");
}

use crate::event::{Constraints, GrantSpec};
use crate::lifecycle::Actor;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

fn grant(id: &str, grantee: &str, ops: &[&str]) -> Grant {
    Grant {
        key_arn: KEY.into(),
        grant_id: id.into(),
        state: GrantState::Active,
        creation_seen: true,
        spec: GrantSpec {
            grantee_principal: Some(grantee.into()),
            operations: Some(ops.iter().map(|o| o.to_string()).collect()),
            constraints: Some(Constraints {
                encryption_context_subset: Some([("app".to_string(), "x".to_string())].into()),
                ..Constraints::default()
            }),
            ..GrantSpec::default()
        },
        issuing_account: Some("111122223333".into()),
        created_at: Some(0),
        created_by: Some(Actor {
            principal: Some("arn:aws:sts::111122223333:assumed-role/Admin/a".into()),
            service: Some("ec2.amazonaws.com".into()),
            source_ip: None,
            event_id: format!("create-{id}"),
        }),
        ended_at: None,
        ended_by: None,
        create_event_ids: vec![format!("create-{id}")],
        end_event_ids: Vec::new(),
        anomalies: Vec::new(),
    }
}

/// The events some rules read besides grants and their use.
#[derive(Default)]
struct Events {
    denials: Vec<KmsEvent>,
    after_end: Vec<KmsEvent>,
}

fn evaluate_with(
    grants: &[Grant],
    calls: &[CoveredCall],
    events: &Events,
    config: &RulesConfig,
    now: i64,
) -> Vec<Finding> {
    let uses = grant_uses(grants, calls);
    let settings = Settings::default();
    evaluate(&FindingInputs {
        grants,
        uses: &uses,
        principal_deletions: &[],
        denials: &events.denials,
        calls_after_end: &events.after_end,
        settings: &settings,
        config,
        now,
        logs_end: Some(now),
    })
}

fn rules_fired(
    grants: &[Grant],
    calls: &[CoveredCall],
    config: &RulesConfig,
    now: i64,
) -> Vec<(&'static str, String)> {
    evaluate_with(grants, calls, &Events::default(), config, now)
        .into_iter()
        .map(|f| (f.rule.id, f.grant_id))
        .collect()
}

/// A KMS call record on KEY by a session of role `role`, `t` seconds after the epoch.
fn call_event(id: &str, name: &str, t: i64, role: &str, error: Option<&str>) -> KmsEvent {
    let mut record = serde_json::json!({
        "eventVersion": "1.09",
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "eventTime": timestamp::format(t),
        "eventID": id,
        "awsRegion": "us-east-1",
        "recipientAccountId": "111122223333",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": format!("arn:aws:sts::111122223333:assumed-role/{role}/s"),
            "principalId": format!("AROAEXAMPLE{}:s", role.to_uppercase()),
            "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"type": "Role",
                "arn": format!("arn:aws:iam::111122223333:role/{role}"), "accountId": "111122223333"}}
        },
        "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                              "encryptionContext": {"app": "x"}},
        "resources": [{"ARN": KEY, "type": "AWS::KMS::Key", "accountId": "111122223333"}],
    });
    if let Some(code) = error {
        record["errorCode"] = code.into();
    }
    crate::event::normalise(record.to_string().as_bytes()).unwrap().unwrap()
}

fn used(g: &Grant, ops: &[&str]) -> Vec<CoveredCall> {
    ops.iter()
        .map(|o| CoveredCall {
            key_arn: g.key_arn.clone(),
            grant_id: g.grant_id.clone(),
            operation: Some(o.to_string()),
            label: Label::GrantCovered,
            principal: g.spec.grantee_principal.clone(),
            event_id: format!("call-{o}"),
            flags: Vec::new(),
        })
        .collect()
}

#[test]
fn a_quiet_service_grant_raises_nothing() {
    let g = grant("g", "arn:aws:iam::111122223333:role/app", &["Decrypt"]);
    assert!(
        rules_fired(std::slice::from_ref(&g), &used(&g, &["Decrypt"]), &RulesConfig::default(), DAY)
            .is_empty()
    );
}

#[test]
fn each_rule_fires_and_a_close_variant_does_not() {
    // The grants here are made through a service (`invokedBy`), so the hygiene rules are
    // asked to report them; `service_made_grants_are_quiet_unless_asked` tests the default.
    let cfg = RulesConfig { service_grants: ServiceGrants::Report, ..RulesConfig::default() };
    let fired = |g: &Grant, calls: &[CoveredCall], now: i64| -> Vec<&'static str> {
        rules_fired(std::slice::from_ref(g), calls, &cfg, now).into_iter().map(|(r, _)| r).collect()
    };
    let base = grant("g", "arn:aws:iam::111122223333:role/app", &["Decrypt"]);
    let calls = used(&base, &["Decrypt"]);

    let foreign = grant("g", "arn:aws:iam::444455556666:role/app", &["Decrypt"]);
    assert_eq!(fired(&foreign, &used(&foreign, &["Decrypt"]), DAY), vec!["GT001"]);
    let trusted = RulesConfig { trusted_accounts: vec!["444455556666".into()], ..RulesConfig::default() };
    assert!(
        rules_fired(std::slice::from_ref(&foreign), &used(&foreign, &["Decrypt"]), &trusted, DAY).is_empty()
    );

    let delegating = grant("g", "arn:aws:iam::111122223333:role/app", &["Decrypt", "CreateGrant"]);
    assert_eq!(fired(&delegating, &calls, DAY), vec!["GT002"]);

    let everything = grant("g", "arn:aws:iam::111122223333:role/app", &CRYPTO_OPS);
    assert!(fired(&everything, &used(&everything, &CRYPTO_OPS), DAY).contains(&"GT003"));

    let mut open = base.clone();
    open.spec.constraints = None;
    let mut open_by_hand = open.clone();
    if let Some(a) = open_by_hand.created_by.as_mut() {
        a.service = None;
    }
    assert_eq!(fired(&open_by_hand, &calls, DAY), vec!["GT005", "GT004"]);
    assert!(fired(&open, &calls, DAY).is_empty(), "grants a service made are not asked for constraints");
    let mut service = open_by_hand.clone();
    service.spec.grantee_principal = Some("dynamodb.us-east-1.amazonaws.com".into());
    assert!(fired(&service, &calls, DAY).is_empty(), "service grants are not asked for constraints");

    let mut by_hand = base.clone();
    if let Some(a) = by_hand.created_by.as_mut() {
        a.service = None;
    }
    assert_eq!(fired(&by_hand, &calls, DAY), vec!["GT005"]);
    let mut ebs = by_hand.clone();
    ebs.spec.grantee_principal = Some("111122223333:aws:ec2-infrastructure:i-0abc".into());
    assert!(
        !fired(&ebs, &used(&ebs, &["Decrypt"]), DAY).contains(&"GT005"),
        "infrastructure grants are service-made"
    );

    assert_eq!(fired(&base, &calls, 31 * DAY + 1), vec!["GT006"]);
    assert!(fired(&base, &calls, 29 * DAY).is_empty());

    let mut named = base.clone();
    named.spec.name = Some("ci-deploy-expires-1970-01-02".into());
    assert_eq!(fired(&named, &calls, 3 * DAY), vec!["GT007"]);
    assert!(fired(&named, &calls, DAY).is_empty(), "not yet expired");

    assert_eq!(fired(&base, &[], 2 * DAY), vec!["GT008"]);
    assert!(fired(&base, &[], DAY / 2).is_empty(), "too new to call unused");
    let logs_end_soon_after = |logs_end: Option<i64>| {
        let uses = grant_uses(std::slice::from_ref(&base), &[]);
        let settings = Settings::default();
        let found = evaluate(&FindingInputs {
            grants: std::slice::from_ref(&base),
            uses: &uses,
            principal_deletions: &[],
            denials: &[],
            calls_after_end: &[],
            settings: &settings,
            config: &cfg,
            now: 30 * DAY,
            logs_end,
        });
        found.iter().any(|f| f.rule.id == "GT008")
    };
    let created = base.created_at.unwrap();
    assert!(!logs_end_soon_after(Some(created + DAY / 2)), "the logs stop half a day after creation");
    assert!(!logs_end_soon_after(None), "no logs");
    assert!(logs_end_soon_after(Some(created + DAY)), "a day of logs after creation");

    let two = grant("g", "arn:aws:iam::111122223333:role/app", &["Decrypt", "Encrypt"]);
    assert_eq!(fired(&two, &used(&two, &["Decrypt"]), DAY), vec!["GT009"]);
    assert!(fired(&two, &used(&two, &["Decrypt", "Encrypt"]), DAY).is_empty());

    let mut ended = base.clone();
    ended.grant_id = "old".into();
    ended.state = GrantState::Retired;
    let both = rules_fired(&[ended.clone(), base.clone()], &calls, &cfg, DAY);
    assert_eq!(both, vec![("GT010", "g".to_string())]);
    let mut other = ended.clone();
    other.spec.name = Some("different".into());
    assert!(rules_fired(&[other, base.clone()], &calls, &cfg, DAY).is_empty());
    // Only an ended grant of the same key, its creation logged, is a twin.
    let mut elsewhere = ended.clone();
    elsewhere.key_arn = base.key_arn.replace("key/", "key/other-");
    assert!(rules_fired(&[elsewhere, base.clone()], &calls, &cfg, DAY).is_empty());
    let mut unseen = ended.clone();
    unseen.creation_seen = false;
    assert!(rules_fired(&[unseen, base.clone()], &calls, &cfg, DAY).is_empty());
}

const APP: &str = "arn:aws:iam::111122223333:role/app";
const APP_SESSION: &str = "arn:aws:sts::111122223333:assumed-role/app/s";

fn by_hand(mut g: Grant, creator: &str) -> Grant {
    if let Some(a) = g.created_by.as_mut() {
        a.principal = Some(creator.into());
        a.service = None;
    }
    g.created_at = Some(1000);
    g
}

fn grant_only(g: &Grant, op: &str, id: &str) -> CoveredCall {
    CoveredCall {
        key_arn: g.key_arn.clone(),
        grant_id: g.grant_id.clone(),
        operation: Some(op.into()),
        label: Label::GrantOnlyLikely,
        principal: Some(APP_SESSION.into()),
        event_id: id.into(),
        flags: Vec::new(),
    }
}

fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.rule.id).collect()
}

#[test]
fn escalation_is_reported_once_self_made_or_not() {
    let cfg = RulesConfig::default();
    let denied = Events {
        denials: vec![call_event("denied", "Decrypt", 500, "app", Some("AccessDenied"))],
        ..Events::default()
    };
    // An administrator answered the denial with a grant: GT014, not GT012.
    let by_admin = by_hand(grant("g", APP, &["Decrypt"]), "arn:aws:sts::111122223333:assumed-role/Admin/a");
    let calls = [grant_only(&by_admin, "Decrypt", "ok")];
    let found = evaluate_with(std::slice::from_ref(&by_admin), &calls, &denied, &cfg, DAY);
    assert_eq!(ids(&found), vec!["GT005", "GT014"]);
    assert_eq!(found[1].event_ids, vec!["denied", "create-g", "ok"], "denial, grant, success");
    assert!(found[1].detail.contains("was denied Decrypt at 1970-01-01T00:08:20Z"), "{}", found[1].detail);

    // The principal made the grant itself: GT012 only.
    let self_made = by_hand(grant("g", APP, &["Decrypt"]), "arn:aws:sts::111122223333:assumed-role/app/s1");
    let calls = [grant_only(&self_made, "Decrypt", "ok")];
    let found = evaluate_with(std::slice::from_ref(&self_made), &calls, &denied, &cfg, DAY);
    assert_eq!(ids(&found), vec!["GT012", "GT005"]);

    // Close variants that are no escalation.
    let covered_only = [CoveredCall { label: Label::GrantCovered, ..grant_only(&by_admin, "Decrypt", "ok") }];
    let other_op = [grant_only(&by_admin, "Encrypt", "ok")];
    let mut late = by_admin.clone();
    late.created_at = Some(400);
    let late_calls = [grant_only(&late, "Decrypt", "ok")];
    let other_principal = Events {
        denials: vec![call_event("denied", "Decrypt", 500, "other", Some("AccessDenied"))],
        ..Events::default()
    };
    let not_denied = Events {
        denials: vec![call_event("denied", "Decrypt", 500, "app", Some("DisabledException"))],
        ..Events::default()
    };
    for (what, grant, calls, events) in [
        ("no grant-only evidence", &by_admin, &covered_only, &denied),
        ("another operation", &by_admin, &other_op, &denied),
        ("the denial came after the grant", &late, &late_calls, &denied),
        ("another principal was denied", &by_admin, &calls, &other_principal),
        ("not an access denial", &by_admin, &calls, &not_denied),
    ] {
        let found = ids(&evaluate_with(std::slice::from_ref(grant), calls, events, &cfg, DAY));
        assert!(!found.contains(&"GT014") && !found.contains(&"GT012"), "{what}: {found:?}");
    }
}

#[test]
fn grants_created_through_grants_show_their_chain() {
    let cfg = RulesConfig::default();
    let parent = grant("p", "arn:aws:iam::111122223333:role/Delegator", &["Decrypt", "CreateGrant"]);
    let mut child = by_hand(
        grant("c", APP, &["Decrypt", "CreateGrant"]),
        "arn:aws:sts::111122223333:assumed-role/Delegator/d",
    );
    child.created_at = Some(600);
    let mut grandchild =
        by_hand(grant("gc", "arn:aws:iam::111122223333:role/Third", &["Decrypt"]), APP_SESSION);
    grandchild.created_at = Some(900);
    let delegation = |parent: &Grant, child: &Grant| CoveredCall {
        operation: Some("CreateGrant".into()),
        label: Label::GrantCovered,
        event_id: child.create_event_ids[0].clone(),
        ..grant_only(parent, "CreateGrant", "")
    };
    let grants = [parent.clone(), child.clone(), grandchild.clone()];
    let calls = [delegation(&parent, &child), delegation(&child, &grandchild)];
    let found = evaluate_with(&grants, &calls, &Events::default(), &cfg, DAY);
    let chained: Vec<&Finding> = found.iter().filter(|f| f.rule.id == "GT013").collect();
    assert_eq!(chained.len(), 2, "{found:#?}");
    let gc = chained.iter().find(|f| f.grant_id == "gc").unwrap();
    assert!(gc.detail.contains("chain gc <- c <- p"), "{}", gc.detail);
    assert_eq!(gc.event_ids, vec!["create-gc", "create-c", "create-p"]);
    assert!(gc.remediation.contains("--grant-id c"), "{}", gc.remediation);

    // A CreateGrant that went beyond the parent was allowed by a policy (R-D4), and a
    // grant made directly is no delegation.
    let beyond = CoveredCall { flags: vec!["policy_path_proven".into()], ..delegation(&parent, &child) };
    let found = evaluate_with(&grants[..2], &[beyond], &Events::default(), &cfg, 2 * DAY);
    assert!(!ids(&found).contains(&"GT013"), "{found:#?}");
    assert!(ids(&found).contains(&"GT008"), "the parent was not used either");
    let unknown = CoveredCall { label: Label::NoGrantUnknownGrants, ..delegation(&parent, &child) };
    let found = evaluate_with(&grants[..2], &[unknown], &Events::default(), &cfg, 2 * DAY);
    assert!(!ids(&found).contains(&"GT013"), "grants that only may exist are no parents: {found:#?}");
}

#[test]
fn use_after_the_end_beyond_the_window() {
    let cfg = RulesConfig::default();
    let mut revoked = grant("g", APP, &["Decrypt"]);
    revoked.state = GrantState::Revoked;
    revoked.ended_at = Some(1000);
    revoked.end_event_ids = vec!["revoke".into()];
    let after = |t: i64, role: &str| Events {
        after_end: vec![call_event("later", "Decrypt", t, role, None)],
        ..Events::default()
    };
    let found = evaluate_with(std::slice::from_ref(&revoked), &[], &after(4600, "app"), &cfg, DAY);
    assert_eq!(ids(&found), vec!["GT015"]);
    assert_eq!(found[0].event_ids, vec!["revoke", "later"]);
    assert!(found[0].remediation.contains("get-key-policy"), "{}", found[0].remediation);

    let quiet = |grants: &[Grant], events: &Events| {
        ids(&evaluate_with(grants, &[], events, &cfg, DAY)).into_iter().filter(|r| *r == "GT015").count()
    };
    assert_eq!(quiet(std::slice::from_ref(&revoked), &after(1060, "app")), 0, "draining window");
    assert_eq!(quiet(std::slice::from_ref(&revoked), &after(4600, "other")), 0, "not the grantee");
    let mut encrypt_only = revoked.clone();
    encrypt_only.spec.operations = Some(vec!["Encrypt".into()]);
    assert_eq!(quiet(&[encrypt_only], &after(4600, "app")), 0, "not what the grant allowed");
    let twin = grant("twin", APP, &["Decrypt"]);
    assert_eq!(quiet(&[revoked.clone(), twin], &after(4600, "app")), 0, "another grant covers it");
    let mut unknown = grant("old", APP, &["Decrypt"]);
    unknown.creation_seen = false;
    assert_eq!(
        quiet(&[revoked.clone(), unknown], &after(4600, "app")),
        0,
        "a grant of unknown attributes may"
    );
}

#[test]
fn every_operation_of_each_key_kind() {
    let report = RulesConfig { service_grants: ServiceGrants::Report, ..RulesConfig::default() };
    let fired = |ops: &[&str]| {
        let g = grant("g", APP, ops);
        rules_fired(std::slice::from_ref(&g), &used(&g, ops), &report, DAY)
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>()
    };
    assert!(fired(&["Sign", "Verify", "GetPublicKey"]).contains(&"GT003"));
    assert!(!fired(&["Sign", "GetPublicKey"]).contains(&"GT003"));
    assert!(fired(&["GenerateMac", "VerifyMac"]).contains(&"GT003"));
    assert!(
        fired(&["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"]).contains(&"GT003")
    );
    assert!(!fired(&["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo"]).contains(&"GT003"));
    let mut all: Vec<&str> = CRYPTO_OPS.to_vec();
    all.extend(["CreateGrant", "DescribeKey", "RetireGrant"]);
    let g = grant("g", APP, &all);
    let found = evaluate_with(std::slice::from_ref(&g), &used(&g, &all), &Events::default(), &report, DAY);
    let every = found.iter().find(|f| f.rule.id == "GT003").unwrap();
    assert!(every.detail.contains("every operation a symmetric encryption key supports"), "{}", every.detail);

    // Encryption-context constraints do not exist for asymmetric keys: no GT004.
    let mut rsa = grant("g", APP, &["Decrypt", "GetPublicKey"]);
    rsa.spec.constraints = None;
    assert!(
        rules_fired(
            std::slice::from_ref(&rsa),
            &used(&rsa, &["Decrypt", "GetPublicKey"]),
            &RulesConfig::default(),
            DAY
        )
        .is_empty()
    );
}

#[test]
fn retiring_principal_in_another_account() {
    let mut g = grant("g", APP, &["Decrypt"]);
    g.spec.retiring_principal = Some("arn:aws:iam::444455556666:role/Cleaner".into());
    let calls = used(&g, &["Decrypt"]);
    let found =
        evaluate_with(std::slice::from_ref(&g), &calls, &Events::default(), &RulesConfig::default(), DAY);
    assert_eq!(ids(&found), vec!["GT001"]);
    assert!(found[0].detail.contains("retiring principal"), "{}", found[0].detail);
    let trusted = RulesConfig { trusted_accounts: vec!["444455556666".into()], ..RulesConfig::default() };
    assert!(rules_fired(std::slice::from_ref(&g), &calls, &trusted, DAY).is_empty());
}

#[test]
fn service_grants_are_not_hand_made() {
    let fired = |g: &Grant| {
        rules_fired(std::slice::from_ref(g), &used(g, &["Decrypt"]), &RulesConfig::default(), DAY)
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>()
    };
    let human = by_hand(grant("g", APP, &["Decrypt"]), "arn:aws:iam::111122223333:user/bob");
    assert_eq!(fired(&human), vec!["GT005"]);
    let mut from_service_address = human.clone();
    if let Some(a) = from_service_address.created_by.as_mut() {
        a.source_ip = Some("rds.amazonaws.com".into());
    }
    let mut service_retires = human.clone();
    service_retires.spec.retiring_principal = Some("rds.us-east-1.amazonaws.com".into());
    let mut service_caller = human.clone();
    if let Some(a) = service_caller.created_by.as_mut() {
        a.principal = Some("dynamodb.amazonaws.com".into());
    }
    let mut internal = human.clone();
    if let Some(a) = internal.created_by.as_mut() {
        a.service = Some("AWS Internal".into());
    }
    for g in [from_service_address, service_retires, service_caller, internal] {
        assert!(fired(&g).is_empty(), "{g:?}");
    }
}

#[test]
fn allowlists_and_disabled_rules_silence_findings() {
    let foreign = grant("g", "arn:aws:iam::444455556666:role/app", &["Decrypt"]);
    let calls = used(&foreign, &["Decrypt"]);
    for cfg in [
        RulesConfig { allow_accounts: vec!["444455556666".into()], ..RulesConfig::default() },
        RulesConfig { allow_keys: vec![KEY.into()], ..RulesConfig::default() },
        RulesConfig {
            allow_principals: vec!["arn:aws:iam::444455556666:role/app".into()],
            ..RulesConfig::default()
        },
        RulesConfig { disabled_rules: vec!["GT001".into()], ..RulesConfig::default() },
    ] {
        assert!(rules_fired(std::slice::from_ref(&foreign), &calls, &cfg, DAY).is_empty(), "{cfg:?}");
    }
    let mut named = foreign.clone();
    named.spec.name = Some("partner-feed-1".into());
    let cfg = RulesConfig { allow_grant_names: vec!["partner-feed-*".into()], ..RulesConfig::default() };
    assert!(rules_fired(&[named], &calls, &cfg, DAY).is_empty());
}

#[test]
fn the_readme_lists_every_rule() {
    let readme = include_str!("../../../../README.md");
    for rule in RULES {
        let row = format!("| {} | {} |", rule.id, rule.severity.as_str());
        assert!(readme.contains(&row), "README.md has no row {row}");
    }
    assert_eq!(readme.matches("\n| GT0").count(), RULES.len(), "README.md lists rules that do not exist");
}

#[test]
fn ids_are_stable() {
    assert_eq!(stable_id(&["GT001", "k", "g"]), stable_id(&["GT001", "k", "g"]));
    assert_ne!(stable_id(&["GT001", "k", "g"]), stable_id(&["GT001", "kg", ""]));
}

#[test]
fn service_made_grants_are_quiet_unless_asked() {
    let made_by_ec2 = grant("g", APP, &["Decrypt", "CreateGrant"]);
    assert!(service_made(&made_by_ec2));
    let mut by_hand = made_by_ec2.clone();
    by_hand.created_by.as_mut().unwrap().service = None;
    assert!(!service_made(&by_hand));
    let old = 400 * DAY;
    let found = |g: &Grant, cfg: &RulesConfig| {
        evaluate_with(std::slice::from_ref(g), &[], &Events::default(), cfg, old)
    };
    let hygiene = |found: &[Finding]| -> Vec<&'static str> {
        found.iter().map(|f| f.rule.id).filter(|id| SERVICE_QUIET_RULES.contains(id)).collect()
    };

    let quiet = found(&made_by_ec2, &RulesConfig::default());
    assert!(hygiene(&quiet).is_empty(), "{:?}", ids(&quiet));
    let loud = found(&by_hand, &RulesConfig::default());
    assert_eq!(hygiene(&loud), ["GT002", "GT006", "GT008"]);
    assert_eq!(loud.iter().find(|f| f.rule.id == "GT002").unwrap().rule.severity, Severity::High);
    assert!(loud[0].remediation.starts_with("aws kms revoke-grant"));

    let inventory = RulesConfig { service_grants: ServiceGrants::Report, ..RulesConfig::default() };
    let reported = found(&made_by_ec2, &inventory);
    assert_eq!(hygiene(&reported), ["GT002", "GT006", "GT008"]);
    for f in &reported {
        assert_eq!(f.rule.severity, Severity::Low, "{}", f.rule.id);
        assert!(f.remediation.starts_with("do not revoke"), "{}", f.remediation);
        assert!(!f.remediation.contains("revoke-grant") && !f.remediation.contains("retire-grant"));
    }
    let ids_by_mode: Vec<String> = reported.iter().map(|f| f.id.clone()).collect();
    let by_hand_ids: Vec<String> =
        loud.iter().filter(|f| SERVICE_QUIET_RULES.contains(&f.rule.id)).map(|f| f.id.clone()).collect();
    assert_eq!(ids_by_mode, by_hand_ids, "a finding's id does not depend on its severity");
}

/// The JSON every interface shows a finding in: the fields, their order and their types.
#[test]
fn a_finding_view_keeps_its_shape() {
    let g = grant("g", APP, &["Decrypt", "CreateGrant"]);
    let config = RulesConfig { service_grants: ServiceGrants::Report, ..RulesConfig::default() };
    let f = evaluate_with(std::slice::from_ref(&g), &[], &Events::default(), &config, DAY).remove(0);
    let evidence = vec![Evidence {
        event_id: Some("create-g".into()),
        event_name: Some("CreateGrant".into()),
        event_time: Some("1970-01-01T00:00:00Z".into()),
        object: Some("s3://bucket/log.json.gz".into()),
        listed_at: None,
    }];
    let view = FindingView::new(&f, Some("name".into()), evidence, DAY);
    let text = serde_json::to_string(&view).unwrap();
    let view: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kind = |v: &serde_json::Value| match v {
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Null => "null",
        _ => "other",
    };
    let shape = [
        ("id", "string"),
        ("rule_id", "string"),
        ("severity", "string"),
        ("title", "string"),
        ("why", "string"),
        ("detail", "string"),
        ("remediation", "string"),
        ("key_arn", "string"),
        ("grant_id", "string"),
        ("grant_name", "string"),
        ("grantee_principal", "string"),
        ("observed_at", "string"),
        ("event_ids", "array"),
        ("evidence", "array"),
        ("as_of", "string"),
    ];
    assert_eq!(view.as_object().unwrap().len(), shape.len(), "{text}");
    let mut at = 0;
    for (field, expected) in shape {
        assert_eq!(kind(&view[field]), expected, "{field} in {text}");
        let position = text.find(&format!("\"{field}\":")).unwrap();
        assert!(position >= at, "{field} out of order in {text}");
        at = position;
    }
    assert_eq!(
        view["evidence"][0],
        serde_json::json!({"event_id": "create-g", "event_name": "CreateGrant",
            "event_time": "1970-01-01T00:00:00Z", "object": "s3://bucket/log.json.gz"})
    );
    assert_eq!(
        (view["as_of"].as_str(), view["rule_id"].as_str()),
        (Some("1970-01-02T00:00:00Z"), Some("GT002"))
    );
}
