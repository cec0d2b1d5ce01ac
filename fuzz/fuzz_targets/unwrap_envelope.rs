//! Any bytes as a function event (SQS, SNS, S3, EventBridge, CloudWatch Logs envelopes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = granttrail_cloudtrail::envelope::unwrap_event(data);
});
