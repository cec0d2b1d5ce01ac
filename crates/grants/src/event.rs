//! One KMS CloudTrail record, normalised: the fields granttrail reasons about, taken from
//! wherever each event type keeps them (grant-semantics.md Appendix A).

use std::collections::BTreeMap;

use crate::json::{Json, Object};
use crate::timestamp;
use serde::{Deserialize, Serialize};

/// `eventSource` of every KMS record.
pub const KMS_SOURCE: &str = "kms.amazonaws.com";
/// IAM and Organizations events are kept only when they can change who is allowed what: they
/// break behavioural evidence chains and mark principals deleted and recreated.
pub const IAM_SOURCE: &str = "iam.amazonaws.com";
pub const ORGANIZATIONS_SOURCE: &str = "organizations.amazonaws.com";
/// CloudTrail's own configuration events are kept for the coverage notes of reports: a trail
/// whose event selectors leave KMS events out makes grant history incomplete. They are not
/// policy changes and take no part in labelling.
pub const CLOUDTRAIL_SOURCE: &str = "cloudtrail.amazonaws.com";

/// CloudTrail events that change which events a trail logs.
pub const CLOUDTRAIL_SELECTOR_EVENTS: &[&str] = &["PutEventSelectors", "PutInsightSelectors"];

/// IAM events that change a principal's permissions, or the principal itself.
pub const IAM_POLICY_EVENTS: &[&str] = &[
    "PutUserPolicy",
    "PutRolePolicy",
    "PutGroupPolicy",
    "AttachUserPolicy",
    "AttachRolePolicy",
    "AttachGroupPolicy",
    "DetachUserPolicy",
    "DetachRolePolicy",
    "DetachGroupPolicy",
    "DeleteUserPolicy",
    "DeleteRolePolicy",
    "DeleteGroupPolicy",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "PutUserPermissionsBoundary",
    "PutRolePermissionsBoundary",
    "DeleteUserPermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "CreateRole",
    "DeleteRole",
    "CreateUser",
    "DeleteUser",
];

/// Organizations events that change service or resource control policies.
pub const ORGANIZATIONS_POLICY_EVENTS: &[&str] = &["AttachPolicy", "DetachPolicy", "UpdatePolicy"];

/// Why a record that looked like KMS could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(String),
    #[error("record is not a JSON object")]
    NotObject,
    #[error("record has no usable {0}")]
    Missing(&'static str),
}

/// Who made a call, from `userIdentity`. Every field is optional: service events have no
/// `type`, `AWSService` callers have only `invokedBy`, cross-account copies may lack `arn`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub principal_id: Option<String>,
    pub account_id: Option<String>,
    /// `sessionContext.sessionIssuer.arn`: the IAM role (with its path) behind a session.
    pub session_issuer_arn: Option<String>,
    /// The AWS service that made the call on the caller's behalf, or the service itself.
    pub invoked_by: Option<String>,
}

impl Caller {
    /// The most specific name for the caller: its ARN, else the acting service, else its
    /// principal id, else its account.
    pub fn principal(&self) -> Option<&str> {
        let service =
            if self.kind.as_deref() == Some("AWSService") { self.invoked_by.as_deref() } else { None };
        self.arn
            .as_deref()
            .or(service)
            .or(self.principal_id.as_deref())
            .or(self.invoked_by.as_deref())
            .or(self.account_id.as_deref())
    }
}

/// Encryption-context constraints of a grant, as `CreateGrant` recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraints {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    /// The `SourceArn` constraint of service-principal grants, when logged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_arn: Option<String>,
}

/// What a `CreateGrant` asked for. `None` means CloudTrail did not say (missing, omitted or
/// of the wrong type), which is different from an empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GrantSpec {
    pub grantee_principal: Option<String>,
    pub retiring_principal: Option<String>,
    pub operations: Option<Vec<String>>,
    pub constraints: Option<Constraints>,
    pub name: Option<String>,
}

/// Request details that matter for matching calls to grants and policies. Stored as JSON;
/// empty fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// `encryptionContext` (for ReEncrypt: `sourceEncryptionContext`). `None`: not logged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption_context: Option<BTreeMap<String, String>>,
    /// ReEncrypt's `destinationEncryptionContext`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination_encryption_context: Option<BTreeMap<String, String>>,
    /// `encryptionAlgorithm` (ReEncrypt: `sourceEncryptionAlgorithm`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption_algorithm: Option<String>,
    /// True when the record has no `requestParameters` object (omitted by CloudTrail, or none).
    #[serde(skip_serializing_if = "is_false", default)]
    pub request_omitted: bool,
    /// The request carried grant tokens (`requestParameters.grantTokens`).
    #[serde(skip_serializing_if = "is_false", default)]
    pub token_presented: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vpc_endpoint_id: Option<String>,
    /// PutKeyPolicy / CreateKey: the key policy document as logged (a JSON string).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy: Option<String>,
    /// CreateKey: the key spec (`SYMMETRIC_DEFAULT`, `RSA_2048`, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_spec: Option<String>,
    /// IAM events: what they change, `role/NAME`, `user/NAME`, `group/NAME` or `policy/ARN`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Details {
    pub fn is_empty(&self) -> bool {
        *self == Details::default()
    }
}

/// A CloudTrail record reduced to what granttrail needs, plus enough to show it to a person.
/// Most are KMS events; a few IAM and Organizations events are kept as policy-change evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsEvent {
    pub event_id: String,
    pub event_source: String,
    /// Same value on the copies of one cross-account call delivered to several accounts.
    pub shared_event_id: Option<String>,
    /// Seconds since the epoch (UTC).
    pub event_time: i64,
    pub event_name: String,
    pub event_type: Option<String>,
    pub aws_region: Option<String>,
    pub recipient_account_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub caller: Caller,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The key the call acted on, as a full ARN (for ReEncrypt: the source key).
    pub key_arn: Option<String>,
    /// ReEncrypt's destination key.
    pub destination_key_arn: Option<String>,
    /// `requestParameters.keyId` as the caller wrote it (id, ARN, alias...).
    pub request_key_id: Option<String>,
    /// The grant an event creates, ends or names.
    pub grant_id: Option<String>,
    /// The grant a successful `CreateGrant` asked for.
    pub grant_spec: Option<GrantSpec>,
    pub dry_run: bool,
    pub details: Details,
}

impl KmsEvent {
    pub fn succeeded(&self) -> bool {
        self.error_code.is_none()
    }

    /// Does this event create, end or name a grant, or delete a key (which ends grants)?
    pub fn is_grant_event(&self) -> bool {
        self.event_source == KMS_SOURCE
            && matches!(self.event_name.as_str(), "CreateGrant" | "RetireGrant" | "RevokeGrant" | "DeleteKey")
    }

    pub fn is_kms(&self) -> bool {
        self.event_source == KMS_SOURCE
    }

    /// A CloudTrail trail-configuration event (kept for coverage notes only).
    pub fn is_trail_configuration(&self) -> bool {
        self.event_source == CLOUDTRAIL_SOURCE
    }

    /// The account that owns the key, from its ARN.
    pub fn key_account(&self) -> Option<&str> {
        self.key_arn.as_deref().and_then(arn_account)
    }

    /// Whether the call is on `key`: as its key, or as a ReEncrypt's destination.
    pub fn is_on_key(&self, key: &str) -> bool {
        self.key_arn.as_deref() == Some(key) || self.destination_key_arn.as_deref() == Some(key)
    }
}

/// The account field of an ARN (`arn:partition:service:region:account:resource`).
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// Parses one record. `Ok(None)`: valid JSON but neither a KMS record nor an IAM or
/// Organizations policy change (skipped, not an error).
pub fn normalise(record: &[u8]) -> Result<Option<KmsEvent>, RecordError> {
    let value = Json::parse(record).map_err(|e| RecordError::Json(e.to_string()))?;
    normalise_parsed(&value)
}

/// [`normalise`] for text already known to be UTF-8: the same result, without checking each
/// string's encoding again.
pub fn normalise_str(record: &str) -> Result<Option<KmsEvent>, RecordError> {
    let value = Json::parse_str(record).map_err(|e| RecordError::Json(e.to_string()))?;
    normalise_parsed(&value)
}

fn normalise_parsed(value: &Json) -> Result<Option<KmsEvent>, RecordError> {
    let Json::Object(map) = value else {
        return Err(RecordError::NotObject);
    };
    let name = str_field(map.get("eventName")).unwrap_or_default();
    let relevant = match str_field(map.get("eventSource")) {
        Some(KMS_SOURCE) => true,
        Some(IAM_SOURCE) => IAM_POLICY_EVENTS.contains(&name),
        Some(ORGANIZATIONS_SOURCE) => ORGANIZATIONS_POLICY_EVENTS.contains(&name),
        Some(CLOUDTRAIL_SOURCE) => CLOUDTRAIL_SELECTOR_EVENTS.contains(&name),
        _ => false,
    };
    if !relevant {
        return Ok(None);
    }
    normalise_value(value).map(Some)
}

fn normalise_value(v: &Json) -> Result<KmsEvent, RecordError> {
    let event_id = string(v, "eventID").ok_or(RecordError::Missing("eventID"))?;
    let event_name = string(v, "eventName").ok_or(RecordError::Missing("eventName"))?;
    let event_time =
        str_field(v.get("eventTime")).and_then(timestamp::parse).ok_or(RecordError::Missing("eventTime"))?;
    let caller = caller(v.get("userIdentity"));
    let request = object(v.get("requestParameters"));
    let response = object(v.get("responseElements"));
    let additional = object(v.get("additionalEventData"));
    let error_code = string(v, "errorCode");
    let aws_region = string(v, "awsRegion");

    let resource_keys = resource_key_arns(v.get("resources"));
    let request_key_id = request.and_then(|r| str_field(r.get("keyId"))).map(str::to_string);
    let key_arn = resource_keys.first().cloned().or_else(|| {
        let from_response = response.and_then(|r| str_field(r.get("keyId"))).filter(|k| is_key_arn(k));
        from_response.map(str::to_string).or_else(|| {
            request_key_id.as_deref().and_then(|id| key_arn_from_id(id, aws_region.as_deref(), &caller))
        })
    });
    let destination_key_arn = if event_name == "ReEncrypt" {
        resource_keys.get(1).cloned().or_else(|| {
            request
                .and_then(|r| str_field(r.get("destinationKeyId")))
                .and_then(|id| key_arn_from_id(id, aws_region.as_deref(), &caller))
        })
    } else {
        None
    };

    let grant_id = match event_name.as_str() {
        "CreateGrant" => response.and_then(|r| str_field(r.get("grantId"))),
        "RetireGrant" => additional
            .and_then(|a| str_field(a.get("grantId")))
            .or_else(|| request.and_then(|r| str_field(r.get("grantId")))),
        _ => request
            .and_then(|r| str_field(r.get("grantId")))
            .or_else(|| additional.and_then(|a| str_field(a.get("grantId")))),
    }
    .map(str::to_string);
    let grant_spec = (event_name == "CreateGrant").then(|| grant_spec(request));
    let dry_run = request
        .and_then(|r| r.get("dryRun"))
        .is_some_and(|d| d.as_bool() == Some(true) || d.as_str() == Some("true"));
    let details = details(&event_name, request, response, v);

    Ok(KmsEvent {
        event_id,
        event_source: string(v, "eventSource").unwrap_or_default(),
        shared_event_id: string(v, "sharedEventID"),
        event_time,
        event_name,
        event_type: string(v, "eventType"),
        aws_region,
        recipient_account_id: string(v, "recipientAccountId"),
        error_code,
        error_message: string(v, "errorMessage"),
        caller,
        source_ip: string(v, "sourceIPAddress"),
        user_agent: string(v, "userAgent"),
        key_arn,
        destination_key_arn,
        request_key_id,
        grant_id,
        grant_spec,
        dry_run,
        details,
    })
}

fn details(event_name: &str, request: Option<&Object>, response: Option<&Object>, v: &Json) -> Details {
    let req = |key: &str| request.and_then(|r| r.get(key));
    let (context, algorithm) = if event_name == "ReEncrypt" {
        (req("sourceEncryptionContext"), req("sourceEncryptionAlgorithm"))
    } else {
        (req("encryptionContext"), req("encryptionAlgorithm"))
    };
    let metadata = response.and_then(|r| object(r.get("keyMetadata")));
    let key_spec = str_field(req("keySpec")).or(str_field(req("customerMasterKeySpec"))).or_else(|| {
        metadata.and_then(|m| str_field(m.get("keySpec")).or(str_field(m.get("customerMasterKeySpec"))))
    });
    let target = ["roleName", "userName", "groupName"]
        .iter()
        .zip(["role", "user", "group"])
        .find_map(|(field, kind)| str_field(req(field)).map(|name| format!("{kind}/{name}")))
        .or_else(|| str_field(req("policyArn")).map(|arn| format!("policy/{arn}")))
        .or_else(|| str_field(req("policyId")).map(|id| format!("policy/{id}")))
        .or_else(|| str_field(req("trailName")).map(|name| format!("trail/{name}")));
    let tokens = req("grantTokens").is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    Details {
        encryption_context: string_map(context),
        destination_encryption_context: if event_name == "ReEncrypt" {
            string_map(req("destinationEncryptionContext"))
        } else {
            None
        },
        encryption_algorithm: str_field(algorithm).map(str::to_string),
        request_omitted: request.is_none(),
        token_presented: tokens,
        vpc_endpoint_id: string(v, "vpcEndpointId"),
        policy: str_field(req("policy")).map(str::to_string),
        key_spec: key_spec.map(str::to_string),
        target,
    }
}

fn object<'v, 'a>(v: Option<&'v Json<'a>>) -> Option<&'v Object<'a>> {
    v.and_then(Json::as_object)
}

/// A string field; `null`, `""`, numbers, objects and arrays count as absent.
fn str_field<'v>(v: Option<&'v Json>) -> Option<&'v str> {
    v.and_then(Json::as_str).filter(|s| !s.is_empty())
}

fn string(v: &Json, key: &str) -> Option<String> {
    str_field(v.get(key)).map(str::to_string)
}

fn caller(v: Option<&Json>) -> Caller {
    let Some(id) = object(v) else {
        return Caller::default();
    };
    let text = |key: &str| str_field(id.get_ci(key)).map(str::to_string);
    let issuer = object(id.get("sessionContext")).and_then(|s| object(s.get("sessionIssuer")));
    Caller {
        kind: text("type"),
        arn: text("arn"),
        principal_id: text("principalId"),
        account_id: text("accountId"),
        session_issuer_arn: issuer.and_then(|i| str_field(i.get_ci("arn"))).map(str::to_string),
        invoked_by: text("invokedBy"),
    }
}

fn is_key_arn(s: &str) -> bool {
    s.starts_with("arn:") && s.split(':').nth(2) == Some("kms") && s.contains(":key/")
}

/// Key ARNs listed in `resources[]`, in order. Alias ARNs (also typed `AWS::KMS::Key` in
/// CreateAlias records) are left out.
fn resource_key_arns(v: Option<&Json>) -> Vec<String> {
    let Some(items) = v.and_then(Json::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Json::as_object)
        .filter(|r| str_field(r.get_ci("type")).is_none_or(|t| t == "AWS::KMS::Key"))
        .filter_map(|r| str_field(r.get_ci("ARN")))
        .filter(|arn| is_key_arn(arn))
        .map(str::to_string)
        .collect()
}

/// Resolves `requestParameters.keyId` when `resources[]` is missing (R-M3): a key ARN as is; a
/// bare key id in the caller's account and the event's region; an alias cannot be resolved.
fn key_arn_from_id(id: &str, region: Option<&str>, caller: &Caller) -> Option<String> {
    if is_key_arn(id) {
        return Some(id.to_string());
    }
    if id.starts_with("alias/") || id.contains(':') || id.contains('/') {
        return None;
    }
    let partition =
        caller.arn.as_deref().and_then(|a| a.split(':').nth(1)).filter(|p| !p.is_empty()).unwrap_or("aws");
    let account = caller.account_id.as_deref()?;
    Some(format!("arn:{partition}:kms:{}:{account}:key/{id}", region?))
}

/// An encryption context: string values as they are, any other value as its JSON text.
/// Of duplicate keys the last wins.
fn string_map(v: Option<&Json>) -> Option<BTreeMap<String, String>> {
    let map = object(v)?;
    Some(
        map.iter()
            .map(|(k, v)| {
                let text = match v {
                    Json::Str(s) => s.to_string(),
                    other => other.to_value().to_string(),
                };
                (k.to_string(), text)
            })
            .collect(),
    )
}

fn grant_spec(request: Option<&Object>) -> GrantSpec {
    let Some(r) = request else {
        return GrantSpec::default();
    };
    let operations = r
        .get("operations")
        .and_then(Json::as_array)
        .and_then(|ops| ops.iter().map(|o| o.as_str().map(str::to_string)).collect::<Option<Vec<_>>>());
    let constraints = object(r.get("constraints")).map(|c| Constraints {
        encryption_context_equals: string_map(c.get_ci("encryptionContextEquals")),
        encryption_context_subset: string_map(c.get_ci("encryptionContextSubset")),
        source_arn: str_field(c.get_ci("sourceArn")).map(str::to_string),
    });
    let grantee = str_field(r.get("granteePrincipal")).or(str_field(r.get("granteeServicePrincipal")));
    let retiring = str_field(r.get("retiringPrincipal")).or(str_field(r.get("retiringServicePrincipal")));
    GrantSpec {
        grantee_principal: grantee.map(str::to_string),
        retiring_principal: retiring.map(str::to_string),
        operations,
        constraints,
        name: str_field(r.get("name")).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> KmsEvent {
        normalise(json.as_bytes()).unwrap().unwrap()
    }

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111";

    #[test]
    fn non_kms_records_are_skipped_not_errors() {
        assert_eq!(normalise(br#"{"eventSource":"s3.amazonaws.com","eventID":"x"}"#), Ok(None));
        assert_eq!(normalise(br#"{}"#), Ok(None));
        assert_eq!(normalise(b"[1]"), Err(RecordError::NotObject));
        assert!(matches!(normalise(b"{\"eventSource\":"), Err(RecordError::Json(_))));
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let no_time =
            r#"{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"Decrypt","eventTime":12}"#;
        assert_eq!(normalise(no_time.as_bytes()), Err(RecordError::Missing("eventTime")));
        let no_id =
            r#"{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventTime":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(normalise(no_id.as_bytes()), Err(RecordError::Missing("eventID")));
    }

    #[test]
    fn retire_with_token_takes_id_from_additional_event_data() {
        let e = event(&format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"RetireGrant","eventTime":"2024-01-01T00:00:00Z",
               "requestParameters":null,"responseElements":null,"additionalEventData":{{"grantId":"g1"}},
               "resources":[{{"ARN":"{KEY}"}}]}}"#
        ));
        assert_eq!(e.grant_id.as_deref(), Some("g1"));
        assert_eq!(e.key_arn.as_deref(), Some(KEY));
    }

    #[test]
    fn key_comes_from_resources_not_from_the_alias() {
        let e = event(&format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"Decrypt","eventTime":"2024-01-01T00:00:00Z",
               "requestParameters":{{"keyId":"alias/app"}},
               "resources":[{{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"{KEY}"}}]}}"#
        ));
        assert_eq!(e.key_arn.as_deref(), Some(KEY));
        assert_eq!(e.request_key_id.as_deref(), Some("alias/app"));
    }

    #[test]
    fn bare_key_id_without_resources_resolves_in_callers_account() {
        let e = event(
            r#"{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"RevokeGrant","eventTime":"2024-01-01T00:00:00Z",
               "awsRegion":"us-east-1","userIdentity":{"type":"IAMUser","accountId":"111122223333","arn":"arn:aws:iam::111122223333:user/a"},
               "requestParameters":{"keyId":"1111aaaa-1111-1111-1111-111111111111","grantId":"g"}}"#,
        );
        assert_eq!(e.key_arn.as_deref(), Some(KEY));
        let alias = event(
            r#"{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"Decrypt","eventTime":"2024-01-01T00:00:00Z",
               "awsRegion":"us-east-1","userIdentity":{"accountId":"111122223333"},"requestParameters":{"keyId":"alias/x"}}"#,
        );
        assert_eq!(alias.key_arn, None);
    }

    #[test]
    fn odd_identities_are_tolerated() {
        let e = event(
            r#"{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"Decrypt","eventTime":"2024-01-01T00:00:00Z",
               "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/u","sessionContext":{"sessionIssuer":{}},"accessKeyId":""},
               "responseElements":null}"#,
        );
        assert_eq!(e.caller.session_issuer_arn, None);
        assert_eq!(e.caller.principal(), Some("arn:aws:iam::1:user/u"));
        let service = event(
            r#"{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"DeleteKey","eventTime":"2024-01-01T00:00:00Z",
               "userIdentity":{"accountId":"111122223333","invokedBy":"AWS Internal"},"requestParameters":null}"#,
        );
        assert_eq!(service.caller.kind, None);
        assert_eq!(service.caller.principal(), Some("AWS Internal"));
        let wrong_types = event(
            r#"{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"CreateGrant","eventTime":"2024-01-01T00:00:00Z",
               "userIdentity":[1,2],"requestParameters":{"operations":"Decrypt","granteePrincipal":5,"constraints":[]},
               "responseElements":{"grantId":7},"resources":{"ARN":1}}"#,
        );
        assert_eq!(wrong_types.grant_id, None);
        assert_eq!(wrong_types.grant_spec, Some(GrantSpec::default()));
    }

    #[test]
    fn trail_selector_changes_are_kept() {
        let e = event(
            r#"{"eventSource":"cloudtrail.amazonaws.com","eventID":"e","eventName":"PutEventSelectors","eventTime":"2024-01-01T00:00:00Z",
               "requestParameters":{"trailName":"org-trail","eventSelectors":[{"readWriteType":"WriteOnly"}]}}"#,
        );
        assert!(e.is_trail_configuration() && !e.is_kms());
        assert_eq!(e.details.target.as_deref(), Some("trail/org-trail"));
        let other = r#"{"eventSource":"cloudtrail.amazonaws.com","eventID":"e","eventName":"DescribeTrails","eventTime":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(normalise(other.as_bytes()), Ok(None));
    }

    #[test]
    fn create_grant_fields() {
        let e = event(&format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventID":"e","eventName":"CreateGrant","eventTime":"2024-01-01T00:00:00Z",
               "requestParameters":{{"keyId":"{KEY}","granteePrincipal":"arn:aws:iam::111122223333:role/app/Svc",
                 "retiringPrincipal":"arn:aws:iam::111122223333:role/Admin","operations":["Decrypt","RetireGrant"],
                 "constraints":{{"encryptionContextSubset":{{"Dept":"IT"}}}},"name":"n1"}},
               "responseElements":{{"grantId":"g1","keyId":"{KEY}"}}}}"#
        ));
        let spec = e.grant_spec.unwrap();
        assert_eq!(e.key_arn.as_deref(), Some(KEY));
        assert_eq!(spec.operations, Some(vec!["Decrypt".into(), "RetireGrant".into()]));
        assert_eq!(spec.name.as_deref(), Some("n1"));
        let subset = spec.constraints.unwrap().encryption_context_subset.unwrap();
        assert_eq!(subset.get("Dept").map(String::as_str), Some("IT"));
    }
}
