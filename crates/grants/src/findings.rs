//! Findings: grants a security team should look at, each from a named rule with a severity,
//! the reason it matters, a remediation, and the events that prove it.
//!
//! Findings are derived from rebuilt grants and their use, so they are as order-independent
//! as the grants; each has a stable id (the same grant gives the same finding on every run).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::{KmsEvent, arn_account};
use crate::lifecycle::{Grant, GrantState};
use crate::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Info, Severity::Low, Severity::Medium, Severity::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A rule: what it looks for and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    pub why: &'static str,
}

pub const CROSS_ACCOUNT: Rule = Rule {
    id: "GT001",
    severity: Severity::High,
    title: "Grant to a principal in another account",
    why: "A grant lets a principal of another, untrusted account use the key without any policy in this account naming it.",
};
pub const REDELEGATION: Rule = Rule {
    id: "GT002",
    severity: Severity::High,
    title: "Grant allows CreateGrant (re-delegation)",
    why: "The grantee can pass the key's permissions on to principals nobody here chose, through grants that appear in no policy.",
};
pub const ALL_OPERATIONS: Rule = Rule {
    id: "GT003",
    severity: Severity::Medium,
    title: "Grant allows every cryptographic operation of the key",
    why: "A grant this broad is rarely needed; one compromised grantee can encrypt, decrypt and generate data keys.",
};
pub const NO_CONSTRAINT: Rule = Rule {
    id: "GT004",
    severity: Severity::Low,
    title: "Cryptographic grant without an encryption-context constraint",
    why: "Without a constraint the grant covers every ciphertext of the key, not just the resource it was made for.",
};
pub const HUMAN_CREATED: Rule = Rule {
    id: "GT005",
    severity: Severity::Medium,
    title: "Grant created directly by a person or workload",
    why: "AWS services create grants for their resources; a grant created by hand is outside the usual paths and easily forgotten.",
};
pub const LONG_LIVED: Rule = Rule {
    id: "GT006",
    severity: Severity::Low,
    title: "Grant active for longer than allowed",
    why: "Grants never expire; one left active long after its purpose keeps its permissions alive.",
};
pub const NAME_EXPIRED: Rule = Rule {
    id: "GT007",
    severity: Severity::Medium,
    title: "Grant still active past the expiry date in its name",
    why: "The grant's name says it should be gone; KMS does not expire grants, so someone forgot to retire it.",
};
pub const NEVER_USED: Rule = Rule {
    id: "GT008",
    severity: Severity::Low,
    title: "Active grant never used",
    why: "A grant nobody uses is pure exposure.",
};
pub const UNUSED_OPERATIONS: Rule = Rule {
    id: "GT009",
    severity: Severity::Info,
    title: "Grant allows operations it was never used for",
    why: "Least privilege: the operations never used can be dropped by replacing the grant.",
};
pub const DUPLICATE_LEFTOVER: Rule = Rule {
    id: "GT010",
    severity: Severity::Medium,
    title: "Duplicate grant left active after its twin was ended",
    why: "Retries without a Name create duplicate grants; ending one leaves the other's permissions in place.",
};
pub const GRANTEE_DELETED: Rule = Rule {
    id: "GT011",
    severity: Severity::Medium,
    title: "Active grant whose grantee was deleted",
    why: "The grantee is gone but the grant stays; a new principal of the same name must not inherit it, and the grant is clutter.",
};
pub const SELF_GRANT: Rule = Rule {
    id: "GT012",
    severity: Severity::High,
    title: "Principal granted itself access after being denied",
    why: "A principal that could not use the key created a grant for itself and then succeeded: a privilege escalation.",
};

pub const RULES: [Rule; 12] = [
    CROSS_ACCOUNT,
    REDELEGATION,
    ALL_OPERATIONS,
    NO_CONSTRAINT,
    HUMAN_CREATED,
    LONG_LIVED,
    NAME_EXPIRED,
    NEVER_USED,
    UNUSED_OPERATIONS,
    DUPLICATE_LEFTOVER,
    GRANTEE_DELETED,
    SELF_GRANT,
];

/// `[findings]` in granttrail.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Accounts whose principals may hold grants on any key (besides the key's own account).
    pub trusted_accounts: Vec<String>,
    /// Days a grant may stay active before GT006 fires.
    pub max_active_days: i64,
    /// Grants to these principals (exact grantee strings) raise no findings.
    pub allow_principals: Vec<String>,
    /// Grants whose grantee is in these accounts raise no findings.
    pub allow_accounts: Vec<String>,
    /// Grants on these keys (ARNs) raise no findings.
    pub allow_keys: Vec<String>,
    /// Grants with these names raise no findings; a trailing `*` matches a prefix.
    pub allow_grant_names: Vec<String>,
    /// Rules switched off, by id.
    pub disabled_rules: Vec<String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            trusted_accounts: Vec::new(),
            max_active_days: 30,
            allow_principals: Vec::new(),
            allow_accounts: Vec::new(),
            allow_keys: Vec::new(),
            allow_grant_names: Vec::new(),
            disabled_rules: Vec::new(),
        }
    }
}

/// How a grant was used, from the call labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantUse {
    /// Calls the grant covered (certainly or possibly).
    pub calls: u64,
    pub operations: BTreeSet<String>,
    /// Calls labelled grant_only_likely whose caller had created the grant itself: event ids.
    pub self_grant_calls: Vec<String>,
}

/// One labelled call a grant covered, as the store lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredCall {
    pub key_arn: String,
    pub grant_id: String,
    pub operation: Option<String>,
    pub label: String,
    pub principal: Option<String>,
    pub event_id: String,
}

/// The role a session belongs to (`arn:aws:sts::A:assumed-role/R/s` → `A/R`), or the principal.
fn principal_family(p: &str) -> String {
    match p.split_once(":assumed-role/") {
        Some((head, rest)) => {
            format!("{}/{}", arn_account(p).unwrap_or(head), rest.split('/').next().unwrap_or(rest))
        }
        None => p.to_string(),
    }
}

/// Sums up how each grant was used. A `grant_only_likely` call (denied before, covered now)
/// by the principal that created the grant is a self-grant escalation.
pub fn grant_uses(grants: &[Grant], calls: &[CoveredCall]) -> BTreeMap<(String, String), GrantUse> {
    let creators: BTreeMap<(&str, &str), String> = grants
        .iter()
        .filter_map(|g| {
            let creator = g.created_by.as_ref()?.principal.as_deref()?;
            Some(((g.key_arn.as_str(), g.grant_id.as_str()), principal_family(creator)))
        })
        .collect();
    let mut uses: BTreeMap<(String, String), GrantUse> = BTreeMap::new();
    for c in calls {
        let u = uses.entry((c.key_arn.clone(), c.grant_id.clone())).or_default();
        u.calls += 1;
        u.operations.extend(c.operation.clone());
        let creator = creators.get(&(c.key_arn.as_str(), c.grant_id.as_str()));
        if c.label == "grant_only_likely"
            && creator.is_some()
            && c.principal.as_deref().map(principal_family).as_ref() == creator
        {
            u.self_grant_calls.push(c.event_id.clone());
        }
    }
    uses
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable: the same rule on the same grant gives the same id on every run.
    pub id: String,
    pub rule: Rule,
    pub key_arn: String,
    pub grant_id: String,
    pub grantee_principal: Option<String>,
    /// What exactly was found, in one sentence.
    pub detail: String,
    /// The command that removes the exposure.
    pub remediation: String,
    /// The events that show it.
    pub event_ids: Vec<String>,
    /// When the finding's evidence starts (the grant's creation, else its first event).
    pub observed_at: Option<i64>,
}

pub(crate) fn stable_id(parts: &[&str]) -> String {
    // FNV-1a, 64 bit: stable across runs and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("gtf-{h:016x}")
}

const CRYPTO_OPS: [&str; 8] = [
    "Encrypt",
    "Decrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// A service principal, or the redacted `AWS Internal` services log in its place.
fn is_service_principal(p: &str) -> bool {
    p == "AWS Internal" || crate::matching::is_service_principal(p)
}

/// An AWS service acted: the creation was made through a service (`invokedBy`), by a service
/// principal, or for an infrastructure principal (`acct:aws:ec2-infrastructure:i-...`).
fn service_made(g: &Grant) -> bool {
    let by_service = g
        .created_by
        .as_ref()
        .is_some_and(|a| a.service.is_some() || a.principal.as_deref().is_some_and(is_service_principal));
    let grantee = g.spec.grantee_principal.as_deref().unwrap_or_default();
    // Infrastructure principals look like `111122223333:aws:ec2-infrastructure:i-...`.
    by_service || is_service_principal(grantee) || (!grantee.starts_with("arn:") && grantee.contains(":aws:"))
}

/// The first `YYYY-MM-DD` or `YYYYMMDD` date in a grant name, as seconds at the end of that day.
fn date_in_name(name: &str) -> Option<i64> {
    for (offset, _) in name.char_indices() {
        for (len, dashed) in [(10, true), (8, false)] {
            let Some(candidate) = name.get(offset..).and_then(|rest| rest.get(..len)) else {
                continue;
            };
            let compact: String = if dashed {
                let b = candidate.as_bytes();
                if b[4] != b'-' || b[7] != b'-' {
                    continue;
                }
                candidate.replace('-', "")
            } else {
                candidate.to_string()
            };
            if compact.len() == 8 && compact.bytes().all(|c| c.is_ascii_digit()) {
                let text = format!("{}-{}-{}T23:59:59Z", &compact[0..4], &compact[4..6], &compact[6..8]);
                if let Some(t) = timestamp::parse(&text) {
                    return Some(t);
                }
            }
        }
    }
    None
}

impl RulesConfig {
    pub(crate) fn allowed(&self, g: &Grant) -> bool {
        let grantee = g.spec.grantee_principal.as_deref();
        let name_allowed = g.spec.name.as_deref().is_some_and(|n| {
            self.allow_grant_names.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => n.starts_with(prefix),
                None => n == p,
            })
        });
        self.allow_keys.contains(&g.key_arn)
            || grantee.is_some_and(|p| self.allow_principals.iter().any(|a| a == p))
            || grantee.and_then(arn_account).is_some_and(|a| self.allow_accounts.iter().any(|x| x == a))
            || name_allowed
    }
}

/// Everything the rules look at.
pub struct FindingInputs<'a> {
    pub grants: &'a [Grant],
    /// Use of each grant, by `(key ARN, grant id)`.
    pub uses: &'a BTreeMap<(String, String), GrantUse>,
    /// IAM `DeleteRole` / `DeleteUser` events.
    pub principal_deletions: &'a [KmsEvent],
    pub config: &'a RulesConfig,
    /// The time "now" for age-based rules.
    pub now: i64,
}

/// Runs every enabled rule over every grant.
pub fn evaluate(inputs: &FindingInputs<'_>) -> Vec<Finding> {
    let cfg = inputs.config;
    let mut out = Vec::new();
    for g in inputs.grants.iter().filter(|g| !cfg.allowed(g)) {
        let mut push = |rule: Rule, detail: String, mut event_ids: Vec<String>| {
            if cfg.disabled_rules.iter().any(|d| d == rule.id) {
                return;
            }
            if event_ids.is_empty() {
                event_ids = g.create_event_ids.iter().chain(&g.end_event_ids).cloned().collect();
            }
            let remediation = if g.state == GrantState::Active {
                format!("aws kms revoke-grant --key-id {} --grant-id {}", g.key_arn, g.grant_id)
            } else {
                "none needed: the grant has ended; review how it came to exist".to_string()
            };
            out.push(Finding {
                id: stable_id(&[rule.id, &g.key_arn, &g.grant_id]),
                rule,
                key_arn: g.key_arn.clone(),
                grant_id: g.grant_id.clone(),
                grantee_principal: g.spec.grantee_principal.clone(),
                detail,
                remediation,
                event_ids,
                observed_at: g.created_at.or(g.ended_at),
            });
        };
        let key_account = arn_account(&g.key_arn).unwrap_or_default();
        let foreign = |p: &str| {
            p.starts_with("arn:")
                && arn_account(p)
                    .is_some_and(|a| a != key_account && !cfg.trusted_accounts.iter().any(|t| t == a))
        };
        let grantee = g.spec.grantee_principal.as_deref().unwrap_or_default();
        let retiring = g.spec.retiring_principal.as_deref().unwrap_or_default();
        for (role, p) in [("grantee", grantee), ("retiring principal", retiring)] {
            if foreign(p) {
                push(
                    CROSS_ACCOUNT,
                    format!("the {role} {p} is in another account than the key ({key_account})"),
                    Vec::new(),
                );
                break;
            }
        }
        let ops: Vec<&str> = g.spec.operations.iter().flatten().map(String::as_str).collect();
        if ops.contains(&"CreateGrant") {
            push(REDELEGATION, format!("{grantee} may create grants on the key"), Vec::new());
        }
        let symmetric_ops = &CRYPTO_OPS;
        if symmetric_ops.iter().all(|o| ops.contains(o)) {
            push(ALL_OPERATIONS, format!("{grantee} may use every cryptographic operation"), Vec::new());
        }
        let crypto = ops.iter().any(|o| CRYPTO_OPS.contains(o));
        let constrained = g.spec.constraints.as_ref().is_some_and(|c| {
            c.encryption_context_equals.is_some()
                || c.encryption_context_subset.is_some()
                || c.source_arn.is_some()
        });
        if g.creation_seen && crypto && !constrained && !is_service_principal(grantee) {
            push(
                NO_CONSTRAINT,
                format!("{} with no encryption-context constraint", ops.join(", ")),
                Vec::new(),
            );
        }
        if g.creation_seen && !service_made(g) {
            let creator =
                g.created_by.as_ref().and_then(|a| a.principal.clone()).unwrap_or_else(|| "unknown".into());
            push(HUMAN_CREATED, format!("created by {creator} directly, not by an AWS service"), Vec::new());
        }
        let active = g.state == GrantState::Active;
        if let (true, Some(created)) = (active, g.created_at) {
            let days = (inputs.now - created) / 86_400;
            if days > cfg.max_active_days {
                push(
                    LONG_LIVED,
                    format!("active for {days} days (allowed: {})", cfg.max_active_days),
                    Vec::new(),
                );
            }
        }
        if let (true, Some(expiry)) = (active, g.spec.name.as_deref().and_then(date_in_name))
            && expiry < inputs.now
        {
            push(
                NAME_EXPIRED,
                format!(
                    "named {:?}, which says it expired on {}",
                    g.spec.name.as_deref().unwrap_or_default(),
                    &timestamp::format(expiry)[..10]
                ),
                Vec::new(),
            );
        }
        let used = inputs.uses.get(&(g.key_arn.clone(), g.grant_id.clone()));
        if active
            && g.creation_seen
            && used.is_none_or(|u| u.calls == 0)
            && g.created_at.is_some_and(|c| inputs.now - c > 86_400)
        {
            push(NEVER_USED, "no call was covered by this grant".into(), Vec::new());
        }
        if let Some(u) = used.filter(|u| u.calls > 0) {
            let unused: Vec<&str> = ops
                .iter()
                .copied()
                .filter(|o| CRYPTO_OPS.contains(o) && !u.operations.contains(*o))
                .collect();
            if !unused.is_empty() {
                push(UNUSED_OPERATIONS, format!("never used for {}", unused.join(", ")), Vec::new());
            }
            if !u.self_grant_calls.is_empty() {
                push(
                    SELF_GRANT,
                    format!("{grantee} was denied, granted itself access, then succeeded"),
                    g.create_event_ids.iter().chain(&u.self_grant_calls).cloned().collect(),
                );
            }
        }
        if active {
            let twin = inputs.grants.iter().find(|o| {
                o.grant_id != g.grant_id
                    && o.key_arn == g.key_arn
                    && o.state != GrantState::Active
                    && o.creation_seen
                    && o.spec == g.spec
            });
            if let Some(t) = twin {
                push(
                    DUPLICATE_LEFTOVER,
                    format!("identical to grant {}, which was {}", t.grant_id, t.state.as_str()),
                    g.create_event_ids.iter().chain(&t.end_event_ids).cloned().collect(),
                );
            }
            if let Some(resource) = grantee.strip_prefix("arn:").and_then(|r| r.splitn(5, ':').nth(4)) {
                let kind = resource.split('/').next().unwrap_or_default();
                let name = resource.rsplit('/').next().unwrap_or_default();
                let deletion = inputs.principal_deletions.iter().find(|e| {
                    e.succeeded()
                        && ((kind == "role" && e.event_name == "DeleteRole")
                            || (kind == "user" && e.event_name == "DeleteUser"))
                        && e.details.target.as_deref() == Some(&format!("{kind}/{name}"))
                        && g.created_at.is_none_or(|c| e.event_time > c)
                        && (e.recipient_account_id.as_deref() == arn_account(grantee)
                            || e.caller.account_id.as_deref() == arn_account(grantee))
                });
                if let Some(d) = deletion {
                    push(
                        GRANTEE_DELETED,
                        format!(
                            "{grantee} was deleted at {} and the grant is still active",
                            timestamp::format(d.event_time)
                        ),
                        g.create_event_ids.iter().cloned().chain([d.event_id.clone()]).collect(),
                    );
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (b.rule.severity, a.rule.id, &a.key_arn, &a.grant_id).cmp(&(
            a.rule.severity,
            b.rule.id,
            &b.key_arn,
            &b.grant_id,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    const DAY: i64 = 86_400;

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

    fn rules_fired(
        grants: &[Grant],
        calls: &[CoveredCall],
        config: &RulesConfig,
        now: i64,
    ) -> Vec<(&'static str, String)> {
        let uses = grant_uses(grants, calls);
        let inputs = FindingInputs { grants, uses: &uses, principal_deletions: &[], config, now };
        evaluate(&inputs).into_iter().map(|f| (f.rule.id, f.grant_id)).collect()
    }

    fn used(g: &Grant, ops: &[&str]) -> Vec<CoveredCall> {
        ops.iter()
            .map(|o| CoveredCall {
                key_arn: g.key_arn.clone(),
                grant_id: g.grant_id.clone(),
                operation: Some(o.to_string()),
                label: "grant_covered".into(),
                principal: g.spec.grantee_principal.clone(),
                event_id: format!("call-{o}"),
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
        let cfg = RulesConfig::default();
        let fired = |g: &Grant, calls: &[CoveredCall], now: i64| -> Vec<&'static str> {
            rules_fired(std::slice::from_ref(g), calls, &cfg, now).into_iter().map(|(r, _)| r).collect()
        };
        let base = grant("g", "arn:aws:iam::111122223333:role/app", &["Decrypt"]);
        let calls = used(&base, &["Decrypt"]);

        let foreign = grant("g", "arn:aws:iam::444455556666:role/app", &["Decrypt"]);
        assert_eq!(fired(&foreign, &used(&foreign, &["Decrypt"]), DAY), vec!["GT001"]);
        let trusted = RulesConfig { trusted_accounts: vec!["444455556666".into()], ..RulesConfig::default() };
        assert!(
            rules_fired(std::slice::from_ref(&foreign), &used(&foreign, &["Decrypt"]), &trusted, DAY)
                .is_empty()
        );

        let delegating = grant("g", "arn:aws:iam::111122223333:role/app", &["Decrypt", "CreateGrant"]);
        assert_eq!(fired(&delegating, &calls, DAY), vec!["GT002"]);

        let everything = grant("g", "arn:aws:iam::111122223333:role/app", &CRYPTO_OPS);
        assert!(fired(&everything, &used(&everything, &CRYPTO_OPS), DAY).contains(&"GT003"));

        let mut open = base.clone();
        open.spec.constraints = None;
        assert_eq!(fired(&open, &calls, DAY), vec!["GT004"]);
        let mut service = open.clone();
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

        let mut self_made = base.clone();
        if let Some(a) = self_made.created_by.as_mut() {
            a.principal = Some("arn:aws:sts::111122223333:assumed-role/app/s1".into());
        }
        self_made.spec.grantee_principal = Some("arn:aws:iam::111122223333:role/app".into());
        let mut escalated = used(&self_made, &["Decrypt"]);
        escalated[0].label = "grant_only_likely".into();
        escalated[0].principal = Some("arn:aws:sts::111122223333:assumed-role/app/s2".into());
        assert!(fired(&self_made, &escalated, DAY).contains(&"GT012"));
        assert!(!fired(&self_made, &used(&self_made, &["Decrypt"]), DAY).contains(&"GT012"));
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
    fn ids_are_stable() {
        assert_eq!(stable_id(&["GT001", "k", "g"]), stable_id(&["GT001", "k", "g"]));
        assert_ne!(stable_id(&["GT001", "k", "g"]), stable_id(&["GT001", "kg", ""]));
    }
}
