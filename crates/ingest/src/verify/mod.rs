//! Checking log files against CloudTrail's signed digests, offline.
//!
//! [`read`] turns objects (files, or S3 objects with their metadata) into [`Input`]s: each log
//! file's SHA-256 and each digest's content. [`analyse`] then judges them, per account and
//! region, without any I/O:
//! - a digest must sit where it says it was delivered, hash as the next digest in its chain
//!   records, and (given the public keys) carry a valid signature; one that fails is not
//!   trusted, and neither is what it lists. A digest whose own S3 metadata signature verifies
//!   is not discredited by a next digest that is itself untrusted (planted after it);
//! - a log file a trusted digest lists is **verified** when its content hashes as listed,
//!   **altered** otherwise, and **missing** when it is not among the inputs;
//! - a log file no trusted digest lists is **unlisted** when digests cover the hour after its
//!   delivery (CloudTrail would have listed it), and only **not covered** when they do not
//!   (validation off, a gap in the chain, or newer than the newest digest): not an error, but
//!   no verification either.

mod analyse;
mod read;
#[cfg(test)]
mod tests;
pub mod walk;

pub use analyse::{DELIVERY_WINDOW_SECONDS, analyse};
pub use read::{
    DigestObject, Input, LogObject, MAX_DIGEST_BYTES, MAX_DIGEST_STORED_BYTES, PathsRead, digest_from_stored,
    hashed_log, log_from_stored, named_log, read_digest, read_log, read_parallel, read_paths,
};

use granttrail_grants::integrity::file_name;
pub use granttrail_grants::integrity::{FileVerdict, LogVerdict, MissingLogFile};
use granttrail_grants::timestamp;
use serde::Serialize;

/// Which inputs to judge (the same selection `ingest` offers).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only log files delivered at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// Only log files delivered up to an hour after this time.
    pub until: Option<i64>,
    /// Only these accounts (empty: all).
    pub accounts: Vec<String>,
    /// Only these regions (empty: all).
    pub regions: Vec<String>,
    /// Judge only the log files the digest of this name lists; other digests among the inputs
    /// serve only the chain and the signatures (the Lambda, checking each digest as it arrives
    /// with the one before it).
    pub listings_of: Option<String>,
    /// Judge one slice of a longer walk ([`walk`]); none: the inputs are the whole story.
    pub slice: Option<Slice>,
}

/// One day of one account and region, judged with its neighbours: the log files given are
/// judged, a listed file is missing only if its name's time is in `[from, to)`, and the digests
/// named in `own` are counted and reported; the others (the days before and after) are read for
/// the chain, the signatures the next digest records, and their listings.
#[derive(Debug, Clone, Default)]
pub struct Slice {
    pub from: i64,
    pub to: i64,
    pub own: std::collections::HashSet<String>,
}

/// What went wrong with one object. Every problem is a reason to distrust the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A log file whose content does not hash as its digest lists (or cannot be read).
    Altered,
    /// A log file a digest lists that is not among the inputs.
    Missing,
    /// A log file no trusted digest lists, delivered while digests were being written.
    Unlisted,
    /// A digest whose content does not hash as the next digest in its chain records.
    DigestAltered,
    /// A digest the chain names that is not among the inputs.
    DigestMissing,
    /// A digest found somewhere other than where it says it was delivered.
    DigestMoved,
    /// A digest whose signature does not verify.
    DigestSignatureInvalid,
    /// A digest signed with a key the public keys given do not hold.
    DigestKeyUnknown,
    /// A digest that is not a readable CloudTrail digest.
    DigestUnreadable,
    /// A digest two others name as their previous one: CloudTrail writes one chain, so one of
    /// them is not CloudTrail's.
    DigestChainForked,
}

impl ProblemKind {
    /// The word printed in the verdict column.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Missing => "missing",
            ProblemKind::Unlisted => "unlisted",
            ProblemKind::DigestAltered => "digest altered",
            ProblemKind::DigestMissing => "digest missing",
            ProblemKind::DigestMoved => "digest moved",
            ProblemKind::DigestSignatureInvalid => "digest signature invalid",
            ProblemKind::DigestKeyUnknown => "digest key unknown",
            ProblemKind::DigestUnreadable => "digest unreadable",
            ProblemKind::DigestChainForked => "digest chain forked",
        }
    }
}

/// One problem: the object (as found, or as a digest names it), the verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub object: String,
    pub verdict: ProblemKind,
    pub reason: String,
    pub account: Option<String>,
    pub region: Option<String>,
}

/// A period (seconds since the epoch, `[start, end)`); RFC 3339 times in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("Period", 2)?;
        s.serialize_field("start", &timestamp::format(self.start))?;
        s.serialize_field("end", &timestamp::format(self.end))?;
        s.end()
    }
}

/// The verification of one account and region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub account: String,
    pub region: String,
    /// Log files among the inputs, by verdict.
    pub verified: u64,
    pub altered: u64,
    pub unlisted: u64,
    pub not_covered: u64,
    /// Log files digests list that are not among the inputs.
    pub missing: u64,
    /// Digests read, and how many of them are trusted.
    pub digests: u64,
    pub digests_trusted: u64,
    /// Digest signatures checked and found valid, and signatures that could not be checked
    /// (no public keys given, or the newest digest of a downloaded copy, whose signature lives
    /// only in its S3 metadata).
    pub signatures_valid: u64,
    pub signatures_unchecked: u64,
    /// The periods trusted digests cover, merged.
    pub covered: Vec<Period>,
    /// Periods between the first and last covered moments that no digest covers.
    pub gaps: Vec<Period>,
    /// Whole hours inside the gaps (each rounded up).
    pub hours_without_digests: u64,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Problems, ordered by account, region, verdict and object.
    pub problems: Vec<Problem>,
    /// One per account and region, in that order.
    pub summaries: Vec<Summary>,
    /// Were signatures checked (public keys given)?
    pub signatures_checked: bool,
    /// The verdict of every log file among the inputs, by the name it is stored under, with
    /// the reason for a verdict other than verified.
    #[serde(skip)]
    pub log_files: Vec<(String, LogVerdict, Option<String>)>,
    /// The log files digests list that are not among the inputs.
    #[serde(skip)]
    pub missing: Vec<MissingLogFile>,
}

impl Verification {
    /// Did anything fail (exit status 1)?
    pub fn failed(&self) -> bool {
        !self.problems.is_empty()
    }

    /// The verdict on each log file judged, as the store keeps it (by file name), reached `at`.
    pub fn file_verdicts(&self, at: i64) -> Vec<FileVerdict> {
        self.log_files
            .iter()
            .map(|(object, verdict, reason)| FileVerdict {
                file_name: file_name(object).to_string(),
                verdict: *verdict,
                reason: reason.clone(),
                object: object.clone(),
                verified_at: at,
            })
            .collect()
    }
}
