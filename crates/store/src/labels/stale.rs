//! Persisting what ingested objects left to relabel ([`Invalidation`], whose rules are in the
//! `grants` crate): written with their events, read by a refresh.

use std::collections::BTreeSet;

use crate::db::{Connection, execute_listed, insert_rows, params};
use crate::db::{FromSql, ToSql, ValueRef};
use granttrail_grants::{Invalidation, NewCalls};

use crate::Result;

/// The key the calls without an identifiable key are labelled, marked and locked under.
pub(crate) const KEYLESS: &str = "";

/// The most keys one statement names: `new_calls` rows written, or marks deleted.
const KEYS_PER_STATEMENT: usize = 64;

/// What a `stale_labels` row names (its `kind` column). Keys that gained calls are in
/// `new_calls`, one row per key and object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StaleKind {
    /// A key to relabel whole.
    KeyContext,
    /// An account whose principals' permissions changed.
    Account,
    /// Every key.
    All,
    /// The calls with no identifiable key.
    Keyless,
}

impl StaleKind {
    const ALL: [StaleKind; 4] =
        [StaleKind::KeyContext, StaleKind::Account, StaleKind::All, StaleKind::Keyless];

    fn as_str(self) -> &'static str {
        match self {
            StaleKind::KeyContext => "key_context",
            StaleKind::Account => "account",
            StaleKind::All => "all",
            StaleKind::Keyless => "keyless",
        }
    }
}

impl ToSql for StaleKind {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self.as_str())
    }
}

impl FromSql for StaleKind {
    fn column_result(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        let ValueRef::Text(text) = value else {
            return Err("stale_labels.kind is not text".to_string());
        };
        StaleKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("stale_labels.kind {text:?} is none of granttrail's"))
    }
}

/// Remembers what the object `object_id` left to relabel. Beside other writers the caller
/// holds the lock of every key and account marked until its events are committed, so that a
/// relabelling that takes those locks sees the marks and the events together.
pub(crate) fn mark_stale(conn: &Connection, object_id: i64, dirty: &Invalidation) -> Result<()> {
    // One row per key (the map's), so no two rows of one statement meet on the conflict target.
    let new_calls: Vec<[&dyn ToSql; 4]> = dirty
        .new_calls
        .iter()
        .map(|(key, calls)| -> [&dyn ToSql; 4] { [key, &object_id, &calls.earliest, &calls.count] })
        .collect();
    insert_rows(
        conn,
        "new_calls (key_arn, object_id, since, calls)",
        "ON CONFLICT (key_arn, object_id) DO UPDATE
         SET since = CASE WHEN excluded.since < new_calls.since THEN excluded.since ELSE new_calls.since END,
             calls = new_calls.calls + excluded.calls",
        &new_calls,
        KEYS_PER_STATEMENT,
    )?;
    let mut insert =
        conn.prepare_cached("INSERT INTO stale_labels (kind, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
    for key in &dirty.context_keys {
        insert.execute(params![StaleKind::KeyContext, key])?;
    }
    for account in &dirty.accounts {
        insert.execute(params![StaleKind::Account, account])?;
    }
    let mut since = conn.prepare_cached(
        "INSERT INTO stale_since (key_arn, since) VALUES (?1, ?2)
         ON CONFLICT (key_arn) DO UPDATE
         SET since = CASE WHEN excluded.since < stale_since.since THEN excluded.since ELSE stale_since.since END",
    )?;
    for (key, t) in &dirty.since {
        since.execute(params![key, t])?;
    }
    if dirty.everything {
        insert.execute(params![StaleKind::All, ""])?;
    }
    if dirty.keyless {
        insert.execute(params![StaleKind::Keyless, ""])?;
    }
    Ok(())
}

/// What is waiting to be relabelled.
pub(crate) fn stale(conn: &Connection) -> Result<Invalidation> {
    let mut stmt = conn.prepare_cached("SELECT kind, value FROM stale_labels")?;
    let rows: Vec<(StaleKind, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut dirty = Invalidation::default();
    for (kind, value) in rows {
        match kind {
            StaleKind::KeyContext => {
                dirty.context_keys.insert(value);
            }
            StaleKind::Account => {
                dirty.accounts.insert(value);
            }
            StaleKind::All => dirty.everything = true,
            StaleKind::Keyless => dirty.keyless = true,
        }
    }
    let mut stmt = conn.prepare_cached("SELECT key_arn, since FROM stale_since")?;
    dirty.since = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut stmt =
        conn.prepare_cached("SELECT key_arn, min(since), sum(calls) FROM new_calls GROUP BY key_arn")?;
    dirty.new_calls = stmt
        .query_map([], |r| Ok((r.get(0)?, NewCalls { earliest: r.get(1)?, count: r.get(2)? })))?
        .collect::<Result<_, _>>()?;
    Ok(dirty)
}

/// The keys whose marks name them (the empty key standing for the calls without one).
pub(crate) fn keys_marked(dirty: &Invalidation) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = dirty.new_calls.keys().chain(dirty.since.keys()).cloned().collect();
    keys.extend(dirty.context_keys.iter().cloned());
    if dirty.keyless {
        keys.insert(KEYLESS.to_string());
    }
    keys
}

/// Only the marks of `keys` and `accounts` (and of every key, with `everything`).
pub(crate) fn only(
    mut dirty: Invalidation,
    keys: &BTreeSet<String>,
    accounts: &BTreeSet<String>,
    everything: bool,
) -> Invalidation {
    dirty.new_calls.retain(|k, _| keys.contains(k));
    dirty.since.retain(|k, _| keys.contains(k));
    dirty.context_keys.retain(|k| keys.contains(k));
    dirty.accounts.retain(|a| accounts.contains(a));
    dirty.keyless &= keys.contains(KEYLESS);
    dirty.everything &= everything;
    dirty
}

/// Forgets the marks of what a relabelling relabelled: every mark of `keys` and `accounts`,
/// and every mark at all after relabelling everything.
pub(crate) fn mark_labelled(
    conn: &Connection,
    keys: &BTreeSet<String>,
    accounts: &BTreeSet<String>,
    everything: bool,
) -> Result<()> {
    if everything {
        conn.execute_batch("DELETE FROM stale_labels; DELETE FROM stale_since; DELETE FROM new_calls;")?;
        return Ok(());
    }
    if keys.contains(KEYLESS) {
        conn.prepare_cached("DELETE FROM stale_labels WHERE kind = ?1 AND value = ?2")?
            .execute(params![StaleKind::Keyless, ""])?;
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).filter(|key| *key != KEYLESS).collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    delete_listed(conn, "DELETE FROM new_calls WHERE key_arn", &[], &keys)?;
    delete_listed(conn, "DELETE FROM stale_since WHERE key_arn", &[], &keys)?;
    delete_listed(
        conn,
        "DELETE FROM stale_labels WHERE kind = ?1 AND value",
        &[&StaleKind::KeyContext],
        &keys,
    )?;
    delete_listed(
        conn,
        "DELETE FROM stale_labels WHERE kind = ?1 AND value",
        &[&StaleKind::Account],
        &accounts,
    )?;
    Ok(())
}

/// Runs `delete`, a statement to end in `IN (list)`, with `first` bound before the list, for
/// `values`, many a statement.
fn delete_listed(conn: &Connection, delete: &str, first: &[&dyn ToSql], values: &[&str]) -> Result<()> {
    execute_listed(
        conn,
        |list| format!("{delete} IN (VALUES {list})"),
        "text",
        first,
        values,
        KEYS_PER_STATEMENT,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn what_is_marked_stale_is_read_back_and_a_corrupt_kind_is_an_error() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        let mut marked = Invalidation { everything: true, keyless: true, ..Invalidation::default() };
        marked.new_calls.insert("k1".to_string(), NewCalls { earliest: 7, count: 2 });
        marked.context_keys.insert("k2".to_string());
        marked.accounts.insert("111122223333".to_string());
        marked.since.insert("k3".to_string(), 42);
        mark_stale(conn, 1, &marked).unwrap();
        assert_eq!(stale(conn).unwrap(), marked);
        // Another object's calls on the key add up, from the earlier of the two.
        let mut more = Invalidation::default();
        more.new_calls.insert("k1".to_string(), NewCalls { earliest: 3, count: 1 });
        mark_stale(conn, 2, &more).unwrap();
        assert_eq!(stale(conn).unwrap().new_calls["k1"], NewCalls { earliest: 3, count: 3 });

        // Written around the table's CHECK, as a damaged or hand-edited file could be.
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO stale_labels (kind, value) VALUES ('keys', 'k4');",
        )
        .unwrap();
        let error = stale(conn).unwrap_err().to_string();
        assert!(error.contains("\"keys\""), "{error}");
    }

    #[test]
    fn a_relabelling_forgets_the_marks_of_what_it_relabelled_and_no_others() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        let mut marked = Invalidation { keyless: true, ..Invalidation::default() };
        for key in ["k1", "k2", "k3"] {
            marked.new_calls.insert(key.to_string(), NewCalls { earliest: 7, count: 1 });
            marked.context_keys.insert(key.to_string());
            marked.since.insert(key.to_string(), 5);
        }
        marked.accounts.extend(["111122223333".to_string(), "444455556666".to_string()]);
        mark_stale(conn, 1, &marked).unwrap();
        let keys: BTreeSet<String> = ["k1", "k3", KEYLESS].map(String::from).into();
        mark_labelled(conn, &keys, &BTreeSet::from(["444455556666".to_string()]), false).unwrap();
        let mut left = Invalidation::default();
        left.new_calls.insert("k2".to_string(), NewCalls { earliest: 7, count: 1 });
        left.context_keys.insert("k2".to_string());
        left.since.insert("k2".to_string(), 5);
        left.accounts.insert("111122223333".to_string());
        assert_eq!(stale(conn).unwrap(), left);
    }
}
