//! The KMS grant domain: pure functions from CloudTrail records to grant histories.
//!
//! - [`normalise`] turns one record's JSON text into a [`KmsEvent`] (or says it is not KMS),
//!   tolerating every missing, null or oddly cased field CloudTrail is known to produce.
//! - [`lifecycle::fold_grant`] rebuilds one grant's state from the set of events that touch it.
//!   The result depends only on that set: not on the order events arrive in, not on duplicate
//!   deliveries, not on which account's copy of a cross-account event was read.
//! - [`matching::covers`] decides whether a grant could have authorised a call, and
//!   [`classify::classify_key`] labels every successful call on a key with how strongly the
//!   logs (plus any imported key and IAM policies) show it depended on a grant.
//!
//! Nothing here does I/O or reads a clock, so every rule can be tested with plain values.
#![forbid(unsafe_code)]

pub mod classify;
pub mod event;
pub mod findings;
pub mod iam;
pub mod invalidation;
mod json;
pub use findings::integrity;
pub use findings::last_usage;
pub mod lifecycle;
pub mod matching;
pub mod policy;
pub use findings::reconcile;
pub mod retention;
pub mod settings;
pub mod timestamp;
pub mod when;

pub use classify::{
    CallLabel, Evidence, GrantReasons, ImportedIam, ImportedKeyPolicy, KeyClassifier, KeyInputs, KeyLabels,
    Label, Observation, ObservationIndex, ObservationKind, Reason, behaviour_group, classify_key,
    classify_keyless, mark_collisions, observed_group,
};
pub use event::{Caller, Constraints, Details, GrantSpec, KmsEvent, RecordError, normalise, normalise_str};
pub use iam::IamSnapshot;
pub use invalidation::{Invalidation, NewCalls, sets_key_context};
pub use lifecycle::{
    Actor, Anomaly, Grant, GrantState, fold_all, fold_grant, logical_event_refs, logical_events,
};
pub use matching::{Side, Tri, grantee_is};
pub use policy::Policy;
pub use settings::Settings;

/// FNV-1a, 64 bit: a name for content that is stable across runs and platforms (unlike the
/// std hasher), for finding ids and for records that arrive without an object name.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h = Fnv1a::default();
    h.write(bytes);
    h.0
}

/// [`fnv1a`] fed in parts: the hash of the parts' concatenation, without building it.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(pub u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub fn write(&mut self, bytes: impl IntoIterator<Item = u8>) {
        self.0 = bytes.into_iter().fold(self.0, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_in_parts_is_fnv1a_of_the_whole() {
        // The published FNV-1a 64 test vector.
        assert_eq!(super::fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut h = super::Fnv1a::default();
        h.write(*b"grant");
        h.write([0u8]);
        h.write(*b"trail");
        assert_eq!(h.0, super::fnv1a(*b"grant\0trail"));
    }
}
