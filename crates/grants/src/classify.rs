//! Labels for successful KMS calls: which grants could have authorised each call, and how
//! strongly the logs show that it succeeded *only* through a grant (grant-semantics.md §4.4).
//!
//! A label never claims more than its evidence: `grant_only` needs the key policy in force
//! (L4) or a full evaluation with IAM policies (L5); `grant_only_likely` needs a matching
//! denial with no policy change in between (L3). An active matching grant alone (L1) is only
//! `grant_covered`, because most grants sit on keys whose policies also allow the grantee.

use foldhash::{HashMap, HashMapExt};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::event::{Caller, GrantSpec, KmsEvent, arn_account};
use crate::iam::IamSnapshot;
use crate::invalidation::{KEY_POLICY_CHANGES, sets_key_context};
use crate::lifecycle::{Grant, logical_event_refs, logical_events};
use crate::matching::{CallSide, Coverage, Flag, Side, Tri, World, call_sides, covers, outside_lifetime};
use crate::policy::{KeyPolicyView, Policy, Subject};
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

    /// Did the call succeed only through a grant, as far as the evidence shows?
    pub fn is_grant_only(self) -> bool {
        matches!(self, Label::GrantOnly | Label::GrantOnlyLikely)
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

    pub const ALL: [Evidence; 7] = [
        Evidence::L0,
        Evidence::L1,
        Evidence::L2,
        Evidence::L3,
        Evidence::L3Prime,
        Evidence::L4,
        Evidence::L5,
    ];

    pub fn parse(text: &str) -> Option<Evidence> {
        Evidence::ALL.into_iter().find(|e| e.as_str() == text)
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

/// How a label's first reasons name the grants it lists (`grant_ids`), one sentence per grant
/// in the same order. Each sentence needs only its grant, so a store can keep which words were
/// used and render the sentences from the grants when the label is read (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantReasons {
    /// `covered by grant G (grantee P, created T)`: the grant covered the call.
    CoveredBy,
    /// `may be covered by grant G (...)`: the uncertain labels.
    MayBeCoveredBy,
}

impl GrantReasons {
    pub const ALL: [GrantReasons; 2] = [GrantReasons::CoveredBy, GrantReasons::MayBeCoveredBy];

    fn words(self) -> &'static str {
        match self {
            GrantReasons::CoveredBy => "covered by",
            GrantReasons::MayBeCoveredBy => "may be covered by",
        }
    }

    /// The reason naming grant `g` this way: the sentence and the grant's creation events.
    pub fn reason(self, g: &Grant) -> Reason {
        Reason {
            text: format!(
                "{} grant {} (grantee {}, created {})",
                self.words(),
                g.grant_id,
                g.spec.grantee_principal.as_deref().unwrap_or("unknown"),
                g.created_at.map(timestamp::format).unwrap_or_else(|| "before the logs".into())
            ),
            event_ids: g.create_event_ids.clone(),
        }
    }

    /// The way `label`'s reasons start by naming each of its grants in order, rendered from
    /// the grants `grant` finds by id exactly as they stand; `None` when they do not (the
    /// reasons are then kept whole).
    pub fn of<'g>(label: &CallLabel, grant: impl Fn(&str) -> Option<&'g Grant>) -> Option<GrantReasons> {
        let n = label.grant_ids.len();
        if n == 0 || label.reasons.len() < n {
            return None;
        }
        let grants: Vec<&Grant> = label.grant_ids.iter().map(|id| grant(id)).collect::<Option<_>>()?;
        GrantReasons::ALL
            .into_iter()
            .find(|way| grants.iter().zip(&label.reasons).all(|(g, reason)| way.reason(g) == *reason))
    }
}

/// The classification of one side of one successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLabel {
    /// The call's eventID (the key owner's copy when it was logged in several accounts).
    pub event_id: String,
    pub shared_event_id: Option<String>,
    pub event_time: i64,
    pub event_name: String,
    /// [`Side::Key`], or for ReEncrypt the source and destination sides.
    pub side: Side,
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
    /// The behaviour group whose observations this label consulted ([`behaviour_group`]).
    pub behaviour_group: Option<i64>,
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
    /// The stored KMS events whose key or destination key is this key, failures included:
    /// all of them for [`classify_key`]; for a [`KeyClassifier`], at least those for which
    /// [`sets_key_context`] holds.
    pub events: &'a [KmsEvent],
    /// Stored IAM and Organizations permission changes.
    pub policy_changes: &'a [KmsEvent],
    pub imported_key_policies: &'a [ImportedKeyPolicy],
    pub imported_iam: &'a [ImportedIam],
    pub settings: &'a Settings,
}

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

/// Grants of one key, indexed by the grantee forms a caller can match, so a call is compared
/// with a handful of candidates instead of every grant on the key.
struct GrantIndex<'a> {
    /// Lower-cased grantee (ARN, principal id or unique id) to grants.
    by_grantee: HashMap<String, Vec<&'a Grant>>,
    /// Account-root grantees by account.
    roots: HashMap<String, Vec<&'a Grant>>,
    /// Service-principal grantees by service name.
    services: HashMap<String, Vec<&'a Grant>>,
    /// ARN grantees by account, for callers whose copy carries no ARN.
    by_account: HashMap<String, Vec<&'a Grant>>,
    /// Grants whose grantee was not logged: they may match anyone.
    any: Vec<&'a Grant>,
    /// Grants known only from their end (attributes unknown).
    unknown: Vec<&'a Grant>,
}

impl<'a> GrantIndex<'a> {
    fn new(grants: &'a [Grant]) -> GrantIndex<'a> {
        let mut index = GrantIndex {
            by_grantee: HashMap::new(),
            roots: HashMap::new(),
            services: HashMap::new(),
            by_account: HashMap::new(),
            any: Vec::new(),
            unknown: Vec::new(),
        };
        for g in grants {
            if !g.creation_seen {
                index.unknown.push(g);
                continue;
            }
            let Some(grantee) = g.spec.grantee_principal.as_deref() else {
                index.any.push(g);
                continue;
            };
            index.by_grantee.entry(grantee.to_lowercase()).or_default().push(g);
            if grantee.starts_with("arn:") {
                if let Some(account) = arn_account(grantee) {
                    index.by_account.entry(account.to_string()).or_default().push(g);
                    if grantee.ends_with(":root") {
                        index.roots.entry(account.to_string()).or_default().push(g);
                    }
                }
            } else if grantee.contains(".amazonaws.com") {
                let service = grantee.split('.').next().unwrap_or(grantee);
                index.services.entry(service.to_string()).or_default().push(g);
            }
        }
        // Labels list these in this order, whatever order the grants came in.
        index.unknown.sort_by(|a, b| (&a.grant_id, &a.key_arn).cmp(&(&b.grant_id, &b.key_arn)));
        index
    }

    /// Grants that could match this caller in any of the forms `matching` accepts, leaving out
    /// those `dead` says cannot cover the call (a grant that covers `No` changes nothing).
    fn candidates(&self, c: &Caller, dead: impl Fn(&Grant) -> bool) -> Vec<&'a Grant> {
        let mut out: Vec<&'a Grant> = Vec::new();
        let mut add =
            |grants: Option<&Vec<&'a Grant>>| out.extend(grants.into_iter().flatten().filter(|g| !dead(g)));
        let unique_id = c.principal_id.as_deref().and_then(|p| p.split_once(':')).map(|(u, _)| u);
        for name in [c.arn.as_deref(), c.session_issuer_arn.as_deref(), c.principal_id.as_deref(), unique_id]
            .into_iter()
            .flatten()
        {
            add(self.by_grantee.get(&name.to_lowercase()));
        }
        if let Some(account) = c.account_id.as_deref() {
            add(self.roots.get(account));
            if c.arn.is_none() && c.session_issuer_arn.is_none() {
                add(self.by_account.get(account));
            }
        }
        if c.kind.as_deref() == Some("AWSService")
            && let Some(service) = c.invoked_by.as_deref()
        {
            add(self.services.get(service.split('.').next().unwrap_or(service)));
        }
        add(Some(&self.any));
        out.sort_by(|a, b| (&a.grant_id, &a.key_arn).cmp(&(&b.grant_id, &b.key_arn)));
        out.dedup_by(|a, b| std::ptr::eq(*a, *b));
        out
    }
}

/// A key policy that took effect at a time, parsed once.
struct PolicyChange {
    time: i64,
    event_id: String,
    put: bool,
    policy: Option<Policy>,
    text: String,
}

struct Context<'a> {
    inputs: &'a KeyInputs<'a>,
    grants: GrantIndex<'a>,
    non_symmetric: bool,
    /// PutKeyPolicy / CreateKey on this key, in time order.
    key_policies: Vec<PolicyChange>,
    /// Times of the PutKeyPolicy events among them.
    put_times: Vec<i64>,
    /// Times of events on this key that can change any policy outcome (§4.4 L3 (b)).
    key_change_times: Vec<i64>,
    /// The DeleteRole and DeleteUser events among the policy changes.
    principal_deletions: Vec<&'a KmsEvent>,
    /// Sorted change times relevant to each caller identity, computed on first use.
    change_times: RefCell<HashMap<String, std::rc::Rc<Vec<i64>>>>,
}

impl World for Context<'_> {
    fn key_is_non_symmetric(&self, _key_arn: &str) -> bool {
        self.non_symmetric
    }

    fn principal_deleted_between(&self, principal_arn: &str, from: i64, to: i64) -> bool {
        principal_deleted_between(self.principal_deletions.iter().copied(), principal_arn, from, to)
    }
}

/// Is there a time in `times` (sorted) between `a` and `b`, both included?
fn any_between(times: &[i64], a: i64, b: i64) -> bool {
    let (from, to) = (a.min(b), a.max(b));
    let i = times.partition_point(|t| *t < from);
    i < times.len() && times[i] <= to
}

impl<'a> Context<'a> {
    fn new(inputs: &'a KeyInputs<'a>) -> Context<'a> {
        let calls = logical_event_refs(inputs.events.iter().filter(|e| e.is_kms() && sets_key_context(e)));
        let key = inputs.key_arn;
        let on_key = |e: &&KmsEvent| e.succeeded() && e.key_arn.as_deref() == Some(key);
        let non_symmetric = calls.iter().map(|c| c.as_ref()).filter(on_key).any(|e| {
            e.event_name == "CreateKey"
                && e.details.key_spec.as_deref().is_some_and(|s| s != "SYMMETRIC_DEFAULT")
        });
        let mut key_policies: Vec<PolicyChange> = calls
            .iter()
            .map(|c| c.as_ref())
            .filter(on_key)
            .filter(|e| e.event_name == "PutKeyPolicy" || e.event_name == "CreateKey")
            .map(|e| {
                let policy = match &e.details.policy {
                    Some(text) => Policy::parse(text).ok(),
                    None if e.event_name == "CreateKey" => arn_account(key).map(|account| {
                        Policy::default_key_policy(account, key.split(':').nth(1).unwrap_or("aws"))
                    }),
                    None => None,
                };
                let text = if e.details.policy.is_some() {
                    format!("key policy set by {} at {}", e.event_name, timestamp::format(e.event_time))
                } else {
                    format!("default key policy of the key created at {}", timestamp::format(e.event_time))
                };
                PolicyChange {
                    time: e.event_time,
                    event_id: e.event_id.clone(),
                    put: e.event_name == "PutKeyPolicy",
                    policy,
                    text,
                }
            })
            .collect();
        key_policies.sort_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
        let mut key_change_times: Vec<i64> = calls
            .iter()
            .map(|c| c.as_ref())
            .filter(on_key)
            .filter(|e| KEY_POLICY_CHANGES.contains(&e.event_name.as_str()))
            .map(|e| e.event_time)
            .collect();
        key_change_times.sort_unstable();
        let put_times = key_policies.iter().filter(|p| p.put).map(|p| p.time).collect();
        let principal_deletions = inputs
            .policy_changes
            .iter()
            .filter(|e| e.event_name == "DeleteRole" || e.event_name == "DeleteUser")
            .collect();
        Context {
            principal_deletions,
            put_times,
            inputs,
            grants: GrantIndex::new(inputs.grants),
            non_symmetric,
            key_policies,
            key_change_times,
            change_times: RefCell::new(HashMap::new()),
        }
    }

    fn coverages(&self, side: &CallSide<'_>) -> Vec<(&'a Grant, Coverage)> {
        let (t, settings) = (side.event.event_time, self.inputs.settings);
        self.grants
            .candidates(&side.event.caller, |g| outside_lifetime(g, t, settings))
            .into_iter()
            .map(|g| (g, covers(g, side, self, self.inputs.settings)))
            .collect()
    }

    /// Grants known only from their end that may have been alive at `t`.
    fn unknown_grants_alive(&self, t: i64) -> Vec<&'a Grant> {
        let delta = self.inputs.settings.consistency_window_seconds;
        self.grants.unknown.iter().copied().filter(|g| g.ended_at.is_none_or(|end| t < end + delta)).collect()
    }

    /// Times of every event that can change the policy outcome for this caller on this key:
    /// policy, tag and alias changes of the key, IAM changes of the caller (or of policies and
    /// groups it may hold) in its account, and Organizations policy changes.
    fn change_times_for(&self, caller: &Caller) -> std::rc::Rc<Vec<i64>> {
        let id = identity(caller).unwrap_or_default();
        if let Some(times) = self.change_times.borrow().get(id) {
            return times.clone();
        }
        let id = id.to_string();
        let target = iam_target(caller);
        let account = caller.account_id.as_deref();
        let is_user = target.as_deref().is_some_and(|t| t.starts_with("user/"));
        let mut times = self.key_change_times.clone();
        times.extend(
            self.inputs
                .policy_changes
                .iter()
                .filter(|e| e.succeeded())
                .filter(|e| {
                    if e.event_source == crate::event::ORGANIZATIONS_SOURCE {
                        return true;
                    }
                    let same_account = e.recipient_account_id.as_deref() == account
                        || e.caller.account_id.as_deref() == account;
                    same_account
                        && match e.details.target.as_deref() {
                            Some(t) if t.starts_with("policy/") => true,
                            Some(t) if t.starts_with("group/") => is_user,
                            Some(t) => Some(t) == target.as_deref(),
                            None => true,
                        }
                })
                .map(|e| e.event_time),
        );
        times.sort_unstable();
        let times = std::rc::Rc::new(times);
        self.change_times.borrow_mut().insert(id, times.clone());
        times
    }

    fn policy_changed_between(&self, caller: &Caller, a: i64, b: i64) -> bool {
        any_between(&self.change_times_for(caller), a, b)
    }

    /// The key policy in force at `t`, and the evidence it comes from (§4.4 L4).
    fn key_policy_at(&self, t: i64) -> Option<(&Policy, Reason)> {
        let delta = self.inputs.settings.consistency_window_seconds;
        let puts = &self.put_times;
        let changed_between = |a: i64, b: i64| any_between(puts, a.min(b) - delta + 1, a.max(b));
        let imported = self
            .inputs
            .imported_key_policies
            .iter()
            .filter(|p| !changed_between(p.at, t))
            .min_by_key(|p| (p.at - t).abs());
        if let Some(p) = imported {
            let text = format!("key policy imported from {} (as of {})", p.source, timestamp::format(p.at));
            return Some((&p.policy, Reason { text, event_ids: Vec::new() }));
        }
        if any_between(puts, t - delta + 1, t) {
            return None;
        }
        let i = self.key_policies.partition_point(|p| p.time <= t - delta);
        let latest = self.key_policies[..i].last()?;
        let policy = latest.policy.as_ref()?;
        Some((policy, Reason { text: latest.text.clone(), event_ids: vec![latest.event_id.clone()] }))
    }

    /// The IAM snapshot valid for this caller at `t`, if one was imported.
    fn iam_at(&self, caller: &Caller, t: i64) -> Option<&'a ImportedIam> {
        let account = caller.account_id.as_deref()?;
        self.inputs
            .imported_iam
            .iter()
            .filter(|s| s.account == account && s.snapshot.for_caller(caller).is_some())
            .filter(|s| !self.policy_changed_between(caller, s.at, t))
            .min_by_key(|s| (s.at - t).abs())
    }
}

/// What one call shows about its caller's access without grants (§4.4 L3, L3'): a success or
/// an access denial while no grant could have covered it. Later and earlier calls of the same
/// behaviour group take their behavioural evidence from the nearest observations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Observation {
    pub group: i64,
    pub kind: ObservationKind,
    pub time: i64,
    pub event_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObservationKind {
    Success,
    Denial,
}

impl ObservationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationKind::Success => "success",
            ObservationKind::Denial => "denial",
        }
    }
}

/// Observations of one key, sorted per group and kind. A label needs only the observations
/// nearest its call ([`ObservationIndex::around`]), so an index of those alone gives the same
/// labels as one of all of them.
#[derive(Debug, Default)]
pub struct ObservationIndex {
    sorted: HashMap<(i64, ObservationKind), Vec<(i64, String)>>,
}

impl ObservationIndex {
    pub fn new(observations: &[Observation]) -> ObservationIndex {
        let mut sorted: HashMap<(i64, ObservationKind), Vec<(i64, String)>> = HashMap::new();
        for o in observations {
            sorted.entry((o.group, o.kind)).or_default().push((o.time, o.event_id.clone()));
        }
        for list in sorted.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        ObservationIndex { sorted }
    }

    /// In `group`, the observation of `kind` ordered last among those at or before `t`, and the
    /// one ordered first among those after `t` (ordered by time, then eventID).
    pub fn around(&self, group: i64, kind: ObservationKind, t: i64) -> [Option<(i64, String)>; 2] {
        let Some(list) = self.sorted.get(&(group, kind)) else { return [None, None] };
        let i = list.partition_point(|(time, _)| *time <= t);
        [i.checked_sub(1).map(|j| list[j].clone()), list.get(i).cloned()]
    }
}

/// Calls are grouped by caller identity, operation and the conditions that can decide a
/// policy (service, source address, VPC endpoint, encryption context); the group is a 64-bit
/// FNV-1a of those, so that stored observations can be looked up by it.
pub fn behaviour_group(e: &KmsEvent) -> Option<i64> {
    // Each part is tagged and length-prefixed, so different groups never hash the same bytes.
    fn put(h: &mut crate::Fnv1a, part: Option<&str>) {
        match part {
            None => h.write([0]),
            Some(text) => {
                h.write([1]);
                h.write(text.len().to_le_bytes());
                h.write(text.bytes());
            }
        }
    }
    let mut h = crate::Fnv1a::default();
    put(&mut h, Some(identity(&e.caller)?));
    put(&mut h, Some(&e.event_name));
    put(&mut h, e.caller.invoked_by.as_deref());
    put(&mut h, e.source_ip.as_deref());
    put(&mut h, e.details.vpc_endpoint_id.as_deref());
    match &e.details.encryption_context {
        None => h.write([0]),
        Some(context) => {
            h.write([1]);
            h.write(context.len().to_le_bytes());
            for (k, v) in context {
                put(&mut h, Some(k));
                put(&mut h, Some(v));
            }
        }
    }
    Some(i64::from_le_bytes(h.0.to_le_bytes()))
}

/// The behaviour group a call's observations and label are stored under, if it has one: a
/// ReEncrypt has none (its two sides are on two keys; it is never observed or compared).
pub fn observed_group(e: &KmsEvent) -> Option<i64> {
    if e.event_name == "ReEncrypt" { None } else { behaviour_group(e) }
}

/// Classifies the calls on one key one at a time, given the key's context (grants, key
/// policies, permission changes) and its observations. [`classify_key`] uses it for a whole
/// history; an incremental caller for the calls a new object added or could have changed.
pub struct KeyClassifier<'a> {
    ctx: Context<'a>,
}

impl<'a> KeyClassifier<'a> {
    pub fn new(inputs: &'a KeyInputs<'a>) -> KeyClassifier<'a> {
        KeyClassifier { ctx: Context::new(inputs) }
    }

    /// What this call (one logical call, [`logical_event_refs`]) observes, if anything.
    pub fn observation(&self, e: &KmsEvent) -> Option<Observation> {
        let ctx = &self.ctx;
        if !e.is_kms() || e.event_name == "ReEncrypt" || e.key_arn.as_deref() != Some(ctx.inputs.key_arn) {
            return None;
        }
        let success = e.succeeded();
        if !success && !is_access_denied(e.error_code.as_deref()) {
            return None;
        }
        let group = behaviour_group(e)?;
        let sides: Vec<CallSide<'_>> = call_sides(e).into_iter().filter_map(|(_, s)| s).collect();
        if sides.is_empty() {
            return None;
        }
        // No known grant could have allowed it. A success also needs no grant of unknown
        // attributes alive (it may have come from one); a denial shows that none applied.
        let uncovered = sides.iter().all(|s| {
            ctx.coverages(s).iter().all(|(_, c)| c.tri() != Some(Tri::Yes) && c.tri() != Some(Tri::Maybe))
        }) && (!success || ctx.unknown_grants_alive(e.event_time).is_empty());
        uncovered.then(|| Observation {
            group,
            kind: if success { ObservationKind::Success } else { ObservationKind::Denial },
            time: e.event_time,
            event_id: e.event_id.clone(),
        })
    }

    /// The labels of a successful call's sides on this key (none for a failed call).
    pub fn label(&self, call: &KmsEvent, observations: &ObservationIndex) -> Vec<CallLabel> {
        let key = self.ctx.inputs.key_arn;
        if !call.is_kms() || !call.succeeded() {
            return Vec::new();
        }
        let mut labels = Vec::new();
        for (side_name, side) in call_sides(call) {
            let side_key = match side_name {
                Side::Destination => call.destination_key_arn.as_deref(),
                _ => call.key_arn.as_deref(),
            };
            if side_key != Some(key) {
                continue;
            }
            labels.push(match side {
                Some(side) => classify_side(&self.ctx, observations, side_name, &side),
                None => base_label(call, side_name, key, None, Label::NotGrantEligible, Evidence::L0),
            });
        }
        labels
    }
}

/// The labels of every successful call on one key, and the observations its calls make.
pub struct KeyLabels {
    pub labels: Vec<CallLabel>,
    pub observations: Vec<Observation>,
}

/// Classifies every successful call on one key (each side whose key it is). Calls with an
/// unknown key are classified by [`classify_keyless`].
pub fn classify_key(inputs: &KeyInputs<'_>) -> KeyLabels {
    let classifier = KeyClassifier::new(inputs);
    // Borrowed: a key's history is held once, not twice.
    let calls = logical_event_refs(inputs.events.iter().filter(|e| e.is_kms()));
    let observations: Vec<Observation> = calls.iter().filter_map(|c| classifier.observation(c)).collect();
    let index = ObservationIndex::new(&observations);
    let mut labels: Vec<CallLabel> = calls.iter().flat_map(|c| classifier.label(c, &index)).collect();
    mark_collisions(&mut labels, inputs.events);
    KeyLabels { labels, observations }
}

/// Says on each label whose call's eventID two different records carry (a collision) that it
/// describes one of them (the first in content order, `logical_event_refs`). `events` must hold
/// every record of the labelled calls' eventIDs.
pub fn mark_collisions<'e>(labels: &mut [CallLabel], events: impl IntoIterator<Item = &'e KmsEvent>) {
    let colliding = crate::lifecycle::colliding_event_ids(events);
    for l in labels.iter_mut().filter(|l| colliding.contains(&l.event_id)) {
        if !l.flags.iter().any(|f| f == EVENT_ID_COLLISION) {
            l.flags.push(EVENT_ID_COLLISION.into());
            l.reasons.push(Reason {
                text: "a different record carries the same eventID; this label describes the first of them in content order (granttrail event shows both)".into(),
                event_ids: vec![l.event_id.clone()],
            });
        }
    }
}

/// The flag of a label whose eventID two different records carry.
pub const EVENT_ID_COLLISION: &str = "event_id_collision";

/// Successful KMS calls whose key could not be identified (an alias and no `resources`).
pub fn classify_keyless(events: &[KmsEvent]) -> Vec<CallLabel> {
    let mut labels = keyless_labels(events);
    mark_collisions(&mut labels, events);
    labels
}

fn keyless_labels(events: &[KmsEvent]) -> Vec<CallLabel> {
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
            let mut l = base_label(call, Side::Key, "", None, label, Evidence::L0);
            l.reasons.push(Reason { text: reason.into(), event_ids: vec![call.event_id.clone()] });
            l
        })
        .collect()
}

fn base_label(
    call: &KmsEvent,
    side: Side,
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
        behaviour_group: None,
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

/// Labels one side of a successful call, step by step (§4.4): which grants cover it
/// ([`delegation_limit`], [`Covering`]); what it means that none does ([`uncovered_label`]),
/// that some may ([`uncertain_label`]) or that some do ([`covered_label`]); and then whether the
/// grant was needed, from the policies in force (L4/L5, [`policy_verdict`]) or, when they do not
/// decide, from the same caller's calls without a grant (L3/L3', [`behaviour_verdict`]).
fn classify_side(
    ctx: &Context<'_>,
    observations: &ObservationIndex,
    side_name: Side,
    side: &CallSide<'_>,
) -> CallLabel {
    let call = side.event;
    let out = base_label(call, side_name, side.key_arn, Some(side.operation), Label::NoGrant, Evidence::L0);
    let mut coverages = ctx.coverages(side);
    let beyond_delegation = delegation_limit(side, &mut coverages);
    let covering = Covering::of(&coverages);
    if covering.yes.is_empty() && covering.maybe.is_empty() {
        return uncovered_label(out, &beyond_delegation, &ctx.unknown_grants_alive(call.event_time));
    }
    if covering.yes.is_empty() {
        return uncertain_label(out, &covering);
    }
    let mut out = covered_label(out, &covering);
    if let Some((label, evidence, reasons)) = policy_verdict(ctx, side) {
        out.label = label;
        out.evidence = evidence;
        out.reasons.extend(reasons);
        return out;
    }
    let changes = ctx.change_times_for(&call.caller);
    behaviour_verdict(out, call, observations, &changes)
}

/// A CreateGrant made through a grant may only delegate what that grant allows (R-D4): a grant
/// the new grant goes beyond covers nothing, and is returned; one it may go beyond covers at
/// most `Maybe`.
fn delegation_limit<'a>(side: &CallSide<'_>, coverages: &mut [(&'a Grant, Coverage)]) -> Vec<&'a Grant> {
    let mut beyond = Vec::new();
    let Some(child) = side.event.grant_spec.as_ref().filter(|_| side.operation == "CreateGrant") else {
        return beyond;
    };
    for (grant, coverage) in coverages.iter_mut() {
        if let Coverage::Known(tri, _) = coverage
            && *tri != Tri::No
        {
            match delegation_allowed(&grant.spec, child) {
                Tri::No => {
                    beyond.push(*grant);
                    *tri = Tri::No;
                }
                Tri::Maybe => *tri = tri.and(Tri::Maybe),
                Tri::Yes => {}
            }
        }
    }
    beyond
}

/// The grants that cover a call side (`Yes`) and those that may (`Maybe`), with the flags of
/// their coverage. Grants of unknown attributes are not here: see
/// [`Context::unknown_grants_alive`].
#[derive(Debug, Default)]
struct Covering<'a> {
    yes: Vec<&'a Grant>,
    maybe: Vec<&'a Grant>,
    flags: BTreeSet<Flag>,
}

impl<'a> Covering<'a> {
    fn of(coverages: &[(&'a Grant, Coverage)]) -> Covering<'a> {
        let mut covering = Covering::default();
        for (grant, coverage) in coverages {
            if let Coverage::Known(tri, flags) = coverage {
                match tri {
                    Tri::Yes => covering.yes.push(*grant),
                    Tri::Maybe => covering.maybe.push(*grant),
                    Tri::No => continue,
                }
                covering.flags.extend(flags.iter().copied());
            }
        }
        covering
    }
}

/// No known grant covers the call. A CreateGrant that asked for more than its caller's grants
/// may delegate proves a policy allowed it (L3'); grants of unknown attributes alive then may
/// have covered it; otherwise no grant did.
fn uncovered_label(mut out: CallLabel, beyond_delegation: &[&Grant], unknown: &[&Grant]) -> CallLabel {
    if !beyond_delegation.is_empty() {
        out.label = Label::GrantAndPolicy;
        out.evidence = Evidence::L3Prime;
        out.grant_ids = beyond_delegation.iter().map(|g| g.grant_id.clone()).collect();
        out.reasons.push(Reason {
            text: "the new grant asks for more than the caller's grants may delegate, so a policy allowed this CreateGrant".into(),
            event_ids: vec![out.event_id.clone()],
        });
        out.flags = vec!["policy_path_proven".into()];
    } else if unknown.is_empty() {
        out.label = Label::NoGrant;
        out.reasons
            .push(Reason { text: "no grant on the key covers this call".into(), event_ids: Vec::new() });
    } else {
        out.label = Label::NoGrantUnknownGrants;
        out.grant_ids = unknown.iter().map(|g| g.grant_id.clone()).collect();
        out.reasons.push(Reason {
            text: "no known grant covers this call, but grants created before the logs (attributes unknown) may have"
                .into(),
            event_ids: unknown.iter().flat_map(|g| g.end_event_ids.iter().cloned()).collect(),
        });
    }
    out
}

/// Some grants may cover the call and none certainly does (L1, with the flags that say why).
fn uncertain_label(mut out: CallLabel, covering: &Covering<'_>) -> CallLabel {
    out.label = Label::GrantCoveredUncertain;
    out.evidence = Evidence::L1;
    out.grant_ids = covering.maybe.iter().map(|g| g.grant_id.clone()).collect();
    out.reasons.extend(covering.maybe.iter().map(|g| GrantReasons::MayBeCoveredBy.reason(g)));
    out.flags = flag_names(&covering.flags);
    out
}

/// Grants cover the call: L2 when it presented a grant token, L1 otherwise. Flags that only
/// explain uncertainty do not belong to a certain coverage.
fn covered_label(mut out: CallLabel, covering: &Covering<'_>) -> CallLabel {
    out.grant_ids = covering.yes.iter().map(|g| g.grant_id.clone()).collect();
    out.reasons.extend(covering.yes.iter().map(|g| GrantReasons::CoveredBy.reason(g)));
    out.label = Label::GrantCovered;
    out.evidence = if covering.flags.contains(&Flag::TokenPresented) { Evidence::L2 } else { Evidence::L1 };
    let certain =
        covering.flags.iter().filter(|f| matches!(f, Flag::TokenPresented | Flag::EcKeyCaseOnlyMatch));
    out.flags = flag_names(&certain.copied().collect());
    out
}

/// L4 / L5: whether the policies in force (the key policy, and the caller's IAM policies when a
/// snapshot was imported) allow the call without the grant. `None` when they do not decide.
fn policy_verdict(ctx: &Context<'_>, side: &CallSide<'_>) -> Option<(Label, Evidence, Vec<Reason>)> {
    let call = side.event;
    let action = format!("kms:{}", side.operation);
    let (policy, policy_reason) = ctx.key_policy_at(call.event_time)?;
    let view = policy.key_policy_view(&Subject { caller: &call.caller }, &action, side.key_arn);
    let iam = ctx.iam_at(&call.caller, call.event_time);
    let identity =
        iam.and_then(|s| s.snapshot.for_caller(&call.caller)).map(|i| i.allows(&action, side.key_arn));
    let same_account = call.caller.account_id.as_deref() == arn_account(side.key_arn);
    let (label, verdict) = match policies_allow(&view, identity, same_account) {
        Tri::No => (Label::GrantOnly, "no statement could allow"),
        Tri::Yes => (Label::GrantAndPolicy, "a statement allows"),
        Tri::Maybe => return None,
    };
    let mut reasons = vec![Reason {
        text: format!("{}: {verdict} {action} for this caller", policy_reason.text),
        event_ids: policy_reason.event_ids,
    }];
    if let Some(s) = iam {
        reasons.push(Reason {
            text: format!("IAM policies imported from {} (as of {})", s.source, timestamp::format(s.at)),
            event_ids: Vec::new(),
        });
    }
    Some((label, if iam.is_some() { Evidence::L5 } else { Evidence::L4 }, reasons))
}

/// Do the policies allow a call (§4.1)? In the key's account, a key policy statement naming
/// the caller suffices, and one naming the account needs the caller's IAM policies too; from
/// another account, both the key policy and the IAM policies must allow. A Deny that may apply
/// stops it. `identity` is what the caller's IAM policies allow, unknown without a snapshot.
fn policies_allow(view: &KeyPolicyView, identity: Option<Tri>, same_account: bool) -> Tri {
    let identity = identity.unwrap_or(Tri::Maybe);
    let allow = if same_account {
        view.direct_allow.or(view.account_allow.and(identity))
    } else {
        view.direct_allow.or(view.account_allow).and(identity)
    };
    allow.and(!view.deny)
}

/// L3 and L3': what the same principal got when calling the same way with no grant: the
/// nearest observation of each kind with no policy change (`changes`) in between. Only labels
/// decided here name their group: new observations can change no other label.
fn behaviour_verdict(
    mut out: CallLabel,
    call: &KmsEvent,
    observations: &ObservationIndex,
    changes: &[i64],
) -> CallLabel {
    out.behaviour_group = observed_group(call);
    let nearest = |kind: ObservationKind| {
        let group = out.behaviour_group?;
        let [before, after] = observations.around(group, kind, call.event_time);
        [before, after].into_iter().flatten().find(|(time, _)| !any_between(changes, *time, call.event_time))
    };
    let (label, evidence, what, (time, event_id)) =
        match (nearest(ObservationKind::Success), nearest(ObservationKind::Denial)) {
            (Some(_), Some(_)) => {
                out.flags.push("conflicting_evidence".into());
                return out;
            }
            (Some(s), None) => (Label::GrantAndPolicy, Evidence::L3Prime, "succeeded the same way", s),
            (None, Some(d)) => (Label::GrantOnlyLikely, Evidence::L3, "was denied this operation", d),
            (None, None) => return out,
        };
    out.label = label;
    out.evidence = evidence;
    out.reasons.push(Reason {
        text: format!(
            "the same principal {what} on this key at {} while no grant covered it, and no policy changed since",
            timestamp::format(time)
        ),
        event_ids: vec![event_id],
    });
    out
}

/// Did one of `deletions` (IAM `DeleteRole`/`DeleteUser` events) delete the role or user
/// `principal_arn` in `(from, to]`?
pub(crate) fn principal_deleted_between<'e>(
    mut deletions: impl ExactSizeIterator<Item = &'e KmsEvent>,
    principal_arn: &str,
    from: i64,
    to: i64,
) -> bool {
    // Asked for every grant that may cover every call: answer the usual case, no deletion
    // logged at all, before building any strings.
    if deletions.len() == 0 {
        return false;
    }
    let Some(resource) = principal_arn.splitn(6, ':').nth(5) else { return false };
    let (kind, deletion) = match resource.split('/').next() {
        Some("role") => ("role", "DeleteRole"),
        Some("user") => ("user", "DeleteUser"),
        _ => return false,
    };
    let target = format!("{kind}/{}", resource.rsplit('/').next().unwrap_or_default());
    let account = arn_account(principal_arn);
    deletions.any(|e| {
        e.event_name == deletion
            && e.succeeded()
            && e.details.target.as_deref() == Some(target.as_str())
            && (e.recipient_account_id.as_deref() == account || e.caller.account_id.as_deref() == account)
            && e.event_time > from
            && e.event_time <= to
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::fold_grant;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111";

    fn grant(id: &str, grantee: &str) -> Grant {
        let record = format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventName":"CreateGrant","eventID":"c-{id}",
                "eventTime":"2024-05-01T10:00:00Z","resources":[{{"ARN":"{KEY}"}}],
                "requestParameters":{{"keyId":"{KEY}","granteePrincipal":"{grantee}","operations":["Decrypt"]}},
                "responseElements":{{"grantId":"{id}"}}}}"#
        );
        let event = crate::normalise(record.as_bytes()).unwrap().unwrap();
        fold_grant(KEY, id, &[event]).unwrap()
    }

    fn label(grants: &[&Grant], way: GrantReasons, more: &[Reason]) -> CallLabel {
        CallLabel {
            event_id: "call".into(),
            shared_event_id: None,
            event_time: 0,
            event_name: "Decrypt".into(),
            side: Side::Key,
            key_arn: KEY.into(),
            operation: Some("Decrypt"),
            principal: None,
            label: Label::GrantCovered,
            evidence: Evidence::L1,
            grant_ids: grants.iter().map(|g| g.grant_id.clone()).collect(),
            reasons: grants.iter().map(|g| way.reason(g)).chain(more.iter().cloned()).collect(),
            flags: Vec::new(),
            behaviour_group: None,
        }
    }

    #[test]
    fn grant_reasons_are_found_only_where_they_render_exactly() {
        let (a, b) = (
            grant("ga", "arn:aws:iam::111122223333:role/A"),
            grant("gb", "arn:aws:iam::111122223333:role/B"),
        );
        let find = |id: &str| [&a, &b].into_iter().find(|g| g.grant_id == id);
        let policy =
            Reason { text: "key policy: a statement allows kms:Decrypt".into(), event_ids: vec!["p".into()] };
        for way in GrantReasons::ALL {
            assert_eq!(GrantReasons::of(&label(&[&a, &b], way, &[]), find), Some(way));
            assert_eq!(
                GrantReasons::of(&label(&[&a], way, std::slice::from_ref(&policy)), find),
                Some(way),
                "more reasons after"
            );
        }
        let mut edited = label(&[&a, &b], GrantReasons::CoveredBy, &[]);
        edited.reasons[1].text.push('!');
        assert_eq!(GrantReasons::of(&edited, find), None, "a sentence that does not render is kept whole");
        let unknown = label(&[&a], GrantReasons::CoveredBy, &[]);
        assert_eq!(GrantReasons::of(&unknown, |_| None), None, "a grant that cannot be found");
        assert_eq!(
            GrantReasons::of(&label(&[], GrantReasons::CoveredBy, &[policy]), find),
            None,
            "no grants"
        );
        assert!(GrantReasons::CoveredBy.reason(&a).text.starts_with(
            "covered by grant ga (grantee arn:aws:iam::111122223333:role/A, created 2024-05-01T10:00:00Z)"
        ));
        assert_eq!(GrantReasons::CoveredBy.reason(&a).event_ids, ["c-ga"]);
    }

    /// A successful call by the role session `app`, on [`KEY`], as CloudTrail logs it.
    fn call(name: &str, time: &str, extra: &str) -> KmsEvent {
        let record = format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventName":"{name}","eventID":"{name}-{time}",
                "eventTime":"{time}","recipientAccountId":"111122223333",
                "userIdentity":{{"type":"AssumedRole","accountId":"111122223333",
                  "arn":"arn:aws:sts::111122223333:assumed-role/App/app",
                  "sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/App"}}}}}},
                "resources":[{{"ARN":"{KEY}"}}],"requestParameters":{{"keyId":"{KEY}"{extra}}}}}"#
        );
        crate::normalise(record.as_bytes()).unwrap().unwrap()
    }

    fn side<'e>(event: &'e KmsEvent, operation: &'static str) -> CallSide<'e> {
        CallSide { event, key_arn: KEY, operation, context: None }
    }

    fn fresh(event: &KmsEvent) -> CallLabel {
        base_label(event, Side::Key, KEY, Some("Decrypt"), Label::NoGrant, Evidence::L0)
    }

    fn known(tri: Tri, flags: &[Flag]) -> Coverage {
        Coverage::Known(tri, flags.iter().copied().collect())
    }

    #[test]
    fn a_create_grant_beyond_what_a_grant_may_delegate_is_not_covered_by_it() {
        let mut parent = grant("parent", "arn:aws:iam::111122223333:role/App");
        parent.spec.operations = Some(vec!["Decrypt".into(), "CreateGrant".into()]);
        let create = |ops: &str| {
            call(
                "CreateGrant",
                "2024-05-01T11:00:00Z",
                &format!(r#","granteePrincipal":"x","operations":{ops}"#),
            )
        };

        let beyond = create(r#"["Encrypt"]"#);
        let mut coverages = vec![(&parent, known(Tri::Yes, &[]))];
        let found = delegation_limit(&side(&beyond, "CreateGrant"), &mut coverages);
        assert_eq!(found.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), ["parent"]);
        assert_eq!(coverages[0].1.tri(), Some(Tri::No));

        let within = create(r#"["Decrypt"]"#);
        let mut coverages = vec![(&parent, known(Tri::Yes, &[]))];
        assert!(delegation_limit(&side(&within, "CreateGrant"), &mut coverages).is_empty());
        assert_eq!(coverages[0].1.tri(), Some(Tri::Yes));

        let decrypt = call("Decrypt", "2024-05-01T11:00:00Z", "");
        let mut coverages = vec![(&parent, known(Tri::Yes, &[]))];
        assert!(delegation_limit(&side(&decrypt, "Decrypt"), &mut coverages).is_empty(), "not a CreateGrant");
    }

    #[test]
    fn covering_sorts_grants_by_coverage_and_keeps_the_flags_of_those_that_may_cover() {
        let grants: Vec<Grant> = ["yes", "maybe", "no", "unknown"].iter().map(|id| grant(id, "p")).collect();
        let coverages = vec![
            (&grants[0], known(Tri::Yes, &[Flag::TokenPresented])),
            (&grants[1], known(Tri::Maybe, &[Flag::PropagationWindow])),
            (&grants[2], known(Tri::No, &[Flag::DrainingWindow])),
            (&grants[3], Coverage::Unknown),
        ];
        let covering = Covering::of(&coverages);
        assert_eq!(covering.yes.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), ["yes"]);
        assert_eq!(covering.maybe.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), ["maybe"]);
        assert_eq!(covering.flags, [Flag::TokenPresented, Flag::PropagationWindow].into());
    }

    #[test]
    fn an_uncovered_call_is_a_policy_path_no_grant_or_maybe_an_unknown_grant() {
        let event = call("CreateGrant", "2024-05-01T11:00:00Z", "");
        let parent = grant("parent", "p");
        let proven = uncovered_label(fresh(&event), &[&parent], &[]);
        assert_eq!((proven.label, proven.evidence), (Label::GrantAndPolicy, Evidence::L3Prime));
        assert_eq!(
            (proven.grant_ids, proven.flags),
            (vec!["parent".to_string()], vec!["policy_path_proven".to_string()])
        );

        let none = uncovered_label(fresh(&event), &[], &[]);
        assert_eq!((none.label, none.evidence, none.grant_ids.len()), (Label::NoGrant, Evidence::L0, 0));

        let mut old = grant("old", "p");
        old.end_event_ids = vec!["retire-old".into()];
        let unknown = uncovered_label(fresh(&event), &[], &[&old]);
        assert_eq!(unknown.label, Label::NoGrantUnknownGrants);
        assert_eq!(unknown.grant_ids, ["old"]);
        assert_eq!(unknown.reasons[0].event_ids, ["retire-old"]);
    }

    #[test]
    fn certain_coverage_keeps_only_the_flags_that_qualify_it() {
        let event = call("Decrypt", "2024-05-01T11:00:00Z", "");
        let (a, b) = (grant("a", "p"), grant("b", "p"));
        let covering = |flags: &[Flag]| Covering {
            yes: vec![&a],
            maybe: vec![&b],
            flags: flags.iter().copied().collect(),
        };

        let token = covered_label(fresh(&event), &covering(&[Flag::TokenPresented, Flag::PropagationWindow]));
        assert_eq!((token.label, token.evidence), (Label::GrantCovered, Evidence::L2));
        assert_eq!(
            (token.grant_ids, token.flags),
            (vec!["a".to_string()], vec!["token_presented".to_string()])
        );
        let plain = covered_label(fresh(&event), &covering(&[Flag::DrainingWindow]));
        assert_eq!((plain.evidence, plain.flags.len()), (Evidence::L1, 0));

        let uncertain = uncertain_label(fresh(&event), &covering(&[Flag::PropagationWindow]));
        assert_eq!((uncertain.label, uncertain.evidence), (Label::GrantCoveredUncertain, Evidence::L1));
        assert_eq!(
            (uncertain.grant_ids, uncertain.flags),
            (vec!["b".to_string()], vec!["propagation_window".to_string()])
        );
    }

    #[test]
    fn policies_allow_by_the_key_policy_alone_only_in_the_keys_account() {
        let view =
            |direct, account, deny| KeyPolicyView { direct_allow: direct, account_allow: account, deny };
        let (yes, no, maybe) = (Tri::Yes, Tri::No, Tri::Maybe);
        // In the key's account.
        assert_eq!(policies_allow(&view(yes, no, no), Some(no), true), yes, "a statement naming the caller");
        assert_eq!(policies_allow(&view(no, yes, no), None, true), maybe, "the account, IAM unknown");
        assert_eq!(policies_allow(&view(no, yes, no), Some(yes), true), yes);
        assert_eq!(policies_allow(&view(no, yes, no), Some(no), true), no);
        assert_eq!(policies_allow(&view(no, no, no), None, true), no, "nothing allows");
        // From another account the caller's IAM policies must allow too.
        assert_eq!(policies_allow(&view(yes, no, no), None, false), maybe);
        assert_eq!(policies_allow(&view(no, yes, no), Some(yes), false), yes);
        assert_eq!(policies_allow(&view(yes, no, no), Some(no), false), no);
        // A Deny that may apply.
        assert_eq!(policies_allow(&view(yes, no, yes), Some(yes), true), no);
        assert_eq!(policies_allow(&view(yes, no, maybe), Some(yes), true), maybe);
    }

    #[test]
    fn behaviour_decides_from_the_nearest_observations_with_no_policy_change_between() {
        let event = call("Decrypt", "2024-05-01T11:00:00Z", "");
        let group = observed_group(&event).unwrap();
        let covered = || CallLabel { label: Label::GrantCovered, evidence: Evidence::L1, ..fresh(&event) };
        let observed =
            |kind, time: i64| Observation { group, kind, time, event_id: format!("{kind:?}-{time}") };
        let at = event.event_time;

        let denied = ObservationIndex::new(&[observed(ObservationKind::Denial, at - 100)]);
        let likely = behaviour_verdict(covered(), &event, &denied, &[]);
        assert_eq!((likely.label, likely.evidence), (Label::GrantOnlyLikely, Evidence::L3));
        assert_eq!(likely.reasons.last().unwrap().event_ids, [format!("Denial-{}", at - 100)]);
        assert_eq!(likely.behaviour_group, Some(group));

        let changed = behaviour_verdict(covered(), &event, &denied, &[at - 50]);
        assert_eq!(changed.label, Label::GrantCovered, "a policy changed in between");

        let succeeded = ObservationIndex::new(&[observed(ObservationKind::Success, at + 100)]);
        let policy = behaviour_verdict(covered(), &event, &succeeded, &[]);
        assert_eq!((policy.label, policy.evidence), (Label::GrantAndPolicy, Evidence::L3Prime));

        let both = ObservationIndex::new(&[
            observed(ObservationKind::Success, at + 100),
            observed(ObservationKind::Denial, at - 100),
        ]);
        let conflicting = behaviour_verdict(covered(), &event, &both, &[]);
        assert_eq!(conflicting.label, Label::GrantCovered);
        assert_eq!(conflicting.flags, ["conflicting_evidence"]);

        let reencrypt = KmsEvent { event_name: "ReEncrypt".into(), ..event.clone() };
        let other = behaviour_verdict(covered(), &reencrypt, &denied, &[]);
        assert_eq!(
            (other.label, other.behaviour_group),
            (Label::GrantCovered, None),
            "a ReEncrypt has no group"
        );
    }
}
