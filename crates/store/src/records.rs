//! The CloudTrail records behind the events: kept byte for byte, compressed.
//!
//! Each record is one zstd frame, compressed with a dictionary trained on CloudTrail KMS
//! records (`bench/train-dictionary`). A KMS record is 1-2 KB of JSON that repeats the keys,
//! ARNs and agents of every other record; the dictionary holds those, so a record shrinks
//! about sevenfold on its own, and each stays readable (and prunable) without its neighbours.
//! docs/schema.md gives the measurements behind this choice.
//!
//! The dictionary is also stored in the database (`record_dictionaries`), so a record can be
//! read with `sqlite3` and the `zstd` command alone. A dictionary, once used, never changes:
//! a better one would be added under a new id, and the frames name the one they need.

use std::cell::RefCell;

use crate::db::{Connection, OptionalExtension, params};

use crate::{Result, StoreError};

/// The id of the dictionary granttrail compresses new records with (also written into each
/// frame's header, so `zstd -D` checks it).
pub(crate) const DICTIONARY_ID: i64 = 1;

/// Dictionary [`DICTIONARY_ID`], trained by `bench/train-dictionary`.
const DICTIONARY: &[u8] = include_bytes!("records.zdict");

/// zstd's fastest level: with the dictionary it compresses as well as the default level 3
/// (220 and 219 bytes a record), and higher levels gain under 10 % for several times the time
/// (docs/schema.md).
const LEVEL: i32 = 1;

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

/// A record compressed for storage ([`crate::ObjectWriter::add_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub(crate) frame: Vec<u8>,
}

impl StoredRecord {
    /// Compresses `record` (the CloudTrail record as delivered) with the current dictionary.
    pub fn compress(record: &str) -> Result<StoredRecord> {
        COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(RecordCompressor::new()?),
            };
            let frame = compressor
                .zstd
                .compress(record.as_bytes())
                .map_err(|e| StoreError::Invalid(format!("cannot compress a record: {e}")))?;
            Ok(StoredRecord { frame })
        })
    }

    /// The compressed size, in bytes.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}

/// Makes sure the database holds the dictionary new records are compressed with.
pub(crate) fn store_dictionary(conn: &Connection) -> Result<()> {
    conn.execute(
        "INSERT INTO record_dictionaries (id, dictionary) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![DICTIONARY_ID, DICTIONARY],
    )?;
    Ok(())
}

/// The record held in `frame`, compressed with dictionary `dictionary`. `event_id` names the
/// record in errors.
pub(crate) fn decompress(conn: &Connection, event_id: &str, dictionary: i64, frame: &[u8]) -> Result<String> {
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
    let text = zstd::bulk::Decompressor::with_dictionary(bytes)
        .and_then(|mut d| d.decompress(frame, capacity))
        .map_err(|e| corrupt(e.to_string()))?;
    String::from_utf8(text).map_err(|e| corrupt(e.to_string()))
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
            write.execute(params![rowid, DICTIONARY_ID, StoredRecord::compress(&raw)?.frame])?;
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
            "CREATE TABLE record_dictionaries (id INTEGER PRIMARY KEY, dictionary BLOB NOT NULL);",
        )
        .expect("table");
        store_dictionary(&conn).expect("dictionary stored");
        conn
    }

    #[test]
    fn a_record_comes_back_byte_for_byte() {
        let conn = database();
        // Odd spacing, escapes and non-ASCII text: the record is kept as delivered, not as
        // JSON would re-encode it.
        let record = "{ \"eventVersion\":\"1.08\", \"eventID\":\"e1\",\"requestParameters\":{\"note\":\"caf\\u00e9 é\\n\"}}";
        let frame = StoredRecord::compress(record).expect("compressed").frame;
        assert_eq!(decompress(&conn, "e1", DICTIONARY_ID, &frame).expect("decompressed"), record);
    }

    #[test]
    fn the_dictionary_shrinks_a_kms_record() {
        let record = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:app","arn":"arn:aws:sts::111122223333:assumed-role/App/app","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/App","accountId":"111122223333","userName":"App"}}},"eventTime":"2024-05-01T10:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-sdk-go-v2/1.26.1","requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"},"responseElements":null,"requestID":"0f0e0d0c-0b0a-0908-0706-050403020100","eventID":"00010203-0405-0607-0809-0a0b0c0d0e0f","readOnly":true,"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;
        let frame = StoredRecord::compress(record).expect("compressed");
        assert!(frame.len() * 3 < record.len(), "{} bytes from {}", frame.len(), record.len());
    }

    #[test]
    fn a_damaged_frame_is_an_error_naming_the_event() {
        let conn = database();
        let mut frame = StoredRecord::compress("{\"eventID\":\"e1\"}").expect("compressed").frame;
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        for (dictionary, frame) in
            [(DICTIONARY_ID, &frame[..]), (DICTIONARY_ID, &b"not zstd"[..]), (9, &frame[..])]
        {
            let err = decompress(&conn, "e1", dictionary, frame).expect_err("damaged frame read");
            assert!(err.to_string().contains("record of event e1"), "{err}");
        }
    }
}
