//! Dropping the records of old calls (`granttrail prune`), by the rule of
//! [`granttrail_grants::retention`]. Only records go: the normalised events, grants, labels
//! and findings are computed from the events and stay as they were.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::{Connection, Engine, TransactionBehavior, execute_listed, params, params_from_iter};
use granttrail_grants::findings::RulesConfig;
use granttrail_grants::{Label, retention};

use crate::records;
use crate::write::{EVENT_COLUMNS, event_from_row};
use crate::{CallFilter, Result, Store, StoreError};

/// Events examined per statement: the candidates are read in slices of row ids, so memory
/// stays flat however many records go.
const SLICE: i64 = 4096;

/// Times prune works its citations out again when other writers keep adding objects.
const PRUNE_ATTEMPTS: u32 = 3;

/// The event rows marked as having no record in one statement.
const FORGOTTEN_PER_STATEMENT: usize = 128;

/// The eventIDs looked up in one statement for their sharedEventIDs.
const SHARED_LOOKUPS: usize = 500;

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
        for _ in 0..PRUNE_ATTEMPTS {
            // The citations are worked out outside the prune's transaction (labelling and
            // findings take their own): if another writer added objects or imports meanwhile,
            // their calls may be unlabelled or cite more, so they are worked out again.
            let inputs = inputs(&self.conn)?;
            self.refresh_labels()?;
            // Findings only add to what is kept: measuring "never used" to `now` keeps the most.
            let findings = self.findings(rules, now, Some(now))?;
            let grant_only = CallFilter {
                labels: vec![Label::GrantOnly, Label::GrantOnlyLikely],
                ..CallFilter::default()
            };
            let calls = self.calls(&grant_only)?;
            let labels = calls.iter().map(|c| (c.event_id.as_str(), c.label, &c.reasons[..]));
            let cited = retention::cited_events(&findings, labels);
            let cutoff = now - i64::from(keep_days) * retention::DAY;
            if let Some(pruned) = self.prune_records(cutoff, &cited, inputs)? {
                return Ok((pruned, cited.len()));
            }
        }
        Err(StoreError::Busy(format!(
            "other writers added objects while prune worked out what to keep, {PRUNE_ATTEMPTS} times: nothing was dropped; run it again when fewer are writing"
        )))
    }

    /// Drops the stored records of the events [`retention::prunable`] allows before `cutoff`,
    /// except those of the `cited` events and their other records ([`kept_beside`]), in one
    /// transaction; then gives the freed pages back to the file system. Drops nothing, and
    /// returns `None`, when the database no longer holds the `inputs` the citations were
    /// worked out from.
    fn prune_records(
        &mut self,
        cutoff: i64,
        cited: &BTreeSet<String>,
        inputs: i64,
    ) -> Result<Option<Pruned>> {
        let mut pruned = Pruned::default();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if self::inputs(&tx)? != inputs {
            return Ok(None);
        }
        let (kept, kept_shared) = kept_beside(&tx, cutoff, cited)?;
        // Deleting a block (on SQLite: records::empty_slots) has the engine check that no event
        // row names it. Nothing indexes `record_block` (ingest and reads never need it):
        // without this index, made for the prune and dropped before it commits, that check read
        // every event row, for each block.
        let sqlite = tx.engine() == Engine::Sqlite;
        if sqlite {
            tx.execute_batch("CREATE INDEX event_rows_by_record_block ON event_rows (record_block)")?;
        }
        {
            let mut candidates = tx.prepare(&format!(
                "SELECT {EVENT_COLUMNS}, r.row_id, r.record_block, r.record_slot FROM events e
                 JOIN (SELECT id AS row_id, record_block, record_slot FROM event_rows
                       WHERE id > ?1 AND id <= ?2 AND record_block IS NOT NULL) r ON r.row_id = e.id
                 WHERE e.event_time < ?3 AND e.event_source = 'kms.amazonaws.com'"
            ))?;
            let last: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM event_rows", [], |r| r.get(0))?;
            let mut from = 0;
            while from < last {
                let mut doomed = Vec::new();
                let mut rows = candidates.query(params![from, from + SLICE, cutoff])?;
                while let Some(r) = rows.next()? {
                    let event = event_from_row(&r)??;
                    let shared_kept =
                        event.shared_event_id.as_ref().is_some_and(|shared| kept_shared.contains(shared));
                    if retention::prunable(&event, cutoff) && !kept.contains(&event.event_id) && !shared_kept
                    {
                        doomed.push((r.get::<_, i64>(25)?, r.get::<_, i64>(26)?, r.get::<_, i64>(27)?));
                    }
                }
                // The slots to empty, by block.
                let mut slots_of: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
                let mut rows = Vec::with_capacity(doomed.len());
                for (row, block, slot) in doomed {
                    rows.push(row);
                    slots_of.entry(block).or_default().insert(slot);
                    pruned.records += 1;
                }
                forget_records(&tx, &rows)?;
                for (block, slots) in &slots_of {
                    pruned.bytes += records::empty_slots(&tx, *block, slots)?;
                }
                from += SLICE;
            }
        }
        if sqlite {
            tx.execute_batch("DROP INDEX event_rows_by_record_block")?;
        }
        tx.commit()?;
        // SQLite databases are created (or migrated) with incremental auto-vacuum: this truncates
        // the file by the pages the records freed. PostgreSQL's autovacuum reuses them itself.
        self.conn.give_back_free_pages()?;
        Ok(Some(pruned))
    }
}

/// Marks the event rows `rows` as having no record, many a statement.
fn forget_records(tx: &Connection, rows: &[i64]) -> Result<()> {
    let update = |list: &str| {
        format!("UPDATE event_rows SET record_block = NULL, record_slot = NULL WHERE id IN (VALUES {list})")
    };
    execute_listed(tx, update, "bigint", &[], rows, FORGOTTEN_PER_STATEMENT)?;
    Ok(())
}

/// How many objects and imports the database holds: all a label or finding is computed from.
fn inputs(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM objects) + (SELECT count(*) FROM imported_grant_lists)
              + (SELECT count(*) FROM imported_key_policies) + (SELECT count(*) FROM imported_iam)
              + (SELECT count(*) FROM imported_key_last_usage) + (SELECT count(*) FROM verified_log_files)",
        [],
        |r| r.get(0),
    )?)
}

/// The eventIDs and sharedEventIDs whose records are kept beside the `cited` events': a
/// grant's or finding's evidence shows every record of an eventID (a collision: another
/// record under an eventID a kept one has), and a cited call's copies delivered to the other
/// accounts (its sharedEventID), whose caller or key side the label may rest on.
fn kept_beside(
    tx: &Connection,
    cutoff: i64,
    cited: &BTreeSet<String>,
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut kept = cited.clone();
    let mut colliding = tx.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id IN (SELECT event_id FROM event_id_collisions)"
    ))?;
    let mut rows = colliding.query([])?;
    while let Some(r) = rows.next()? {
        let event = event_from_row(&r)??;
        if !retention::prunable(&event, cutoff) {
            kept.insert(event.event_id);
        }
    }
    let mut shared = BTreeSet::new();
    let ids: Vec<&String> = kept.iter().collect();
    for chunk in ids.chunks(SHARED_LOOKUPS) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let mut lookup = tx.prepare(&format!(
            "SELECT DISTINCT shared_event_id FROM event_rows
             WHERE event_id IN ({}) AND shared_event_id IS NOT NULL",
            list.join(", ")
        ))?;
        let mut rows = lookup.query(params_from_iter(chunk.iter().map(|id| id.as_str())))?;
        while let Some(r) = rows.next()? {
            shared.insert(r.get::<_, String>(0)?);
        }
    }
    Ok((kept, shared))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::StoredRecords;
    use granttrail_grants::{KmsEvent, normalise};

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111";
    /// After every event below: all are old.
    const LATER: i64 = 4_000_000_000;

    fn record(event_id: &str, name: &str, shared: Option<&str>) -> (KmsEvent, String) {
        let shared = shared.map(|s| format!(r#""sharedEventID":"{s}","#)).unwrap_or_default();
        let raw = format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"{event_id}",{shared}"eventName":"{name}",
                "eventTime":"2024-01-01T00:00:00Z","resources":[{{"ARN":"{KEY}"}}],"recipientAccountId":"111122223333",
                "requestParameters":{{"granteePrincipal":"arn:aws:iam::111122223333:role/r","operations":["Decrypt"]}},
                "responseElements":{{"grantId":"g-{event_id}"}}}}"#
        );
        (normalise(raw.as_bytes()).unwrap().unwrap(), raw)
    }

    fn write(store: &mut Store, object: &str, records: &[(KmsEvent, String)]) {
        let mut writer = store.begin_object(object).unwrap().unwrap();
        let (events, raws): (Vec<_>, Vec<_>) = records.iter().cloned().unzip();
        let stored = StoredRecords::compress(raws.iter().map(String::as_str)).unwrap();
        writer.add_records(&events, &stored).unwrap();
        writer.commit("LogFile", 1, records.len() as u64, 0).unwrap();
    }

    /// Whether each record stored under `event_id` is still there.
    fn kept(store: &Store, event_id: &str) -> Vec<bool> {
        store.event_records(event_id).unwrap().iter().map(|r| r.record.is_some()).collect()
    }

    #[test]
    fn an_object_stored_after_the_citations_were_worked_out_stops_the_prune() {
        let mut store = Store::open_in_memory().unwrap();
        write(&mut store, "a", &[record("d1", "Decrypt", None)]);
        let worked_out_with = inputs(&store.conn).unwrap();
        write(&mut store, "b", &[record("d2", "Decrypt", None)]);
        assert_eq!(store.prune_records(LATER, &BTreeSet::new(), worked_out_with).unwrap(), None);
        assert_eq!((kept(&store, "d1"), kept(&store, "d2")), (vec![true], vec![true]), "nothing was dropped");

        let schema = |store: &Store| -> String {
            store
                .conn
                .query_row(
                    "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master ORDER BY name)",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let before = schema(&store);
        let now = inputs(&store.conn).unwrap();
        let pruned = store.prune_records(LATER, &BTreeSet::new(), now).unwrap().unwrap();
        assert_eq!(pruned.records, 2);
        assert_eq!((kept(&store, "d1"), kept(&store, "d2")), (vec![false], vec![false]));
        let blocks: i64 =
            store.conn.query_row("SELECT count(*) FROM record_blocks", [], |r| r.get(0)).unwrap();
        assert_eq!(blocks, 0, "the blocks left with no record are deleted");
        assert_eq!(schema(&store), before, "the index the prune made is gone");
    }

    #[test]
    fn a_cited_calls_copies_and_every_record_of_a_kept_event_id_stay() {
        let mut store = Store::open_in_memory().unwrap();
        // d1 and its copy in another account (d1-copy, same sharedEventID); d2 uncited.
        write(
            &mut store,
            "a",
            &[
                record("d1", "Decrypt", Some("s1")),
                record("d1-copy", "Decrypt", Some("s1")),
                record("d2", "Decrypt", Some("s2")),
                record("c1", "CreateGrant", None),
            ],
        );
        // A different record under the CreateGrant's eventID (a collision): evidence of the grant.
        write(&mut store, "b", &[record("c1", "Decrypt", None)]);
        assert_eq!(kept(&store, "c1").len(), 2, "both records of c1 are stored");
        let cited = BTreeSet::from(["d1".to_string()]);
        let pruned = store.prune_records(LATER, &cited, inputs(&store.conn).unwrap()).unwrap().unwrap();
        assert_eq!(pruned.records, 1);
        assert_eq!(kept(&store, "d1"), [true]);
        assert_eq!(kept(&store, "d1-copy"), [true], "the cited call's copy in the other account");
        assert_eq!(kept(&store, "c1"), [true, true], "every record of the grant's eventID");
        assert_eq!(kept(&store, "d2"), [false]);
    }
}
