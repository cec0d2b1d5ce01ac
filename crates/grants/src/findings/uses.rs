//! The calls each grant covered, as the rules read them.

use std::collections::{BTreeMap, BTreeSet};

use crate::classify::Label;
use crate::event::arn_account;
use crate::lifecycle::Grant;

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
pub(super) fn principal_family(p: &str) -> String {
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
