//! Read queries for the front ends.

use foldhash::{HashMap, HashMapExt};

use crate::db::{OptionalExtension, Row, ToSql, Value, params_from_iter, query_listed};
use granttrail_grants::{
    Actor, Evidence, Grant, GrantReasons, GrantSpec, GrantState, KmsEvent, Label, Reason, Side,
};

use crate::codes::{Code, Coded};
use crate::records;
use crate::texts::{self, KEY};
use crate::write::{EVENT_COLUMNS, event_from_row};
use crate::{Result, Store, StoreError};

/// Which grants to list. Every field narrows the list; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub key_arn: Option<String>,
    /// Matches the grantee principal exactly.
    pub grantee: Option<String>,
    pub state: Option<GrantState>,
    /// Grants alive at this time (seconds since the epoch): created at or before it (or
    /// created before the logs) and not ended by then.
    pub active_at: Option<i64>,
}

/// An event as stored, with the object it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: KmsEvent,
    pub object: String,
}

/// One event with the CloudTrail record behind it (`granttrail event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub stored: StoredEvent,
    /// The record exactly as delivered; `None` once `granttrail prune` dropped it.
    pub record: Option<String>,
    /// The other copies of the same call, logged in other accounts (same `sharedEventID`).
    pub copies: Vec<StoredEvent>,
    /// The other, different records that carry the same `eventID` (collisions), in storage
    /// order.
    pub collisions: Vec<StoredEvent>,
    /// The other objects the same record was delivered in again (not stored twice).
    pub delivered_again: Vec<String>,
}

/// The columns a [`Grant`] is read from ([`GrantRow`]): key and grant id as text (listings
/// order by them), the other repeated texts as their ids, which [`GrantRow::read`] looks up a
/// batch of rows at a time. `g` is `grant_rows`.
const GRANT_COLUMNS: &str = "(SELECT text FROM texts WHERE id = g.key) AS key_arn,
    (SELECT text FROM texts WHERE id = g.grant_ref) AS grant_id, g.state, g.creation_seen, g.grantee, g.retiring,
    g.operations, g.constraints, g.name, g.issuing_account, g.created_at, g.created_by, g.created_by_service,
    g.created_from_ip, g.created_event_id, g.ended_at, g.ended_by, g.ended_by_service, g.ended_from_ip,
    g.end_event_id, g.create_event_ids, g.end_event_ids, g.anomalies";

const GRANT_COLUMN_COUNT: usize = 23;

/// The texts of the ids among [`GRANT_COLUMNS`], in [`GrantRow::text_slots`]'s order.
const GRANT_ROW_TEXTS: &str = "(SELECT text FROM texts WHERE id = g.grantee),
    (SELECT text FROM texts WHERE id = g.retiring), (SELECT text FROM texts WHERE id = g.operations),
    (SELECT text FROM texts WHERE id = g.constraints), (SELECT text FROM texts WHERE id = g.issuing_account),
    (SELECT text FROM texts WHERE id = g.anomalies), (SELECT text FROM texts WHERE id = g.created_by),
    (SELECT text FROM texts WHERE id = g.created_by_service), (SELECT text FROM texts WHERE id = g.ended_by),
    (SELECT text FROM texts WHERE id = g.ended_by_service)";

/// Grant rows read between two lookups of their texts.
const GRANTS_PER_LOOKUP: usize = 256;

/// (key, grant) pairs [`grants_of`] reads in one statement where batches pay.
const PAIRS_PER_LOOKUP: usize = 128;

impl Store {
    /// Grants matching `filter`, ordered by key, creation time and grant id.
    pub fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>> {
        query_grants(self.conn(), filter)
    }

    /// The key ARNs of every grant, sorted (by byte, whatever the engine's collation).
    pub fn grant_keys(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT text FROM texts WHERE id IN (SELECT DISTINCT key FROM grant_rows)")?;
        let mut keys: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<crate::db::Result<_>>()?;
        keys.sort_unstable();
        Ok(keys)
    }

    /// [`Store::grants`] one at a time, for listings too long to hold: memory stays flat on
    /// either engine (SQLite sorts in bounded memory; PostgreSQL's rows are fetched from a
    /// cursor a thousand at a time, [`crate::db::Connection::for_each_row`]).
    pub fn for_each_grant<E: From<StoreError>>(
        &self,
        filter: &GrantFilter,
        each: impl FnMut(Grant) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let (sql, args) = grant_listing(filter);
        let mut each = each;
        let conn = self.conn();
        let mut texts = texts::TextReader::default();
        let mut batch = Vec::with_capacity(GRANTS_PER_LOOKUP);
        let mut pass_on = |batch: &mut Vec<GrantRow>| -> std::result::Result<(), E> {
            for grant in GrantRow::read(conn, std::mem::take(batch), &mut texts)? {
                each(grant)?;
            }
            Ok(())
        };
        conn.for_each_row(&sql, params_from_iter(args), |r| {
            batch.push(GrantRow::from_row(r).map_err(StoreError::from)?);
            if batch.len() == GRANTS_PER_LOOKUP { pass_on(&mut batch) } else { Ok(()) }
        })
        .map_err(StoreError::from)??;
        pass_on(&mut batch)
    }

    /// Grants whose id is `grant_id` or starts with it (a grant id can, in theory, exist on
    /// several keys).
    pub fn grants_by_id(&self, grant_id: &str) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grant_rows g WHERE grant_ref = {} ORDER BY key_arn",
            texts::id_of("?1")
        );
        let whole = read_grants(self.conn(), &sql, [grant_id], &mut texts::TextReader::default())?;
        if !whole.is_empty() {
            return Ok(whole);
        }
        // A prefix: every grant is read (a whole id, the usual case, is found by its index).
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grant_rows g JOIN texts t ON t.id = g.grant_ref
             WHERE substr(t.text, 1, length(?1)) = ?1 ORDER BY key_arn, grant_id"
        );
        read_grants(self.conn(), &sql, [grant_id], &mut texts::TextReader::default())
    }

    /// The grant `grant_id` on `key_arn`, if it is stored.
    pub fn grant(&self, key_arn: &str, grant_id: &str) -> Result<Option<Grant>> {
        grant(self.conn(), key_arn, grant_id)
    }

    /// Every stored event that names the grant (failed attempts included) and every deletion
    /// of its key, in time order.
    pub fn grant_events(&self, key_arn: &str, grant_id: &str) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, o.source FROM events e JOIN objects o ON o.id = e.object_id
             WHERE (e.grant_id = ?2 AND (e.key = {KEY} OR e.key IS NULL OR ?1 = ''))
                OR (e.key = {KEY} AND e.event_name = 'DeleteKey')
             ORDER BY e.event_time, e.event_id"
        );
        self.stored_events(&sql, &[key_arn, grant_id])
    }

    /// One stored event by its `eventID`.
    pub fn event(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, o.source FROM events e JOIN objects o ON o.id = e.object_id
             WHERE e.event_hash = granttrail_hash(?1) AND e.event_id = ?1 ORDER BY e.id"
        );
        Ok(self.stored_events(&sql, &[event_id])?.into_iter().next())
    }

    /// Each record stored with this `eventID` (more than one: a collision), with every object
    /// it was read from: the one it was stored from first, then those identical copies were
    /// delivered in again.
    pub fn event_copies(&self, event_id: &str) -> Result<Vec<(KmsEvent, Vec<String>)>> {
        let mut copies = self.conn.prepare_cached(
            "SELECT o.source FROM event_copies c JOIN objects o ON o.id = c.object_id
             WHERE c.event_rowid = ?1 ORDER BY o.id",
        )?;
        let mut out = Vec::new();
        for (row, event, object) in crate::write::stored_with_id(&self.conn, event_id)? {
            let mut objects = vec![object];
            for copy in copies.query_map([row], |r| r.get(0))? {
                objects.push(copy?);
            }
            out.push((event, objects));
        }
        Ok(out)
    }

    /// One stored event by its `eventID`, with its record and the other accounts' copies: the
    /// first stored under it ([`Store::event_records`] gives every one).
    pub fn event_record(&self, event_id: &str) -> Result<Option<EventRecord>> {
        Ok(self.event_records(event_id)?.into_iter().next())
    }

    /// Every record stored under `eventID`, in the order they were stored: more than one when
    /// different records carry the same eventID (a collision). Each comes with its record
    /// (unless pruned), the other accounts' copies of its call and the objects it was delivered
    /// in again.
    pub fn event_records(&self, event_id: &str) -> Result<Vec<EventRecord>> {
        let stored = crate::write::stored_with_id(self.conn(), event_id)?;
        let mut block = self.conn().prepare_cached(
            "SELECT b.dictionary, b.records, e.record_slot FROM event_rows e
             JOIN record_blocks b ON b.id = e.record_block WHERE e.id = ?1",
        )?;
        let mut again = self.conn().prepare_cached(
            "SELECT o.source FROM event_copies c JOIN objects o ON o.id = c.object_id
             WHERE c.event_rowid = ?1 ORDER BY o.id",
        )?;
        let everyone: Vec<StoredEvent> = stored
            .iter()
            .map(|(_, event, object)| StoredEvent { event: event.clone(), object: object.clone() })
            .collect();
        let mut out = Vec::with_capacity(stored.len());
        for (i, (row, event, object)) in stored.into_iter().enumerate() {
            let frame: Option<(i64, Vec<u8>, i64)> =
                block.query_row([row], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
            let record = frame
                .map(|(dictionary, frame, slot)| {
                    records::decompress(self.conn(), event_id, dictionary, &frame, slot)
                })
                .transpose()?;
            let copies = match &event.shared_event_id {
                Some(shared) => {
                    let sql = format!(
                        "SELECT {EVENT_COLUMNS}, o.source FROM events e JOIN objects o ON o.id = e.object_id
                         WHERE e.shared_event_id = ?1 AND e.event_id <> ?2 ORDER BY e.event_id"
                    );
                    self.stored_events(&sql, &[shared, event_id])?
                }
                None => Vec::new(),
            };
            let mut delivered_again = Vec::new();
            for source in again.query_map([row], |r| r.get(0))? {
                delivered_again.push(source?);
            }
            let collisions = everyone
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, other)| other.clone())
                .collect();
            out.push(EventRecord {
                stored: StoredEvent { event, object },
                record,
                copies,
                collisions,
                delivered_again,
            });
        }
        Ok(out)
    }

    fn stored_events(&self, sql: &str, args: &[&str]) -> Result<Vec<StoredEvent>> {
        // Cached: a finding's evidence looks its events up one at a time, and each statement
        // on the events view takes longer to parse than to run.
        let mut stmt = self.conn().prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            let object: String = r.get(25)?;
            Ok(event_from_row(r)?.map(|event| StoredEvent { event, object }))
        })?;
        rows.map(|r| r?).collect()
    }

    /// Grants on the same key that include `CreateGrant`, were active when `grant` was created,
    /// and whose grantee is the principal that created it: the grants it may have been
    /// created through.
    pub fn parent_candidates(&self, grant: &Grant) -> Result<Vec<String>> {
        let (Some(created_at), Some(creator)) = (grant.created_at, &grant.created_by) else {
            return Ok(Vec::new());
        };
        let Some(create) = self.event(&creator.event_id)? else {
            return Ok(Vec::new());
        };
        let filter = GrantFilter {
            key_arn: Some(grant.key_arn.clone()),
            active_at: Some(created_at),
            ..Default::default()
        };
        Ok(self
            .grants(&filter)?
            .into_iter()
            .filter(|p| p.grant_id != grant.grant_id)
            .filter(|p| p.spec.operations.as_ref().is_some_and(|ops| ops.iter().any(|o| o == "CreateGrant")))
            .filter(|p| {
                p.spec
                    .grantee_principal
                    .as_deref()
                    .is_some_and(|g| granttrail_grants::grantee_is(g, &create.event.caller))
            })
            .map(|p| p.grant_id)
            .collect())
    }

    /// Row counts of the main tables: (objects, events, grants).
    pub fn totals(&self) -> Result<(u64, u64, u64)> {
        let count = |table: &str| -> Result<u64> {
            let n: i64 = self.conn().query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(n as u64)
        };
        Ok((count("objects")?, count("events")?, count("grants")?))
    }
}

/// Grants matching `filter`, ordered by key, creation time and grant id.
pub(crate) fn query_grants(conn: &crate::db::Connection, filter: &GrantFilter) -> Result<Vec<Grant>> {
    let (sql, args) = grant_listing(filter);
    read_grants(conn, &sql, params_from_iter(args), &mut texts::TextReader::default())
}

/// The grants the query `sql` (of [`GRANT_COLUMNS`]) finds, their texts read through `texts`.
fn read_grants(
    conn: &crate::db::Connection,
    sql: &str,
    params: impl crate::db::Params,
    texts: &mut texts::TextReader,
) -> Result<Vec<Grant>> {
    let rows: Vec<GrantRow> =
        conn.prepare_cached(sql)?.query_map(params, GrantRow::from_row)?.collect::<crate::db::Result<_>>()?;
    GrantRow::read(conn, rows, texts)
}

/// The query of the grants matching `filter`, ordered by key, creation time (grants created
/// before the logs first) and grant id, with its arguments.
fn grant_listing(filter: &GrantFilter) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(key) = &filter.key_arn {
        args.push(Value::Text(key.clone()));
        clauses.push(format!("key = {}", texts::id_of(&format!("?{}", args.len()))));
    }
    if let Some(grantee) = &filter.grantee {
        args.push(Value::Text(grantee.clone()));
        clauses.push(format!("grantee = {}", texts::id_of(&format!("?{}", args.len()))));
    }
    if let Some(state) = filter.state {
        args.push(Value::Text(state.as_str().to_string()));
        clauses.push(format!("state = ?{}", args.len()));
    }
    let select = |clauses: &[String]| {
        let filter_sql =
            if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        format!("SELECT {GRANT_COLUMNS} FROM grant_rows g {filter_sql}")
    };
    let sql = match filter.active_at {
        // Two halves, so the creation-time index serves the first (an OR of both would scan
        // the table): grants created by `t`, and grants created before the logs.
        Some(t) => {
            args.push(Value::Integer(t));
            let n = args.len();
            let alive = format!("(ended_at IS NULL OR ended_at > ?{n})");
            let created = [clauses.clone(), vec![format!("created_at <= ?{n}"), alive.clone()]].concat();
            let before_logs = [clauses, vec!["created_at IS NULL".to_string(), alive]].concat();
            format!("{} UNION ALL {}", select(&created), select(&before_logs))
        }
        None => select(&clauses),
    };
    // Grants created before the logs lead each key.
    let sql = format!("SELECT * FROM ({sql}) AS g ORDER BY key_arn, created_at NULLS FIRST, grant_id");
    (sql, args)
}

/// The grants on the key whose text id is `key` that had not ended before `t` (or never
/// ended).
pub(crate) fn grants_not_ended_before(
    conn: &crate::db::Connection,
    texts: &mut texts::TextReader,
    key: i64,
    t: i64,
) -> Result<Vec<Grant>> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grant_rows g WHERE key = ?1 AND ended_at IS NULL
         UNION ALL SELECT {GRANT_COLUMNS} FROM grant_rows g WHERE key = ?1 AND ended_at >= ?2"
    );
    read_grants(conn, &sql, crate::db::params![key, t], texts)
}

/// One grant as stored, if it is, in one statement: its texts come with its row (a lookup
/// of them apart would be a second round trip for every grant an object changes).
pub(crate) fn grant(conn: &crate::db::Connection, key_arn: &str, grant_id: &str) -> Result<Option<Grant>> {
    // The texts' hashes are computed here: on PostgreSQL, granttrail_hash in the statement
    // made it six times slower, and an object reads each grant it changes twice.
    let sql = format!(
        "SELECT {GRANT_COLUMNS}, {GRANT_ROW_TEXTS} FROM grant_rows g
         WHERE key = (SELECT id FROM texts WHERE hash = ?3 AND text = ?1)
           AND grant_ref = (SELECT id FROM texts WHERE hash = ?4 AND text = ?2)"
    );
    let mut texts = texts::TextReader::default();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows =
        stmt.query(crate::db::params![key_arn, grant_id, texts::hash(key_arn), texts::hash(grant_id)])?;
    let Some(r) = rows.next()? else { return Ok(None) };
    let row = GrantRow::with_texts(&r, &mut texts)?;
    Ok(GrantRow::read(conn, vec![row], &mut texts)?.pop())
}

/// The grants stored for `pairs` (key ARN, grant id), by pair, as [`grant`] reads each: where
/// batches pay, 128 pairs a statement, each found through the primary key.
pub(crate) fn grants_of<'p>(
    conn: &crate::db::Connection,
    pairs: impl IntoIterator<Item = &'p (String, String)>,
) -> Result<HashMap<(String, String), Grant>> {
    let pairs: Vec<&(String, String)> = pairs.into_iter().collect();
    let mut found = HashMap::new();
    if !conn.batches_pay() {
        for (key_arn, grant_id) in pairs {
            if let Some(g) = grant(conn, key_arn, grant_id)? {
                found.insert((key_arn.clone(), grant_id.clone()), g);
            }
        }
        return Ok(found);
    }
    let hashes: Vec<[i64; 2]> = pairs.iter().map(|(k, g)| [texts::hash(k), texts::hash(g)]).collect();
    let listed: Vec<[&dyn ToSql; 4]> = pairs
        .iter()
        .zip(&hashes)
        .map(|((key_arn, grant_id), [key_hash, grant_hash])| -> [&dyn ToSql; 4] {
            [key_arn, key_hash, grant_id, grant_hash]
        })
        .collect();
    // `OFFSET 0` keeps each a lookup of the primary key, whatever the planner's statistics.
    let query = |list: &str| {
        format!(
            "SELECT found.* FROM (VALUES {list}) AS listed (key_text, key_hash, grant_text, grant_hash)
             CROSS JOIN LATERAL (SELECT {GRANT_COLUMNS}, {GRANT_ROW_TEXTS} FROM grant_rows g
                 WHERE key = (SELECT id FROM texts WHERE hash = listed.key_hash AND text = listed.key_text)
                   AND grant_ref = (SELECT id FROM texts WHERE hash = listed.grant_hash AND text = listed.grant_text)
                 OFFSET 0) AS found"
        )
    };
    let (mut texts, mut rows) = (texts::TextReader::default(), Vec::new());
    let types = &["text", "bigint", "text", "bigint"];
    query_listed(conn, query, types, &[], &listed, PAIRS_PER_LOOKUP, |r| -> Result<()> {
        rows.push(GrantRow::with_texts(r, &mut texts)?);
        Ok(())
    })?;
    for g in GrantRow::read(conn, rows, &mut texts)? {
        found.insert((g.key_arn.clone(), g.grant_id.clone()), g);
    }
    Ok(found)
}

fn json_column<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
}

/// A row of [`GRANT_COLUMNS`], its repeated texts still ids.
struct GrantRow {
    key_arn: String,
    grant_id: String,
    state: String,
    creation_seen: bool,
    /// grantee, retiring, operations, constraints, issuing_account, anomalies.
    spec_ids: [Option<i64>; 6],
    name: Option<String>,
    created_at: Option<i64>,
    ended_at: Option<i64>,
    /// Principal, service, source IP and event id of the creation and of the end.
    created_by: (Option<i64>, Option<i64>, Option<String>, Option<String>),
    ended_by: (Option<i64>, Option<i64>, Option<String>, Option<String>),
    create_event_ids: String,
    end_event_ids: String,
}

impl GrantRow {
    /// A row of [`GRANT_COLUMNS`] followed by [`GRANT_ROW_TEXTS`], whose texts `texts` then
    /// remembers.
    fn with_texts(r: &Row<'_>, texts: &mut texts::TextReader) -> Result<GrantRow> {
        let row = GrantRow::from_row(r)?;
        for (i, id) in row.text_slots().into_iter().enumerate() {
            if let Some(id) = id {
                texts.remember(id, r.get(GRANT_COLUMN_COUNT + i)?);
            }
        }
        Ok(row)
    }

    fn from_row(r: &Row<'_>) -> crate::db::Result<GrantRow> {
        let actor = |at: usize| -> crate::db::Result<_> {
            Ok((r.get(at)?, r.get(at + 1)?, r.get(at + 2)?, r.get(at + 3)?))
        };
        Ok(GrantRow {
            key_arn: r.get(0)?,
            grant_id: r.get(1)?,
            state: r.get(2)?,
            creation_seen: r.get(3)?,
            spec_ids: [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(9)?, r.get(22)?],
            name: r.get(8)?,
            created_at: r.get(10)?,
            created_by: actor(11)?,
            ended_at: r.get(15)?,
            ended_by: actor(16)?,
            create_event_ids: r.get(20)?,
            end_event_ids: r.get(21)?,
        })
    }

    /// The ids of texts the row names, in the order of [`GRANT_ROW_TEXTS`].
    fn text_slots(&self) -> [Option<i64>; 10] {
        let [grantee, retiring, operations, constraints, issuing_account, anomalies] = self.spec_ids;
        let (created_by, created_by_service) = (self.created_by.0, self.created_by.1);
        let (ended_by, ended_by_service) = (self.ended_by.0, self.ended_by.1);
        [
            grantee,
            retiring,
            operations,
            constraints,
            issuing_account,
            anomalies,
            created_by,
            created_by_service,
            ended_by,
            ended_by_service,
        ]
    }

    fn text_ids(&self) -> impl Iterator<Item = i64> {
        self.text_slots().into_iter().flatten()
    }

    /// The grants of `rows`, their texts looked up together.
    fn read(
        conn: &crate::db::Connection,
        rows: Vec<GrantRow>,
        texts: &mut texts::TextReader,
    ) -> Result<Vec<Grant>> {
        texts.read_ahead(conn, rows.iter().flat_map(GrantRow::text_ids))?;
        rows.into_iter().map(|row| row.into_grant(conn, texts)).collect()
    }

    fn into_grant(self, conn: &crate::db::Connection, texts: &mut texts::TextReader) -> Result<Grant> {
        let mut text = |id: Option<i64>, what: &str| texts.get(conn, id, what);
        let [grantee, retiring, operations, constraints, issuing_account, anomalies] = self.spec_ids;
        let mut actor = |(principal, service, source_ip, event_id): (
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        ),
                         what: &str|
         -> Result<Option<Actor>> {
            Ok(match event_id {
                Some(event_id) => Some(Actor {
                    principal: text(principal, what)?,
                    service: text(service, what)?,
                    source_ip,
                    event_id,
                }),
                None => None,
            })
        };
        let created_by = actor(self.created_by, "grant_rows.created_by")?;
        let ended_by = actor(self.ended_by, "grant_rows.ended_by")?;
        let state = self.state;
        Ok(Grant {
            key_arn: self.key_arn,
            grant_id: self.grant_id,
            state: GrantState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("grant state {state:?}")))?,
            creation_seen: self.creation_seen,
            spec: GrantSpec {
                grantee_principal: text(grantee, "grant_rows.grantee")?,
                retiring_principal: text(retiring, "grant_rows.retiring")?,
                operations: json_column(text(operations, "grant_rows.operations")?)?,
                constraints: json_column(text(constraints, "grant_rows.constraints")?)?,
                name: self.name,
            },
            issuing_account: text(issuing_account, "grant_rows.issuing_account")?,
            created_at: self.created_at,
            created_by,
            ended_at: self.ended_at,
            ended_by,
            create_event_ids: json_column(Some(self.create_event_ids))?.unwrap_or_default(),
            end_event_ids: json_column(Some(self.end_event_ids))?.unwrap_or_default(),
            anomalies: json_column(text(anomalies, "grant_rows.anomalies")?)?.unwrap_or_default(),
        })
    }
}

/// The texts of a call label row `c`, for [`StoredCall`]: key, operation, principal, label
/// and evidence codes, and the JSON of grant ids (list 0 names none), reasons and flags.
const CALL_TEXTS: &str =
    "k.text, o.text, p.text, c.label, c.evidence, CASE c.grant_ids WHEN 0 THEN '[]' ELSE g.text END, r.text,
     f.text, c.grant_reasons";
const CALL_TEXT_JOINS: &str = "JOIN texts k ON k.id = c.key LEFT JOIN texts o ON o.id = c.operation
     LEFT JOIN texts p ON p.id = c.principal LEFT JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons
     JOIN texts f ON f.id = c.flags";

/// The sentences a listing of calls renders from grants (`covered by grant G (grantee P,
/// created T)`), each grant read once for each way of naming it. At most
/// [`GrantReader::REMEMBERED`] are kept at a time, a few hundred bytes each: listed in time
/// order, the calls of every key take turns, so the grants all keys' calls name are needed
/// together (27,323 on the 300k-event database, which a memory of 4,096 grants read 458,779
/// times).
#[derive(Default)]
struct GrantReader {
    rendered: HashMap<(String, String, GrantReasons), Reason>,
}

impl GrantReader {
    const REMEMBERED: usize = 1 << 15;

    fn reason(
        &mut self,
        conn: &crate::db::Connection,
        key_arn: &str,
        grant_id: &str,
        way: GrantReasons,
    ) -> Result<Reason> {
        let at = (key_arn.to_string(), grant_id.to_string(), way);
        if let Some(reason) = self.rendered.get(&at) {
            return Ok(reason.clone());
        }
        if self.rendered.len() >= Self::REMEMBERED {
            self.rendered.clear();
        }
        let grant = grant(conn, key_arn, grant_id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("a label names grant {grant_id} on {key_arn}, which is not stored"))
        })?;
        let reason = way.reason(&grant);
        self.rendered.insert(at, reason.clone());
        Ok(reason)
    }
}

/// Which labelled calls to list. Every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Any of these labels (empty: all).
    pub labels: Vec<Label>,
    pub key_arn: Option<String>,
    /// Matches the caller's principal exactly.
    pub principal: Option<String>,
    pub grant_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// One labelled call side, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredCall {
    pub event_id: String,
    pub shared_event_id: Option<String>,
    pub event_time: i64,
    pub event_name: String,
    pub side: Side,
    pub key_arn: String,
    pub operation: Option<String>,
    pub principal: Option<String>,
    pub label: Label,
    pub evidence: Evidence,
    pub grant_ids: Vec<String>,
    pub reasons: Vec<granttrail_grants::Reason>,
    pub flags: Vec<String>,
}

impl Store {
    /// Labelled call sides matching `filter`, in time order.
    pub fn calls(&self, filter: &CallFilter) -> Result<Vec<StoredCall>> {
        let mut calls = Vec::new();
        self.for_each_call(filter, |c| {
            calls.push(c);
            Ok::<_, StoreError>(())
        })?;
        Ok(calls)
    }

    /// [`Store::calls`] one at a time, for listings too long to hold (memory stays flat, as for
    /// [`Store::for_each_grant`]).
    pub fn for_each_call<E: From<StoreError>>(
        &self,
        filter: &CallFilter,
        mut each: impl FnMut(StoredCall) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut clauses = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |v: Value| {
            args.push(v);
            format!("?{}", args.len())
        };
        if !filter.labels.is_empty() {
            let list: Vec<String> = filter.labels.iter().map(|l| arg(Value::Integer(l.code()))).collect();
            clauses.push(format!("c.label IN ({})", list.join(", ")));
        }
        if let Some(key) = &filter.key_arn {
            clauses.push(format!("c.key = {}", texts::id_of(&arg(Value::Text(key.clone())))));
        }
        if let Some(p) = &filter.principal {
            clauses.push(format!("c.principal = {}", texts::id_of(&arg(Value::Text(p.clone())))));
        }
        if let Some(g) = &filter.grant_id {
            let g = texts::id_of(&arg(Value::Text(g.clone())));
            // `<> 0` lets the partial index of the calls naming a list serve the lookup.
            clauses.push(format!(
                "c.grant_ids <> 0 AND c.grant_ids IN (SELECT list FROM grant_list_members WHERE grant_ref = {g})"
            ));
        }
        if let Some(t) = filter.since {
            clauses.push(format!("c.event_time >= {}", arg(Value::Integer(t))));
        }
        if let Some(t) = filter.until {
            clauses.push(format!("c.event_time < {}", arg(Value::Integer(t))));
        }
        let where_sql =
            if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        // Without statistics SQLite prefers the key index for `--label X --key K` (it also gives
        // the time order) and then reads every call on the key; the label index finds the few
        // calls with those labels on that key directly. (PostgreSQL's planner has statistics.)
        let sqlite = self.conn().engine() == crate::db::Engine::Sqlite;
        let index = if filter.labels.is_empty() || !sqlite { "" } else { "INDEXED BY call_labels_by_label" };
        let sql = format!(
            "SELECT e.event_id, e.shared_event_id, c.event_time, e.event_name, c.side, {CALL_TEXTS}
             FROM call_labels c {index} JOIN event_rows e ON e.id = c.event {CALL_TEXT_JOINS}
             {where_sql} ORDER BY c.event_time, e.event_id, c.side, k.text, e.event_name"
        );
        let mut grants = GrantReader::default();
        let mut grant_lists = texts::TextReader::default();
        self.conn()
            .for_each_row(&sql, params_from_iter(args), |r| -> std::result::Result<(), E> {
                let mut call = (|| -> Result<StoredCall> {
                    let grant_ids: Option<String> = r.get(10)?;
                    let grant_ids = grant_ids.ok_or_else(|| {
                        StoreError::Corrupt("a label's grant list names no stored text".into())
                    })?;
                    let (reasons, flags): (String, String) = (r.get(11)?, r.get(12)?);
                    Ok(StoredCall {
                        event_id: r.get(0)?,
                        shared_event_id: r.get(1)?,
                        event_time: r.get(2)?,
                        event_name: r.get(3)?,
                        side: r.get::<_, Code<Side>>(4)?.0,
                        key_arn: r.get(5)?,
                        operation: r.get(6)?,
                        principal: r.get(7)?,
                        label: r.get::<_, Code<Label>>(8)?.0,
                        evidence: r.get::<_, Code<Evidence>>(9)?.0,
                        grant_ids: grant_lists.list(self.conn(), &grant_ids)?,
                        reasons: json_column(Some(reasons))?.unwrap_or_default(),
                        flags: json_column(Some(flags))?.unwrap_or_default(),
                    })
                })()?;
                let way: Option<Code<GrantReasons>> = r.get(13).map_err(StoreError::from)?;
                if let Some(Code(way)) = way {
                    let mut reasons = Vec::with_capacity(call.grant_ids.len() + call.reasons.len());
                    for id in &call.grant_ids {
                        reasons.push(grants.reason(self.conn(), &call.key_arn, id, way)?);
                    }
                    reasons.append(&mut call.reasons);
                    call.reasons = reasons;
                }
                each(call)
            })
            .map_err(StoreError::from)?
    }

    /// How many call sides carry each of these labels.
    pub fn count_labels(&self, labels: &[Label]) -> Result<u64> {
        let codes: Vec<i64> = labels.iter().map(|l| l.code()).collect();
        let placeholders: Vec<String> = (1..=codes.len()).map(|i| format!("?{i}")).collect();
        let sql = format!("SELECT count(*) FROM call_labels WHERE label IN ({})", placeholders.join(", "));
        let n: i64 = self.conn().query_row(&sql, params_from_iter(codes), |r| r.get(0))?;
        Ok(n as u64)
    }
}

impl Store {
    /// Every labelled call side with each grant it names (on `key` only, when given).
    pub fn covered_calls(&self, key: Option<&str>) -> Result<Vec<granttrail_grants::findings::CoveredCall>> {
        // On one key: from the lists naming the key's grants (a plan from the key's labels
        // would search the lists for each of them).
        let filter = match key {
            Some(_) => format!(
                "m.grant_ref IN (SELECT grant_ref FROM grant_rows WHERE key = {KEY}) AND +c.key = {KEY}"
            ),
            None => "CAST(?1 AS TEXT) IS NULL".to_string(),
        };
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT k.text, g.text, o.text, c.label, p.text, e.event_id, f.text
             FROM grant_list_members m JOIN call_labels c ON c.grant_ids = m.list
             JOIN texts g ON g.id = m.grant_ref JOIN event_rows e ON e.id = c.event JOIN texts k ON k.id = c.key
             LEFT JOIN texts o ON o.id = c.operation LEFT JOIN texts p ON p.id = c.principal
             JOIN texts f ON f.id = c.flags
             WHERE c.grant_ids <> 0 AND {filter}
             ORDER BY g.text, c.event_time, e.event_id"
        ))?;
        let rows = stmt.query_map([key], |r| {
            let flags: String = r.get(6)?;
            let label: Code<Label> = r.get(3)?;
            let call = (|| -> Result<granttrail_grants::findings::CoveredCall> {
                Ok(granttrail_grants::findings::CoveredCall {
                    key_arn: r.get(0)?,
                    grant_id: r.get(1)?,
                    operation: r.get(2)?,
                    label: label.0,
                    principal: r.get(4)?,
                    event_id: r.get(5)?,
                    flags: json_column(Some(flags))?.unwrap_or_default(),
                })
            })();
            Ok(call)
        })?;
        rows.map(|r| r?).collect()
    }

    /// KMS calls refused with an `AccessDenied*` error (on `key` only, when given), for the
    /// escalation rules.
    pub fn access_denials(&self, key: Option<&str>) -> Result<Vec<KmsEvent>> {
        let filter = if key.is_some() { format!("e.key = {KEY} AND") } else { String::new() };
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, o.source FROM events e JOIN objects o ON o.id = e.object_id
             WHERE {filter} e.event_source = 'kms.amazonaws.com' AND e.error_code LIKE 'AccessDenied%'
             ORDER BY e.event_time, e.event_id"
        );
        Ok(self.stored_events(&sql, key.as_slice())?.into_iter().map(|s| s.event).collect())
    }

    /// Successful KMS calls on a key (either side of a ReEncrypt) made at least `window`
    /// seconds after a grant on that key was retired or revoked: the calls GT015 examines. On
    /// `key` only, when given.
    pub fn calls_after_grant_ends(&self, window: i64, key: Option<&str>) -> Result<Vec<KmsEvent>> {
        // The earliest end of such a grant on a key: one probe of the index by key and end
        // time, where an EXISTS read every ended grant of the key for each call.
        let first_end = |key: &str| {
            format!(
                "(SELECT g.ended_at FROM grant_rows g
                  WHERE g.key = {key} AND g.ended_at IS NOT NULL AND g.state IN ('retired', 'revoked')
                    AND g.creation_seen <> 0
                  ORDER BY g.ended_at LIMIT 1)"
            )
        };
        let (of_key, of_destination) = (first_end("e.key"), first_end("e.destination_key"));
        let events = match key {
            Some(_) => format!(
                "SELECT * FROM events WHERE key = {KEY}
                 UNION ALL SELECT * FROM events WHERE destination_key = {KEY} AND key IS DISTINCT FROM {KEY}"
            ),
            None => "SELECT * FROM events".to_string(),
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, o.source FROM ({events}) e JOIN objects o ON o.id = e.object_id
             WHERE e.event_source = 'kms.amazonaws.com' AND e.error_code IS NULL
               AND (e.event_time >= {of_key} + {window} OR e.event_time >= {of_destination} + {window})
             ORDER BY e.event_time, e.event_id"
        );
        Ok(self.stored_events(&sql, key.as_slice())?.into_iter().map(|s| s.event).collect())
    }

    /// IAM `DeleteRole` and `DeleteUser` events.
    pub fn principal_deletions(&self) -> Result<Vec<KmsEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, o.source FROM events e JOIN objects o ON o.id = e.object_id
             WHERE e.event_name IN ('DeleteRole', 'DeleteUser') AND e.event_source = 'iam.amazonaws.com'"
        );
        Ok(self.stored_events(&sql, &[])?.into_iter().map(|s| s.event).collect())
    }
}
