//! Grants AWS services make for themselves: one test of what they are, used by every rule.

use serde::{Deserialize, Serialize};

use crate::lifecycle::Grant;

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

/// A service principal, or the redacted `AWS Internal` services log in its place.
pub(super) fn is_service_principal(p: &str) -> bool {
    p == "AWS Internal" || crate::matching::is_service_principal(p)
}

/// An AWS service acted: the creation was made through a service (`invokedBy`, the trace a
/// `kms:GrantIsForAWSResource` creation leaves), by a service principal or from a service's
/// address, or the grant is for a service or infrastructure principal
/// (`acct:aws:ec2-infrastructure:i-...`) or retired by a service.
pub(super) fn service_made(g: &Grant) -> bool {
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
pub(super) fn service_remediation(g: &Grant) -> String {
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
