//! Every finding the database shows: the rules over the rebuilt grants and their uses, plus
//! the reconciliation of imported list-grants snapshots. One loader for every front end.

use foldhash::HashMap;
use std::collections::BTreeMap;

use granttrail_grants::findings::{
    self, Evidence, Finding, FindingInputs, GrantUse, RulesConfig, evaluate, grant_uses,
};
use granttrail_grants::integrity::{self, EventSource, FileVerdict, Role};
use granttrail_grants::lifecycle::Grant;
use granttrail_grants::reconcile::Snapshot;
use granttrail_grants::timestamp;
use granttrail_grants::{last_usage, reconcile};

use crate::{GrantFilter, Result, Store};

impl Store {
    /// The findings as of `now` (age-based rules measure against it), given that the logs
    /// end at `logs_end` (the latest event: "never used" needs a day of logs after a
    /// creation), most severe first, then by rule, key and grant.
    pub fn findings(&self, rules: &RulesConfig, now: i64, logs_end: Option<i64>) -> Result<Vec<Finding>> {
        self.findings_where(rules, now, logs_end, None, true)
    }

    /// The findings on `keys` only: every rule looks at one key's grants, calls and listings,
    /// so these are exactly the findings of [`Store::findings`] on those keys, at a cost that
    /// grows with those keys instead of the whole database.
    pub fn findings_on_keys(
        &self,
        rules: &RulesConfig,
        now: i64,
        logs_end: Option<i64>,
        keys: &[String],
    ) -> Result<Vec<Finding>> {
        self.findings_where(rules, now, logs_end, Some(keys), false)
    }

    /// What recording a verification can raise: the findings on `keys` (those whose events
    /// were read from the files judged, [`Store::keys_of_objects`]) and the findings on log
    /// files themselves (altered, missing), which belong to no key.
    pub fn findings_after_verification(
        &self,
        rules: &RulesConfig,
        now: i64,
        logs_end: Option<i64>,
        keys: &[String],
    ) -> Result<Vec<Finding>> {
        self.findings_where(rules, now, logs_end, Some(keys), true)
    }

    /// The keys of the events stored from the objects named (as they were ingested). A scan of
    /// the events: meant for the rare object a verification finds altered or unlisted.
    pub fn keys_of_objects(&self, objects: &[String]) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT t.text FROM event_rows e JOIN texts t ON t.id = e.key
             WHERE e.object_id = (SELECT id FROM objects WHERE source = ?1)",
        )?;
        let mut keys = std::collections::BTreeSet::new();
        for object in objects {
            for key in stmt.query_map([object], |r| r.get::<_, String>(0))? {
                keys.insert(key?);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Every rule looks at one key's grants, calls and listings: the findings are worked out a
    /// key at a time, so memory holds one key's calls, not the database's.
    fn findings_where(
        &self,
        rules: &RulesConfig,
        now: i64,
        logs_end: Option<i64>,
        keys: Option<&[String]>,
        file_findings: bool,
    ) -> Result<Vec<Finding>> {
        let settings = self.settings();
        let window = settings.consistency_window_seconds;
        let mut snapshots: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
        for snapshot in self.grant_lists()? {
            snapshots.entry(snapshot.key_arn.clone()).or_default().push(snapshot);
        }
        let scopes: Vec<String> = match keys {
            Some(keys) => keys.to_vec(),
            None => {
                let mut all = self.grant_keys()?;
                all.extend(snapshots.keys().cloned());
                all.sort_unstable();
                all.dedup();
                all
            }
        };
        let deletions = self.principal_deletions()?;
        let untrusted: HashMap<String, FileVerdict> =
            self.untrusted_log_files()?.into_iter().map(|f| (f.file_name.clone(), f)).collect();
        let mut found = Vec::new();
        for key in &scopes {
            let grants =
                self.grants(&GrantFilter { key_arn: Some(key.clone()), ..GrantFilter::default() })?;
            let uses = grant_uses(&grants, &self.covered_calls(Some(key))?);
            found.extend(evaluate(&FindingInputs {
                grants: &grants,
                uses: &uses,
                principal_deletions: &deletions,
                denials: &self.access_denials(Some(key))?,
                calls_after_end: &self.calls_after_grant_ends(window, Some(key))?,
                settings,
                config: rules,
                now,
                logs_end,
            }));
            for snapshot in snapshots.get(key).into_iter().flatten() {
                found.extend(reconcile::reconcile(snapshot, &grants, rules, window));
            }
            found.extend(self.grant_evidence_findings(rules, &grants, &uses, &untrusted)?);
        }
        let checked = !rules.disabled_rules.iter().any(|r| r == last_usage::USE_NOT_LOGGED.id);
        for imported in self.key_last_usages(None)?.into_iter().filter(|_| checked) {
            let key = imported.key_arn.as_str();
            if keys.is_some_and(|keys| !keys.iter().any(|k| k == key))
                || rules.allow_keys.iter().any(|k| k == key)
            {
                continue;
            }
            let event_id = imported.usage.last_use.as_ref().and_then(|u| u.event_id.as_deref());
            let logged = self.logged_use(key, event_id)?;
            found.extend(last_usage::check(key, &imported.usage, logged, &imported.source));
        }
        let on = |rule: &findings::Rule| !rules.disabled_rules.iter().any(|r| r == rule.id);
        if file_findings && on(&integrity::LOG_FILE_ALTERED) {
            found.extend(untrusted.values().filter_map(integrity::altered));
        }
        if file_findings && on(&integrity::LOG_FILE_MISSING) {
            found.extend(self.missing_log_files()?.iter().map(integrity::missing));
        }
        findings::sort(&mut found);
        Ok(found)
    }

    /// GT106 on `grants` whose events were read from `untrusted` (altered or unlisted) log
    /// files, by file name. (GT107 and GT108, on the files themselves, belong to no key.)
    fn grant_evidence_findings(
        &self,
        rules: &RulesConfig,
        grants: &[Grant],
        uses: &BTreeMap<(String, String), GrantUse>,
        untrusted: &HashMap<String, FileVerdict>,
    ) -> Result<Vec<Finding>> {
        let on = |rule: &findings::Rule| !rules.disabled_rules.iter().any(|r| r == rule.id);
        let mut out = Vec::new();
        if untrusted.is_empty() || !on(&integrity::UNVERIFIED_GRANT_EVIDENCE) {
            return Ok(out);
        }
        for g in grants.iter().filter(|g| !rules.allow_keys.contains(&g.key_arn)) {
            let grant_only: Vec<(&String, Role)> = uses
                .get(&(g.key_arn.clone(), g.grant_id.clone()))
                .map(|u| u.grant_only_calls.iter().map(|c| (&c.event_id, Role::GrantOnlyCall)).collect())
                .unwrap_or_default();
            let events = g
                .create_event_ids
                .iter()
                .map(|id| (id, Role::Creates))
                .chain(g.end_event_ids.iter().map(|id| (id, Role::Ends)))
                .chain(grant_only);
            let mut sources = Vec::new();
            for (event_id, role) in events {
                for (event, objects) in self.event_copies(event_id)? {
                    // Of records colliding on one eventID, not those about another grant.
                    if role != Role::GrantOnlyCall
                        && event.grant_id.as_deref().is_some_and(|id| id != g.grant_id)
                    {
                        continue;
                    }
                    // A record rests on every file it was read from: unverified only if each
                    // of them is altered or unlisted.
                    let verdicts: Vec<_> = objects
                        .iter()
                        .map(|object| untrusted.get(integrity::file_name(object)).map(|f| f.verdict))
                        .collect();
                    let chosen = verdicts.iter().position(Option::is_none).unwrap_or(0);
                    let (Some(object), Some(&verdict)) = (objects.get(chosen), verdicts.get(chosen)) else {
                        continue;
                    };
                    sources.push(EventSource {
                        event_id: event_id.clone(),
                        role,
                        object: object.clone(),
                        verdict,
                    });
                }
            }
            out.extend(integrity::unverified_grant_evidence(g, &sources));
        }
        Ok(out)
    }

    /// The evidence of a finding: each event it names with the object it came from (a name
    /// and time when the event is stored), and the imported file it compares with: for the
    /// reconciliation rules the list-grants snapshot (`snapshots`, from
    /// [`Store::grant_lists`]), for GT105 the key's last-usage record.
    pub fn finding_evidence(&self, f: &Finding, snapshots: &[Snapshot]) -> Result<Vec<Evidence>> {
        let mut out = Vec::new();
        for id in &f.event_ids {
            let stored = self.event(id)?;
            out.push(Evidence {
                event_id: Some(id.clone()),
                event_name: stored.as_ref().map(|s| s.event.event_name.clone()),
                event_time: stored.as_ref().map(|s| timestamp::format(s.event.event_time)),
                object: stored.map(|s| s.object),
                listed_at: None,
            });
        }
        let imported = if reconcile::is_reconciliation_rule(f.rule.id) {
            snapshots.iter().find(|s| s.key_arn == f.key_arn).map(|s| (s.source.clone(), s.at))
        } else if f.rule.id == last_usage::USE_NOT_LOGGED.id {
            self.key_last_usages(Some(&f.key_arn))?.into_iter().next().map(|u| (u.source, u.at))
        } else if f.rule.id == integrity::LOG_FILE_ALTERED.id {
            let files = self.untrusted_log_files()?;
            let file = files.into_iter().find(|file| integrity::altered(file).is_some_and(|a| a.id == f.id));
            file.map(|file| (file.object, file.verified_at))
        } else if f.rule.id == integrity::LOG_FILE_MISSING.id {
            let files = self.missing_log_files()?;
            files.into_iter().find(|m| integrity::missing(m).id == f.id).map(|m| (m.listed_by, m.period_end))
        } else {
            None
        };
        if let Some((source, at)) = imported {
            out.push(Evidence {
                event_id: None,
                event_name: None,
                event_time: None,
                object: Some(source),
                listed_at: Some(timestamp::format(at)),
            });
        }
        Ok(out)
    }
}
