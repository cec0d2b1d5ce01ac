//! Any bytes as a CloudTrail object: gzip detection, the record splitter, lookup-events
//! unwrapping and normalisation of every record must return, never panic.
#![no_main]

use granttrail_cloudtrail::{Limits, for_each_record, may_be_relevant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_object_bytes: 1 << 20, max_record_bytes: 64 << 10, max_depth: 64 };
    let _ = for_each_record(data, &limits, |record| {
        if may_be_relevant(record) {
            let _ = granttrail_grants::normalise(record);
        }
        Ok::<(), ()>(())
    });
});
