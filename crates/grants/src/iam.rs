//! IAM identity policies from `aws iam get-account-authorization-details`, for full
//! evaluation of the policy path (evidence level L5).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::Caller;
use crate::matching::Tri;
use crate::policy::Policy;

/// One principal's identity policies.
#[derive(Debug, Clone, Default)]
pub struct IdentityPolicies {
    /// Inline and attached managed policies (default versions), group policies included.
    pub policies: Vec<Policy>,
    /// The permissions boundary, when one is set.
    pub boundary: Option<Policy>,
    /// Some attached policy or boundary is not in the snapshot, so cannot be evaluated.
    pub incomplete: bool,
}

/// An account's users and roles with their policies, as of one snapshot.
#[derive(Debug, Clone, Default)]
pub struct IamSnapshot {
    /// Keyed by user or role ARN.
    pub principals: BTreeMap<String, IdentityPolicies>,
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

impl IamSnapshot {
    /// Parses the JSON printed by `aws iam get-account-authorization-details`.
    pub fn parse(json: &str) -> Result<IamSnapshot, String> {
        let doc: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        if !doc.is_object() || (doc.get("UserDetailList").is_none() && doc.get("RoleDetailList").is_none()) {
            return Err(
                "not get-account-authorization-details output (no UserDetailList or RoleDetailList)".into()
            );
        }
        let mut managed: BTreeMap<&str, Policy> = BTreeMap::new();
        for p in list(&doc, "Policies") {
            let Some(arn) = text(p, "Arn") else { continue };
            let default = list(p, "PolicyVersionList")
                .iter()
                .find(|v| v.get("IsDefaultVersion") == Some(&Value::Bool(true)));
            if let Some(document) = default.and_then(|v| v.get("Document")) {
                managed.insert(arn, Policy::from_value(document).map_err(|e| format!("policy {arn}: {e}"))?);
            }
        }
        let inline = |entity: &Value, key: &str| -> Result<Vec<Policy>, String> {
            list(entity, key)
                .iter()
                .filter_map(|p| p.get("PolicyDocument"))
                .map(|d| Policy::from_value(d).map_err(|e| format!("inline policy: {e}")))
                .collect()
        };
        // A managed policy the snapshot does not include cannot be evaluated: the principal's
        // answers then become uncertain rather than wrong.
        let attached = |entity: &Value, incomplete: &mut bool| -> Vec<Policy> {
            let mut out = Vec::new();
            for arn in list(entity, "AttachedManagedPolicies").iter().filter_map(|a| text(a, "PolicyArn")) {
                match managed.get(arn) {
                    Some(p) => out.push(p.clone()),
                    None => *incomplete = true,
                }
            }
            out
        };
        let boundary = |entity: &Value, incomplete: &mut bool| -> Option<Policy> {
            let arn = entity.get("PermissionsBoundary").and_then(|b| text(b, "PermissionsBoundaryArn"))?;
            let found = managed.get(arn).cloned();
            *incomplete |= found.is_none();
            found
        };
        let mut groups: BTreeMap<&str, (Vec<Policy>, bool)> = BTreeMap::new();
        for g in list(&doc, "GroupDetailList") {
            let Some(name) = text(g, "GroupName") else { continue };
            let mut incomplete = false;
            let mut policies = inline(g, "GroupPolicyList")?;
            policies.extend(attached(g, &mut incomplete));
            groups.insert(name, (policies, incomplete));
        }
        let mut principals = BTreeMap::new();
        for u in list(&doc, "UserDetailList") {
            let Some(arn) = text(u, "Arn") else { continue };
            let mut incomplete = false;
            let mut policies = inline(u, "UserPolicyList")?;
            policies.extend(attached(u, &mut incomplete));
            for group in list(u, "GroupList").iter().filter_map(Value::as_str) {
                match groups.get(group) {
                    Some((group_policies, group_incomplete)) => {
                        policies.extend(group_policies.iter().cloned());
                        incomplete |= group_incomplete;
                    }
                    None => incomplete = true,
                }
            }
            let boundary = boundary(u, &mut incomplete);
            principals.insert(arn.to_string(), IdentityPolicies { policies, boundary, incomplete });
        }
        for r in list(&doc, "RoleDetailList") {
            let Some(arn) = text(r, "Arn") else { continue };
            let mut incomplete = false;
            let mut policies = inline(r, "RolePolicyList")?;
            policies.extend(attached(r, &mut incomplete));
            let boundary = boundary(r, &mut incomplete);
            principals.insert(arn.to_string(), IdentityPolicies { policies, boundary, incomplete });
        }
        Ok(IamSnapshot { principals })
    }

    /// The caller's identity policies: a session's role, or the user itself.
    pub fn for_caller(&self, caller: &Caller) -> Option<&IdentityPolicies> {
        [caller.session_issuer_arn.as_deref(), caller.arn.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|arn| self.principals.get(arn))
    }
}

impl IdentityPolicies {
    /// Do the identity policies allow `action` on `resource`? An explicit Deny wins; a
    /// permissions boundary must allow too.
    pub fn allows(&self, action: &str, resource: &str) -> Tri {
        let (mut allow, mut deny) = (Tri::No, Tri::No);
        for p in &self.policies {
            let (a, d) = p.identity_view(action, resource);
            allow = allow.or(a);
            deny = deny.or(d);
        }
        if self.incomplete {
            // A policy we cannot see may allow or deny anything.
            allow = allow.or(Tri::Maybe);
            deny = deny.or(Tri::Maybe);
        }
        if let Some(b) = &self.boundary {
            let (a, d) = b.identity_view(action, resource);
            allow = allow.and(a);
            deny = deny.or(d);
        }
        allow.and(!deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "UserDetailList": [{"Path": "/", "UserName": "bob", "UserId": "AIDAEXAMPLEBOB", "Arn": "arn:aws:iam::111122223333:user/bob",
        "GroupList": ["crypto"], "UserPolicyList": [], "AttachedManagedPolicies": []}],
      "GroupDetailList": [{"GroupName": "crypto", "Arn": "arn:aws:iam::111122223333:group/crypto",
        "GroupPolicyList": [{"PolicyName": "enc", "PolicyDocument": {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}]}}], "AttachedManagedPolicies": []}],
      "RoleDetailList": [{"Path": "/app/", "RoleName": "Svc", "RoleId": "AROAEXAMPLESVC", "Arn": "arn:aws:iam::111122223333:role/app/Svc",
        "RolePolicyList": [{"PolicyName": "deny-decrypt", "PolicyDocument": {"Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]}}],
        "AttachedManagedPolicies": [{"PolicyName": "KmsAll", "PolicyArn": "arn:aws:iam::111122223333:policy/KmsAll"}],
        "PermissionsBoundary": {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": "arn:aws:iam::111122223333:policy/Boundary"}}],
      "Policies": [
        {"PolicyName": "KmsAll", "Arn": "arn:aws:iam::111122223333:policy/KmsAll", "DefaultVersionId": "v2", "PolicyVersionList": [
          {"VersionId": "v2", "IsDefaultVersion": true, "Document": {"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}},
          {"VersionId": "v1", "IsDefaultVersion": false, "Document": {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]},
        {"PolicyName": "Boundary", "Arn": "arn:aws:iam::111122223333:policy/Boundary", "DefaultVersionId": "v1", "PolicyVersionList": [
          {"VersionId": "v1", "IsDefaultVersion": true, "Document": {"Statement": [{"Effect": "Allow", "NotAction": "kms:Sign", "Resource": "*"}]}}]}
      ]}"#;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

    #[test]
    fn users_get_group_policies_and_roles_get_managed_ones_within_their_boundary() {
        let snap = IamSnapshot::parse(DOC).unwrap();
        let bob = Caller { arn: Some("arn:aws:iam::111122223333:user/bob".into()), ..Caller::default() };
        let bob = snap.for_caller(&bob).unwrap();
        assert_eq!(bob.allows("kms:Encrypt", KEY), Tri::Yes);
        assert_eq!(bob.allows("kms:Decrypt", KEY), Tri::No);
        let session = Caller {
            arn: Some("arn:aws:sts::111122223333:assumed-role/Svc/s1".into()),
            session_issuer_arn: Some("arn:aws:iam::111122223333:role/app/Svc".into()),
            ..Caller::default()
        };
        let svc = snap.for_caller(&session).unwrap();
        assert_eq!(svc.allows("kms:GenerateDataKey", KEY), Tri::Yes);
        assert_eq!(svc.allows("kms:Decrypt", KEY), Tri::No, "explicit deny wins");
        assert_eq!(svc.allows("kms:Sign", KEY), Tri::No, "outside the permissions boundary");
    }

    #[test]
    fn other_documents_are_refused() {
        assert!(IamSnapshot::parse("{}").is_err());
        assert!(IamSnapshot::parse("[1]").is_err());
        let missing = r#"{"RoleDetailList":[{"Arn":"arn:aws:iam::1:role/r","AttachedManagedPolicies":[{"PolicyArn":"arn:aws:iam::aws:policy/X"}]}]}"#;
        let snap = IamSnapshot::parse(missing).unwrap();
        let role = Caller { arn: Some("arn:aws:iam::1:role/r".into()), ..Caller::default() };
        assert_eq!(
            snap.for_caller(&role).unwrap().allows("kms:Decrypt", KEY),
            Tri::Maybe,
            "an unknown policy may allow"
        );
    }
}
