//! Key policies and IAM policies, evaluated as far as CloudTrail lets us (grant-semantics.md
//! §4.1, §4.4 L4/L5).
//!
//! Answers are three-valued. A statement with a `Condition` block can never be decided from
//! the logs, so it "could match" (`Maybe`); `NotPrincipal` likewise. `Action`/`NotAction` and
//! `Resource`/`NotResource` with IAM wildcards are decided exactly.

use serde_json::Value;

use crate::event::Caller;
use crate::matching::Tri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Who a key-policy statement applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    /// Identity policies have no principal: they apply to whoever they are attached to.
    Attached,
    /// `"*"` or `{"AWS": "*"}`.
    Anyone,
    List {
        aws: Vec<String>,
        services: Vec<String>,
    },
    /// `NotPrincipal`: could match almost anyone.
    Not,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    principals: Principals,
    actions: Vec<String>,
    not_action: bool,
    resources: Vec<String>,
    not_resource: bool,
    pub conditional: bool,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// Who is asking, as policies see it.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub caller: &'a Caller,
}

impl Subject<'_> {
    fn account(&self) -> Option<&str> {
        self.caller.account_id.as_deref()
    }

    /// ARNs a policy may name this caller by: its own ARN and the role behind a session.
    fn arns(&self) -> impl Iterator<Item = &str> {
        [self.caller.arn.as_deref(), self.caller.session_issuer_arn.as_deref()].into_iter().flatten()
    }
}

/// How a statement's principal relates to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrincipalMatch {
    None,
    /// The statement names the subject's account (`arn:...:root` or the bare id): it delegates
    /// to IAM policies of that account.
    Account,
    /// `NotPrincipal`: may apply.
    Possibly,
    /// The statement names the subject itself (its ARN or role), or anyone.
    Direct,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

impl Policy {
    /// Parses a policy document from its JSON text. Key policies in CloudTrail and CLI output
    /// are JSON; IAM API output may be URL-encoded, which is decoded first.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(first) => serde_json::from_str(&granttrail_cloudtrail::envelope::url_decode(text))
                .map_err(|_| format!("not a policy document: {first}"))?,
        };
        Policy::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Policy, String> {
        if let Value::String(text) = value {
            return Policy::parse(text);
        }
        let statements = match value.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(item @ Value::Object(_)) => vec![item],
            _ => return Err("policy has no Statement".into()),
        };
        let statements = statements.into_iter().map(parse_statement).collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// The default key policy of a key created without one (R-A9): the owner account's root
    /// may use IAM policies for every KMS action.
    pub fn default_key_policy(owner_account: &str, partition: &str) -> Policy {
        Policy {
            statements: vec![Statement {
                effect: Effect::Allow,
                principals: Principals::List {
                    aws: vec![format!("arn:{partition}:iam::{owner_account}:root")],
                    services: Vec::new(),
                },
                actions: vec!["kms:*".into()],
                not_action: false,
                resources: vec!["*".into()],
                not_resource: false,
                conditional: false,
            }],
        }
    }
}

fn parse_statement(v: &Value) -> Result<Statement, String> {
    let effect = match v.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => return Err(format!("statement Effect {other:?}")),
    };
    let principals = if v.get("NotPrincipal").is_some() {
        Principals::Not
    } else {
        match v.get("Principal") {
            None => Principals::Attached,
            Some(Value::String(s)) if s == "*" => Principals::Anyone,
            Some(Value::Object(map)) => {
                let aws = strings(map.get("AWS"));
                if aws.iter().any(|a| a == "*") {
                    Principals::Anyone
                } else {
                    Principals::List { aws, services: strings(map.get("Service")) }
                }
            }
            Some(other) => return Err(format!("statement Principal {other}")),
        }
    };
    let (actions, not_action) = match (v.get("Action"), v.get("NotAction")) {
        (Some(a), _) => (strings(Some(a)), false),
        (None, Some(n)) => (strings(Some(n)), true),
        (None, None) => return Err("statement has neither Action nor NotAction".into()),
    };
    let (resources, not_resource) = match (v.get("Resource"), v.get("NotResource")) {
        (Some(r), _) => (strings(Some(r)), false),
        (None, Some(n)) => (strings(Some(n)), true),
        // Key policies often omit nothing, but be lenient: no resource means "this key".
        (None, None) => (vec!["*".into()], false),
    };
    let conditional = v.get("Condition").is_some_and(|c| c.as_object().is_none_or(|m| !m.is_empty()));
    Ok(Statement { effect, principals, actions, not_action, resources, not_resource, conditional })
}

/// IAM wildcard match: `*` any run, `?` one character. Actions compare case-insensitively.
pub fn wildcard_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if case_insensitive {
        (pattern.to_lowercase().chars().collect(), text.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Statement {
    fn action_matches(&self, action: &str) -> bool {
        let any = self.actions.iter().any(|p| wildcard_match(p, action, true));
        any != self.not_action
    }

    fn resource_matches(&self, resource: &str) -> bool {
        let any = self.resources.iter().any(|p| wildcard_match(p, resource, false));
        any != self.not_resource
    }

    pub fn principal_match(&self, subject: &Subject<'_>) -> PrincipalMatch {
        match &self.principals {
            Principals::Attached | Principals::Anyone => PrincipalMatch::Direct,
            Principals::Not => PrincipalMatch::Possibly,
            Principals::List { aws, services } => {
                let mut best = PrincipalMatch::None;
                for p in aws {
                    if subject.arns().any(|arn| arn == p) {
                        return PrincipalMatch::Direct;
                    }
                    let account = subject.account();
                    let names_account = account.is_some_and(|a| {
                        p == a
                            || (p.starts_with("arn:")
                                && p.ends_with(":root")
                                && p.split(':').nth(4) == Some(a))
                    });
                    if names_account {
                        best = best.max(PrincipalMatch::Account);
                    }
                }
                let service = subject.caller.invoked_by.as_deref();
                if subject.caller.kind.as_deref() == Some("AWSService")
                    && let Some(svc) = service
                    && services.iter().any(|s| s == svc)
                {
                    return PrincipalMatch::Direct;
                }
                best
            }
        }
    }

    /// Does the statement apply to this action and resource, ignoring the principal?
    /// `Yes` when it certainly applies, `Maybe` when only its conditions are in doubt.
    pub fn applies(&self, action: &str, resource: &str) -> Tri {
        if !self.action_matches(action) || !self.resource_matches(resource) {
            return Tri::No;
        }
        if self.conditional { Tri::Maybe } else { Tri::Yes }
    }
}

/// What a key policy says about one subject, action and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicyView {
    /// An Allow names the subject directly (or anyone).
    pub direct_allow: Tri,
    /// An Allow names the subject's account, delegating to its IAM policies.
    pub account_allow: Tri,
    /// A Deny could apply.
    pub deny: Tri,
}

impl Policy {
    pub fn key_policy_view(&self, subject: &Subject<'_>, action: &str, key_arn: &str) -> KeyPolicyView {
        let mut view = KeyPolicyView { direct_allow: Tri::No, account_allow: Tri::No, deny: Tri::No };
        for s in &self.statements {
            let applies = s.applies(action, key_arn);
            if applies == Tri::No {
                continue;
            }
            let principal = s.principal_match(subject);
            let (direct, account) = match principal {
                PrincipalMatch::None => continue,
                PrincipalMatch::Direct => (applies, Tri::No),
                PrincipalMatch::Possibly => (applies.and(Tri::Maybe), Tri::No),
                PrincipalMatch::Account => (Tri::No, applies),
            };
            match s.effect {
                Effect::Allow => {
                    view.direct_allow = view.direct_allow.or(direct);
                    view.account_allow = view.account_allow.or(account);
                }
                // A Deny naming the account applies to its principals too.
                Effect::Deny => view.deny = view.deny.or(direct.or(account)),
            }
        }
        view
    }

    /// Identity-policy evaluation for one action and resource: (allowed, denied).
    pub fn identity_view(&self, action: &str, resource: &str) -> (Tri, Tri) {
        let (mut allow, mut deny) = (Tri::No, Tri::No);
        for s in &self.statements {
            let applies = s.applies(action, resource);
            match s.effect {
                Effect::Allow => allow = allow.or(applies),
                Effect::Deny => deny = deny.or(applies),
            }
        }
        (allow, deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("kms:*", "kms:Decrypt", true));
        assert!(wildcard_match("kms:Re*", "kms:ReEncryptFrom", true));
        assert!(wildcard_match("KMS:decrypt", "kms:Decrypt", true));
        assert!(wildcard_match("kms:?ecrypt", "kms:Decrypt", true));
        assert!(!wildcard_match("kms:Encrypt", "kms:Decrypt", true));
        assert!(wildcard_match("*", "anything", false));
        assert!(wildcard_match(
            "arn:aws:kms:*:111122223333:key/*",
            "arn:aws:kms:us-east-1:111122223333:key/abc",
            false
        ));
        assert!(!wildcard_match(
            "arn:aws:kms:*:444455556666:key/*",
            "arn:aws:kms:us-east-1:111122223333:key/abc",
            false
        ));
    }

    fn caller() -> Caller {
        Caller {
            kind: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::111122223333:assumed-role/Svc/s1".into()),
            account_id: Some("111122223333".into()),
            session_issuer_arn: Some("arn:aws:iam::111122223333:role/app/Svc".into()),
            ..Caller::default()
        }
    }

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

    #[test]
    fn key_policy_views() {
        let c = caller();
        let subject = Subject { caller: &c };
        let root_only = Policy::default_key_policy("111122223333", "aws");
        let v = root_only.key_policy_view(&subject, "kms:Decrypt", KEY);
        assert_eq!((v.direct_allow, v.account_allow, v.deny), (Tri::No, Tri::Yes, Tri::No));

        let admin_only = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/KeyAdmin"},"Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let v = admin_only.key_policy_view(&subject, "kms:Decrypt", KEY);
        assert_eq!((v.direct_allow, v.account_allow), (Tri::No, Tri::No));

        let direct = Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/app/Svc"]},"Action":["kms:Decrypt"],"Resource":"*"}}"#,
        )
        .unwrap();
        assert_eq!(direct.key_policy_view(&subject, "kms:Decrypt", KEY).direct_allow, Tri::Yes);
        assert_eq!(direct.key_policy_view(&subject, "kms:Encrypt", KEY).direct_allow, Tri::No);

        let conditional_anyone = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*",
                "Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}]}"#,
        )
        .unwrap();
        assert_eq!(conditional_anyone.key_policy_view(&subject, "kms:Decrypt", KEY).direct_allow, Tri::Maybe);

        let not_action = Policy::parse(
            r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"111122223333"},"NotAction":"kms:Decrypt","Resource":"*"}]}"#,
        )
        .unwrap();
        assert_eq!(not_action.key_policy_view(&subject, "kms:Decrypt", KEY).deny, Tri::No);
        assert_eq!(not_action.key_policy_view(&subject, "kms:Encrypt", KEY).deny, Tri::Yes);
    }

    #[test]
    fn url_encoded_documents_parse() {
        let encoded = "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22kms%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        let p = Policy::parse(encoded).unwrap();
        assert_eq!(p.identity_view("kms:Decrypt", KEY), (Tri::Yes, Tri::No));
        assert!(Policy::parse("{}").is_err());
        assert!(Policy::parse("nonsense").is_err());
    }
}
