//! The report's model: every grant, its lifetime and its use, the findings, and what the logs
//! do not cover, built from the database as one [`Report`] value. The CLI renders it (HTML,
//! Markdown, CSV, JSON); any front end reads the same data. It depends only on the database
//! and the options: nothing reads the clock, so the same database gives the same report.

mod coverage;

use std::collections::{BTreeMap, BTreeSet};

use granttrail_grants::findings::{FindingView, RulesConfig, Severity};
use granttrail_grants::when::Reference;
use granttrail_grants::{Constraints, Grant, Side, timestamp};
use granttrail_store::{GrantFilter, Result, Store, Window};
use serde::Serialize;

pub use coverage::{Coverage, DayRange, Gap, SourceCoverage, TrailChange};

/// The version of the JSON structure; bumped only when a field changes meaning or goes away.
pub const REPORT_VERSION: u32 = 1;

/// The whole report. Field names are a stable interface: add fields, never rename or remove.
#[derive(Debug, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub generator: String,
    pub scope: Scope,
    pub summary: Summary,
    pub keys: Vec<KeyEntry>,
    pub grants: Vec<GrantEntry>,
    pub findings: Vec<FindingView>,
    pub coverage: Coverage,
}

/// What the report covers. Times are RFC 3339 UTC.
#[derive(Debug, Serialize)]
pub struct Scope {
    pub key_arn: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The time grants are described at ("active" means not ended by then).
    pub as_of: String,
    /// Where `as_of` came from: `option`, `until`, `latest_event`, or `no_events` when the
    /// database holds no KMS event (then `as_of` means nothing).
    pub as_of_from: &'static str,
    /// The first and last KMS events in the period.
    pub first_event: Option<String>,
    pub last_event: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub grants: usize,
    /// Created by `as_of` (or before the logs) and not ended by then.
    pub active: usize,
    /// Ended by `as_of`.
    pub ended: usize,
    /// Grants known only from their end: created before the logs begin.
    pub created_before_logs: usize,
    /// Keys with KMS activity in the period, or with grants in the report.
    pub keys: usize,
    /// Accounts that own a key with grants in the report or whose trails recorded KMS events
    /// in the period.
    pub accounts: usize,
    /// Successful calls in the period that a grant covered or may have covered.
    pub calls_through_grants: u64,
    /// Of those, the calls that succeeded only through a grant (labels grant_only and
    /// grant_only_likely).
    pub grant_only_calls: u64,
    pub findings: SeverityCounts,
    /// The most severe findings (at most five), by id.
    pub top_findings: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SeverityCounts {
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub info: usize,
}

/// One key's grants, for the timeline.
#[derive(Debug, Serialize)]
pub struct KeyEntry {
    pub key_arn: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub grants: usize,
    pub active: usize,
    pub calls_through_grants: u64,
    pub grant_only_calls: u64,
    /// The period the timeline shows.
    pub timeline_start: String,
    pub timeline_end: String,
    /// KMS's own record of the key's last use, when one was imported (`import key-last-usage`).
    pub kms_last_use: Option<KmsLastUse>,
    #[serde(skip)]
    pub span: (i64, i64),
}

/// The last successful cryptographic use KMS recorded for a key.
#[derive(Debug, Serialize)]
pub struct KmsLastUse {
    pub at: String,
    pub operation: Option<String>,
    pub event_id: Option<String>,
    /// Whether the logs hold that call.
    pub in_logs: bool,
    /// When the record was read from KMS.
    pub read_at: String,
}

impl KmsLastUse {
    /// `2024-05-01 12:00:00 Decrypt, in the logs`, for tables.
    pub fn describe(&self) -> String {
        let what = self.operation.as_deref().unwrap_or("a cryptographic operation");
        let logged = if self.in_logs { "in the logs" } else { "not in the logs" };
        format!("{} {what}, {logged}", short_time(&self.at))
    }
}

/// One grant of the inventory.
#[derive(Debug, Serialize)]
pub struct GrantEntry {
    pub key_arn: String,
    pub grant_id: String,
    pub name: Option<String>,
    /// As the logs show it now (may have ended after `as_of`).
    pub state: &'static str,
    /// Whether the grant existed and had not ended at `as_of`.
    pub active_at_as_of: bool,
    /// The state at `as_of`: `active`, `active (revoked later)`, `not yet created`, or the
    /// end state.
    pub state_as_of: String,
    pub creation_seen: bool,
    pub grantee_principal: Option<String>,
    pub retiring_principal: Option<String>,
    pub operations: Option<Vec<String>>,
    pub constraints: Option<Constraints>,
    pub created_at: Option<String>,
    pub created_by: Option<String>,
    /// The AWS service that created it on the caller's behalf (`invokedBy`).
    pub created_via: Option<String>,
    pub created_from_ip: Option<String>,
    pub created_user_agent: Option<String>,
    /// Grants on the key with `CreateGrant` whose grantee created this one.
    pub created_through_grants: Vec<String>,
    pub ended_at: Option<String>,
    pub ended_by: Option<String>,
    pub ended_via: Option<String>,
    /// `RetireGrant`, `RevokeGrant` or `DeleteKey`.
    pub ended_how: Option<String>,
    /// Calls in the period the grant covered or may have covered.
    pub uses: u64,
    /// Of those, the calls that succeeded only through a grant.
    pub grant_only_calls: u64,
    pub first_use: Option<String>,
    pub last_use: Option<String>,
    /// Ids of the findings about this grant.
    pub findings: Vec<String>,
    pub anomalies: usize,
    #[serde(skip)]
    pub created_seconds: Option<i64>,
    #[serde(skip)]
    pub ended_seconds: Option<i64>,
    /// Each use: time and whether the call depended on a grant.
    #[serde(skip)]
    pub use_times: Vec<(i64, bool)>,
}

impl Report {
    /// The findings by id.
    pub fn findings_by_id(&self) -> BTreeMap<&str, &FindingView> {
        self.findings.iter().map(|f| (f.id.as_str(), f)).collect()
    }

    /// The grants of each key, in inventory order.
    pub fn grants_by_key(&self) -> BTreeMap<&str, Vec<&GrantEntry>> {
        group_by_key(&self.grants)
    }
}

fn group_by_key(grants: &[GrantEntry]) -> BTreeMap<&str, Vec<&GrantEntry>> {
    let mut by_key: BTreeMap<&str, Vec<&GrantEntry>> = BTreeMap::new();
    for g in grants {
        by_key.entry(g.key_arn.as_str()).or_default().push(g);
    }
    by_key
}

impl GrantEntry {
    /// The name, else the start of the id.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}…", self.grant_id.chars().take(12).collect::<String>()),
        }
    }
}

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub key: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub as_of: Option<i64>,
    pub gap_seconds: i64,
}

/// The grants on the key, allowing CreateGrant, alive when `g` was created, whose grantee is
/// the principal that created it (as `Store::parent_candidates` finds them, without a query
/// per grant).
fn created_through(
    g: &Grant,
    create: Option<&granttrail_store::StoredEvent>,
    delegators: &BTreeMap<&str, Vec<&Grant>>,
) -> Vec<String> {
    let (Some(t), Some(create)) = (g.created_at, create) else {
        return Vec::new();
    };
    delegators
        .get(g.key_arn.as_str())
        .into_iter()
        .flatten()
        .filter(|p| p.grant_id != g.grant_id)
        .filter(|p| p.created_at.is_none_or(|c| c <= t) && p.ended_at.is_none_or(|e| e > t))
        .filter(|p| {
            p.spec
                .grantee_principal
                .as_deref()
                .is_some_and(|grantee| granttrail_grants::grantee_is(grantee, &create.event.caller))
        })
        .map(|p| p.grant_id.clone())
        .collect()
}

fn state_as_of(g: &Grant, as_of: i64) -> String {
    if g.created_at.is_some_and(|c| c > as_of) {
        return "not yet created".into();
    }
    match g.ended_at {
        Some(e) if e > as_of => format!("active ({} later)", g.state.as_str()),
        _ => g.state.as_str().into(),
    }
}

/// Does the grant's lifetime meet the period?
fn in_period(g: &Grant, since: Option<i64>, until: Option<i64>) -> bool {
    let created_in_time = match (g.created_at, until) {
        (Some(c), Some(u)) => c < u,
        _ => true,
    };
    let not_ended_before = match (g.ended_at, since) {
        (Some(e), Some(s)) => e >= s,
        _ => true,
    };
    created_in_time && not_ended_before
}

pub fn build(store: &Store, rules: &RulesConfig, options: &Options) -> Result<Report> {
    let window = Window { since: options.since, until: options.until };
    let span = store.kms_event_span(window)?;
    let latest = store.kms_event_span(Window::default())?.map(|(_, last)| last);
    let reference = Reference::new(options.as_of, options.until, latest);
    let (as_of, as_of_from) = (reference.at, reference.source.as_str());

    let filter = GrantFilter { key_arn: options.key.clone(), ..GrantFilter::default() };
    let all_grants = store.grants(&filter)?;
    let grants: Vec<&Grant> =
        all_grants.iter().filter(|g| in_period(g, options.since, options.until)).collect();
    // Grants that allow CreateGrant, by key: the only possible links of a delegation chain.
    let mut delegators: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
    for g in &all_grants {
        if g.spec.operations.as_ref().is_some_and(|ops| ops.iter().any(|o| o == "CreateGrant")) {
            delegators.entry(g.key_arn.as_str()).or_default().push(g);
        }
    }
    let in_scope: BTreeSet<(&str, &str)> =
        grants.iter().map(|g| (g.key_arn.as_str(), g.grant_id.as_str())).collect();

    // Uses in the period, by grant; each call side counted once however many grants it named.
    let mut uses: BTreeMap<(String, String), Vec<(i64, bool)>> = BTreeMap::new();
    let mut calls_through_grants = 0;
    let mut grant_only_calls = 0;
    let mut key_calls: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut previous: Option<(String, Side)> = None;
    for u in store.grant_uses_in(window, options.key.as_deref())? {
        let only = u.label.is_grant_only();
        let call = (u.event_id, u.side);
        if previous.as_ref() != Some(&call) {
            calls_through_grants += 1;
            grant_only_calls += u64::from(only);
            let k = key_calls.entry(u.key_arn.clone()).or_default();
            k.0 += 1;
            k.1 += u64::from(only);
            previous = Some(call);
        }
        uses.entry((u.key_arn, u.grant_id)).or_default().push((u.event_time, only));
    }

    // Findings about the grants in the report, most severe first.
    let all_findings = store.findings(rules, as_of, latest)?;
    let names: BTreeMap<(&str, &str), Option<&str>> =
        grants.iter().map(|g| ((g.key_arn.as_str(), g.grant_id.as_str()), g.spec.name.as_deref())).collect();
    let snapshots = store.grant_lists()?;
    let mut findings: Vec<FindingView> = Vec::new();
    for f in &all_findings {
        // A finding about a grant in the report, or about a key as a whole (GT105) in scope.
        let about_key = f.grant_id.is_empty() && options.key.as_ref().is_none_or(|k| *k == f.key_arn);
        if !about_key && !in_scope.contains(&(f.key_arn.as_str(), f.grant_id.as_str())) {
            continue;
        }
        let name =
            names.get(&(f.key_arn.as_str(), f.grant_id.as_str())).copied().flatten().map(str::to_string);
        findings.push(FindingView::new(f, name, store.finding_evidence(f, &snapshots)?, as_of));
    }
    let severity_rank = |s: &str| Severity::parse(s).map_or(0, |s| 4 - s as usize);
    findings.sort_by(|a, b| {
        (severity_rank(a.severity), a.rule_id, &a.key_arn, &a.grant_id, &a.id).cmp(&(
            severity_rank(b.severity),
            b.rule_id,
            &b.key_arn,
            &b.grant_id,
            &b.id,
        ))
    });
    let mut grant_findings: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for f in &findings {
        grant_findings.entry((f.key_arn.as_str(), f.grant_id.as_str())).or_default().push(f.id.clone());
    }

    // The inventory.
    let mut entries = Vec::new();
    for g in &grants {
        let key = (g.key_arn.clone(), g.grant_id.clone());
        let mut use_times = uses.remove(&key).unwrap_or_default();
        use_times.sort_unstable();
        let created_event = match &g.created_by {
            Some(a) => store.event(&a.event_id)?,
            None => None,
        };
        let ended_event = match &g.ended_by {
            Some(a) => store.event(&a.event_id)?,
            None => None,
        };
        let active = g.created_at.is_none_or(|c| c <= as_of) && g.ended_at.is_none_or(|e| e > as_of);
        let actor = |a: &Option<granttrail_grants::Actor>| a.as_ref().and_then(|a| a.principal.clone());
        let service = |a: &Option<granttrail_grants::Actor>| a.as_ref().and_then(|a| a.service.clone());
        entries.push(GrantEntry {
            key_arn: g.key_arn.clone(),
            grant_id: g.grant_id.clone(),
            name: g.spec.name.clone(),
            state: g.state.as_str(),
            active_at_as_of: active,
            state_as_of: state_as_of(g, as_of),
            creation_seen: g.creation_seen,
            grantee_principal: g.spec.grantee_principal.clone(),
            retiring_principal: g.spec.retiring_principal.clone(),
            operations: g.spec.operations.clone(),
            constraints: g.spec.constraints.clone(),
            created_at: g.created_at.map(timestamp::format),
            created_by: actor(&g.created_by),
            created_via: service(&g.created_by),
            created_from_ip: g.created_by.as_ref().and_then(|a| a.source_ip.clone()),
            created_through_grants: created_through(g, created_event.as_ref(), &delegators),
            created_user_agent: created_event.and_then(|e| e.event.user_agent),
            ended_at: g.ended_at.map(timestamp::format),
            ended_by: actor(&g.ended_by),
            ended_via: service(&g.ended_by),
            ended_how: ended_event.map(|e| e.event.event_name),
            uses: use_times.len() as u64,
            grant_only_calls: use_times.iter().filter(|(_, only)| *only).count() as u64,
            first_use: use_times.first().map(|(t, _)| timestamp::format(*t)),
            last_use: use_times.last().map(|(t, _)| timestamp::format(*t)),
            findings: grant_findings.remove(&(g.key_arn.as_str(), g.grant_id.as_str())).unwrap_or_default(),
            anomalies: g.anomalies.len(),
            created_seconds: g.created_at,
            ended_seconds: g.ended_at,
            use_times,
        });
    }

    // Keys and their timeline periods.
    let mut keys = Vec::new();
    let mut key_arns: BTreeSet<&str> = entries.iter().map(|g| g.key_arn.as_str()).collect();
    if let Some(k) = &options.key {
        key_arns.insert(k);
    }
    let by_key = group_by_key(&entries);
    for key in key_arns {
        let of_key: &[&GrantEntry] = by_key.get(key).map_or(&[], Vec::as_slice);
        let times = of_key.iter().flat_map(|g| {
            g.created_seconds.into_iter().chain(g.ended_seconds).chain(g.use_times.iter().map(|(t, _)| *t))
        });
        let start = options
            .since
            .or_else(|| times.clone().min().into_iter().chain(span.map(|s| s.0)).min())
            .unwrap_or(as_of);
        let end = options.until.unwrap_or_else(|| {
            times.max().into_iter().chain([as_of]).chain(span.map(|s| s.1)).max().unwrap_or(as_of)
        });
        let (calls, only) = key_calls.get(key).copied().unwrap_or_default();
        keys.push(KeyEntry {
            key_arn: key.to_string(),
            account: granttrail_grants::event::arn_account(key).map(str::to_string),
            region: key.split(':').nth(3).filter(|r| !r.is_empty()).map(str::to_string),
            grants: of_key.len(),
            active: of_key.iter().filter(|g| g.active_at_as_of).count(),
            calls_through_grants: calls,
            grant_only_calls: only,
            timeline_start: timestamp::format(start),
            timeline_end: timestamp::format(end.max(start)),
            kms_last_use: kms_last_use(store, key)?,
            span: (start, end.max(start)),
        });
    }

    let coverage = coverage::build(store, options, span)?;

    let mut counts = SeverityCounts::default();
    for f in &findings {
        match f.severity {
            "high" => counts.high += 1,
            "medium" => counts.medium += 1,
            "low" => counts.low += 1,
            _ => counts.info += 1,
        }
    }
    let mut active_keys = store.kms_keys_in(window, options.key.as_deref())?;
    active_keys.extend(keys.iter().filter(|k| !k.key_arn.is_empty()).map(|k| k.key_arn.clone()));
    let mut accounts: BTreeSet<&str> = keys.iter().filter_map(|k| k.account.as_deref()).collect();
    accounts.extend(coverage.sources.iter().filter(|s| s.events > 0).map(|s| s.account.as_str()));
    accounts.remove("");
    let summary = Summary {
        grants: entries.len(),
        active: entries.iter().filter(|g| g.active_at_as_of).count(),
        ended: entries.iter().filter(|g| g.ended_seconds.is_some_and(|e| e <= as_of)).count(),
        created_before_logs: entries.iter().filter(|g| !g.creation_seen).count(),
        keys: active_keys.len(),
        accounts: accounts.len(),
        calls_through_grants,
        grant_only_calls,
        findings: counts,
        top_findings: findings.iter().take(5).map(|f| f.id.clone()).collect(),
    };
    Ok(Report {
        report_version: REPORT_VERSION,
        generator: format!("granttrail {}", env!("CARGO_PKG_VERSION")),
        scope: Scope {
            key_arn: options.key.clone(),
            since: options.since.map(timestamp::format),
            until: options.until.map(timestamp::format),
            as_of: timestamp::format(as_of),
            as_of_from,
            first_event: span.map(|s| timestamp::format(s.0)),
            last_event: span.map(|s| timestamp::format(s.1)),
        },
        summary,
        keys,
        grants: entries,
        findings,
        coverage,
    })
}

/// The scope in one sentence (the same in HTML and Markdown, before escaping).
/// KMS's record of `key`'s last use, if one was imported, and whether the logs hold that call.
fn kms_last_use(store: &Store, key: &str) -> Result<Option<KmsLastUse>> {
    let Some(imported) = store.key_last_usages(Some(key))?.into_iter().next() else { return Ok(None) };
    let Some(used) = imported.usage.last_use else { return Ok(None) };
    let logged = store.logged_use(key, used.event_id.as_deref())?;
    Ok(Some(KmsLastUse {
        at: timestamp::format(used.at),
        operation: used.operation,
        event_id: used.event_id,
        in_logs: logged.event_stored,
        read_at: timestamp::format(imported.at),
    }))
}

/// `2024-05-01 09:05:00` from seconds: shorter than RFC 3339 for tables.
pub fn short_time(t: &str) -> String {
    t.replace('T', " ").trim_end_matches('Z').to_string()
}
