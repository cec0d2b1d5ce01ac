//! `granttrail findings`.

use granttrail_store::Location;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use granttrail_grants::findings::{Finding, FindingView, Severity};
use granttrail_grants::timestamp;
use granttrail_grants::when::{Reference, When};
use granttrail_store::Store;

use crate::config::Config;
use crate::finding_formats::{self, Reported};
use crate::grants_cmd::{latest_event, open_existing};
use crate::output::{JsonArrayOut, Table, print_json_line};
use crate::{parse_time, parse_when};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FindingsFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// SARIF 2.1.0, one run.
    Sarif,
    /// AWS Security Finding Format: input for `aws securityhub batch-import-findings`.
    Asff,
    /// OCSF Detection Finding events (class 2004), one JSON array.
    Ocsf,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    Severity::parse(text).ok_or_else(|| format!("{text:?} is not a severity (info, low, medium, high)"))
}

#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// Only findings observed at or after this time: RFC 3339, a date, or a duration back from
    /// the reference time (30d, 12h, 90m).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: Option<When>,
    /// Only findings of at least this severity (info, low, medium, high).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    severity: Option<Severity>,
    /// Exit with status 3 when any finding listed is at least this severe.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    fail_on: Option<Severity>,
    /// The reference time age-based rules measure against (default: the latest event in the
    /// database), RFC 3339 or a date.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    as_of: Option<i64>,
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    format: FindingsFormat,
}

pub fn run(db: &Location, config: &Config, args: &FindingsArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.refresh_labels()?;
    store.read_snapshot()?;
    let latest = latest_event(&store)?;
    let reference = Reference::new(args.as_of, None, latest);
    let now = reference.at;
    let as_of = timestamp::format(now);
    let since = args.since.map(|w| w.resolve(now));
    let findings = findings(&store, config, now, latest)?;
    let listed: Vec<&Finding> = findings
        .iter()
        .filter(|f| args.severity.is_none_or(|s| f.rule.severity >= s))
        .filter(|f| since.is_none_or(|t| f.observed_at.is_some_and(|o| o >= t)))
        .collect();
    let snapshots = store.grant_lists()?;
    let reported = || -> anyhow::Result<Vec<Reported<'_>>> {
        listed
            .iter()
            .map(|f| Ok(Reported { finding: f, evidence: store.finding_evidence(f, &snapshots)? }))
            .collect()
    };
    // JSON is printed a finding at a time, its evidence read as it goes: the whole
    // database's findings may be millions.
    let view = |f: &Finding| -> anyhow::Result<FindingView> {
        Ok(FindingView::new(f, grant_name(&store, f)?, store.finding_evidence(f, &snapshots)?, now))
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        FindingsFormat::Jsonl => {
            for f in &listed {
                print_json_line(&view(f)?, &mut out)?;
            }
        }
        FindingsFormat::Json => {
            let mut array = JsonArrayOut::new(&mut out);
            for f in &listed {
                array.item(&view(f)?)?;
            }
            array.finish()?;
        }
        FindingsFormat::Sarif => write_document(&finding_formats::sarif(&reported()?), &mut out)?,
        FindingsFormat::Asff => {
            let asff = finding_formats::asff(&reported()?, now);
            for reason in &asff.skipped {
                eprintln!("granttrail: {reason}");
            }
            write_document(&asff.findings, &mut out)?;
        }
        FindingsFormat::Ocsf => write_document(&finding_formats::ocsf(&reported()?, now), &mut out)?,
        FindingsFormat::Table => {
            let mut table = Table::new(vec!["SEVERITY", "RULE", "TITLE", "GRANT", "DETAIL"]);
            for f in &listed {
                table.row(vec![
                    f.rule.severity.as_str().into(),
                    f.rule.id.into(),
                    f.rule.title.into(),
                    if f.grant_id.is_empty() { "-".into() } else { f.grant_id.chars().take(12).collect() },
                    f.detail.clone(),
                ]);
            }
            writeln!(out, "as of {as_of} ({})", reference.source.describe())?;
            table.print(&mut out)?;
            writeln!(out, "{} finding(s)", listed.len())?;
        }
    }
    let fail = args.fail_on.is_some_and(|s| listed.iter().any(|f| f.rule.severity >= s));
    Ok(if fail { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

fn write_document(doc: &serde_json::Value, out: &mut impl Write) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc)?;
    writeln!(out)?;
    Ok(())
}

/// The name of the grant a finding is about, for its view.
pub fn grant_name(store: &Store, f: &Finding) -> anyhow::Result<Option<String>> {
    Ok(store.grant(&f.key_arn, &f.grant_id)?.and_then(|g| g.spec.name))
}

/// The findings as of `now`, for logs that end at `logs_end`.
pub fn findings(
    store: &Store,
    config: &Config,
    now: i64,
    logs_end: Option<i64>,
) -> anyhow::Result<Vec<Finding>> {
    Ok(store.findings(&config.findings, now, logs_end)?)
}
