//! Relabelling every call on a key. A key whose history fits one window is read once; a longer
//! one is read in windows of time, twice: first for its observations (a few dozen bytes per
//! call, kept), then for its labels, written window by window. Memory then follows the window,
//! not the history, and the labels are the ones a single pass gives.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::db::{Connection, ToSql, params, params_from_iter, query_listed, rows_in_next_statement};
use granttrail_grants::{
    CallLabel, Grant, KeyClassifier, KeyInputs, KeyLabels, KmsEvent, Observation, ObservationIndex, Side,
    classify_key, logical_event_refs, mark_collisions,
};

use super::rows::{replace_labels, replace_labels_between, replace_observations};
use super::{KEY_CONTEXT, SELECT_EVENTS, Shared, load_events};
use crate::Result;
use crate::read::{GrantFilter, query_grants};
use crate::texts::{self, TextReader};

/// What reading and classifying a key hands to the writer, in this order: `Whole`, or
/// `Observations` then one `Window` per window of time. Labels come with the key's grants they
/// were classified with, which the writer needs to store how their reasons name grants.
pub(super) enum KeyWrite {
    /// The labels and observations of a key read in one pass.
    Whole(KeyLabels, Arc<[Grant]>),
    /// The observations of a key read in windows, before any of its labels.
    Observations(Vec<Observation>),
    /// The labels of the calls that begin in `[from, to)` on a key read in windows.
    Window { from: i64, to: i64, labels: Vec<CallLabel>, grants: Arc<[Grant]> },
}

/// Relabels every call on `key` and replaces its observations, reading at most about
/// `window_events` of its events at a time.
pub(super) fn relabel_whole_key(
    conn: &Connection,
    key: &str,
    shared: &Shared,
    settings: &granttrail_grants::Settings,
    window_events: usize,
) -> Result<()> {
    let mut writer = KeyWriter::new(key);
    classify_whole_key(conn, key, shared, settings, window_events, &mut |w| writer.write(conn, w))
}

/// Reads and classifies every call on `key`, handing what to store to `write`. Only reads:
/// it may run on another connection than the one `write` stores with.
pub(super) fn classify_whole_key(
    conn: &Connection,
    key: &str,
    shared: &Shared,
    settings: &granttrail_grants::Settings,
    window_events: usize,
    write: &mut dyn FnMut(KeyWrite) -> Result<()>,
) -> Result<()> {
    let grants: Arc<[Grant]> =
        query_grants(conn, &GrantFilter { key_arn: Some(key.to_string()), ..GrantFilter::default() })?.into();
    let inputs = |events| KeyInputs {
        key_arn: key,
        grants: &grants,
        events,
        policy_changes: &shared.policy_changes,
        imported_key_policies: shared.key_policies(key),
        imported_iam: &shared.iam,
        settings,
    };
    // Events name their key by the id of its text; a key with no text has no events.
    let Some(key_id) = texts::find(conn, key)? else {
        return write(KeyWrite::Whole(classify_key(&inputs(&[])), grants.clone()));
    };
    let starts = window_starts(conn, key_id, window_events)?;
    let mut texts = TextReader::default();
    if starts.is_empty() {
        let events = load_events(conn, &mut texts, &window_sql(), params![key_id, i64::MIN, i64::MAX])?;
        return write(KeyWrite::Whole(classify_key(&inputs(&events)), grants.clone()));
    }

    let context = load_events(
        conn,
        &mut texts,
        &format!("{} WHERE {}", SELECT_EVENTS.as_str(), *KEY_CONTEXT),
        [key_id],
    )?;
    let context_inputs = inputs(&context);
    let classifier = KeyClassifier::new(&context_inputs);
    let windows: Vec<(i64, i64)> = std::iter::once(i64::MIN)
        .chain(starts.iter().copied())
        .zip(starts.iter().copied().chain(std::iter::once(i64::MAX)))
        .collect();

    let mut observations: Vec<Observation> = Vec::new();
    for &(from, to) in &windows {
        let events = window_events_of(conn, &mut texts, (key, key_id), from, to)?;
        let calls = logical_event_refs(events.iter().filter(|e| e.is_kms()));
        observations.extend(calls.iter().filter_map(|c| classifier.observation(c)));
    }
    let index = ObservationIndex::new(&observations);
    write(KeyWrite::Observations(observations))?;
    for &(from, to) in &windows {
        let events = window_events_of(conn, &mut texts, (key, key_id), from, to)?;
        let calls = logical_event_refs(events.iter().filter(|e| e.is_kms()));
        let mut labels: Vec<CallLabel> = calls.iter().flat_map(|c| classifier.label(c, &index)).collect();
        mark_collisions(&mut labels, &events);
        write(KeyWrite::Window { from, to, labels, grants: grants.clone() })?;
    }
    Ok(())
}

/// Stores what [`classify_whole_key`] hands over for one key, in place of its labels and
/// observations.
pub(super) struct KeyWriter<'k> {
    key: &'k str,
    /// A call's label carries the time of the copy it describes, which for copies logged at
    /// different times can fall in a later window than the call: those are remembered, so
    /// that window does not take them for labels that are gone.
    written_ahead: HashSet<(String, Side)>,
}

impl<'k> KeyWriter<'k> {
    pub(super) fn new(key: &'k str) -> KeyWriter<'k> {
        KeyWriter { key, written_ahead: HashSet::new() }
    }

    pub(super) fn key(&self) -> &str {
        self.key
    }

    pub(super) fn write(&mut self, conn: &Connection, write: KeyWrite) -> Result<()> {
        match write {
            KeyWrite::Whole(result, grants) => {
                replace_labels(conn, self.key, &result.labels, &grants)?;
                replace_observations(conn, self.key, &result.observations)
            }
            KeyWrite::Observations(observations) => replace_observations(conn, self.key, &observations),
            KeyWrite::Window { from, to, labels, grants } => {
                replace_labels_between(conn, self.key, (from, to), &labels, &self.written_ahead, &grants)?;
                self.written_ahead.extend(
                    labels
                        .iter()
                        .filter(|l| !(from..to).contains(&l.event_time))
                        .map(|l| (l.event_id.clone(), l.side)),
                );
                Ok(())
            }
        }
    }
}

/// The times at which the windows after the first start, about `window_events` events apart
/// (a window never splits one second); empty when the key's history fits one window.
fn window_starts(conn: &Connection, key: i64, window_events: usize) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_time FROM event_rows WHERE key = ?1
         UNION ALL
         SELECT event_time FROM event_rows WHERE destination_key = ?1 AND key IS DISTINCT FROM ?1
         ORDER BY 1",
    )?;
    let mut rows = stmt.query([key])?;
    let (mut starts, mut in_window) = (Vec::new(), 0usize);
    while let Some(r) = rows.next()? {
        let time: i64 = r.get(0)?;
        if in_window >= window_events.max(1) && starts.last().is_none_or(|&last| time > last) {
            starts.push(time);
            in_window = 0;
        }
        in_window += 1;
    }
    Ok(starts)
}

/// The events on the key whose text id is bound to `?1` (its own and the ReEncrypts into it)
/// timed in `[?2, ?3)`, each once: a ReEncrypt from a key to itself matches both halves.
fn window_sql() -> String {
    let select = SELECT_EVENTS.as_str();
    format!(
        "{select} WHERE key = ?1 AND event_time >= ?2 AND event_time < ?3
         UNION ALL
         {select}
         WHERE destination_key = ?1 AND key IS DISTINCT FROM ?1 AND event_time >= ?2 AND event_time < ?3"
    )
}

/// The events of the calls whose earliest copy on `key` is in `[from, to)`, with all their
/// copies on the key. Copies of one call share their time in CloudTrail, but the logs are
/// not trusted to: a call is read whole in the window where it begins, as a single pass sees it.
fn window_events_of(
    conn: &Connection,
    texts: &mut TextReader,
    (key, key_id): (&str, i64),
    from: i64,
    to: i64,
) -> Result<Vec<KmsEvent>> {
    let mut events = load_events(conn, texts, &window_sql(), params![key_id, from, to])?;
    // Another account's copy of the call, or a different record with its eventID (a collision):
    // either way the call is read whole where it begins.
    let referenced = referenced_ids(conn, events.iter().filter(|e| e.shared_event_id.is_none()))?;
    let select = SELECT_EVENTS.as_str();
    let copies_sql = copies_sql(select);
    // Calls with copies, by the id that groups them: where each begins, and the copies outside.
    let mut spread: HashMap<String, (i64, Vec<KmsEvent>)> = HashMap::new();
    for e in &events {
        let group = e.shared_event_id.as_deref().unwrap_or(&e.event_id);
        if spread.contains_key(group) || (e.shared_event_id.is_none() && !referenced.contains(group)) {
            continue;
        }
        let copies: Vec<KmsEvent> = load_events(conn, texts, &copies_sql, [group])?
            .into_iter()
            .filter(|c| c.is_on_key(key))
            .collect();
        let begins = copies.iter().map(|c| c.event_time).min().unwrap_or(e.event_time);
        let outside = copies.into_iter().filter(|c| c.event_time >= to).collect();
        spread.insert(group.to_string(), (begins, outside));
    }
    if spread.is_empty() {
        return Ok(events);
    }
    let begins_here = |e: &KmsEvent| {
        let group = e.shared_event_id.as_deref().unwrap_or(&e.event_id);
        spread.get(group).is_none_or(|(begins, _)| *begins >= from)
    };
    events.retain(begins_here);
    for (begins, outside) in spread.into_values() {
        if begins >= from {
            events.extend(outside);
        }
    }
    Ok(events)
}

/// The copies on `key`, from before `since`, of the calls among `events`: the other accounts'
/// copies (by sharedEventID, many looked up at once) and the other records under their
/// eventIDs (a collision, rare: one at a time). CloudTrail gives a call's copies one time, but
/// the logs are not trusted to: a call rechecked from `since` on is rechecked whole.
pub(super) fn copies_before(
    conn: &Connection,
    texts: &mut TextReader,
    key: &str,
    events: &[KmsEvent],
    since: i64,
) -> Result<Vec<KmsEvent>> {
    let mut out = Vec::new();
    let select = SELECT_EVENTS.as_str();
    let shared: Vec<&str> = events
        .iter()
        .filter_map(|e| e.shared_event_id.as_deref())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rest = shared.as_slice();
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), IDS_PER_LOOKUP));
        let list: Vec<String> = (2..now.len() + 2).map(|i| format!("?{i}")).collect();
        let sql = format!("{select} WHERE shared_event_id IN ({}) AND event_time < ?1", list.join(", "));
        let args: Vec<&dyn ToSql> =
            std::iter::once(&since as &dyn ToSql).chain(now.iter().map(|id| id as &dyn ToSql)).collect();
        out.extend(
            load_events(conn, texts, &sql, params_from_iter(args))?.into_iter().filter(|c| c.is_on_key(key)),
        );
        rest = later;
    }
    let copies_sql = copies_sql(select);
    for id in referenced_ids(conn, events.iter().filter(|e| e.shared_event_id.is_none()))? {
        out.extend(
            load_events(conn, texts, &copies_sql, [id])?
                .into_iter()
                .filter(|c| c.is_on_key(key) && c.event_time < since),
        );
    }
    Ok(out)
}

/// The events of one call bound to `?1`, a sharedEventID or an eventID: the accounts' copies
/// that carry it as their sharedEventID, or the records under that eventID (a collision).
fn copies_sql(select: &str) -> String {
    format!(
        "{select} WHERE shared_event_id = ?1
         UNION ALL {select} WHERE event_hash = granttrail_hash(?1) AND event_id = ?1 AND shared_event_id IS NULL"
    )
}

/// The eventIDs of `events` that another account's copy of a call names as the call's, or
/// that more than one record carries (a collision).
fn referenced_ids<'e>(
    conn: &Connection,
    events: impl Iterator<Item = &'e KmsEvent>,
) -> Result<HashSet<String>> {
    let ids: Vec<&str> = events.map(|e| e.event_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let mut referenced = HashSet::new();
    if !conn.batches_pay() {
        let mut stmt = conn.prepare_cached(
            "SELECT 1 FROM event_rows WHERE shared_event_id = ?1
             UNION ALL SELECT 1 FROM event_id_collisions WHERE event_id = ?1",
        )?;
        for id in ids {
            if stmt.exists([id])? {
                referenced.insert(id.to_string());
            }
        }
        return Ok(referenced);
    }
    // A round trip for many: most windows have no such call. `OFFSET 0` keeps each probe an
    // index lookup, not a hash of every shared eventID.
    let listed: Vec<[&dyn ToSql; 1]> = ids.iter().map(|id| -> [&dyn ToSql; 1] { [id] }).collect();
    let query = |list: &str| {
        format!(
            "SELECT listed.id FROM (VALUES {list}) AS listed (id)
             WHERE EXISTS (SELECT 1 FROM event_rows WHERE shared_event_id = listed.id OFFSET 0)
                OR EXISTS (SELECT 1 FROM event_id_collisions WHERE event_id = listed.id OFFSET 0)"
        )
    };
    query_listed(conn, query, &["text"], &[], &listed, IDS_PER_LOOKUP, |r| -> Result<()> {
        referenced.insert(r.get(0)?);
        Ok(())
    })?;
    Ok(referenced)
}

/// EventIDs [`referenced_ids`] asks about in one statement.
const IDS_PER_LOOKUP: usize = 128;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Both halves of a window are read through an index on key and time, so reading a key
    /// in windows costs its events once, not its ReEncrypts once per window.
    #[test]
    fn a_window_is_read_through_the_key_and_time_indexes() {
        let store = crate::Store::open_in_memory().unwrap();
        let mut stmt = store.conn.prepare(&format!("EXPLAIN QUERY PLAN {}", super::window_sql())).unwrap();
        let plan: Vec<String> =
            stmt.query_map(crate::db::params![1, 0, 1], |r| r.get(3)).unwrap().map(Result::unwrap).collect();
        // The texts of each event read are found by id; what matters is how events are found.
        let searches: Vec<&String> = plan
            .iter()
            .filter(|step| step.starts_with("SEARCH") && !step.starts_with("SEARCH texts"))
            .collect();
        assert_eq!(searches.len(), 2, "{plan:?}");
        assert!(searches[0].contains("events_by_key (key=? AND event_time>? AND event_time<?)"), "{plan:?}");
        assert!(
            searches[1]
                .contains("events_by_destination_key (destination_key=? AND event_time>? AND event_time<?)"),
            "{plan:?}"
        );
    }
}
