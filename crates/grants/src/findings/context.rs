//! What the rules look up beyond one grant: denials before it, the grants it was created
//! through, and the calls that succeeded after it ended.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::service::is_service_principal;
use super::{FindingInputs, uses::principal_family};
use crate::event::{GrantSpec, KmsEvent, arn_account};
use crate::lifecycle::{Grant, GrantState, logical_events};
use crate::matching::{Coverage, Tri, World, call_sides, covers, grant_operation};

/// What coverage needs to know beyond a grant, from the findings inputs.
pub(super) struct Facts<'a> {
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
pub(super) const MAX_CALL_EVIDENCE: usize = 10;

/// Calls of one key (in time order), indexed by the forms a grantee can name their caller in,
/// so a grant is compared with the calls it may match rather than with every call of its key.
#[derive(Default)]
pub(super) struct CallIndex {
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
pub(super) struct Context<'a> {
    inputs: &'a FindingInputs<'a>,
    pub(super) by_id: BTreeMap<(&'a str, &'a str), &'a Grant>,
    by_key: BTreeMap<&'a str, Vec<&'a Grant>>,
    /// The first grant of each key and specification that ended after a logged creation.
    ended_by_spec: HashMap<(&'a str, &'a GrantSpec), &'a Grant>,
    /// `(key, eventID of a CreateGrant)` → the grants that covered it, and how certainly.
    delegated_through: BTreeMap<(&'a str, &'a str), Vec<(&'a str, bool)>>,
    denials_by_key: BTreeMap<&'a str, Vec<&'a KmsEvent>>,
    /// Logical successful calls after grant ends, by the key of each of their sides.
    after_end_by_key: BTreeMap<String, CallIndex>,
    facts: Facts<'a>,
}

impl<'a> Context<'a> {
    pub(super) fn new(inputs: &'a FindingInputs<'a>) -> Context<'a> {
        let mut by_id = BTreeMap::new();
        let mut by_key: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
        let mut ended_by_spec = HashMap::new();
        for g in inputs.grants {
            by_id.insert((g.key_arn.as_str(), g.grant_id.as_str()), g);
            by_key.entry(g.key_arn.as_str()).or_default().push(g);
            if g.state != GrantState::Active && g.creation_seen {
                ended_by_spec.entry((g.key_arn.as_str(), &g.spec)).or_insert(g);
            }
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
            ended_by_spec,
            delegated_through,
            denials_by_key,
            after_end_by_key,
            facts: Facts { principal_deletions: inputs.principal_deletions },
        }
    }

    /// The first grant on `g`'s key with `g`'s specification that is no longer active, its
    /// creation logged (`g` itself, when `g` is such a grant).
    pub(super) fn ended_twin(&self, g: &Grant) -> Option<&'a Grant> {
        self.ended_by_spec.get(&(g.key_arn.as_str(), &g.spec)).copied()
    }

    /// The grants `g` may have been created through: those that covered its CreateGrant.
    pub(super) fn parents(&self, g: &Grant) -> Vec<(&'a str, bool)> {
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
    pub(super) fn chain(&self, g: &'a Grant) -> Vec<&'a Grant> {
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
    pub(super) fn denial_before(
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
    pub(super) fn calls_after_end(&self, g: &Grant) -> Vec<&KmsEvent> {
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
