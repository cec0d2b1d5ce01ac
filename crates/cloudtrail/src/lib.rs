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
//! [`ObjectKey`] classifies S3 keys and file names (log, digest, insight, other), and
//! [`envelope::unwrap_event`] turns a function event (S3, SQS, SNS, EventBridge, CloudWatch
//! Logs) into the objects or records it announces.
#![forbid(unsafe_code)]

mod decode;
pub mod envelope;
mod error;
mod key;
mod limits;
mod scan;

pub use decode::{is_gzip, open};
pub use error::ObjectError;
pub use key::{KeyClass, ObjectKey};
pub use limits::Limits;
pub use scan::{ObjectFormat, ReadSummary, ScanError, for_each_record};

/// The `eventSource` values granttrail keeps: KMS, IAM and Organizations for their policy
/// changes, and CloudTrail for trail selector changes. Records whose bytes contain none of them
/// are skipped without being parsed.
pub const RELEVANT_EVENT_SOURCES: [&str; 4] =
    ["kms.amazonaws.com", "iam.amazonaws.com", "organizations.amazonaws.com", "cloudtrail.amazonaws.com"];

/// Cheap pre-filter: can these record bytes be a record granttrail keeps? A `false` is
/// certain; a `true` must be confirmed by parsing `eventSource`.
pub fn may_be_relevant(record: &[u8]) -> bool {
    static FINDERS: std::sync::LazyLock<Vec<memchr::memmem::Finder<'static>>> =
        std::sync::LazyLock::new(|| {
            RELEVANT_EVENT_SOURCES.iter().map(|s| memchr::memmem::Finder::new(s.as_bytes())).collect()
        });
    FINDERS.iter().any(|finder| finder.find(record).is_some())
}
