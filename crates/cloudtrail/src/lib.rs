//! Reading CloudTrail objects: from raw bytes (gzip or plain JSON) to the JSON text of each
//! record, one at a time.
//!
//! CloudTrail log files can be 50 MB compressed and several hundred MB of JSON, so nothing here
//! builds a tree of the whole object: [`for_each_record`] splits the decompressed stream into
//! records with a small byte scanner and hands each record's JSON text to a callback, holding
//! at most one record (bounded by [`Limits::max_record_bytes`]) in memory.
//!
//! Accepted object shapes (all optionally gzip-compressed, detected by magic bytes):
//! - a CloudTrail log file, `{"Records":[...]}`;
//! - the output of `aws cloudtrail lookup-events`, `{"Events":[{"CloudTrailEvent":"<record>"}]}`;
//! - one record per line (JSON Lines), or a file holding a single record object.
//!
//! [`ObjectKey`] classifies S3 keys and file names (log, digest, insight, other).
#![forbid(unsafe_code)]

mod decode;
mod error;
mod key;
mod limits;
mod scan;

pub use decode::{is_gzip, open};
pub use error::ObjectError;
pub use key::{KeyClass, ObjectKey};
pub use limits::Limits;
pub use scan::{ObjectFormat, ReadSummary, ScanError, for_each_record};

/// The text every KMS record carries in `eventSource`. Records whose bytes do not contain it
/// are skipped without being parsed.
pub const KMS_EVENT_SOURCE: &str = "kms.amazonaws.com";

/// Cheap pre-filter: can these record bytes be a KMS record? A `false` is certain; a `true`
/// must be confirmed by parsing `eventSource`.
pub fn may_be_kms(record: &[u8]) -> bool {
    memchr::memmem::find(record, KMS_EVENT_SOURCE.as_bytes()).is_some()
}
