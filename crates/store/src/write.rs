//! Writing one object's events and recomputing the grants they touch.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use crate::db::{
    Connection, Named, Savepoint, ToSql, Transaction, TransactionBehavior, Value, execute_listed,
    insert_rows, insert_rows_returning_ids, params, params_from_iter, query_listed, value_rows,
};
use granttrail_grants::{Caller, Details, Grant, GrantSpec, Invalidation, KmsEvent, fold_grant};

use crate::labels;
use crate::records::{self, StoredRecords};
use crate::texts::{self, KEY};
use crate::{Result, StoreError};

/// What one object contributed, for the object's row and the ingest summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    pub bytes: u64,
    pub records: u64,
    pub kms_events: u64,
    /// KMS events not seen before (the rest were duplicates by `eventID`).
    pub new_events: u64,
    /// New events that create, end or name a grant, or delete a key.
    pub grant_events: u64,
    /// KMS records that could not be used (malformed), skipped with a count.
    pub skipped_records: u64,
    /// Records whose eventID a different stored record carries: both are kept.
    pub collisions: Vec<Collision>,
}

/// A record whose eventID a different record stored before carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub event_id: String,
    /// The object the other record came from.
    pub other_object: String,
}

/// The `(key ARN, grant id)` pairs whose derived row may change. An unknown key is `None`.
type Touched = BTreeSet<(Option<String>, String)>;

/// One object's transaction. Dropping it without [`ObjectWriter::commit`] rolls back.
pub struct ObjectWriter<'c> {
    tx: Scope<'c>,
    object_id: i64,
    touched: Touched,
    deleted_keys: BTreeSet<String>,
    dirty: Invalidation,
    counts: ObjectCounts,
    /// The SHA-256 of the object's decompressed content, if the read hashed it.
    content_sha256: Option<[u8; 32]>,
    /// Rows of added events not inserted yet.
    events: Vec<[Value; EVENT_ROW_COLUMNS]>,
}

/// Where an event's record is stored: a `record_blocks` row and the slot in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordSlot {
    block: i64,
    slot: i64,
}

/// An event row's insert, and how many values it takes.
const INSERT_EVENT: &str =
    "INSERT INTO event_rows (event_id, event_hash, shared_event_id, event_time, event_name,
     event_type, aws_region, recipient_account_id, error_code, error_message, caller_type, caller_arn,
     caller_principal_id, caller_account_id, session_issuer_arn, invoked_by, source_ip, user_agent, key,
     destination_key, request_key_id, grant_id, grant_spec, dry_run, object_id, event_source, details,
     record_block, record_slot)";
const EVENT_ROW_COLUMNS: usize = 29;

/// The most event rows one statement inserts.
const ROWS_PER_INSERT: usize = 128;

/// The most record blocks (about 10 KB each) one statement inserts.
const BLOCKS_PER_INSERT: usize = 32;

/// Where an object's writes go: a transaction of its own, a savepoint in a [`Batch`], or
/// straight into a batch for an object whose events are all at hand. Either way the object is
/// all or nothing.
enum Scope<'c> {
    Own(Transaction<'c>),
    InBatch(Savepoint<'c>),
    Whole(Unguarded<'c>),
}

impl std::ops::Deref for Scope<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Scope::Own(tx) => tx,
            Scope::InBatch(sp) => sp,
            Scope::Whole(object) => object.conn,
        }
    }
}

impl Scope<'_> {
    fn commit(self) -> crate::db::Result<()> {
        match self {
            Scope::Own(tx) => tx.commit(),
            Scope::InBatch(sp) => sp.commit(),
            Scope::Whole(mut object) => {
                object.done = true;
                Ok(())
            }
        }
    }

    /// Ends a scope nothing was written in.
    fn end_unwritten(self) {
        match self {
            // Rolled back as they are dropped.
            Scope::Own(_) | Scope::InBatch(_) => {}
            Scope::Whole(mut object) => object.done = true,
        }
    }
}

/// An object written into its batch without a savepoint. Only an object whose events have
/// all been read is written so: nothing but a database error can then stop it half way, and
/// that fails the batch. Dropped unfinished all the same, it breaks the batch, which then
/// refuses to commit.
struct Unguarded<'c> {
    conn: &'c Connection,
    broken: &'c Cell<bool>,
    done: bool,
}

impl Drop for Unguarded<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.broken.set(true);
        }
    }
}

/// Several objects written under one write lock and committed together. Each object is still
/// all or nothing, but the index pages they all touch are written to the log once per batch
/// instead of once per object. Nothing is visible to others, or durable, before
/// [`Batch::commit`]; dropping the batch rolls every object in it back.
pub struct Batch<'c> {
    tx: Transaction<'c>,
    /// An object written without a savepoint was left half written.
    broken: Cell<bool>,
}

impl<'c> Batch<'c> {
    pub(crate) fn begin(conn: &'c mut Connection) -> Result<Batch<'c>> {
        Ok(Batch {
            tx: conn.transaction_with_behavior(TransactionBehavior::Shared)?,
            broken: Cell::new(false),
        })
    }

    /// [`crate::Store::begin_object`] within the batch, in a savepoint: an object whose
    /// events are still being read can be rolled back alone.
    pub fn begin_object(&mut self, source: &str) -> Result<Option<ObjectWriter<'_>>> {
        ObjectWriter::start(Scope::InBatch(self.tx.savepoint()?), source)
    }

    /// [`Batch::begin_object`] for an object whose events have all been read (and found
    /// sound): written without a savepoint, which on SQLite copies every page the object
    /// changes a first time to a journal. Left unfinished, the object fails the batch.
    pub fn begin_whole_object(&mut self, source: &str) -> Result<Option<ObjectWriter<'_>>> {
        ObjectWriter::start(
            Scope::Whole(Unguarded { conn: &self.tx, broken: &self.broken, done: false }),
            source,
        )
    }

    /// [`crate::Store::record_rejection`] within the batch.
    pub fn record_rejection(&self, source: &str, reason: &str, now: i64) -> Result<()> {
        record_rejection(&self.tx, source, reason, now)
    }

    pub fn commit(self) -> Result<()> {
        if self.broken.get() {
            // Dropping the transaction rolls the batch back.
            return Err(StoreError::Invalid("an object of the batch was left half written".into()));
        }
        self.tx.commit()?;
        Ok(())
    }
}

/// Records an object that was rejected whole, with the reason.
pub(crate) fn record_rejection(conn: &Connection, source: &str, reason: &str, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO rejected_objects (source, rejected_at, reason) VALUES (?1, ?2, ?3)",
        params![source, now, reason],
    )?;
    Ok(())
}

impl<'c> ObjectWriter<'c> {
    pub(crate) fn begin(conn: &'c mut Connection, source: &str) -> Result<Option<ObjectWriter<'c>>> {
        ObjectWriter::start(Scope::Own(conn.transaction_with_behavior(TransactionBehavior::Shared)?), source)
    }

    fn start(tx: Scope<'c>, source: &str) -> Result<Option<ObjectWriter<'c>>> {
        // The row is completed at commit; inserting it first gives events their object id
        // and makes a concurrent writer of the same object wait, then see it as done.
        let inserted = tx.insert(
            "INSERT INTO objects (source, ingested_at, format, bytes, records, kms_events, new_events,
                                  grant_events, skipped_records)
             VALUES (?1, 0, '', 0, 0, 0, 0, 0, 0)
             ON CONFLICT (source) DO NOTHING",
            [source],
        )?;
        let Some(object_id) = inserted else {
            tx.end_unwritten();
            return Ok(None);
        };
        Ok(Some(ObjectWriter {
            tx,
            object_id,
            touched: Touched::new(),
            deleted_keys: BTreeSet::new(),
            dirty: Invalidation::default(),
            counts: ObjectCounts::default(),
            content_sha256: None,
            events: Vec::new(),
        }))
    }

    /// Stores one KMS event with its record as delivered. Returns false when its `eventID`
    /// was already stored (a duplicate delivery: nothing changes).
    pub fn add(&mut self, event: &KmsEvent, raw: &str) -> Result<bool> {
        let added = self.add_records(std::slice::from_ref(event), &StoredRecords::compress([raw])?)?;
        Ok(added == 1)
    }

    /// [`ObjectWriter::add`] for several events, with their records compressed already (by
    /// another thread), in the events' order. Their eventIDs are looked up together. Returns
    /// how many were added.
    pub fn add_records(&mut self, events: &[KmsEvent], records: &StoredRecords) -> Result<usize> {
        if events.len() != records.len() {
            return Err(StoreError::Invalid(format!(
                "{} events came with {} records",
                events.len(),
                records.len()
            )));
        }
        // Beside other writers, whether an eventID is new is decided by one at a time.
        self.tx.lock(Named::EventId, events.iter().map(|e| e.event_id.as_str()))?;
        let known = rows_with_event_ids(&self.tx, events.iter().map(|e| e.event_id.as_str()))?;
        // The records of the eventIDs stored already (copies, duplicates, collisions), read
        // together: a second delivery of a whole object is all of them.
        let known: Vec<&str> = known.keys().map(String::as_str).collect();
        let stored = stored_with_ids(&self.tx, &known)?;
        // Most events' details are a text of their own: stored with the others, not apart one
        // by one.
        let details: Vec<Option<String>> = events.iter().map(details_text).collect::<Result<_>>()?;
        let all_details = details.iter().flatten().map(String::as_str);
        texts::store_all(&self.tx, events.iter().flat_map(texts_of).chain(all_details))?;
        // The blocks go in first, so that the events' rows can name them. A block of nothing
        // but records stored already (an object delivered again) is left out; the slots of
        // other repeats are emptied afterwards (rare: most records are new).
        let mut seen: HashSet<&str> = HashSet::with_capacity(events.len());
        let repeats: Vec<bool> = events
            .iter()
            .enumerate()
            .map(|(at, event)| {
                let id = event.event_id.as_str();
                let stored_already =
                    stored.get(id).is_some_and(|rows| rows.iter().any(|(_, e, _)| e == event));
                // An eventID met earlier in these events (rare) is compared with them.
                let earlier = !seen.insert(id) && events[..at].contains(event);
                stored_already || earlier
            })
            .collect();
        let slots = self.insert_blocks(records, &repeats)?;
        let mut added: HashSet<&str> = HashSet::new();
        let mut count = 0;
        let mut unkept: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        let mut copies = BTreeSet::new();
        for ((event, details), slot) in events.iter().zip(&details).zip(slots) {
            let id = event.event_id.as_str();
            let read_again;
            let known = if added.contains(id) {
                // Added by this call: read again, with the rows held back.
                self.insert_events()?;
                read_again = stored_with_id(&self.tx, id)?;
                Some(read_again.as_slice())
            } else {
                stored.get(id).map(Vec::as_slice)
            };
            match self.add_checked(event, details.as_deref(), slot, known)? {
                Added::New => {
                    added.insert(id);
                    count += 1;
                }
                Added::CopyOf(row) => {
                    copies.insert(row);
                    if let Some(slot) = slot {
                        unkept.entry(slot.block).or_default().insert(slot.slot);
                    }
                }
            }
        }
        self.insert_events()?;
        record_copies(&self.tx, self.object_id, &copies.into_iter().collect::<Vec<_>>())?;
        for (block, slots) in &unkept {
            records::empty_slots(&self.tx, *block, slots)?;
        }
        Ok(count)
    }

    /// Inserts the blocks of `records` that hold a record not in `repeats`, returning each
    /// record's slot (none for the records of a block left out). Where batches pay, two
    /// statements for any number of blocks: their ids, taken from the table's sequence, then
    /// the rows.
    fn insert_blocks(&self, records: &StoredRecords, repeats: &[bool]) -> Result<Vec<Option<RecordSlot>>> {
        let mut first = 0;
        let wanted: Vec<bool> = records
            .blocks
            .iter()
            .map(|block| {
                let of_block = repeats.get(first..first + block.records).unwrap_or_default();
                first += block.records;
                of_block.iter().any(|repeat| !repeat)
            })
            .collect();
        let kept: Vec<&records::Block> = records
            .blocks
            .iter()
            .zip(&wanted)
            .filter(|(_, wanted)| **wanted)
            .map(|(block, _)| block)
            .collect();
        let ids: Vec<i64> = if self.tx.batches_pay() && kept.len() > 1 {
            let mut ids = self
                .tx
                .prepare_cached(
                    "SELECT nextval(pg_get_serial_sequence('record_blocks', 'id'))
                     FROM generate_series(1, CAST(?1 AS bigint))",
                )?
                .query_map(params![kept.len() as i64], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            if ids.len() != kept.len() {
                return Err(StoreError::Corrupt("the record blocks' ids were not given".into()));
            }
            // Blocks keep their order in the ids, as one statement each gave them.
            ids.sort_unstable();
            let rows: Vec<[&dyn ToSql; 3]> = ids
                .iter()
                .zip(&kept)
                .map(|(id, block)| -> [&dyn ToSql; 3] { [id, &records::DICTIONARY_ID, &block.frame] })
                .collect();
            insert_rows(&self.tx, "record_blocks (id, dictionary, records)", "", &rows, BLOCKS_PER_INSERT)?;
            ids
        } else {
            let insert = |block: &records::Block| -> Result<i64> {
                self.tx
                    .insert(
                        "INSERT INTO record_blocks (dictionary, records) VALUES (?1, ?2)",
                        params![records::DICTIONARY_ID, block.frame],
                    )?
                    .ok_or_else(|| StoreError::Corrupt("a block of records was not added".into()))
            };
            kept.iter().copied().map(insert).collect::<Result<_>>()?
        };
        let mut ids = ids.into_iter();
        let mut slots = Vec::with_capacity(records.len());
        for (block, wanted) in records.blocks.iter().zip(wanted) {
            let id = if wanted { ids.next() } else { None };
            slots.extend((0..block.records as i64).map(|slot| id.map(|block| RecordSlot { block, slot })));
        }
        Ok(slots)
    }

    /// Inserts the event rows held back, many rows a statement. Nothing reads `event_rows`
    /// before [`ObjectWriter::add_records`] returns, but a stored copy of an event
    /// ([`stored_with_id`]), which sends them first.
    fn insert_events(&mut self) -> Result<()> {
        let rows: Vec<[&dyn ToSql; EVENT_ROW_COLUMNS]> =
            self.events.iter().map(|row| row.each_ref().map(|v| v as &dyn ToSql)).collect();
        let ids = insert_rows_returning_ids(&self.tx, INSERT_EVENT, (0, "event_id"), &rows, ROWS_PER_INSERT)?;
        if let Some(at) = ids.iter().position(Option::is_none) {
            return Err(StoreError::Corrupt(format!("event {:?} was not added", self.events[at][0])));
        }
        self.events.clear();
        Ok(())
    }

    /// Stores `event` (its details as [`details_text`] writes them) unless it is a copy of a
    /// stored record; `known` has the records stored with its eventID, if any.
    fn add_checked(
        &mut self,
        event: &KmsEvent,
        details: Option<&str>,
        record: Option<RecordSlot>,
        known: Option<&[StoredCopy]>,
    ) -> Result<Added> {
        if event.is_kms() {
            self.counts.kms_events += 1;
        }
        // A record already stored is a duplicate delivery; a different record with a stored
        // eventID is a collision, kept beside the other (found by the eventID's hash, not by an
        // index on the text: texts.rs says why).
        let event_hash = texts::hash(&event.event_id);
        if let Some(stored) = known {
            if let Some(&(row, _, _)) = stored.iter().find(|(_, e, _)| e == event) {
                return Ok(Added::CopyOf(row));
            }
            // The grants the other records build are rebuilt: they gain the collision.
            for (_, other, _) in stored.iter().filter(|(_, e, _)| e.is_grant_event() && e.succeeded()) {
                if let Some(grant_id) = &other.grant_id {
                    self.touched.insert((other.key_arn.clone(), grant_id.clone()));
                }
                if let (true, Some(key)) = (other.event_name == "DeleteKey", &other.key_arn) {
                    self.deleted_keys.insert(key.clone());
                }
            }
            if let Some((_, _, other_object)) = stored.first() {
                self.tx
                    .prepare_cached(
                        "INSERT INTO event_id_collisions (event_id) VALUES (?1) ON CONFLICT DO NOTHING",
                    )?
                    .execute([&event.event_id])?;
                self.counts
                    .collisions
                    .push(Collision { event_id: event.event_id.clone(), other_object: other_object.clone() });
            }
        }
        // Its record's block was left out only if it repeats one stored already.
        let record = record.ok_or_else(|| {
            StoreError::Corrupt(format!("the record of event {} was taken for a repeat", event.event_id))
        })?;
        let spec = event.grant_spec.as_ref().map(serde_json::to_string).transpose().map_err(json_error)?;
        let c = &event.caller;
        let tx = &*self.tx;
        let text = |value: &Option<String>| -> Result<Option<i64>> {
            value.as_deref().map(|v| texts::id(tx, v)).transpose()
        };
        let details = details.map(|d| texts::id(tx, d)).transpose()?;
        let row: &[&dyn ToSql] = params![
            event.event_id,
            event_hash,
            event.shared_event_id,
            event.event_time,
            event.event_name,
            text(&event.event_type)?,
            text(&event.aws_region)?,
            text(&event.recipient_account_id)?,
            event.error_code,
            event.error_message,
            text(&c.kind)?,
            text(&c.arn)?,
            c.principal_id,
            text(&c.account_id)?,
            text(&c.session_issuer_arn)?,
            text(&c.invoked_by)?,
            event.source_ip,
            text(&event.user_agent)?,
            text(&event.key_arn)?,
            text(&event.destination_key_arn)?,
            text(&event.request_key_id)?,
            event.grant_id,
            spec,
            event.dry_run,
            self.object_id,
            event.event_source,
            details,
            record.block,
            record.slot,
        ];
        if tx.batches_pay() {
            let row: [Value; EVENT_ROW_COLUMNS] = std::array::from_fn(|i| row[i].to_sql().into());
            self.events.push(row);
            if self.events.len() >= ROWS_PER_INSERT {
                self.insert_events()?;
            }
        } else {
            static INSERT_ONE: LazyLock<String> =
                LazyLock::new(|| format!("{INSERT_EVENT} VALUES {}", value_rows(1, EVENT_ROW_COLUMNS)));
            if tx.insert(&INSERT_ONE, row)?.is_none() {
                return Err(StoreError::Corrupt(format!("event {} was not added", event.event_id)));
            }
        }
        self.counts.new_events += 1;
        self.dirty.add_event(event);
        if event.is_grant_event() {
            self.counts.grant_events += 1;
            if event.succeeded() {
                if let Some(grant_id) = &event.grant_id {
                    self.touched.insert((event.key_arn.clone(), grant_id.clone()));
                }
                if event.event_name == "DeleteKey"
                    && let Some(key) = &event.key_arn
                {
                    self.deleted_keys.insert(key.clone());
                }
            }
        }
        Ok(Added::New)
    }

    /// Counts a KMS record that was skipped as malformed.
    pub fn skip_record(&mut self) {
        self.counts.skipped_records += 1;
    }

    /// Recomputes the touched grants, completes the object's row and commits. Returns what
    /// the object contributed.
    /// Keeps the SHA-256 of the object's decompressed content with it, for checking against a
    /// digest that arrives later.
    pub fn set_content_sha256(&mut self, sha256: [u8; 32]) {
        self.content_sha256 = Some(sha256);
    }

    pub fn commit(mut self, format: &str, bytes: u64, records: u64, now: i64) -> Result<ObjectCounts> {
        self.insert_events()?;
        self.counts.bytes = bytes;
        self.counts.records = records;
        // Beside other writers, each grant (and its key) is recomputed by one at a time, from
        // every event the writers before it committed. Every key and account this object
        // marks stale is locked too, from before it is marked until the commit, so that a
        // relabelling (which takes the same locks, accounts first) never reads the marks
        // without the events. Keys are locked after accounts and grants, as others take them.
        self.tx.lock(Named::Account, self.dirty.accounts.iter().map(String::as_str))?;
        self.tx.lock(Named::Grant, self.touched.iter().map(|(_, grant)| grant.as_str()))?;
        let named_keys = self.touched.iter().filter_map(|(key, _)| key.as_deref());
        let marked = labels::keys_marked(&self.dirty);
        self.tx.lock(
            Named::Key,
            named_keys
                .chain(self.deleted_keys.iter().map(String::as_str))
                .chain(marked.iter().map(String::as_str)),
        )?;
        let mut pairs = BTreeSet::new();
        for (key, grant) in &self.touched {
            match key {
                Some(key) => {
                    pairs.insert((key.clone(), grant.clone()));
                }
                None => pairs.extend(keys_of_grant(&self.tx, grant)?.into_iter().map(|k| (k, grant.clone()))),
            }
        }
        for key in &self.deleted_keys {
            pairs.extend(grants_on_key(&self.tx, key)?.into_iter().map(|g| (key.clone(), g)));
        }
        // The keys found only now, for grants whose events named none.
        self.tx.lock(Named::Key, pairs.iter().map(|(key, _)| key.as_str()))?;
        let before = crate::read::grants_of(&self.tx, &pairs)?;
        recompute(&self.tx, &pairs)?;
        // What a changed grant means for its key's labels (its key may be known only now, for
        // a retire that named no key).
        let known = pairs.iter().filter(|(key, _)| !key.is_empty());
        let after = crate::read::grants_of(&self.tx, known.clone())?;
        for pair in known {
            self.dirty.grant_changed(&pair.0, before.get(pair), after.get(pair));
        }
        // Labels are recomputed once per run, not once per object ([`crate::Store::refresh_labels`]);
        // what they owe is recorded here. Beside other writers the marks are committed at once,
        // ahead of the events, so that their rows do not hold other writers back: no
        // relabelling of these keys runs until this transaction ends (their locks are held),
        // and a mark whose events are then rolled back relabels for nothing.
        self.tx.apart(|c| labels::mark_stale(c, self.object_id, &self.dirty))?;
        let c = self.counts;
        self.tx.execute(
            "UPDATE objects SET ingested_at = ?2, format = ?3, bytes = ?4, records = ?5, kms_events = ?6,
                 new_events = ?7, grant_events = ?8, skipped_records = ?9, content_sha256 = ?10
             WHERE id = ?1",
            params![
                self.object_id,
                now,
                format,
                c.bytes as i64,
                c.records as i64,
                c.kms_events as i64,
                c.new_events as i64,
                c.grant_events as i64,
                c.skipped_records as i64,
                self.content_sha256.as_ref().map(<[u8; 32]>::as_slice)
            ],
        )?;
        self.tx.commit()?;
        Ok(c)
    }
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The keys a grant id is known on; the empty key when none is known yet.
fn keys_of_grant(tx: &Connection, grant_id: &str) -> Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(
        "SELECT DISTINCT key_arn FROM events WHERE grant_id = ?1 AND key_arn IS NOT NULL AND error_code IS NULL
           AND event_name IN ('CreateGrant', 'RetireGrant', 'RevokeGrant')",
    )?;
    let keys: Vec<String> = stmt.query_map([grant_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(if keys.is_empty() { vec![String::new()] } else { keys })
}

fn grants_on_key(tx: &Connection, key_arn: &str) -> Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT DISTINCT grant_id FROM events WHERE key = {KEY} AND grant_id IS NOT NULL AND error_code IS NULL
           AND event_name IN ('CreateGrant', 'RetireGrant', 'RevokeGrant')"
    ))?;
    let grants = stmt.query_map([key_arn], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(grants)
}

/// Every `(key, grant)` pair the stored events describe, as [`keys_of_grant`] resolves them.
pub(crate) fn all_grant_pairs(tx: &Connection) -> Result<BTreeSet<(String, String)>> {
    let mut stmt = tx.prepare(
        "SELECT DISTINCT key_arn, grant_id FROM events WHERE grant_id IS NOT NULL AND error_code IS NULL
           AND event_name IN ('CreateGrant', 'RetireGrant', 'RevokeGrant')",
    )?;
    let rows: Vec<(Option<String>, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut pairs = BTreeSet::new();
    for (key, grant) in rows {
        match key {
            Some(key) => {
                pairs.insert((key, grant));
            }
            None => pairs.extend(keys_of_grant(tx, &grant)?.into_iter().map(|k| (k, grant.clone()))),
        }
    }
    Ok(pairs)
}

/// Re-derives each grant from its stored events and replaces its row. A grant once known on
/// no key (`""`) moves to its key as soon as one is known.
pub(crate) fn recompute(tx: &Connection, pairs: &BTreeSet<(String, String)>) -> Result<usize> {
    let pairs: Vec<&(String, String)> = pairs.iter().collect();
    let mut written = 0;
    for chunk in pairs.chunks(GRANTS_TOGETHER) {
        written += recompute_together(tx, chunk)?;
    }
    Ok(written)
}

/// Grants [`recompute`] folds before it writes them, so that where batches pay the texts of
/// their rows are stored in a few statements (memory stays bounded in a rebuild).
const GRANTS_TOGETHER: usize = 128;

/// [`recompute`] for a few pairs. Folding reads only events, so all are folded first; the
/// rows are then replaced pair by pair, in order.
fn recompute_together(tx: &Connection, pairs: &[&(String, String)]) -> Result<usize> {
    let mut folded = Vec::with_capacity(pairs.len());
    for (key, grant_id) in pairs.iter().copied() {
        folded.push(match fold_grant(key, grant_id, &grant_events(tx, key, grant_id)?) {
            Some(grant) => Some((GrantTexts::of(&grant)?, grant)),
            None => None,
        });
    }
    texts::store_all(tx, folded.iter().flatten().flat_map(|(texts, _)| texts.all()))?;
    static DELETE: LazyLock<String> = LazyLock::new(|| {
        format!("DELETE FROM grant_rows WHERE key = {KEY} AND grant_ref = {}", texts::id_of("?2"))
    });
    for ((key, grant_id), row) in pairs.iter().copied().zip(&folded) {
        tx.prepare_cached(&DELETE)?.execute(params![key, grant_id])?;
        if !key.is_empty() {
            tx.prepare_cached(&DELETE)?.execute(params!["", grant_id])?;
        }
        if let Some((texts, grant)) = row {
            insert_grant(tx, grant, texts)?;
        }
    }
    Ok(folded.iter().flatten().count())
}

/// The text an event's details are stored as, if it has any.
fn details_text(event: &KmsEvent) -> Result<Option<String>> {
    if event.details.is_empty() { Ok(None) } else { to_json(&event.details).map(Some) }
}

/// The texts an event's row refers to by id but its details ([`details_text`]), to be stored
/// together before the events of a batch are.
fn texts_of(event: &KmsEvent) -> impl Iterator<Item = &str> {
    let c = &event.caller;
    [
        &event.event_type,
        &event.aws_region,
        &event.recipient_account_id,
        &c.kind,
        &c.arn,
        &c.account_id,
        &c.session_issuer_arn,
        &c.invoked_by,
        &event.user_agent,
        &event.key_arn,
        &event.destination_key_arn,
        &event.request_key_id,
    ]
    .into_iter()
    .filter_map(|text| text.as_deref())
}

/// A stored event row, as labels are matched to it.
pub(crate) struct EventRow {
    pub id: i64,
    pub event_name: String,
    pub event_time: i64,
    /// The text ids of its key and its destination key.
    pub key: Option<i64>,
    pub destination_key: Option<i64>,
}

impl EventRow {
    /// From the columns `id, event_name, event_time, key, destination_key`, from `first` on.
    fn read(r: &crate::db::Row<'_>, first: usize) -> crate::db::Result<EventRow> {
        Ok(EventRow {
            id: r.get(first)?,
            event_name: r.get(first + 1)?,
            event_time: r.get(first + 2)?,
            key: r.get(first + 3)?,
            destination_key: r.get(first + 4)?,
        })
    }
}

/// The stored rows of each of `event_ids` that has any (two or more for a collision), in row
/// order.
pub(crate) fn rows_with_event_ids<'a>(
    conn: &Connection,
    event_ids: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Vec<EventRow>>> {
    let wanted: Vec<&str> = event_ids.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    let mut found: HashMap<String, Vec<EventRow>> = HashMap::new();
    if !conn.batches_pay() {
        // One probe of the index per eventID: a list of 128 hashes, most of them repeats for
        // a key with few calls, cost three times as much a label.
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_name, event_time, key, destination_key FROM event_rows
             WHERE event_hash = ?1 AND event_id = ?2 ORDER BY id",
        )?;
        for event_id in wanted {
            let rows = stmt
                .query_map(params![texts::hash(event_id), event_id], |r| EventRow::read(r, 0))?
                .collect::<Result<Vec<EventRow>, _>>()?;
            if !rows.is_empty() {
                found.insert(event_id.to_string(), rows);
            }
        }
        return Ok(found);
    }
    let sql = texts::rows_by_hash(
        conn,
        "event_id, id, event_name, event_time, key, destination_key",
        "event_rows",
        "event_hash",
    ) + " ORDER BY id";
    for chunk in wanted.chunks(texts::HASHES_PER_LOOKUP) {
        let mut stmt = conn.prepare_for_these_parameters(&sql)?;
        let mut rows = stmt.query(params_from_iter(texts::hash_list(chunk)))?;
        while let Some(r) = rows.next()? {
            let event_id: String = r.get(0)?;
            // Rows of other eventIDs that share a hash are not asked for (or are, in their own chunk).
            if chunk.contains(&event_id.as_str()) {
                found.entry(event_id).or_default().push(EventRow::read(&r, 1)?);
            }
        }
    }
    Ok(found)
}

/// What [`ObjectWriter::add_checked`] made of an event.
enum Added {
    /// Stored: its eventID was new, or its record differs from those stored with it.
    New,
    /// Not stored: the record of this `event_rows` id is the same.
    CopyOf(i64),
}

/// A record stored with an eventID: its row id, the event, and the object it was stored from.
pub(crate) type StoredCopy = (i64, KmsEvent, String);

/// Records that the events of these `event_rows` ids came in `object` too, for what it says of
/// the evidence: each record rests on every object that delivered it (its own excepted).
fn record_copies(tx: &Connection, object: i64, rows: &[i64]) -> Result<()> {
    let insert = |list: &str| {
        format!(
            "INSERT INTO event_copies (event_rowid, object_id)
             SELECT delivered.row_id, ?1 FROM (SELECT column1 AS row_id FROM (VALUES {list}) AS v) AS delivered
             WHERE NOT EXISTS (SELECT 1 FROM event_rows WHERE id = delivered.row_id AND object_id = ?1)
             ON CONFLICT DO NOTHING"
        )
    };
    execute_listed(tx, insert, "bigint", &[&object], rows, ROWS_PER_INSERT)?;
    Ok(())
}

/// [`stored_with_id`] of each of `event_ids`, by eventID; where batches pay, for many in one
/// statement.
fn stored_with_ids(tx: &Connection, event_ids: &[&str]) -> Result<HashMap<String, Vec<StoredCopy>>> {
    let mut found: HashMap<String, Vec<StoredCopy>> = HashMap::new();
    if !tx.batches_pay() {
        for id in event_ids {
            found.insert(id.to_string(), stored_with_id(tx, id)?);
        }
        return Ok(found);
    }
    let hashes: Vec<i64> = event_ids.iter().map(|id| texts::hash(id)).collect();
    let wanted: Vec<[&dyn ToSql; 2]> =
        event_ids.iter().zip(&hashes).map(|(id, hash)| [id as &dyn ToSql, hash]).collect();
    let query = |list: &str| {
        format!(
            "SELECT found.* FROM (VALUES {list}) AS wanted (wanted_id, wanted_hash)
             CROSS JOIN LATERAL (
                 SELECT {EVENT_COLUMNS}, o.source, e.id AS row_id FROM events e JOIN objects o ON o.id = e.object_id
                 WHERE e.event_hash = wanted.wanted_hash AND e.event_id = wanted.wanted_id OFFSET 0
             ) AS found
             ORDER BY found.row_id"
        )
    };
    query_listed(
        tx,
        query,
        &["text", "bigint"],
        &[],
        &wanted,
        texts::HASHES_PER_LOOKUP,
        |r| -> Result<()> {
            let copy: StoredCopy = (r.get(26)?, event_from_row(r)??, r.get(25)?);
            found.entry(copy.1.event_id.clone()).or_default().push(copy);
            Ok(())
        },
    )?;
    Ok(found)
}

/// The records stored with this `eventID` (more than one: a collision), each with its row id
/// and the object it was stored from.
pub(crate) fn stored_with_id(tx: &Connection, event_id: &str) -> Result<Vec<StoredCopy>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS}, o.source, e.id FROM events e JOIN objects o ON o.id = e.object_id
         WHERE e.event_hash = granttrail_hash(?1) AND e.event_id = ?1 ORDER BY e.id"
    ))?;
    let mut rows = stmt.query([event_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let source: String = r.get(25)?;
        out.push((r.get(26)?, event_from_row(&r)??, source));
    }
    Ok(out)
}

pub(crate) const EVENT_COLUMNS: &str =
    "event_id, shared_event_id, event_time, event_name, event_type, aws_region,
    recipient_account_id, error_code, error_message, caller_type, caller_arn, caller_principal_id,
    caller_account_id, session_issuer_arn, invoked_by, source_ip, user_agent, key_arn, destination_key_arn,
    request_key_id, grant_id, grant_spec, dry_run, event_source, details";

/// The successful events that decide one grant: its creates and ends, and its key's deletions.
fn grant_events(tx: &Connection, key: &str, grant_id: &str) -> Result<Vec<KmsEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE grant_id = ?2 AND error_code IS NULL AND (key = {KEY} OR key IS NULL)
           AND event_name IN ('CreateGrant', 'RetireGrant', 'RevokeGrant')
         UNION ALL
         SELECT {EVENT_COLUMNS} FROM events
         WHERE key = {KEY} AND event_name = 'DeleteKey' AND error_code IS NULL"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![key, grant_id], event_from_row)?;
    let mut events = Vec::new();
    for row in rows {
        events.push(row??);
    }
    // A different record that carries the eventID of one of these (a collision) is evidence
    // too: the grant shows it, whatever the other record is.
    let ids: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let mut collided = tx.prepare_cached("SELECT 1 FROM event_id_collisions WHERE event_id = ?1")?;
    for id in ids {
        if !collided.exists([&id])? {
            continue;
        }
        for (_, other, _) in stored_with_id(tx, &id)? {
            if !events.contains(&other) {
                events.push(other);
            }
        }
    }
    Ok(events)
}

/// Reads a row of [`EVENT_COLUMNS`] back into a [`KmsEvent`].
pub(crate) fn event_from_row(r: &crate::db::Row<'_>) -> crate::db::Result<Result<KmsEvent>> {
    let mut texts: [Option<String>; TEXT_COLUMNS.len()] = Default::default();
    for (text, at) in texts.iter_mut().zip(TEXT_COLUMNS) {
        *text = r.get(at)?;
    }
    Ok(event_without_texts(r).map(|mut event| {
        set_texts(&mut event, texts);
        event
    }))
}

/// The columns of `event_rows` in the order of [`EVENT_COLUMNS`]: those [`TEXT_COLUMNS`]
/// names hold the ids of texts. An event's details are most often its own text, not one its
/// key's other events name again: they come with the row.
pub(crate) const RAW_EVENT_COLUMNS: &str =
    "event_id, shared_event_id, event_time, event_name, event_type, aws_region,
    recipient_account_id, error_code, error_message, caller_type, caller_arn, caller_principal_id,
    caller_account_id, session_issuer_arn, invoked_by, source_ip, user_agent, key, destination_key,
    request_key_id, grant_id, grant_spec, dry_run, event_source,
    (SELECT text FROM texts WHERE texts.id = event_rows.details)";

/// The positions in [`EVENT_COLUMNS`] of the texts `event_rows` keeps by id and
/// [`RAW_EVENT_COLUMNS`] reads as ids, in the order [`set_texts`] takes them.
const TEXT_COLUMNS: [usize; 12] = [4, 5, 6, 9, 10, 12, 13, 14, 16, 17, 18, 19];

/// A row of [`RAW_EVENT_COLUMNS`] whose texts are not read yet: the rows of a query are read
/// first and the texts they name after, a batch to a statement ([`TextlessEvent::read`]). A key's
/// events name a few texts again and again, which a lookup per column and row (the `events`
/// view) would find once each time: on PostgreSQL, planning those lookups cost more than
/// running them.
pub(crate) struct TextlessEvent {
    /// Every column but the texts.
    event: KmsEvent,
    /// The ids in the columns of [`TEXT_COLUMNS`], in its order.
    text_ids: [Option<i64>; TEXT_COLUMNS.len()],
}

impl TextlessEvent {
    pub(crate) fn from_row(r: &crate::db::Row<'_>) -> crate::db::Result<Result<TextlessEvent>> {
        let mut text_ids = [None; TEXT_COLUMNS.len()];
        for (id, at) in text_ids.iter_mut().zip(TEXT_COLUMNS) {
            *id = r.get(at)?;
        }
        Ok(event_without_texts(r).map(|event| TextlessEvent { event, text_ids }))
    }

    /// The events of `rows`, their texts looked up together.
    pub(crate) fn read(
        conn: &Connection,
        rows: Vec<TextlessEvent>,
        texts: &mut texts::TextReader,
    ) -> Result<Vec<KmsEvent>> {
        texts.read_ahead(conn, rows.iter().flat_map(|r| r.text_ids.iter().flatten().copied()))?;
        rows.into_iter()
            .map(|TextlessEvent { mut event, text_ids }| {
                let mut found: [Option<String>; TEXT_COLUMNS.len()] = Default::default();
                for (text, id) in found.iter_mut().zip(text_ids) {
                    *text = texts.get(conn, id, "an event")?;
                }
                set_texts(&mut event, found);
                Ok(event)
            })
            .collect()
    }
}

/// A [`KmsEvent`] from a row in the order of [`EVENT_COLUMNS`], but for the texts of
/// [`TEXT_COLUMNS`]: those are left empty for [`set_texts`].
fn event_without_texts(r: &crate::db::Row<'_>) -> Result<KmsEvent> {
    let spec: Option<String> = r.get(21)?;
    let grant_spec = spec.map(|s| serde_json::from_str::<GrantSpec>(&s)).transpose().map_err(json_error)?;
    let details: Option<String> = r.get(24)?;
    let details = details
        .map(|d| serde_json::from_str::<Details>(&d))
        .transpose()
        .map_err(json_error)?
        .unwrap_or_default();
    Ok(KmsEvent {
        event_id: r.get(0)?,
        shared_event_id: r.get(1)?,
        event_time: r.get(2)?,
        event_name: r.get(3)?,
        event_type: None,
        aws_region: None,
        recipient_account_id: None,
        error_code: r.get(7)?,
        error_message: r.get(8)?,
        caller: Caller { principal_id: r.get(11)?, ..Caller::default() },
        source_ip: r.get(15)?,
        user_agent: None,
        key_arn: None,
        destination_key_arn: None,
        request_key_id: None,
        grant_id: r.get(20)?,
        grant_spec,
        dry_run: r.get(22)?,
        event_source: r.get(23)?,
        details,
    })
}

/// Fills in the texts of `event`: those of the columns [`TEXT_COLUMNS`] lists, in its order.
fn set_texts(event: &mut KmsEvent, texts: [Option<String>; TEXT_COLUMNS.len()]) {
    let [
        event_type,
        region,
        recipient,
        kind,
        arn,
        account,
        issuer,
        invoked_by,
        agent,
        key,
        destination,
        request,
    ] = texts;
    event.event_type = event_type;
    event.aws_region = region;
    event.recipient_account_id = recipient;
    event.caller.kind = kind;
    event.caller.arn = arn;
    event.caller.account_id = account;
    event.caller.session_issuer_arn = issuer;
    event.caller.invoked_by = invoked_by;
    event.user_agent = agent;
    event.key_arn = key;
    event.destination_key_arn = destination;
    event.request_key_id = request;
}

/// The texts a grant's row refers to by id.
struct GrantTexts {
    key: String,
    grant: String,
    anomalies: String,
    /// grantee, retiring principal, operations, constraints, issuing account, created by
    /// (principal, service), ended by (principal, service): each may be absent.
    optional: [Option<String>; 9],
}

impl GrantTexts {
    fn of(g: &Grant) -> Result<GrantTexts> {
        let spec = &g.spec;
        let (created_by, ended_by) = (g.created_by.as_ref(), g.ended_by.as_ref());
        Ok(GrantTexts {
            key: g.key_arn.clone(),
            grant: g.grant_id.clone(),
            anomalies: to_json(&g.anomalies)?,
            optional: [
                spec.grantee_principal.clone(),
                spec.retiring_principal.clone(),
                spec.operations.as_deref().map(to_json).transpose()?,
                spec.constraints.as_ref().map(to_json).transpose()?,
                g.issuing_account.clone(),
                created_by.and_then(|a| a.principal.clone()),
                created_by.and_then(|a| a.service.clone()),
                ended_by.and_then(|a| a.principal.clone()),
                ended_by.and_then(|a| a.service.clone()),
            ],
        })
    }

    fn all(&self) -> impl Iterator<Item = &str> {
        [&self.key, &self.grant, &self.anomalies]
            .into_iter()
            .map(String::as_str)
            .chain(self.optional.iter().flatten().map(String::as_str))
    }
}

fn insert_grant(tx: &Connection, g: &Grant, texts: &GrantTexts) -> Result<()> {
    // Ids in the columns' order, as new texts are numbered.
    let (key, grant) = (texts::id(tx, &texts.key)?, texts::id(tx, &texts.grant)?);
    let [
        grantee,
        retiring,
        operations,
        constraints,
        issuing_account,
        created_by,
        created_by_service,
        ended_by,
        ended_by_service,
    ] = texts.optional.each_ref().map(|t| t.as_deref().map(|t| texts::id(tx, t)).transpose());
    let (created, ended) = (g.created_by.as_ref(), g.ended_by.as_ref());
    tx.prepare_cached(
        "INSERT INTO grant_rows (key, grant_ref, state, creation_seen, grantee, retiring, operations, constraints,
             name, issuing_account, created_at, created_by, created_by_service, created_from_ip, created_event_id,
             ended_at, ended_by, ended_by_service, ended_from_ip, end_event_id, create_event_ids, end_event_ids,
             anomalies)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
                 ?21, ?22, ?23)",
    )?
    .execute(params![
        key,
        grant,
        g.state.as_str(),
        g.creation_seen,
        grantee?,
        retiring?,
        operations?,
        constraints?,
        g.spec.name,
        issuing_account?,
        g.created_at,
        created_by?,
        created_by_service?,
        created.and_then(|a| a.source_ip.clone()),
        created.map(|a| a.event_id.clone()),
        g.ended_at,
        ended_by?,
        ended_by_service?,
        ended.and_then(|a| a.source_ip.clone()),
        ended.map(|a| a.event_id.clone()),
        to_json(&g.create_event_ids)?,
        to_json(&g.end_event_ids)?,
        texts::id(tx, &texts.anomalies)?,
    ])?;
    Ok(())
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(json_error)
}
