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
//! - `last_usage`: GT105, against `aws kms get-key-last-usage`;
//! - `integrity`: GT106-GT108, from what CloudTrail's digests say of the log files.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::KmsEvent;
use crate::lifecycle::{Grant, GrantState};
use crate::settings::Settings;
use crate::timestamp;

mod config;
mod context;
pub mod integrity;
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
use rules::CHECKS;
use service::{service_made, service_remediation};

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
        let subject = Subject::new(g, inputs, &ctx);
        let mut hits = Vec::new();
        for check in CHECKS {
            check(&subject, &mut hits);
        }
        out.extend(hits.into_iter().filter_map(|hit| subject.finding(hit, cfg)));
    }
    sort(&mut out);
    out
}

/// What a rule found on one grant: the finding's sentence, the events that show it (none: the
/// grant's own creation and end), and a remediation when the default is not the right one.
pub(crate) struct Hit {
    rule: Rule,
    detail: String,
    event_ids: Vec<String>,
    remediation: Option<String>,
}

impl Hit {
    fn new(rule: Rule, detail: String) -> Hit {
        Hit { rule, detail, event_ids: Vec::new(), remediation: None }
    }

    fn citing(self, event_ids: Vec<String>) -> Hit {
        Hit { event_ids, ..self }
    }

    fn advising(self, remediation: Option<String>) -> Hit {
        Hit { remediation, ..self }
    }
}

/// One grant and what every rule may read about it.
pub(crate) struct Subject<'a> {
    g: &'a Grant,
    inputs: &'a FindingInputs<'a>,
    ctx: &'a Context<'a>,
    ops: Vec<&'a str>,
    grantee: &'a str,
    creator: String,
    active: bool,
    by_service: bool,
    used: Option<&'a GrantUse>,
    /// What to do about an active grant by default: revoke it, unless a service made it.
    revoke: String,
}

impl<'a> Subject<'a> {
    fn new(g: &'a Grant, inputs: &'a FindingInputs<'a>, ctx: &'a Context<'a>) -> Subject<'a> {
        let by_service = service_made(g);
        Subject {
            g,
            inputs,
            ctx,
            ops: g.spec.operations.iter().flatten().map(String::as_str).collect(),
            grantee: g.spec.grantee_principal.as_deref().unwrap_or_default(),
            creator: g
                .created_by
                .as_ref()
                .and_then(|a| a.principal.clone())
                .unwrap_or_else(|| "unknown".into()),
            active: g.state == GrantState::Active,
            by_service,
            used: inputs.uses.get(&(g.key_arn.clone(), g.grant_id.clone())),
            revoke: if by_service {
                service_remediation(g)
            } else {
                format!("aws kms revoke-grant --key-id {} --grant-id {}", g.key_arn, g.grant_id)
            },
        }
    }

    /// The finding a hit makes, unless its rule is off, or it is a hygiene rule on a grant a
    /// service made and those are ignored (reported, they are of low severity).
    fn finding(&self, hit: Hit, cfg: &RulesConfig) -> Option<Finding> {
        let g = self.g;
        if cfg.disabled_rules.iter().any(|d| d == hit.rule.id) {
            return None;
        }
        let quiet = self.by_service && SERVICE_QUIET_RULES.contains(&hit.rule.id);
        if quiet && cfg.service_grants == ServiceGrants::Ignore {
            return None;
        }
        let rule = if quiet { Rule { severity: Severity::Low, ..hit.rule } } else { hit.rule };
        let mut event_ids = hit.event_ids;
        if event_ids.is_empty() {
            event_ids = g.create_event_ids.iter().chain(&g.end_event_ids).cloned().collect();
        }
        let mut seen = BTreeSet::new();
        event_ids.retain(|id| seen.insert(id.clone()));
        let remediation = hit.remediation.unwrap_or_else(|| {
            if self.active {
                self.revoke.clone()
            } else {
                "none needed: the grant has ended; review how it came to exist".to_string()
            }
        });
        Some(Finding {
            id: stable_id(&[rule.id, &g.key_arn, &g.grant_id]),
            rule,
            key_arn: g.key_arn.clone(),
            grant_id: g.grant_id.clone(),
            grantee_principal: g.spec.grantee_principal.clone(),
            detail: hit.detail,
            remediation,
            event_ids,
            observed_at: g.created_at.or(g.ended_at),
        })
    }
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
