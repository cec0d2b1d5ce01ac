//! Coverage notes: where and when the logs hold no KMS events, and the trail configuration
//! changes that leave KMS events out.

use std::collections::BTreeMap;

use granttrail_grants::timestamp;
use granttrail_store::{Result, Store, Window};
use serde::Serialize;
use serde_json::Value;

use super::Options;

const DAY: i64 = 86_400;

#[derive(Debug, Serialize)]
pub struct Coverage {
    /// The UTC days examined (first and last, `YYYY-MM-DD`).
    pub first_day: Option<String>,
    pub last_day: Option<String>,
    /// One entry per account and region whose trail recorded KMS events at any time.
    pub sources: Vec<SourceCoverage>,
    /// Stretches of at least `gap_hours` without KMS events in one account and region.
    pub gap_hours: i64,
    pub gaps: Vec<Gap>,
    /// Trail selector changes seen in the logs, in time order.
    pub trail_changes: Vec<TrailChange>,
    /// What the notes can and cannot say.
    pub notes: Vec<String>,
    /// The latest `granttrail verify` of each account and region (absent when never run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verification: Vec<VerificationEntry>,
}

/// What `granttrail verify` last found for one account and region.
#[derive(Debug, Default, Serialize)]
pub struct VerificationEntry {
    pub account: String,
    pub region: String,
    pub verified_at: String,
    pub verified: u64,
    pub altered: u64,
    pub missing: u64,
    pub unlisted: u64,
    pub not_covered: u64,
    pub digests: u64,
    pub digests_trusted: u64,
    pub signatures_valid: u64,
    pub signatures_unchecked: u64,
    /// Hours between the first and last digest that no digest covers.
    pub hours_without_digests: u64,
}

impl VerificationEntry {
    /// Reads a stored summary (as `verify --format json` prints one).
    fn from_stored(stored: &granttrail_store::StoredSummary) -> VerificationEntry {
        let v: serde_json::Value = serde_json::from_str(&stored.summary).unwrap_or_default();
        let n = |field: &str| v[field].as_u64().unwrap_or(0);
        VerificationEntry {
            account: stored.account.clone(),
            region: stored.region.clone(),
            verified_at: timestamp::format(stored.verified_at),
            verified: n("verified"),
            altered: n("altered"),
            missing: n("missing"),
            unlisted: n("unlisted"),
            not_covered: n("not_covered"),
            digests: n("digests"),
            digests_trusted: n("digests_trusted"),
            signatures_valid: n("signatures_valid"),
            signatures_unchecked: n("signatures_unchecked"),
            hours_without_digests: n("hours_without_digests"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SourceCoverage {
    pub account: String,
    pub region: String,
    /// KMS events in the period.
    pub events: u64,
    pub days_with_events: usize,
    /// Runs of days in the period without any KMS event.
    pub days_without_events: Vec<DayRange>,
}

#[derive(Debug, Serialize)]
pub struct DayRange {
    pub from: String,
    pub to: String,
    pub days: i64,
}

#[derive(Debug, Serialize)]
pub struct Gap {
    pub account: String,
    pub region: String,
    /// The last KMS event before the gap and the first after it.
    pub from: String,
    pub to: String,
    pub hours: i64,
}

#[derive(Debug, Serialize)]
pub struct TrailChange {
    pub time: String,
    pub event_name: String,
    pub event_id: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub trail: Option<String>,
    pub caller: Option<String>,
    /// The call failed (its error code): the trail did not change.
    pub error_code: Option<String>,
    /// Whether the trail logs KMS events after the change: `all`, `write_only` (grant
    /// creations and ends but no grant use), `read_only` (use but no grant creations or
    /// ends), `none`, `unchanged` (failed or insight selectors) or `unknown`.
    pub kms_logging: &'static str,
    /// The change in words.
    pub effect: String,
}

fn day_text(day: i64) -> String {
    timestamp::format(day * DAY).chars().take(10).collect()
}

pub fn build(store: &Store, options: &Options, span: Option<(i64, i64)>) -> Result<Coverage> {
    let window = Window { since: options.since, until: options.until };
    // The key's own account and region, when the report is about one key.
    let key_source = options.key.as_deref().map(|k| {
        let mut parts = k.split(':');
        let region = parts.nth(3).unwrap_or_default().to_string();
        let account = parts.next().unwrap_or_default().to_string();
        (account, region)
    });
    let wanted =
        |account: &str, region: &str| key_source.as_ref().is_none_or(|(a, r)| a == account && r == region);
    let first = options.since.or(span.map(|s| s.0));
    let last = options.until.map(|u| u - 1).or(span.map(|s| s.1));
    let days = match (first, last) {
        (Some(f), Some(l)) if l >= f => Some((f.div_euclid(DAY), l.div_euclid(DAY))),
        _ => None,
    };

    let mut per_source: BTreeMap<(String, String), Vec<(i64, u64)>> = BTreeMap::new();
    for (account, region) in store.kms_event_sources()? {
        if wanted(&account, &region) {
            per_source.entry((account, region)).or_default();
        }
    }
    for d in store.kms_events_per_day(window)? {
        if let Some(v) = per_source.get_mut(&(d.account, d.region)) {
            v.push((d.day, d.events));
        }
    }
    let mut sources = Vec::new();
    for ((account, region), counts) in per_source {
        let mut missing = Vec::new();
        if let Some((first_day, last_day)) = days {
            let mut seen = counts.iter().map(|(d, _)| *d).peekable();
            let mut run: Option<(i64, i64)> = None;
            for day in first_day..=last_day {
                while seen.next_if(|d| *d < day).is_some() {}
                if seen.peek() == Some(&day) {
                    if let Some((a, b)) = run.take() {
                        missing.push((a, b));
                    }
                } else {
                    run = Some(run.map_or((day, day), |(a, _)| (a, day)));
                }
            }
            missing.extend(run);
        }
        sources.push(SourceCoverage {
            events: counts.iter().map(|(_, n)| n).sum(),
            days_with_events: counts.len(),
            days_without_events: missing
                .into_iter()
                .map(|(a, b)| DayRange { from: day_text(a), to: day_text(b), days: b - a + 1 })
                .collect(),
            account,
            region,
        });
    }

    let gaps = store
        .kms_silences(window, options.gap_seconds)?
        .into_iter()
        .filter(|s| wanted(&s.account, &s.region))
        .map(|s| Gap {
            hours: (s.to - s.from) / 3600,
            from: timestamp::format(s.from),
            to: timestamp::format(s.to),
            account: s.account,
            region: s.region,
        })
        .collect();

    let mut trail_changes = Vec::new();
    for (stored, raw) in store.trail_selector_changes()? {
        let e = &stored.event;
        if options.until.is_some_and(|u| e.event_time >= u) {
            continue;
        }
        let account = e.recipient_account_id.clone().or_else(|| e.caller.account_id.clone());
        let (kms_logging, effect) = if let Some(code) = &e.error_code {
            ("unchanged", format!("the call failed ({code}); the trail did not change"))
        } else if e.event_name == "PutInsightSelectors" {
            (
                "unchanged",
                "Insights selectors changed; this does not change which KMS events the trail logs"
                    .to_string(),
            )
        } else {
            selector_effect(&raw)
        };
        trail_changes.push(TrailChange {
            time: timestamp::format(e.event_time),
            event_name: e.event_name.clone(),
            event_id: e.event_id.clone(),
            account,
            region: e.aws_region.clone(),
            trail: e.details.target.as_deref().and_then(|t| t.strip_prefix("trail/")).map(str::to_string),
            caller: e.caller.principal().map(str::to_string),
            error_code: e.error_code.clone(),
            kms_logging,
            effect,
        });
    }

    let mut notes = vec![
        "A day or a stretch without KMS events can be a quiet time or logs that are missing; \
         grants created or ended then are absent from this report."
            .to_string(),
    ];
    if trail_changes.is_empty() {
        notes.push(
            "No PutEventSelectors or PutInsightSelectors event is in the logs. Selectors set before \
             the logs begin do not show here: check each trail with `aws cloudtrail get-event-selectors` \
             (look for excludeManagementEventSources with kms.amazonaws.com, readWriteType WriteOnly or \
             ReadOnly, and includeManagementEvents false)."
                .to_string(),
        );
    } else if trail_changes.iter().any(|c| matches!(c.kms_logging, "none" | "write_only" | "read_only")) {
        notes.push(
            "At least one trail stopped logging some KMS events (see the trail changes): grant \
             history and grant use after that change may be incomplete for that trail."
                .to_string(),
        );
    }
    if options.key.is_some() {
        notes.push("With --key, coverage is shown for the key's own account and region.".to_string());
    }
    Ok(Coverage {
        first_day: days.map(|(a, _)| day_text(a)),
        last_day: days.map(|(_, b)| day_text(b)),
        sources,
        gap_hours: options.gap_seconds / 3600,
        gaps,
        trail_changes,
        notes,
        verification: store
            .verification_summaries()?
            .iter()
            .filter(|v| wanted(&v.account, &v.region))
            .map(VerificationEntry::from_stored)
            .collect(),
    })
}

/// Which KMS events a trail logs after a `PutEventSelectors` call, from its request.
fn selector_effect(raw: &str) -> (&'static str, String) {
    let record: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
    let request = record.get("requestParameters");
    let basic = request.and_then(|r| r.get("eventSelectors")).and_then(Value::as_array);
    let advanced = request.and_then(|r| r.get("advancedEventSelectors")).and_then(Value::as_array);
    let (mut reads, mut writes, mut excluded) = (false, false, false);
    match (basic, advanced) {
        (Some(selectors), _) if !selectors.is_empty() => {
            for s in selectors {
                if s.get("includeManagementEvents").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let sources = s.get("excludeManagementEventSources").and_then(Value::as_array);
                if sources.is_some_and(|l| l.iter().any(|v| v.as_str() == Some("kms.amazonaws.com"))) {
                    excluded = true;
                    continue;
                }
                match s.get("readWriteType").and_then(Value::as_str) {
                    Some("ReadOnly") => reads = true,
                    Some("WriteOnly") => writes = true,
                    _ => (reads, writes) = (true, true),
                }
            }
        }
        (_, Some(selectors)) => {
            for s in selectors {
                let fields: Vec<&Value> = s
                    .get("fieldSelectors")
                    .and_then(Value::as_array)
                    .map(|f| f.iter().collect())
                    .unwrap_or_default();
                let field =
                    |name: &str| fields.iter().find(|f| f.get("field").and_then(Value::as_str) == Some(name));
                let list = |f: Option<&&Value>, op: &str| -> Vec<String> {
                    f.and_then(|f| f.get(op))
                        .and_then(Value::as_array)
                        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default()
                };
                let category = list(field("eventCategory"), "equals");
                if !category.iter().any(|c| c == "Management") {
                    continue;
                }
                let source = field("eventSource");
                let equals = list(source, "equals");
                if list(source, "notEquals").iter().any(|s| s == "kms.amazonaws.com")
                    || (!equals.is_empty() && !equals.iter().any(|s| s == "kms.amazonaws.com"))
                {
                    excluded = true;
                    continue;
                }
                match list(field("readOnly"), "equals").as_slice() {
                    [only] if only == "true" => reads = true,
                    [only] if only == "false" => writes = true,
                    _ => (reads, writes) = (true, true),
                }
            }
        }
        _ => return ("unknown", "the record does not show the selectors; the effect is unknown".to_string()),
    }
    match (reads, writes) {
        (true, true) => ("all", "the trail logs KMS management events (reads and writes)".to_string()),
        (false, true) => (
            "write_only",
            "the trail logs only write events: grant creations and ends are logged, grant use \
             (Decrypt, Encrypt, GenerateDataKey, ...) is not"
                .to_string(),
        ),
        (true, false) => (
            "read_only",
            "the trail logs only read events: grant use is logged, CreateGrant, RetireGrant and \
             RevokeGrant are not"
                .to_string(),
        ),
        (false, false) if excluded => {
            ("none", "the trail excludes KMS events (kms.amazonaws.com is excluded)".to_string())
        }
        (false, false) => ("none", "the trail logs no management events, so no KMS events".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(request: &str) -> &'static str {
        selector_effect(&format!(r#"{{"requestParameters":{request}}}"#)).0
    }

    #[test]
    fn selector_effects() {
        assert_eq!(
            effect(
                r#"{"eventSelectors":[{"readWriteType":"All","includeManagementEvents":true,"excludeManagementEventSources":["kms.amazonaws.com"]}]}"#
            ),
            "none"
        );
        assert_eq!(effect(r#"{"eventSelectors":[{"readWriteType":"WriteOnly"}]}"#), "write_only");
        assert_eq!(effect(r#"{"eventSelectors":[{"includeManagementEvents":false}]}"#), "none");
        assert_eq!(effect(r#"{"eventSelectors":[{"readWriteType":"All"}]}"#), "all");
        assert_eq!(
            effect(
                r#"{"advancedEventSelectors":[{"fieldSelectors":[{"field":"eventCategory","equals":["Management"]},
                   {"field":"eventSource","notEquals":["kms.amazonaws.com"]}]}]}"#
            ),
            "none"
        );
        assert_eq!(
            effect(
                r#"{"advancedEventSelectors":[{"fieldSelectors":[{"field":"eventCategory","equals":["Management"]},
                   {"field":"readOnly","equals":["true"]}]}]}"#
            ),
            "read_only"
        );
        assert_eq!(effect("null"), "unknown");
    }
}
