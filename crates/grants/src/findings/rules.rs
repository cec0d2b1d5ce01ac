//! The rules: what each looks for on a grant, and why it matters.

use super::{Rule, Severity};
use crate::timestamp;

pub const CROSS_ACCOUNT: Rule = Rule {
    id: "GT001",
    severity: Severity::High,
    title: "Grant to a principal in another account",
    why: "A grant lets a principal of another, untrusted account use the key without any policy in this account naming it.",
};

pub const REDELEGATION: Rule = Rule {
    id: "GT002",
    severity: Severity::High,
    title: "Grant allows CreateGrant (re-delegation)",
    why: "The grantee can pass the key's permissions on to principals nobody here chose, through grants that appear in no policy.",
};

pub const ALL_OPERATIONS: Rule = Rule {
    id: "GT003",
    severity: Severity::Medium,
    title: "Grant allows every cryptographic operation of the key",
    why: "A grant this broad is rarely needed; one compromised grantee can do everything the key is for (encrypt, decrypt and generate data keys; or sign and verify; or generate and verify MACs).",
};

pub const NO_CONSTRAINT: Rule = Rule {
    id: "GT004",
    severity: Severity::Low,
    title: "Cryptographic grant without an encryption-context constraint",
    why: "Without a constraint the grant covers every ciphertext of the key, not just the resource it was made for.",
};

pub const HUMAN_CREATED: Rule = Rule {
    id: "GT005",
    severity: Severity::Medium,
    title: "Grant created directly by a person or workload",
    why: "AWS services create grants for their resources; a grant created by hand is outside the usual paths and easily forgotten.",
};

pub const LONG_LIVED: Rule = Rule {
    id: "GT006",
    severity: Severity::Low,
    title: "Grant active for longer than allowed",
    why: "Grants never expire; one left active long after its purpose keeps its permissions alive.",
};

pub const NAME_EXPIRED: Rule = Rule {
    id: "GT007",
    severity: Severity::Medium,
    title: "Grant still active past the expiry date in its name",
    why: "The grant's name says it should be gone; KMS does not expire grants, so someone forgot to retire it.",
};

pub const NEVER_USED: Rule = Rule {
    id: "GT008",
    severity: Severity::Low,
    title: "Active grant never used",
    why: "A grant nobody uses is pure exposure.",
};

pub const UNUSED_OPERATIONS: Rule = Rule {
    id: "GT009",
    severity: Severity::Info,
    title: "Grant allows operations it was never used for",
    why: "Least privilege: the operations never used can be dropped by replacing the grant.",
};

pub const DUPLICATE_LEFTOVER: Rule = Rule {
    id: "GT010",
    severity: Severity::Medium,
    title: "Duplicate grant left active after its twin was ended",
    why: "Retries without a Name create duplicate grants; ending one leaves the other's permissions in place.",
};

pub const GRANTEE_DELETED: Rule = Rule {
    id: "GT011",
    severity: Severity::Medium,
    title: "Active grant whose grantee was deleted",
    why: "The grantee is gone but the grant stays; a new principal of the same name must not inherit it, and the grant is clutter.",
};

pub const SELF_GRANT: Rule = Rule {
    id: "GT012",
    severity: Severity::High,
    title: "Principal granted itself access after being denied",
    why: "A principal that could not use the key created a grant for itself and then succeeded: a privilege escalation.",
};

pub const DELEGATED: Rule = Rule {
    id: "GT013",
    severity: Severity::Medium,
    title: "Grant created through another grant (delegation chain)",
    why: "The creator held CreateGrant only through a grant: this grant appears in no policy and was chosen by a grantee, not by the key's administrators.",
};

pub const ESCALATION: Rule = Rule {
    id: "GT014",
    severity: Severity::Medium,
    title: "Denied principal succeeded through a grant that appeared after the denial",
    why: "The policies refused this principal; a grant made afterwards let the same operation succeed. Access the policies deny was given around them.",
};

pub const USED_AFTER_END: Rule = Rule {
    id: "GT015",
    severity: Severity::Medium,
    title: "Calls the grant allowed kept succeeding after it was retired or revoked",
    why: "Ending the grant did not end the access: beyond the consistency window the former grantee still succeeds at what the grant allowed, so another path (a policy, or a grant the logs do not show) still allows it.",
};

pub const RULES: [Rule; 15] = [
    CROSS_ACCOUNT,
    REDELEGATION,
    ALL_OPERATIONS,
    NO_CONSTRAINT,
    HUMAN_CREATED,
    LONG_LIVED,
    NAME_EXPIRED,
    NEVER_USED,
    UNUSED_OPERATIONS,
    DUPLICATE_LEFTOVER,
    GRANTEE_DELETED,
    SELF_GRANT,
    DELEGATED,
    ESCALATION,
    USED_AFTER_END,
];

pub(super) const CRYPTO_OPS: [&str; 8] = [
    "Encrypt",
    "Decrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// The kind of key a grant's operations show (R-O2: no key type accepts every operation),
/// and the cryptographic operations that kind of key supports in a grant (R-O3).
pub(super) fn key_kind(ops: &[&str]) -> Option<(&'static str, &'static [&'static str])> {
    const SIGN: &[&str] = &["Sign", "Verify", "GetPublicKey"];
    const MAC: &[&str] = &["GenerateMac", "VerifyMac"];
    const AGREEMENT: &[&str] = &["DeriveSharedSecret", "GetPublicKey"];
    const KEM: &[&str] = &["Encapsulate", "Decapsulate", "GetPublicKey"];
    const RSA_ENCRYPT: &[&str] = &["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"];
    let has = |set: &[&str]| ops.iter().any(|o| set.contains(o));
    if ops.iter().any(|o| o.starts_with("GenerateDataKey")) {
        Some(("symmetric encryption", &CRYPTO_OPS))
    } else if has(&["Sign", "Verify"]) {
        Some(("signing", SIGN))
    } else if has(MAC) {
        Some(("HMAC", MAC))
    } else if has(&["DeriveSharedSecret"]) {
        Some(("key agreement", AGREEMENT))
    } else if has(&["Encapsulate", "Decapsulate"]) {
        Some(("key encapsulation", KEM))
    } else if has(&["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo"]) {
        if ops.contains(&"GetPublicKey") {
            Some(("asymmetric encryption", RSA_ENCRYPT))
        } else {
            Some(("symmetric encryption", &CRYPTO_OPS))
        }
    } else {
        None
    }
}

/// The first `YYYY-MM-DD` or `YYYYMMDD` date in a grant name, as seconds at the end of that day.
pub(super) fn date_in_name(name: &str) -> Option<i64> {
    for (offset, _) in name.char_indices() {
        for (len, dashed) in [(10, true), (8, false)] {
            let Some(candidate) = name.get(offset..).and_then(|rest| rest.get(..len)) else {
                continue;
            };
            let compact: String = if dashed {
                let b = candidate.as_bytes();
                if b[4] != b'-' || b[7] != b'-' {
                    continue;
                }
                candidate.replace('-', "")
            } else {
                candidate.to_string()
            };
            if compact.len() == 8 && compact.bytes().all(|c| c.is_ascii_digit()) {
                let text = format!("{}-{}-{}T23:59:59Z", &compact[0..4], &compact[4..6], &compact[6..8]);
                if let Some(t) = timestamp::parse(&text) {
                    return Some(t);
                }
            }
        }
    }
    None
}
