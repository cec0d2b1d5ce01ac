//! Any bytes as one CloudTrail record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(event)) = granttrail_grants::normalise(data) {
        let _ = granttrail_grants::matching::call_sides(&event);
        let _ = granttrail_grants::fold_all(std::slice::from_ref(&event));
    }
});
