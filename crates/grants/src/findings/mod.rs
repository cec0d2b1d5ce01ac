//! Findings: grants a security team should look at, each from a named rule with a severity,
//! the reason it matters, a remediation, and the events that prove it.
//!
//! Findings are derived from rebuilt grants and their use, so they are as order-independent
//! as the grants; each has a stable id (the same grant gives the same finding on every run).
//!
//! - `rules`: the rules (GT001-GT015), one function each;
//! - `service`: which grants AWS services made for themselves, and what is said about them;
//! - `uses`: the calls each grant covered, as the rules read them;
//! - `context`: what the rules look up beyond a grant (denials, parents, calls after an end);
//! - `config`: `[findings]` in granttrail.toml;
//! - `reconcile`: GT101-GT104, against `aws kms list-grants`;
//! - `last_usage`: GT105, against `aws kms get-key-last-usage`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::{KmsEvent, arn_account};
use crate::lifecycle::{Grant, GrantState};
use crate::settings::Settings;
use crate::timestamp;

mod config;
mod context;
pub mod last_usage;
pub mod reconcile;
mod rules;
mod service;
mod uses;

pub use config::RulesConfig;
pub use rules::*;
pub use service::{SERVICE_QUIET_RULES, ServiceGrants};
pub use uses::{CoveredCall, GrantOnlyCall, GrantUse, grant_uses};

use context::{Context, MAX_CALL_EVIDENCE};
use rules::{CRYPTO_OPS, date_in_name, key_kind};
use service::{service_made, service_remediation};
use uses::principal_family;

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
    // Each part ends with a NUL so that ("ab", "c") and ("a", "bc") differ.
    let h = crate::fnv1a(parts.iter().flat_map(|p| p.bytes().chain([0u8])));
    format!("gtf-{h:016x}")
}

/// One piece of evidence behind a finding: a CloudTrail event and the object it came from, or
/// the imported file (list-grants, key last usage) it compares with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// The object (log file, `s3://` object, imported file) the evidence was read from.
    pub object: Option<String>,
    /// For an imported file (a list-grants snapshot, a key's last usage): when it was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_at: Option<String>,
}

/// A finding as every interface shows it: `findings --format json`, the report's JSON and the
/// Lambda's SNS message. A stable interface: add fields, never rename or remove them (a test
/// pins the shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingView {
    pub id: String,
    pub rule_id: &'static str,
    pub severity: &'static str,
    pub title: &'static str,
    pub why: &'static str,
    pub detail: String,
    pub remediation: String,
    pub key_arn: String,
    pub grant_id: String,
    pub grant_name: Option<String>,
    pub grantee_principal: Option<String>,
    /// RFC 3339 UTC.
    pub observed_at: Option<String>,
    pub event_ids: Vec<String>,
    pub evidence: Vec<Evidence>,
    /// The reference time the finding was evaluated at (RFC 3339 UTC).
    pub as_of: String,
}

impl FindingView {
    pub fn new(f: &Finding, grant_name: Option<String>, evidence: Vec<Evidence>, as_of: i64) -> FindingView {
        FindingView {
            id: f.id.clone(),
            rule_id: f.rule.id,
            severity: f.rule.severity.as_str(),
            title: f.rule.title,
            why: f.rule.why,
            detail: f.detail.clone(),
            remediation: f.remediation.clone(),
            key_arn: f.key_arn.clone(),
            grant_id: f.grant_id.clone(),
            grant_name,
            grantee_principal: f.grantee_principal.clone(),
            observed_at: f.observed_at.map(timestamp::format),
            event_ids: f.event_ids.clone(),
            evidence,
            as_of: timestamp::format(as_of),
        }
    }
}

/// Everything the rules look at.
pub struct FindingInputs<'a> {
    pub grants: &'a [Grant],
    /// Use of each grant, by `(key ARN, grant id)`.
    pub uses: &'a BTreeMap<(String, String), GrantUse>,
    /// IAM `DeleteRole` / `DeleteUser` events.
    pub principal_deletions: &'a [KmsEvent],
    /// KMS calls refused with `AccessDenied*` (escalation rules).
    pub denials: &'a [KmsEvent],
    /// Successful KMS calls on the keys of ended grants, after those ends (GT015). A superset
    /// does no harm: the rule checks times, principals, operations and constraints itself.
    pub calls_after_end: &'a [KmsEvent],
    /// The matching settings the labels were computed with (consistency window, ...).
    pub settings: &'a Settings,
    pub config: &'a RulesConfig,
    /// The time "now" for age-based rules.
    pub now: i64,
    /// The time of the latest logged event: a grant is "never used" only when the logs cover
    /// at least a day after its creation.
    pub logs_end: Option<i64>,
}

/// A day in seconds: the shortest history that can show a grant was never used.
const DAY: i64 = 86_400;

/// Runs every enabled rule over every grant.
pub fn evaluate(inputs: &FindingInputs<'_>) -> Vec<Finding> {
    let cfg = inputs.config;
    let ctx = Context::new(inputs);
    let mut out = Vec::new();
    for g in inputs.grants.iter().filter(|g| !cfg.allowed(g)) {
        let by_service = service_made(g);
        let revoke = if by_service {
            service_remediation(g)
        } else {
            format!("aws kms revoke-grant --key-id {} --grant-id {}", g.key_arn, g.grant_id)
        };
        let mut push =
            |rule: Rule, detail: String, mut event_ids: Vec<String>, remediation: Option<String>| {
                if cfg.disabled_rules.iter().any(|d| d == rule.id) {
                    return;
                }
                let quiet = by_service && SERVICE_QUIET_RULES.contains(&rule.id);
                if quiet && cfg.service_grants == ServiceGrants::Ignore {
                    return;
                }
                let rule = if quiet { Rule { severity: Severity::Low, ..rule } } else { rule };
                if event_ids.is_empty() {
                    event_ids = g.create_event_ids.iter().chain(&g.end_event_ids).cloned().collect();
                }
                let mut seen = BTreeSet::new();
                event_ids.retain(|id| seen.insert(id.clone()));
                let remediation = remediation.unwrap_or_else(|| {
                    if g.state == GrantState::Active {
                        revoke.clone()
                    } else {
                        "none needed: the grant has ended; review how it came to exist".to_string()
                    }
                });
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
                    None,
                );
                break;
            }
        }
        let ops: Vec<&str> = g.spec.operations.iter().flatten().map(String::as_str).collect();
        if ops.contains(&"CreateGrant") {
            push(REDELEGATION, format!("{grantee} may create grants on the key"), Vec::new(), None);
        }
        let kind = key_kind(&ops);
        if let Some((kind_name, supported)) = kind
            && supported.iter().all(|o| ops.contains(o))
        {
            let everything = ["CreateGrant", "DescribeKey", "RetireGrant"].iter().all(|o| ops.contains(o));
            let detail = if everything {
                format!("{grantee} may use every operation a {kind_name} key supports, CreateGrant included")
            } else {
                format!("{grantee} may use every cryptographic operation of a {kind_name} key")
            };
            push(ALL_OPERATIONS, detail, Vec::new(), None);
        }
        // Encryption-context constraints only apply to symmetric encryption keys.
        let crypto = ops.iter().any(|o| CRYPTO_OPS.contains(o))
            && kind.is_none_or(|(name, _)| name == "symmetric encryption");
        let constrained = g.spec.constraints.as_ref().is_some_and(|c| {
            c.encryption_context_equals.is_some()
                || c.encryption_context_subset.is_some()
                || c.source_arn.is_some()
        });
        if g.creation_seen && crypto && !constrained && !by_service {
            push(
                NO_CONSTRAINT,
                format!("{} with no encryption-context constraint", ops.join(", ")),
                Vec::new(),
                None,
            );
        }
        let creator =
            g.created_by.as_ref().and_then(|a| a.principal.clone()).unwrap_or_else(|| "unknown".into());
        if g.creation_seen && !by_service {
            push(
                HUMAN_CREATED,
                format!("created by {creator} directly, not by an AWS service"),
                Vec::new(),
                None,
            );
        }
        let active = g.state == GrantState::Active;
        if let (true, Some(created)) = (active, g.created_at) {
            let days = (inputs.now - created) / DAY;
            if days > cfg.max_active_days {
                push(
                    LONG_LIVED,
                    format!("active for {days} days (allowed: {})", cfg.max_active_days),
                    Vec::new(),
                    None,
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
                None,
            );
        }
        let used = inputs.uses.get(&(g.key_arn.clone(), g.grant_id.clone()));
        if active
            && g.creation_seen
            && used.is_none_or(|u| u.calls == 0)
            && g.created_at
                .is_some_and(|c| inputs.now - c > DAY && inputs.logs_end.is_some_and(|end| end - c >= DAY))
        {
            push(NEVER_USED, "no call was covered by this grant".into(), Vec::new(), None);
        }
        if let Some(u) = used.filter(|u| u.calls > 0) {
            let unused: Vec<&str> = ops
                .iter()
                .copied()
                .filter(|o| CRYPTO_OPS.contains(o) && !u.operations.contains(*o))
                .collect();
            if !unused.is_empty() {
                push(UNUSED_OPERATIONS, format!("never used for {}", unused.join(", ")), Vec::new(), None);
            }
        }
        // Escalation: denied, then this grant appeared, then the same operation succeeded only
        // through it. A grant the principal made for itself is GT012, any other GT014.
        if let (Some(u), Some(created)) = (used, g.created_at) {
            let creator_family =
                g.created_by.as_ref().and_then(|a| a.principal.as_deref()).map(principal_family);
            let mut escalations: BTreeMap<bool, (Vec<String>, Vec<String>, String)> = BTreeMap::new();
            for c in &u.grant_only_calls {
                let (Some(op), Some(principal)) = (c.operation.as_deref(), c.principal.as_deref()) else {
                    continue;
                };
                let Some(d) = ctx.denial_before(&g.key_arn, op, principal, created) else { continue };
                let self_made = creator_family.as_deref() == Some(principal_family(principal).as_str());
                let entry = escalations.entry(self_made).or_insert_with(|| {
                    let summary = format!(
                        "{principal} was denied {op} at {}, the grant was created at {} by {creator}, then {op} succeeded through it",
                        timestamp::format(d.event_time),
                        timestamp::format(created)
                    );
                    (Vec::new(), Vec::new(), summary)
                });
                entry.0.push(d.event_id.clone());
                if entry.1.len() < MAX_CALL_EVIDENCE {
                    entry.1.push(c.event_id.clone());
                }
            }
            for (self_made, (denials, calls, summary)) in escalations {
                let evidence =
                    denials.into_iter().chain(g.create_event_ids.iter().cloned()).chain(calls).collect();
                let (rule, detail) = if self_made {
                    (SELF_GRANT, format!("{summary}: it granted itself access"))
                } else {
                    (ESCALATION, summary)
                };
                push(rule, detail, evidence, None);
            }
        }
        if g.creation_seen {
            let parents = ctx.parents(g);
            if let Some((_, certain)) = parents.first() {
                let chain = ctx.chain(g);
                let root_creator = chain
                    .last()
                    .and_then(|r| r.created_by.as_ref())
                    .and_then(|a| a.principal.as_deref())
                    .unwrap_or("unknown");
                let links: Vec<&str> = [g.grant_id.as_str()]
                    .into_iter()
                    .chain(chain.iter().map(|p| p.grant_id.as_str()))
                    .collect();
                let mut detail = format!(
                    "created by {creator} {}through grant {}; chain {} (the first created by {root_creator})",
                    if *certain { "" } else { "possibly " },
                    parents[0].0,
                    links.join(" <- "),
                );
                if parents.len() > 1 {
                    let others: Vec<&str> = parents[1..].iter().map(|(p, _)| *p).collect();
                    detail.push_str(&format!("; other candidate parents: {}", others.join(", ")));
                }
                let evidence = g
                    .create_event_ids
                    .iter()
                    .chain(chain.iter().flat_map(|p| p.create_event_ids.iter()))
                    .cloned()
                    .collect();
                let parent_active = ctx
                    .by_id
                    .get(&(g.key_arn.as_str(), parents[0].0))
                    .is_some_and(|p| p.state == GrantState::Active);
                let remediation = (active && parent_active).then(|| {
                    format!(
                        "{revoke}; and replace the parent without CreateGrant: aws kms revoke-grant --key-id {} --grant-id {}",
                        g.key_arn, parents[0].0
                    )
                });
                push(DELEGATED, detail, evidence, remediation);
            }
        }
        let after_end = ctx.calls_after_end(g);
        if let Some(first) = after_end.first() {
            let ended = g.ended_at.map(timestamp::format).unwrap_or_default();
            let detail = format!(
                "{} call(s) the grant allowed succeeded after it was {} at {ended}, beyond the {}s consistency window (first: {} by {} at {})",
                after_end.len(),
                g.state.as_str(),
                inputs.settings.consistency_window_seconds,
                first.event_name,
                first.caller.principal().unwrap_or("unknown"),
                timestamp::format(first.event_time),
            );
            let evidence = g
                .end_event_ids
                .iter()
                .cloned()
                .chain(after_end.iter().take(MAX_CALL_EVIDENCE).map(|e| e.event_id.clone()))
                .collect();
            let remediation = format!(
                "find the path that still allows {grantee}: aws kms get-key-policy --key-id {} --policy-name default; \
                 its IAM policies; aws kms list-grants --key-id {}",
                g.key_arn, g.key_arn
            );
            push(USED_AFTER_END, detail, evidence, Some(remediation));
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
                    None,
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
                        None,
                    );
                }
            }
        }
    }
    sort(&mut out);
    out
}

/// The order findings are listed in: most severe first, then by rule, key and grant.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (b.rule.severity, a.rule.id, &a.key_arn, &a.grant_id).cmp(&(
            a.rule.severity,
            b.rule.id,
            &b.key_arn,
            &b.grant_id,
        ))
    });
}

#[cfg(test)]
mod tests;
