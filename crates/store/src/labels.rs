//! Recomputing call labels for the keys an object (or an import) touched.
//!
//! A label depends on the grants of its key, the other events on its key (denials,
//! grant-less successes, key-policy changes), the principal's IAM changes and the imports.
//! Recomputing every label of each touched key keeps incremental ingest equal to a rebuild.

use std::collections::{BTreeSet, HashMap};

use granttrail_grants::{
    CallLabel, IamSnapshot, ImportedIam, ImportedKeyPolicy, KeyInputs, KmsEvent, Policy, Settings,
    classify_key, classify_keyless,
};
use rusqlite::{Connection, params};

use crate::read::{GrantFilter, query_grants};
use crate::write::{EVENT_COLUMNS, event_from_row, to_json};
use crate::{Result, StoreError};

/// What must be relabelled.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub keys: BTreeSet<String>,
    /// Accounts whose principals' permissions changed (IAM events or IAM imports).
    pub accounts: BTreeSet<String>,
    /// An Organizations policy changed: every key.
    pub everything: bool,
    /// A call with no identifiable key arrived.
    pub keyless: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.accounts.is_empty() && !self.everything && !self.keyless
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
        } else if e.event_source == granttrail_grants::event::ORGANIZATIONS_SOURCE {
            self.everything = true;
        } else if e.is_trail_configuration() {
            // Trail selector changes are coverage evidence, not permission changes.
        } else {
            self.accounts.extend(e.recipient_account_id.iter().chain(e.caller.account_id.iter()).cloned());
        }
    }
}

/// Remembers what must be relabelled, inside the caller's transaction.
pub(crate) fn mark_stale(conn: &Connection, dirty: &Dirty) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO stale_labels (kind, value) VALUES (?1, ?2)")?;
    for key in &dirty.keys {
        insert.execute(params!["key", key])?;
    }
    for account in &dirty.accounts {
        insert.execute(params!["account", account])?;
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
            "account" => {
                dirty.accounts.insert(value);
            }
            "all" => dirty.everything = true,
            _ => dirty.keyless = true,
        }
    }
    Ok(dirty)
}

fn load_events(conn: &Connection, sql: &str, args: &[&str]) -> Result<Vec<KmsEvent>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), event_from_row)?;
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

/// Relabels every call on the dirty keys (and the keyless calls when asked).
pub(crate) fn recompute(conn: &Connection, dirty: &Dirty, settings: &Settings) -> Result<()> {
    if dirty.is_empty() {
        return Ok(());
    }
    let mut keys = if dirty.everything { all_keys(conn)? } else { dirty.keys.clone() };
    for account in &dirty.accounts {
        keys.extend(keys_used_by_account(conn, account)?);
    }
    let policy_changes = load_events(
        conn,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_source NOT IN ('kms.amazonaws.com', 'cloudtrail.amazonaws.com')"
        ),
        &[],
    )?;
    let iam = imported_iam(conn)?;
    // Each event once: a ReEncrypt from a key to itself matches both halves.
    let key_events_sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE key_arn = ?1
         UNION ALL
         SELECT {EVENT_COLUMNS} FROM events WHERE destination_key_arn = ?1 AND key_arn IS NOT ?1"
    );
    for key in &keys {
        let grants =
            query_grants(conn, &GrantFilter { key_arn: Some(key.clone()), ..GrantFilter::default() })?;
        let events = load_events(conn, &key_events_sql, &[key])?;
        let policies = imported_key_policies(conn, key)?;
        let inputs = KeyInputs {
            key_arn: key,
            grants: &grants,
            events: &events,
            policy_changes: &policy_changes,
            imported_key_policies: &policies,
            imported_iam: &iam,
            settings,
        };
        replace_labels(conn, key, &classify_key(&inputs))?;
    }
    if dirty.keyless || dirty.everything {
        let events = load_events(
            conn,
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE key_arn IS NULL AND destination_key_arn IS NULL
                   AND event_source = 'kms.amazonaws.com'"
            ),
            &[],
        )?;
        replace_labels(conn, "", &classify_keyless(&events))?;
    }
    Ok(())
}

/// A label row as stored, without its key and `(event_id, side)`, for comparing with a
/// freshly computed label.
type LabelRow =
    (Option<String>, i64, String, Option<String>, Option<String>, String, String, String, String, String);

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
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, side, shared_event_id, event_time, event_name, operation, principal, label,
                    evidence, grant_ids, reasons, flags
             FROM call_labels WHERE key_arn = ?1",
        )?;
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

/// Is the stored row `r` (columns as selected in [`replace_labels`]) the row `l` would write?
/// The cheap columns are compared first; the JSON ones are serialised into `json` only then.
fn stored_equals(r: &rusqlite::Row<'_>, l: &CallLabel, json: &mut Vec<u8>) -> Result<bool> {
    let text = |i: usize| text_at(r, i);
    let cheap_equal = text(2)? == l.shared_event_id.as_deref()
        && r.get::<_, i64>(3)? == l.event_time
        && text(4)? == Some(l.event_name.as_str())
        && text(5)? == l.operation
        && text(6)? == l.principal.as_deref()
        && text(7)? == Some(l.label.as_str())
        && text(8)? == Some(l.evidence.as_str());
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
         principal, label, evidence, grant_ids, reasons, flags)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
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
