//! Every finding the database shows: the rules over the rebuilt grants and their uses, plus
//! the reconciliation of imported list-grants snapshots. One loader for every front end.

use granttrail_grants::findings::{self, Finding, FindingInputs, RulesConfig, evaluate, grant_uses};
use granttrail_grants::reconcile;

use crate::{GrantFilter, Result, Store};

impl Store {
    /// The findings as of `now` (age-based rules measure against it), most severe first,
    /// then by rule, key and grant.
    pub fn findings(&self, rules: &RulesConfig, now: i64) -> Result<Vec<Finding>> {
        let grants = self.grants(&GrantFilter::default())?;
        let uses = grant_uses(&grants, &self.covered_calls()?);
        let deletions = self.principal_deletions()?;
        let denials = self.access_denials()?;
        let settings = self.settings();
        let window = settings.consistency_window_seconds;
        let after_end = self.calls_after_grant_ends(window)?;
        let mut found = evaluate(&FindingInputs {
            grants: &grants,
            uses: &uses,
            principal_deletions: &deletions,
            denials: &denials,
            calls_after_end: &after_end,
            settings,
            config: rules,
            now,
        });
        for snapshot in self.grant_lists()? {
            found.extend(reconcile::reconcile(&snapshot, &grants, rules, window));
        }
        findings::sort(&mut found);
        Ok(found)
    }
}
