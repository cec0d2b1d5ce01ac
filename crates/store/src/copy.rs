//! `granttrail copy`: every row of one database into another, empty one, on either engine (a
//! SQLite file into PostgreSQL when an organisation outgrows a laptop, or PostgreSQL into a
//! file an investigator takes away). The two schemas are one (same tables, columns and codes),
//! so rows are copied as they are, ids included, and the copy answers every question exactly
//! as the original does.

use crate::db::{
    Connection, TransactionBehavior, Value, params_from_iter, rows_in_next_statement, value_rows,
};
use crate::{Result, Store, StoreError};

/// Every table, parents before the tables that refer to them, with the columns that order it.
const TABLES: &[(&str, &[&str])] = &[
    ("objects", &["id"]),
    ("rejected_objects", &["id"]),
    ("texts", &["id"]),
    ("record_dictionaries", &["id"]),
    ("record_blocks", &["id"]),
    ("event_rows", &["id"]),
    ("event_copies", &["event_rowid", "object_id"]),
    ("event_id_collisions", &["event_id"]),
    ("grant_rows", &["key", "grant_ref"]),
    ("call_labels", &["event", "side"]),
    ("grant_list_members", &["grant_ref", "list"]),
    ("observations", &["key", "behaviour_group", "kind", "event_time", "event_id"]),
    ("imported_key_policies", &["id"]),
    ("imported_iam", &["id"]),
    ("imported_grant_lists", &["id"]),
    ("imported_key_last_usage", &["id"]),
    ("stale_labels", &["kind", "value"]),
    ("stale_since", &["key_arn"]),
    ("new_calls", &["key_arn", "object_id"]),
    ("settings", &["id"]),
    ("published_findings", &["finding_id"]),
    ("verified_log_files", &["file_name"]),
    ("missing_log_files", &["file_name"]),
    ("verification_summaries", &["account", "region"]),
];

/// Tables whose `id` PostgreSQL numbers itself: after a copy, numbering resumes past the ids
/// copied in.
const NUMBERED: &[&str] = &[
    "objects",
    "rejected_objects",
    "texts",
    "record_blocks",
    "event_rows",
    "imported_key_policies",
    "imported_iam",
    "imported_grant_lists",
    "imported_key_last_usage",
];

/// Rows read from the source at a time (a PostgreSQL source sends a whole result at once).
const PAGE: i64 = 5_000;

/// The most rows one statement inserts.
const ROWS_PER_INSERT: usize = 128;

/// How many rows of each table were copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

impl Store {
    /// Copies every row of this database into `target`, which must hold no events, objects or
    /// imports yet, in one transaction of the target's (all or nothing) and one consistent read
    /// of this one's. `progress` hears each table's name and the rows copied so far.
    pub fn copy_into(&mut self, target: &mut Store, progress: &mut dyn FnMut(&str, u64)) -> Result<Copied> {
        for table in
            ["objects", "event_rows", "imported_key_policies", "imported_iam", "imported_grant_lists"]
        {
            let n: i64 = target.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            if n > 0 {
                return Err(StoreError::Invalid(format!(
                    "the target already holds {n} row(s) of {table}: copy into a new, empty database"
                )));
            }
        }
        // One snapshot of the source for the whole copy, while its writers go on.
        let source = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        if source.engine() == crate::db::Engine::Postgres {
            source.execute_batch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        let to = target.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (table, _) in TABLES.iter().rev() {
            to.execute(&format!("DELETE FROM {table}"), [])?;
        }
        let mut copied = Copied::default();
        for &(table, keys) in TABLES {
            let n = copy_table(&source, &to, table, keys, progress)?;
            copied.tables.push((table, n));
        }
        if to.engine() == crate::db::Engine::Postgres {
            for table in NUMBERED {
                to.query_row(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
                    ),
                    [],
                    |_| Ok(()),
                )?;
            }
        }
        to.commit()?;
        drop(source);
        target.settings = crate::stored_settings(&target.conn)?;
        Ok(copied)
    }
}

/// Copies `table` a page at a time, in the order of `keys`.
fn copy_table(
    from: &Connection,
    to: &Connection,
    table: &str,
    keys: &[&str],
    progress: &mut dyn FnMut(&str, u64),
) -> Result<u64> {
    let order = keys.join(", ");
    let first = format!("SELECT * FROM {table} ORDER BY {order} LIMIT {PAGE}");
    let after = if keys.len() == 1 {
        format!("SELECT * FROM {table} WHERE {order} > ?1 ORDER BY {order} LIMIT {PAGE}")
    } else {
        let marks: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
        format!(
            "SELECT * FROM {table} WHERE ({order}) > ({}) ORDER BY {order} LIMIT {PAGE}",
            marks.join(", ")
        )
    };
    let mut insert: Option<String> = None;
    let mut last: Option<Vec<Value>> = None;
    let mut total = 0u64;
    loop {
        let mut read = match &last {
            None => from.prepare(&first)?,
            Some(_) => from.prepare_cached(&after)?,
        };
        let columns = read.column_names();
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| {
                columns.iter().position(|c| c == k).ok_or_else(|| {
                    StoreError::Corrupt(format!("table {table} has no column {k} to copy it in order by"))
                })
            })
            .collect::<Result<_>>()?;
        let insert = insert.get_or_insert_with(|| format!("INSERT INTO {table} ({})", columns.join(", ")));
        let width = columns.len();
        let page: Vec<Vec<Value>> = read
            .query_map(params_from_iter(last.iter().flatten()), |r| {
                (0..width).map(|i| r.get::<_, Value>(i)).collect::<crate::db::Result<Vec<Value>>>()
            })?
            .collect::<crate::db::Result<_>>()?;
        // Many rows a statement: one round trip to PostgreSQL for each, not for every row.
        let mut rest = page.as_slice();
        while !rest.is_empty() {
            let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), ROWS_PER_INSERT));
            let sql = format!("{insert} VALUES {}", value_rows(now.len(), width));
            to.prepare_cached(&sql)?
                .execute(params_from_iter(now.iter().flatten()))
                .map_err(|e| StoreError::Invalid(format!("copying table {table}: {e}")))?;
            rest = later;
        }
        let in_page = page.len() as u64;
        // The next page starts after the key of this one's last row.
        if let Some(row) = page.last() {
            last = Some(positions.iter().map(|&p| row[p].clone()).collect());
        }
        total += in_page;
        progress(table, total);
        if in_page < PAGE as u64 {
            return Ok(total);
        }
    }
}
