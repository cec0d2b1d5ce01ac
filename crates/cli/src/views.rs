//! The JSON shapes users script against. Field names and meanings are a stable interface:
//! add fields, never rename or remove them.

use crate::provenance::LogFiles;
use granttrail_grants::{Anomaly, Constraints, Grant, timestamp};
use granttrail_store::StoredEvent;
use serde::Serialize;

/// One grant, as `granttrail grants --format json` prints it. Times are RFC 3339 UTC; unknown
/// values are null.
#[derive(Debug, Serialize)]
pub struct GrantView<'a> {
    pub key_arn: &'a str,
    pub grant_id: &'a str,
    pub state: &'static str,
    pub creation_seen: bool,
    pub grantee_principal: Option<&'a str>,
    pub retiring_principal: Option<&'a str>,
    pub operations: Option<&'a [String]>,
    pub constraints: Option<&'a Constraints>,
    pub name: Option<&'a str>,
    pub issuing_account: Option<&'a str>,
    pub created_at: Option<String>,
    pub created_by: Option<&'a str>,
    pub created_by_service: Option<&'a str>,
    pub created_from_ip: Option<&'a str>,
    pub ended_at: Option<String>,
    pub ended_by: Option<&'a str>,
    pub ended_by_service: Option<&'a str>,
    pub ended_from_ip: Option<&'a str>,
    pub create_event_ids: &'a [String],
    pub end_event_ids: &'a [String],
    pub anomalies: &'a [Anomaly],
}

impl<'a> GrantView<'a> {
    pub fn new(g: &'a Grant) -> GrantView<'a> {
        let created = g.created_by.as_ref();
        let ended = g.ended_by.as_ref();
        GrantView {
            key_arn: &g.key_arn,
            grant_id: &g.grant_id,
            state: g.state.as_str(),
            creation_seen: g.creation_seen,
            grantee_principal: g.spec.grantee_principal.as_deref(),
            retiring_principal: g.spec.retiring_principal.as_deref(),
            operations: g.spec.operations.as_deref(),
            constraints: g.spec.constraints.as_ref(),
            name: g.spec.name.as_deref(),
            issuing_account: g.issuing_account.as_deref(),
            created_at: g.created_at.map(timestamp::format),
            created_by: created.and_then(|a| a.principal.as_deref()),
            created_by_service: created.and_then(|a| a.service.as_deref()),
            created_from_ip: created.and_then(|a| a.source_ip.as_deref()),
            ended_at: g.ended_at.map(timestamp::format),
            ended_by: ended.and_then(|a| a.principal.as_deref()),
            ended_by_service: ended.and_then(|a| a.service.as_deref()),
            ended_from_ip: ended.and_then(|a| a.source_ip.as_deref()),
            create_event_ids: &g.create_event_ids,
            end_event_ids: &g.end_event_ids,
            anomalies: &g.anomalies,
        }
    }
}

/// One event in a grant's story.
#[derive(Debug, Serialize)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub shared_event_id: Option<&'a str>,
    pub event_time: String,
    pub event_name: &'a str,
    pub error_code: Option<&'a str>,
    pub caller: Option<&'a str>,
    pub invoked_by: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub key_arn: Option<&'a str>,
    pub object: &'a str,
    /// What `granttrail verify` said of `object` (absent until verify has recorded anything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<&'static str>,
}

impl<'a> EventView<'a> {
    pub fn new(s: &'a StoredEvent) -> EventView<'a> {
        let e = &s.event;
        EventView {
            event_id: &e.event_id,
            shared_event_id: e.shared_event_id.as_deref(),
            event_time: timestamp::format(e.event_time),
            event_name: &e.event_name,
            error_code: e.error_code.as_deref(),
            caller: e.caller.principal(),
            invoked_by: e.caller.invoked_by.as_deref(),
            source_ip: e.source_ip.as_deref(),
            key_arn: e.key_arn.as_deref(),
            object: &s.object,
            log_file: None,
        }
    }

    /// The event with what verify said of its log file.
    pub fn checked(s: &'a StoredEvent, log_files: &LogFiles) -> anyhow::Result<EventView<'a>> {
        Ok(EventView { log_file: log_files.of_object(&s.object)?, ..EventView::new(s) })
    }
}

/// `granttrail grant ID --format json`: the grant, the grants it may have been created
/// through, and its events in time order.
#[derive(Debug, Serialize)]
pub struct StoryView<'a> {
    #[serde(flatten)]
    pub grant: GrantView<'a>,
    pub created_through_grants: Vec<String>,
    pub events: Vec<EventView<'a>>,
    /// The calls the grant covered or may have covered, each with its label.
    pub calls: Vec<CoveredCallView<'a>>,
}

/// A call in a grant's story: the call and whether it depended on a grant (labels
/// `grant_only` and `grant_only_likely`).
#[derive(Debug, Serialize)]
pub struct CoveredCallView<'a> {
    #[serde(flatten)]
    pub call: crate::calls_cmd::CallView<'a>,
    pub depended_on_grant: bool,
}
