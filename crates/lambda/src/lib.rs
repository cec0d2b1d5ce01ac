//! granttrail as an AWS Lambda function on the CloudTrail bucket.
//!
//! Each invocation unwraps the event (S3 notifications directly or through SQS, SNS and
//! EventBridge, CloudTrail's own notifications, CloudWatch Logs subscriptions, EventBridge API
//! calls), streams every announced object through the same ingest pipeline as the CLI, and
//! commits it before the message is acknowledged. A message whose objects cannot all be
//! committed is reported in `batchItemFailures`, so SQS redelivers it (ingest is idempotent)
//! and finally moves it to the dead-letter queue, while the other messages are done. A digest
//! announced like a log file is checked against the log files it lists and the digest before
//! it, and the verdicts recorded. After the
//! batch, findings not published before go to SNS, one message each. A scheduled event
//! `{"granttrail": "snapshot"}` writes a consistent copy of the database to S3.
#![forbid(unsafe_code)]

mod env;
mod handler;

pub use env::Env;
pub use handler::Handler;
