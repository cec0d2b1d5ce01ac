//! What ingested objects left to relabel, written with their events and read by a refresh.

use std::collections::{BTreeMap, BTreeSet};

use granttrail_grants::{Grant, KmsEvent, sets_key_context};
use rusqlite::{Connection, params};

use crate::Result;

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
