//! Ingesting many objects with every core: worker threads decompress, split and normalise
//! objects (several at once), while one writer stores them, object by object, in the order
//! given. A single large object is pipelined too: its worker keeps decoding while the writer
//! inserts the events already parsed.
//!
//! The writer is the only thread that touches the database. It writes each object as
//! [`crate::ingest_object`] would, all or nothing, but on SQLite commits several objects at a
//! time ([`COMMIT_BYTES`]); the result equals a single-threaded run. On PostgreSQL, where other
//! writers may write at once, each object commits alone, and objects a deadlock with another
//! writer undid are read and written again ([`CONFLICT_ATTEMPTS`]).
//! Memory is bounded: at most two objects per worker are decoded ahead of the writer, and each
//! holds at most [`BATCHES_IN_FLIGHT`] batches.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use granttrail_cloudtrail::digest::Sha256;
use granttrail_cloudtrail::{
    Limits, ObjectError, ReadSummary, ScanError, for_each_record, for_each_record_hashed,
};
use granttrail_grants::{KmsEvent, RecordError};
use granttrail_store::{CONFLICT_ATTEMPTS, Store, StoreError, StoredRecords, conflict_pause};

use crate::object::parse_record;
use crate::{IngestError, Outcome};

/// Events handed from a worker to the writer at a time.
pub const BATCH: usize = 512;
/// Batches one object may have waiting for the writer.
pub const BATCHES_IN_FLIGHT: usize = 4;

enum Item {
    /// Normalised events with their records, compressed here, off the writer's thread.
    Events {
        events: Vec<KmsEvent>,
        records: StoredRecords,
        skipped: u64,
        first_skip: Option<RecordError>,
    },
    /// The whole object was read (with its content's SHA-256 when the plan asks for it).
    Done(ReadSummary, Option<Sha256>),
    Failed(IngestError),
}

/// Why a decoding thread stops reading an object early.
enum Stop {
    /// The writer stopped listening (a store error): nothing more to do.
    WriterGone,
    /// A record could not be compressed: the object is rejected.
    Failed(StoreError),
}

/// Opens an object for reading; an error rejects the object.
pub type Opener<'a, S> = dyn Fn(&S) -> std::io::Result<Box<dyn Read + Send>> + Sync + 'a;

/// How a parallel ingest runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub limits: Limits,
    /// Decoding threads.
    pub jobs: usize,
    /// The time recorded for each committed object.
    pub now: i64,
    /// Objects are committed together until they add up to this many decompressed bytes
    /// ([`COMMIT_BYTES`]).
    pub commit_bytes: u64,
    /// Hash each object's decompressed content as it is read, for verification against
    /// CloudTrail's digests ([`Outcome::Ingested::content_sha256`]).
    pub hash_content: bool,
}

/// Ingests `sources` as `plan` says. `name` gives each source's stored name, `open` its
/// bytes; `report` hears about each object once it is committed (with its batch), in order.
pub fn ingest_parallel<S: Sync>(
    store: &mut Store,
    sources: &[S],
    name: &(dyn Fn(&S) -> String + Sync),
    open: &Opener<'_, S>,
    plan: &Plan,
    report: &mut dyn FnMut(&S, &str, Outcome),
) -> Result<(), StoreError> {
    let names: Vec<String> = sources.iter().map(name).collect();
    let mut pending: Vec<usize> = (0..sources.len()).collect();
    let mut attempt = 1;
    loop {
        let mut reported = vec![false; sources.len()];
        let result = ingest_these(store, sources, &pending, &names, open, plan, &mut |i, n, outcome| {
            reported[i] = true;
            report(&sources[i], n, outcome)
        });
        match result {
            // A conflict with another writer undid the open batch: its objects, and those
            // after it, are read and written again. The attempts count conflicts in a row: a
            // long run may meet many, with objects committed between them.
            Err(e) if e.is_conflict() => {
                let before = pending.len();
                pending.retain(|&i| !reported[i]);
                let Some(this) = attempt_after_conflict(attempt, pending.len() < before) else {
                    return Err(e);
                };
                std::thread::sleep(conflict_pause(this));
                attempt = this + 1;
            }
            result => return result,
        }
    }
}

/// Which attempt a conflict ended, counting conflicts in a row: from 1 again when objects were
/// committed since the last. `None` once [`CONFLICT_ATTEMPTS`] came in a row: give up.
fn attempt_after_conflict(attempt: u32, committed_since: bool) -> Option<u32> {
    let attempt = if committed_since { 1 } else { attempt };
    (attempt < CONFLICT_ATTEMPTS).then_some(attempt)
}

/// [`ingest_parallel`] of the sources at `indices`, once.
fn ingest_these<S: Sync>(
    store: &mut Store,
    sources: &[S],
    indices: &[usize],
    names: &[String],
    open: &Opener<'_, S>,
    plan: &Plan,
    report: &mut dyn FnMut(usize, &str, Outcome),
) -> Result<(), StoreError> {
    let limits = &plan.limits;
    // Objects already committed are skipped before anything is read.
    let mut todo = Vec::new();
    for &i in indices {
        if store.is_ingested(&names[i])? {
            report(i, &names[i], Outcome::AlreadyIngested);
        } else {
            todo.push(i);
        }
    }
    let (senders, receivers): (Vec<_>, Vec<_>) =
        todo.iter().map(|_| sync_channel::<Item>(BATCHES_IN_FLIGHT)).unzip();
    let senders: Mutex<Vec<Option<SyncSender<Item>>>> = Mutex::new(senders.into_iter().map(Some).collect());
    let next = AtomicUsize::new(0);
    let jobs = plan.jobs.clamp(1, 64);
    // A worker takes a permit before each object and the writer returns one as it reaches an
    // object, so at most `ahead` objects are decoded ahead of the one being written. Without them, objects
    // small enough to fit their channel were all decoded ahead, and held, whatever their number.
    let ahead = 2 * jobs;
    let (permit, permits) = sync_channel::<()>(ahead);
    for _ in 0..ahead {
        let _ = permit.send(());
    }
    let permits = Mutex::new(permits);

    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    // No permit: the writer has stopped.
                    if !matches!(permits.lock().map(|p| p.recv()), Ok(Ok(()))) {
                        break;
                    }
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = todo.get(slot) else { break };
                    let sender = senders.lock().ok().and_then(|mut s| s.get_mut(slot).and_then(Option::take));
                    if let Some(tx) = sender {
                        decode(&sources[index], open, limits, plan.hash_content, &tx);
                    }
                }
            });
        }
        // On a store error the remaining receivers are dropped, so workers blocked on them
        // stop instead of waiting forever.
        write_in_order(store, &todo, names, receivers, permit, plan, report)
    })
}

/// The events a decoding thread has parsed and not sent yet, with their records as delivered
/// (compressed together when sent).
#[derive(Default)]
struct Batch {
    events: Vec<KmsEvent>,
    raws: Vec<String>,
}

fn decode<S>(source: &S, open: &Opener<'_, S>, limits: &Limits, hash: bool, tx: &SyncSender<Item>) {
    let reader = match open(source) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Item::Failed(IngestError::Open(e)));
            return;
        }
    };
    let mut batch = Batch::default();
    let mut skipped = 0u64;
    let mut first_skip = None;
    let flush = |batch: &mut Batch, skipped: &mut u64, first_skip: &mut Option<RecordError>| {
        let records = StoredRecords::compress(batch.raws.iter().map(String::as_str)).map_err(Stop::Failed)?;
        batch.raws.clear();
        let item = Item::Events {
            events: std::mem::take(&mut batch.events),
            records,
            skipped: *skipped,
            first_skip: first_skip.take(),
        };
        *skipped = 0;
        tx.send(item).map_err(|_| Stop::WriterGone)
    };
    let on_record = |record: &[u8]| {
        match parse_record(record) {
            Ok(Some((event, raw))) => {
                batch.events.push(event);
                batch.raws.push(raw);
            }
            Ok(None) => {}
            Err(e) => {
                skipped += 1;
                first_skip.get_or_insert(e);
            }
        }
        if batch.events.len() >= BATCH {
            flush(&mut batch, &mut skipped, &mut first_skip)?;
        }
        Ok(())
    };
    let read = if hash {
        for_each_record_hashed(reader, limits, on_record).map(|(summary, sha256)| (summary, Some(sha256)))
    } else {
        for_each_record(reader, limits, on_record).map(|summary| (summary, None))
    };
    let last = match read {
        Ok((summary, sha256)) => {
            flush(&mut batch, &mut skipped, &mut first_skip).map(|()| Item::Done(summary, sha256))
        }
        Err(ScanError::Object(e)) => Ok(Item::Failed(IngestError::Object(e))),
        Err(ScanError::Callback(Stop::Failed(e))) => Ok(Item::Failed(IngestError::Store(e))),
        // The writer stopped listening: nothing more to do.
        Err(ScanError::Callback(Stop::WriterGone)) => Err(Stop::WriterGone),
    };
    if let Ok(item) = last {
        let _ = tx.send(item);
    }
}

/// Objects are committed in batches of at least this many decompressed bytes (or at the end):
/// the index pages every object touches are then written to the log once per batch. Each
/// object is still all or nothing, and is reported once its batch is committed.
pub const COMMIT_BYTES: u64 = 32 << 20;

fn write_in_order(
    store: &mut Store,
    todo: &[usize],
    names: &[String],
    receivers: Vec<Receiver<Item>>,
    permit: SyncSender<()>,
    plan: &Plan,
    report: &mut dyn FnMut(usize, &str, Outcome),
) -> Result<(), StoreError> {
    let now = plan.now;
    let one_object_a_commit = store.writers_share();
    let mut batch = store.begin_batch()?;
    let mut batched = 0u64;
    let mut done: Vec<(usize, Outcome)> = Vec::new();
    for (slot, rx) in receivers.into_iter().enumerate() {
        let index = todo[slot];
        let name = &names[index];
        // The writer has reached this object: another may be decoded.
        let _ = permit.send(());
        // An object whose events came in one batch (most do) is read whole before it is
        // written, and needs no savepoint: nothing can fail it half way.
        let first = rx.recv();
        let second = matches!(first, Ok(Item::Events { .. })).then(|| rx.recv());
        let whole = matches!(
            (&first, &second),
            (Ok(Item::Done(..)), None) | (Ok(Item::Events { .. }), Some(Ok(Item::Done(..))))
        );
        // An error storing this object names it.
        let in_object = |e: StoreError| e.in_object(name);
        let begun = if whole { batch.begin_whole_object(name) } else { batch.begin_object(name) };
        let Some(mut writer) = begun.map_err(in_object)? else {
            done.push((index, Outcome::AlreadyIngested));
            continue;
        };
        let mut received = std::iter::once(first).chain(second);
        let mut first_skip = None;
        let outcome = loop {
            match received.next().unwrap_or_else(|| rx.recv()) {
                Ok(Item::Events { events, records, skipped, first_skip: skip }) => {
                    writer.add_records(&events, &records).map_err(in_object)?;
                    for _ in 0..skipped {
                        writer.skip_record();
                    }
                    if first_skip.is_none() {
                        first_skip = skip;
                    }
                }
                Ok(Item::Done(summary, content_sha256)) => {
                    if let Some(sha256) = content_sha256 {
                        writer.set_content_sha256(sha256);
                    }
                    let format = format!("{:?}", summary.format);
                    let counts =
                        writer.commit(&format, summary.bytes, summary.records, now).map_err(in_object)?;
                    batched += summary.bytes;
                    break Outcome::Ingested { counts, first_skip, content_sha256 };
                }
                Ok(Item::Failed(error)) => {
                    drop(writer);
                    batch.record_rejection(name, &error.to_string(), now).map_err(in_object)?;
                    break Outcome::Rejected(error);
                }
                Err(_) => {
                    // The worker vanished without a verdict (it cannot, short of a bug): treat
                    // the object as unreadable rather than commit part of it.
                    drop(writer);
                    let error =
                        IngestError::Object(ObjectError::Io(std::io::Error::other("decoder stopped")));
                    batch.record_rejection(name, &error.to_string(), now).map_err(in_object)?;
                    break Outcome::Rejected(error);
                }
            }
        };
        done.push((index, outcome));
        if batched >= plan.commit_bytes || one_object_a_commit {
            batch.commit()?;
            for (index, outcome) in done.drain(..) {
                report(index, &names[index], outcome);
            }
            batch = store.begin_batch()?;
            batched = 0;
        }
    }
    batch.commit()?;
    for (index, outcome) in done {
        report(index, &names[index], outcome);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_counted_in_a_row() {
        assert_eq!(attempt_after_conflict(1, false), Some(1));
        assert_eq!(attempt_after_conflict(CONFLICT_ATTEMPTS - 1, false), Some(CONFLICT_ATTEMPTS - 1));
        assert_eq!(attempt_after_conflict(CONFLICT_ATTEMPTS, false), None, "as many in a row as allowed");
        // Objects committed since the last conflict: this one is the first in a row.
        assert_eq!(attempt_after_conflict(CONFLICT_ATTEMPTS, true), Some(1));
        assert_eq!(attempt_after_conflict(3, true), Some(1));
    }
}
