//! Relabelling a key from what changed: its new calls, the calls after a grant changed, and
//! the stored labels whose nearest observations moved.

use foldhash::{HashSet, HashSetExt};
use std::collections::{BTreeMap, BTreeSet};

use crate::db::{Connection, OptionalExtension, ToSql, insert_rows, params, query_listed};
use granttrail_grants::invalidation::{grants_ended_before_are_dead, merge_spans, recheck_from};
use granttrail_grants::{
    CallLabel, Invalidation, KeyClassifier, KeyInputs, KmsEvent, Observation, ObservationIndex,
    ObservationKind, Settings, logical_event_refs, mark_collisions, observed_group,
};

use super::rows::update_labels;
use super::{KEY_CONTEXT, SELECT_EVENTS, Shared, Strategy, load_events};
use crate::codes::Code;
use crate::read::grants_not_ended_before;
use crate::texts::{self, TextReader};
use crate::{Result, StoreError};

/// A key with more calls than this to recheck is relabelled whole, which is cheaper per call
/// than looking each one's neighbours up, and bounds the memory of an incremental relabelling.
const INCREMENTAL_LIMIT: i64 = 10_000;

/// The most observations one statement inserts.
const OBSERVATIONS_PER_INSERT: usize = 128;

/// A key to relabel incrementally: from when its new events (those of the objects in
/// `new_calls` for it) are, and the time from which its changed grants may cover calls
/// differently.
#[derive(Debug)]
pub(super) struct Increment {
    /// The id of the key's text.
    key_id: i64,
    /// The earliest time of a new event on the key.
    new_from: Option<i64>,
    since: Option<i64>,
}

/// The stale keys that can be relabelled incrementally; the others are added to `whole`. (Keys
/// whose context changed are in `whole` already.) A key goes whole when it has too much to
/// recheck, or a history too short for looking calls up one by one to pay.
pub(super) fn incremental_plan(
    conn: &Connection,
    dirty: &Invalidation,
    settings: &Settings,
    strategy: Strategy,
    whole: &mut BTreeSet<String>,
) -> Result<BTreeMap<String, Increment>> {
    let candidates: BTreeSet<&String> =
        dirty.new_calls.keys().chain(dirty.since.keys()).filter(|k| !whole.contains(*k)).collect();
    if candidates.is_empty() {
        return Ok(BTreeMap::new());
    }
    // The keys' ids, which each query below and the relabelling ask by: where batches pay,
    // looked up together (and added, were one missing) as `texts::id` does one by one.
    texts::store_all(conn, candidates.iter().map(|k| k.as_str()))?;
    let mut calls_since =
        conn.prepare_cached("SELECT count(*) FROM event_rows WHERE key = ?1 AND event_time >= ?2")?;
    let mut history =
        conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM call_labels WHERE key = ?1 LIMIT ?2) AS c")?;
    let mut out = BTreeMap::new();
    for key in candidates {
        let key_id = texts::id(conn, key)?;
        let since = dirty.since.get(key).map(|t| recheck_from(*t, settings));
        let on_key = dirty.new_calls.get(key.as_str());
        let mut recheck = on_key.map_or(0, |c| c.count);
        if let Some(since) = since {
            recheck += calls_since.query_row(params![key_id, since], |r| r.get::<_, i64>(0))?;
        }
        let wanted = recheck.saturating_mul(strategy.history_per_rechecked_call);
        let incremental = (on_key.is_some() || since.is_some())
            && recheck <= INCREMENTAL_LIMIT
            && history.query_row(params![key_id, wanted], |r| r.get::<_, i64>(0))? >= wanted;
        if incremental {
            out.insert(key.clone(), Increment { key_id, new_from: on_key.map(|c| c.earliest), since });
        } else {
            whole.insert(key.clone());
        }
    }
    Ok(out)
}

/// The objects whose calls on the key bound to `?1` await their labels.
const NEW_OBJECTS: &str = "SELECT object_id FROM new_calls WHERE key_arn = ?1";

/// The new events on `key` (its own and the ReEncrypts into it), or `None` when one of them
/// is another copy of a stored call: which copy a label describes may change, so the key is
/// relabelled whole.
fn new_events(
    conn: &Connection,
    texts: &mut TextReader,
    (key, key_id): (&str, i64),
    increment: &Increment,
) -> Result<Option<Vec<KmsEvent>>> {
    let Some(from) = increment.new_from else { return Ok(Some(Vec::new())) };
    // The key index from the earliest new event's time: a new delivery's calls are recent.
    let select = SELECT_EVENTS.as_str();
    let events = load_events(
        conn,
        texts,
        &format!(
            "{select} WHERE key = ?3 AND event_time >= ?2 AND object_id IN ({NEW_OBJECTS})
             UNION ALL
             {select}
             WHERE destination_key = ?3 AND key IS DISTINCT FROM ?3 AND event_time >= ?2
               AND object_id IN ({NEW_OBJECTS})"
        ),
        params![key, from, key_id],
    )?;
    let calls: BTreeSet<&str> =
        events.iter().map(|e| e.shared_event_id.as_deref().unwrap_or(&e.event_id)).collect();
    Ok(if stored_before(conn, key, calls)? { None } else { Some(events) })
}

/// Whether any of `calls` (each an eventID, or the eventID its copies share) has a copy on
/// `key` stored from an object other than the new ones.
fn stored_before(conn: &Connection, key: &str, calls: BTreeSet<&str>) -> Result<bool> {
    if !conn.batches_pay() {
        let mut older_copy = conn.prepare_cached(&format!(
            "SELECT 1 FROM event_rows WHERE shared_event_id = ?2 AND object_id NOT IN ({NEW_OBJECTS})
             UNION ALL
             SELECT 1 FROM event_rows WHERE event_hash = granttrail_hash(?2) AND event_id = ?2 AND shared_event_id IS NULL
               AND object_id NOT IN ({NEW_OBJECTS})"
        ))?;
        for call in calls {
            if older_copy.exists(params![key, call])? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let hashes: Vec<i64> = calls.iter().map(|c| texts::hash(c)).collect();
    let rows: Vec<[&dyn ToSql; 2]> =
        calls.iter().zip(&hashes).map(|(call, hash)| -> [&dyn ToSql; 2] { [call, hash] }).collect();
    // `OFFSET 0` keeps each probe an index lookup, whatever the planner's statistics.
    let query = |list: &str| {
        format!(
            "SELECT 1 FROM (VALUES {list}) AS listed (id, hash)
             WHERE EXISTS (SELECT 1 FROM event_rows WHERE shared_event_id = listed.id
                             AND object_id NOT IN ({NEW_OBJECTS}) OFFSET 0)
                OR EXISTS (SELECT 1 FROM event_rows WHERE event_hash = listed.hash AND event_id = listed.id
                             AND shared_event_id IS NULL AND object_id NOT IN ({NEW_OBJECTS}) OFFSET 0)
             LIMIT 1"
        )
    };
    let mut found = false;
    query_listed(conn, query, &["text", "bigint"], &[&key], &rows, CALLS_PER_LOOKUP, |_| -> Result<()> {
        found = true;
        Ok(())
    })?;
    Ok(found)
}

/// Calls looked up in one statement where batches pay.
const CALLS_PER_LOOKUP: usize = 128;

/// Relabels incrementally: the calls to recheck (the new ones, and every call from `since` on
/// when grants changed) are classified again; observations they gained or lost are updated;
/// and the stored labels whose nearest observations moved (those of the same behaviour group
/// between a changed observation's stored neighbours) are relabelled. The key's context is
/// read from the events that set it, not from its history. Returns false, having changed
/// nothing, when the key must be relabelled whole after all.
pub(super) fn relabel_incrementally(
    conn: &Connection,
    texts: &mut TextReader,
    key: &str,
    increment: &Increment,
    shared: &Shared,
    settings: &Settings,
) -> Result<bool> {
    let key_id = increment.key_id;
    let Some(new_events) = new_events(conn, texts, (key, key_id), increment)? else { return Ok(false) };
    let context =
        load_events(conn, texts, &format!("{} WHERE {}", SELECT_EVENTS.as_str(), *KEY_CONTEXT), [key_id])?;
    let mut recheck_events = new_events;
    if let Some(since) = increment.since {
        let select = SELECT_EVENTS.as_str();
        let later = load_events(
            conn,
            texts,
            &format!(
                "{select} WHERE key = ?1 AND event_time >= ?2
                 UNION ALL
                 {select}
                 WHERE destination_key = ?1 AND key IS DISTINCT FROM ?1 AND event_time >= ?2"
            ),
            params![key_id, since],
        )?;
        // A call is rechecked whole, with its copies from before `since` (as a whole pass reads it).
        recheck_events.extend(super::whole::copies_before(conn, texts, key, &later, since)?);
        recheck_events.extend(later);
    }
    // Only the grants that can cover a call classified here are read, so a key's long-dead
    // grants cost nothing.
    let alive_after = |events: &[KmsEvent]| {
        grants_ended_before_are_dead(events.iter().map(|e| e.event_time).min().unwrap_or(i64::MAX), settings)
    };
    let recheck_from = alive_after(&recheck_events);
    let grants = grants_not_ended_before(conn, texts, key_id, recheck_from)?;
    let inputs = KeyInputs {
        key_arn: key,
        grants: &grants,
        events: &context,
        policy_changes: &shared.policy_changes,
        imported_key_policies: shared.key_policies(key),
        imported_iam: &shared.iam,
        settings,
    };
    let classifier = KeyClassifier::new(&inputs);
    let calls = logical_event_refs(recheck_events.iter());

    // Observations the rechecked calls make now, against those stored for them.
    let fresh: HashSet<Observation> = calls.iter().filter_map(|c| classifier.observation(c)).collect();
    let could_be_stored: Vec<Observation> = calls
        .iter()
        .filter_map(|call| Some((observed_group(call)?, call)))
        .flat_map(|(group, call)| {
            [ObservationKind::Success, ObservationKind::Denial].map(|kind| Observation {
                group,
                kind,
                time: call.event_time,
                event_id: call.event_id.clone(),
            })
        })
        .collect();
    let stored = stored_observations(conn, key_id, could_be_stored)?;
    let (gone, added): (Vec<&Observation>, Vec<&Observation>) =
        (stored.difference(&fresh).collect(), fresh.difference(&stored).collect());

    // The times between which each changed observation was or becomes someone's nearest.
    let changed: Vec<&Observation> = gone.iter().chain(&added).copied().collect();
    let mut spans: Vec<(i64, i64, i64)> = Vec::new();
    for (o, [before, after]) in changed.iter().zip(stored_neighbours(conn, key_id, &changed)?) {
        spans.push((o.group, before.unwrap_or(i64::MIN), after.unwrap_or(i64::MAX)));
    }
    spans.sort_unstable();
    let mut delete = conn.prepare_cached(
        "DELETE FROM observations
         WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time = ?4 AND event_id = ?5",
    )?;
    for o in &gone {
        delete.execute(params![key_id, o.group, Code(o.kind), o.time, o.event_id])?;
    }
    let kinds: Vec<Code<ObservationKind>> = added.iter().map(|o| Code(o.kind)).collect();
    let rows: Vec<[&dyn ToSql; 5]> = added
        .iter()
        .zip(&kinds)
        .map(|(o, kind)| -> [&dyn ToSql; 5] { [&key_id, &o.group, kind, &o.time, &o.event_id] })
        .collect();
    insert_rows(
        conn,
        "observations (key, behaviour_group, kind, event_time, event_id)",
        "ON CONFLICT DO NOTHING",
        &rows,
        OBSERVATIONS_PER_INSERT,
    )?;
    let rechecked: HashSet<&str> = recheck_events.iter().map(|e| e.event_id.as_str()).collect();
    let mut affected_ids: BTreeSet<String> = calls_in_spans(conn, key_id, &merge_spans(spans))?;
    affected_ids.retain(|id| !rechecked.contains(id.as_str()));
    let affected_events = calls_with_copies(conn, texts, key, &affected_ids)?;
    let affected = logical_event_refs(affected_events.iter());

    let relabelled: Vec<_> = calls.iter().chain(affected.iter()).collect();
    let index =
        ObservationIndex::new(&nearest_observations(conn, key_id, relabelled.iter().map(|c| c.as_ref()))?);
    // Labels of earlier calls may need grants that ended before the rechecked calls.
    let affected_from = alive_after(&affected_events);
    let wider = if affected_from < recheck_from {
        Some(grants_not_ended_before(conn, texts, key_id, affected_from)?)
    } else {
        None
    };
    let mut labels: Vec<CallLabel> = match &wider {
        Some(grants) => {
            let inputs = KeyInputs { grants, ..inputs };
            let classifier = KeyClassifier::new(&inputs);
            relabelled.iter().flat_map(|c| classifier.label(c, &index)).collect()
        }
        None => relabelled.iter().flat_map(|c| classifier.label(c, &index)).collect(),
    };
    mark_collisions(&mut labels, recheck_events.iter().chain(&affected_events));
    update_labels(conn, key, &labels, wider.as_deref().unwrap_or(&grants))?;
    Ok(true)
}

const BEFORE: &str = "SELECT event_time, event_id FROM observations
     WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time <= ?4
     ORDER BY event_time DESC, event_id DESC LIMIT 1";
const AFTER: &str = "SELECT event_time, event_id FROM observations
     WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time > ?4
     ORDER BY event_time, event_id LIMIT 1";

/// For each of `observations`, the times of the stored observations ordered just before and
/// just after it in its group and kind (not itself, which an import may have stored already).
/// Where batches pay, many in one statement.
fn stored_neighbours(
    conn: &Connection,
    key: i64,
    observations: &[&Observation],
) -> Result<Vec<[Option<i64>; 2]>> {
    const NEAREST: [&str; 2] = [
        "SELECT event_time FROM observations
         WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND (event_time, event_id) < (?4, ?5)
         ORDER BY event_time DESC, event_id DESC LIMIT 1",
        "SELECT event_time FROM observations
         WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND (event_time, event_id) > (?4, ?5)
         ORDER BY event_time, event_id LIMIT 1",
    ];
    if !conn.batches_pay() {
        return observations
            .iter()
            .map(|o| {
                let params = params![key, o.group, Code(o.kind), o.time, o.event_id];
                let nearest = |sql| conn.prepare_cached(sql)?.query_row(params, |r| r.get(0)).optional();
                Ok([nearest(NEAREST[0])?, nearest(NEAREST[1])?])
            })
            .collect();
    }
    let places: Vec<i64> = (0..observations.len() as i64).collect();
    let kinds: Vec<Code<ObservationKind>> = observations.iter().map(|o| Code(o.kind)).collect();
    let rows: Vec<[&dyn ToSql; 5]> = observations
        .iter()
        .zip(&kinds)
        .zip(&places)
        .map(|((o, kind), place)| -> [&dyn ToSql; 5] { [place, &o.group, kind, &o.time, &o.event_id] })
        .collect();
    let query = |list: &str| {
        format!(
            "SELECT listed.i,
                    (SELECT o.event_time FROM observations o
                     WHERE o.key = ?1 AND o.behaviour_group = listed.g AND o.kind = listed.k
                       AND (o.event_time, o.event_id) < (listed.t, listed.id)
                     ORDER BY o.event_time DESC, o.event_id DESC LIMIT 1),
                    (SELECT o.event_time FROM observations o
                     WHERE o.key = ?1 AND o.behaviour_group = listed.g AND o.kind = listed.k
                       AND (o.event_time, o.event_id) > (listed.t, listed.id)
                     ORDER BY o.event_time, o.event_id LIMIT 1)
             FROM (VALUES {list}) AS listed (i, g, k, t, id)"
        )
    };
    let types = &["bigint", "bigint", "bigint", "bigint", "text"];
    let mut nearest = vec![[None, None]; observations.len()];
    query_listed(conn, query, types, &[&key], &rows, OBSERVATIONS_PER_LOOKUP, |r| -> Result<()> {
        let place = usize::try_from(r.get::<_, i64>(0)?).ok().filter(|&p| p < nearest.len());
        let place = place
            .ok_or_else(|| StoreError::Corrupt("a neighbour lookup answered for no observation".into()))?;
        nearest[place] = [r.get(1)?, r.get(2)?];
        Ok(())
    })?;
    Ok(nearest)
}

/// The eventIDs of the calls labelled on `key` whose time falls in one of `spans` (behaviour
/// group, from, to) of their group. Where batches pay, many spans in one statement.
fn calls_in_spans(conn: &Connection, key: i64, spans: &[(i64, i64, i64)]) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    if !conn.batches_pay() {
        let mut in_span = conn.prepare_cached(
            "SELECT e.event_id FROM call_labels c JOIN event_rows e ON e.id = c.event
             WHERE c.key = ?1 AND c.behaviour_group = ?2 AND c.event_time BETWEEN ?3 AND ?4",
        )?;
        for (group, from, to) in spans {
            for id in in_span.query_map(params![key, group, from, to], |r| r.get::<_, String>(0))? {
                ids.insert(id?);
            }
        }
        return Ok(ids);
    }
    let rows: Vec<[&dyn ToSql; 3]> =
        spans.iter().map(|(group, from, to)| -> [&dyn ToSql; 3] { [group, from, to] }).collect();
    let query = |list: &str| {
        format!(
            "SELECT e.event_id FROM (VALUES {list}) AS listed (g, f, t)
             JOIN call_labels c ON c.key = ?1 AND c.behaviour_group = listed.g AND c.event_time BETWEEN listed.f AND listed.t
             JOIN event_rows e ON e.id = c.event"
        )
    };
    query_listed(
        conn,
        query,
        &["bigint", "bigint", "bigint"],
        &[&key],
        &rows,
        OBSERVATIONS_PER_LOOKUP,
        |r| -> Result<()> {
            ids.insert(r.get(0)?);
            Ok(())
        },
    )?;
    Ok(ids)
}

/// Observations looked up in one statement where batches pay.
const OBSERVATIONS_PER_LOOKUP: usize = 128;

/// Which of `wanted` are stored on `key`.
fn stored_observations(
    conn: &Connection,
    key: i64,
    wanted: Vec<Observation>,
) -> Result<HashSet<Observation>> {
    let mut stored = HashSet::new();
    if !conn.batches_pay() {
        let mut stmt = conn.prepare_cached(
            "SELECT 1 FROM observations
             WHERE key = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time = ?4 AND event_id = ?5",
        )?;
        for o in wanted {
            if stmt.exists(params![key, o.group, Code(o.kind), o.time, o.event_id])? {
                stored.insert(o);
            }
        }
        return Ok(stored);
    }
    let kinds: Vec<Code<ObservationKind>> = wanted.iter().map(|o| Code(o.kind)).collect();
    let rows: Vec<[&dyn ToSql; 4]> = wanted
        .iter()
        .zip(&kinds)
        .map(|(o, kind)| -> [&dyn ToSql; 4] { [&o.group, kind, &o.time, &o.event_id] })
        .collect();
    // `OFFSET 0` keeps each a lookup of the primary key, whatever the planner's statistics.
    let query = |list: &str| {
        format!(
            "SELECT listed.g, listed.k, listed.t, listed.id FROM (VALUES {list}) AS listed (g, k, t, id)
             WHERE EXISTS (SELECT 1 FROM observations WHERE key = ?1 AND behaviour_group = listed.g
                           AND kind = listed.k AND event_time = listed.t AND event_id = listed.id OFFSET 0)"
        )
    };
    let types = &["bigint", "bigint", "bigint", "text"];
    query_listed(conn, query, types, &[&key], &rows, OBSERVATIONS_PER_LOOKUP, |r| -> Result<()> {
        let Code(kind) = r.get(1)?;
        stored.insert(Observation { group: r.get(0)?, kind, time: r.get(2)?, event_id: r.get(3)? });
        Ok(())
    })?;
    Ok(stored)
}

/// The stored observations nearest each call (what its label can consult), after the new
/// ones were stored.
fn nearest_observations<'e>(
    conn: &Connection,
    key: i64,
    calls: impl Iterator<Item = &'e KmsEvent>,
) -> Result<Vec<Observation>> {
    let mut wanted: Vec<(i64, Code<ObservationKind>, i64)> = Vec::new();
    let mut seen = HashSet::new();
    for call in calls {
        let Some(group) = observed_group(call) else { continue };
        if seen.insert((group, call.event_time)) {
            for kind in [ObservationKind::Success, ObservationKind::Denial] {
                wanted.push((group, Code(kind), call.event_time));
            }
        }
    }
    let mut out = Vec::new();
    if !conn.batches_pay() {
        let (mut before, mut after) = (conn.prepare_cached(BEFORE)?, conn.prepare_cached(AFTER)?);
        for (group, kind, time) in wanted {
            for stmt in [&mut before, &mut after] {
                let found: Option<(i64, String)> = stmt
                    .query_row(params![key, group, kind, time], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((time, event_id)) = found {
                    out.push(Observation { group, kind: kind.0, time, event_id });
                }
            }
        }
        return Ok(out);
    }
    let rows: Vec<[&dyn ToSql; 3]> =
        wanted.iter().map(|(group, kind, time)| -> [&dyn ToSql; 3] { [group, kind, time] }).collect();
    let query = |list: &str| {
        format!(
            "SELECT listed.g, listed.k, b.event_time, b.event_id, a.event_time, a.event_id
             FROM (VALUES {list}) AS listed (g, k, t)
             LEFT JOIN LATERAL (SELECT event_time, event_id FROM observations
                 WHERE key = ?1 AND behaviour_group = listed.g AND kind = listed.k AND event_time <= listed.t
                 ORDER BY event_time DESC, event_id DESC LIMIT 1) AS b ON true
             LEFT JOIN LATERAL (SELECT event_time, event_id FROM observations
                 WHERE key = ?1 AND behaviour_group = listed.g AND kind = listed.k AND event_time > listed.t
                 ORDER BY event_time, event_id LIMIT 1) AS a ON true"
        )
    };
    let types = &["bigint", "bigint", "bigint"];
    query_listed(conn, query, types, &[&key], &rows, OBSERVATIONS_PER_LOOKUP, |r| -> Result<()> {
        let (group, Code(kind)): (i64, Code<ObservationKind>) = (r.get(0)?, r.get(1)?);
        for at in [2, 4] {
            if let Some(time) = r.get::<_, Option<i64>>(at)? {
                out.push(Observation { group, kind, time, event_id: r.get(at + 1)? });
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The stored calls `ids` on `key` with every copy of each (the label of a call shared by
/// several accounts describes one copy, completed from the others).
fn calls_with_copies(
    conn: &Connection,
    texts: &mut TextReader,
    key: &str,
    ids: &BTreeSet<String>,
) -> Result<Vec<KmsEvent>> {
    let select = SELECT_EVENTS.as_str();
    let by_id = format!("{select} WHERE event_hash = granttrail_hash(?1) AND event_id = ?1");
    let copies = format!(
        "{select} WHERE shared_event_id = ?1
         UNION ALL {select} WHERE event_hash = granttrail_hash(?1) AND event_id = ?1 AND shared_event_id IS NULL"
    );
    let mut out = Vec::new();
    for id in ids {
        for e in load_events(conn, texts, &by_id, [id])? {
            let copy_of = e.shared_event_id.clone().unwrap_or_else(|| e.event_id.clone());
            out.extend(load_events(conn, texts, &copies, [&copy_of])?);
            out.push(e);
        }
    }
    // As a whole-key relabelling reads them: the events whose key or destination is `key`.
    out.retain(|e| e.is_on_key(key));
    Ok(out)
}
