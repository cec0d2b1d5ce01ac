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
pub mod digest;
pub mod envelope;
mod error;
mod key;
mod limits;
mod scan;

pub use decode::{is_gzip, open};
pub use error::ObjectError;
pub use key::{KeyClass, ObjectKey};
pub use limits::Limits;
pub use scan::{ObjectFormat, ReadSummary, ScanError, for_each_record, for_each_record_hashed};

/// The services whose events granttrail keeps (`eventSource` is `<service>.amazonaws.com`):
/// KMS, IAM and Organizations for their policy changes, and CloudTrail for trail selector
/// changes. Records whose bytes name none of them are skipped without being parsed.
pub const RELEVANT_SERVICES: [&str; 4] = ["kms", "iam", "organizations", "cloudtrail"];

/// Cheap pre-filter: can these record bytes be a record granttrail keeps? A `false` is
/// certain; a `true` must be confirmed by parsing `eventSource`.
///
/// True when the bytes contain `<service>.amazonaws.com` for one of [`RELEVANT_SERVICES`]. One
/// pass over the record finds every `.amazonaws.com` (two or three in a typical record) and
/// looks for a service name just before it, instead of one pass per name.
pub fn may_be_relevant(record: &[u8]) -> bool {
    static DOMAIN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(".amazonaws.com"));
    DOMAIN.find_iter(record).any(|at| {
        let before = record.get(..at).unwrap_or_default();
        RELEVANT_SERVICES.iter().any(|service| before.ends_with(service.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-pass search says what searching for each `<service>.amazonaws.com` says.
        #[test]
        fn one_pass_finds_what_a_search_per_source_finds(
            pieces in prop::collection::vec(prop::sample::select(vec![
                "kms", "iam", "organizations", "cloudtrail", "s3", "ms", "trail", ".amazonaws.com",
                ".amazonaws.co", "amazonaws.com", ".", "\"", "x", "kms.", "iam.amazonaws.com",
            ]), 0..12)
        ) {
            let record = pieces.concat();
            let per_source = RELEVANT_SERVICES
                .iter()
                .any(|s| record.contains(&format!("{s}.amazonaws.com")));
            prop_assert_eq!(may_be_relevant(record.as_bytes()), per_source, "{}", record);
        }
    }

    #[test]
    fn records_of_other_services_are_not_relevant() {
        let s3 =
            br#"{"eventSource":"s3.amazonaws.com","userAgent":"kms.amazonaws.co","sourceIPAddress":"iam"}"#;
        assert!(!may_be_relevant(s3));
        let kms = br#"{"eventSource":"s3.amazonaws.com","invokedBy":"kms.amazonaws.com"}"#;
        assert!(may_be_relevant(kms), "a later occurrence counts");
        assert!(may_be_relevant(br#"{"eventSource":"organizations.amazonaws.com"}"#));
    }
}
