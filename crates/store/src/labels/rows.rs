//! Writing a key's labels and observations, touching only the rows that differ.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::BTreeSet;

use crate::db::{Connection, ToSql, insert_rows, params, query_listed};
use granttrail_grants::{CallLabel, Grant, GrantReasons, Observation, Reason, Side};

use crate::codes::{self, Coded};
use crate::texts;
use crate::write::{EventRow, rows_with_event_ids, to_json};
use crate::{Result, StoreError};

/// Makes the stored observations of `key` equal to `observations`, writing only differences.
pub(super) fn replace_observations(conn: &Connection, key: &str, observations: &[Observation]) -> Result<()> {
    let key = texts::id(conn, key)?;
    let mut stmt = conn.prepare_cached(
        "SELECT behaviour_group, kind, event_time, event_id FROM observations WHERE key = ?1",
    )?;
    let stored: HashSet<(i64, i64, i64, String)> = stmt
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let fresh: HashSet<(i64, i64, i64, String)> =
        observations.iter().map(|o| (o.group, o.kind.code(), o.time, o.event_id.clone())).collect();
    let mut delete = conn.prepare_cached(
        "DELETE FROM observations
         WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time = ?4 AND event_id = ?5",
    )?;
    for (group, kind, time, event_id) in stored.difference(&fresh) {
        delete.execute(params![key, group, kind, time, event_id])?;
    }
    let added: Vec<[&dyn ToSql; 5]> = fresh
        .difference(&stored)
        .map(|(group, kind, time, event_id)| -> [&dyn ToSql; 5] { [&key, group, kind, time, event_id] })
        .collect();
    insert_rows(
        conn,
        "observations (key, behaviour_group, kind, event_time, event_id)",
        "",
        &added,
        LABELS_PER_INSERT,
    )?;
    Ok(())
}

/// Grants a [`LabelWriter`] remembers of those it reads itself before it starts again (memory
/// stays bounded on a key with many grants).
const GRANTS_REMEMBERED: usize = 4096;

/// A label as stored, but for its call side: texts as ids, enums as codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LabelRow {
    event_time: i64,
    key: i64,
    operation: Option<i64>,
    principal: Option<i64>,
    label: i64,
    evidence: i64,
    grant_ids: i64,
    grant_reasons: Option<i64>,
    reasons: i64,
    flags: i64,
    behaviour_group: Option<i64>,
}

/// Writes label rows, finding or adding the texts they refer to. One per transaction.
struct LabelWriter<'c, 'g> {
    conn: &'c Connection,
    json: Vec<u8>,
    /// The key the labels are about, and its grants as the classifier had them: a label names
    /// only those, so they need not be read again.
    key: &'g str,
    key_grants: HashMap<&'g str, &'g Grant>,
    /// Other grants labels name, by key and id, read once.
    grants: HashMap<String, HashMap<String, Option<Grant>>>,
    /// Label rows written but not sent yet, by call side (event row, side code); sent many
    /// rows a statement by [`LabelWriter::flush`], before anything reads them. Those of call
    /// sides with no stored row that the writer knows of, and those replacing a stored row.
    labels: Vec<(i64, i64, LabelRow)>,
    replacing: Vec<(i64, i64, LabelRow)>,
    unsent: HashSet<(i64, i64)>,
    /// The grant lists labels written here name, whose members are stored or in `members`.
    lists: HashSet<i64>,
    /// List members not sent yet: (grant text id, list text id).
    members: Vec<[i64; 2]>,
}

/// The `grant_ids` of a label that names no grant: no text, and left out of the index of the
/// calls naming each list (most labels on an account with few grants).
const NO_GRANTS: i64 = 0;

/// Label rows [`LabelWriter`] holds before it sends them.
const LABELS_PER_INSERT: usize = 128;

/// Stored label rows read in one statement where batches pay.
const LABELS_PER_LOOKUP: usize = 128;

impl<'c, 'g> LabelWriter<'c, 'g> {
    fn new(conn: &'c Connection, key: &'g str, key_grants: &'g [Grant]) -> LabelWriter<'c, 'g> {
        LabelWriter {
            conn,
            json: Vec::new(),
            key,
            key_grants: key_grants.iter().map(|g| (g.grant_id.as_str(), g)).collect(),
            grants: HashMap::new(),
            labels: Vec::new(),
            replacing: Vec::new(),
            unsent: HashSet::new(),
            lists: HashSet::new(),
            members: Vec::new(),
        }
    }

    /// Sends the label rows and list members written so far.
    fn flush(&mut self) -> Result<()> {
        let new = label_values(&self.labels);
        // Inserted, not upserted: an update's `ABORT` makes SQLite copy every page the
        // statement changes to a journal first (see `insert_rows`).
        let inserted = insert_rows(
            self.conn,
            INTO_LABELS,
            "ON CONFLICT (event, side) DO NOTHING",
            &new,
            LABELS_PER_INSERT,
        )?;
        if inserted < new.len() {
            // A call side labelled before where the writer did not look (on another key):
            // the rows are sent again, each replacing its side's.
            insert_rows(self.conn, INTO_LABELS, REPLACE_LABEL, &new, LABELS_PER_INSERT)?;
        }
        insert_rows(
            self.conn,
            INTO_LABELS,
            REPLACE_LABEL,
            &label_values(&self.replacing),
            LABELS_PER_INSERT,
        )?;
        let members: Vec<[&dyn ToSql; 2]> =
            self.members.iter().map(|[grant, list]| -> [&dyn ToSql; 2] { [grant, list] }).collect();
        insert_rows(self.conn, INTO_MEMBERS, "ON CONFLICT DO NOTHING", &members, LABELS_PER_INSERT)?;
        self.labels.clear();
        self.replacing.clear();
        self.unsent.clear();
        self.members.clear();
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<i64> {
        texts::id(self.conn, text)
    }

    fn json(&mut self, value: &impl serde::Serialize) -> Result<i64> {
        // The buffer is lent out while the text is looked up, so it is reused, not copied.
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        serde_json::to_writer(&mut json, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = match std::str::from_utf8(&json) {
            Ok(text) => self.text(text),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        self.json = json;
        id
    }

    /// The id of a label's list of grants, stored as the JSON array of the grant ids' texts
    /// ids (`[12,345]`): lists are long and many are distinct where grants are many, and each
    /// grant id is stored once, in `texts`. [`NO_GRANTS`] when it names none.
    fn grant_list(&mut self, grant_ids: &[String]) -> Result<i64> {
        if grant_ids.is_empty() {
            return Ok(NO_GRANTS);
        }
        let ids = grant_ids.iter().map(|g| self.text(g)).collect::<Result<Vec<i64>>>()?;
        self.json(&ids)
    }

    /// How the first reasons of `l` name its grants ([`GrantReasons`]), if they name them as
    /// the grants (the classifier's, or as stored) render; and the reasons after those, stored
    /// as JSON.
    fn way<'l>(&mut self, l: &'l CallLabel) -> Result<(Option<GrantReasons>, &'l [Reason])> {
        let on_writers_key = l.key_arn == self.key;
        for id in &l.grant_ids {
            let read = (on_writers_key && self.key_grants.contains_key(id.as_str()))
                || self.grants.get(&l.key_arn).is_some_and(|on_key| on_key.contains_key(id));
            if !read {
                let grant = crate::read::grant(self.conn, &l.key_arn, id)?;
                let on_key = self.grants.entry(l.key_arn.clone()).or_default();
                if on_key.len() >= GRANTS_REMEMBERED {
                    on_key.clear();
                }
                on_key.insert(id.clone(), grant);
            }
        }
        let on_key = self.grants.get(&l.key_arn);
        let way = GrantReasons::of(l, |id| {
            let of_key = self.key_grants.get(id).filter(|_| on_writers_key).copied();
            of_key.or_else(|| on_key.and_then(|grants| grants.get(id)).and_then(Option::as_ref))
        });
        let others = match way {
            Some(_) => &l.reasons[l.grant_ids.len()..],
            None => &l.reasons[..],
        };
        Ok((way, others))
    }

    /// Where a round trip costs more than a lookup ([`Connection::batches_pay`]), stores every
    /// text the rows of `labels` refer to in a few statements, so that [`LabelWriter::row`]
    /// then finds each without asking the database.
    fn store_texts<'l>(&mut self, labels: impl IntoIterator<Item = &'l CallLabel> + Clone) -> Result<()> {
        if !self.conn.batches_pay() {
            return Ok(());
        }
        let plain = labels.clone().into_iter().flat_map(|l| {
            l.operation
                .into_iter()
                .chain(l.principal.as_deref())
                .chain(l.grant_ids.iter().map(String::as_str))
        });
        texts::store_all(self.conn, plain)?;
        let mut json = Vec::new();
        for l in labels {
            if !l.grant_ids.is_empty() {
                let ids = l.grant_ids.iter().map(|g| self.text(g)).collect::<Result<Vec<i64>>>()?;
                json.push(to_json(&ids)?);
            }
            json.push(to_json(&self.way(l)?.1)?);
            json.push(to_json(&l.flags)?);
        }
        texts::store_all(self.conn, json.iter().map(String::as_str))
    }

    /// The row `l` is stored as, on key `key` (a text id). The sentences that name its grants
    /// are kept as the way they name them (rendered again when read); the other reasons as
    /// JSON.
    fn row(&mut self, key: i64, l: &CallLabel) -> Result<LabelRow> {
        let (way, others) = self.way(l)?;
        Ok(LabelRow {
            event_time: l.event_time,
            key,
            operation: l.operation.map(|o| self.text(o)).transpose()?,
            principal: l.principal.as_deref().map(|p| self.text(p)).transpose()?,
            label: l.label.code(),
            evidence: l.evidence.code(),
            grant_ids: self.grant_list(&l.grant_ids)?,
            grant_reasons: way.map(Coded::code),
            reasons: self.json(&others)?,
            flags: self.json(&l.flags)?,
            behaviour_group: l.behaviour_group,
        })
    }

    /// Writes `l` (replacing a stored row of its call side, which `over_stored` says the
    /// caller found), and the members of its grant list if no label written here named the
    /// list before. Members are written in the label's transaction, so a list some stored
    /// label names always has them.
    fn write(&mut self, event: i64, l: &CallLabel, row: &LabelRow, over_stored: bool) -> Result<()> {
        let side = l.side.code();
        // A second label for one call side replaces the first, as it would one stored before.
        self.flush_if_unsent(event, side)?;
        if over_stored { &mut self.replacing } else { &mut self.labels }.push((event, side, *row));
        self.unsent.insert((event, side));
        if row.grant_ids != NO_GRANTS && self.lists.insert(row.grant_ids) {
            for g in &l.grant_ids {
                let grant = self.text(g)?;
                self.members.push([grant, row.grant_ids]);
            }
        }
        if self.labels.len() + self.replacing.len() >= LABELS_PER_INSERT {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is written, if a row of this call side is among it: before that row is read
    /// or replaced.
    fn flush_if_unsent(&mut self, event: i64, side: i64) -> Result<()> {
        if self.unsent.contains(&(event, side)) { self.flush() } else { Ok(()) }
    }
}

/// The row ids of the stored events labels are about, looked up together.
struct EventRows(HashMap<String, Vec<EventRow>>);

impl EventRows {
    fn of<'l>(conn: &Connection, labels: impl IntoIterator<Item = &'l CallLabel>) -> Result<EventRows> {
        Ok(EventRows(rows_with_event_ids(conn, labels.into_iter().map(|l| l.event_id.as_str()))?))
    }

    /// The row id of the stored event `l`, a label on the key whose text id is `key`, is
    /// about. Of two different records with its eventID (a collision), the one with the
    /// label's call name and time on that key: the record the label describes, whichever was
    /// stored first (two calls on two keys at one second keep a label each).
    fn of_label(&self, l: &CallLabel, key: i64) -> Result<i64> {
        let rows = self.0.get(&l.event_id).map(Vec::as_slice).unwrap_or_default();
        let described = |row: &&EventRow| row.event_name == l.event_name && row.event_time == l.event_time;
        let on_key = |row: &&EventRow| row.key == Some(key) || row.destination_key == Some(key);
        rows.iter()
            .find(|row| described(row) && on_key(row))
            .or_else(|| rows.iter().find(described))
            .or_else(|| rows.iter().min_by_key(|row| row.id))
            .map(|row| row.id)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("a label names event {}, which is not stored", l.event_id))
            })
    }
}

/// Makes the stored labels of `key` equal to `labels`, writing only the rows that differ:
/// relabelling a key whose history is mostly unchanged costs reads, not index writes.
/// `grants` are the key's grants the labels were classified with.
pub(super) fn replace_labels(
    conn: &Connection,
    key: &str,
    labels: &[CallLabel],
    grants: &[Grant],
) -> Result<()> {
    replace_labels_between(conn, key, (i64::MIN, i64::MAX), labels, &HashSet::new(), grants)
}

/// [`replace_labels`] for the stored labels of `key` timed in `[from, to)`, except those in
/// `keep` (written already). Labels in `labels` timed outside the range are written where they
/// differ, each compared with its own stored row.
pub(super) fn replace_labels_between(
    conn: &Connection,
    key: &str,
    (from, to): (i64, i64),
    labels: &[CallLabel],
    keep: &HashSet<(String, Side)>,
    grants: &[Grant],
) -> Result<()> {
    let mut writer = LabelWriter::new(conn, key, grants);
    let key_id = writer.text(key)?;
    writer.store_texts(labels)?;
    let inside = |l: &&CallLabel| l.event_time >= from && l.event_time < to;
    let mut index: HashMap<(&str, i64), usize> = HashMap::new();
    for (i, l) in labels.iter().enumerate().filter(|(_, l)| inside(l)) {
        index.insert((l.event_id.as_str(), l.side.code()), i);
    }
    // Two labels for one call side would overwrite each other: then every stored row goes and
    // every label is written, the last of two winning.
    if index.len() != labels.iter().filter(inside).count() {
        index.clear();
    }
    // The stored rows are compared as ids and codes; only the rows that change or go are
    // remembered.
    let mut unchanged = vec![false; labels.len()];
    let mut changed: Vec<CallSide> = Vec::new();
    let mut gone: Vec<CallSide> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT e.event_id, {LABEL_COLUMNS} FROM call_labels c JOIN event_rows e ON e.id = c.event
             WHERE c.key = ?1 AND c.event_time >= ?2 AND c.event_time < ?3"
        ))?;
        let mut rows = stmt.query(params![key_id, from, to])?;
        while let Some(r) = rows.next()? {
            let event_id: String = r.get(0)?;
            let (side, stored) = stored_row(&r, 1)?;
            match index.get(&(event_id.as_str(), side.side)) {
                Some(&i) if writer.row(key_id, &labels[i])? == stored => unchanged[i] = true,
                Some(_) => changed.push(side),
                None if !keep.is_empty()
                    && keep.contains(&(event_id.clone(), codes::from_code(side.side)?)) => {}
                None => gone.push(side),
            }
        }
    }
    // What is gone was labelled before and is not any more; what changed is written again, on
    // the record the label now describes (of two with one eventID, it may be the other).
    for stored in changed.iter().chain(&gone) {
        conn.prepare_cached("DELETE FROM call_labels WHERE event = ?1 AND side = ?2")?
            .execute(params![stored.event, stored.side])?;
    }
    let to_write: Vec<&CallLabel> =
        labels.iter().zip(&unchanged).filter(|(l, same)| inside(l) && !**same).map(|(l, _)| l).collect();
    let events = EventRows::of(conn, to_write.iter().copied())?;
    for l in to_write {
        let row = writer.row(key_id, l)?;
        // Its call side has no stored row in the range: it never had, or it was deleted above.
        writer.write(events.of_label(l, key_id)?, l, &row, false)?;
    }
    update_with(&mut writer, key_id, labels.iter().filter(|l| !inside(l)))
}

/// Writes the labels that differ from the stored ones (new calls, or calls whose label
/// changed), classified with `grants`, the key's grants.
pub(super) fn update_labels<'l>(
    conn: &Connection,
    key: &str,
    labels: impl IntoIterator<Item = &'l CallLabel>,
    grants: &[Grant],
) -> Result<()> {
    let labels: Vec<&CallLabel> = labels.into_iter().collect();
    let mut writer = LabelWriter::new(conn, key, grants);
    let key_id = writer.text(key)?;
    writer.store_texts(labels.iter().copied())?;
    update_with(&mut writer, key_id, labels)
}

/// [`update_labels`] with `writer`, which has stored the labels' texts already.
fn update_with<'l>(
    writer: &mut LabelWriter<'_, '_>,
    key: i64,
    labels: impl IntoIterator<Item = &'l CallLabel>,
) -> Result<()> {
    let conn = writer.conn;
    let labels: Vec<&CallLabel> = labels.into_iter().collect();
    let events = EventRows::of(conn, labels.iter().copied())?;
    // Where batches pay, the stored rows are read together first (after the rows held back are
    // sent), and kept up to date with what is written here: a second label for one call side
    // is compared with the first.
    let mut read_together = if conn.batches_pay() {
        writer.flush()?;
        let sides =
            labels.iter().map(|l| Ok((events.of_label(l, key)?, l.side.code()))).collect::<Result<_>>()?;
        Some(stored_label_rows(conn, sides)?)
    } else {
        None
    };
    let mut stored = conn.prepare_cached(&format!(
        "SELECT {LABEL_COLUMNS} FROM call_labels c WHERE event = ?1 AND side = ?2"
    ))?;
    for l in labels {
        let (event, side) = (events.of_label(l, key)?, l.side.code());
        let row = writer.row(key, l)?;
        let old: Option<LabelRow> = match &read_together {
            Some(rows) => rows.get(&(event, side)).copied(),
            None => {
                writer.flush_if_unsent(event, side)?;
                let mut rows = stored.query(params![event, side])?;
                match rows.next()? {
                    Some(r) => Some(stored_row(&r, 0)?.1),
                    None => None,
                }
            }
        };
        if old == Some(row) {
            continue;
        }
        if let Some(rows) = &mut read_together {
            rows.insert((event, side), row);
        }
        writer.write(event, l, &row, old.is_some())?;
    }
    writer.flush()
}

/// The stored label rows of `sides` (event row, side code) that have one, 128 a statement.
fn stored_label_rows(
    conn: &Connection,
    sides: BTreeSet<(i64, i64)>,
) -> Result<HashMap<(i64, i64), LabelRow>> {
    let rows: Vec<[&dyn ToSql; 2]> =
        sides.iter().map(|(event, side)| -> [&dyn ToSql; 2] { [event, side] }).collect();
    let mut found = HashMap::new();
    // `OFFSET 0` keeps each a lookup of the primary key, whatever the planner's statistics.
    let query = |list: &str| {
        format!(
            "SELECT {LABEL_COLUMNS} FROM (VALUES {list}) AS listed (event, side)
             CROSS JOIN LATERAL (SELECT * FROM call_labels WHERE event = listed.event AND side = listed.side
                                 OFFSET 0) AS c"
        )
    };
    query_listed(conn, query, &["bigint", "bigint"], &[], &rows, LABELS_PER_LOOKUP, |r| -> Result<()> {
        let (side, row) = stored_row(r, 0)?;
        found.insert((side.event, side.side), row);
        Ok(())
    })?;
    Ok(found)
}

/// A stored label's call side: its event row and side code.
struct CallSide {
    event: i64,
    side: i64,
}

/// The columns [`stored_row`] reads, in its order.
const LABEL_COLUMNS: &str = "c.event, c.side, c.event_time, c.key, c.operation, c.principal, c.label,
     c.evidence, c.grant_ids, c.grant_reasons, c.reasons, c.flags, c.behaviour_group";

/// A stored row, read from column `at` on ([`LABEL_COLUMNS`]).
fn stored_row(r: &crate::db::Row<'_>, at: usize) -> Result<(CallSide, LabelRow)> {
    let row = LabelRow {
        event_time: r.get(at + 2)?,
        key: r.get(at + 3)?,
        operation: r.get(at + 4)?,
        principal: r.get(at + 5)?,
        label: r.get(at + 6)?,
        evidence: r.get(at + 7)?,
        grant_ids: r.get(at + 8)?,
        grant_reasons: r.get(at + 9)?,
        reasons: r.get(at + 10)?,
        flags: r.get(at + 11)?,
        behaviour_group: r.get(at + 12)?,
    };
    Ok((CallSide { event: r.get(at)?, side: r.get(at + 1)? }, row))
}

const INTO_LABELS: &str = "call_labels (event, side, event_time, key, operation, principal, label,
     evidence, grant_ids, grant_reasons, reasons, flags, behaviour_group)";
/// The values of label rows (event row, side code, row), as [`INTO_LABELS`] lists them.
fn label_values(rows: &[(i64, i64, LabelRow)]) -> Vec<[&dyn ToSql; 13]> {
    rows.iter()
        .map(|(event, side, row)| -> [&dyn ToSql; 13] {
            [
                event,
                side,
                &row.event_time,
                &row.key,
                &row.operation,
                &row.principal,
                &row.label,
                &row.evidence,
                &row.grant_ids,
                &row.grant_reasons,
                &row.reasons,
                &row.flags,
                &row.behaviour_group,
            ]
        })
        .collect()
}

/// A label written for a call side that has one replaces it.
const REPLACE_LABEL: &str =
    "ON CONFLICT (event, side) DO UPDATE SET event_time = excluded.event_time, key = excluded.key,
         operation = excluded.operation, principal = excluded.principal, label = excluded.label,
         evidence = excluded.evidence, grant_ids = excluded.grant_ids, grant_reasons = excluded.grant_reasons,
         reasons = excluded.reasons, flags = excluded.flags, behaviour_group = excluded.behaviour_group";
const INTO_MEMBERS: &str = "grant_list_members (grant_ref, list)";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use granttrail_grants::{CallLabel, Evidence, Label, Side, normalise};

    use crate::Store;
    use crate::codes::Coded;

    const KEY_A: &str = "arn:aws:kms:us-east-1:111122223333:key/a";
    const KEY_B: &str = "arn:aws:kms:us-east-1:111122223333:key/b";

    fn label(key: &str, label: Label) -> CallLabel {
        CallLabel {
            event_id: "e1".into(),
            shared_event_id: None,
            event_time: 1_704_067_200,
            event_name: "Decrypt".into(),
            side: Side::Key,
            key_arn: key.into(),
            operation: Some("Decrypt"),
            principal: Some("arn:aws:iam::111122223333:role/r".into()),
            label,
            evidence: Evidence::L0,
            grant_ids: Vec::new(),
            reasons: Vec::new(),
            flags: Vec::new(),
            behaviour_group: None,
        }
    }

    /// The stored labels: (key ARN, label code) of each row.
    fn stored(store: &Store) -> Vec<(String, i64)> {
        let mut stmt = store
            .conn()
            .prepare("SELECT (SELECT text FROM texts WHERE id = c.key), c.label FROM call_labels c")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    /// Labels are inserted without replacing where the writer found no stored row; a row it
    /// could not see (its call side labelled on another key before) is still replaced, not
    /// doubled or kept.
    #[test]
    fn a_label_replaces_its_call_sides_row_stored_under_another_key() {
        let mut store = Store::open_in_memory().unwrap();
        let raw = format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"e1","eventName":"Decrypt",
                "eventTime":"2024-01-01T00:00:00Z","resources":[{{"ARN":"{KEY_A}"}}]}}"#
        );
        let mut writer = store.begin_object("s3://b/k").unwrap().unwrap();
        writer.add(&normalise(raw.as_bytes()).unwrap().unwrap(), &raw).unwrap();
        writer.commit("Json", 0, 1, 0).unwrap();

        super::replace_labels(store.conn(), KEY_A, &[label(KEY_A, Label::NoGrant)], &[]).unwrap();
        assert_eq!(stored(&store), [(KEY_A.to_string(), Coded::code(Label::NoGrant))]);
        super::replace_labels(store.conn(), KEY_B, &[label(KEY_B, Label::NotGrantEligible)], &[]).unwrap();
        assert_eq!(stored(&store), [(KEY_B.to_string(), Coded::code(Label::NotGrantEligible))]);
    }
}
