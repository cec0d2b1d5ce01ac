//! The choices the KMS documentation leaves open (grant-semantics.md §7), as settings. Each
//! default is the one the specification recommends. Labels depend on these values, so the
//! store records the settings its labels were computed with.

use serde::{Deserialize, Serialize};

/// How encryption-context keys in grant constraints compare (§7 A1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCase {
    /// The API reference: keys case-insensitive, values exact. A match that needs the
    /// case-insensitive comparison is flagged `ec_key_case_only_match`.
    Insensitive,
    /// The 2023 developer guide: keys and values exact.
    Sensitive,
}

/// What an account-root grantee means for the account's other principals (§7 A3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootGrantee {
    /// They may be covered (they probably need an IAM allow too): `Maybe`.
    Maybe,
    /// Only the account's root user is covered.
    RootUserOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// δ: seconds after a grant is created or ended during which its effect is uncertain
    /// (eventual consistency, §2.6, §7 A20).
    pub consistency_window_seconds: i64,
    /// ε: clock and ordering tolerance; `eventTime` has second precision.
    pub clock_tolerance_seconds: i64,
    pub constraint_key_case: KeyCase,
    pub account_root_grantee: RootGrantee,
    /// Does a grantee in another account also need an IAM policy in its own account (§7 A4)?
    /// The KMS guide says no; when true, such coverage is only `Maybe`.
    pub cross_account_grantee_needs_iam: bool,
}

impl Settings {
    pub const DEFAULT_CONSISTENCY_WINDOW_SECONDS: i64 = 300;
    pub const DEFAULT_CLOCK_TOLERANCE_SECONDS: i64 = 1;
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            consistency_window_seconds: Self::DEFAULT_CONSISTENCY_WINDOW_SECONDS,
            clock_tolerance_seconds: Self::DEFAULT_CLOCK_TOLERANCE_SECONDS,
            constraint_key_case: KeyCase::Insensitive,
            account_root_grantee: RootGrantee::Maybe,
            cross_account_grantee_needs_iam: false,
        }
    }
}
