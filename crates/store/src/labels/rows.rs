//! Writing a key's labels and observations, touching only the rows that differ.

use std::collections::{HashMap, HashSet};

use granttrail_grants::{CallLabel, Observation};
use rusqlite::{Connection, params};

use crate::write::to_json;
use crate::{Result, StoreError};

/// Makes the stored observations of `key` equal to `observations`, writing only differences.
pub(super) fn replace_observations(conn: &Connection, key: &str, observations: &[Observation]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT behaviour_group, kind, event_time, event_id FROM observations WHERE key_arn = ?1",
    )?;
    let stored: HashSet<(i64, String, i64, String)> = stmt
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let fresh: HashSet<(i64, String, i64, String)> = observations
        .iter()
        .map(|o| (o.group, o.kind.as_str().to_string(), o.time, o.event_id.clone()))
        .collect();
    let mut delete = conn.prepare_cached(
        "DELETE FROM observations
         WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time = ?4 AND event_id = ?5",
    )?;
    for (group, kind, time, event_id) in stored.difference(&fresh) {
        delete.execute(params![key, group, kind, time, event_id])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO observations (key_arn, behaviour_group, kind, event_time, event_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (group, kind, time, event_id) in fresh.difference(&stored) {
        insert.execute(params![key, group, kind, time, event_id])?;
    }
    Ok(())
}

/// A label row as stored, without its key and `(event_id, side)`, for comparing with a
/// freshly computed label.
type LabelRow = (
    Option<String>,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
);

fn label_row(l: &CallLabel) -> Result<LabelRow> {
    Ok((
        l.shared_event_id.clone(),
        l.event_time,
        l.event_name.clone(),
        l.operation.map(str::to_string),
        l.principal.clone(),
        l.label.as_str().to_string(),
        l.evidence.as_str().to_string(),
        to_json(&l.grant_ids)?,
        to_json(&l.reasons)?,
        to_json(&l.flags)?,
        l.behaviour_group,
    ))
}

/// Makes the stored labels of `key` equal to `labels`, writing only the rows that differ:
/// relabelling a key whose history is mostly unchanged costs reads, not index writes.
pub(super) fn replace_labels(conn: &Connection, key: &str, labels: &[CallLabel]) -> Result<()> {
    replace_labels_between(conn, key, (i64::MIN, i64::MAX), labels, &HashSet::new())
}

/// [`replace_labels`] for the stored labels of `key` timed in `[from, to)`, except those in
/// `keep` (written already). Labels in `labels` timed outside the range are written where they
/// differ, each compared with its own stored row.
pub(super) fn replace_labels_between(
    conn: &Connection,
    key: &str,
    (from, to): (i64, i64),
    labels: &[CallLabel],
    keep: &HashSet<(String, &'static str)>,
) -> Result<()> {
    let inside = |l: &&CallLabel| l.event_time >= from && l.event_time < to;
    let mut index: HashMap<(&str, &str), usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| inside(l))
        .map(|(i, l)| ((l.event_id.as_str(), l.side), i))
        .collect();
    // Two labels for one call side would overwrite each other: then every stored row goes and
    // every label is written, the last of two winning.
    if index.len() != labels.iter().filter(inside).count() {
        index.clear();
    }
    // The stored rows are compared in place, without copying them; only the rows that change
    // or go are remembered, with the grants they linked.
    let mut unchanged = vec![false; labels.len()];
    let mut changed: Vec<Linked> = Vec::new();
    let mut gone: Vec<Linked> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {LABEL_COLUMNS} FROM call_labels WHERE key_arn = ?1 AND event_time >= ?2 AND event_time < ?3"
        ))?;
        let mut rows = stmt.query(params![key, from, to])?;
        let mut json = Vec::new();
        while let Some(r) = rows.next()? {
            let (event_id, side) = (text_at(r, 0)?.unwrap_or_default(), text_at(r, 1)?.unwrap_or_default());
            match index.get(&(event_id, side)) {
                Some(&i) if stored_equals(r, &labels[i], &mut json)? => unchanged[i] = true,
                Some(_) => changed.push(Linked::stored(r)?),
                None if !keep.is_empty() && keep.contains(&(event_id.to_string(), side_name(side))) => {}
                None => gone.push(Linked::stored(r)?),
            }
        }
    }
    let mut unlink = conn.prepare_cached(UNLINK)?;
    let mut delete = conn.prepare_cached("DELETE FROM call_labels WHERE event_id = ?1 AND side = ?2")?;
    for (is_gone, stored) in changed.iter().map(|c| (false, c)).chain(gone.iter().map(|g| (true, g))) {
        unlink_grants(&mut unlink, stored)?;
        // What is gone was labelled before and is not any more.
        if is_gone {
            delete.execute(params![stored.event_id, stored.side])?;
        }
    }
    let mut insert = conn.prepare_cached(INSERT_LABEL)?;
    let mut link = conn.prepare_cached(INSERT_LINK)?;
    for (l, _) in labels.iter().zip(&unchanged).filter(|(l, same)| inside(l) && !**same) {
        write_label(&mut insert, &mut link, key, l, &label_row(l)?)?;
    }
    update_labels(conn, key, labels.iter().filter(|l| !inside(l)))
}

/// A stored side name as the `&'static str` labels use (they are one of three).
fn side_name(side: &str) -> &'static str {
    match side {
        "source" => "source",
        "destination" => "destination",
        _ => "key",
    }
}

/// Writes the labels that differ from the stored ones (new calls, or calls whose label changed).
pub(super) fn update_labels<'l>(
    conn: &Connection,
    key: &str,
    labels: impl IntoIterator<Item = &'l CallLabel>,
) -> Result<()> {
    let mut stored = conn.prepare_cached(&format!(
        "SELECT {LABEL_COLUMNS} FROM call_labels WHERE event_id = ?1 AND side = ?2"
    ))?;
    let mut unlink = conn.prepare_cached(UNLINK)?;
    let mut insert = conn.prepare_cached(INSERT_LABEL)?;
    let mut link = conn.prepare_cached(INSERT_LINK)?;
    let mut json = Vec::new();
    for l in labels {
        let old: Option<Linked> = {
            let mut rows = stored.query(params![l.event_id, l.side])?;
            match rows.next()? {
                Some(r) if stored_equals(r, l, &mut json)? => continue,
                Some(r) => Some(Linked::stored(r)?),
                None => None,
            }
        };
        if let Some(old) = old {
            unlink_grants(&mut unlink, &old)?;
        }
        write_label(&mut insert, &mut link, key, l, &label_row(l)?)?;
    }
    Ok(())
}

/// A stored label's call side and the grants it links to (`grant_ids`, its JSON column).
struct Linked {
    event_id: String,
    side: String,
    event_time: i64,
    grant_ids: String,
}

impl Linked {
    /// From a stored row (columns [`LABEL_COLUMNS`]).
    fn stored(r: &rusqlite::Row<'_>) -> Result<Linked> {
        Ok(Linked {
            event_id: text_at(r, 0)?.unwrap_or_default().to_string(),
            side: text_at(r, 1)?.unwrap_or_default().to_string(),
            event_time: r.get(3)?,
            grant_ids: text_at(r, 9)?.unwrap_or("[]").to_string(),
        })
    }
}

const UNLINK: &str =
    "DELETE FROM call_label_grants WHERE grant_id = ?1 AND event_time = ?2 AND event_id = ?3 AND side = ?4";

/// Removes a stored label's links, through the grants its `grant_ids` column names: links are
/// keyed by grant first, then time.
fn unlink_grants(unlink: &mut rusqlite::Statement<'_>, stored: &Linked) -> Result<()> {
    let grant_ids: Vec<String> = serde_json::from_str(&stored.grant_ids)
        .map_err(|e| StoreError::Corrupt(format!("call_labels.grant_ids: {e}")))?;
    for g in &grant_ids {
        unlink.execute(params![g, stored.event_time, stored.event_id, stored.side])?;
    }
    Ok(())
}

/// The columns [`stored_equals`] reads, in its order.
const LABEL_COLUMNS: &str =
    "event_id, side, shared_event_id, event_time, event_name, operation, principal, label,
     evidence, grant_ids, reasons, flags, behaviour_group";

/// Is the stored row `r` (columns [`LABEL_COLUMNS`]) the row `l` would write?
/// The cheap columns are compared first; the JSON ones are serialised into `json` only then.
fn stored_equals(r: &rusqlite::Row<'_>, l: &CallLabel, json: &mut Vec<u8>) -> Result<bool> {
    let text = |i: usize| text_at(r, i);
    let cheap_equal = text(2)? == l.shared_event_id.as_deref()
        && r.get::<_, i64>(3)? == l.event_time
        && text(4)? == Some(l.event_name.as_str())
        && text(5)? == l.operation
        && text(6)? == l.principal.as_deref()
        && text(7)? == Some(l.label.as_str())
        && text(8)? == Some(l.evidence.as_str())
        && r.get::<_, Option<i64>>(12)? == l.behaviour_group;
    if !cheap_equal {
        return Ok(false);
    }
    let mut same_json = |i: usize, value: &dyn erased::Json| -> Result<bool> {
        json.clear();
        value.write(json)?;
        Ok(text(i)?.map(str::as_bytes) == Some(json.as_slice()))
    };
    Ok(same_json(9, &l.grant_ids)? && same_json(10, &l.reasons)? && same_json(11, &l.flags)?)
}

/// A text column of a row without copying it (`None` for NULL).
fn text_at<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>> {
    match r.get_ref(i)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        v => v.as_str().map(Some).map_err(|e| StoreError::Corrupt(format!("call_labels column {i}: {e}"))),
    }
}

/// Serialising the label's JSON columns through one closure.
mod erased {
    pub(super) trait Json {
        fn write(&self, out: &mut Vec<u8>) -> crate::Result<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) -> crate::Result<()> {
            serde_json::to_writer(out, self).map_err(|e| crate::StoreError::Corrupt(e.to_string()))
        }
    }
}

const INSERT_LABEL: &str =
    "INSERT OR REPLACE INTO call_labels (event_id, side, shared_event_id, event_time, event_name, key_arn, operation,
         principal, label, evidence, grant_ids, reasons, flags, behaviour_group)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
const INSERT_LINK: &str =
    "INSERT OR IGNORE INTO call_label_grants (grant_id, event_time, event_id, side) VALUES (?1, ?2, ?3, ?4)";

fn write_label(
    insert: &mut rusqlite::Statement<'_>,
    link: &mut rusqlite::Statement<'_>,
    key: &str,
    l: &CallLabel,
    row: &LabelRow,
) -> Result<()> {
    insert.execute(params![
        l.event_id, l.side, row.0, row.1, row.2, key, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
        row.10,
    ])?;
    for g in &l.grant_ids {
        link.execute(params![g, l.event_time, l.event_id, l.side])?;
    }
    Ok(())
}
