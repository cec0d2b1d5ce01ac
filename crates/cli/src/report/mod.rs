//! `granttrail report`: one document with every grant, its lifetime and its use, the findings,
//! and what the logs do not cover.
//!
//! The report is built once as a [`Report`] value (`granttrail_ingest::report`, which
//! `--format json` prints as is) and rendered here to HTML, Markdown or CSV from it.

mod html;
mod markdown;
mod svg;

use granttrail_store::Location;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use granttrail_grants::Constraints;
use granttrail_grants::when::When;
pub use granttrail_ingest::report::*;

use crate::config::Config;
use crate::grants_cmd::{latest_event, open_existing};
use crate::output::print_csv;
use crate::{parse_time, parse_when};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML page (inline CSS and SVG, no scripts, no network requests).
    Html,
    /// Markdown (GitHub flavour): the same content, without the chart.
    Md,
    /// The grant inventory, one row per grant.
    Csv,
    /// The whole report as one JSON object (a stable interface).
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only grants on this key (full key ARN).
    #[arg(long, value_name = "ARN")]
    key: Option<String>,
    /// Start of the period: grants alive at or after it, calls and events from it. RFC 3339, a
    /// date, or a duration back from --as-of (else the latest event): 30d, 12h, 90m.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: Option<When>,
    /// End of the period (exclusive): grants created before it, calls and events before it.
    /// RFC 3339, a date, or a duration back from --as-of (else the latest event).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<When>,
    /// The reference time: the report describes the grants at it, and age-based findings
    /// measure against it (default: --until, else the latest KMS event in the database). RFC
    /// 3339 or a date.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    as_of: Option<i64>,
    /// Report stretches of at least this many hours without any KMS event in an account and
    /// region as gaps.
    #[arg(long, value_name = "HOURS", default_value_t = 6)]
    gap_hours: u32,
    #[arg(long, value_enum)]
    format: ReportFormat,
    /// Where to write the report (`-` for standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

pub fn run(db: &Location, config: &Config, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.refresh_labels()?;
    store.read_snapshot()?;
    // Durations count back from --as-of, else from the latest event.
    let relative_to = match args.as_of {
        Some(t) => t,
        None if args.since.into_iter().chain(args.until).any(|w| matches!(w, When::Ago(_))) => {
            latest_event(&store)?.unwrap_or(0)
        }
        None => 0,
    };
    let options = Options {
        key: args.key.clone(),
        since: args.since.map(|w| w.resolve(relative_to)),
        until: args.until.map(|w| w.resolve(relative_to)),
        as_of: args.as_of,
        gap_seconds: i64::from(args.gap_hours.max(1)) * 3600,
    };
    let report = build(&store, &config.findings, &options)?;
    let mut bytes = Vec::new();
    render(&report, args.format, &mut bytes)?;
    if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(&bytes)?;
    } else {
        std::fs::write(&args.output, &bytes)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn render(report: &Report, format: ReportFormat, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        ReportFormat::Html => html::write(report, out)?,
        ReportFormat::Md => markdown::write(report, out)?,
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        ReportFormat::Csv => {
            let rows: Vec<Vec<String>> = report.grants.iter().map(csv_row).collect();
            print_csv(&CSV_HEADER, &rows, out)?;
        }
    }
    Ok(())
}

const CSV_HEADER: [&str; 25] = [
    "key_arn",
    "grant_id",
    "name",
    "state",
    "active_at_as_of",
    "creation_seen",
    "grantee_principal",
    "retiring_principal",
    "operations",
    "constraints",
    "created_at",
    "created_by",
    "created_via",
    "created_from_ip",
    "created_user_agent",
    "created_through_grants",
    "ended_at",
    "ended_by",
    "ended_via",
    "ended_how",
    "uses",
    "grant_only_calls",
    "first_use",
    "last_use",
    "findings",
];

fn csv_row(g: &GrantEntry) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        g.key_arn.clone(),
        g.grant_id.clone(),
        text(&g.name),
        g.state.into(),
        g.active_at_as_of.to_string(),
        g.creation_seen.to_string(),
        text(&g.grantee_principal),
        text(&g.retiring_principal),
        g.operations.as_ref().map(|o| o.join(" ")).unwrap_or_default(),
        g.constraints.as_ref().and_then(|c| serde_json::to_string(c).ok()).unwrap_or_default(),
        text(&g.created_at),
        text(&g.created_by),
        text(&g.created_via),
        text(&g.created_from_ip),
        text(&g.created_user_agent),
        g.created_through_grants.join(" "),
        text(&g.ended_at),
        text(&g.ended_by),
        text(&g.ended_via),
        text(&g.ended_how),
        g.uses.to_string(),
        g.grant_only_calls.to_string(),
        text(&g.first_use),
        text(&g.last_use),
        g.findings.join(" "),
    ]
}

/// A grant's constraints in words: `context ⊇ {app=batch}` style, for people.
pub fn constraints_text(c: Option<&Constraints>) -> Option<String> {
    let c = c?;
    let pairs = |m: &BTreeMap<String, String>| {
        m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    };
    let mut parts = Vec::new();
    if let Some(m) = &c.encryption_context_equals {
        parts.push(format!("encryption context equals {{{}}}", pairs(m)));
    }
    if let Some(m) = &c.encryption_context_subset {
        parts.push(format!("encryption context includes {{{}}}", pairs(m)));
    }
    if let Some(a) = &c.source_arn {
        parts.push(format!("source ARN {a}"));
    }
    if parts.is_empty() { None } else { Some(parts.join("; ")) }
}

pub fn scope_sentence(scope: &Scope) -> String {
    let key = scope.key_arn.as_deref().map(|k| format!("key {k}")).unwrap_or_else(|| "all keys".into());
    let when = if scope.as_of_from == "no_events" {
        "the database holds no KMS events".to_string()
    } else {
        format!("grants described as of {} UTC", short_time(&scope.as_of))
    };
    format!(
        "Scope: {key}; period {} to {}; {when}; KMS events in the period: {} to {}.",
        scope.since.as_deref().map_or("the first event".into(), short_time),
        scope.until.as_deref().map_or("the last event".into(), short_time),
        scope.first_event.as_deref().map_or("none".into(), short_time),
        scope.last_event.as_deref().map_or("none".into(), short_time),
    )
}
