//! Findings: grants a security team should look at, each from a named rule with a severity,
//! the reason it matters, a remediation, and the events that prove it.
//!
//! Findings are derived from rebuilt grants and their use, so they are as order-independent
//! as the grants; each has a stable id (the same grant gives the same finding on every run).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::classify::Label;
use crate::event::{KmsEvent, arn_account};
use crate::lifecycle::{Grant, GrantState, logical_events};
use crate::matching::{Coverage, Tri, World, call_sides, covers, grant_operation};
use crate::settings::Settings;
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
    why: "A grant this broad is rarely needed; one compromised grantee can do everything the key is for (encrypt, decrypt and generate data keys; or sign and verify; or generate and verify MACs).",
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

pub const DELEGATED: Rule = Rule {
    id: "GT013",
    severity: Severity::Medium,
    title: "Grant created through another grant (delegation chain)",
    why: "The creator held CreateGrant only through a grant: this grant appears in no policy and was chosen by a grantee, not by the key's administrators.",
};
pub const ESCALATION: Rule = Rule {
    id: "GT014",
    severity: Severity::Medium,
    title: "Denied principal succeeded through a grant that appeared after the denial",
    why: "The policies refused this principal; a grant made afterwards let the same operation succeed. Access the policies deny was given around them.",
};
pub const USED_AFTER_END: Rule = Rule {
    id: "GT015",
    severity: Severity::Medium,
    title: "Calls the grant allowed kept succeeding after it was retired or revoked",
    why: "Ending the grant did not end the access: beyond the consistency window the former grantee still succeeds at what the grant allowed, so another path (a policy, or a grant the logs do not show) still allows it.",
};

pub const RULES: [Rule; 15] = [
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
    DELEGATED,
    ESCALATION,
    USED_AFTER_END,
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
    /// What the hygiene rules say about grants AWS services made for themselves.
    pub service_grants: ServiceGrants,
}

/// Whether the hygiene rules ([`SERVICE_QUIET_RULES`]) report grants an AWS service made
/// ([`service_made`]): services create them by the thousand, for volumes, tables and tasks,
/// and retire them themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceGrants {
    /// Not reported (the default).
    #[default]
    Ignore,
    /// Reported at low severity, for an inventory.
    Report,
}

/// The rules that are about a grant's hygiene (what it allows, how long it lives, whether it
/// is used) rather than about who holds it: quiet on grants AWS services made, by
/// [`ServiceGrants`].
pub const SERVICE_QUIET_RULES: &[&str] = &["GT002", "GT003", "GT006", "GT007", "GT008", "GT009"];

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
            service_grants: ServiceGrants::Ignore,
        }
    }
}

/// How a grant was used, from the call labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantUse {
    /// Calls the grant covered (certainly or possibly).
    pub calls: u64,
    pub operations: BTreeSet<String>,
    /// Calls it covered that the evidence shows succeeded only through a grant (labels
    /// `grant_only_likely` and `grant_only`).
    pub grant_only_calls: Vec<GrantOnlyCall>,
    /// `CreateGrant` calls it covered: grants that may have been created through it, by the
    /// eventID of their creation, and whether the coverage was certain.
    pub delegations: Vec<(String, bool)>,
}

/// A call that succeeded only through a grant, as far as the evidence shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOnlyCall {
    pub event_id: String,
    pub operation: Option<String>,
    pub principal: Option<String>,
}

/// A day in seconds: the shortest history that can show a grant was never used.
const DAY: i64 = 86_400;

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

/// One labelled call a grant covered, as the store lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredCall {
    pub key_arn: String,
    pub grant_id: String,
    pub operation: Option<String>,
    pub label: Label,
    pub principal: Option<String>,
    pub event_id: String,
    /// The call's flags (`policy_path_proven` marks a CreateGrant that went beyond the grants
    /// listed with it, so none of them was used).
    pub flags: Vec<String>,
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

/// Sums up how each grant was used, from the labels alone (`_grants` is kept so callers need
/// not change; the labels now carry everything the rules need).
pub fn grant_uses(_grants: &[Grant], calls: &[CoveredCall]) -> BTreeMap<(String, String), GrantUse> {
    let mut uses: BTreeMap<(String, String), GrantUse> = BTreeMap::new();
    for c in calls {
        // A CreateGrant that asked for more than these grants may delegate was not made
        // through them (R-D4): it is no use of theirs. Nor is a call no known grant covers,
        // listed with the grants of unknown attributes that might have.
        if c.flags.iter().any(|f| f == "policy_path_proven") || c.label == Label::NoGrantUnknownGrants {
            continue;
        }
        let u = uses.entry((c.key_arn.clone(), c.grant_id.clone())).or_default();
        u.calls += 1;
        u.operations.extend(c.operation.clone());
        if c.label.is_grant_only() {
            u.grant_only_calls.push(GrantOnlyCall {
                event_id: c.event_id.clone(),
                operation: c.operation.clone(),
                principal: c.principal.clone(),
            });
        }
        if c.operation.as_deref() == Some("CreateGrant") {
            u.delegations.push((c.event_id.clone(), c.label != Label::GrantCoveredUncertain));
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
    // Each part ends with a NUL so that ("ab", "c") and ("a", "bc") differ.
    let h = crate::fnv1a(parts.iter().flat_map(|p| p.bytes().chain([0u8])));
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

/// An AWS service acted: the creation was made through a service (`invokedBy`, the trace a
/// `kms:GrantIsForAWSResource` creation leaves), by a service principal or from a service's
/// address, or the grant is for a service or infrastructure principal
/// (`acct:aws:ec2-infrastructure:i-...`) or retired by a service.
fn service_made(g: &Grant) -> bool {
    let by_service = g.created_by.as_ref().is_some_and(|a| {
        a.service.is_some()
            || a.principal.as_deref().is_some_and(is_service_principal)
            || a.source_ip.as_deref().is_some_and(is_service_principal)
    });
    let grantee = g.spec.grantee_principal.as_deref().unwrap_or_default();
    let retiring = g.spec.retiring_principal.as_deref().unwrap_or_default();
    // Infrastructure principals look like `111122223333:aws:ec2-infrastructure:i-...`.
    by_service
        || is_service_principal(grantee)
        || is_service_principal(retiring)
        || (!grantee.starts_with("arn:") && grantee.contains(":aws:"))
}

/// What to do about a finding on a grant a service made: not revoke it.
fn service_remediation(g: &Grant) -> String {
    let who = g
        .spec
        .retiring_principal
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p} retires it"))
        .unwrap_or_else(|| "the service retires it".to_string());
    let grantee = g.spec.grantee_principal.as_deref().unwrap_or("an AWS service");
    format!(
        "do not revoke: an AWS service made this grant for {grantee} to use the key for a resource it manages, and {who} when the resource goes; review the resource, not the grant"
    )
}

/// The kind of key a grant's operations show (R-O2: no key type accepts every operation),
/// and the cryptographic operations that kind of key supports in a grant (R-O3).
fn key_kind(ops: &[&str]) -> Option<(&'static str, &'static [&'static str])> {
    const SIGN: &[&str] = &["Sign", "Verify", "GetPublicKey"];
    const MAC: &[&str] = &["GenerateMac", "VerifyMac"];
    const AGREEMENT: &[&str] = &["DeriveSharedSecret", "GetPublicKey"];
    const KEM: &[&str] = &["Encapsulate", "Decapsulate", "GetPublicKey"];
    const RSA_ENCRYPT: &[&str] = &["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"];
    let has = |set: &[&str]| ops.iter().any(|o| set.contains(o));
    if ops.iter().any(|o| o.starts_with("GenerateDataKey")) {
        Some(("symmetric encryption", &CRYPTO_OPS))
    } else if has(&["Sign", "Verify"]) {
        Some(("signing", SIGN))
    } else if has(MAC) {
        Some(("HMAC", MAC))
    } else if has(&["DeriveSharedSecret"]) {
        Some(("key agreement", AGREEMENT))
    } else if has(&["Encapsulate", "Decapsulate"]) {
        Some(("key encapsulation", KEM))
    } else if has(&["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo"]) {
        if ops.contains(&"GetPublicKey") {
            Some(("asymmetric encryption", RSA_ENCRYPT))
        } else {
            Some(("symmetric encryption", &CRYPTO_OPS))
        }
    } else {
        None
    }
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

/// What coverage needs to know beyond a grant, from the findings inputs.
struct Facts<'a> {
    principal_deletions: &'a [KmsEvent],
}

impl World for Facts<'_> {
    fn key_is_non_symmetric(&self, _key_arn: &str) -> bool {
        false
    }

    fn principal_deleted_between(&self, principal_arn: &str, from: i64, to: i64) -> bool {
        crate::classify::principal_deleted_between(self.principal_deletions.iter(), principal_arn, from, to)
    }
}

/// At most this many calls are listed as evidence of one finding.
const MAX_CALL_EVIDENCE: usize = 10;

/// Calls of one key (in time order), indexed by the forms a grantee can name their caller in,
/// so a grant is compared with the calls it may match rather than with every call of its key.
#[derive(Default)]
struct CallIndex {
    calls: Vec<KmsEvent>,
    by_name: BTreeMap<String, Vec<usize>>,
}

impl CallIndex {
    fn add(&mut self, e: KmsEvent) {
        let i = self.calls.len();
        let c = &e.caller;
        let unique_id = c.principal_id.as_deref().and_then(|p| p.split_once(':')).map(|(u, _)| u.to_string());
        let mut names: BTreeSet<String> =
            [c.arn.clone(), c.session_issuer_arn.clone(), c.principal_id.clone(), unique_id]
                .into_iter()
                .flatten()
                .map(|n| n.to_lowercase())
                .collect();
        if let Some(account) = c.account_id.as_deref() {
            names.insert(format!("root:{account}"));
            if c.arn.is_none() && c.session_issuer_arn.is_none() {
                names.insert(format!("reduced:{account}"));
            }
        }
        if let Some(service) = c.invoked_by.as_deref() {
            names.insert(format!("service:{}", service.split('.').next().unwrap_or(service)));
        }
        for name in names {
            self.by_name.entry(name).or_default().push(i);
        }
        self.calls.push(e);
    }

    /// The calls `grantee` may name the caller of (a superset: `covers` decides), in time order.
    fn candidates(&self, grantee: &str) -> Vec<&KmsEvent> {
        let mut names = vec![grantee.to_lowercase()];
        if grantee.starts_with("arn:") {
            if let Some(account) = arn_account(grantee) {
                names.push(format!("reduced:{account}"));
                if grantee.ends_with(":root") {
                    names.push(format!("root:{account}"));
                }
            }
        } else if is_service_principal(grantee) {
            names.push(format!("service:{}", grantee.split('.').next().unwrap_or(grantee)));
        }
        let found: BTreeSet<usize> =
            names.iter().filter_map(|n| self.by_name.get(n)).flatten().copied().collect();
        found.into_iter().filter_map(|i| self.calls.get(i)).collect()
    }
}

/// Indexes built once per evaluation.
struct Context<'a> {
    inputs: &'a FindingInputs<'a>,
    by_id: BTreeMap<(&'a str, &'a str), &'a Grant>,
    by_key: BTreeMap<&'a str, Vec<&'a Grant>>,
    /// `(key, eventID of a CreateGrant)` → the grants that covered it, and how certainly.
    delegated_through: BTreeMap<(&'a str, &'a str), Vec<(&'a str, bool)>>,
    denials_by_key: BTreeMap<&'a str, Vec<&'a KmsEvent>>,
    /// Logical successful calls after grant ends, by the key of each of their sides.
    after_end_by_key: BTreeMap<String, CallIndex>,
    facts: Facts<'a>,
}

impl<'a> Context<'a> {
    fn new(inputs: &'a FindingInputs<'a>) -> Context<'a> {
        let mut by_id = BTreeMap::new();
        let mut by_key: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
        for g in inputs.grants {
            by_id.insert((g.key_arn.as_str(), g.grant_id.as_str()), g);
            by_key.entry(g.key_arn.as_str()).or_default().push(g);
        }
        let mut delegated_through: BTreeMap<(&str, &str), Vec<(&str, bool)>> = BTreeMap::new();
        for ((key, grant_id), u) in inputs.uses {
            for (event_id, certain) in &u.delegations {
                delegated_through
                    .entry((key.as_str(), event_id.as_str()))
                    .or_default()
                    .push((grant_id.as_str(), *certain));
            }
        }
        for parents in delegated_through.values_mut() {
            parents.sort_unstable();
            parents.dedup();
        }
        let mut denials_by_key: BTreeMap<&str, Vec<&KmsEvent>> = BTreeMap::new();
        for d in inputs.denials {
            if d.is_kms()
                && d.error_code.as_deref().is_some_and(|c| c.starts_with("AccessDenied"))
                && let Some(key) = d.key_arn.as_deref()
            {
                denials_by_key.entry(key).or_default().push(d);
            }
        }
        let mut after_end: Vec<KmsEvent> =
            logical_events(inputs.calls_after_end.iter().filter(|e| e.is_kms() && e.succeeded()));
        after_end.sort_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)));
        let mut after_end_by_key: BTreeMap<String, CallIndex> = BTreeMap::new();
        for e in after_end {
            let keys: BTreeSet<String> =
                [e.key_arn.clone(), e.destination_key_arn.clone()].into_iter().flatten().collect();
            for key in keys {
                after_end_by_key.entry(key).or_default().add(e.clone());
            }
        }
        Context {
            inputs,
            by_id,
            by_key,
            delegated_through,
            denials_by_key,
            after_end_by_key,
            facts: Facts { principal_deletions: inputs.principal_deletions },
        }
    }

    /// The grants `g` may have been created through: those that covered its CreateGrant.
    fn parents(&self, g: &Grant) -> Vec<(&'a str, bool)> {
        let mut out: Vec<(&str, bool)> = g
            .create_event_ids
            .iter()
            .filter_map(|id| self.delegated_through.get(&(g.key_arn.as_str(), id.as_str())))
            .flatten()
            .copied()
            .filter(|(p, _)| *p != g.grant_id)
            .collect();
        // Certain parents first, then by id.
        out.sort_by(|a, b| (!a.1, a.0).cmp(&(!b.1, b.0)));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The chain of grants above `g`, nearest first, following the first parent of each.
    fn chain(&self, g: &'a Grant) -> Vec<&'a Grant> {
        let mut chain: Vec<&Grant> = Vec::new();
        let mut seen: BTreeSet<&str> = [g.grant_id.as_str()].into();
        let mut current = g;
        while let Some((parent, _)) = self.parents(current).into_iter().find(|(p, _)| !seen.contains(p)) {
            let Some(p) = self.by_id.get(&(g.key_arn.as_str(), parent)).copied() else { break };
            seen.insert(parent);
            chain.push(p);
            current = p;
        }
        chain
    }

    /// The last AccessDenied of `principal` for `operation` on the key before `before`.
    fn denial_before(
        &self,
        key: &str,
        operation: &str,
        principal: &str,
        before: i64,
    ) -> Option<&'a KmsEvent> {
        let family = principal_family(principal);
        self.denials_by_key
            .get(key)?
            .iter()
            .copied()
            .filter(|d| d.event_time < before)
            .filter(|d| grant_operation(&d.event_name) == Some(operation))
            .filter(|d| d.caller.principal().map(principal_family).as_deref() == Some(family.as_str()))
            .max_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)))
    }

    /// Calls after `g` ended (beyond the consistency window) that `g` would have covered had
    /// it stayed active, and that no other grant covers (or may cover).
    fn calls_after_end(&self, g: &Grant) -> Vec<&KmsEvent> {
        let settings = self.inputs.settings;
        let (Some(ended), true) = (g.ended_at, g.creation_seen) else { return Vec::new() };
        if !matches!(g.state, GrantState::Retired | GrantState::Revoked) {
            return Vec::new();
        }
        let Some(grantee) = g.spec.grantee_principal.as_deref() else { return Vec::new() };
        let Some(index) = self.after_end_by_key.get(&g.key_arn) else { return Vec::new() };
        let calls = index.candidates(grantee);
        let mut open = g.clone();
        open.state = GrantState::Active;
        open.ended_at = None;
        let others: Vec<&Grant> = self
            .by_key
            .get(g.key_arn.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|o| o.grant_id != g.grant_id)
            .collect();
        let delta = settings.consistency_window_seconds;
        calls
            .into_iter()
            .filter(|e| e.event_time >= ended + delta)
            .filter(|e| {
                call_sides(e).into_iter().filter_map(|(_, side)| side).any(|side| {
                    side.key_arn == g.key_arn
                        && covers(&open, &side, &self.facts, settings).tri() == Some(Tri::Yes)
                        && others.iter().all(|o| match covers(o, &side, &self.facts, settings) {
                            Coverage::Unknown => o.ended_at.is_some_and(|end| e.event_time >= end + delta),
                            Coverage::Known(tri, _) => tri == Tri::No,
                        })
                })
            })
            .collect()
    }
}

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
            rules_fired(std::slice::from_ref(&foreign), &used(&foreign, &["Decrypt"]), &trusted, DAY)
                .is_empty()
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
        let by_admin =
            by_hand(grant("g", APP, &["Decrypt"]), "arn:aws:sts::111122223333:assumed-role/Admin/a");
        let calls = [grant_only(&by_admin, "Decrypt", "ok")];
        let found = evaluate_with(std::slice::from_ref(&by_admin), &calls, &denied, &cfg, DAY);
        assert_eq!(ids(&found), vec!["GT005", "GT014"]);
        assert_eq!(found[1].event_ids, vec!["denied", "create-g", "ok"], "denial, grant, success");
        assert!(
            found[1].detail.contains("was denied Decrypt at 1970-01-01T00:08:20Z"),
            "{}",
            found[1].detail
        );

        // The principal made the grant itself: GT012 only.
        let self_made =
            by_hand(grant("g", APP, &["Decrypt"]), "arn:aws:sts::111122223333:assumed-role/app/s1");
        let calls = [grant_only(&self_made, "Decrypt", "ok")];
        let found = evaluate_with(std::slice::from_ref(&self_made), &calls, &denied, &cfg, DAY);
        assert_eq!(ids(&found), vec!["GT012", "GT005"]);

        // Close variants that are no escalation.
        let covered_only =
            [CoveredCall { label: Label::GrantCovered, ..grant_only(&by_admin, "Decrypt", "ok") }];
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
        let found =
            evaluate_with(std::slice::from_ref(&g), &used(&g, &all), &Events::default(), &report, DAY);
        let every = found.iter().find(|f| f.rule.id == "GT003").unwrap();
        assert!(
            every.detail.contains("every operation a symmetric encryption key supports"),
            "{}",
            every.detail
        );

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
        let readme = include_str!("../../../README.md");
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
}
