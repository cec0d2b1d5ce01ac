//! The enums granttrail stores as small integers. The codes are part of the file format: never
//! renumber them. A stored code granttrail does not know is an error naming its column, never
//! a default.

use crate::db::{FromSql, ToSql, ValueRef};
use granttrail_grants::{Evidence, GrantReasons, Label, ObservationKind, Side};

use crate::{Result, StoreError};

/// An enum kept as an integer code.
pub(crate) trait Coded: Copy + PartialEq + 'static {
    /// Where it is stored, for errors.
    const COLUMN: &'static str;
    /// Every value.
    const ALL: &'static [Self];
    fn code(self) -> i64;
}

/// The value stored as `code` in `T`'s column.
pub(crate) fn from_code<T: Coded>(code: i64) -> Result<T> {
    T::ALL
        .iter()
        .copied()
        .find(|v| v.code() == code)
        .ok_or_else(|| StoreError::Corrupt(format!("{} {code} is not a code granttrail knows", T::COLUMN)))
}

/// A [`Coded`] value as a statement parameter or a column read: `row.get::<_, Code<Label>>(i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code<T>(pub T);

impl<T: Coded> ToSql for Code<T> {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Integer(self.0.code())
    }
}

impl<T: Coded> FromSql for Code<T> {
    fn column_result(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        let ValueRef::Integer(code) = value else {
            return Err(format!("{} is not an integer code", T::COLUMN));
        };
        from_code(code).map(Code).map_err(|e| e.to_string())
    }
}

impl Coded for Label {
    const COLUMN: &'static str = "call_labels.label";
    const ALL: &'static [Label] = &Label::ALL;
    fn code(self) -> i64 {
        match self {
            Label::NotGrantEligible => 0,
            Label::NoGrant => 1,
            Label::NoGrantUnknownGrants => 2,
            Label::GrantCoveredUncertain => 3,
            Label::GrantCovered => 4,
            Label::GrantOnlyLikely => 5,
            Label::GrantOnly => 6,
            Label::GrantAndPolicy => 7,
        }
    }
}

impl Coded for Evidence {
    const COLUMN: &'static str = "call_labels.evidence";
    const ALL: &'static [Evidence] = &Evidence::ALL;
    fn code(self) -> i64 {
        match self {
            Evidence::L0 => 0,
            Evidence::L1 => 1,
            Evidence::L2 => 2,
            Evidence::L3 => 3,
            Evidence::L3Prime => 4,
            Evidence::L4 => 5,
            Evidence::L5 => 6,
        }
    }
}

/// Coded in the order of the names, so that ordering by code orders as the names did (`calls`
/// lists a call's sides in that order).
impl Coded for Side {
    const COLUMN: &'static str = "call_labels.side";
    const ALL: &'static [Side] = &Side::ALL;
    fn code(self) -> i64 {
        match self {
            Side::Destination => 0,
            Side::Key => 1,
            Side::Source => 2,
        }
    }
}

impl Coded for GrantReasons {
    const COLUMN: &'static str = "call_labels.grant_reasons";
    const ALL: &'static [GrantReasons] = &GrantReasons::ALL;
    fn code(self) -> i64 {
        match self {
            GrantReasons::CoveredBy => 0,
            GrantReasons::MayBeCoveredBy => 1,
        }
    }
}

impl Coded for ObservationKind {
    const COLUMN: &'static str = "observations.kind";
    const ALL: &'static [ObservationKind] = &[ObservationKind::Success, ObservationKind::Denial];
    fn code(self) -> i64 {
        match self {
            ObservationKind::Success => 0,
            ObservationKind::Denial => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Coded + std::fmt::Debug>() {
        let codes: Vec<i64> = T::ALL.iter().map(|v| v.code()).collect();
        for v in T::ALL {
            assert_eq!(from_code::<T>(v.code()).expect("a known code"), *v);
        }
        let mut distinct = codes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), codes.len(), "{} codes repeat: {codes:?}", T::COLUMN);
        let unknown = codes.iter().max().copied().unwrap_or(0) + 1;
        let error = from_code::<T>(unknown).expect_err("an unknown code").to_string();
        assert!(error.contains(T::COLUMN), "{error}");
    }

    #[test]
    fn every_code_reads_back_as_its_value_and_unknown_codes_are_errors() {
        round_trips::<Label>();
        round_trips::<Evidence>();
        round_trips::<Side>();
        round_trips::<GrantReasons>();
        round_trips::<ObservationKind>();
        round_trips::<granttrail_grants::integrity::LogVerdict>();
    }

    #[test]
    fn side_codes_sort_as_their_names() {
        let mut by_name = Side::ALL;
        by_name.sort_by_key(|s| s.as_str());
        assert_eq!(by_name.map(Coded::code), [0, 1, 2]);
    }

    #[test]
    fn a_column_with_an_unknown_code_is_an_error_naming_it() {
        let conn = crate::db::Connection::open_in_memory().expect("database");
        let read = conn.query_row("SELECT 9", [], |r| r.get::<_, Code<Label>>(0));
        let error = read.expect_err("code 9").to_string();
        assert!(error.contains("call_labels.label 9"), "{error}");
        let ok = conn.query_row("SELECT ?1", [Code(Label::GrantOnly)], |r| r.get::<_, Code<Label>>(0));
        assert_eq!(ok.expect("code 6"), Code(Label::GrantOnly));
    }
}
