//! Texts that many rows repeat, stored once in `texts` and referred to by id.
//!
//! A key ARN, a principal, a grant id, the JSON of a label's reasons: each is written in
//! thousands of label rows and their indexes. Stored once, a row refers to it in a byte or
//! two. Texts are never deleted, so an id, once given, means the same text for good.
//!
//! Texts (and eventIDs) are found through an index on a 32-bit hash of the text, not on the
//! text: an index on the text would store every text a second time. The hash is part of the
//! file format ([`hash`]); SQL reaches it as `granttrail_hash(text)`, which every connection
//! granttrail opens registers ([`register_hash`]).

use foldhash::HashMap;
use std::collections::BTreeSet;

use crate::db::{
    Connection, Engine, Named, OptionalExtension, ToSql, params_from_iter, rows_in_next_statement,
    typed_rows, value_rows,
};
use rusqlite::functions::FunctionFlags;

use crate::{Result, StoreError};

/// Texts a [`TextReader`] remembers before it starts again: bounds memory when a listing
/// meets many principals.
const CACHE_LIMIT: usize = 1 << 16;

/// The hash `texts.hash` and `event_rows.event_hash` store: FNV-1a (64 bits) of the UTF-8
/// bytes, folded to 32 bits. Part of the file format: never change it.
pub(crate) fn hash(text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from((h ^ (h >> 32)) as u32)
}

/// Registers [`hash`] as the SQL function `granttrail_hash(text)`, for filters and migrations.
pub(crate) fn register_hash(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "granttrail_hash",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| Ok(ctx.get_raw(0).as_str_or_null()?.map(hash)),
    )
}

/// The id of `text`, added if it is new. The connection remembers it for later transactions.
/// Beside other writers a new text is committed at once ([`Connection::apart`]): texts are
/// never deleted, and another writer waits for it only that long.
pub(crate) fn id(conn: &Connection, text: &str) -> Result<i64> {
    if let Some(id) = conn.remembered(text) {
        return Ok(id);
    }
    let id = conn.apart(|c| -> Result<i64> {
        c.lock(Named::Text, [text])?;
        match find(c, text)? {
            Some(id) => Ok(id),
            None => c
                .insert(
                    "INSERT INTO texts (hash, text) VALUES (?1, ?2)",
                    crate::db::params![hash(text), text],
                )?
                .ok_or_else(|| StoreError::Corrupt(format!("the text {text:?} was not added"))),
        }
    })?;
    conn.remember(text, id);
    Ok(id)
}

/// Makes sure every one of `texts` is stored, and has the connection remember their ids, in a
/// few statements for many texts: [`id`] then finds each without asking the database. Only
/// where batches pay: elsewhere [`id`] looks each up as it comes.
pub(crate) fn store_all<'a>(conn: &Connection, texts: impl IntoIterator<Item = &'a str>) -> Result<()> {
    if conn.batches_pay() { store_together(conn, texts) } else { Ok(()) }
}

/// [`store_all`] on any engine.
fn store_together<'a>(conn: &Connection, texts: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let wanted: BTreeSet<&str> = texts.into_iter().filter(|t| conn.remembered(t).is_none()).collect();
    let wanted: Vec<&str> = wanted.into_iter().collect();
    for chunk in wanted.chunks(HASHES_PER_LOOKUP) {
        for (text, id) in conn.apart(|c| stored_or_added(c, chunk))? {
            conn.remember(&text, id);
        }
    }
    Ok(())
}

/// The ids of `chunk`'s texts (at most [`HASHES_PER_LOOKUP`]), those not stored added.
fn stored_or_added(conn: &Connection, chunk: &[&str]) -> Result<Vec<(String, i64)>> {
    // Beside other writers, a text is looked up and added by one at a time.
    conn.lock(Named::Text, chunk.iter().copied())?;
    let mut ids = Vec::with_capacity(chunk.len());
    let mut stmt = conn.prepare_for_these_parameters(&rows_by_hash(conn, "id, text", "texts", "hash"))?;
    let mut rows = stmt.query(params_from_iter(hash_list(chunk)))?;
    while let Some(r) = rows.next()? {
        let text: String = r.get(1)?;
        if chunk.contains(&text.as_str()) {
            ids.push((text, r.get(0)?));
        }
    }
    let found: BTreeSet<&str> = ids.iter().map(|(t, _)| t.as_str()).collect();
    let missing: Vec<&str> = chunk.iter().copied().filter(|t| !found.contains(t)).collect();
    let mut rest = missing.as_slice();
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), HASHES_PER_LOOKUP));
        let sql =
            format!("INSERT INTO texts (hash, text) VALUES {} RETURNING id, text", value_rows(now.len(), 2));
        let values: Vec<(i64, &str)> = now.iter().map(|t| (hash(t), *t)).collect();
        let params = values.iter().flat_map(|(h, t)| -> [&dyn ToSql; 2] { [h, t] });
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            ids.push((r.get(1)?, r.get(0)?));
        }
        rest = later;
    }
    Ok(ids)
}

/// Hashes looked up in one statement ([`HASH_LIST`]): one round trip to PostgreSQL per this
/// many texts or eventIDs rather than per one.
pub(crate) const HASHES_PER_LOOKUP: usize = 128;

/// The parameters of an `IN` list of [`HASHES_PER_LOOKUP`] hashes, bound by [`hash_list`].
pub(crate) const HASH_LIST: &str = "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
    ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, \
    ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48, ?49, ?50, ?51, ?52, ?53, ?54, ?55, ?56, ?57, ?58, ?59, ?60, ?61, ?62, \
    ?63, ?64, ?65, ?66, ?67, ?68, ?69, ?70, ?71, ?72, ?73, ?74, ?75, ?76, ?77, ?78, ?79, ?80, ?81, ?82, ?83, ?84, \
    ?85, ?86, ?87, ?88, ?89, ?90, ?91, ?92, ?93, ?94, ?95, ?96, ?97, ?98, ?99, ?100, ?101, ?102, ?103, ?104, ?105, \
    ?106, ?107, ?108, ?109, ?110, ?111, ?112, ?113, ?114, ?115, ?116, ?117, ?118, ?119, ?120, ?121, ?122, ?123, \
    ?124, ?125, ?126, ?127, ?128";

/// A query of `columns` of the rows of `table` whose `column` is one of the hashes of
/// [`hash_list`], each found through the index on `column`. PostgreSQL plans an `IN` list by
/// the table's statistics, and a table filled since the server last analysed it has none: it
/// then read the whole table for every list (seen while ingesting into a new database), where
/// a probe per distinct hash is an index lookup whatever the statistics.
pub(crate) fn rows_by_hash(conn: &Connection, columns: &str, table: &str, column: &str) -> String {
    if conn.engine() == Engine::Postgres {
        format!(
            "SELECT {columns} FROM (SELECT DISTINCT hash FROM (VALUES {}) AS listed (hash)) AS wanted
             CROSS JOIN LATERAL (SELECT {columns} FROM {table} WHERE {column} = wanted.hash OFFSET 0) AS found",
            typed_rows(HASHES_PER_LOOKUP, 0, &["bigint"])
        )
    } else {
        format!("SELECT {columns} FROM {table} WHERE {column} IN ({HASH_LIST})")
    }
}

/// The hashes of `chunk` (at most [`HASHES_PER_LOOKUP`] texts) for [`HASH_LIST`]; a short
/// chunk repeats its first, so that one statement serves every chunk.
pub(crate) fn hash_list(chunk: &[&str]) -> Vec<i64> {
    (0..HASHES_PER_LOOKUP)
        .map(|i| hash(chunk.get(i).or(chunk.first()).copied().unwrap_or_default()))
        .collect()
}

/// The id of `text`, if it is stored. A filter on a text never stored matches nothing.
pub(crate) fn find(conn: &Connection, text: &str) -> Result<Option<i64>> {
    if let Some(id) = conn.remembered(text) {
        return Ok(Some(id));
    }
    Ok(conn
        .prepare_cached("SELECT id FROM texts WHERE hash = ?1 AND text = ?2")?
        .query_row(crate::db::params![hash(text), text], |r| r.get(0))
        .optional()?)
}

/// The texts ids of a stored list of them (`call_labels.grant_ids`: `[12,345]`).
pub(crate) fn id_list(json: &str) -> Result<Vec<i64>> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("call_labels.grant_ids {json:?}: {e}")))
}

/// Reads texts by id, remembering them (at most [`CACHE_LIMIT`]): a listing of calls names the
/// same grants again and again.
#[derive(Default)]
pub(crate) struct TextReader {
    read: HashMap<i64, String>,
}

impl TextReader {
    /// The texts of a stored list of ids, in its order.
    pub(crate) fn list(&mut self, conn: &Connection, json: &str) -> Result<Vec<String>> {
        id_list(json)?.into_iter().map(|id| self.text(conn, id, "a label")).collect()
    }

    /// Reads the texts of `ids` not read yet, [`HASHES_PER_LOOKUP`] to a statement, and has the
    /// connection remember their ids ([`Connection::remember`]): rows
    /// that name their texts by id are read a batch at a time, with one lookup per batch,
    /// where a lookup per column and row (the `grants` view) cost ten times the rows' reading.
    pub(crate) fn read_ahead(&mut self, conn: &Connection, ids: impl IntoIterator<Item = i64>) -> Result<()> {
        let ids: BTreeSet<i64> = ids.into_iter().collect();
        // Made room for first, so that every text of these ids is read here, not one by one
        // after.
        if self.read.len() + ids.len() > CACHE_LIMIT {
            self.read.clear();
        }
        let wanted: Vec<i64> = ids.into_iter().filter(|id| !self.read.contains_key(id)).collect();
        let sql = rows_by_hash(conn, "id, text", "texts", "id");
        for chunk in wanted.chunks(HASHES_PER_LOOKUP) {
            // A short chunk repeats its first id, so that one statement serves every chunk.
            let listed =
                (0..HASHES_PER_LOOKUP).map(|i| chunk.get(i).or(chunk.first()).copied().unwrap_or_default());
            // A probe of the primary key per id is planned alike whatever the statistics, so
            // one plan serves (re-planning this statement cost more than running it).
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(listed))?;
            while let Some(r) = rows.next()? {
                let (id, text): (i64, String) = (r.get(0)?, r.get(1)?);
                // The other way round too: a key's events name its ARN, whose id comes next.
                conn.remember(&text, id);
                self.read.insert(id, text);
            }
        }
        Ok(())
    }

    /// Remembers the text of `id`, read with a row that names it.
    pub(crate) fn remember(&mut self, id: i64, text: String) {
        if self.read.len() >= CACHE_LIMIT {
            self.read.clear();
        }
        self.read.insert(id, text);
    }

    /// The text of `id` (read ahead, or read now); `what` names the column for the error if no
    /// text has that id.
    pub(crate) fn get(&mut self, conn: &Connection, id: Option<i64>, what: &str) -> Result<Option<String>> {
        id.map(|id| self.text(conn, id, what)).transpose()
    }

    fn text(&mut self, conn: &Connection, id: i64, what: &str) -> Result<String> {
        if let Some(text) = self.read.get(&id) {
            return Ok(text.clone());
        }
        let text: String = conn
            .prepare_cached("SELECT text FROM texts WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("{what} names text {id}, which is not stored")))?;
        self.remember(id, text.clone());
        Ok(text)
    }
}

/// SQL for the id of the key ARN bound to `?1`: events are found by key id (`events.key`).
pub(crate) const KEY: &str = "(SELECT id FROM texts WHERE hash = granttrail_hash(?1) AND text = ?1)";

/// SQL for the id of the text bound to `param` (NULL when it is not stored), for filters.
pub(crate) fn id_of(param: &str) -> String {
    format!("(SELECT id FROM texts WHERE hash = granttrail_hash({param}) AND text = {param})")
}

/// The columns schema 8 copies from the version-7 `event_rows` (all but `event_hash`).
const V7_EVENT_COLUMNS: &str =
    "id, event_id, event_source, shared_event_id, event_time, event_name, event_type,
    aws_region, recipient_account_id, error_code, error_message, caller_type, caller_arn, caller_principal_id,
    caller_account_id, session_issuer_arn, invoked_by, source_ip, user_agent, key, destination_key,
    request_key_id, grant_id, grant_spec, dry_run, details, object_id";

/// Rows copied between two progress reports.
const COPY_BATCH: i64 = 1 << 16;

/// The rewrite of schema 8 (schema_8.sql): copies `event_rows` into `event_rows_8` with the
/// hash of each eventID, a batch of row ids at a time, then gives the new table the old one's
/// name, indexes and views (schema_8_events.sql).
pub(crate) fn hash_v7_event_ids(conn: &Connection, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let (total, last): (i64, Option<i64>) =
        conn.query_row("SELECT count(*), max(id) FROM event_rows", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let total = u64::try_from(total).unwrap_or(0);
    let mut copy = conn.prepare(&format!(
        "INSERT INTO event_rows_8 (event_hash, {V7_EVENT_COLUMNS})
         SELECT granttrail_hash(event_id), {V7_EVENT_COLUMNS} FROM event_rows WHERE id > ?1 AND id <= ?2"
    ))?;
    let (mut done, mut from) = (0, i64::MIN);
    while let Some(last) = last.filter(|last| from < *last) {
        let to = from.max(0).saturating_add(COPY_BATCH).min(last);
        done += copy.execute([from, to])? as u64;
        progress(done, total);
        from = to;
    }
    drop(copy);
    conn.execute_batch(include_str!("schema_8_events.sql"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_stored_once() {
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE texts (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, text TEXT NOT NULL);
             CREATE INDEX texts_by_hash ON texts (hash);",
        )
        .expect("table");
        let a = id(&conn, "arn:aws:kms:us-east-1:111122223333:key/k").expect("added");
        assert_eq!(id(&conn, "arn:aws:kms:us-east-1:111122223333:key/k").expect("found"), a);
        assert_ne!(id(&conn, "other").expect("added"), a);
        assert_eq!(find(&conn, "missing").expect("looked up"), None);
        let count: i64 = conn.query_row("SELECT count(*) FROM texts", [], |r| r.get(0)).expect("count");
        assert_eq!(count, 2);
    }

    #[test]
    fn a_rolled_back_text_is_forgotten_with_its_id() {
        let mut conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE texts (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, text TEXT NOT NULL)",
        )
        .expect("table");
        let undone = {
            let tx = conn.transaction().expect("transaction");
            id(&tx, "rolled back").expect("added")
        };
        // SQLite gives the freed id to the next row: the remembered one must not be used.
        let kept = id(&conn, "kept").expect("added");
        assert_eq!(kept, undone);
        let again = id(&conn, "rolled back").expect("added again");
        assert_ne!(again, kept);
        let text: String =
            conn.query_row("SELECT text FROM texts WHERE id = ?1", [again], |r| r.get(0)).expect("stored");
        assert_eq!(text, "rolled back");
    }

    /// Texts read by id are then found by text without a statement: a key's events name its
    /// ARN, whose id labelling asks for next.
    #[test]
    fn a_text_read_by_id_is_remembered_by_text() {
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE texts (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, text TEXT NOT NULL);
             INSERT INTO texts (id, hash, text) VALUES (7, 0, 'arn:aws:kms:us-east-1:111122223333:key/k')",
        )
        .expect("table");
        assert_eq!(conn.remembered("arn:aws:kms:us-east-1:111122223333:key/k"), None);
        let mut reader = TextReader::default();
        reader.read_ahead(&conn, [7]).expect("read");
        assert_eq!(
            reader.get(&conn, Some(7), "a test").expect("text").as_deref(),
            Some("arn:aws:kms:us-east-1:111122223333:key/k")
        );
        assert_eq!(conn.remembered("arn:aws:kms:us-east-1:111122223333:key/k"), Some(7));
    }

    /// A read ahead that fills the reader makes room first: every text of its ids is then
    /// known, those it knew before included, and none is looked up alone after.
    #[test]
    fn a_full_reader_keeps_every_text_it_reads_ahead() {
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE texts (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, text TEXT NOT NULL);
             INSERT INTO texts (id, hash, text) VALUES (1, 0, 'known'), (2, 0, 'new')",
        )
        .expect("table");
        let mut reader = TextReader::default();
        reader.read_ahead(&conn, [1]).expect("read");
        for id in 3..(CACHE_LIMIT as i64 + 2) {
            reader.remember(id, String::new());
        }
        reader.read_ahead(&conn, [1, 2]).expect("read");
        // Without the table, a text not read ahead would be an error.
        conn.execute_batch("DROP TABLE texts").expect("dropped");
        assert_eq!(reader.get(&conn, Some(1), "a test").expect("known").as_deref(), Some("known"));
        assert_eq!(reader.get(&conn, Some(2), "a test").expect("new").as_deref(), Some("new"));
    }

    #[test]
    fn the_hash_list_has_its_size() {
        assert_eq!(HASH_LIST.split(',').count(), HASHES_PER_LOOKUP);
        assert!(HASH_LIST.ends_with(&format!("?{HASHES_PER_LOOKUP}")));
        assert_eq!(hash_list(&["a"]), vec![hash("a"); HASHES_PER_LOOKUP]);
    }

    #[test]
    fn texts_stored_together_are_found_one_by_one() {
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE texts (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, text TEXT NOT NULL)",
        )
        .expect("table");
        let before = id(&conn, "stored before").expect("added");
        let many: Vec<String> = (0..300).map(|i| format!("text {i}")).collect();
        store_together(&conn, many.iter().map(String::as_str).chain(["stored before", "text 7"]))
            .expect("stored");
        let count: i64 = conn.query_row("SELECT count(*) FROM texts", [], |r| r.get(0)).expect("count");
        assert_eq!(count, 301, "each text once");
        assert_eq!(find(&conn, "stored before").expect("found"), Some(before));
        for text in &many {
            // From the connection's memory, and the same as the table says.
            assert_eq!(id(&conn, text).expect("known"), find(&conn, text).expect("found").expect("stored"));
        }
    }

    #[test]
    fn the_hash_is_the_stored_one() {
        // Stored in every database: these values must never change.
        assert_eq!(hash(""), 0x8422_2325 ^ 0xcbf2_9ce4);
        assert_eq!(hash("a"), {
            let h: u64 = (0xcbf2_9ce4_8422_2325_u64 ^ 0x61).wrapping_mul(0x0000_0100_0000_01b3);
            i64::from((h ^ (h >> 32)) as u32)
        });
        assert_ne!(hash("kms.amazonaws.com"), hash("kms.amazonaws.con"));
        let conn = Connection::open_in_memory().expect("database");
        let text = "arn:aws:kms:us-east-1:111122223333:key/k";
        let in_sql: i64 = conn.query_row("SELECT granttrail_hash(?1)", [text], |r| r.get(0)).expect("hashed");
        assert_eq!(in_sql, hash(text));
        let null: Option<i64> =
            conn.query_row("SELECT granttrail_hash(NULL)", [], |r| r.get(0)).expect("hashed");
        assert_eq!(null, None);
    }
}
