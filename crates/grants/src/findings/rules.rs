//! The rules: what each looks for on a grant, and why it matters.

use std::collections::BTreeMap;

use super::uses::principal_family;
use super::{DAY, Hit, MAX_CALL_EVIDENCE, Rule, Severity, Subject};
use crate::event::arn_account;
use crate::lifecycle::GrantState;
use crate::timestamp;

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

pub(super) const CRYPTO_OPS: [&str; 8] = [
    "Encrypt",
    "Decrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// The kind of key a grant's operations show (R-O2: no key type accepts every operation),
/// and the cryptographic operations that kind of key supports in a grant (R-O3).
pub(super) fn key_kind(ops: &[&str]) -> Option<(&'static str, &'static [&'static str])> {
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
pub(super) fn date_in_name(name: &str) -> Option<i64> {
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

/// A rule: what it finds on one grant, added to `hits`.
type Check = fn(&Subject<'_>, &mut Vec<Hit>);

/// Every rule, in id order (GT012 and GT014 are one check: which one a finding is depends on
/// who made the grant).
pub(super) const CHECKS: &[Check] = &[
    cross_account,
    redelegation,
    all_operations,
    no_constraint,
    human_created,
    long_lived,
    name_expired,
    never_used,
    unused_operations,
    duplicate_leftover,
    grantee_deleted,
    escalation,
    delegated,
    used_after_end,
];

/// GT001: the grantee or retiring principal is in an account other than the key's, and not a
/// trusted one.
fn cross_account(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let g = s.g;
    let key_account = arn_account(&g.key_arn).unwrap_or_default();
    let trusted = &s.inputs.config.trusted_accounts;
    let foreign = |p: &str| {
        p.starts_with("arn:")
            && arn_account(p).is_some_and(|a| a != key_account && !trusted.iter().any(|t| t == a))
    };
    let retiring = g.spec.retiring_principal.as_deref().unwrap_or_default();
    if let Some((role, p)) =
        [("grantee", s.grantee), ("retiring principal", retiring)].into_iter().find(|(_, p)| foreign(p))
    {
        hits.push(Hit::new(
            CROSS_ACCOUNT,
            format!("the {role} {p} is in another account than the key ({key_account})"),
        ));
    }
}

/// GT002: the grant allows CreateGrant.
fn redelegation(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    if s.ops.contains(&"CreateGrant") {
        hits.push(Hit::new(REDELEGATION, format!("{} may create grants on the key", s.grantee)));
    }
}

/// GT003: the grant allows every cryptographic operation its key type supports (R-O2, R-O3).
fn all_operations(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let ops = &s.ops;
    if let Some((kind_name, supported)) = key_kind(ops)
        && supported.iter().all(|o| ops.contains(o))
    {
        let everything = ["CreateGrant", "DescribeKey", "RetireGrant"].iter().all(|o| ops.contains(o));
        let detail = if everything {
            format!("{} may use every operation a {kind_name} key supports, CreateGrant included", s.grantee)
        } else {
            format!("{} may use every cryptographic operation of a {kind_name} key", s.grantee)
        };
        hits.push(Hit::new(ALL_OPERATIONS, detail));
    }
}

/// GT004: a hand-made grant of cryptographic operations on a symmetric encryption key without an
/// encryption-context constraint (other key types have none).
fn no_constraint(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let g = s.g;
    let crypto = s.ops.iter().any(|o| CRYPTO_OPS.contains(o))
        && key_kind(&s.ops).is_none_or(|(name, _)| name == "symmetric encryption");
    let constrained = g.spec.constraints.as_ref().is_some_and(|c| {
        c.encryption_context_equals.is_some()
            || c.encryption_context_subset.is_some()
            || c.source_arn.is_some()
    });
    if g.creation_seen && crypto && !constrained && !s.by_service {
        hits.push(Hit::new(
            NO_CONSTRAINT,
            format!("{} with no encryption-context constraint", s.ops.join(", ")),
        ));
    }
}

/// GT005: a person or workload made the grant directly, not an AWS service.
fn human_created(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    if s.g.creation_seen && !s.by_service {
        hits.push(Hit::new(
            HUMAN_CREATED,
            format!("created by {} directly, not by an AWS service", s.creator),
        ));
    }
}

/// GT006: active longer than `max_active_days`.
fn long_lived(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let max = s.inputs.config.max_active_days;
    if let (true, Some(created)) = (s.active, s.g.created_at) {
        let days = (s.inputs.now - created) / DAY;
        if days > max {
            hits.push(Hit::new(LONG_LIVED, format!("active for {days} days (allowed: {max})")));
        }
    }
}

/// GT007: still active after the date its name says it expires.
fn name_expired(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let name = s.g.spec.name.as_deref().unwrap_or_default();
    if let (true, Some(expiry)) = (s.active, date_in_name(name))
        && expiry < s.inputs.now
    {
        let detail = format!("named {name:?}, which says it expired on {}", &timestamp::format(expiry)[..10]);
        hits.push(Hit::new(NAME_EXPIRED, detail));
    }
}

/// GT008: active, seen created more than a day ago, never used, and the logs cover at least a
/// day after its creation.
fn never_used(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let covered = |c: i64| s.inputs.now - c > DAY && s.inputs.logs_end.is_some_and(|end| end - c >= DAY);
    if s.active
        && s.g.creation_seen
        && s.used.is_none_or(|u| u.calls == 0)
        && s.g.created_at.is_some_and(covered)
    {
        hits.push(Hit::new(NEVER_USED, "no call was covered by this grant".into()));
    }
}

/// GT009: used, but never for some of the cryptographic operations it allows.
fn unused_operations(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    if let Some(u) = s.used.filter(|u| u.calls > 0) {
        let unused: Vec<&str> =
            s.ops.iter().copied().filter(|o| CRYPTO_OPS.contains(o) && !u.operations.contains(*o)).collect();
        if !unused.is_empty() {
            hits.push(Hit::new(UNUSED_OPERATIONS, format!("never used for {}", unused.join(", "))));
        }
    }
}

/// GT010: active, and identical to a grant on the key that ended (R-N1).
fn duplicate_leftover(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let g = s.g;
    if !s.active {
        return;
    }
    // `g` is active, so its ended twin is another grant.
    if let Some(t) = s.ctx.ended_twin(g) {
        let detail = format!("identical to grant {}, which was {}", t.grant_id, t.state.as_str());
        hits.push(
            Hit::new(DUPLICATE_LEFTOVER, detail)
                .citing(g.create_event_ids.iter().chain(&t.end_event_ids).cloned().collect()),
        );
    }
}

/// GT011: active, and its role or user grantee was deleted after its creation (R-U10).
fn grantee_deleted(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let (g, grantee) = (s.g, s.grantee);
    let Some(resource) =
        grantee.strip_prefix("arn:").and_then(|r| r.splitn(5, ':').nth(4)).filter(|_| s.active)
    else {
        return;
    };
    let kind = resource.split('/').next().unwrap_or_default();
    let name = resource.rsplit('/').next().unwrap_or_default();
    let deletion = s.inputs.principal_deletions.iter().find(|e| {
        e.succeeded()
            && ((kind == "role" && e.event_name == "DeleteRole")
                || (kind == "user" && e.event_name == "DeleteUser"))
            && e.details.target.as_deref() == Some(&format!("{kind}/{name}"))
            && g.created_at.is_none_or(|c| e.event_time > c)
            && (e.recipient_account_id.as_deref() == arn_account(grantee)
                || e.caller.account_id.as_deref() == arn_account(grantee))
    });
    if let Some(d) = deletion {
        let detail = format!(
            "{grantee} was deleted at {} and the grant is still active",
            timestamp::format(d.event_time)
        );
        hits.push(
            Hit::new(GRANTEE_DELETED, detail)
                .citing(g.create_event_ids.iter().cloned().chain([d.event_id.clone()]).collect()),
        );
    }
}

/// GT012 and GT014: a principal was denied, then this grant appeared, then the same operation
/// succeeded only through it. A grant the principal made for itself is GT012, any other GT014.
fn escalation(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let g = s.g;
    let (Some(u), Some(created)) = (s.used, g.created_at) else { return };
    let creator_family = g.created_by.as_ref().and_then(|a| a.principal.as_deref()).map(principal_family);
    let mut escalations: BTreeMap<bool, (Vec<String>, Vec<String>, String)> = BTreeMap::new();
    for c in &u.grant_only_calls {
        let (Some(op), Some(principal)) = (c.operation.as_deref(), c.principal.as_deref()) else { continue };
        let Some(d) = s.ctx.denial_before(&g.key_arn, op, principal, created) else { continue };
        let self_made = creator_family.as_deref() == Some(principal_family(principal).as_str());
        let entry = escalations.entry(self_made).or_insert_with(|| {
            let summary = format!(
                "{principal} was denied {op} at {}, the grant was created at {} by {}, then {op} succeeded through it",
                timestamp::format(d.event_time),
                timestamp::format(created),
                s.creator
            );
            (Vec::new(), Vec::new(), summary)
        });
        entry.0.push(d.event_id.clone());
        if entry.1.len() < MAX_CALL_EVIDENCE {
            entry.1.push(c.event_id.clone());
        }
    }
    for (self_made, (denials, calls, summary)) in escalations {
        let evidence = denials.into_iter().chain(g.create_event_ids.iter().cloned()).chain(calls).collect();
        let hit = if self_made {
            Hit::new(SELF_GRANT, format!("{summary}: it granted itself access"))
        } else {
            Hit::new(ESCALATION, summary)
        };
        hits.push(hit.citing(evidence));
    }
}

/// GT013: the grant was created through another grant (a delegation chain, R-D4).
fn delegated(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let g = s.g;
    if !g.creation_seen {
        return;
    }
    let parents = s.ctx.parents(g);
    let Some((parent, certain)) = parents.first() else { return };
    let chain = s.ctx.chain(g);
    let root_creator = chain
        .last()
        .and_then(|r| r.created_by.as_ref())
        .and_then(|a| a.principal.as_deref())
        .unwrap_or("unknown");
    let links: Vec<&str> =
        [g.grant_id.as_str()].into_iter().chain(chain.iter().map(|p| p.grant_id.as_str())).collect();
    let mut detail = format!(
        "created by {} {}through grant {parent}; chain {} (the first created by {root_creator})",
        s.creator,
        if *certain { "" } else { "possibly " },
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
    let parent_active =
        s.ctx.by_id.get(&(g.key_arn.as_str(), *parent)).is_some_and(|p| p.state == GrantState::Active);
    let remediation = (s.active && parent_active).then(|| {
        format!(
            "{}; and replace the parent without CreateGrant: aws kms revoke-grant --key-id {} --grant-id {parent}",
            s.revoke, g.key_arn
        )
    });
    hits.push(Hit::new(DELEGATED, detail).citing(evidence).advising(remediation));
}

/// GT015: calls the grant allowed kept succeeding beyond the consistency window after it
/// ended, with no other grant to explain them (R-EC2).
fn used_after_end(s: &Subject<'_>, hits: &mut Vec<Hit>) {
    let g = s.g;
    let after_end = s.ctx.calls_after_end(g);
    let Some(first) = after_end.first() else { return };
    let ended = g.ended_at.map(timestamp::format).unwrap_or_default();
    let detail = format!(
        "{} call(s) the grant allowed succeeded after it was {} at {ended}, beyond the {}s consistency window (first: {} by {} at {})",
        after_end.len(),
        g.state.as_str(),
        s.inputs.settings.consistency_window_seconds,
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
        "find the path that still allows {}: aws kms get-key-policy --key-id {} --policy-name default; \
         its IAM policies; aws kms list-grants --key-id {}",
        s.grantee, g.key_arn, g.key_arn
    );
    hits.push(Hit::new(USED_AFTER_END, detail).citing(evidence).advising(Some(remediation)));
}
