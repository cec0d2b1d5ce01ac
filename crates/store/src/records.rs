//! The CloudTrail records behind the events: kept byte for byte, compressed.
//!
//! Records are compressed a block at a time: the records of consecutive events of one object,
//! joined by NUL bytes (which JSON text never holds), in one zstd frame compressed with a
//! dictionary trained on CloudTrail KMS records (`bench/train-dictionary`). A KMS record is
//! 1-2 KB of JSON that repeats the keys, ARNs and agents of every other record: the dictionary
//! holds what all records share, and the block what one object's records share (its account's
//! roles, keys and agents). An event names its block and its slot in it; a slot left empty is
//! a record not kept (a duplicate delivery, or one `granttrail prune` dropped).
//! docs/schema.md gives the measurements behind this choice.
//!
//! The dictionary is also stored in the database (`record_dictionaries`), so a record can be
//! read with `sqlite3` and the `zstd` command alone. A dictionary, once used, never changes:
//! a better one would be added under a new id, and the frames name the one they need.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::db::{Connection, Engine, OptionalExtension, params};

use crate::{Result, StoreError};

/// The id of the dictionary granttrail compresses new records with (also written into each
/// frame's header, so `zstd -D` checks it).
pub(crate) const DICTIONARY_ID: i64 = 1;

/// Dictionary [`DICTIONARY_ID`], trained by `bench/train-dictionary`.
const DICTIONARY: &[u8] = include_bytes!("records.zdict");

/// zstd's fastest level: with the dictionary it compresses as well as the default level 3,
/// and higher levels gain under 10 % for several times the time (docs/schema.md).
const LEVEL: i32 = 1;

/// Records join a block until it holds this many bytes (about 30 KMS records): such a block
/// compresses to about two thirds of the same records one by one, and three fill a 16 KB
/// page; larger blocks gain little and leave pages part empty (docs/schema.md). Reading one
/// record decompresses its whole block, well under a millisecond.
const BLOCK_BYTES: usize = 48 << 10;

/// What separates the records of a block. JSON text never holds a NUL byte.
const SEPARATOR: u8 = 0;

/// The largest record a frame may claim to hold. A record over ingest's `--max-record-bytes`
/// is never stored; this only stops a corrupt frame header from asking for a huge buffer.
const MAX_RECORD_BYTES: u64 = 1 << 30;

/// Compresses records for storage, reused for every record a thread compresses.
struct RecordCompressor {
    zstd: zstd::bulk::Compressor<'static>,
}

impl RecordCompressor {
    fn new() -> Result<RecordCompressor> {
        let zstd = zstd::bulk::Compressor::with_dictionary(LEVEL, DICTIONARY)
            .map_err(|e| StoreError::Corrupt(format!("record dictionary {DICTIONARY_ID}: {e}")))?;
        Ok(RecordCompressor { zstd })
    }
}

thread_local! {
    /// One compressor per thread: ingest compresses on its decoding threads, off the writer's.
    static COMPRESSOR: RefCell<Option<RecordCompressor>> = const { RefCell::new(None) };
}

/// The records of consecutive events, compressed for storage in blocks
/// ([`crate::ObjectWriter::add_records`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecords {
    pub(crate) blocks: Vec<Block>,
}

/// One block: a zstd frame of `records` records joined by [`SEPARATOR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) frame: Vec<u8>,
    pub(crate) records: usize,
}

impl StoredRecords {
    /// Compresses `records` (CloudTrail records as delivered, in their events' order) with
    /// the current dictionary.
    pub fn compress<'a>(records: impl IntoIterator<Item = &'a str>) -> Result<StoredRecords> {
        let mut blocks = Vec::new();
        let mut joined: Vec<u8> = Vec::with_capacity(BLOCK_BYTES + (4 << 10));
        let mut count = 0;
        for record in records {
            if count > 0 {
                joined.push(SEPARATOR);
            }
            joined.extend_from_slice(record.as_bytes());
            count += 1;
            if joined.len() >= BLOCK_BYTES {
                blocks.push(Block { frame: compress(&joined)?, records: count });
                joined.clear();
                count = 0;
            }
        }
        if count > 0 {
            blocks.push(Block { frame: compress(&joined)?, records: count });
        }
        Ok(StoredRecords { blocks })
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.records).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The compressed size, in bytes.
    pub fn compressed_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.frame.len()).sum()
    }
}

/// `bytes` compressed with the current dictionary, by this thread's compressor.
fn compress(bytes: &[u8]) -> Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(RecordCompressor::new()?),
        };
        compressor
            .zstd
            .compress(bytes)
            .map_err(|e| StoreError::Invalid(format!("cannot compress records: {e}")))
    })
}

/// Makes sure the database holds the dictionary new records are compressed with.
pub(crate) fn store_dictionary(conn: &Connection) -> Result<()> {
    conn.execute(
        "INSERT INTO record_dictionaries (id, dictionary) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![DICTIONARY_ID, DICTIONARY],
    )?;
    Ok(())
}

/// The records held in the block `frame`, compressed with dictionary `dictionary`, one per
/// slot (an empty slot holds none). `event_id` names the record wanted, in errors.
pub(crate) fn decompress_block(
    conn: &Connection,
    event_id: &str,
    dictionary: i64,
    frame: &[u8],
) -> Result<Vec<Option<String>>> {
    let corrupt = |what: String| StoreError::Corrupt(format!("record of event {event_id}: {what}"));
    let stored: Vec<u8>;
    let bytes = if dictionary == DICTIONARY_ID {
        DICTIONARY
    } else {
        stored = conn
            .query_row("SELECT dictionary FROM record_dictionaries WHERE id = ?1", [dictionary], |r| r.get(0))
            .optional()?
            .ok_or_else(|| corrupt(format!("dictionary {dictionary} is not in the database")))?;
        &stored
    };
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_RECORD_BYTES => size,
        Ok(Some(size)) => return Err(corrupt(format!("the frame claims {size} bytes"))),
        Ok(None) | Err(_) => return Err(corrupt("not a zstd frame with a known size".into())),
    };
    let capacity = usize::try_from(size).map_err(|_| corrupt(format!("the frame claims {size} bytes")))?;
    let joined = zstd::bulk::Decompressor::with_dictionary(bytes)
        .and_then(|mut d| d.decompress(frame, capacity))
        .map_err(|e| corrupt(e.to_string()))?;
    joined
        .split(|&b| b == SEPARATOR)
        .map(|record| match record {
            [] => Ok(None),
            _ => String::from_utf8(record.to_vec()).map(Some).map_err(|e| corrupt(e.to_string())),
        })
        .collect()
}

/// The record in slot `slot` of the block `frame` ([`decompress_block`]): stored events point
/// only at slots that hold one, so an empty or missing slot is damage.
pub(crate) fn decompress(
    conn: &Connection,
    event_id: &str,
    dictionary: i64,
    frame: &[u8],
    slot: i64,
) -> Result<String> {
    let records = decompress_block(conn, event_id, dictionary, frame)?;
    usize::try_from(slot).ok().and_then(|slot| records.into_iter().nth(slot).flatten()).ok_or_else(|| {
        StoreError::Corrupt(format!("record of event {event_id}: its block has no record {slot}"))
    })
}

/// Empties `slots` of block `block` (records no event keeps), deleting the block once no
/// record is left in it on SQLite. Returns how many stored bytes that freed.
///
/// On PostgreSQL a block with no record left stays, a few bytes with every slot empty: its
/// delete would have the server look for an event row naming it, through every row (nothing
/// indexes `record_block`), and a table's space freed is reused there, not given back. SQLite
/// gives the pages back; `prune` indexes `record_block` for its deletes there.
pub(crate) fn empty_slots(conn: &Connection, block: i64, slots: &BTreeSet<i64>) -> Result<u64> {
    let Some((dictionary, frame)): Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT dictionary, records FROM record_blocks WHERE id = ?1", [block], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
    else {
        return Ok(0);
    };
    let mut records = decompress_block(conn, &format!("in block {block}"), dictionary, &frame)?;
    for (slot, record) in records.iter_mut().enumerate() {
        if i64::try_from(slot).is_ok_and(|s| slots.contains(&s)) {
            *record = None;
        }
    }
    let before = frame.len() as u64;
    if records.iter().all(Option::is_none) && conn.engine() == Engine::Sqlite {
        conn.execute("DELETE FROM record_blocks WHERE id = ?1", [block])?;
        return Ok(before);
    }
    let mut joined = Vec::new();
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            joined.push(SEPARATOR);
        }
        joined.extend_from_slice(record.as_deref().unwrap_or_default().as_bytes());
    }
    let frame = compress(&joined)?;
    let after = frame.len() as u64;
    conn.execute(
        "UPDATE record_blocks SET dictionary = ?2, records = ?3 WHERE id = ?1",
        params![block, DICTIONARY_ID, frame],
    )?;
    Ok(before.saturating_sub(after))
}

/// Moves the records of a version 6 database (`event_records_6`, text) into `event_records`
/// as frames, calling `progress(done, total)` as it goes, then drops the old table.
pub(crate) fn move_v6_records(conn: &Connection, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    store_dictionary(conn)?;
    let total: i64 = conn.query_row("SELECT count(*) FROM event_records_6", [], |r| r.get(0))?;
    let total = u64::try_from(total).unwrap_or(0);
    {
        let mut read = conn.prepare("SELECT event_rowid, raw FROM event_records_6")?;
        let mut write =
            conn.prepare("INSERT INTO event_records (event_rowid, dictionary, record) VALUES (?1, ?2, ?3)")?;
        let mut rows = read.query([])?;
        let mut done = 0;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let raw: String = row.get(1)?;
            write.execute(params![rowid, DICTIONARY_ID, compress(raw.as_bytes())?])?;
            done += 1;
            if done % 4096 == 0 {
                progress(done, total);
            }
        }
        progress(done, total);
    }
    conn.execute_batch("DROP TABLE event_records_6")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE record_dictionaries (id INTEGER PRIMARY KEY, dictionary BLOB NOT NULL);
             CREATE TABLE record_blocks (id INTEGER PRIMARY KEY, dictionary INTEGER NOT NULL, records BLOB NOT NULL);",
        )
        .expect("tables");
        store_dictionary(&conn).expect("dictionary stored");
        conn
    }

    fn one_block(records: &[&str]) -> Vec<u8> {
        let stored = StoredRecords::compress(records.iter().copied()).expect("compressed");
        assert_eq!(stored.blocks.len(), 1);
        stored.blocks.into_iter().next().expect("a block").frame
    }

    #[test]
    fn a_record_comes_back_byte_for_byte() {
        let conn = database();
        // Odd spacing, escapes and non-ASCII text: the record is kept as delivered, not as
        // JSON would re-encode it.
        let record = "{ \"eventVersion\":\"1.08\", \"eventID\":\"e1\",\"requestParameters\":{\"note\":\"caf\\u00e9 é\\n\"}}";
        let frame = one_block(&["{\"eventID\":\"e0\"}", record, "{\"eventID\":\"e2\"}"]);
        assert_eq!(decompress(&conn, "e1", DICTIONARY_ID, &frame, 1).expect("decompressed"), record);
        let err = decompress(&conn, "e1", DICTIONARY_ID, &frame, 3).expect_err("no fourth record");
        assert!(err.to_string().contains("its block has no record 3"), "{err}");
    }

    #[test]
    fn records_fill_blocks_in_order() {
        let records: Vec<String> =
            (0..200).map(|i| format!("{{\"eventID\":\"{i}\",\"pad\":\"{}\"}}", "x".repeat(500))).collect();
        let stored = StoredRecords::compress(records.iter().map(String::as_str)).expect("compressed");
        assert!(stored.blocks.len() > 1, "200 records of 520 bytes make more than one block");
        assert_eq!(stored.len(), 200);
        let conn = database();
        let back: Vec<String> = stored
            .blocks
            .iter()
            .flat_map(|b| decompress_block(&conn, "e", DICTIONARY_ID, &b.frame).expect("decompressed"))
            .map(|r| r.expect("every slot holds its record"))
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn emptied_slots_go_and_an_empty_block_is_deleted() {
        let conn = database();
        let frame = one_block(&["{\"eventID\":\"a\"}", "{\"eventID\":\"b\"}"]);
        conn.execute(
            "INSERT INTO record_blocks (id, dictionary, records) VALUES (7, ?1, ?2)",
            params![DICTIONARY_ID, frame],
        )
        .expect("block");
        let read = |conn: &Connection| -> Vec<u8> {
            conn.query_row("SELECT records FROM record_blocks WHERE id = 7", [], |r| r.get(0)).expect("block")
        };
        empty_slots(&conn, 7, &BTreeSet::from([0])).expect("slot 0 emptied");
        let frame = read(&conn);
        assert_eq!(decompress(&conn, "b", DICTIONARY_ID, &frame, 1).expect("b kept"), "{\"eventID\":\"b\"}");
        assert!(decompress(&conn, "a", DICTIONARY_ID, &frame, 0).is_err(), "a was dropped");
        assert!(empty_slots(&conn, 7, &BTreeSet::from([1])).expect("slot 1 emptied") > 0);
        let left: i64 =
            conn.query_row("SELECT count(*) FROM record_blocks", [], |r| r.get(0)).expect("count");
        assert_eq!(left, 0, "a block with no record left is deleted");
    }

    #[test]
    fn the_dictionary_shrinks_a_kms_record() {
        let record = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:app","arn":"arn:aws:sts::111122223333:assumed-role/App/app","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/App","accountId":"111122223333","userName":"App"}}},"eventTime":"2024-05-01T10:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-sdk-go-v2/1.26.1","requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"},"responseElements":null,"requestID":"0f0e0d0c-0b0a-0908-0706-050403020100","eventID":"00010203-0405-0607-0809-0a0b0c0d0e0f","readOnly":true,"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;
        let frame = one_block(&[record]);
        assert!(frame.len() * 3 < record.len(), "{} bytes from {}", frame.len(), record.len());
    }

    #[test]
    fn a_damaged_frame_is_an_error_naming_the_event() {
        let conn = database();
        let mut frame = one_block(&["{\"eventID\":\"e1\"}"]);
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        for (dictionary, frame) in
            [(DICTIONARY_ID, &frame[..]), (DICTIONARY_ID, &b"not zstd"[..]), (9, &frame[..])]
        {
            let err = decompress(&conn, "e1", dictionary, frame, 0).expect_err("damaged frame read");
            assert!(err.to_string().contains("record of event e1"), "{err}");
        }
    }
}
