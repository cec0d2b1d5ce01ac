use std::io;

/// Why a whole object was rejected. Record-level problems are not errors of this kind: the
/// callback of [`crate::for_each_record`] decides about each record.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("read failed: {0}")]
    Io(#[source] io::Error),
    #[error("gzip stream is corrupt or truncated: {0}")]
    Gzip(#[source] io::Error),
    #[error("empty object (no JSON value)")]
    Empty,
    #[error("not JSON: unexpected byte {byte:#04x} at offset {offset}")]
    NotJson { byte: u8, offset: u64 },
    #[error("JSON ends early (truncated object) at offset {offset}")]
    Truncated { offset: u64 },
    #[error("malformed JSON at offset {offset}: {what}")]
    Malformed { offset: u64, what: &'static str },
    #[error("not a CloudTrail log: {0}")]
    NotCloudTrail(&'static str),
    #[error("a CloudTrail digest file (integrity validation), not a log file")]
    Digest,
    #[error("decompressed size exceeds the limit of {limit} bytes (possible decompression bomb)")]
    TooLarge { limit: u64 },
    #[error("a JSON value of more than {limit} bytes starts at offset {offset} (record size limit)")]
    RecordTooLarge { offset: u64, limit: usize },
    #[error("JSON nesting deeper than {limit} levels at offset {offset}")]
    TooDeep { offset: u64, limit: usize },
}
