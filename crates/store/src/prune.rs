//! Dropping the records of old calls (`granttrail prune`), by the rule of
//! [`granttrail_grants::retention`]. Only records go: the normalised events, grants, labels
//! and findings are computed from the events and stay as they were.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::{TransactionBehavior, params};
use granttrail_grants::findings::RulesConfig;
use granttrail_grants::{Label, retention};

use crate::records;
use crate::write::{EVENT_COLUMNS, event_from_row};
use crate::{CallFilter, Result, Store};

/// Events examined per statement: the candidates are read in slices of row ids, so memory
/// stays flat however many records go.
const SLICE: i64 = 4096;

/// What a prune dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Records dropped.
    pub records: u64,
    /// The stored bytes that freed (blocks shrink, or go once no record is left in them).
    pub bytes: u64,
}

impl Store {
    /// Drops the records of calls made more than `keep_days` days before `now`, keeping the
    /// records of the events the findings (under `rules`, as of `now`) and the grant-only
    /// labels cite ([`retention::cited_events`]). Labels are brought up to date first, so
    /// what they cite is current. Returns what was dropped and how many events are cited.
    pub fn prune_call_records(
        &mut self,
        rules: &RulesConfig,
        now: i64,
        keep_days: u32,
    ) -> Result<(Pruned, usize)> {
        self.refresh_labels()?;
        // Findings only add to what is kept: measuring "never used" to `now` keeps the most.
        let findings = self.findings(rules, now, Some(now))?;
        let grant_only =
            CallFilter { labels: vec![Label::GrantOnly, Label::GrantOnlyLikely], ..CallFilter::default() };
        let calls = self.calls(&grant_only)?;
        let labels = calls.iter().map(|c| (c.event_id.as_str(), c.label, &c.reasons[..]));
        let cited = retention::cited_events(&findings, labels);
        let pruned = self.prune_records(now - i64::from(keep_days) * retention::DAY, &cited)?;
        Ok((pruned, cited.len()))
    }

    /// Drops the stored records of the events [`retention::prunable`] allows before `cutoff`,
    /// except those of the `cited` events, in one transaction; then gives the freed pages back
    /// to the file system.
    pub fn prune_records(&mut self, cutoff: i64, cited: &BTreeSet<String>) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut candidates = tx.prepare(&format!(
                "SELECT {EVENT_COLUMNS}, r.row_id, r.record_block, r.record_slot FROM events e
                 JOIN (SELECT id AS row_id, record_block, record_slot FROM event_rows
                       WHERE id > ?1 AND id <= ?2 AND record_block IS NOT NULL) r ON r.row_id = e.id
                 WHERE e.event_time < ?3 AND e.event_source = 'kms.amazonaws.com'"
            ))?;
            let mut forget =
                tx.prepare("UPDATE event_rows SET record_block = NULL, record_slot = NULL WHERE id = ?1")?;
            let last: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM event_rows", [], |r| r.get(0))?;
            let mut from = 0;
            while from < last {
                let mut doomed = Vec::new();
                let mut rows = candidates.query(params![from, from + SLICE, cutoff])?;
                while let Some(r) = rows.next()? {
                    let event = event_from_row(&r)??;
                    if retention::prunable(&event, cutoff) && !cited.contains(&event.event_id) {
                        doomed.push((r.get::<_, i64>(25)?, r.get::<_, i64>(26)?, r.get::<_, i64>(27)?));
                    }
                }
                // The slots to empty, by block.
                let mut slots_of: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
                for (row, block, slot) in doomed {
                    forget.execute([row])?;
                    slots_of.entry(block).or_default().insert(slot);
                    pruned.records += 1;
                }
                for (block, slots) in &slots_of {
                    pruned.bytes += records::empty_slots(&tx, *block, slots)?;
                }
                from += SLICE;
            }
        }
        tx.commit()?;
        // SQLite databases are created (or migrated) with incremental auto-vacuum: this truncates
        // the file by the pages the records freed. PostgreSQL's autovacuum reuses them itself.
        self.conn.give_back_free_pages()?;
        Ok(pruned)
    }
}
