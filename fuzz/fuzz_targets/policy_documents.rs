//! Any text as a key policy or an IAM authorization-details document, evaluated.
#![no_main]

use granttrail_grants::{Caller, IamSnapshot, Policy, policy::Subject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let caller = Caller {
        kind: Some("AssumedRole".into()),
        arn: Some("arn:aws:sts::111122223333:assumed-role/Svc/s".into()),
        account_id: Some("111122223333".into()),
        session_issuer_arn: Some("arn:aws:iam::111122223333:role/app/Svc".into()),
        ..Caller::default()
    };
    if let Ok(policy) = Policy::parse(text) {
        let _ = policy.key_policy_view(&Subject { caller: &caller }, "kms:Decrypt", "arn:aws:kms:us-east-1:111122223333:key/k");
    }
    if let Ok(snapshot) = IamSnapshot::parse(text)
        && let Some(p) = snapshot.for_caller(&caller)
    {
        let _ = p.allows("kms:Decrypt", "arn:aws:kms:us-east-1:111122223333:key/k");
    }
});
