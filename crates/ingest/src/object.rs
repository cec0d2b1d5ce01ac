use std::io::Read;

use granttrail_cloudtrail::digest::Sha256;
use granttrail_cloudtrail::{Limits, ObjectError, ScanError, for_each_record_hashed, may_be_relevant};
use granttrail_grants::{KmsEvent, RecordError, normalise, normalise_str};
use granttrail_store::{ObjectCounts, ObjectWriter, Store, StoreError, StoredRecords};

/// Events [`ingest_object`] hands the store at a time.
const EVENTS_PER_WRITE: usize = 128;

/// A failure that stops one object. The object's name is added by whoever reports it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Object(#[from] ObjectError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot open: {0}")]
    Open(std::io::Error),
}

/// What happened to one object.
#[derive(Debug)]
pub enum Outcome {
    /// Committed. `skipped` tells how many KMS records were malformed, with the first reason.
    Ingested {
        counts: ObjectCounts,
        first_skip: Option<RecordError>,
        /// The SHA-256 of the decompressed content, when the read was asked to hash it.
        content_sha256: Option<Sha256>,
    },
    /// The same object was committed before; nothing was read.
    AlreadyIngested,
    /// Rejected whole; nothing of it was stored.
    Rejected(IngestError),
}

/// The one decision both ingest paths make for each record: `Ok(None)` for a record that is
/// neither KMS nor a permission change (most are dropped by a byte search alone), `Err` for one
/// that could be relevant but cannot be used (skipped with a count). A kept record comes with
/// its text, stored as delivered (invalid UTF-8, which the parser rejects anyway, replaced).
pub(crate) fn parse_record(record: &[u8]) -> Result<Option<(KmsEvent, String)>, RecordError> {
    if !may_be_relevant(record) {
        return Ok(None);
    }
    // One UTF-8 check serves both the parser and the stored copy.
    match std::str::from_utf8(record) {
        Ok(text) => Ok(normalise_str(text)?.map(|event| (event, text.to_owned()))),
        Err(_) => Ok(normalise(record)?.map(|event| (event, String::from_utf8_lossy(record).into_owned()))),
    }
}

/// Reads one object and commits its KMS events in one transaction, with the SHA-256 of its
/// content (for a CloudTrail digest that arrives later).
///
/// Store failures (the database itself) are returned as `Err`: they are not the object's
/// fault and the caller should stop. Everything wrong with the object is an
/// [`Outcome::Rejected`] and is also recorded in the `rejected_objects` table.
pub fn ingest_object<R: Read>(
    store: &mut Store,
    source: &str,
    reader: R,
    limits: &Limits,
    now: i64,
) -> Result<Outcome, StoreError> {
    if store.is_ingested(source)? {
        return Ok(Outcome::AlreadyIngested);
    }
    // None: another process committed the same object between the check and now.
    let Some(mut writer) = store.begin_object(source)? else {
        return Ok(Outcome::AlreadyIngested);
    };
    let mut first_skip = None;
    // Events are stored a few at a time: their eventIDs are looked up together.
    let mut pending: Vec<KmsEvent> = Vec::with_capacity(EVENTS_PER_WRITE);
    let mut raws: Vec<String> = Vec::with_capacity(EVENTS_PER_WRITE);
    let read = for_each_record_hashed(reader, limits, |record| {
        match parse_record(record) {
            Ok(Some((event, raw))) => {
                pending.push(event);
                raws.push(raw);
                if pending.len() >= EVENTS_PER_WRITE {
                    write(&mut writer, &mut pending, &mut raws)?;
                }
            }
            Ok(None) => {}
            Err(e) => {
                writer.skip_record();
                first_skip.get_or_insert(e);
            }
        }
        Ok::<(), StoreError>(())
    });
    match read {
        Ok((summary, sha256)) => {
            write(&mut writer, &mut pending, &mut raws)?;
            writer.set_content_sha256(sha256);
            let format = format!("{:?}", summary.format);
            let counts = writer.commit(&format, summary.bytes, summary.records, now)?;
            Ok(Outcome::Ingested { counts, first_skip, content_sha256: Some(sha256) })
        }
        Err(ScanError::Callback(store_error)) => Err(store_error),
        Err(ScanError::Object(object_error)) => {
            drop(writer);
            store.record_rejection(source, &object_error.to_string(), now)?;
            Ok(Outcome::Rejected(IngestError::Object(object_error)))
        }
    }
}

/// Stores the `pending` events with their records as delivered, and forgets them.
fn write(
    writer: &mut ObjectWriter<'_>,
    pending: &mut Vec<KmsEvent>,
    raws: &mut Vec<String>,
) -> Result<(), StoreError> {
    writer.add_records(pending, &StoredRecords::compress(raws.iter().map(String::as_str))?)?;
    pending.clear();
    raws.clear();
    Ok(())
}
