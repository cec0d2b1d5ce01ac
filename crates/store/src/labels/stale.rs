//! Persisting what ingested objects left to relabel ([`Invalidation`], whose rules are in the
//! `grants` crate): written with their events, read by a refresh.

use crate::db::{Connection, params};
use crate::db::{FromSql, ToSql, ValueRef};
use granttrail_grants::Invalidation;

use crate::Result;

/// What a `stale_labels` row names (its `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StaleKind {
    /// A key that gained calls.
    Key,
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
    const ALL: [StaleKind; 5] =
        [StaleKind::Key, StaleKind::KeyContext, StaleKind::Account, StaleKind::All, StaleKind::Keyless];

    fn as_str(self) -> &'static str {
        match self {
            StaleKind::Key => "key",
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

/// Remembers what must be relabelled, inside the caller's transaction.
pub(crate) fn mark_stale(conn: &Connection, dirty: &Invalidation) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT INTO stale_labels (kind, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
    for key in &dirty.keys {
        insert.execute(params![StaleKind::Key, key])?;
    }
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
            StaleKind::Key => {
                dirty.keys.insert(value);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn what_is_marked_stale_is_read_back_and_a_corrupt_kind_is_an_error() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        let mut marked = Invalidation { everything: true, keyless: true, ..Invalidation::default() };
        marked.keys.insert("k1".to_string());
        marked.context_keys.insert("k2".to_string());
        marked.accounts.insert("111122223333".to_string());
        marked.since.insert("k3".to_string(), 42);
        mark_stale(conn, &marked).unwrap();
        assert_eq!(stale(conn).unwrap(), marked);

        // Written around the table's CHECK, as a damaged or hand-edited file could be.
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO stale_labels (kind, value) VALUES ('keys', 'k4');",
        )
        .unwrap();
        let error = stale(conn).unwrap_err().to_string();
        assert!(error.contains("\"keys\""), "{error}");
    }
}
