//! Labels for successful KMS calls: which grants could have authorised each call, and how
//! strongly the logs show that it succeeded *only* through a grant (grant-semantics.md §4.4).
//!
//! A label never claims more than its evidence: `grant_only` needs the key policy in force
//! (L4) or a full evaluation with IAM policies (L5); `grant_only_likely` needs a matching
//! denial with no policy change in between (L3). An active matching grant alone (L1) is only
//! `grant_covered`, because most grants sit on keys whose policies also allow the grantee.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::event::{Caller, GrantSpec, KmsEvent, arn_account};
use crate::iam::IamSnapshot;
use crate::lifecycle::{Grant, logical_events};
use crate::matching::{CallSide, Coverage, Flag, Tri, World, call_sides, covers};
use crate::policy::{Policy, Subject};
use crate::settings::Settings;
use crate::timestamp;

/// The label of one call side (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    NotGrantEligible,
    NoGrant,
    NoGrantUnknownGrants,
    GrantCoveredUncertain,
    GrantCovered,
    GrantOnlyLikely,
    GrantOnly,
    GrantAndPolicy,
}

impl Label {
    pub const ALL: [Label; 8] = [
        Label::NotGrantEligible,
        Label::NoGrant,
        Label::NoGrantUnknownGrants,
        Label::GrantCoveredUncertain,
        Label::GrantCovered,
        Label::GrantOnlyLikely,
        Label::GrantOnly,
        Label::GrantAndPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::NotGrantEligible => "not_grant_eligible",
            Label::NoGrant => "no_grant",
            Label::NoGrantUnknownGrants => "no_grant_unknown_grants",
            Label::GrantCoveredUncertain => "grant_covered_uncertain",
            Label::GrantCovered => "grant_covered",
            Label::GrantOnlyLikely => "grant_only_likely",
            Label::GrantOnly => "grant_only",
            Label::GrantAndPolicy => "grant_and_policy",
        }
    }

    pub fn parse(text: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

/// How strong the evidence behind a label is (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Evidence {
    /// Nothing grant-related (not eligible, or no grant).
    L0,
    /// An active matching grant.
    L1,
    /// A matching grant and a grant token in the request.
    L2,
    /// A denial of the same call while no grant covered it, no policy change since.
    L3,
    /// A success of the same call while no grant covered it: a policy path exists.
    L3Prime,
    /// The key policy in force decides.
    L4,
    /// Key policy and IAM identity policies decide.
    L5,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::L0 => "L0",
            Evidence::L1 => "L1",
            Evidence::L2 => "L2",
            Evidence::L3 => "L3",
            Evidence::L3Prime => "L3'",
            Evidence::L4 => "L4",
            Evidence::L5 => "L5",
        }
    }

    pub fn parse(text: &str) -> Option<Evidence> {
        [
            Evidence::L0,
            Evidence::L1,
            Evidence::L2,
            Evidence::L3,
            Evidence::L3Prime,
            Evidence::L4,
            Evidence::L5,
        ]
        .into_iter()
        .find(|e| e.as_str() == text)
    }
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One sentence of justification and the events behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Reason {
    pub text: String,
    pub event_ids: Vec<String>,
}

/// The classification of one side of one successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLabel {
    /// The call's eventID (the key owner's copy when it was logged in several accounts).
    pub event_id: String,
    pub shared_event_id: Option<String>,
    pub event_time: i64,
    pub event_name: String,
    /// `key`, or for ReEncrypt `source` / `destination`.
    pub side: &'static str,
    pub key_arn: String,
    /// The grant operation this side needed, when one could allow it.
    pub operation: Option<&'static str>,
    pub principal: Option<String>,
    pub label: Label,
    pub evidence: Evidence,
    /// Grants that covered the call (`Yes`), or may have (`Maybe`/unknown) for the uncertain labels.
    pub grant_ids: Vec<String>,
    pub reasons: Vec<Reason>,
    pub flags: Vec<String>,
}

/// A key policy document known from outside the logs (`granttrail import key-policy`).
#[derive(Debug, Clone)]
pub struct ImportedKeyPolicy {
    pub at: i64,
    pub policy: Policy,
    pub source: String,
}

/// An IAM snapshot known from outside the logs (`granttrail import iam`).
#[derive(Debug, Clone)]
pub struct ImportedIam {
    pub account: String,
    pub at: i64,
    pub snapshot: IamSnapshot,
    pub source: String,
}

/// Everything needed to classify the calls on one key.
pub struct KeyInputs<'a> {
    pub key_arn: &'a str,
    /// Grants on this key.
    pub grants: &'a [Grant],
    /// Every stored KMS event whose key or destination key is this key, failures included.
    pub events: &'a [KmsEvent],
    /// Stored IAM and Organizations permission changes.
    pub policy_changes: &'a [KmsEvent],
    pub imported_key_policies: &'a [ImportedKeyPolicy],
    pub imported_iam: &'a [ImportedIam],
    pub settings: &'a Settings,
}

const KEY_POLICY_CHANGES: &[&str] =
    &["PutKeyPolicy", "TagResource", "UntagResource", "CreateAlias", "UpdateAlias", "DeleteAlias"];

fn is_access_denied(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("AccessDenied"))
}

/// The identity calls are grouped by for behavioural evidence: the role behind a session,
/// else the caller's ARN, else its principal id.
fn identity(c: &Caller) -> Option<&str> {
    c.session_issuer_arn.as_deref().or(c.arn.as_deref()).or(c.principal_id.as_deref())
}

/// The role or user name of a caller, as IAM events name it (`role/NAME`, `user/NAME`).
fn iam_target(c: &Caller) -> Option<String> {
    let arn = c.session_issuer_arn.as_deref().or(c.arn.as_deref())?;
    let resource = arn.splitn(6, ':').nth(5)?;
    let name = resource.rsplit('/').next()?;
    if resource.starts_with("role/") {
        Some(format!("role/{name}"))
    } else if resource.starts_with("user/") {
        Some(format!("user/{name}"))
    } else {
        None
    }
}

struct Context<'a> {
    inputs: &'a KeyInputs<'a>,
    calls: Vec<KmsEvent>,
}

impl World for Context<'_> {
    fn key_is_non_symmetric(&self, key_arn: &str) -> bool {
        self.calls.iter().any(|e| {
            e.event_name == "CreateKey"
                && e.succeeded()
                && e.key_arn.as_deref() == Some(key_arn)
                && e.details.key_spec.as_deref().is_some_and(|s| s != "SYMMETRIC_DEFAULT")
        })
    }

    fn principal_deleted_between(&self, principal_arn: &str, from: i64, to: i64) -> bool {
        let Some(resource) = principal_arn.splitn(6, ':').nth(5) else { return false };
        let (kind, deletion) = match resource.split('/').next() {
            Some("role") => ("role", "DeleteRole"),
            Some("user") => ("user", "DeleteUser"),
            _ => return false,
        };
        let target = format!("{kind}/{}", resource.rsplit('/').next().unwrap_or_default());
        let account = arn_account(principal_arn);
        self.inputs.policy_changes.iter().any(|e| {
            e.event_name == deletion
                && e.succeeded()
                && e.details.target.as_deref() == Some(target.as_str())
                && (e.recipient_account_id.as_deref() == account || e.caller.account_id.as_deref() == account)
                && e.event_time > from
                && e.event_time <= to
        })
    }
}

impl Context<'_> {
    fn coverages(&self, side: &CallSide<'_>) -> Vec<(&Grant, Coverage)> {
        self.inputs.grants.iter().map(|g| (g, covers(g, side, self, self.inputs.settings))).collect()
    }

    /// Grants known only from their end that may have been alive at `t`.
    fn unknown_grants_alive(&self, t: i64) -> Vec<&Grant> {
        let delta = self.inputs.settings.consistency_window_seconds;
        self.inputs
            .grants
            .iter()
            .filter(|g| !g.creation_seen && g.ended_at.is_none_or(|end| t < end + delta))
            .collect()
    }

    /// Did anything that can change the policy outcome for this caller on this key happen
    /// between the two times (inclusive)? (§4.4 L3 (b))
    fn policy_changed_between(&self, caller: &Caller, a: i64, b: i64) -> Option<&KmsEvent> {
        let (from, to) = (a.min(b), a.max(b));
        let within = |e: &&KmsEvent| e.succeeded() && e.event_time >= from && e.event_time <= to;
        let on_key = self.calls.iter().filter(within).find(|e| {
            e.is_kms()
                && KEY_POLICY_CHANGES.contains(&e.event_name.as_str())
                && e.key_arn.as_deref() == Some(self.inputs.key_arn)
        });
        if on_key.is_some() {
            return on_key;
        }
        let target = iam_target(caller);
        let account = caller.account_id.as_deref();
        let is_user = target.as_deref().is_some_and(|t| t.starts_with("user/"));
        self.inputs.policy_changes.iter().filter(within).find(|e| {
            if e.event_source == crate::event::ORGANIZATIONS_SOURCE {
                return true;
            }
            let same_account =
                e.recipient_account_id.as_deref() == account || e.caller.account_id.as_deref() == account;
            same_account
                && match e.details.target.as_deref() {
                    Some(t) if t.starts_with("policy/") => true,
                    Some(t) if t.starts_with("group/") => is_user,
                    Some(t) => Some(t) == target.as_deref(),
                    None => true,
                }
        })
    }

    /// The key policy in force at `t`, and the evidence it comes from (§4.4 L4).
    fn key_policy_at(&self, t: i64) -> Option<(Policy, Reason)> {
        let delta = self.inputs.settings.consistency_window_seconds;
        let key = self.inputs.key_arn;
        let changes: Vec<&KmsEvent> = self
            .calls
            .iter()
            .filter(|e| e.succeeded() && e.key_arn.as_deref() == Some(key))
            .filter(|e| e.event_name == "PutKeyPolicy" || e.event_name == "CreateKey")
            .collect();
        let changed_between = |a: i64, b: i64| {
            changes.iter().any(|e| {
                e.event_name == "PutKeyPolicy" && e.event_time > a.min(b) - delta && e.event_time <= a.max(b)
            })
        };
        let imported = self
            .inputs
            .imported_key_policies
            .iter()
            .filter(|p| !changed_between(p.at, t))
            .min_by_key(|p| (p.at - t).abs());
        if let Some(p) = imported {
            let text = format!("key policy imported from {} (as of {})", p.source, timestamp::format(p.at));
            return Some((p.policy.clone(), Reason { text, event_ids: Vec::new() }));
        }
        if changes
            .iter()
            .any(|e| e.event_name == "PutKeyPolicy" && e.event_time > t - delta && e.event_time <= t)
        {
            return None;
        }
        let latest = changes
            .iter()
            .filter(|e| e.event_time <= t - delta)
            .max_by_key(|e| (e.event_time, &e.event_id))?;
        let policy = match &latest.details.policy {
            Some(text) => Policy::parse(text).ok()?,
            None if latest.event_name == "CreateKey" => {
                let account = arn_account(key)?;
                let partition = key.split(':').nth(1).unwrap_or("aws");
                Policy::default_key_policy(account, partition)
            }
            None => return None,
        };
        let text = if latest.details.policy.is_some() {
            format!("key policy set by {} at {}", latest.event_name, timestamp::format(latest.event_time))
        } else {
            format!("default key policy of the key created at {}", timestamp::format(latest.event_time))
        };
        Some((policy, Reason { text, event_ids: vec![latest.event_id.clone()] }))
    }

    /// The IAM snapshot valid for this caller at `t`, if one was imported.
    fn iam_at(&self, caller: &Caller, t: i64) -> Option<&ImportedIam> {
        let account = caller.account_id.as_deref()?;
        self.inputs
            .imported_iam
            .iter()
            .filter(|s| s.account == account && s.snapshot.for_caller(caller).is_some())
            .filter(|s| self.policy_changed_between(caller, s.at, t).is_none())
            .min_by_key(|s| (s.at - t).abs())
    }
}

/// Classifies every successful call on one key (each side whose key it is). Calls with an
/// unknown key are classified by [`classify_keyless`].
pub fn classify_key(inputs: &KeyInputs<'_>) -> Vec<CallLabel> {
    let calls = logical_events(inputs.events.iter().filter(|e| e.is_kms()));
    let ctx = Context { inputs, calls };
    let mut labels = Vec::new();
    for call in ctx.calls.iter().filter(|e| e.succeeded()) {
        for (side_name, side) in call_sides(call) {
            let side_key = match side_name {
                "destination" => call.destination_key_arn.as_deref(),
                _ => call.key_arn.as_deref(),
            };
            if side_key != Some(inputs.key_arn) {
                continue;
            }
            labels.push(match side {
                Some(side) => classify_side(&ctx, side_name, &side),
                None => {
                    base_label(call, side_name, inputs.key_arn, None, Label::NotGrantEligible, Evidence::L0)
                }
            });
        }
    }
    labels
}

/// Successful KMS calls whose key could not be identified (an alias and no `resources`).
pub fn classify_keyless(events: &[KmsEvent]) -> Vec<CallLabel> {
    logical_events(events.iter().filter(|e| e.is_kms() && e.succeeded() && e.key_arn.is_none()))
        .iter()
        .map(|call| {
            let (label, reason) = if crate::matching::grant_operation(&call.event_name).is_some()
                || call.event_name == "ReEncrypt"
            {
                (
                    Label::NoGrantUnknownGrants,
                    "the key could not be identified from the record, so its grants are unknown",
                )
            } else {
                (Label::NotGrantEligible, "no grant can allow this operation")
            };
            let mut l = base_label(call, "key", "", None, label, Evidence::L0);
            l.reasons.push(Reason { text: reason.into(), event_ids: vec![call.event_id.clone()] });
            l
        })
        .collect()
}

fn base_label(
    call: &KmsEvent,
    side: &'static str,
    key: &str,
    operation: Option<&'static str>,
    label: Label,
    evidence: Evidence,
) -> CallLabel {
    CallLabel {
        event_id: call.event_id.clone(),
        shared_event_id: call.shared_event_id.clone(),
        event_time: call.event_time,
        event_name: call.event_name.clone(),
        side,
        key_arn: key.to_string(),
        operation,
        principal: call.caller.principal().map(str::to_string),
        label,
        evidence,
        grant_ids: Vec::new(),
        reasons: Vec::new(),
        flags: Vec::new(),
    }
}

fn flag_names(flags: &BTreeSet<Flag>) -> Vec<String> {
    flags
        .iter()
        .filter_map(|f| serde_json::to_value(f).ok().and_then(|v| v.as_str().map(str::to_string)))
        .collect()
}

/// Can `child` be created through `parent`? Operations must be a subset and constraints at
/// least as strict (R-D1, R-D3).
fn delegation_allowed(parent: &GrantSpec, child: &GrantSpec) -> Tri {
    let ops = match (&parent.operations, &child.operations) {
        (Some(p), Some(c)) => Tri::from_bool(c.iter().all(|op| p.contains(op))),
        _ => Tri::Maybe,
    };
    let subset_of = |small: &BTreeMap<String, String>, big: &BTreeMap<String, String>| {
        small.iter().all(|(k, v)| big.get(k) == Some(v))
    };
    let pc = parent.constraints.clone().unwrap_or_default();
    let cc = child.constraints.clone().unwrap_or_default();
    let constraints = match (&pc.encryption_context_subset, &pc.encryption_context_equals) {
        (None, None) => true,
        (Some(s), None) => match (&cc.encryption_context_subset, &cc.encryption_context_equals) {
            (Some(cs), None) => subset_of(s, cs),
            (None, Some(ce)) => subset_of(s, ce),
            _ => s.is_empty(),
        },
        (None, Some(e)) => {
            cc.encryption_context_subset.is_none() && cc.encryption_context_equals.as_ref() == Some(e)
        }
        (Some(_), Some(_)) => return ops.and(Tri::Maybe),
    };
    ops.and(Tri::from_bool(constraints))
}

fn classify_side(ctx: &Context<'_>, side_name: &'static str, side: &CallSide<'_>) -> CallLabel {
    let call = side.event;
    let mut out =
        base_label(call, side_name, side.key_arn, Some(side.operation), Label::NoGrant, Evidence::L0);
    let mut flags = BTreeSet::new();
    let mut coverages = ctx.coverages(side);

    // A CreateGrant made through a grant may only delegate what that grant allows (R-D4).
    let mut delegation_violated = Vec::new();
    if side.operation == "CreateGrant"
        && let Some(child) = &call.grant_spec
    {
        for (grant, coverage) in coverages.iter_mut() {
            if let Coverage::Known(tri, _) = coverage
                && *tri != Tri::No
            {
                match delegation_allowed(&grant.spec, child) {
                    Tri::No => {
                        delegation_violated.push(grant.grant_id.clone());
                        *tri = Tri::No;
                    }
                    Tri::Maybe => *tri = tri.and(Tri::Maybe),
                    Tri::Yes => {}
                }
            }
        }
    }

    let mut yes = Vec::new();
    let mut maybe = Vec::new();
    for (grant, coverage) in &coverages {
        if let Coverage::Known(tri, f) = coverage {
            match tri {
                Tri::Yes => yes.push(*grant),
                Tri::Maybe => maybe.push(*grant),
                Tri::No => continue,
            }
            flags.extend(f.iter().copied());
        }
    }
    let grant_reason = |g: &Grant, how: &str| Reason {
        text: format!(
            "{how} grant {} (grantee {}, created {})",
            g.grant_id,
            g.spec.grantee_principal.as_deref().unwrap_or("unknown"),
            g.created_at.map(timestamp::format).unwrap_or_else(|| "before the logs".into())
        ),
        event_ids: g.create_event_ids.clone(),
    };

    if yes.is_empty() && maybe.is_empty() {
        if !delegation_violated.is_empty() {
            out.label = Label::GrantAndPolicy;
            out.evidence = Evidence::L3Prime;
            out.grant_ids = delegation_violated.clone();
            out.reasons.push(Reason {
                text: "the new grant asks for more than the caller's grants may delegate, so a policy allowed this CreateGrant".into(),
                event_ids: vec![call.event_id.clone()],
            });
            out.flags = vec!["policy_path_proven".into()];
            return out;
        }
        let unknown = ctx.unknown_grants_alive(call.event_time);
        if unknown.is_empty() {
            out.label = Label::NoGrant;
            out.reasons
                .push(Reason { text: "no grant on the key covers this call".into(), event_ids: Vec::new() });
        } else {
            out.label = Label::NoGrantUnknownGrants;
            out.grant_ids = unknown.iter().map(|g| g.grant_id.clone()).collect();
            out.reasons.push(Reason {
                text: "no known grant covers this call, but grants created before the logs (attributes unknown) may have".into(),
                event_ids: unknown.iter().flat_map(|g| g.end_event_ids.iter().cloned()).collect(),
            });
        }
        return out;
    }
    if yes.is_empty() {
        out.label = Label::GrantCoveredUncertain;
        out.evidence = Evidence::L1;
        out.grant_ids = maybe.iter().map(|g| g.grant_id.clone()).collect();
        out.reasons.extend(maybe.iter().map(|g| grant_reason(g, "may be covered by")));
        out.flags = flag_names(&flags);
        return out;
    }
    out.grant_ids = yes.iter().map(|g| g.grant_id.clone()).collect();
    out.reasons.extend(yes.iter().map(|g| grant_reason(g, "covered by")));
    out.label = Label::GrantCovered;
    out.evidence = if flags.contains(&Flag::TokenPresented) { Evidence::L2 } else { Evidence::L1 };
    // Flags that only explain uncertainty do not belong to a certain coverage.
    flags.retain(|f| matches!(f, Flag::TokenPresented | Flag::EcKeyCaseOnlyMatch));
    out.flags = flag_names(&flags);

    // L4 / L5: what policies allow.
    let action = format!("kms:{}", side.operation);
    if let Some((policy, policy_reason)) = ctx.key_policy_at(call.event_time) {
        let subject = Subject { caller: &call.caller };
        let view = policy.key_policy_view(&subject, &action, side.key_arn);
        let iam = ctx.iam_at(&call.caller, call.event_time);
        let (id_allow, id_deny) = match iam.and_then(|s| s.snapshot.for_caller(&call.caller)) {
            Some(identity) => {
                let verdict = identity.allows(&action, side.key_arn);
                (verdict, Tri::No)
            }
            None => (Tri::Maybe, Tri::No),
        };
        let same_account = call.caller.account_id.as_deref() == arn_account(side.key_arn);
        let allows = if same_account {
            view.direct_allow.or(view.account_allow.and(id_allow))
        } else {
            view.direct_allow.or(view.account_allow).and(id_allow)
        }
        .and(!view.deny)
        .and(!id_deny);
        let evidence = if iam.is_some() { Evidence::L5 } else { Evidence::L4 };
        let mut reasons = vec![policy_reason];
        if let Some(s) = iam {
            reasons.push(Reason {
                text: format!("IAM policies imported from {} (as of {})", s.source, timestamp::format(s.at)),
                event_ids: Vec::new(),
            });
        }
        match allows {
            Tri::No => {
                out.label = Label::GrantOnly;
                out.evidence = evidence;
                reasons[0].text =
                    format!("{}: no statement could allow {action} for this caller", reasons[0].text);
                out.reasons.extend(reasons);
                return out;
            }
            Tri::Yes => {
                out.label = Label::GrantAndPolicy;
                out.evidence = evidence;
                reasons[0].text = format!("{}: a statement allows {action} for this caller", reasons[0].text);
                out.reasons.extend(reasons);
                return out;
            }
            Tri::Maybe => {}
        }
    }

    // L3 and L3': behaviour of the same principal on the same key and operation.
    let me = identity(&call.caller);
    let same_group = |e: &&KmsEvent| {
        e.event_id != call.event_id
            && e.event_name == call.event_name
            && e.event_name != "ReEncrypt"
            && me.is_some()
            && identity(&e.caller) == me
            && e.key_arn.as_deref() == Some(side.key_arn)
    };
    // No known grant could have allowed the other call. A success also needs no grant of
    // unknown attributes alive (it may have come from one); a denial shows that none applied.
    let uncovered = |e: &KmsEvent| -> bool {
        call_sides(e).into_iter().filter_map(|(_, s)| s).all(|s| {
            ctx.coverages(&s).iter().all(|(_, c)| c.tri() != Some(Tri::Yes) && c.tri() != Some(Tri::Maybe))
                && (!e.succeeded() || ctx.unknown_grants_alive(e.event_time).is_empty())
        })
    };
    let same_conditions = |e: &KmsEvent| {
        e.caller.invoked_by == call.caller.invoked_by
            && e.source_ip == call.source_ip
            && e.details.vpc_endpoint_id == call.details.vpc_endpoint_id
            && e.details.encryption_context == call.details.encryption_context
    };
    let denial = ctx.calls.iter().filter(same_group).find(|e| {
        is_access_denied(e.error_code.as_deref())
            && same_conditions(e)
            && uncovered(e)
            && ctx.policy_changed_between(&call.caller, e.event_time, call.event_time).is_none()
    });
    // Conditions can decide a policy either way, so a grant-less success counts only when it
    // was made the same way (same service, address, endpoint and encryption context), too.
    let success = ctx.calls.iter().filter(same_group).find(|e| {
        e.succeeded()
            && same_conditions(e)
            && uncovered(e)
            && ctx.policy_changed_between(&call.caller, e.event_time, call.event_time).is_none()
    });
    match (success, denial) {
        (Some(_), Some(_)) => out.flags.push("conflicting_evidence".into()),
        (Some(s), None) => {
            out.label = Label::GrantAndPolicy;
            out.evidence = Evidence::L3Prime;
            out.reasons.push(Reason {
                text: format!(
                    "the same principal succeeded at {} on this key with no grant covering it, and no policy changed since",
                    timestamp::format(s.event_time)
                ),
                event_ids: vec![s.event_id.clone()],
            });
        }
        (None, Some(d)) => {
            out.label = Label::GrantOnlyLikely;
            out.evidence = Evidence::L3;
            out.reasons.push(Reason {
                text: format!(
                    "the same principal was denied this operation on this key at {} while no grant covered it, and no policy changed since",
                    timestamp::format(d.event_time)
                ),
                event_ids: vec![d.event_id.clone()],
            });
        }
        (None, None) => {}
    }
    out
}
