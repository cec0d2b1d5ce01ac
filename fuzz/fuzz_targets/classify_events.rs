//! Records (one per line) through the whole domain: lifecycle fold and call classification
//! for every key they mention.
#![no_main]

use granttrail_grants::{KeyInputs, Settings, classify_key, classify_keyless, fold_all, normalise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let events: Vec<_> = data.split(|b| *b == b'\n').filter_map(|line| normalise(line).ok().flatten()).collect();
    if events.is_empty() {
        return;
    }
    let grants = fold_all(&events);
    let settings = Settings::default();
    let (kms, changes): (Vec<_>, Vec<_>) = events.iter().cloned().partition(|e| e.is_kms());
    let mut keys: Vec<&str> = kms.iter().filter_map(|e| e.key_arn.as_deref()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let key_grants: Vec<_> = grants.iter().filter(|g| g.key_arn == key).cloned().collect();
        let inputs = KeyInputs {
            key_arn: key,
            grants: &key_grants,
            events: &kms,
            policy_changes: &changes,
            imported_key_policies: &[],
            imported_iam: &[],
            settings: &settings,
        };
        let _ = classify_key(&inputs);
    }
    let _ = classify_keyless(&kms);
});
