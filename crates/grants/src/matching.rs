//! Could this grant have authorised this call? (grant-semantics.md §2)
//!
//! Every test is three-valued: `Yes`, `Maybe` (data missing, an eventual-consistency window,
//! or a rule the documentation leaves open) or `No`; a call is covered by the AND of key,
//! principal, operation, constraint and time. A grant whose creation was never seen has
//! unknown attributes and gives [`Coverage::Unknown`], never `Maybe`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::event::{Caller, Constraints, KmsEvent};
use crate::lifecycle::Grant;
use crate::settings::{KeyCase, RootGrantee, Settings};

/// A three-valued answer, ordered `No < Maybe < Yes` so that AND is `min` and OR is `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tri {
    No,
    Maybe,
    Yes,
}

impl std::ops::Not for Tri {
    type Output = Tri;

    fn not(self) -> Tri {
        match self {
            Tri::Yes => Tri::No,
            Tri::Maybe => Tri::Maybe,
            Tri::No => Tri::Yes,
        }
    }
}

impl Tri {
    pub fn and(self, other: Tri) -> Tri {
        self.min(other)
    }

    pub fn or(self, other: Tri) -> Tri {
        self.max(other)
    }

    pub fn from_bool(b: bool) -> Tri {
        if b { Tri::Yes } else { Tri::No }
    }
}

/// Why a coverage answer is uncertain, or what else is worth knowing about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// Within δ after the grant's creation.
    PropagationWindow,
    /// Within δ after the grant's end.
    DrainingWindow,
    /// The call presented grant tokens (L2).
    TokenPresented,
    AccountRootGrantee,
    ServicePrincipalGrantee,
    /// The caller's identity was reduced (cross-account copy without an ARN).
    ReducedIdentity,
    /// The principal matched only when compared case-insensitively.
    PrincipalCaseOnlyMatch,
    /// The encryption context matched only with case-insensitive keys.
    EcKeyCaseOnlyMatch,
    EmptyConstraint,
    SourceArnConstraint,
    /// CloudTrail did not log the request parameters or the grant's operations.
    UnknownRequest,
    UnknownOperations,
    /// The grantee was deleted (and a principal of the same name made the call).
    PrincipalRecreated,
    CrossAccountNeedsIam,
}

/// One side of a call to classify: the whole call, or for ReEncrypt its source or destination.
#[derive(Debug, Clone)]
pub struct CallSide<'a> {
    pub event: &'a KmsEvent,
    pub key_arn: &'a str,
    /// The grant operation this side needs (`Decrypt`, `ReEncryptFrom`, ...).
    pub operation: &'static str,
    /// The encryption context this side is checked against.
    pub context: Option<&'a BTreeMap<String, String>>,
}

/// The answer for one grant and one call side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// The grant's attributes are unknown (created before the logs); it may or may not cover.
    Unknown,
    Known(Tri, BTreeSet<Flag>),
}

impl Coverage {
    pub fn tri(&self) -> Option<Tri> {
        match self {
            Coverage::Unknown => None,
            Coverage::Known(t, _) => Some(*t),
        }
    }
}

/// Facts about the key and the principals that coverage needs beyond the grant itself.
pub trait World {
    /// Is the key known to be something other than a symmetric encryption key?
    fn key_is_non_symmetric(&self, key_arn: &str) -> bool;
    /// Was the principal named by this ARN deleted between the two times?
    fn principal_deleted_between(&self, principal_arn: &str, from: i64, to: i64) -> bool;
}

/// The grant operation a KMS `eventName` needs (R-OP1), or `None` when no grant can allow it.
/// ReEncrypt needs two: see [`call_sides`].
pub fn grant_operation(event_name: &str) -> Option<&'static str> {
    const OPS: &[&str] = &[
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "Sign",
        "Verify",
        "GenerateMac",
        "VerifyMac",
        "GetPublicKey",
        "DescribeKey",
        "CreateGrant",
        "DeriveSharedSecret",
        "Encapsulate",
        "Decapsulate",
    ];
    OPS.iter().copied().find(|op| *op == event_name)
}

/// Operations whose grant constraints on the encryption context apply (R-K4).
fn takes_encryption_context(op: &str) -> bool {
    matches!(
        op,
        "Encrypt"
            | "Decrypt"
            | "ReEncryptFrom"
            | "ReEncryptTo"
            | "GenerateDataKey"
            | "GenerateDataKeyWithoutPlaintext"
            | "GenerateDataKeyPair"
            | "GenerateDataKeyPairWithoutPlaintext"
    )
}

/// Which side of a call a label is about: most calls have one, on their key; a ReEncrypt has a
/// source side (`ReEncryptFrom` on the source key) and a destination side (`ReEncryptTo`).
/// Declared in the order of their names, which is how listings order a call's sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Destination,
    Key,
    Source,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Destination, Side::Key, Side::Source];

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Destination => "destination",
            Side::Key => "key",
            Side::Source => "source",
        }
    }

    pub fn parse(text: &str) -> Option<Side> {
        Side::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sides of a call that a grant could authorise: one, or two for ReEncrypt (source key
/// with `ReEncryptFrom` and the source context, destination key with `ReEncryptTo`).
pub fn call_sides(event: &KmsEvent) -> Vec<(Side, Option<CallSide<'_>>)> {
    let d = &event.details;
    if event.event_name == "ReEncrypt" {
        let source = event.key_arn.as_deref().map(|k| CallSide {
            event,
            key_arn: k,
            operation: "ReEncryptFrom",
            context: d.encryption_context.as_ref(),
        });
        let destination = event.destination_key_arn.as_deref().map(|k| CallSide {
            event,
            key_arn: k,
            operation: "ReEncryptTo",
            context: d.destination_encryption_context.as_ref(),
        });
        return vec![(Side::Source, source), (Side::Destination, destination)];
    }
    let side = grant_operation(&event.event_name).and_then(|op| {
        event.key_arn.as_deref().map(|k| CallSide {
            event,
            key_arn: k,
            operation: op,
            context: d.encryption_context.as_ref(),
        })
    });
    vec![(Side::Key, side)]
}

/// Does `grant` cover this call side?
pub fn covers(grant: &Grant, side: &CallSide<'_>, world: &dyn World, settings: &Settings) -> Coverage {
    if !grant.creation_seen {
        return Coverage::Unknown;
    }
    let mut flags = BTreeSet::new();
    if grant.key_arn != side.key_arn {
        return Coverage::Known(Tri::No, flags);
    }
    let t = side.event.event_time;
    let time = time_match(grant, side.event, settings, &mut flags);
    if time == Tri::No {
        return Coverage::Known(Tri::No, flags);
    }
    let principal = grant
        .spec
        .grantee_principal
        .as_deref()
        .map_or(Tri::Maybe, |g| principal_match(g, &side.event.caller, settings, &mut flags));
    let mut tri = time.and(principal);
    if tri != Tri::No
        && let (Some(grantee), Some(created)) = (grant.spec.grantee_principal.as_deref(), grant.created_at)
        && grantee.starts_with("arn:")
        && world.principal_deleted_between(grantee, created, t)
    {
        flags.insert(Flag::PrincipalRecreated);
        tri = tri.and(Tri::Maybe);
    }
    if tri != Tri::No
        && settings.cross_account_grantee_needs_iam
        && side.event.caller.account_id.as_deref() != crate::event::arn_account(side.key_arn)
    {
        flags.insert(Flag::CrossAccountNeedsIam);
        tri = tri.and(Tri::Maybe);
    }
    let operation = match &grant.spec.operations {
        Some(ops) => Tri::from_bool(ops.iter().any(|o| o == side.operation)),
        None => {
            flags.insert(Flag::UnknownOperations);
            Tri::Maybe
        }
    };
    tri = tri.and(operation);
    if tri != Tri::No {
        tri = tri.and(constraint_match(grant.spec.constraints.as_ref(), side, world, settings, &mut flags));
    }
    Coverage::Known(tri, flags)
}

/// Is `t` certainly outside the grant's life: before its creation (with the clock tolerance)
/// or after its end and the consistency window? Such a grant covers nothing at `t`, whatever
/// the call; the time rule below and the classifier's candidate list both use this.
pub(crate) fn outside_lifetime(grant: &Grant, t: i64, s: &Settings) -> bool {
    let Some(created) = grant.created_at else { return false };
    t < created - s.clock_tolerance_seconds
        || grant.ended_at.is_some_and(|ended| t >= ended + s.consistency_window_seconds)
}

/// The time rule (R-EC2), with the token upgrade in the propagation window (L2).
fn time_match(grant: &Grant, call: &KmsEvent, s: &Settings, flags: &mut BTreeSet<Flag>) -> Tri {
    let t = call.event_time;
    let delta = s.consistency_window_seconds;
    if outside_lifetime(grant, t, s) {
        return Tri::No;
    }
    let Some(created) = grant.created_at else { return Tri::Maybe };
    if grant.ended_at.is_some_and(|ended| t >= ended) {
        flags.insert(Flag::DrainingWindow);
        return Tri::Maybe;
    }
    if t < created + delta {
        if call.details.token_presented {
            flags.insert(Flag::TokenPresented);
            return Tri::Yes;
        }
        flags.insert(Flag::PropagationWindow);
        return Tri::Maybe;
    }
    Tri::Yes
}

/// Is this grantee string an AWS service principal (`svc.amazonaws.com`, `svc.region.amazonaws.com`)?
pub(crate) fn is_service_principal(p: &str) -> bool {
    !p.starts_with("arn:") && (p.ends_with(".amazonaws.com") || p.ends_with(".amazonaws.com.cn"))
}

/// `dynamodb.us-west-2.amazonaws.com` and `dynamodb.amazonaws.com` name the same service.
fn service_name(p: &str) -> &str {
    p.split('.').next().unwrap_or(p)
}

/// The account-root grantee's account, for `arn:<partition>:iam::<account>:root`.
fn root_account(grantee: &str) -> Option<&str> {
    let mut parts = grantee.split(':');
    let (arn, _, iam, _, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (arn == "arn" && iam == "iam" && resource == "root").then_some(account)
}

/// Matches a grantee against a caller (R-U1..R-U9).
pub fn principal_match(grantee: &str, caller: &Caller, s: &Settings, flags: &mut BTreeSet<Flag>) -> Tri {
    if grantee_is(grantee, caller) {
        return Tri::Yes;
    }
    if let Some(account) = root_account(grantee) {
        if caller.account_id.as_deref() != Some(account) {
            return Tri::No;
        }
        if caller.kind.as_deref() == Some("Root") {
            return Tri::Yes;
        }
        flags.insert(Flag::AccountRootGrantee);
        return match s.account_root_grantee {
            RootGrantee::Maybe => Tri::Maybe,
            RootGrantee::RootUserOnly => Tri::No,
        };
    }
    if is_service_principal(grantee) {
        let same_service =
            caller.invoked_by.as_deref().is_some_and(|svc| service_name(svc) == service_name(grantee));
        if caller.kind.as_deref() == Some("AWSService") && same_service {
            flags.insert(Flag::ServicePrincipalGrantee);
            return Tri::Maybe;
        }
        return Tri::No;
    }
    let lower = grantee.to_ascii_lowercase();
    let case_only = [&caller.arn, &caller.session_issuer_arn, &caller.principal_id]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| v.to_ascii_lowercase() == lower));
    if case_only {
        flags.insert(Flag::PrincipalCaseOnlyMatch);
        return Tri::Maybe;
    }
    // A cross-account copy may carry only the caller's account and principal id (R-U8).
    if caller.arn.is_none()
        && caller.session_issuer_arn.is_none()
        && grantee.starts_with("arn:")
        && caller.account_id.as_deref().is_some_and(|a| crate::event::arn_account(grantee) == Some(a))
    {
        flags.insert(Flag::ReducedIdentity);
        return Tri::Maybe;
    }
    Tri::No
}

/// True when `grantee` certainly names `caller`: the caller's own ARN (users, federated users,
/// assumed-role sessions, R-U3/R-U6), the role behind a session (`sessionIssuer.arn`, path
/// included, never the sts session ARN; R-U2), or the caller's principal id (R-U4:
/// `acct:aws:ec2-infrastructure:i-...` grantees, and unique ids `AROA...`/`AIDA...`).
///
/// Account-root and service-principal grantees are never certain matches and return false.
pub fn grantee_is(grantee: &str, caller: &Caller) -> bool {
    let equals = |v: &Option<String>| v.as_deref() == Some(grantee);
    equals(&caller.arn)
        || equals(&caller.session_issuer_arn)
        || equals(&caller.principal_id)
        || caller
            .principal_id
            .as_deref()
            .and_then(|id| id.split_once(':'))
            .is_some_and(|(unique_id, _)| unique_id == grantee && grantee.starts_with("ARO"))
}

/// The encryption-context constraint rule (§2.4).
fn constraint_match(
    constraints: Option<&Constraints>,
    side: &CallSide<'_>,
    world: &dyn World,
    s: &Settings,
    flags: &mut BTreeSet<Flag>,
) -> Tri {
    let Some(c) = constraints else { return Tri::Yes };
    let mut tri = Tri::Yes;
    if c.source_arn.is_some() {
        flags.insert(Flag::SourceArnConstraint);
        tri = Tri::Maybe;
    }
    let ec = match (&c.encryption_context_equals, &c.encryption_context_subset) {
        (None, None) => return tri,
        (Some(_), Some(_)) => return tri.and(Tri::Maybe),
        (Some(e), None) => (e, true),
        (None, Some(sub)) => (sub, false),
    };
    if !takes_encryption_context(side.operation) || world.key_is_non_symmetric(side.key_arn) {
        return tri;
    }
    let algorithm = side.event.details.encryption_algorithm.as_deref();
    if algorithm.is_some_and(|a| a != "SYMMETRIC_DEFAULT") {
        return tri;
    }
    if side.event.details.request_omitted {
        flags.insert(Flag::UnknownRequest);
        return tri.and(Tri::Maybe);
    }
    let empty = BTreeMap::new();
    let request = side.context.unwrap_or(&empty);
    let (constraint, equals) = ec;
    if constraint.is_empty() {
        flags.insert(Flag::EmptyConstraint);
        // R-K7: Subset {} is always met, Equals {} only by an empty context; both uncertain.
        return tri.and(if !equals || request.is_empty() { Tri::Maybe } else { Tri::No });
    }
    let exact = if equals {
        constraint == request
    } else {
        constraint.iter().all(|(k, v)| request.get(k) == Some(v))
    };
    if exact {
        return tri;
    }
    if s.constraint_key_case == KeyCase::Sensitive {
        return Tri::No;
    }
    let (Some(norm_c), Some(norm_r)) = (lower_keys(constraint), lower_keys(request)) else {
        // Two keys that differ only by case: the API says not to do this; undecidable.
        return tri.and(Tri::Maybe);
    };
    let folded = if equals { norm_c == norm_r } else { norm_c.iter().all(|(k, v)| norm_r.get(k) == Some(v)) };
    if folded {
        flags.insert(Flag::EcKeyCaseOnlyMatch);
        tri
    } else {
        Tri::No
    }
}

/// The map with lower-cased keys, or `None` when two keys collide.
fn lower_keys(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, &String>> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        if out.insert(k.to_lowercase(), v).is_some() {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Caller {
        Caller {
            kind: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::111122223333:assumed-role/Svc/s1".into()),
            principal_id: Some("AROAEXAMPLESVC:s1".into()),
            account_id: Some("111122223333".into()),
            session_issuer_arn: Some("arn:aws:iam::111122223333:role/app/Svc".into()),
            invoked_by: None,
        }
    }

    fn matches(grantee: &str, caller: &Caller) -> Tri {
        principal_match(grantee, caller, &Settings::default(), &mut BTreeSet::new())
    }

    #[test]
    fn role_grantee_matches_its_sessions_through_the_issuer_with_path() {
        assert_eq!(matches("arn:aws:iam::111122223333:role/app/Svc", &session()), Tri::Yes);
        assert_eq!(matches("arn:aws:iam::111122223333:role/Svc", &session()), Tri::No, "path matters");
    }

    #[test]
    fn session_and_principal_id_grantees() {
        assert_eq!(matches("arn:aws:sts::111122223333:assumed-role/Svc/s1", &session()), Tri::Yes);
        assert_eq!(matches("arn:aws:sts::111122223333:assumed-role/Svc/s2", &session()), Tri::No);
        assert_eq!(matches("AROAEXAMPLESVC", &session()), Tri::Yes);
        let ec2 = Caller {
            principal_id: Some("111122223333:aws:ec2-infrastructure:i-81e2f56c".into()),
            ..Caller::default()
        };
        assert_eq!(matches("111122223333:aws:ec2-infrastructure:i-81e2f56c", &ec2), Tri::Yes);
        assert_eq!(matches("111122223333", &ec2), Tri::No);
    }

    #[test]
    fn root_service_and_case_only_grantees_are_uncertain() {
        assert_eq!(matches("arn:aws:iam::111122223333:root", &session()), Tri::Maybe);
        assert_eq!(matches("arn:aws:iam::444455556666:root", &session()), Tri::No);
        let root = Caller {
            kind: Some("Root".into()),
            account_id: Some("444455556666".into()),
            ..Caller::default()
        };
        assert_eq!(matches("arn:aws:iam::444455556666:root", &root), Tri::Yes);
        let ddb = Caller {
            kind: Some("AWSService".into()),
            invoked_by: Some("dynamodb.amazonaws.com".into()),
            ..Caller::default()
        };
        assert_eq!(matches("dynamodb.us-west-2.amazonaws.com", &ddb), Tri::Maybe);
        assert_eq!(matches("fargate.us-west-2.amazonaws.com", &ddb), Tri::No);
        assert_eq!(matches("AWS Internal", &ddb), Tri::No);
        assert_eq!(matches("arn:aws:iam::111122223333:role/app/Other", &session()), Tri::No);
        assert_eq!(matches("ARN:AWS:IAM::111122223333:ROLE/APP/SVC", &session()), Tri::Maybe);
        let root_only = Settings { account_root_grantee: RootGrantee::RootUserOnly, ..Settings::default() };
        assert_eq!(
            principal_match("arn:aws:iam::111122223333:root", &session(), &root_only, &mut BTreeSet::new()),
            Tri::No
        );
    }
}
