//! Reading CloudTrail objects from S3: one client set-up for the CLI and the Lambda, a
//! listing pruned by the bucket layout, and object bodies streamed into the synchronous
//! ingest pipeline.
#![forbid(unsafe_code)]

mod client;
pub mod layout;
mod reader;
mod walk;

pub use aws_sdk_s3::Client;
pub use client::{ClientOptions, connect};
pub use layout::Window;
pub use reader::{BodyReader, fetch_digest_object, fetch_object, open_digest_object, open_object};
pub use walk::{Listed, Walker, list_all};

/// `s3://bucket[/prefix]`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket[/prefix]`; `None` when `text` is not an S3 URL.
    pub fn parse(text: &str) -> Option<S3Url> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| S3Url { bucket: bucket.to_string(), prefix: prefix.to_string() })
    }
}

/// The name an S3 object is stored and reported under.
pub fn object_name(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// A failed S3 request, with what was asked.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct S3Error {
    pub what: String,
    pub message: String,
}

impl S3Error {
    fn new(what: impl Into<String>, error: impl std::error::Error) -> S3Error {
        S3Error { what: what.into(), message: error_chain(&error) }
    }
}

/// An error with its sources: an AWS SDK error's own message is often just "service error";
/// its source chain says what happened.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            S3Url::parse("s3://trail/AWSLogs/1/"),
            Some(S3Url { bucket: "trail".into(), prefix: "AWSLogs/1/".into() })
        );
        assert_eq!(S3Url::parse("s3://trail"), Some(S3Url { bucket: "trail".into(), prefix: String::new() }));
        assert_eq!(S3Url::parse("s3:///x"), None);
        assert_eq!(S3Url::parse("/tmp/s3:/x"), None);
    }
}
