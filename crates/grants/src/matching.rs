//! Does a grant's grantee name this caller? (grant-semantics.md §2.2)

use crate::event::Caller;

/// True when `grantee` certainly names `caller`: the caller's own ARN (users, federated users,
/// assumed-role sessions), the role behind a session (`sessionIssuer.arn`, path included, never
/// the sts session ARN), or the caller's principal id (`acct:aws:ec2-infrastructure:i-...`
/// style grantees, and unique ids `AROA...` of the caller's role).
///
/// Account-root and service-principal grantees are not certain matches and return false here.
pub fn grantee_is(grantee: &str, caller: &Caller) -> bool {
    let equals = |v: &Option<String>| v.as_deref() == Some(grantee);
    equals(&caller.arn)
        || equals(&caller.session_issuer_arn)
        || equals(&caller.principal_id)
        || caller
            .principal_id
            .as_deref()
            .and_then(|id| id.split_once(':'))
            .is_some_and(|(unique_id, _)| unique_id == grantee && grantee.starts_with("ARO"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Caller {
        Caller {
            kind: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::111122223333:assumed-role/Svc/s1".into()),
            principal_id: Some("AROAEXAMPLESVC:s1".into()),
            account_id: Some("111122223333".into()),
            session_issuer_arn: Some("arn:aws:iam::111122223333:role/app/Svc".into()),
            invoked_by: None,
        }
    }

    #[test]
    fn role_grantee_matches_its_sessions_through_the_issuer_with_path() {
        assert!(grantee_is("arn:aws:iam::111122223333:role/app/Svc", &session()));
        assert!(!grantee_is("arn:aws:iam::111122223333:role/Svc", &session()), "path matters");
    }

    #[test]
    fn session_and_principal_id_grantees() {
        assert!(grantee_is("arn:aws:sts::111122223333:assumed-role/Svc/s1", &session()));
        assert!(!grantee_is("arn:aws:sts::111122223333:assumed-role/Svc/s2", &session()));
        assert!(grantee_is("AROAEXAMPLESVC", &session()));
        let ec2 = Caller {
            principal_id: Some("111122223333:aws:ec2-infrastructure:i-81e2f56c".into()),
            ..Caller::default()
        };
        assert!(grantee_is("111122223333:aws:ec2-infrastructure:i-81e2f56c", &ec2));
        assert!(!grantee_is("111122223333", &ec2), "an account id is not a principal id prefix match");
    }
}
