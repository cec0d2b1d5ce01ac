//! Recomputing call labels for the keys an object (or an import) touched.
//!
//! A label depends on the grants of its key, the key's policy history, the principal's IAM
//! changes, the imports, and the observations of its behaviour group (grant-less successes
//! and denials of the same caller calling the same way). A key whose grants or policies
//! changed is relabelled whole. A key that only gained calls is relabelled incrementally: the
//! new calls, and the stored labels whose nearest observations the new calls changed. Both
//! give exactly what a rebuild gives (crates/ingest/tests/order_independence.rs).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use granttrail_grants::{
    CallLabel, Grant, IamSnapshot, ImportedIam, ImportedKeyPolicy, KeyClassifier, KeyInputs, KmsEvent,
    Observation, ObservationIndex, ObservationKind, Policy, Settings, behaviour_group, classify_key,
    classify_keyless, logical_event_refs, sets_key_context,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::read::{GrantFilter, grants_not_ended_before, query_grants};
use crate::write::{EVENT_COLUMNS, event_from_row, to_json};
use crate::{Result, StoreError};

/// More new events than this since the last relabelling (a bulk load) relabel their keys
/// whole, which is cheaper per event than looking each one up.
const INCREMENTAL_LIMIT: i64 = 10_000;

/// When a key is relabelled incrementally. Rechecking a call costs a few times what it costs in
/// a whole-key relabelling (its neighbours are looked up one by one), so a key goes whole unless
/// its stored history is this many times the calls to recheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strategy {
    pub history_per_rechecked_call: i64,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy { history_per_rechecked_call: 3 }
    }
}

/// What must be relabelled.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Keys that gained calls.
    pub keys: BTreeSet<String>,
    /// Keys whose context ([`sets_key_context`]) changed, or a grant in a way that can change
    /// any of their labels: relabelled whole.
    pub context_keys: BTreeSet<String>,
    /// Keys whose grants changed only from a time on (a new grant, a grant that ended): the
    /// calls from then on are rechecked.
    pub since: BTreeMap<String, i64>,
    /// Accounts whose principals' permissions changed (IAM events or IAM imports).
    pub accounts: BTreeSet<String>,
    /// An Organizations policy changed: every key.
    pub everything: bool,
    /// A call with no identifiable key arrived.
    pub keyless: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.context_keys.is_empty()
            && self.since.is_empty()
            && self.accounts.is_empty()
            && !self.everything
            && !self.keyless
    }

    /// Records what a new event can change.
    pub fn add_event(&mut self, e: &KmsEvent) {
        if e.is_kms() {
            if e.key_arn.is_none() && e.destination_key_arn.is_none() {
                self.keyless = true;
            }
            // Called for every new event: clone a key only the first time it is seen.
            for key in e.key_arn.iter().chain(&e.destination_key_arn) {
                if !self.keys.contains(key) {
                    self.keys.insert(key.clone());
                }
            }
            if sets_key_context(e)
                && let Some(key) = &e.key_arn
            {
                self.context_keys.insert(key.clone());
            }
        } else if e.event_source == granttrail_grants::event::ORGANIZATIONS_SOURCE {
            self.everything = true;
        } else if e.is_trail_configuration() {
            // Trail selector changes are coverage evidence, not permission changes.
        } else {
            self.accounts.extend(e.recipient_account_id.iter().chain(e.caller.account_id.iter()).cloned());
        }
    }
}

impl Dirty {
    /// Records what a grant's change (from `old` to `new`, as stored) can change on its key.
    pub fn grant_changed(&mut self, key: &str, old: Option<&Grant>, new: Option<&Grant>) {
        if old == new {
            return;
        }
        let since = match (old, new) {
            // A new grant whose creation was seen covers nothing before its creation.
            (None, Some(n)) if n.creation_seen => n.created_at,
            // An end that came or moved changes coverage from the earlier end on only, as long
            // as everything a label cites of the grant (its creation and terms) is unchanged.
            (Some(o), Some(n)) if o.creation_seen && n.creation_seen && same_creation(o, n) => {
                match (o.ended_at, n.ended_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            // A grant known only from its end may have covered any call before it.
            _ => None,
        };
        match since {
            Some(t) => {
                let earliest = self.since.entry(key.to_string()).or_insert(t);
                *earliest = (*earliest).min(t);
            }
            None => {
                self.context_keys.insert(key.to_string());
            }
        }
    }
}

/// Do two states of a grant differ only in how it ended?
fn same_creation(old: &Grant, new: &Grant) -> bool {
    let mut ended_like_new = old.clone();
    ended_like_new.state = new.state;
    ended_like_new.ended_at = new.ended_at;
    ended_like_new.ended_by = new.ended_by.clone();
    ended_like_new.end_event_ids = new.end_event_ids.clone();
    ended_like_new.anomalies = new.anomalies.clone();
    ended_like_new == *new
}

/// Remembers what must be relabelled, inside the caller's transaction.
pub(crate) fn mark_stale(conn: &Connection, dirty: &Dirty) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO stale_labels (kind, value) VALUES (?1, ?2)")?;
    for key in &dirty.keys {
        insert.execute(params!["key", key])?;
    }
    for key in &dirty.context_keys {
        insert.execute(params!["key_context", key])?;
    }
    for account in &dirty.accounts {
        insert.execute(params!["account", account])?;
    }
    let mut since = conn.prepare_cached(
        "INSERT INTO stale_since (key_arn, since) VALUES (?1, ?2)
         ON CONFLICT (key_arn) DO UPDATE SET since = min(since, excluded.since)",
    )?;
    for (key, t) in &dirty.since {
        since.execute(params![key, t])?;
    }
    if dirty.everything {
        insert.execute(params!["all", ""])?;
    }
    if dirty.keyless {
        insert.execute(params!["keyless", ""])?;
    }
    Ok(())
}

/// What is waiting to be relabelled.
pub(crate) fn stale(conn: &Connection) -> Result<Dirty> {
    let mut stmt = conn.prepare_cached("SELECT kind, value FROM stale_labels")?;
    let rows: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut dirty = Dirty::default();
    for (kind, value) in rows {
        match kind.as_str() {
            "key" => {
                dirty.keys.insert(value);
            }
            "key_context" => {
                dirty.context_keys.insert(value);
            }
            "account" => {
                dirty.accounts.insert(value);
            }
            "all" => dirty.everything = true,
            _ => dirty.keyless = true,
        }
    }
    let mut stmt = conn.prepare_cached("SELECT key_arn, since FROM stale_since")?;
    dirty.since = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(dirty)
}

/// Records that every stored event is labelled, after [`recompute`] of everything stale.
pub(crate) fn mark_labelled(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "DELETE FROM stale_labels; DELETE FROM stale_since;
         UPDATE labelled_through SET event_id = (SELECT COALESCE(max(id), 0) FROM events) WHERE id = 1;",
    )?;
    Ok(())
}

fn load_events(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<KmsEvent>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, event_from_row)?;
    rows.map(|r| r?).collect()
}

fn all_keys(conn: &Connection) -> Result<BTreeSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT key_arn FROM events WHERE key_arn IS NOT NULL
         UNION SELECT destination_key_arn FROM events WHERE destination_key_arn IS NOT NULL",
    )?;
    let keys = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(keys)
}

fn keys_used_by_account(conn: &Connection, account: &str) -> Result<BTreeSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT key_arn FROM events WHERE caller_account_id = ?1 AND key_arn IS NOT NULL
         UNION SELECT DISTINCT destination_key_arn FROM events WHERE caller_account_id = ?1 AND destination_key_arn IS NOT NULL",
    )?;
    let keys = stmt.query_map([account], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(keys)
}

fn imported_key_policies(conn: &Connection, key: &str) -> Result<Vec<ImportedKeyPolicy>> {
    let mut stmt =
        conn.prepare_cached("SELECT at, policy, source FROM imported_key_policies WHERE key_arn = ?1")?;
    let rows: Vec<(i64, String, String)> =
        stmt.query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(at, text, source)| {
            let policy =
                Policy::parse(&text).map_err(|e| StoreError::Corrupt(format!("imported key policy: {e}")))?;
            Ok(ImportedKeyPolicy { at, policy, source })
        })
        .collect()
}

fn imported_iam(conn: &Connection) -> Result<Vec<ImportedIam>> {
    let mut stmt = conn.prepare_cached("SELECT account, at, document, source FROM imported_iam")?;
    let rows: Vec<(String, i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(account, at, document, source)| {
            let snapshot = IamSnapshot::parse(&document)
                .map_err(|e| StoreError::Corrupt(format!("imported IAM: {e}")))?;
            Ok(ImportedIam { account, at, snapshot, source })
        })
        .collect()
}

/// What every key's classification shares: permission changes outside KMS and IAM imports.
struct Shared {
    policy_changes: Vec<KmsEvent>,
    iam: Vec<ImportedIam>,
}

/// What a relabelling did: how many keys it read whole, how many it relabelled incrementally,
/// and which keys those were.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Relabelled {
    pub whole_keys: usize,
    pub incremental_keys: usize,
    pub keys: Vec<String>,
}

/// Relabels what `dirty` names: whole keys, or the new calls of a key and what they changed.
pub(crate) fn recompute(
    conn: &Connection,
    dirty: &Dirty,
    settings: &Settings,
    strategy: Strategy,
) -> Result<Relabelled> {
    if dirty.is_empty() {
        return Ok(Relabelled::default());
    }
    let mut whole = if dirty.everything { all_keys(conn)? } else { dirty.context_keys.clone() };
    for account in &dirty.accounts {
        whole.extend(keys_used_by_account(conn, account)?);
    }
    let incremental = incremental_plan(conn, dirty, settings, strategy, &mut whole)?;
    let shared = Shared {
        // The same condition as the partial index `events_permission_changes`, so it is used.
        policy_changes: load_events(
            conn,
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE event_source <> 'kms.amazonaws.com' AND event_source <> 'cloudtrail.amazonaws.com'"
            ),
            [],
        )?,
        iam: imported_iam(conn)?,
    };
    for key in &whole {
        relabel_whole_key(conn, key, &shared, settings)?;
    }
    for (key, increment) in &incremental {
        relabel_incrementally(conn, key, increment, &shared, settings)?;
    }
    if dirty.keyless || dirty.everything {
        let events = load_events(
            conn,
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE key_arn IS NULL AND destination_key_arn IS NULL
                   AND event_source = 'kms.amazonaws.com'"
            ),
            [],
        )?;
        replace_labels(conn, "", &classify_keyless(&events))?;
    }
    let keys = whole.iter().chain(incremental.keys()).cloned().collect();
    Ok(Relabelled { whole_keys: whole.len(), incremental_keys: incremental.len(), keys })
}

/// A key relabelled incrementally: its new events (those after `labelled_through`), and the
/// time from which its changed grants may cover calls differently.
#[derive(Debug, Default)]
struct Increment {
    new_events: Vec<KmsEvent>,
    since: Option<i64>,
}

/// The stale keys that can be relabelled incrementally; the others are added to `whole`. A key
/// goes whole when a new event is another copy of a stored call (it may change which copy a
/// label describes), or when there is too much to recheck.
fn incremental_plan(
    conn: &Connection,
    dirty: &Dirty,
    settings: &Settings,
    strategy: Strategy,
    whole: &mut BTreeSet<String>,
) -> Result<BTreeMap<String, Increment>> {
    let mut plan: BTreeMap<String, Increment> = BTreeMap::new();
    for key in dirty.keys.iter().chain(dirty.since.keys()).filter(|k| !whole.contains(*k)) {
        // Coverage can change up to the clock tolerance before a creation and the consistency
        // window after an end.
        let since = dirty.since.get(key).map(|t| {
            t.saturating_sub(settings.clock_tolerance_seconds)
                .saturating_sub(settings.consistency_window_seconds)
        });
        plan.insert(key.clone(), Increment { new_events: Vec::new(), since });
    }
    if plan.is_empty() {
        return Ok(plan);
    }
    let through: i64 =
        conn.query_row("SELECT event_id FROM labelled_through WHERE id = 1", [], |r| r.get(0))?;
    let count: i64 = conn.query_row("SELECT count(*) FROM events WHERE id > ?1", [through], |r| r.get(0))?;
    if count > INCREMENTAL_LIMIT {
        whole.extend(plan.into_keys());
        return Ok(BTreeMap::new());
    }
    let new_events =
        load_events(conn, &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1"), [through])?;
    for e in new_events.into_iter().filter(KmsEvent::is_kms) {
        let destination = e.destination_key_arn.as_ref().filter(|d| e.key_arn.as_ref() != Some(*d));
        let keys: Vec<String> = e.key_arn.iter().chain(destination).cloned().collect();
        for key in keys {
            if let Some(increment) = plan.get_mut(&key) {
                increment.new_events.push(e.clone());
            }
        }
    }
    let mut older_copy = conn.prepare_cached(
        "SELECT 1 FROM events WHERE id <= ?2 AND shared_event_id = ?1
         UNION ALL SELECT 1 FROM events WHERE id <= ?2 AND event_id = ?1 AND shared_event_id IS NULL",
    )?;
    let mut calls_since =
        conn.prepare_cached("SELECT count(*) FROM events WHERE key_arn = ?1 AND event_time >= ?2")?;
    let mut history =
        conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM call_labels WHERE key_arn = ?1 LIMIT ?2)")?;
    let mut out = BTreeMap::new();
    for (key, increment) in plan {
        let mut incremental = !increment.new_events.is_empty() || increment.since.is_some();
        let mut recheck = increment.new_events.len() as i64;
        if let Some(since) = increment.since {
            recheck += calls_since.query_row(params![key, since], |r| r.get::<_, i64>(0))?;
        }
        let wanted = recheck.saturating_mul(strategy.history_per_rechecked_call);
        incremental &= recheck <= INCREMENTAL_LIMIT
            && history.query_row(params![key, wanted], |r| r.get::<_, i64>(0))? >= wanted;
        for e in &increment.new_events {
            if !incremental {
                break;
            }
            let copy_of = e.shared_event_id.as_deref().unwrap_or(&e.event_id);
            incremental = !(sets_key_context(e) || older_copy.exists(params![copy_of, through])?);
        }
        if incremental {
            out.insert(key, increment);
        } else {
            whole.insert(key);
        }
    }
    Ok(out)
}

/// Relabels every call on `key` and replaces its observations.
fn relabel_whole_key(conn: &Connection, key: &str, shared: &Shared, settings: &Settings) -> Result<()> {
    // Each event once: a ReEncrypt from a key to itself matches both halves.
    let key_events_sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE key_arn = ?1
         UNION ALL
         SELECT {EVENT_COLUMNS} FROM events WHERE destination_key_arn = ?1 AND key_arn IS NOT ?1"
    );
    let grants =
        query_grants(conn, &GrantFilter { key_arn: Some(key.to_string()), ..GrantFilter::default() })?;
    let events = load_events(conn, &key_events_sql, [key])?;
    let policies = imported_key_policies(conn, key)?;
    let inputs = KeyInputs {
        key_arn: key,
        grants: &grants,
        events: &events,
        policy_changes: &shared.policy_changes,
        imported_key_policies: &policies,
        imported_iam: &shared.iam,
        settings,
    };
    let result = classify_key(&inputs);
    replace_labels(conn, key, &result.labels)?;
    replace_observations(conn, key, &result.observations)
}

/// Relabels incrementally: the calls to recheck (the new ones, and every call from `since` on
/// when grants changed) are classified again; observations they gained or lost are updated;
/// and the stored labels whose nearest observations moved (those of the same behaviour group
/// between a changed observation's stored neighbours) are relabelled. The key's context is
/// read from the events that set it, not from its history.
fn relabel_incrementally(
    conn: &Connection,
    key: &str,
    increment: &Increment,
    shared: &Shared,
    settings: &Settings,
) -> Result<()> {
    // The same condition as the partial index `events_key_context`, so it is used.
    let context = load_events(
        conn,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE key_arn = ?1
               AND (event_name = 'CreateKey' OR event_name = 'PutKeyPolicy' OR event_name = 'TagResource'
                 OR event_name = 'UntagResource' OR event_name = 'CreateAlias' OR event_name = 'UpdateAlias'
                 OR event_name = 'DeleteAlias')"
        ),
        [key],
    )?;
    let policies = imported_key_policies(conn, key)?;
    let mut recheck_events = increment.new_events.clone();
    if let Some(since) = increment.since {
        // Every copy of these calls is in the range too: copies share their time.
        recheck_events.extend(load_events(
            conn,
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE key_arn = ?1 AND event_time >= ?2
                 UNION ALL
                 SELECT {EVENT_COLUMNS} FROM events
                 WHERE destination_key_arn = ?1 AND key_arn IS NOT ?1 AND event_time >= ?2"
            ),
            params![key, since],
        )?);
    }
    // A grant that ended a consistency window before every call classified here covers none
    // of them: only the others are read, so a key's long-dead grants cost nothing.
    let alive_after = |events: &[KmsEvent]| {
        events
            .iter()
            .map(|e| e.event_time)
            .min()
            .unwrap_or(i64::MAX)
            .saturating_sub(settings.consistency_window_seconds + 1)
    };
    let recheck_from = alive_after(&recheck_events);
    let grants = grants_not_ended_before(conn, key, recheck_from)?;
    let inputs = KeyInputs {
        key_arn: key,
        grants: &grants,
        events: &context,
        policy_changes: &shared.policy_changes,
        imported_key_policies: &policies,
        imported_iam: &shared.iam,
        settings,
    };
    let classifier = KeyClassifier::new(&inputs);
    let calls = logical_event_refs(recheck_events.iter());

    // Observations the rechecked calls make now, against those stored for them.
    let fresh: HashSet<Observation> = calls.iter().filter_map(|c| classifier.observation(c)).collect();
    let mut stored = HashSet::new();
    let mut stored_for = conn.prepare_cached(
        "SELECT 1 FROM observations
         WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time = ?4 AND event_id = ?5",
    )?;
    for call in calls.iter().filter(|c| c.event_name != "ReEncrypt") {
        let Some(group) = behaviour_group(call) else { continue };
        for kind in [ObservationKind::Success, ObservationKind::Denial] {
            if stored_for.exists(params![key, group, kind.as_str(), call.event_time, call.event_id])? {
                stored.insert(Observation {
                    group,
                    kind,
                    time: call.event_time,
                    event_id: call.event_id.clone(),
                });
            }
        }
    }
    let (gone, added): (Vec<&Observation>, Vec<&Observation>) =
        (stored.difference(&fresh).collect(), fresh.difference(&stored).collect());

    // The times between which each changed observation was or becomes someone's nearest.
    let mut spans: Vec<(i64, i64, i64)> = Vec::new();
    for o in gone.iter().chain(&added) {
        let [before, after] = stored_neighbours(conn, key, o)?;
        spans.push((o.group, before.unwrap_or(i64::MIN), after.unwrap_or(i64::MAX)));
    }
    spans.sort_unstable();
    let mut delete = conn.prepare_cached(
        "DELETE FROM observations
         WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time = ?4 AND event_id = ?5",
    )?;
    for o in &gone {
        delete.execute(params![key, o.group, o.kind.as_str(), o.time, o.event_id])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO observations (key_arn, behaviour_group, kind, event_time, event_id)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for o in &added {
        insert.execute(params![key, o.group, o.kind.as_str(), o.time, o.event_id])?;
    }
    let rechecked: HashSet<&str> = recheck_events.iter().map(|e| e.event_id.as_str()).collect();
    let mut affected_ids: BTreeSet<String> = BTreeSet::new();
    let mut in_span = conn.prepare_cached(
        "SELECT event_id FROM call_labels
         WHERE key_arn = ?1 AND behaviour_group = ?2 AND event_time BETWEEN ?3 AND ?4",
    )?;
    for (group, from, to) in merge_spans(spans) {
        let ids = in_span.query_map(params![key, group, from, to], |r| r.get::<_, String>(0))?;
        for id in ids {
            let id = id?;
            if !rechecked.contains(id.as_str()) {
                affected_ids.insert(id);
            }
        }
    }
    let affected_events = calls_with_copies(conn, key, &affected_ids)?;
    let affected = logical_event_refs(affected_events.iter());

    let relabelled: Vec<_> = calls.iter().chain(affected.iter()).collect();
    let index =
        ObservationIndex::new(&nearest_observations(conn, key, relabelled.iter().map(|c| c.as_ref()))?);
    // Labels of earlier calls may need grants that ended before the rechecked calls.
    let affected_from = alive_after(&affected_events);
    let labels: Vec<CallLabel> = if affected_from < recheck_from {
        let grants = grants_not_ended_before(conn, key, affected_from)?;
        let inputs = KeyInputs { grants: &grants, ..inputs };
        let classifier = KeyClassifier::new(&inputs);
        relabelled.iter().flat_map(|c| classifier.label(c, &index)).collect()
    } else {
        relabelled.iter().flat_map(|c| classifier.label(c, &index)).collect()
    };
    update_labels(conn, key, &labels)
}

/// Overlapping spans of one group become one, so each stored label is read once.
fn merge_spans(spans: Vec<(i64, i64, i64)>) -> Vec<(i64, i64, i64)> {
    let mut merged: Vec<(i64, i64, i64)> = Vec::new();
    for (group, from, to) in spans {
        match merged.last_mut() {
            Some(last) if last.0 == group && from <= last.2 => last.2 = last.2.max(to),
            _ => merged.push((group, from, to)),
        }
    }
    merged
}

const BEFORE: &str = "SELECT event_time, event_id FROM observations
     WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time <= ?4
     ORDER BY event_time DESC, event_id DESC LIMIT 1";
const AFTER: &str = "SELECT event_time, event_id FROM observations
     WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND event_time > ?4
     ORDER BY event_time, event_id LIMIT 1";

/// The times of the stored observations ordered just before and just after `o` in its group
/// and kind (not `o` itself, which an import may have stored already).
fn stored_neighbours(conn: &Connection, key: &str, o: &Observation) -> Result<[Option<i64>; 2]> {
    let kind = o.kind.as_str();
    let before = conn
        .prepare_cached(
            "SELECT event_time FROM observations
             WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND (event_time, event_id) < (?4, ?5)
             ORDER BY event_time DESC, event_id DESC LIMIT 1",
        )?
        .query_row(params![key, o.group, kind, o.time, o.event_id], |r| r.get(0))
        .optional()?;
    let after = conn
        .prepare_cached(
            "SELECT event_time FROM observations
             WHERE key_arn = ?1 AND behaviour_group = ?2 AND kind = ?3 AND (event_time, event_id) > (?4, ?5)
             ORDER BY event_time, event_id LIMIT 1",
        )?
        .query_row(params![key, o.group, kind, o.time, o.event_id], |r| r.get(0))
        .optional()?;
    Ok([before, after])
}

/// The stored observations nearest each call (what its label can consult), after the new
/// ones were stored.
fn nearest_observations<'e>(
    conn: &Connection,
    key: &str,
    calls: impl Iterator<Item = &'e KmsEvent>,
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for call in calls.filter(|c| c.event_name != "ReEncrypt") {
        let Some(group) = behaviour_group(call) else { continue };
        if !seen.insert((group, call.event_time)) {
            continue;
        }
        for kind in [ObservationKind::Success, ObservationKind::Denial] {
            for sql in [BEFORE, AFTER] {
                let found: Option<(i64, String)> = conn
                    .prepare_cached(sql)?
                    .query_row(params![key, group, kind.as_str(), call.event_time], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((time, event_id)) = found {
                    out.push(Observation { group, kind, time, event_id });
                }
            }
        }
    }
    Ok(out)
}

/// The stored calls `ids` on `key` with every copy of each (the label of a call shared by
/// several accounts describes one copy, completed from the others).
fn calls_with_copies(conn: &Connection, key: &str, ids: &BTreeSet<String>) -> Result<Vec<KmsEvent>> {
    let by_id = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1");
    let copies = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE shared_event_id = ?1
         UNION ALL SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1 AND shared_event_id IS NULL"
    );
    let mut out = Vec::new();
    for id in ids {
        for e in load_events(conn, &by_id, [id])? {
            let copy_of = e.shared_event_id.clone().unwrap_or_else(|| e.event_id.clone());
            out.extend(load_events(conn, &copies, [&copy_of])?);
            out.push(e);
        }
    }
    // As a whole-key relabelling reads them: the events whose key or destination is `key`.
    out.retain(|e| e.key_arn.as_deref() == Some(key) || e.destination_key_arn.as_deref() == Some(key));
    Ok(out)
}

/// Makes the stored observations of `key` equal to `observations`, writing only differences.
fn replace_observations(conn: &Connection, key: &str, observations: &[Observation]) -> Result<()> {
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
fn replace_labels(conn: &Connection, key: &str, labels: &[CallLabel]) -> Result<()> {
    let index: HashMap<(&str, &str), usize> =
        labels.iter().enumerate().map(|(i, l)| ((l.event_id.as_str(), l.side), i)).collect();
    // Two labels for one call side would overwrite each other; keep the plain replace then.
    if index.len() != labels.len() {
        return replace_all_labels(conn, key, labels);
    }
    // The stored rows are compared in place, without copying them; only the rows that change
    // or go are remembered, with the grants they linked.
    let mut unchanged = vec![false; labels.len()];
    let mut changed: Vec<(String, String, String)> = Vec::new();
    let mut gone: Vec<(String, String, String)> = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {LABEL_COLUMNS} FROM call_labels WHERE key_arn = ?1"))?;
        let mut rows = stmt.query([key])?;
        let mut json = Vec::new();
        while let Some(r) = rows.next()? {
            let (event_id, side) = (text_at(r, 0)?.unwrap_or_default(), text_at(r, 1)?.unwrap_or_default());
            let remember = || -> Result<(String, String, String)> {
                Ok((event_id.to_string(), side.to_string(), text_at(r, 9)?.unwrap_or_default().to_string()))
            };
            match index.get(&(event_id, side)) {
                Some(&i) if stored_equals(r, &labels[i], &mut json)? => unchanged[i] = true,
                Some(_) => changed.push(remember()?),
                None => gone.push(remember()?),
            }
        }
    }
    // Links are keyed by grant first: remove a row's links through the grants it names.
    let mut unlink = conn.prepare_cached(
        "DELETE FROM call_label_grants WHERE grant_id = ?1 AND event_id = ?2 AND side = ?3",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM call_labels WHERE event_id = ?1 AND side = ?2")?;
    for (is_gone, (event_id, side, grant_ids)) in
        changed.iter().map(|c| (false, c)).chain(gone.iter().map(|g| (true, g)))
    {
        let grant_ids: Vec<String> = serde_json::from_str(grant_ids)
            .map_err(|e| StoreError::Corrupt(format!("call_labels.grant_ids: {e}")))?;
        for g in &grant_ids {
            unlink.execute(params![g, event_id, side])?;
        }
        // What is gone was labelled before and is not any more.
        if is_gone {
            delete.execute(params![event_id, side])?;
        }
    }
    let mut insert = conn.prepare_cached(INSERT_LABEL)?;
    let mut link = conn.prepare_cached(INSERT_LINK)?;
    for (l, _) in labels.iter().zip(&unchanged).filter(|(_, same)| !**same) {
        write_label(&mut insert, &mut link, key, l, &label_row(l)?)?;
    }
    Ok(())
}

/// Writes the labels that differ from the stored ones (new calls, or calls whose label changed).
fn update_labels(conn: &Connection, key: &str, labels: &[CallLabel]) -> Result<()> {
    let mut stored = conn.prepare_cached(&format!(
        "SELECT {LABEL_COLUMNS} FROM call_labels WHERE event_id = ?1 AND side = ?2"
    ))?;
    let mut unlink = conn.prepare_cached(
        "DELETE FROM call_label_grants WHERE grant_id = ?1 AND event_id = ?2 AND side = ?3",
    )?;
    let mut insert = conn.prepare_cached(INSERT_LABEL)?;
    let mut link = conn.prepare_cached(INSERT_LINK)?;
    let mut json = Vec::new();
    for l in labels {
        let old_grants: Option<Option<String>> = {
            let mut rows = stored.query(params![l.event_id, l.side])?;
            match rows.next()? {
                Some(r) if stored_equals(r, l, &mut json)? => continue,
                Some(r) => Some(text_at(r, 9)?.map(str::to_string)),
                None => None,
            }
        };
        if let Some(grant_ids) = old_grants.flatten() {
            let grant_ids: Vec<String> = serde_json::from_str(&grant_ids)
                .map_err(|e| StoreError::Corrupt(format!("call_labels.grant_ids: {e}")))?;
            for g in &grant_ids {
                unlink.execute(params![g, l.event_id, l.side])?;
            }
        }
        write_label(&mut insert, &mut link, key, l, &label_row(l)?)?;
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
    "INSERT OR IGNORE INTO call_label_grants (grant_id, event_id, side) VALUES (?1, ?2, ?3)";

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
        link.execute(params![g, l.event_id, l.side])?;
    }
    Ok(())
}

fn replace_all_labels(conn: &Connection, key: &str, labels: &[CallLabel]) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM call_label_grants WHERE (event_id, side) IN (SELECT event_id, side FROM call_labels WHERE key_arn = ?1)",
    )?
    .execute([key])?;
    conn.prepare_cached("DELETE FROM call_labels WHERE key_arn = ?1")?.execute([key])?;
    let mut insert = conn.prepare_cached(INSERT_LABEL)?;
    let mut link = conn.prepare_cached(INSERT_LINK)?;
    for l in labels {
        write_label(&mut insert, &mut link, key, l, &label_row(l)?)?;
    }
    Ok(())
}
