//! The ingest pipeline: objects in, committed events and grants out.
//!
//! Each object is read in one streaming pass and written in one transaction: either all its
//! KMS events are committed (and the grants they touch recomputed) or, when the object is
//! rejected, none are. Non-KMS records are dropped by a byte search before any parsing.
//! Problems inside single KMS records skip that record with a count; problems with the
//! object's structure (corrupt gzip, not JSON, not CloudTrail, over a limit) reject the
//! object. Either way the error names the object. On PostgreSQL, work a deadlock with another
//! writer undid is read and written again ([`CONFLICT_ATTEMPTS`]).
#![forbid(unsafe_code)]

mod config;
mod object;
mod parallel;
pub mod report;
mod sources;
pub mod verify;

pub use config::Config;
pub use granttrail_store::{CONFLICT_ATTEMPTS, conflict_pause};
pub use object::{IngestError, Outcome, ingest_object};
pub use parallel::{COMMIT_BYTES, Opener, Plan, ingest_parallel};
pub use sources::{Skip, Source, SourceList, collect_sources};

pub use granttrail_cloudtrail::Limits;
pub use granttrail_store::ObjectCounts;

/// Seconds since the epoch, now. The pipeline is the I/O edge, so it may read the clock.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
