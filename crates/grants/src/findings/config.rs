//! `[findings]` in granttrail.toml: trusted accounts, allowlists, rules switched off.

use serde::{Deserialize, Serialize};

use super::service::ServiceGrants;
use crate::event::arn_account;
use crate::lifecycle::Grant;

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
